//! The FUSE file system: the live tree at the mount's root, every snapshot read-only
//! under `/.snapshots/<name>/`, loaded lazily through the chunk cache.
//!
//! # Invariants
//! - An inode names a (view, path) pair; a view is the live tree (whose root is HEAD,
//!   re-read after at most [`LIVE_TTL`] and after this mount's own commits) or one
//!   snapshot (immutable: attributes and content are cached by the kernel for long).
//! - Writes go to a local write-back file; on fsync, flush and close a changed file is
//!   chunked, only the chunks the daemon lacks are sent, and the file is committed at
//!   its path. fsync returns after the daemon made the commit durable.
//! - Every chunk is verified against its id before use (in [`super::remote`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use fvfs_api::commit::CommitOp;
use fvfs_api::path::encode_path;
use fvfs_cas::ChunkId;
use fvfs_node::{path as fpath, ChunkRef, Entry, EntryKind};

use super::remote::{Head, Remote};

/// How long the kernel and this mount trust what they know of the live tree.
pub const LIVE_TTL: Duration = Duration::from_secs(1);
/// Snapshots never change.
const SNAPSHOT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Chunks fetched ahead of a sequential reader (in batches of at least half of them).
const READ_AHEAD: usize = 32;
const SNAPSHOTS: &[u8] = b".snapshots";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum View {
    Live,
    /// `/.snapshots` itself.
    SnapshotList,
    Snapshot(String),
}

struct Inodes {
    by_key: HashMap<(View, Vec<u8>), u64>,
    by_ino: HashMap<u64, (View, Vec<u8>)>,
    /// The content each inode had when last opened for reading (see `open`).
    content: HashMap<u64, [u8; 32]>,
    next: u64,
}

impl Inodes {
    /// The live paths `from` and below are now at `to`.
    fn moved(&mut self, from: &[u8], to: &[u8]) {
        let under =
            |p: &[u8]| p == from || (p.starts_with(from) && p.get(from.len()) == Some(&b'/'));
        let moved: Vec<(u64, Vec<u8>)> = self
            .by_ino
            .iter()
            .filter(|(_, (v, p))| *v == View::Live && under(p))
            .map(|(ino, (_, p))| (*ino, p.clone()))
            .collect();
        for (ino, old) in moved {
            let mut new = to.to_vec();
            new.extend_from_slice(&old[from.len()..]);
            self.by_key.remove(&(View::Live, old));
            // Whatever was at the destination is replaced.
            if let Some(gone) = self.by_key.insert((View::Live, new.clone()), ino) {
                self.by_ino.remove(&gone);
            }
            self.by_ino.insert(ino, (View::Live, new));
        }
    }

    fn ino(&mut self, view: View, path: Vec<u8>) -> u64 {
        if let Some(ino) = self.by_key.get(&(view.clone(), path.clone())) {
            return *ino;
        }
        self.next += 1;
        self.by_key.insert((view.clone(), path.clone()), self.next);
        self.by_ino.insert(self.next, (view, path));
        self.next
    }
}

/// An open file.
enum Handle {
    /// Read-only: the file's chunks and where each starts.
    Read { chunks: Arc<Vec<(u64, ChunkRef)>> },
    /// Read-write through a local write-back file.
    Write(Arc<Mutex<WriteBack>>),
}

struct WriteBack {
    path: Vec<u8>,
    file: File,
    local: PathBuf,
    mode: u32,
    mtime_ns: i64,
    dirty: bool,
}

pub struct FvfsFs {
    rt: tokio::runtime::Handle,
    remote: Remote,
    staging: PathBuf,
    read_only: bool,
    uid: u32,
    gid: u32,
    inodes: Mutex<Inodes>,
    live: Mutex<Option<(Option<Head>, Instant)>>,
    snapshots: Mutex<HashMap<String, ChunkId>>,
    handles: Mutex<HashMap<u64, Handle>>,
    /// Files being written here, by live path: seen by lookups before they are committed.
    /// Lock order: this map before any write-back's own lock.
    writing: Mutex<HashMap<Vec<u8>, Arc<Mutex<WriteBack>>>>,
    next_fh: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ns() -> i64 {
    fvfs_node::time_ns(SystemTime::now())
}

fn child(parent: &[u8], name: &OsStr) -> Result<Vec<u8>, Errno> {
    let name = name.as_bytes();
    if !fvfs_node::valid_name(name) {
        return Err(Errno::EINVAL);
    }
    Ok(fpath::join(parent, name))
}

fn dir_entry(mode: u32) -> Entry {
    Entry {
        name: Vec::new(),
        kind: EntryKind::Dir,
        mode,
        mtime_ns: 0,
        size: 0,
        id: None,
        chunks: Vec::new(),
        target: Vec::new(),
    }
}

impl FvfsFs {
    pub fn new(
        rt: tokio::runtime::Handle,
        remote: Remote,
        staging: PathBuf,
        read_only: bool,
    ) -> Self {
        let mut inodes = Inodes {
            by_key: HashMap::new(),
            by_ino: HashMap::new(),
            content: HashMap::new(),
            next: 1,
        };
        inodes.by_key.insert((View::Live, b"/".to_vec()), 1);
        inodes.by_ino.insert(1, (View::Live, b"/".to_vec()));
        Self {
            rt,
            remote,
            staging,
            read_only,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            inodes: Mutex::new(inodes),
            live: Mutex::new(None),
            snapshots: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            writing: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    fn node(&self, ino: INodeNo) -> Result<(View, Vec<u8>), Errno> {
        lock(&self.inodes)
            .by_ino
            .get(&u64::from(ino))
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    fn ttl(view: &View) -> Duration {
        match view {
            View::Live => LIVE_TTL,
            _ => SNAPSHOT_TTL,
        }
    }

    /// HEAD's root, re-read after [`LIVE_TTL`]. While the daemon does not answer, the
    /// last root known stays in use (retried at every call), so what is cached stays
    /// readable offline.
    fn live_root(&self) -> Result<Option<ChunkId>, Errno> {
        let known = *lock(&self.live);
        if let Some((head, at)) = known {
            if at.elapsed() < LIVE_TTL {
                return Ok(head.map(|h| h.root));
            }
        }
        match self.block(self.remote.version("HEAD")) {
            Ok(head) => Ok(self.saw_head(head)),
            Err(Errno::EIO) if known.is_some() => Ok(known.and_then(|(h, _)| h.map(|h| h.root))),
            Err(e) => Err(e),
        }
    }

    /// Follows HEAD to `head` unless a newer version is known already: answers to
    /// concurrent commits arrive in any order, and an older one must not bring back a
    /// tree without the other's file. Returns the root now followed.
    fn saw_head(&self, head: Option<Head>) -> Option<ChunkId> {
        let mut live = lock(&self.live);
        let known = live.and_then(|(h, _)| h);
        let follow = match (known, head) {
            (Some(k), Some(h)) if h.number < k.number => known,
            _ => head,
        };
        *live = Some((follow, Instant::now()));
        follow.map(|h| h.root)
    }

    fn snapshot_root(&self, name: &str) -> Result<ChunkId, Errno> {
        if let Some(root) = lock(&self.snapshots).get(name) {
            return Ok(*root);
        }
        let root = self
            .block(self.remote.version(name))?
            .ok_or(Errno::ENOENT)?
            .root;
        lock(&self.snapshots).insert(name.to_owned(), root);
        Ok(root)
    }

    /// The directory entry at `path` of `view`.
    fn entry(&self, view: &View, path: &[u8]) -> Result<Entry, Errno> {
        let root = match view {
            View::SnapshotList => return Ok(dir_entry(0o555)),
            View::Live => match self.live_root()? {
                Some(r) => r,
                None if path == b"/" => return Ok(dir_entry(0o755)),
                None => return Err(Errno::ENOENT),
            },
            View::Snapshot(name) => self.snapshot_root(name)?,
        };
        let mut entry = Entry {
            id: Some(root),
            ..dir_entry(0o755)
        };
        for name in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            if entry.kind != EntryKind::Dir {
                return Err(Errno::ENOTDIR);
            }
            let dir = self.block(self.remote.dir(entry.id.ok_or(Errno::EIO)?))?;
            let at = dir
                .entries
                .binary_search_by(|e| e.name.as_slice().cmp(name))
                .map_err(|_| Errno::ENOENT)?;
            entry = dir.entries[at].clone();
        }
        Ok(entry)
    }

    fn attr(&self, ino: u64, view: &View, entry: &Entry) -> FileAttr {
        let (kind, nlink) = match entry.kind {
            EntryKind::Dir => (FileType::Directory, 2),
            EntryKind::File => (FileType::RegularFile, 1),
            EntryKind::Symlink => (FileType::Symlink, 1),
        };
        let mut perm = (entry.mode & 0o7777) as u16;
        if *view != View::Live || self.read_only {
            perm &= !0o222;
        }
        let size = match entry.kind {
            EntryKind::Symlink => entry.target.len() as u64,
            _ => entry.size,
        };
        let t = fvfs_node::system_time(entry.mtime_ns);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    /// Attributes of `ino`, counting a file being written here.
    fn stat(&self, ino: u64, view: &View, path: &[u8]) -> Result<FileAttr, Errno> {
        if *view == View::Live {
            let open = lock(&self.writing).get(path).cloned();
            if let Some(wb) = open {
                let wb = lock(&wb);
                let m = wb.file.metadata().map_err(|_| Errno::EIO)?;
                let entry = Entry {
                    kind: EntryKind::File,
                    mode: wb.mode,
                    mtime_ns: wb.mtime_ns,
                    size: m.len(),
                    ..dir_entry(0)
                };
                return Ok(self.attr(ino, view, &entry));
            }
        }
        let entry = self.entry(view, path)?;
        Ok(self.attr(ino, view, &entry))
    }

    fn writable(&self, view: &View) -> Result<(), Errno> {
        if *view != View::Live || self.read_only {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    fn commit(&self, what: &str, ops: Vec<CommitOp>) -> Result<(), Errno> {
        let head = self.block(self.remote.commit(what.to_owned(), ops))?;
        self.saw_head(Some(head));
        Ok(())
    }

    /// Uploads a changed write-back file and commits it at its path.
    fn write_back(&self, wb: &mut WriteBack) -> Result<(), Errno> {
        if !wb.dirty {
            return Ok(());
        }
        wb.file.sync_data().map_err(|_| Errno::EIO)?;
        let version = self.block(crate::put::put_file(
            &self.remote.api,
            &wb.local,
            &wb.path,
            wb.mode,
            wb.mtime_ns,
        ));
        let version = version.map_err(|e| {
            tracing::warn!("writing {}: {e:#}", fpath::show(&wb.path));
            match e.downcast_ref::<fvfs_api::client::Failure>() {
                Some(f) => super::remote::errno(f),
                None => Errno::EIO,
            }
        })?;
        self.saw_head(Some(Head::of(&version)?));
        wb.dirty = false;
        // The next open must not trust what the kernel cached of the old content.
        let mut inodes = lock(&self.inodes);
        if let Some(ino) = inodes.by_key.get(&(View::Live, wb.path.clone())).copied() {
            inodes.content.remove(&ino);
        }
        Ok(())
    }

    /// A write-back file for `path`, holding `initial` content (a live file's chunks).
    fn open_write(
        &self,
        path: &[u8],
        mode: u32,
        initial: Option<&Entry>,
    ) -> Result<Arc<Mutex<WriteBack>>, Errno> {
        if let Some(wb) = lock(&self.writing).get(path) {
            return Ok(wb.clone());
        }
        let local = self.staging.join(format!(
            "{}-{}",
            std::process::id(),
            self.next_fh.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&local)
            .map_err(|_| Errno::EIO)?;
        if let Some(entry) = initial {
            let chunks = self.block(self.remote.file_chunks(entry))?;
            let mut at = 0;
            for (_, c) in chunks.iter() {
                let data = self.block(self.remote.chunk(c.id))?;
                file.write_all_at(&data, at).map_err(|_| Errno::EIO)?;
                at += data.len() as u64;
            }
        }
        let wb = Arc::new(Mutex::new(WriteBack {
            path: path.to_vec(),
            file,
            local,
            mode,
            mtime_ns: initial.map_or_else(now_ns, |e| e.mtime_ns),
            dirty: initial.is_none(),
        }));
        lock(&self.writing).insert(path.to_vec(), wb.clone());
        Ok(wb)
    }

    /// Drops write-back `wb` from the files being written, and its local file. Takes
    /// the `writing` map without holding `wb`'s lock (the lock order), and finds the
    /// entry by identity: a rename may have moved it.
    fn forget_write(&self, wb: &Arc<Mutex<WriteBack>>) {
        lock(&self.writing).retain(|_, w| !Arc::ptr_eq(w, wb));
        let _ = std::fs::remove_file(&lock(wb).local);
    }

    fn handle(&self, h: Handle) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, h);
        FileHandle(fh)
    }

    fn read_chunks(
        &self,
        chunks: &[(u64, ChunkRef)],
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
        let end = offset.saturating_add(u64::from(size));
        let first = chunks.partition_point(|(start, c)| start + c.len <= offset);
        let wanted: Vec<(u64, ChunkRef)> = chunks[first..]
            .iter()
            .take_while(|(start, _)| *start < end)
            .copied()
            .collect();
        let ahead: Vec<ChunkId> = chunks[first + wanted.len()..]
            .iter()
            .take(READ_AHEAD)
            .map(|(_, c)| c.id)
            .collect();
        // Read-ahead: the next chunks come in one batch while the reader uses these.
        if let Some(batch) = self.remote.read_ahead(&ahead) {
            self.rt.spawn(batch);
        }
        let fetched = self.block(futures::future::try_join_all(
            wanted.iter().map(|(_, c)| self.remote.chunk(c.id)),
        ))?;
        let mut out = Vec::with_capacity(size as usize);
        for ((start, _), data) in wanted.iter().zip(fetched) {
            let from = offset.saturating_sub(*start) as usize;
            let to = ((end - start) as usize).min(data.len());
            if from < to {
                out.extend_from_slice(&data[from..to]);
            }
        }
        Ok(out)
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
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (view, path) = tri!(reply, self.node(parent));
        let (view, path) = match (&view, path.as_slice()) {
            (View::Live, b"/") if name.as_bytes() == SNAPSHOTS => {
                (View::SnapshotList, b"/".to_vec())
            }
            (View::SnapshotList, _) => (
                View::Snapshot(name.to_string_lossy().into_owned()),
                b"/".to_vec(),
            ),
            _ => (view, tri!(reply, child(&path, name))),
        };
        let ino = lock(&self.inodes).ino(view.clone(), path.clone());
        let attr = tri!(reply, self.stat(ino, &view, &path));
        reply.entry(&Self::ttl(&view), &attr, Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (view, path) = tri!(reply, self.node(ino));
        let attr = tri!(
            reply,
            self.stat(u64::from(ino), &view, &path).map_err(stale)
        );
        reply.attr(&Self::ttl(&view), &attr);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let (view, path) = tri!(reply, self.node(ino));
        let entry = tri!(reply, self.entry(&view, &path).map_err(stale));
        if entry.kind != EntryKind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        reply.data(&entry.target);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (view, path) = tri!(reply, self.node(ino));
        let mut list: Vec<(Vec<u8>, FileType, View, Vec<u8>)> = Vec::new();
        if view == View::SnapshotList {
            let snaps = tri!(reply, self.block(self.remote.snapshots()));
            for s in snaps {
                list.push((
                    s.name.clone().into_bytes(),
                    FileType::Directory,
                    View::Snapshot(s.name),
                    b"/".to_vec(),
                ));
            }
        } else {
            let entry = tri!(reply, self.entry(&view, &path).map_err(stale));
            if entry.kind != EntryKind::Dir {
                return reply.error(Errno::ENOTDIR);
            }
            if let Some(id) = entry.id {
                let dir = tri!(reply, self.block(self.remote.dir(id)));
                for e in dir.entries.iter().cloned() {
                    let kind = match e.kind {
                        EntryKind::Dir => FileType::Directory,
                        EntryKind::File => FileType::RegularFile,
                        EntryKind::Symlink => FileType::Symlink,
                    };
                    let p = fpath::join(&path, &e.name);
                    list.push((e.name, kind, view.clone(), p));
                }
            }
            if view == View::Live && path == b"/" {
                list.push((
                    SNAPSHOTS.to_vec(),
                    FileType::Directory,
                    View::SnapshotList,
                    b"/".to_vec(),
                ));
            }
        }
        let mut all = vec![
            (b".".to_vec(), FileType::Directory, u64::from(ino)),
            (b"..".to_vec(), FileType::Directory, 1),
        ];
        {
            let mut inodes = lock(&self.inodes);
            for (name, kind, v, p) in list {
                all.push((name, kind, inodes.ino(v, p)));
            }
        }
        for (i, (name, kind, ino)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (view, path) = tri!(reply, self.node(ino));
        let writing = flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc_trunc() != 0;
        if writing {
            tri!(reply, self.writable(&view));
            let truncate = flags.0 & libc_trunc() != 0;
            let in_progress = lock(&self.writing).get(&path).cloned();
            let wb = match in_progress {
                Some(wb) => wb,
                None => {
                    let entry = tri!(reply, self.entry(&view, &path).map_err(stale));
                    if entry.kind == EntryKind::Dir {
                        return reply.error(Errno::EISDIR);
                    }
                    let initial = (!truncate).then_some(&entry);
                    tri!(reply, self.open_write(&path, entry.mode, initial))
                }
            };
            if truncate {
                let mut w = lock(&wb);
                tri!(reply, w.file.set_len(0).map_err(|_| Errno::EIO));
                w.dirty = true;
            }
            return reply.opened(self.handle(Handle::Write(wb)), FopenFlags::empty());
        }
        if let Some(wb) = lock(&self.writing).get(&path).cloned() {
            return reply.opened(self.handle(Handle::Write(wb)), FopenFlags::empty());
        }
        let entry = tri!(reply, self.entry(&view, &path).map_err(stale));
        if entry.kind == EntryKind::Dir {
            return reply.error(Errno::EISDIR);
        }
        let slash = path.iter().rposition(|b| *b == b'/').unwrap_or(0);
        if let Ok(Entry { id: Some(dir), .. }) = self.entry(&view, &path[..slash]) {
            let name = &path[(slash + 1).min(path.len())..];
            if let Some(batch) = self.block(self.remote.read_ahead_in_folder(dir, name)) {
                self.rt.spawn(batch);
            }
        }
        let chunks = tri!(reply, self.block(self.remote.file_chunks(&entry)));
        // The kernel may keep what it cached of this inode if the content is the one it
        // cached (snapshots never change; a live file is checked by its content key).
        let key = content_key(&entry);
        let unchanged = lock(&self.inodes).content.insert(u64::from(ino), key) == Some(key);
        // A read-only handle has nothing to commit: no FLUSH round trip at close.
        let keep = if view != View::Live || unchanged {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
        } else {
            FopenFlags::FOPEN_NOFLUSH
        };
        reply.opened(self.handle(Handle::Read { chunks }), keep);
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
        let handle = match lock(&self.handles).get(&fh.0) {
            Some(Handle::Read { chunks }) => Handle::Read {
                chunks: chunks.clone(),
            },
            Some(Handle::Write(wb)) => Handle::Write(wb.clone()),
            None => return reply.error(Errno::EBADF),
        };
        match handle {
            Handle::Read { chunks } => {
                let data = tri!(reply, self.read_chunks(&chunks, offset, size));
                reply.data(&data);
            }
            Handle::Write(wb) => {
                let wb = lock(&wb);
                let mut buf = vec![0u8; size as usize];
                let n = tri!(
                    reply,
                    wb.file.read_at(&mut buf, offset).map_err(|_| Errno::EIO)
                );
                reply.data(&buf[..n]);
            }
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
            Some(Handle::Write(wb)) => wb.clone(),
            _ => return reply.error(Errno::EBADF),
        };
        let mut wb = lock(&wb);
        tri!(
            reply,
            wb.file.write_all_at(data, offset).map_err(|e| {
                if e.kind() == std::io::ErrorKind::StorageFull {
                    Errno::ENOSPC
                } else {
                    Errno::EIO
                }
            })
        );
        wb.dirty = true;
        wb.mtime_ns = now_ns();
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
        self.sync_handle(fh, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync_handle(fh, reply);
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
        if let Handle::Write(wb) = handle {
            let result = self.write_back(&mut lock(&wb));
            // The last handle on a write-back file removes it (kept on failure for retries).
            let still_open = lock(&self.handles)
                .values()
                .any(|h| matches!(h, Handle::Write(w) if Arc::ptr_eq(w, &wb)));
            if !still_open && result.is_ok() {
                self.forget_write(&wb);
            }
            tri!(reply, result);
        }
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let (view, dir) = tri!(reply, self.node(parent));
        tri!(reply, self.writable(&view));
        let path = tri!(reply, child(&dir, name));
        // The parent must still exist (and the daemon answer) before anything is staged.
        if tri!(reply, self.entry(&view, &dir)).kind != EntryKind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let mode = mode & !umask & 0o7777;
        let wb = tri!(reply, self.open_write(&path, mode, None));
        let ino = lock(&self.inodes).ino(view.clone(), path.clone());
        let attr = tri!(reply, self.stat(ino, &view, &path));
        let fh = self.handle(Handle::Write(wb));
        reply.created(&LIVE_TTL, &attr, Generation(0), fh, FopenFlags::empty());
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !umask & 0o7777;
        self.make(parent, name, "mkdir", reply, |path| {
            Ok(CommitOp::Mkdir {
                path: encode_path(path),
                mode,
                mtime_ns: now_ns(),
            })
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.make(parent, name, "symlink", reply, |path| {
            Ok(CommitOp::Symlink {
                path: encode_path(path),
                target: encode_path(target.as_os_str().as_bytes()),
                mode: 0o777,
                mtime_ns: now_ns(),
            })
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
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
        let (view, path) = tri!(reply, self.node(ino));
        if size.is_some() || mode.is_some() || mtime.is_some() {
            tri!(reply, self.writable(&view));
            let mtime_ns = mtime.map(|t| match t {
                TimeOrNow::Now => now_ns(),
                TimeOrNow::SpecificTime(t) => fvfs_node::time_ns(t),
            });
            tri!(
                reply,
                self.change(&path, size, mode, mtime_ns).map_err(stale)
            );
        }
        let attr = tri!(
            reply,
            self.stat(u64::from(ino), &view, &path).map_err(stale)
        );
        reply.attr(&Self::ttl(&view), &attr);
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
        let (view, path) = tri!(reply, self.node(ino));
        self.make(newparent, newname, "link", reply, |to| {
            let open = lock(&self.writing).get(&path).cloned();
            if let Some(wb) = open {
                self.write_back(&mut lock(&wb))?;
            }
            let entry = self.entry(&view, &path)?;
            match entry.kind {
                EntryKind::File => Ok(file_op(to, &entry, entry.mode, entry.mtime_ns)),
                _ => Err(Errno::EPERM),
            }
        });
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
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let (view, from_dir) = tri!(reply, self.node(parent));
        let (to_view, to_dir) = tri!(reply, self.node(newparent));
        tri!(reply, self.writable(&view));
        tri!(reply, self.writable(&to_view));
        let from = tri!(reply, child(&from_dir, name));
        let to = tri!(reply, child(&to_dir, newname));
        // A file being written here is committed first, so that it exists to be moved.
        let open = lock(&self.writing).get(&from).cloned();
        if let Some(wb) = &open {
            tri!(reply, self.write_back(&mut lock(wb)));
        }
        let op = CommitOp::Rename {
            from: encode_path(&from),
            to: encode_path(&to),
        };
        tri!(reply, self.commit("rename", vec![op]));
        if let Some(wb) = open {
            let mut writing = lock(&self.writing);
            writing.remove(&from);
            lock(&wb).path = to.clone();
            writing.insert(to.clone(), wb);
        }
        lock(&self.inodes).moved(&from, &to);
        reply.ok();
    }
}

/// What identifies a file's content: its file node, or the hash of its inline chunk ids.
fn content_key(entry: &Entry) -> [u8; 32] {
    if let Some(id) = entry.id {
        return *id.as_bytes();
    }
    let mut h = blake3::Hasher::new();
    for c in &entry.chunks {
        h.update(c.id.as_bytes());
    }
    *h.finalize().as_bytes()
}

/// The commit op putting `entry`'s content at `path` with `mode` and `mtime_ns`.
fn file_op(path: &[u8], entry: &Entry, mode: u32, mtime_ns: i64) -> CommitOp {
    CommitOp::File {
        path: encode_path(path),
        mode,
        mtime_ns,
        size: entry.size,
        node: entry.id.map(|id| id.to_hex()),
        chunks: entry
            .chunks
            .iter()
            .map(|c| (c.id.to_hex(), c.len))
            .collect(),
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

/// O_TRUNC, as the kernel passes it in open flags.
fn libc_trunc() -> i32 {
    0o1000
}

impl FvfsFs {
    /// Makes a new entry `name` in live directory `parent` by committing what `op` builds
    /// for its path (refused if the name exists); answers with its attributes.
    fn make(
        &self,
        parent: INodeNo,
        name: &OsStr,
        what: &str,
        reply: ReplyEntry,
        op: impl FnOnce(&[u8]) -> Result<CommitOp, Errno>,
    ) {
        let (view, dir) = tri!(reply, self.node(parent));
        tri!(reply, self.writable(&view));
        let path = tri!(reply, child(&dir, name));
        if self.entry(&view, &path).is_ok() {
            return reply.error(Errno::EEXIST);
        }
        let op = tri!(reply, op(&path));
        tri!(reply, self.commit(what, vec![op]));
        let ino = lock(&self.inodes).ino(view.clone(), path.clone());
        let attr = tri!(reply, self.stat(ino, &view, &path));
        reply.entry(&LIVE_TTL, &attr, Generation(0));
    }

    /// Truncates, or sets the mode or mtime of, the live path `path`.
    fn change(
        &self,
        path: &[u8],
        size: Option<u64>,
        mode: Option<u32>,
        mtime_ns: Option<i64>,
    ) -> Result<(), Errno> {
        let open = lock(&self.writing).get(path).cloned();
        if let Some(wb) = open {
            let mut w = lock(&wb);
            if let Some(size) = size {
                w.file.set_len(size).map_err(|_| Errno::EIO)?;
            }
            w.mode = mode.map_or(w.mode, |m| m & 0o7777);
            // Truncating changes the mtime; a chmod does not.
            let touched = if size.is_some() { now_ns() } else { w.mtime_ns };
            w.mtime_ns = mtime_ns.unwrap_or(touched);
            w.dirty = true;
            return Ok(());
        }
        let entry = self.entry(&View::Live, path)?;
        let mode = mode.map_or(entry.mode, |m| m & 0o7777);
        let mtime_ns = mtime_ns.unwrap_or(entry.mtime_ns);
        let encoded = encode_path(path);
        let op = match entry.kind {
            EntryKind::File if size.is_some_and(|s| s != entry.size) => {
                let wb = self.open_write(path, mode, Some(&entry))?;
                let result = {
                    let mut w = lock(&wb);
                    w.file.set_len(size.unwrap_or(0)).map_err(|_| Errno::EIO)?;
                    (w.dirty, w.mtime_ns) = (true, mtime_ns);
                    self.write_back(&mut w)
                };
                self.forget_write(&wb);
                return result;
            }
            EntryKind::File => file_op(path, &entry, mode, mtime_ns),
            EntryKind::Dir => CommitOp::Mkdir {
                path: encoded,
                mode,
                mtime_ns,
            },
            EntryKind::Symlink => CommitOp::Symlink {
                path: encoded,
                target: encode_path(&entry.target),
                mode: entry.mode,
                mtime_ns,
            },
        };
        self.commit("setattr", vec![op])
    }

    fn sync_handle(&self, fh: FileHandle, reply: ReplyEmpty) {
        let wb = match lock(&self.handles).get(&fh.0) {
            Some(Handle::Write(wb)) => wb.clone(),
            Some(Handle::Read { .. }) => return reply.ok(),
            None => return reply.error(Errno::EBADF),
        };
        tri!(reply, self.write_back(&mut lock(&wb)));
        reply.ok();
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let (view, parent_path) = tri!(reply, self.node(parent));
        tri!(reply, self.writable(&view));
        let path = tri!(reply, child(&parent_path, name));
        let entry = tri!(reply, self.entry(&view, &path));
        match (dir, entry.kind == EntryKind::Dir) {
            (true, false) => return reply.error(Errno::ENOTDIR),
            (false, true) => return reply.error(Errno::EISDIR),
            _ => {}
        }
        let op = CommitOp::Remove {
            path: encode_path(&path),
            recursive: false,
        };
        tri!(reply, self.commit("remove", vec![op]));
        reply.ok();
    }
}
