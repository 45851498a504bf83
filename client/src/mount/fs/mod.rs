//! The FUSE file system: the live tree at the mount's root, every snapshot read-only
//! under `/.snapshots/<name>/`, loaded lazily through the chunk cache.
//!
//! Its rooms: the inode table ([`inodes`]), the trees it shows ([`view`]), the read
//! path ([`read`]), write-back files ([`writeback`]), their commits and conflicts
//! ([`commit`]) in batches ([`batch`]), changes to the tree ([`namespace`]), and the follower of HEAD
//! ([`follow`]); this module answers the kernel.
//!
//! # Invariants
//! - An inode is a name in a directory of one view: the live tree (whose root is
//!   HEAD, followed by [`follow`] and after this mount's own commits) or one snapshot
//!   (immutable). The kernel caches both for long: it is told what changed in the
//!   live tree.
//! - Writes go to a local write-back file of the inode. close() returns once a changed
//!   file is journaled there; batches commit what was closed ([`batch`]), chunked
//!   here with only the chunks the daemon lacks sent, where each inode is then. fsync
//!   commits the file at once and returns after the daemon made the commit durable.
//! - Every chunk is verified against its id before use (in [`super::remote`]).

mod batch;
mod commit;
mod follow;
mod inodes;
mod listing;
mod namespace;
mod push;
mod read;
mod view;
mod writeback;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use fvfs_api::commit::CommitOp;
use fvfs_api::path::encode_path;
use fvfs_cas::ChunkId;
use fvfs_node::{Entry, EntryKind, Meta};

pub use self::commit::Committer;
pub use self::follow::Follower;
use self::follow::LiveRoot;
use self::inodes::{Inodes, View, ROOT, SNAPSHOTS, SNAPSHOTS_NAME};
use self::namespace::{new_meta, SetAttr};
use self::writeback::{WriteBack, Writing};
use super::backing::Backing;
use super::ids::IdMap;
use super::remote::Remote;
use super::FastMap;

/// The longest name a directory entry may have, as on Linux's local file systems.
const NAME_MAX: usize = 255;

/// An open file.
enum Handle {
    /// Read-only: the file's entry as opened, its chunks and where each starts, and
    /// how far ahead its reads are fetched.
    Read(Arc<Entry>, read::Chunks, Arc<read::Ahead>),
    /// Read-only, read by the kernel from a backing file of inode `ino`.
    Passthrough { ino: u64, entry: Arc<Entry> },
    /// Read-write through inode `ino`'s write-back file.
    Write { ino: u64, wb: Arc<Mutex<WriteBack>> },
}

/// A path in the tree whose root is the id.
type TreePath = (ChunkId, Box<[u8]>);

pub struct FvfsFs {
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
    handles: Mutex<HashMap<u64, Handle>>,
    /// Open directories' listings, by handle.
    listings: Mutex<HashMap<u64, listing::Listing>>,
    writing: Arc<Writing>,
    backing: Backing,
    /// Owners as stored and as this machine numbers them.
    ids: IdMap,
    /// Whether the kernel takes backing files (FUSE passthrough, Linux 6.9 and later).
    passthrough: bool,
    /// Inodes open through the kernel, by inode.
    backed: Mutex<HashMap<u64, read::Backed>>,
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
        return Err(Errno::ENAMETOOLONG);
    }
    if !fvfs_node::valid_name(name) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn dir_entry(mode: u32) -> Entry {
    Entry::dir(mode, 0)
}

impl FvfsFs {
    pub fn new(
        rt: tokio::runtime::Handle,
        remote: Remote,
        staging: PathBuf,
        backing: Backing,
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
            backing,
            ids,
            passthrough: false,
            backed: Mutex::default(),
            pusher,
            next_fh: AtomicU64::new(1),
        }
    }

    /// The follower of this mount's live tree (to run once the kernel can be told).
    pub fn follower(&self) -> Follower {
        Follower::new(self.remote.clone(), self.live.clone(), self.inodes.clone())
    }

    /// Where the session's notifier goes once the mount exists, so that files can be
    /// pushed into the kernel's cache ahead of a walk ([`push`]).
    pub fn kernel(&self) -> push::Kernel {
        self.pusher.kernel()
    }

    /// What commits this mount's write-backs, for the background retry.
    pub fn committer(&self) -> Committer {
        self.commits.clone()
    }

    /// Runs `f` to completion on this (FUSE) thread. Most calls find what they need in
    /// memory and complete at the first poll: they skip `block_on`'s parking and
    /// per-call setup, which cost a warm walk about a seventh of fvfsc's CPU.
    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        block_on(&self.rt, f)
    }

    fn fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn handle(&self, h: Handle) -> FileHandle {
        let fh = self.fh();
        lock(&self.handles).insert(fh, h);
        FileHandle(fh)
    }

    /// The inode and attributes of `name` in `parent`.
    fn look_up(&self, parent: u64, name: &[u8]) -> Result<(View, fuser::FileAttr), Errno> {
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

    /// Commits what handle `fh` wrote now (`at_once`, for fsync), or queues it for the
    /// next batch (close).
    fn sync_handle(&self, fh: FileHandle, at_once: bool) -> Result<(), Errno> {
        let (ino, wb) = match lock(&self.handles).get(&fh.0) {
            Some(Handle::Write { ino, wb }) => (*ino, wb.clone()),
            Some(Handle::Read(..) | Handle::Passthrough { .. }) => return Ok(()),
            None => return Err(Errno::EBADF),
        };
        // What the file depends on (its folder made here, a file closed before it) is
        // committed first, in order.
        if at_once && !self.commits.commit_queued() {
            return Err(Errno::EIO);
        }
        let mut w = lock(&wb);
        match at_once {
            true => self.write_back(ino, &mut w),
            false => self.commits.queue(ino, &mut w),
        }
    }
}

macro_rules! tri {
    ($reply:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(errno) => return $reply.error(errno),
        }
    };
}

impl Filesystem for FvfsFs {
    /// O_TRUNC arrives with open, so a truncating rewrite is committed together with
    /// its data (at flush or fsync), never first as an empty file: a crash between the
    /// two leaves the old content, not nothing.
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC) {
            tracing::warn!("kernel lacks {missing:?}: truncation is committed on its own");
        }
        // Listings come with attributes (and the kernel makes the inodes, which files
        // pushed into its cache need): a walk looks nothing up. Not READDIRPLUS_AUTO,
        // with which a large folder's later pieces come as names only, each then
        // looked up on its own.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS) {
            tracing::info!("kernel lacks {missing:?}: every listed name is looked up");
        }
        // Large cached files are read by the kernel from backing files; without
        // passthrough they are read through FUSE as before.
        self.passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        if !self.passthrough {
            tracing::info!("kernel without FUSE passthrough: every read goes through fvfsc");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let since = self.live.generation();
        let (view, attr) = tri!(reply, self.look_up(u64::from(parent), name.as_bytes()));
        reply.entry(&self.ttl(&view, since), &attr, Generation(0));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.inodes).forget(u64::from(ino), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let (ino, since) = (u64::from(ino), self.live.generation());
        let opened = fh.and_then(|fh| match lock(&self.handles).get(&fh.0) {
            Some(Handle::Read(entry, ..) | Handle::Passthrough { entry, .. }) => {
                Some(entry.clone())
            }
            _ => None,
        });
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
            None => tri!(reply, self.stat(ino).map_err(stale)),
        };
        reply.attr(&self.ttl(&view, since), &attr);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let (view, path) = tri!(reply, self.locate(u64::from(ino)).map_err(stale));
        let entry = tri!(reply, self.entry(&view, &path).map_err(stale));
        if entry.kind != EntryKind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        reply.data(&entry.target);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(self.fh()), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let window = tri!(reply, self.listed(fh.0, u64::from(ino), offset, false));
        for (i, (item, _)) in window.items.iter().enumerate() {
            let next = offset + i as u64 + 1;
            if reply.add(
                INodeNo(item.ino),
                next,
                view::file_type(item.kind),
                item.name(),
            ) {
                break;
            }
        }
        reply.ok();
    }

    /// Names with their attributes: a walk that stats what it lists (tar, ls -l, rsync)
    /// needs no lookup per name.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let window = tri!(reply, self.listed(fh.0, u64::from(ino), offset, true));
        let dir = u64::from(ino);
        for (i, (item, attr)) in window.items.iter().enumerate() {
            let Some(attr) = attr else { break };
            let next = offset + i as u64 + 1;
            let handed = match item.is_dot() {
                true => Some(item.ino),
                false => {
                    lock(&self.inodes).hand_out(item.ino, dir, &item.name, item.kind, item.link)
                }
            };
            let Some(ino) = handed else { continue };
            let attr = fuser::FileAttr {
                ino: INodeNo(ino),
                ..*attr
            };
            if reply.add(
                INodeNo(ino),
                next,
                item.name(),
                &window.ttl,
                &attr,
                Generation(0),
            ) {
                if !item.is_dot() {
                    lock(&self.inodes).forget(ino, 1);
                }
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.close_listing(fh.0);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let ino = u64::from(ino);
        let truncate = flags.0 & O_TRUNC != 0;
        if flags.acc_mode() != OpenAccMode::O_RDONLY || truncate {
            let wb = tri!(reply, self.open_write(ino, !truncate).map_err(stale));
            if truncate {
                let mut w = lock(&wb);
                if let Err(e) = w.set_len(0) {
                    drop(w);
                    tracing::warn!("truncating a write-back: {e}");
                    let failed = self.close_write(ino, &wb, Err(Errno::EIO));
                    return reply.error(failed.err().unwrap_or(Errno::EIO));
                }
            }
            return reply.opened(self.handle(Handle::Write { ino, wb }), FopenFlags::empty());
        }
        if self.writing.get(ino).is_some() {
            // Being written here: read what is written (joining the write-back).
            let wb = tri!(reply, self.open_write(ino, true).map_err(stale));
            return reply.opened(self.handle(Handle::Write { ino, wb }), FopenFlags::empty());
        }
        let (entry, chunks, keep) = tri!(reply, self.open_read(ino).map_err(stale));
        let entry = Arc::new(entry);
        if let Some(id) = self.passthrough(ino, &entry, &chunks, &reply) {
            let fh = self.handle(Handle::Passthrough { ino, entry });
            return reply.opened_passthrough(fh, FopenFlags::FOPEN_NOFLUSH, &id);
        }
        let read = Handle::Read(entry, chunks, Arc::default());
        reply.opened(self.handle(read), keep);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (chunks, staged) = match lock(&self.handles).get(&fh.0) {
            Some(Handle::Read(_, chunks, ahead)) => (Some((chunks.clone(), ahead.clone())), None),
            Some(Handle::Write { wb, .. }) => (None, Some(wb.clone())),
            // Passthrough handles are read by the kernel itself.
            Some(Handle::Passthrough { .. }) | None => return reply.error(Errno::EBADF),
        };
        if let Some((chunks, ahead)) = chunks {
            let data = tri!(reply, self.read_chunks(&chunks, &ahead, offset, size));
            return reply.data(&data);
        }
        if let Some(wb) = staged {
            let w = lock(&wb);
            let mut buf = vec![0u8; size as usize];
            let n = tri!(
                reply,
                w.file.read_at(&mut buf, offset).map_err(|_| Errno::EIO)
            );
            reply.data(&buf[..n]);
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let wb = match lock(&self.handles).get(&fh.0) {
            Some(Handle::Write { wb, .. }) => wb.clone(),
            _ => return reply.error(Errno::EBADF),
        };
        let mut w = lock(&wb);
        tri!(
            reply,
            w.write_at(data, offset).map_err(|e| {
                if e.kind() == std::io::ErrorKind::StorageFull {
                    Errno::ENOSPC
                } else {
                    Errno::EIO
                }
            })
        );
        let now = now_ns();
        w.touch();
        w.attrs.mtime_ns = now;
        if let Some(meta) = &mut w.attrs.meta {
            meta.ctime_ns = now;
        }
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        tri!(reply, self.sync_handle(fh, false));
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        tri!(reply, self.sync_handle(fh, true));
        reply.ok();
    }

    /// fsync of a directory: whatever was closed on the mount and waits for a batch
    /// is committed now (more than the directory's own entries; those made or moved
    /// by mkdir, rename and the like are committed as they happen).
    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.commits.commit_queued() {
            true => reply.ok(),
            false => reply.error(Errno::EIO),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let Some(handle) = lock(&self.handles).remove(&fh.0) else {
            return reply.ok();
        };
        match handle {
            Handle::Write { ino, wb } => {
                let result = self.commits.queue(ino, &mut lock(&wb));
                // The last user removes the write-back (kept while uncommitted, for a batch).
                tri!(reply, self.close_write(ino, &wb, result));
            }
            Handle::Passthrough { ino, .. } => self.passthrough_closed(ino),
            Handle::Read(..) => {}
        }
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = mode & !umask & 0o7777;
        let (ino, wb) = tri!(
            reply,
            self.create_file(u64::from(parent), name.as_bytes(), mode, self.owner(req))
        );
        let attr = match self.stat(ino) {
            Ok(attr) => attr,
            Err(e) => {
                let failed = self.close_write(ino, &wb, Err(e));
                return reply.error(failed.err().unwrap_or(e));
            }
        };
        let fh = self.handle(Handle::Write { ino, wb });
        reply.created(
            &follow::LIVE_TTL,
            &attr,
            Generation(0),
            fh,
            FopenFlags::empty(),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !umask & 0o7777;
        let now = now_ns();
        let attr = tri!(
            reply,
            self.make(u64::from(parent), name.as_bytes(), "mkdir", |path| {
                Ok(CommitOp::Mkdir {
                    path: encode_path(path),
                    mode,
                    mtime_ns: now,
                    meta: Some(new_meta(self.owner(req), now)),
                })
            })
        );
        reply.entry(&follow::LIVE_TTL, &attr, Generation(0));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let now = now_ns();
        let attr = tri!(
            reply,
            self.make(u64::from(parent), name.as_bytes(), "symlink", |path| {
                Ok(CommitOp::Symlink {
                    path: encode_path(path),
                    target: encode_path(target.as_os_str().as_bytes()),
                    mode: 0o777,
                    mtime_ns: now,
                    meta: Some(new_meta(self.owner(req), now)),
                    link: None,
                })
            })
        );
        reply.entry(&follow::LIVE_TTL, &attr, Generation(0));
    }

    /// FIFOs, sockets and devices are names with metadata in the tree; the kernel
    /// serves what is opened through them on the machine that opens it. A regular file
    /// made this way is an empty file.
    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match mode & S_IFMT {
            S_IFIFO => EntryKind::Fifo,
            S_IFSOCK => EntryKind::Socket,
            S_IFCHR => EntryKind::CharDevice,
            S_IFBLK => EntryKind::BlockDevice,
            S_IFREG => EntryKind::File,
            _ => return reply.error(Errno::EINVAL),
        };
        let perm = mode & !umask & 0o7777;
        let now = now_ns();
        let meta = Meta {
            rdev: u64::from(rdev),
            ..new_meta(self.owner(req), now)
        };
        let attr = tri!(
            reply,
            self.make(u64::from(parent), name.as_bytes(), "mknod", |path| {
                let path = encode_path(path);
                Ok(match kind {
                    EntryKind::File => CommitOp::File {
                        path,
                        mode: perm,
                        mtime_ns: now,
                        size: 0,
                        node: None,
                        chunks: Vec::new(),
                        meta: Some(meta),
                        link: None,
                        expect: None,
                    },
                    kind => CommitOp::Special {
                        path,
                        kind,
                        mode: perm,
                        mtime_ns: now,
                        meta: Some(meta),
                        link: None,
                    },
                })
            })
        );
        reply.entry(&follow::LIVE_TTL, &attr, Generation(0));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let meta = tri!(reply, self.meta(u64::from(ino)));
        let value = tri!(
            reply,
            meta.as_ref()
                .and_then(|m| m.xattr(name.as_bytes()))
                .ok_or(Errno::NO_XATTR)
        );
        xattr_reply(reply, value, size);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let meta = tri!(reply, self.meta(u64::from(ino)));
        let mut names = Vec::new();
        for x in meta.iter().flat_map(|m| &m.xattrs) {
            names.extend_from_slice(&x.name);
            names.push(0);
        }
        xattr_reply(reply, &names, size);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        // POSIX ACLs (system.posix_acl_*) are not kept: refused as a file system
        // without ACLs refuses them, so cp, tar and rsync set the mode bits instead.
        if name.as_bytes().starts_with(b"system.") {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let set = SetAttr {
            xattr: Some((name.as_bytes().to_vec(), Some(value.to_vec()), flags)),
            ..SetAttr::default()
        };
        tri!(reply, self.set_attrs(u64::from(ino), &set).map_err(stale));
        reply.ok();
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let set = SetAttr {
            xattr: Some((name.as_bytes().to_vec(), None, 0)),
            ..SetAttr::default()
        };
        tri!(reply, self.set_attrs(u64::from(ino), &set).map_err(stale));
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tri!(
            reply,
            self.remove(u64::from(parent), name.as_bytes(), false)
        );
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tri!(reply, self.remove(u64::from(parent), name.as_bytes(), true));
        reply.ok();
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ino = u64::from(ino);
        let set = SetAttr {
            size,
            mode,
            mtime_ns: mtime.map(|t| match t {
                TimeOrNow::Now => now_ns(),
                TimeOrNow::SpecificTime(t) => fvfs_node::time_ns(t),
            }),
            uid: uid.map(|u| self.ids.stored_uid(u)),
            gid: gid.map(|g| self.ids.stored_gid(g)),
            xattr: None,
        };
        if size.is_some() || mode.is_some() || mtime.is_some() || uid.is_some() || gid.is_some() {
            tri!(reply, self.set_attrs(ino, &set).map_err(stale));
        }
        let attr = tri!(reply, self.stat(ino).map_err(stale));
        reply.attr(&follow::LIVE_TTL, &attr);
    }

    /// A hard link becomes a second entry sharing the file's content (no extra space);
    /// the two are separate files afterwards, as when migrate imports hard links.
    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let attr = tri!(
            reply,
            self.link(u64::from(ino), u64::from(newparent), newname.as_bytes())
        );
        reply.entry(&follow::LIVE_TTL, &attr, Generation(0));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let no_replace = flags == fuser::RenameFlags::RENAME_NOREPLACE;
        if !flags.is_empty() && !no_replace {
            return reply.error(Errno::EINVAL);
        }
        tri!(
            reply,
            self.rename(
                u64::from(parent),
                name.as_bytes(),
                u64::from(newparent),
                newname.as_bytes(),
                no_replace,
            )
        );
        reply.ok();
    }
}

impl FvfsFs {
    /// The caller's user and group, as stored.
    fn owner(&self, req: &Request) -> (u32, u32) {
        self.ids.stored((req.uid(), req.gid()))
    }

    /// Inode `ino`'s meta: of its write-back if it is being written here, else of its
    /// entry.
    fn meta(&self, ino: u64) -> Result<Option<Meta>, Errno> {
        if let Some(wb) = self.writing.get(ino) {
            return Ok(lock(&wb).attrs.meta.clone());
        }
        let (view, path) = self.locate(ino).map_err(stale)?;
        if view == View::SnapshotList || (view == View::Live && path == b"/") {
            return Ok(None);
        }
        Ok(self.entry(&view, &path).map_err(stale)?.meta.map(|m| *m))
    }
}

/// For an operation on an inode: a path that is gone now (another client removed it
/// since the kernel looked it up) is a stale handle, not a missing file. The kernel
/// then looks the name up again and retries once, so an open with O_CREAT creates the
/// file instead of failing with ENOENT.
fn stale(e: Errno) -> Errno {
    if e == Errno::ENOENT {
        Errno::ESTALE
    } else {
        e
    }
}

/// An extended attribute's value or a list of names, as getxattr(2) and listxattr(2)
/// answer: the size alone when asked with size 0.
fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

/// O_TRUNC, as the kernel passes it in open flags.
const O_TRUNC: i32 = 0o1000;
/// File types in a mode, as mknod(2) passes them.
const S_IFMT: u32 = 0o170000;
const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const S_IFSOCK: u32 = 0o140000;
