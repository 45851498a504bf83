//! The mount's core: the live tree at the mount's root and every snapshot read-only
//! under `/.snapshots/<name>/`, loaded lazily through the chunk cache, answered in
//! plain types (inode numbers, byte names, [`Attr`], [`Errno`]). The FUSE adapter
//! ([`super::fuse`]) only translates the kernel's requests into these calls; the core
//! runs (and is tested) without `/dev/fuse`.
//!
//! Its rooms: the inode table ([`inodes`]), the trees it shows ([`view`]), open files
//! ([`handles`]), the read path ([`read`]), listings ([`listing`]), write-back files
//! ([`writeback`]), their commits and conflicts ([`commit`]) in batches ([`batch`]),
//! new entries ([`make`]) and other changes to the tree ([`namespace`], [`moves`],
//! [`attrs`]),
//! the follower of HEAD ([`follow`]), the kernel's page cache filled ahead of a
//! walk ([`push`]) and the inode budget ([`trim`]).
//!
//! # Invariants
//! - An inode is a name in a directory of one view: the live tree (whose root is
//!   HEAD, followed by [`follow`] and after this mount's own commits) or one snapshot
//!   (immutable). The kernel caches both for long: it is told what changed in the
//!   live tree ([`Kernel`]).
//! - Writes go to a local write-back file of the inode. close() returns once a changed
//!   file is journaled there; batches commit what was closed ([`batch`]), chunked
//!   here with only the chunks the daemon lacks sent, where each inode is then. fsync
//!   commits the file at once and returns after the daemon made the commit durable.
//! - Every chunk is verified against its id before use (in [`super::remote`]).
//!
//! # Lock order
//! Taken in this order, never the other way:
//! 1. `batching` (the batch in progress, [`batch`]);
//! 2. write-backs' locks (a batch takes them in its order; an operation holds one);
//! 3. `names`, the namespace lock (shared by commits at an inode's path and by new
//!    names, exclusive for moves and removals: [`namespace`]);
//! 4. `inodes`, the inode table.
//!
//! The write-back map ([`writeback::Writing`]) is never locked while a write-back is;
//! the overlay of staged changes, the handle and listing maps, the snapshot and
//! directory caches and the batcher's wake-up are leaves: nothing is taken under
//! them, and what is needed from them is cloned out.

mod attrs;
mod batch;
mod commit;
mod follow;
mod handles;
mod inodes;
mod listing;
mod make;
mod moves;
mod namespace;
mod push;
mod read;
mod trim;
mod view;
mod writeback;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use fvfs_cas::ChunkId;
use fvfs_node::{Entry, EntryKind};
pub use rustix::io::Errno;

pub use self::attrs::SetAttr;
pub use self::commit::Committer;
use self::follow::LiveRoot;
pub use self::follow::{Follower, LIVE_TTL};
pub use self::handles::{Opened, ReadOpen, Released};
pub use self::inodes::Handed;
use self::inodes::{Inodes, View, ROOT, SNAPSHOTS, SNAPSHOTS_NAME};
pub use self::push::KernelSlot;
pub use self::read::content_key;
pub use self::trim::Trimmer;
pub use self::view::Attr;
use self::writeback::Writing;
use super::cache::ChunkCache;
use super::ids::IdMap;
use super::remote::Remote;
use super::FastMap;

/// The longest name a directory entry may have, as on Linux's local file systems.
const NAME_MAX: usize = 255;

/// What the core tells the kernel (through FUSE notifications, in the adapter).
/// A call about something the kernel does not cache fails with
/// [`std::io::ErrorKind::NotFound`], which needs no handling.
pub trait Kernel: Send + Sync {
    /// Forget what it knows of name `name` in folder `dir`.
    fn forget_name(&self, dir: u64, name: &[u8]) -> std::io::Result<()>;
    /// Forget the attributes and every cached page of inode `ino`.
    fn forget_inode(&self, ino: u64) -> std::io::Result<()>;
    /// Take `data` as the content of inode `ino` into its page cache.
    fn store(&self, ino: u64, data: &[u8]) -> std::io::Result<()>;
}

/// A path in the tree whose root is the id.
type TreePath = (ChunkId, Box<[u8]>);

/// The mount's state and every operation on it.
pub struct Core {
    rt: tokio::runtime::Handle,
    remote: Remote,
    read_only: bool,
    uid: u32,
    gid: u32,
    inodes: Arc<Mutex<Inodes>>,
    /// Held exclusively by operations that move or remove names (see [`namespace`]).
    names: Arc<RwLock<()>>,
    live: Arc<LiveRoot>,
    /// Commits write-backs (also from the background retry, with the same parts).
    commits: Committer,
    snapshots: Mutex<HashMap<String, ChunkId>>,
    /// Directory node of each directory path of a tree (by root) looked up lately.
    dir_ids: Mutex<FastMap<TreePath, ChunkId>>,
    handles: Mutex<HashMap<u64, handles::Handle>>,
    /// Open directories' listings, by handle.
    listings: Mutex<HashMap<u64, listing::Listing>>,
    writing: Arc<Writing>,
    /// Owners as stored and as this machine numbers them.
    ids: IdMap,
    pusher: push::Pusher,
    next_fh: AtomicU64,
}

/// Runs `f` to completion on this thread, polling it once before `block_on`.
fn block_on<T>(rt: &tokio::runtime::Handle, f: impl std::future::Future<Output = T>) -> T {
    let _runtime = rt.enter();
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => rt.block_on(f),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ns() -> i64 {
    fvfs_node::time_ns(SystemTime::now())
}

/// A name a directory entry may have.
fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    if !fvfs_node::valid_name(name) {
        return Err(Errno::INVAL);
    }
    Ok(())
}

fn dir_entry(mode: u32) -> Entry {
    Entry::dir(mode, 0)
}

/// For an operation on an inode: a path that is gone now (another client removed it
/// since the kernel looked it up) is a stale handle, not a missing file. The kernel
/// then looks the name up again and retries once, so an open with O_CREAT creates the
/// file instead of failing with ENOENT.
fn stale(e: Errno) -> Errno {
    if e == Errno::NOENT {
        Errno::STALE
    } else {
        e
    }
}

impl Core {
    /// The core of a mount of `remote`'s tree, its write-backs staged in `staging`.
    pub fn new(
        rt: tokio::runtime::Handle,
        remote: Remote,
        staging: PathBuf,
        read_only: bool,
        ids: IdMap,
    ) -> Self {
        let commits = Committer::new(
            rt.clone(),
            remote.clone(),
            Arc::new(Mutex::new(Inodes::new())),
            Arc::default(),
            staging,
        );
        let pusher = push::Pusher::new(commits.inodes.clone(), remote.cache.clone());
        Self {
            rt,
            remote,
            read_only,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            inodes: commits.inodes.clone(),
            names: commits.names.clone(),
            live: commits.live.clone(),
            writing: commits.writing.clone(),
            commits,
            snapshots: Mutex::new(HashMap::new()),
            dir_ids: Mutex::default(),
            handles: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            ids,
            pusher,
            next_fh: AtomicU64::new(1),
        }
    }

    /// The follower of this mount's live tree (to run once the kernel can be told).
    pub fn follower(&self) -> Follower {
        Follower::new(self.remote.clone(), self.live.clone(), self.inodes.clone())
    }

    /// What keeps the inode table (and so the kernel's inodes of this mount) within
    /// `budget` inodes.
    pub fn trimmer(&self, budget: usize) -> Trimmer {
        Trimmer::new(self.inodes.clone(), budget)
    }

    /// Where the session's notifier goes once the mount exists, so that files can be
    /// pushed into the kernel's cache ahead of a walk ([`push`]).
    pub fn kernel(&self) -> KernelSlot {
        self.pusher.kernel()
    }

    /// What commits this mount's write-backs, for the background retry.
    pub fn committer(&self) -> Committer {
        self.commits.clone()
    }

    /// The chunk cache the mount reads through.
    pub fn cache(&self) -> &Arc<ChunkCache> {
        &self.remote.cache
    }

    /// Runs `f` to completion on this (FUSE) thread. Most calls find what they need in
    /// memory and complete at the first poll: they skip `block_on`'s parking and
    /// per-call setup, which cost a warm walk about a seventh of fvfsc's CPU.
    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        block_on(&self.rt, f)
    }

    /// The attributes of `name` in `parent`, and how long the kernel may keep them.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<(Attr, Duration), Errno> {
        let since = self.live.generation();
        let (view, attr) = self.look_up(parent, name)?;
        Ok((attr, self.ttl(&view, since)))
    }

    fn look_up(&self, parent: u64, name: &[u8]) -> Result<(View, Attr), Errno> {
        if parent == ROOT && name == SNAPSHOTS_NAME {
            let attr = self.attr(SNAPSHOTS, &View::SnapshotList, &dir_entry(0o555));
            return Ok((View::SnapshotList, attr));
        }
        check_name(name)?;
        let (view, dir) = self.locate(parent)?;
        // A file created here and not committed yet is known here only.
        let known = lock(&self.inodes).known(parent, name);
        if let Some(ino) = known.filter(|ino| self.writing.get(*ino).is_some()) {
            let attr = self.stat(ino)?;
            lock(&self.inodes).child(parent, name, EntryKind::File, None, true);
            return Ok((View::Live, attr));
        }
        let (view, path) = match view {
            View::SnapshotList => (
                View::Snapshot(String::from_utf8_lossy(name).into_owned()),
                b"/".to_vec(),
            ),
            view => (view, fvfs_node::path::join(&dir, name)),
        };
        let entry = self.entry(&view, &path)?;
        let link = entry.link.map(|l| l.id);
        let ino = lock(&self.inodes).child(parent, name, entry.kind, link, true);
        Ok((view.clone(), self.attr(ino, &view, &entry)))
    }

    /// The kernel forgets `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        lock(&self.inodes).forget(ino, n);
    }

    /// The attributes of `ino` (as opened, for a file open for reading as `fh`), and
    /// how long the kernel may keep them.
    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> Result<(Attr, Duration), Errno> {
        let since = self.live.generation();
        let opened = fh.and_then(|fh| self.opened_entry(fh));
        // A detached inode (unlinked) is shown as live, with no links.
        let located = lock(&self.inodes).locate(ino);
        let view = located.as_ref().map_or(View::Live, |(v, _)| v.clone());
        let attr = match opened {
            // fstat of a file open for reading: as opened (also once unlinked).
            Some(entry) => {
                let mut attr = self.attr(ino, &view, &entry);
                if located.is_none() {
                    attr.nlink = 0;
                }
                attr
            }
            None => self.stat(ino).map_err(stale)?,
        };
        Ok((attr, self.ttl(&view, since)))
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let (view, path) = self.locate(ino).map_err(stale)?;
        let entry = self.entry(&view, &path).map_err(stale)?;
        if entry.kind != EntryKind::Symlink {
            return Err(Errno::INVAL);
        }
        Ok(entry.target)
    }

    /// Commits everything closed on the mount and staged (fsync of a directory: more
    /// than the directory's own entries).
    pub fn sync_all(&self) -> Result<(), Errno> {
        match self.commits.commit_queued() {
            true => Ok(()),
            false => Err(Errno::IO),
        }
    }

    /// A caller's user and group as stored.
    fn stored(&self, caller: (u32, u32)) -> (u32, u32) {
        self.ids.stored(caller)
    }
}
