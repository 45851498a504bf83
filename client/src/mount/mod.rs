//! `fvfsc mount`: the whole fvfs tree as an ordinary file system, loaded lazily.
//!
//! Runs in the foreground until SIGINT or SIGTERM, or `fvfsc umount`; then unmounts
//! explicitly (fuser's auto-unmount is not used: it can hang an in-process unmount).
//! Chunks and tree nodes come through a persistent chunk cache shared by the device's
//! mounts ([`cache`]); large files whose chunks are all cached are read by the kernel
//! from whole backing files ([`backing`], FUSE passthrough, where the kernel has it);
//! writes go through local write-back files. The file system itself is the core
//! ([`core`], apart from FUSE); [`fuse`] adapts it to the kernel.

mod backing;
mod cache;
pub mod core;
mod fuse;
mod ids;
mod journal;
mod lru;
mod overlay;
mod remote;
pub mod waiting;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fuser::{Config, MountOption, Session, SessionACL};
use fvfs_api::client::Api;

pub use ids::{parse_pair, IdMap};

/// A map keyed by chunk id (or inode number), with a hasher that does not spend
/// SipHash's cost on keys that are uniform already or come from this process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set with the same hasher.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub struct Options {
    pub cache_dir: PathBuf,
    pub cache_bytes: u64,
    pub read_only: bool,
    /// Other local users may use the mount (the kernel checks their permissions).
    pub allow_other: bool,
    /// Owners as stored and as this machine numbers them.
    pub ids: IdMap,
    /// Inodes the mount (and the kernel, for it) keeps at most ([`core::Trimmer`]).
    pub max_inodes: usize,
}

/// Mounts fvfs at `mountpoint` and serves it until a signal or an unmount.
pub fn run(
    runtime: tokio::runtime::Runtime,
    api: Api,
    mountpoint: &Path,
    opts: Options,
) -> Result<()> {
    if !mountpoint.is_dir() {
        bail!("{} is not a directory", mountpoint.display());
    }
    let core = open_core(runtime.handle().clone(), api, &opts)?;
    // Backing files for passthrough reads take at most a quarter more than the cache.
    let backing = backing::Backing::open(&opts.cache_dir.join("files"), opts.cache_bytes / 4)
        .with_context(|| format!("backing files in {}", opts.cache_dir.display()))?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("fvfs".into()),
        MountOption::Subtype("fvfs".into()),
        MountOption::DefaultPermissions,
    ];
    if opts.read_only {
        config.mount_options.push(MountOption::RO);
    }
    // Permissions are checked by the kernel (DefaultPermissions) from the owners and
    // modes the tree keeps; by default only the mounting user gets in at all.
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(4);
    let follower = core.follower();
    let committer = core.committer();
    let trimmer = core.trimmer(opts.max_inodes);
    let kernel_slot = core.kernel();
    let state = waiting::MountState::new(&opts.cache_dir, mountpoint, opts.max_inodes)
        .with_context(|| format!("mount state in {}", opts.cache_dir.display()))?;
    let state = Arc::new(state);
    // What a killed mount (or a machine that lost power) left closed and not committed
    // goes first, so that this mount shows it.
    let left = committer.adopt_leftovers();
    if left.waiting() != Some(0) {
        eprintln!(
            "fvfsc: writes left by an earlier mount wait for the daemon (fvfsc status names them)"
        );
    }
    let mut session = Session::new(fuse::Fuse::new(core, backing), mountpoint, &config)
        .with_context(|| format!("cannot mount on {}", mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    // Set once: nothing else sets it.
    let _ = kernel_slot.set(Box::new(session.notifier()));
    // The follower tells the kernel what changed in the live tree, and the trimmer
    // what to forget beyond the inode budget, until the session ends (their channels'
    // senders are dropped then).
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (rt, kernel) = (runtime.handle().clone(), session.notifier());
    let following = std::thread::Builder::new()
        .name("fvfs-follow".into())
        .spawn(move || follower.run(&rt, &kernel, &stopped))?;
    let (stop_trim, trim_stopped) = std::sync::mpsc::channel::<()>();
    let (kernel, held_state) = (session.notifier(), state.clone());
    let trimming = std::thread::Builder::new()
        .name("fvfs-trim".into())
        .spawn(move || {
            trimmer.run(&kernel, &trim_stopped, &|held| {
                if let Err(e) = held_state.held(held) {
                    tracing::debug!("mount state: {e}");
                }
            });
        })?;
    // Closed write-backs are committed in batches (those that failed retried) until the
    // mount ends, and once more then.
    let batcher = committer.clone();
    let batching = std::thread::Builder::new()
        .name("fvfs-batch".into())
        .spawn(move || batcher.run(&state, left))?;
    runtime.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if let Err(e) = unmounter.unmount() {
            tracing::error!("unmount: {e}");
        }
    });
    eprintln!("fvfsc: mounted on {}", mountpoint.display());
    let served = session.run().context("serving the mount");
    drop((stop, stop_trim));
    if following.join().is_err() {
        tracing::error!("the follower of HEAD panicked");
    }
    if trimming.join().is_err() {
        tracing::error!("the inode budget's rounds panicked");
    }
    committer.stop();
    if batching.join().is_err() {
        tracing::error!("the batches of write-backs panicked");
    }
    served?;
    eprintln!("fvfsc: unmounted {}", mountpoint.display());
    Ok(())
}

/// The mount's core on `opts.cache_dir`, apart from FUSE: what [`run`] serves, and
/// what tests drive directly.
pub fn open_core(rt: tokio::runtime::Handle, api: Api, opts: &Options) -> Result<core::Core> {
    // What the mount keeps (cached chunks, files being written, whole-file copies, its
    // state) is readable by this user only, whatever the umask and the file's mode
    // in fvfs. The cache folder itself is left as it is: it may be a shared one.
    for room in ["chunks", "staging", "files", "mounts"] {
        private_dir(&opts.cache_dir.join(room))
            .with_context(|| format!("cache folder {}", opts.cache_dir.display()))?;
    }
    let cache = Arc::new(
        cache::ChunkCache::open(&opts.cache_dir.join("chunks"), opts.cache_bytes)
            .with_context(|| format!("chunk cache in {}", opts.cache_dir.display()))?,
    );
    let remote = remote::Remote::new(api, cache);
    let staging = opts.cache_dir.join("staging");
    Ok(core::Core::new(
        rt,
        remote,
        staging,
        opts.read_only,
        opts.ids.clone(),
    ))
}

/// Makes `dir` (and its parents, if missing) and lets only this user in.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Unmounts `mountpoint` (also a stale one whose process is gone), then waits for the
/// mount's process to commit what was closed on it and end. Fails (exit 1) when writes
/// are left waiting (the daemon down): `fvfsc status` names them.
pub fn umount(mountpoint: &Path, cache_dir: &Path) -> Result<std::process::ExitCode> {
    let target = mountpoint.canonicalize().ok();
    let serving: Vec<u32> = waiting::read_all(cache_dir)
        .into_iter()
        .filter(|r| !r.ended && target.as_ref() == Some(&r.mountpoint))
        .map(|r| r.pid)
        .collect();
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint)
        .status()
        .context("running fusermount3 (install fuse3)")?;
    if !status.success() {
        // A mount whose process died ("Transport endpoint is not connected"): detach it.
        let lazy = Command::new("fusermount3")
            .arg("-uz")
            .arg(mountpoint)
            .status()?;
        if !lazy.success() {
            bail!("cannot unmount {}", mountpoint.display());
        }
    }
    for pid in &serving {
        wait_for_exit(*pid);
    }
    let left = waiting::read_all(cache_dir)
        .into_iter()
        .filter(|r| serving.contains(&r.pid))
        .map(|r| r.waiting.len())
        .sum::<usize>();
    if left > 0 {
        eprintln!(
            "fvfsc: unmounted, but {left} writes wait to be committed (kept in the cache; \
             `fvfsc status` names them, the next mount commits them)"
        );
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Waits until process `pid` has ended (at once if it is gone).
fn wait_for_exit(pid: u32) {
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return;
    };
    // A pidfd becomes readable when its process ends.
    let Ok(fd) = pidfd_open(pid, PidfdFlags::empty()) else {
        return;
    };
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    while let Err(e) = rustix::event::poll(&mut fds, None) {
        if e != rustix::io::Errno::INTR {
            return;
        }
    }
}
