//! `fvfsc`: the fvfs client for any device on the LAN.
//!
//! Finds the daemon ([`discover`]), then does everything over its HTTP API ([`api`]).
//! Exit codes scripts can rely on: 0 success; 1 the daemon refused the request (the
//! reason is printed); 2 no daemon, bad arguments or an unexpected answer; 3 not found.

mod cat;
mod discover;
mod paths;
mod pins;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// jemalloc, as in `fvfsd`: a mount runs for weeks with FUSE threads allocating and
/// freeing chunk buffers, which fragments glibc's per-thread arenas.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::{bail, Result};
use clap::{CommandFactory, Parser, Subcommand};
use fvfs_api::cli::HistoryCommand;
use fvfs_api::commit::CommitOp;
use fvfs_api::path::encode_path;
use fvfs_api::queries::{AtVersion, Removal};
use fvfs_api::routes::{call, Call};
use fvfs_api::show;

use fvfs_api::client::{Api, Failure};
use fvfs_client::{mount, put};

#[derive(Parser)]
#[command(
    name = "fvfsc",
    version,
    about = "fvfs client: browse, read and write your fvfs from any device"
)]
struct Cli {
    /// Daemon URL (default: $FVFS_URL, the client config, a local daemon, mDNS).
    #[arg(long, global = true)]
    url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List a directory.
    Ls {
        path: OsString,
        /// Long listing: kind, mode, size, mtime.
        #[arg(short = 'l')]
        long: bool,
        /// A version to look in (number, snapshot, HEAD~N).
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a file's content to stdout.
    Cat { path: OsString },
    /// Write a file from stdin, from --from FILE, or a whole tree with -r DIR.
    Put {
        path: OsString,
        /// Read the content from this file instead of stdin.
        #[arg(long, conflicts_with = "recursive")]
        from: Option<PathBuf>,
        /// Upload this directory's contents to PATH (only missing chunks are sent).
        #[arg(short = 'r', value_name = "DIR")]
        recursive: Option<PathBuf>,
        #[command(flatten)]
        excludes: fvfs_walk::ExcludeArgs,
        #[arg(long)]
        json: bool,
    },
    /// Copy a file or a whole tree (instant: the copy shares the original's content),
    /// from the live tree or, with --version, from a version or snapshot (a restore).
    Cp {
        from: OsString,
        to: OsString,
        /// A version number, snapshot name or HEAD~N to copy from.
        #[arg(long)]
        version: Option<String>,
    },
    /// Put a file or folder back as it was in an older version (also one deleted
    /// since: `fvfsc log PATH` finds when it was there), as one new version, in O(1)
    /// for a folder of any size; undone by restoring it from the version before.
    Restore {
        path: OsString,
        /// The version number, snapshot name or HEAD~N to take it from.
        #[arg(long)]
        from: String,
        /// Where to put it (default: where it was, replacing what is there now).
        #[arg(long)]
        to: Option<OsString>,
    },
    /// Remove a file, or a directory with -r.
    Rm {
        path: OsString,
        #[arg(short = 'r')]
        recursive: bool,
    },
    /// Daemon health, store and tiers; and the writes this device's mounts could not
    /// commit yet (shown even when the daemon does not answer).
    Status {
        #[arg(long)]
        json: bool,
        /// The cache directory of the mounts to report on (as given to `mount`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Replication work waiting per tier.
    Wal {
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    History(HistoryCommand),
    /// Logical bytes, unique bytes after dedup and bytes per tier below a path.
    Du {
        path: OsString,
        #[arg(long)]
        json: bool,
    },
    /// Trust the daemon at URL (https://HOST:PORT): pin its certificate, after checking
    /// it is the FINGERPRINT `fvfsd pair` printed on the daemon's machine.
    Pair {
        url: String,
        /// The fingerprint `fvfsd pair` printed (sha256:...); without it, what the
        /// daemon presents is pinned and printed, to compare by eye.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// fvfs daemons (seen over mDNS) and clients (seen over HTTP) the daemon knows of.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Mount fvfs as a file system at MOUNTPOINT, in the foreground (until Ctrl-C,
    /// SIGTERM or `fvfsc umount`).
    Mount {
        mountpoint: PathBuf,
        /// The persistent chunk cache, shared by the device's mounts.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// The cache's size limit on disk (e.g. 10G, 512M).
        #[arg(long, default_value = "10G", value_parser = parse_size)]
        cache_size: u64,
        #[arg(long)]
        read_only: bool,
        /// Let other users of this machine in (each checked against the owners and
        /// modes fvfs keeps, as on a local disk); a non-root user needs
        /// `user_allow_other` in /etc/fuse.conf.
        #[arg(long)]
        allow_other: bool,
        /// A user id as the tree stores it and as this machine numbers it (repeatable).
        #[arg(long, value_name = "STORED:LOCAL", value_parser = mount::parse_pair)]
        map_uid: Vec<(u32, u32)>,
        /// A group id as the tree stores it and as this machine numbers it (repeatable).
        #[arg(long, value_name = "STORED:LOCAL", value_parser = mount::parse_pair)]
        map_gid: Vec<(u32, u32)>,
        /// Files and folders the mount keeps known at most (about 200 bytes each here
        /// and 1 KB in the kernel); beyond it, the kernel is asked to forget the files
        /// not used lately, which are looked up again when next used, and listings
        /// make no new ones (a name listed is looked up when used).
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(100..))]
        max_inodes: u64,
    },
    /// Unmount a mount made by `fvfsc mount` (also a stale one); returns once the mount
    /// committed every write closed on it.
    Umount {
        mountpoint: PathBuf,
        /// The cache the mount uses (where it records its state).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

/// `10G`, `512M`, `64K` or a number of bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 10G"))?;
    let mult = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    Ok((n * mult as f64) as u64)
}

fn main() -> ExitCode {
    // Errors only, unless RUST_LOG asks for more (the mount's logs go here too).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "fvfsc", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Command::Umount {
        mountpoint,
        cache_dir,
    } = &cli.command
    {
        let cache_dir = cache_dir.clone().unwrap_or_else(default_cache_dir);
        return report(mount::umount(mountpoint, &cache_dir));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Command::Mount {
        mountpoint,
        cache_dir,
        cache_size,
        read_only,
        allow_other,
        map_uid,
        map_gid,
        max_inodes,
    } = &cli.command
    {
        let result = runtime.block_on(api_for(&cli)).and_then(|api| {
            let options = mount::Options {
                cache_dir: cache_dir.clone().unwrap_or_else(default_cache_dir),
                cache_bytes: *cache_size,
                read_only: *read_only,
                allow_other: *allow_other,
                ids: mount::IdMap {
                    uids: map_uid.clone(),
                    gids: map_gid.clone(),
                },
                max_inodes: usize::try_from(*max_inodes).unwrap_or(usize::MAX),
            };
            mount::run(runtime, api, mountpoint, options)
        });
        return report(result.map(|()| ExitCode::SUCCESS));
    }
    if let Command::Pair { url, fingerprint } = &cli.command {
        return report(runtime.block_on(pair(url, fingerprint.as_deref())));
    }
    if let Command::Status { json, cache_dir } = &cli.command {
        let cache_dir = cache_dir.clone().unwrap_or_else(default_cache_dir);
        return report(runtime.block_on(status(&cli, *json, &cache_dir)));
    }
    report(runtime.block_on(run(cli)))
}

/// What `fvfsc status --json` prints: the daemon's status, and this device's mounts.
#[derive(serde::Serialize)]
struct DeviceStatus<'a> {
    #[serde(flatten)]
    daemon: &'a fvfs_api::reports::Status,
    mounts: &'a [mount::waiting::MountRecord],
}

/// `fvfsc status`: the mounts' waiting writes first (they matter most when the daemon
/// does not answer), then the daemon's status.
async fn status(cli: &Cli, json: bool, cache_dir: &Path) -> Result<ExitCode> {
    let mounts = mount::waiting::read_all(cache_dir);
    if !json {
        fvfs_api::out!("{}", show_mounts(&mounts));
    }
    let answer = async {
        let api = api_for(cli).await?;
        let status = api.status().await?;
        Ok::<_, anyhow::Error>((api.base, status))
    };
    let (base, daemon) = match answer.await {
        Ok(s) => s,
        Err(e) if json => {
            fvfs_api::out::json(&serde_json::json!({ "daemon": null, "mounts": mounts }));
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if json {
        fvfs_api::out::json(&DeviceStatus {
            daemon: &daemon,
            mounts: &mounts,
        });
    } else {
        fvfs_api::out!("{}", show::daemon_status(&base, &daemon));
    }
    Ok(ExitCode::SUCCESS)
}

fn show_mounts(mounts: &[mount::waiting::MountRecord]) -> String {
    let mut out = String::new();
    for m in mounts {
        let at = m.mountpoint.display();
        if !m.ended && m.max_inodes > 0 {
            out += &format!(
                "mount {at}: {} files and folders known (at most {})\n",
                m.inodes, m.max_inodes
            );
        }
        match (m.ended, m.waiting.len()) {
            (false, 0) => out += &format!("mount {at}: every write committed\n"),
            (false, n) => out += &format!("mount {at}: {n} write(s) waiting, retried every 2 s:\n"),
            (true, n) => {
                out += &format!(
                    "mount {at} ended with {n} write(s) NOT committed (content kept locally):\n"
                )
            }
        }
        for w in &m.waiting {
            out += &format!(
                "  {} since {} ({}); content in {}\n",
                w.path,
                show::time(w.since),
                w.error,
                w.local.display()
            );
        }
    }
    out
}

/// `~/.cache/fvfs/client`, or `$XDG_CACHE_HOME/fvfs/client`.
fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("fvfs/client")
}

fn report(result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            fvfs_api::out::quiet_on_closed_pipe(e.chain());
            let code = e.downcast_ref::<Failure>().map_or(2, Failure::exit_code);
            eprintln!("fvfsc: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// Copies `from` (as in `version`, HEAD if `None`) to `to` in one commit, sharing its
/// nodes: O(1) for a folder of any size.
async fn copy(
    api: &Api,
    from: &OsString,
    to: &OsString,
    version: Option<String>,
    message: String,
) -> Result<fvfs_api::views::VersionInfo> {
    let op = CommitOp::Copy {
        from: fs_path(from)?,
        to: fs_path(to)?,
        version,
    };
    Ok(put::commit(api, message, vec![op]).await?)
}

/// An fvfs path argument, checked and percent-encoded for URLs.
fn fs_path(p: &OsString) -> Result<String> {
    Ok(encode_path(fvfs_api::cli::fvfs_path(p)?))
}

/// What `fvfsc put -r --json` prints.
#[derive(serde::Serialize)]
struct TreePut {
    version: u64,
    files: u64,
    bytes: u64,
    sent_bytes: u64,
    skipped: usize,
    excluded: u64,
}

/// The daemon's API: found by discovery unless `--url` names it, with the certificate
/// this device trusts for it.
async fn api_for(cli: &Cli) -> Result<Api> {
    let config = discover::ClientConfig::load()?;
    let mut pins = pins::Pins::load()?;
    let found = match cli.url.clone() {
        Some(url) => discover::Found::at(url),
        None => discover::daemon(&config, &pins, Duration::from_secs(10)).await?,
    };
    let pin = discover::pin_for(&found, &config, &mut pins).await?;
    Ok(Api::new(found.url, config.token(), "fvfsc", pin))
}

/// `fvfsc pair URL [--fingerprint F]`: pins what the daemon at URL presents, if it is F.
async fn pair(url: &str, expected: Option<&str>) -> Result<ExitCode> {
    let (_, _, https) = fvfs_api::tls::authority(url)?;
    if !https {
        bail!("pair with the daemon's https:// address (`fvfsd pair` on it prints it)");
    }
    let expected: Option<fvfs_api::tls::Fingerprint> = expected
        .map(|f| f.parse().map_err(anyhow::Error::msg))
        .transpose()?;
    let seen = fvfs_api::tls::probe(url).await?;
    if let Some(expected) = expected.filter(|e| *e != seen) {
        bail!("the daemon at {url} presents certificate {seen}, not {expected}: NOT paired (someone else may answer at that address)");
    }
    // Its node id, so that mDNS finds it wherever it moves (needs a token beyond loopback).
    let token = discover::ClientConfig::load()?.token();
    let api = Api::new(url.to_owned(), token, "fvfsc", Some(seen));
    let node_id = api.status().await.ok().map(|s| s.daemon.node_id);
    pins::Pins::load()?.pin(seen, node_id.as_deref(), url)?;
    fvfs_api::outln!(
        "paired with the daemon at {url}{}: certificate {seen}",
        node_id.map(|n| format!(" (node {n})")).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `fvfsc put`: a file, standard input, or a tree (`-r`).
async fn put_command(
    api: &Api,
    path: &OsString,
    from: Option<PathBuf>,
    recursive: Option<PathBuf>,
    excludes: &fvfs_walk::ExcludeArgs,
    json: bool,
) -> Result<ExitCode> {
    let dest = fs_path(path)?;
    let answer = match (from, recursive) {
        (_, Some(dir)) => {
            let rules = excludes.rules()?;
            let s = put::put_tree(api, &dir, path.as_bytes(), &rules).await?;
            for (p, why) in &s.skipped {
                eprintln!("fvfsc: skipped {}: {why}", p.display());
            }
            let tree = TreePut {
                version: s.version.number,
                files: s.files,
                bytes: s.bytes,
                sent_bytes: s.sent_bytes,
                skipped: s.skipped.len(),
                excluded: s.excluded,
            };
            if json {
                fvfs_api::out::json(&tree);
            } else {
                fvfs_api::outln!(
                    "version {}: {} files, {} ({} sent, the rest already stored); {} skipped; {} excluded",
                    s.version.number,
                    s.files,
                    show::bytes(s.bytes),
                    show::bytes(s.sent_bytes),
                    s.skipped.len(),
                    s.excluded
                );
            }
            return Ok(if s.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        (Some(file), None) => {
            let f = tokio::fs::File::open(&file)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mode = std::os::unix::fs::PermissionsExt::mode(&f.metadata().await?.permissions())
                & 0o7777;
            put::put_stream(api, &dest, Some(mode), f).await?
        }
        (None, None) => put::put_stream(api, &dest, None, tokio::io::stdin()).await?,
    };
    if json {
        fvfs_api::out::json(&answer);
    } else {
        let size = answer.size.unwrap_or_default();
        fvfs_api::outln!("version {}: {size} bytes", answer.version);
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let api = api_for(&cli).await?;
    match cli.command {
        Command::Ls {
            path,
            long,
            version,
            json,
        } => {
            let at = AtVersion { version };
            let listing = api.ask(call::Ls::at(&fs_path(&path)?).with(&at)).await?;
            if json {
                fvfs_api::out::json(&listing.entries);
            } else {
                let mut out = std::io::stdout().lock();
                for e in &listing.entries {
                    let suffix = if e.kind == "dir" { "/" } else { "" };
                    if long {
                        writeln!(out, "{}{suffix}", show::entry_long(e))?;
                    } else {
                        writeln!(out, "{}{suffix}", e.name)?;
                    }
                }
            }
        }
        Command::Cat { path } => {
            cat::cat(&api, &fs_path(&path)?, &mut std::io::stdout().lock()).await?;
        }
        Command::Put {
            path,
            from,
            recursive,
            excludes,
            json,
        } => return put_command(&api, &path, from, recursive, &excludes, json).await,
        Command::Cp { from, to, version } => {
            let message = format!("cp {} {}", from.to_string_lossy(), to.to_string_lossy());
            let v = copy(&api, &from, &to, version, message).await?;
            fvfs_api::outln!("version {}", v.number);
        }
        Command::Restore { path, from, to } => {
            let to = to.unwrap_or_else(|| path.clone());
            let (shown, to_shown) = (path.to_string_lossy(), to.to_string_lossy());
            let message = format!("restore {shown} from {from} to {to_shown}");
            let v = copy(&api, &path, &to, Some(from.clone()), message).await?;
            fvfs_api::outln!(
                "version {}: {to_shown} is {shown} as of {from} (the version before: {})",
                v.number,
                v.number.saturating_sub(1)
            );
        }
        Command::Rm { path, recursive } => {
            let q = Removal { recursive };
            let v = api
                .ask(call::FileDelete::at(&fs_path(&path)?).with(&q))
                .await?;
            fvfs_api::outln!("version {}", v.version);
        }
        Command::Status { .. } | Command::Pair { .. } => unreachable!("answered before"),
        Command::Wal { json } => {
            let backlog = api.ask(call::AdminWal::plain()).await?;
            if json {
                fvfs_api::out::json(&backlog);
            } else if backlog.pending == 0 {
                fvfs_api::outln!("no replication work pending");
            } else {
                fvfs_api::out::json(&backlog.tiers);
            }
        }
        Command::History(command) => return fvfs_api::cli::run(&api, command).await,
        Command::Du { path, json } => {
            let usage = api.ask(call::Du::at(&fs_path(&path)?)).await?;
            fvfs_api::out::json_or(&usage, json, show::du)
        }
        Command::Devices { json } => {
            let devices = api.ask(call::Devices::plain()).await?;
            fvfs_api::out::json_or(&devices, json, show::devices)
        }
        Command::Completions { .. } | Command::Mount { .. } | Command::Umount { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
    Ok(ExitCode::SUCCESS)
}
