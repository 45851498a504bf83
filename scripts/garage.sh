#!/usr/bin/env bash
# garage.sh - manage a throwaway Garage (v2.5.0) S3 server for tests: a single
# node, or a small cluster of nodes on loopback.
#
# Usage:
#   garage.sh install              build/install garage into $GARAGE_ROOT if missing
#   garage.sh start   DIR          init + start a fresh node in DIR, print DIR/env
#   garage.sh stop    DIR          SIGTERM (bounded wait) then SIGKILL; idempotent
#   garage.sh kill    DIR          SIGKILL immediately (crash simulation); idempotent
#   garage.sh restart DIR          stop + start the same node (same config/data/key)
#   garage.sh status  DIR          exit 0 if the node in DIR is running
#   garage.sh bucket  DIR NAME     create bucket NAME and allow fvfs-key RWO on it
#   garage.sh cluster DIR [N]      init + start a fresh N-node cluster (default 3,
#                                  replication_factor N) in DIR/node1..N, print DIR/env
#   garage.sh cluster-stop DIR     stop every node of the cluster in DIR; idempotent
#
# Each cluster node DIR/nodeK is a node directory like the ones `start` makes, so
# `stop`, `kill`, `restart` and `status` work on DIR/nodeK (`restart` rejoins the
# cluster and waits until that node's own S3 endpoint serves the bucket again; it
# never touches the layout, keys or buckets). DIR/env is node1's env plus
# GARAGE_CLUSTER_DIR, GARAGE_CLUSTER_NODES and GARAGE_CLUSTER_S3_ENDPOINTS (all
# nodes' S3 URLs, space-separated); DIR/nodeK/env describes node K.
#
# Environment:
#   GARAGE_ROOT            install root            (default $HOME/.cache/fvfs/garage)
#   GARAGE_BIN             garage binary           (default $GARAGE_ROOT/bin/garage)
#   GARAGE_VERSION         version to install      (default 2.5.0)
#   GARAGE_S3_PORT, GARAGE_RPC_PORT, GARAGE_ADMIN_PORT
#                          fixed ports (default: free loopback ports picked at start;
#                          ignored by `cluster`, which always picks free ports)
#   GARAGE_START_TIMEOUT   seconds to wait for readiness (default 60)
#   GARAGE_STOP_TIMEOUT    seconds to wait after SIGTERM before SIGKILL (default 15)
#
# Files in DIR: garage.toml, meta/, data/, garage.log, garage.pid, env
# `source "$(garage.sh start DIR)"` exports AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION, AWS_DEFAULT_REGION, FVFS_S3_ENDPOINT, FVFS_S3_BUCKET, GARAGE_PID,
# GARAGE_CONFIG, GARAGE_DIR (+ GARAGE_ADMIN_ENDPOINT, GARAGE_ADMIN_TOKEN, GARAGE_BIN).
# `source "$(garage.sh cluster DIR)"` exports the same for node1 (GARAGE_DIR is
# DIR/node1) plus the GARAGE_CLUSTER_* variables above.

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

# Optional: RF = replication_factor (default 1); PEERS = bootstrap_peers entries
# ("id@host:port" strings, space-separated) dialled when the node starts.
write_config() {
    local dir="$1" rpc_port="$2" s3_port="$3" admin_port="$4" secret="$5" token="$6"
    local rf="${7:-1}" peers="${8:-}" p list=""
    local tmp="$dir/garage.toml.tmp"
    for p in $peers; do
        list="${list:+$list, }\"$p\""
    done
    (
        umask 077
        {
        cat <<EOF
# generated by $PROG
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"

replication_factor = $rf

rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$secret"
EOF
        if [ -n "$list" ]; then
            printf 'bootstrap_peers = [%s]\n' "$list"
        fi
        cat <<EOF

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$s3_port"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$token"
EOF
        } >"$tmp"
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

# Initialise and launch a fresh node in DIR (meta/ and data/ must be empty) and
# wait until it answers; pick other free ports and retry if it cannot bind.
# Sets BOOT_PID, BOOT_RPC_PORT, BOOT_S3_PORT, BOOT_ADMIN_PORT. With FIXED=1 the GARAGE_*_PORT
# variables are honoured (and a failure is not retried).
boot_node() {
    local dir="$1" rpc_secret="$2" admin_token="$3" rf="$4" deadline="$5" fixed="$6"
    local ports rpc_port s3_port admin_port attempt pid
    local want_rpc="" want_s3="" want_admin=""
    if [ "$fixed" = 1 ]; then
        want_rpc="${GARAGE_RPC_PORT:-}"
        want_s3="${GARAGE_S3_PORT:-}"
        want_admin="${GARAGE_ADMIN_PORT:-}"
    fi
    attempt=0
    while :; do
        attempt=$((attempt + 1))
        mapfile -t ports < <(free_ports 3)
        [ "${#ports[@]}" -eq 3 ] || die "could not pick free ports"
        rpc_port="${want_rpc:-${ports[0]}}"
        s3_port="${want_s3:-${ports[1]}}"
        admin_port="${want_admin:-${ports[2]}}"
        write_config "$dir" "$rpc_port" "$s3_port" "$admin_port" "$rpc_secret" "$admin_token" "$rf"

        LOG_OFFSET="$(stat -c %s "$dir/garage.log")"
        pid="$(launch "$dir")"
        log "started garage pid $pid (s3 127.0.0.1:$s3_port, rpc :$rpc_port, admin :$admin_port)"
        if wait_rpc "$dir" "$pid" "$deadline"; then
            break
        fi
        kill_pid "$pid" KILL 5 || true
        rm -f "$dir/garage.pid"
        if [ "$attempt" -ge 3 ] || [ "$(now)" -ge "$deadline" ] \
            || [ -n "$want_rpc$want_s3$want_admin" ]; then
            die "garage failed to start in $dir (see $dir/garage.log)"
        fi
        log "retrying with other ports (attempt $((attempt + 1)))"
        # fresh node state for the retry (nothing was configured yet)
        rm -rf "$dir/meta" "$dir/data"
        mkdir -p "$dir/meta" "$dir/data"
    done
    BOOT_PID="$pid"
    BOOT_RPC_PORT="$rpc_port"
    BOOT_S3_PORT="$s3_port"
    BOOT_ADMIN_PORT="$admin_port"
}

# Full node id (64 hex digits) of the node configured in CFG.
node_id_of() {
    local cfg="$1" id
    id="$(g "$cfg" node id -q 2>/dev/null | head -n1 | cut -d@ -f1)"
    [[ "$id" =~ ^[0-9a-f]{64}$ ]] || die "could not determine node id from $cfg (got '$id')"
    printf '%s\n' "$id"
}

# Create the test key through CFG; sets KEY_ID and SECRET.
create_key() {
    local cfg="$1" out
    out="$(g "$cfg" key create "$KEY_NAME")" || die "garage key create failed"
    KEY_ID="$(printf '%s\n' "$out" | awk -F': *' '/^Key ID:/ {print $2; exit}')"
    SECRET="$(printf '%s\n' "$out" | awk -F': *' '/^Secret key:/ {print $2; exit}')"
    if [ -z "$KEY_ID" ] || [ -z "$SECRET" ]; then
        # fall back to the dedicated flags if the human-readable output changed
        KEY_ID="$(g "$cfg" key info --key-id "$KEY_NAME" | tr -d '[:space:]')"
        SECRET="$(g "$cfg" key info --secret-key "$KEY_NAME" | tr -d '[:space:]')"
    fi
    [[ "$KEY_ID" =~ ^GK[0-9a-f]+$ ]] || die "could not parse key id from 'garage key create' output"
    [[ "$SECRET" =~ ^[0-9a-f]{64}$ ]] || die "could not parse secret key from 'garage key create' output"
}

write_state() {
    ( umask 077; printf 'key_id=%s\nsecret=%s\n' "$KEY_ID" "$SECRET" >"$1/state" )
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local dir cfg pid deadline t0 node_id
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

    boot_node "$dir" "$rpc_secret" "$admin_token" 1 "$deadline" 1
    pid="$BOOT_PID"

    # Any failure from here on: kill the server so nothing is left behind.
    # shellcheck disable=SC2064
    trap "kill -KILL $pid 2>/dev/null || true; rm -f '$dir/garage.pid'" EXIT

    node_id="$(node_id_of "$cfg")"

    g "$cfg" layout assign -z dc1 -c 1G "$node_id" >/dev/null \
        || die "garage layout assign failed"
    g "$cfg" layout apply --version 1 >/dev/null \
        || die "garage layout apply failed"

    create_key "$cfg"
    write_state "$dir"

    g "$cfg" bucket create "$BUCKET" >/dev/null || die "garage bucket create $BUCKET failed"
    g "$cfg" bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID" >/dev/null \
        || die "garage bucket allow $BUCKET failed"

    wait_s3 "$dir" "$pid" "$deadline" "$KEY_ID" "$SECRET" "$BUCKET" \
        || die "S3 endpoint did not become ready (see $dir/garage.log)"

    write_env "$dir" "$pid" "$KEY_ID" "$SECRET"
    trap - EXIT
    log "garage ready in $(( $(now) - t0 ))s: endpoint http://127.0.0.1:$BOOT_S3_PORT bucket $BUCKET"
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

# ---------------------------------------------------------------- cluster

CLUSTER_PIDS=()
CLUSTER_NODE_DIRS=()

# EXIT trap of `cluster` while it is setting up: kill every node started so far.
cluster_cleanup() {
    local p d
    for p in ${CLUSTER_PIDS[@]+"${CLUSTER_PIDS[@]}"}; do
        kill -KILL "$p" 2>/dev/null || true
    done
    for d in ${CLUSTER_NODE_DIRS[@]+"${CLUSTER_NODE_DIRS[@]}"}; do
        rm -f "$d/garage.pid"
    done
}

# Node directories (DIR/node1, DIR/node2, ...) of the cluster in DIR, in order.
cluster_nodes() {
    local dir="$1" k=1
    while [ -f "$dir/node$k/garage.toml" ]; do
        printf '%s\n' "$dir/node$k"
        k=$((k + 1))
    done
}

# Short ids (16 hex digits) of the nodes `garage status` through CFG lists as healthy.
healthy_ids() {
    g "$1" status 2>/dev/null | awk '
        /^====/ { insec = ($0 ~ /HEALTHY NODES/); next }
        insec && length($1) == 16 && $1 ~ /^[0-9a-f]+$/ { print $1 }'
}

# Wait until `garage status` through CFG lists every id in IDS (full ids) as healthy.
wait_healthy() {
    local cfg="$1" deadline="$2"; shift 2
    local id healthy missing
    while :; do
        healthy=" $(healthy_ids "$cfg" | tr '\n' ' ') "
        missing=0
        for id in "$@"; do
            case "$healthy" in *" ${id:0:16} "*) ;; *) missing=$((missing + 1)) ;; esac
        done
        [ "$missing" -eq 0 ] && return 0
        if [ "$(now)" -ge "$deadline" ]; then
            log "timed out: $missing of $# nodes not healthy in 'garage -c $cfg status':"
            g "$cfg" status >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

cmd_cluster() {
    local dir n="$2" k j t0 deadline rpc_secret admin_token node cfg1 id out err peers
    local -a ids=() rpc_ports=() s3_ports=() admin_ports=() endpoints=()
    require_tools
    if ! [[ "$n" =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt 16 ]; then
        die "invalid node count '$n' (1-16)"
    fi
    dir="$(abs_dir "$1")"
    lock_dir "$dir"

    if [ -e "$dir/env" ] || [ -e "$dir/node1" ]; then
        die "$dir already contains a garage cluster; use '$PROG cluster-stop $dir' and remove the directory for a fresh one"
    fi

    t0="$(now)"
    deadline=$(( t0 + START_TIMEOUT ))
    rpc_secret="$(random_hex 32)"
    admin_token="$(random_hex 32)"
    trap cluster_cleanup EXIT

    # 1. start the nodes (each waits until its own RPC/S3/admin ports answer)
    for k in $(seq 1 "$n"); do
        node="$dir/node$k"
        mkdir -p "$node/meta" "$node/data"
        : >"$node/garage.log"
        CLUSTER_NODE_DIRS+=("$node")
        boot_node "$node" "$rpc_secret" "$admin_token" "$n" "$deadline" 0
        CLUSTER_PIDS+=("$BOOT_PID")
        rpc_ports+=("$BOOT_RPC_PORT")
        s3_ports+=("$BOOT_S3_PORT")
        admin_ports+=("$BOOT_ADMIN_PORT")
        endpoints+=("http://127.0.0.1:$BOOT_S3_PORT")
        ids+=("$(node_id_of "$node/garage.toml")")
    done
    cfg1="$dir/node1/garage.toml"
    log "$n nodes up after $(( $(now) - t0 ))s; connecting them"

    # Record the other nodes as bootstrap_peers in each config (read at the next
    # start only): a restarted node has no persisted peer list yet (Garage saves
    # it periodically) and the layout holds no addresses, so without this it
    # would wait for the others' reconnect backoff (~30s) to find it.
    for k in $(seq 1 "$n"); do
        peers=""
        for j in $(seq 1 "$n"); do
            [ "$j" -eq "$k" ] || peers="$peers ${ids[j-1]}@127.0.0.1:${rpc_ports[j-1]}"
        done
        write_config "$dir/node$k" "${rpc_ports[k-1]}" "${s3_ports[k-1]}" "${admin_ports[k-1]}" \
            "$rpc_secret" "$admin_token" "$n" "$peers"
    done

    # 2. connect node1 to every other node (they learn about each other from node1)
    for k in $(seq 2 "$n"); do
        id="${ids[k-1]}@127.0.0.1:${rpc_ports[k-1]}"
        while ! err="$(g "$cfg1" node connect "$id" 2>&1 >/dev/null)"; do
            if [ "$(now)" -ge "$deadline" ]; then
                die "garage node connect $id failed: $err"
            fi
            sleep 0.2
        done
    done

    # 3. wait until node1 (then every node) sees all nodes as healthy
    for node in "${CLUSTER_NODE_DIRS[@]}"; do
        wait_healthy "$node/garage.toml" "$deadline" "${ids[@]}" \
            || die "cluster nodes did not all become healthy (see $dir/node*/garage.log)"
    done
    log "all $n nodes healthy after $(( $(now) - t0 ))s; applying layout"

    # 4. one role per node, each in its own zone so that replicas spread over nodes
    for k in $(seq 1 "$n"); do
        g "$cfg1" layout assign -z "dc$k" -c 1G "${ids[k-1]}" >/dev/null \
            || die "garage layout assign failed for node$k"
    done
    out="$(g "$cfg1" layout apply --version 1)" || die "garage layout apply failed"
    printf '%s\n' "$out" | grep -qi 'new cluster layout' \
        || log "unexpected 'layout apply' output: $out"

    # 5. key + bucket (cluster-wide metadata, created through node1)
    create_key "$cfg1"
    for node in "${CLUSTER_NODE_DIRS[@]}"; do
        write_state "$node"
    done
    g "$cfg1" bucket create "$BUCKET" >/dev/null || die "garage bucket create $BUCKET failed"
    g "$cfg1" bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID" >/dev/null \
        || die "garage bucket allow $BUCKET failed"

    # 6. node1 must serve the bucket; so must every other node (they are equal
    #    S3 endpoints, and `restart DIR/nodeK` later waits on its own endpoint)
    for k in $(seq 1 "$n"); do
        node="$dir/node$k"
        wait_s3 "$node" "${CLUSTER_PIDS[k-1]}" "$deadline" "$KEY_ID" "$SECRET" "$BUCKET" \
            || die "S3 endpoint of node$k did not become ready (see $node/garage.log)"
        write_env "$node" "${CLUSTER_PIDS[k-1]}" "$KEY_ID" "$SECRET"
    done

    (
        umask 077
        {
            cat "$dir/node1/env"
            printf 'export GARAGE_CLUSTER_DIR=%q\n' "$dir"
            printf 'export GARAGE_CLUSTER_NODES=%q\n' "$n"
            printf 'export GARAGE_CLUSTER_S3_ENDPOINTS=%q\n' "${endpoints[*]}"
        } >"$dir/env.tmp"
    )
    mv -f "$dir/env.tmp" "$dir/env"
    trap - EXIT
    log "garage cluster of $n nodes ready in $(( $(now) - t0 ))s: endpoint ${endpoints[0]} bucket $BUCKET"
    printf '%s\n' "$dir/env"
}

cmd_cluster_stop() {
    local dir node pid rc=0
    local -a nodes=() waits=()
    [ -d "$1" ] || { log "$1 does not exist; nothing to stop"; return 0; }
    dir="$(abs_dir "$1")"
    lock_dir "$dir"
    mapfile -t nodes < <(cluster_nodes "$dir")
    if [ "${#nodes[@]}" -eq 0 ]; then
        log "no cluster nodes in $dir; nothing to stop"
        return 0
    fi
    # SIGTERM all nodes at once (each takes a few seconds to shut down), each
    # under its own node lock; the subshells inherit our lock on DIR.
    for node in "${nodes[@]}"; do
        ( lock_dir "$node"; do_stop "$node" TERM ) &
        waits+=("$!")
    done
    for pid in "${waits[@]}"; do
        wait "$pid" || rc=1
    done
    [ "$rc" -eq 0 ] || die "could not stop every node in $dir"
    log "cluster in $dir stopped (${#nodes[@]} nodes)"
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
    cluster) { [ "$#" -eq 1 ] || [ "$#" -eq 2 ]; } || usage; cmd_cluster "$1" "${2:-3}" ;;
    cluster-stop) [ "$#" -eq 1 ] || usage; cmd_cluster_stop "$1" ;;
    -h|--help|help) usage ;;
    *) log "unknown command: $cmd"; usage ;;
esac
