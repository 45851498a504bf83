#!/usr/bin/env bash
# garage.sh - manage a throwaway single-node Garage (v2.5.0) S3 server for tests.
#
# Usage:
#   garage.sh install              build/install garage into $GARAGE_ROOT if missing
#   garage.sh start   DIR          init + start a fresh node in DIR, print DIR/env
#   garage.sh stop    DIR          SIGTERM (bounded wait) then SIGKILL; idempotent
#   garage.sh kill    DIR          SIGKILL immediately (crash simulation); idempotent
#   garage.sh restart DIR          stop + start the same node (same config/data/key)
#   garage.sh status  DIR          exit 0 if the node in DIR is running
#   garage.sh bucket  DIR NAME     create bucket NAME and allow fvfs-key RWO on it
#
# Environment:
#   GARAGE_ROOT            install root            (default $HOME/.cache/fvfs/garage)
#   GARAGE_BIN             garage binary           (default $GARAGE_ROOT/bin/garage)
#   GARAGE_VERSION         version to install      (default 2.5.0)
#   GARAGE_S3_PORT, GARAGE_RPC_PORT, GARAGE_ADMIN_PORT
#                          fixed ports (default: free loopback ports picked at start)
#   GARAGE_START_TIMEOUT   seconds to wait for readiness (default 60)
#   GARAGE_STOP_TIMEOUT    seconds to wait after SIGTERM before SIGKILL (default 15)
#
# Files in DIR: garage.toml, meta/, data/, garage.log, garage.pid, env
# `source "$(garage.sh start DIR)"` exports AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION, AWS_DEFAULT_REGION, FVFS_S3_ENDPOINT, FVFS_S3_BUCKET, GARAGE_PID,
# GARAGE_CONFIG, GARAGE_DIR (+ GARAGE_ADMIN_ENDPOINT, GARAGE_ADMIN_TOKEN, GARAGE_BIN).

set -euo pipefail

GARAGE_ROOT="${GARAGE_ROOT:-$HOME/.cache/fvfs/garage}"
GARAGE_BIN="${GARAGE_BIN:-$GARAGE_ROOT/bin/garage}"
GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"
START_TIMEOUT="${GARAGE_START_TIMEOUT:-60}"
STOP_TIMEOUT="${GARAGE_STOP_TIMEOUT:-15}"
REGION="garage"
KEY_NAME="fvfs-key"
BUCKET="fvfs-test"
# sha256 of the empty string (x-amz-content-sha256 for body-less requests)
EMPTY_SHA256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

PROG="$(basename "$0")"
LOG_OFFSET=0

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
}

now() { date +%s; }

# Run the garage CLI against a config, ignoring GARAGE_* variables from the
# caller's environment that would override values in the config file.
g() {
    local cfg="$1"; shift
    env -u GARAGE_RPC_SECRET -u GARAGE_RPC_SECRET_FILE -u GARAGE_RPC_HOST \
        -u GARAGE_ADMIN_TOKEN -u GARAGE_ADMIN_TOKEN_FILE \
        -u GARAGE_METRICS_TOKEN -u GARAGE_METRICS_TOKEN_FILE \
        -u GARAGE_CONFIG_FILE -u GARAGE_ALLOW_WORLD_READABLE_SECRETS \
        "$GARAGE_BIN" -c "$cfg" "$@"
}

# ---------------------------------------------------------------- tools

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not available; please install: $*"
    log "installing packages: $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2; then
        log "apt-get install failed; running apt-get update and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get update >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 \
            || die "apt-get install $* failed"
    fi
}

ensure_tools() {
    local missing=()
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v setsid >/dev/null 2>&1 || missing+=(util-linux)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

require_tools() {
    command -v curl >/dev/null 2>&1 || die "curl not found (run '$PROG install')"
    command -v setsid >/dev/null 2>&1 || die "setsid not found (run '$PROG install')"
    [ -x "$GARAGE_BIN" ] || die "garage binary not found at $GARAGE_BIN (run '$PROG install')"
}

cmd_install() {
    ensure_tools
    if [ -x "$GARAGE_BIN" ]; then
        log "garage already installed: $("$GARAGE_BIN" --version 2>/dev/null | head -n1)"
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found; cannot build garage"
    if ! command -v cc >/dev/null 2>&1; then
        apt_install gcc libc6-dev pkg-config
    fi
    log "building garage $GARAGE_VERSION into $GARAGE_ROOT (takes ~10 minutes)"
    mkdir -p "$GARAGE_ROOT"
    cargo install garage --version "$GARAGE_VERSION" --locked --root "$GARAGE_ROOT" >&2 \
        || die "cargo install garage $GARAGE_VERSION failed"
    [ -x "$GARAGE_ROOT/bin/garage" ] || die "cargo install finished but $GARAGE_ROOT/bin/garage is missing"
    log "installed: $("$GARAGE_ROOT/bin/garage" --version | head -n1)"
}

# ---------------------------------------------------------------- helpers

# Print N distinct free TCP ports on 127.0.0.1, one per line.
free_ports() {
    local n="$1"
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$n" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
for s in socks:
    s.close()
EOF
        return
    fi
    # Fallback: random ports outside the usual ephemeral range that nobody listens on.
    local got=() p tries=0
    while [ "${#got[@]}" -lt "$n" ]; do
        tries=$((tries + 1))
        [ "$tries" -lt 1000 ] || die "could not find free ports"
        p=$((20000 + RANDOM % 12000))
        case " ${got[*]-} " in *" $p "*) continue ;; esac
        port_in_use "$p" && continue
        got+=("$p")
    done
    printf '%s\n' "${got[@]}"
}

# True if something listens on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Value of a top-level-looking `key = "value"` line (first match) in the config.
cfg_get() {
    sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\"\\(.*\\)\"[[:space:]]*\$/\\1/p" "$1" | head -n1
}

# Value of `key = "value"` inside [section] of the config.
cfg_get_in() {
    awk -v sec="[$2]" -v key="$3" '
        /^[[:space:]]*\[/ { insec = ($1 == sec); next }
        insec {
            line = $0
            if (match(line, "^[[:space:]]*" key "[[:space:]]*=")) {
                sub("^[^=]*=[[:space:]]*\"", "", line); sub("\"[[:space:]]*$", "", line)
                print line; exit
            }
        }' "$1"
}

port_of() { printf '%s\n' "${1##*:}"; }

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

abs_dir() {
    mkdir -p "$1" || die "cannot create directory $1"
    (cd "$1" && pwd -P)
}

# Is PID alive and a garage server using CONFIG?
pid_is_ours() {
    local pid="$1" cfg="$2" cmdline
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [ -r "/proc/$pid/cmdline" ] || return 0   # cannot verify; assume yes
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$cmdline" in *garage*"$cfg"*server*) return 0 ;; esac
    return 1
}

running_pid() {
    local dir="$1" pid
    [ -f "$dir/garage.pid" ] || return 1
    pid="$(cat "$dir/garage.pid" 2>/dev/null || true)"
    pid_is_ours "$pid" "$dir/garage.toml" || return 1
    printf '%s\n' "$pid"
}

# HTTP status code of a SigV4-signed HEAD bucket request ("000" if no answer).
s3_head_bucket() {
    local endpoint="$1" key_id="$2" secret="$3" bucket="$4"
    curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 5 \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$key_id:$secret" \
        -H "x-amz-content-sha256: $EMPTY_SHA256" \
        -I "$endpoint/$bucket" 2>/dev/null || true
}

# HTTP status code of an unauthenticated request ("000" if no answer).
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 5 "$1" 2>/dev/null || true
}

# Fail fast if the server died or could not bind one of its sockets.
check_server_alive() {
    local dir="$1" pid="$2"
    if ! kill -0 "$pid" 2>/dev/null; then
        log "garage exited during startup; last log lines:"
        tail -n 20 "$dir/garage.log" >&2 || true
        return 1
    fi
    # Garage 2.5 keeps running when the S3/admin API cannot bind its port (it only
    # logs an error), so look at the part of the log written since launch.
    if tail -c "+$((LOG_OFFSET + 1))" "$dir/garage.log" 2>/dev/null \
            | grep -q 'Address already in use'; then
        log "garage could not bind a port (Address already in use):"
        tail -c "+$((LOG_OFFSET + 1))" "$dir/garage.log" | grep 'Address already in use' \
            | sed 's/\x1b\[[0-9;]*m//g' | tail -n 3 >&2 || true
        return 1
    fi
    return 0
}

# True if PORT on loopback is listened on by PID (unknown -> true).
port_owned_by() {
    local port="$1" pid="$2" out
    command -v ss >/dev/null 2>&1 || return 0
    out="$(ss -ltnpH "sport = :$port" 2>/dev/null)" || return 0
    case "$out" in *"pid=$pid,"*) return 0 ;; esac
    return 1
}

# Start the server process for DIR in the background; print its pid.
launch() {
    local dir="$1" pid
    local cfg="$dir/garage.toml"
    {
        printf '\n===== %s: starting garage (%s) =====\n' "$(date -u +%FT%TZ)" "$PROG"
    } >>"$dir/garage.log"
    # setsid: own session/process group, so the test runner's signals don't hit it
    # and it survives the shell that started it.
    env -u GARAGE_RPC_SECRET -u GARAGE_RPC_SECRET_FILE -u GARAGE_RPC_HOST \
        -u GARAGE_ADMIN_TOKEN -u GARAGE_ADMIN_TOKEN_FILE \
        -u GARAGE_METRICS_TOKEN -u GARAGE_METRICS_TOKEN_FILE \
        -u GARAGE_CONFIG_FILE -u GARAGE_ALLOW_WORLD_READABLE_SECRETS \
        RUST_LOG="${RUST_LOG:-garage=info}" \
        setsid "$GARAGE_BIN" -c "$cfg" server </dev/null >>"$dir/garage.log" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$dir/garage.pid"
    printf '%s\n' "$pid"
}

# Wait until `garage status` works and the S3 and admin ports are listened on
# by our process. Returns 1 on failure (details logged).
wait_rpc() {
    local dir="$1" pid="$2" deadline="$3" cfg="$1/garage.toml" s3 admin
    s3="$(cfg_get_in "$cfg" s3_api api_bind_addr)"
    admin="$(cfg_get_in "$cfg" admin api_bind_addr)"
    while :; do
        check_server_alive "$dir" "$pid" || return 1
        if g "$cfg" status >/dev/null 2>&1 \
                && [ "$(http_code "http://$s3/")" != 000 ] \
                && [ "$(http_code "http://$admin/health")" != 000 ]; then
            check_server_alive "$dir" "$pid" || return 1
            if port_owned_by "$(port_of "$s3")" "$pid" \
                    && port_owned_by "$(port_of "$admin")" "$pid"; then
                return 0
            fi
            log "S3/admin port is served by another process"
            return 1
        fi
        if [ "$(now)" -ge "$deadline" ]; then
            log "timed out waiting for 'garage status' to answer"
            return 1
        fi
        sleep 0.2
    done
}

# Wait until the admin /health endpoint says the cluster is operational and a
# signed S3 HeadBucket with the test key returns 200.
wait_s3() {
    local dir="$1" pid="$2" deadline="$3" key_id="$4" secret="$5" bucket="$6"
    local cfg="$dir/garage.toml" s3 admin code hcode
    s3="http://$(cfg_get_in "$cfg" s3_api api_bind_addr)"
    admin="http://$(cfg_get_in "$cfg" admin api_bind_addr)"
    while :; do
        check_server_alive "$dir" "$pid" || return 1
        hcode="$(http_code "$admin/health")"
        if [ "$hcode" = 200 ]; then
            code="$(s3_head_bucket "$s3" "$key_id" "$secret" "$bucket")"
            [ "$code" = 200 ] && return 0
        fi
        if [ "$(now)" -ge "$deadline" ]; then
            log "timed out waiting for S3 at $s3 (admin /health: $hcode, HeadBucket $bucket: ${code:-n/a})"
            return 1
        fi
        sleep 0.2
    done
}

kill_pid() {
    local pid="$1" sig="$2" timeout="$3" deadline
    kill "-$sig" "$pid" 2>/dev/null || return 0
    deadline=$(( $(now) + timeout ))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(now)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
    return 0
}

write_config() {
    local dir="$1" rpc_port="$2" s3_port="$3" admin_port="$4" secret="$5" token="$6"
    local tmp="$dir/garage.toml.tmp"
    (
        umask 077
        cat >"$tmp" <<EOF
# generated by $PROG
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"

replication_factor = 1

rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$s3_port"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$token"
EOF
    )
    mv -f "$tmp" "$dir/garage.toml"
}

write_env() {
    local dir="$1" pid="$2" key_id="$3" secret="$4"
    local cfg="$dir/garage.toml" tmp="$dir/env.tmp"
    (
        umask 077
        {
            printf '# generated by %s; source this file\n' "$PROG"
            printf 'export AWS_ACCESS_KEY_ID=%q\n' "$key_id"
            printf 'export AWS_SECRET_ACCESS_KEY=%q\n' "$secret"
            printf 'export AWS_REGION=%q\n' "$REGION"
            printf 'export AWS_DEFAULT_REGION=%q\n' "$REGION"
            printf 'export FVFS_S3_ENDPOINT=%q\n' "http://$(cfg_get_in "$cfg" s3_api api_bind_addr)"
            printf 'export FVFS_S3_BUCKET=%q\n' "$BUCKET"
            printf 'export GARAGE_PID=%q\n' "$pid"
            printf 'export GARAGE_CONFIG=%q\n' "$cfg"
            printf 'export GARAGE_DIR=%q\n' "$dir"
            printf 'export GARAGE_BIN=%q\n' "$GARAGE_BIN"
            printf 'export GARAGE_ADMIN_ENDPOINT=%q\n' "http://$(cfg_get_in "$cfg" admin api_bind_addr)"
            printf 'export GARAGE_ADMIN_TOKEN=%q\n' "$(cfg_get_in "$cfg" admin admin_token)"
        } >"$tmp"
    )
    mv -f "$tmp" "$dir/env"
}

# Read KEY_ID / SECRET from DIR/state (written at first start).
load_state() {
    local dir="$1"
    [ -f "$dir/state" ] || die "$dir/state missing: $dir was not initialised by '$PROG start'"
    KEY_ID="$(sed -n 's/^key_id=//p' "$dir/state")"
    SECRET="$(sed -n 's/^secret=//p' "$dir/state")"
    if [ -z "$KEY_ID" ] || [ -z "$SECRET" ]; then
        die "$dir/state is incomplete"
    fi
}

lock_dir() {
    local dir="$1"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$dir/.lock"
        flock -w "$((START_TIMEOUT + STOP_TIMEOUT + 30))" 9 \
            || die "another $PROG operation holds the lock on $dir"
    fi
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local dir cfg pid ports rpc_port s3_port admin_port attempt deadline t0
    local node_id out key_id secret
    require_tools
    dir="$(abs_dir "$1")"
    cfg="$dir/garage.toml"
    lock_dir "$dir"

    if pid="$(running_pid "$dir")"; then
        die "garage already running in $dir (pid $pid); use '$PROG restart $dir' or '$PROG stop $dir'"
    fi
    if [ -e "$cfg" ] || [ -d "$dir/meta" ]; then
        die "$dir already contains a garage node; use '$PROG restart $dir' to reuse it or remove the directory for a fresh one"
    fi
    mkdir -p "$dir/meta" "$dir/data"
    : >"$dir/garage.log"

    t0="$(now)"
    deadline=$(( t0 + START_TIMEOUT ))
    local rpc_secret admin_token
    rpc_secret="$(random_hex 32)"
    admin_token="$(random_hex 32)"

    attempt=0
    while :; do
        attempt=$((attempt + 1))
        mapfile -t ports < <(free_ports 3)
        [ "${#ports[@]}" -eq 3 ] || die "could not pick free ports"
        rpc_port="${GARAGE_RPC_PORT:-${ports[0]}}"
        s3_port="${GARAGE_S3_PORT:-${ports[1]}}"
        admin_port="${GARAGE_ADMIN_PORT:-${ports[2]}}"
        write_config "$dir" "$rpc_port" "$s3_port" "$admin_port" "$rpc_secret" "$admin_token"

        LOG_OFFSET="$(stat -c %s "$dir/garage.log")"
        pid="$(launch "$dir")"
        log "started garage pid $pid (s3 127.0.0.1:$s3_port, rpc :$rpc_port, admin :$admin_port)"
        if wait_rpc "$dir" "$pid" "$deadline"; then
            break
        fi
        kill_pid "$pid" KILL 5 || true
        rm -f "$dir/garage.pid"
        if [ "$attempt" -ge 3 ] || [ "$(now)" -ge "$deadline" ] \
            || [ -n "${GARAGE_RPC_PORT:-}${GARAGE_S3_PORT:-}${GARAGE_ADMIN_PORT:-}" ]; then
            die "garage failed to start in $dir (see $dir/garage.log)"
        fi
        log "retrying with other ports (attempt $((attempt + 1)))"
        # fresh node state for the retry (nothing was configured yet)
        rm -rf "$dir/meta" "$dir/data"
        mkdir -p "$dir/meta" "$dir/data"
    done

    # Any failure from here on: kill the server so nothing is left behind.
    # shellcheck disable=SC2064
    trap "kill -KILL $pid 2>/dev/null || true; rm -f '$dir/garage.pid'" EXIT

    node_id="$(g "$cfg" node id -q 2>/dev/null | head -n1 | cut -d@ -f1)"
    [[ "$node_id" =~ ^[0-9a-f]{64}$ ]] || die "could not determine node id (got '$node_id')"

    g "$cfg" layout assign -z dc1 -c 1G "$node_id" >/dev/null \
        || die "garage layout assign failed"
    g "$cfg" layout apply --version 1 >/dev/null \
        || die "garage layout apply failed"

    out="$(g "$cfg" key create "$KEY_NAME")" || die "garage key create failed"
    key_id="$(printf '%s\n' "$out" | awk -F': *' '/^Key ID:/ {print $2; exit}')"
    secret="$(printf '%s\n' "$out" | awk -F': *' '/^Secret key:/ {print $2; exit}')"
    if [ -z "$key_id" ] || [ -z "$secret" ]; then
        # fall back to the dedicated flags if the human-readable output changed
        key_id="$(g "$cfg" key info --key-id "$KEY_NAME" | tr -d '[:space:]')"
        secret="$(g "$cfg" key info --secret-key "$KEY_NAME" | tr -d '[:space:]')"
    fi
    [[ "$key_id" =~ ^GK[0-9a-f]+$ ]] || die "could not parse key id from 'garage key create' output"
    [[ "$secret" =~ ^[0-9a-f]{64}$ ]] || die "could not parse secret key from 'garage key create' output"
    ( umask 077; printf 'key_id=%s\nsecret=%s\n' "$key_id" "$secret" >"$dir/state" )

    g "$cfg" bucket create "$BUCKET" >/dev/null || die "garage bucket create $BUCKET failed"
    g "$cfg" bucket allow --read --write --owner "$BUCKET" --key "$key_id" >/dev/null \
        || die "garage bucket allow $BUCKET failed"

    wait_s3 "$dir" "$pid" "$deadline" "$key_id" "$secret" "$BUCKET" \
        || die "S3 endpoint did not become ready (see $dir/garage.log)"

    write_env "$dir" "$pid" "$key_id" "$secret"
    trap - EXIT
    log "garage ready in $(( $(now) - t0 ))s: endpoint http://127.0.0.1:$s3_port bucket $BUCKET"
    printf '%s\n' "$dir/env"
}

do_stop() {
    local dir="$1" sig="$2" pid
    if ! pid="$(running_pid "$dir")"; then
        rm -f "$dir/garage.pid"
        log "garage in $dir is not running"
        return 0
    fi
    if [ "$sig" = KILL ]; then
        kill_pid "$pid" KILL 10 || die "pid $pid did not die after SIGKILL"
        log "killed garage pid $pid (SIGKILL)"
    elif kill_pid "$pid" TERM "$STOP_TIMEOUT"; then
        log "stopped garage pid $pid"
    else
        log "garage pid $pid still alive ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        kill_pid "$pid" KILL 10 || die "pid $pid did not die after SIGKILL"
    fi
    rm -f "$dir/garage.pid"
}

cmd_stop() {
    local dir
    [ -d "$1" ] || { log "$1 does not exist; nothing to stop"; return 0; }
    dir="$(abs_dir "$1")"
    lock_dir "$dir"
    do_stop "$dir" "${2:-TERM}"
}

cmd_restart() {
    local dir cfg pid deadline t0
    require_tools
    [ -d "$1" ] || die "$1 does not exist (use '$PROG start $1')"
    dir="$(abs_dir "$1")"
    cfg="$dir/garage.toml"
    [ -f "$cfg" ] || die "no garage config in $dir (use '$PROG start $dir')"
    lock_dir "$dir"
    load_state "$dir"

    do_stop "$dir" TERM

    local port addr
    for addr in "$(cfg_get "$cfg" rpc_bind_addr)" "$(cfg_get_in "$cfg" s3_api api_bind_addr)" \
                "$(cfg_get_in "$cfg" admin api_bind_addr)"; do
        port="$(port_of "$addr")"
        if port_in_use "$port"; then
            die "port $port (from $cfg) is in use by another process; cannot restart"
        fi
    done

    t0="$(now)"
    deadline=$(( t0 + START_TIMEOUT ))
    LOG_OFFSET="$(stat -c %s "$dir/garage.log" 2>/dev/null || echo 0)"
    pid="$(launch "$dir")"
    log "restarted garage pid $pid"
    # shellcheck disable=SC2064
    trap "kill -KILL $pid 2>/dev/null || true; rm -f '$dir/garage.pid'" EXIT
    wait_rpc "$dir" "$pid" "$deadline" || die "garage failed to restart (see $dir/garage.log)"
    wait_s3 "$dir" "$pid" "$deadline" "$KEY_ID" "$SECRET" "$BUCKET" \
        || die "S3 endpoint did not become ready after restart (see $dir/garage.log)"
    write_env "$dir" "$pid" "$KEY_ID" "$SECRET"
    trap - EXIT
    log "garage ready again in $(( $(now) - t0 ))s"
    printf '%s\n' "$dir/env"
}

cmd_status() {
    local dir pid
    [ -d "$1" ] || die "$1 does not exist"
    dir="$(abs_dir "$1")"
    if pid="$(running_pid "$dir")"; then
        log "garage in $dir is running (pid $pid)"
        return 0
    fi
    log "garage in $dir is not running"
    return 1
}

cmd_bucket() {
    local dir cfg name pid deadline
    require_tools
    [ -d "$1" ] || die "$1 does not exist"
    dir="$(abs_dir "$1")"
    name="$2"
    cfg="$dir/garage.toml"
    [[ "$name" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] \
        || die "invalid bucket name '$name' (3-63 chars: a-z 0-9 . -)"
    lock_dir "$dir"
    load_state "$dir"
    pid="$(running_pid "$dir")" || die "garage in $dir is not running"

    if g "$cfg" bucket info "$name" >/dev/null 2>&1; then
        log "bucket $name already exists"
    else
        g "$cfg" bucket create "$name" >/dev/null || die "garage bucket create $name failed"
    fi
    g "$cfg" bucket allow --read --write --owner "$name" --key "$KEY_ID" >/dev/null \
        || die "garage bucket allow $name failed"
    deadline=$(( $(now) + START_TIMEOUT ))
    wait_s3 "$dir" "$pid" "$deadline" "$KEY_ID" "$SECRET" "$name" \
        || die "bucket $name not reachable over S3"
    log "bucket $name ready (RWO for $KEY_NAME)"
}

# ---------------------------------------------------------------- main

[ "$#" -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
    install) [ "$#" -eq 0 ] || usage; cmd_install ;;
    start)   [ "$#" -eq 1 ] || usage; cmd_start "$1" ;;
    stop)    [ "$#" -eq 1 ] || usage; cmd_stop "$1" TERM ;;
    kill)    [ "$#" -eq 1 ] || usage; cmd_stop "$1" KILL ;;
    restart) [ "$#" -eq 1 ] || usage; cmd_restart "$1" ;;
    status)  [ "$#" -eq 1 ] || usage; cmd_status "$1" ;;
    bucket)  [ "$#" -eq 2 ] || usage; cmd_bucket "$1" "$2" ;;
    -h|--help|help) usage ;;
    *) log "unknown command: $cmd"; usage ;;
esac
