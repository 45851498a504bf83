//! The kernel's page cache filled ahead of a walk that reads what it lists (see
//! [`super::super::remote::Remote::listing_reads`]): when the small files of a folder's
//! read-ahead window arrive ([`super::super::remote::Remote::read_ahead_in_folder`]),
//! their content is handed to the kernel (FUSE notify store) for the inodes it knows.
//! A walk reading them (tar, cp, rsync, grep) then finds them cached: each costs an
//! OPEN, where it cost an OPEN, a READ and the GETATTR that a read's atime change
//! brings, three round trips one after another for a program reading one file at a
//! time.
//!
//! # Invariants
//! - Content is pushed only into an inode the kernel made and was never given content
//!   of in this mount (never opened here, no content recorded: see
//!   [`Inodes::first_content`]), and its key is recorded as it is pushed, so the next
//!   open keeps it (FOPEN_KEEP_CACHE).
//! - A push of an inode is ordered with its opens and writes: the push checks and
//!   records its content and marks the inode as being pushed under one lock, and an
//!   open ([`Pusher::opened`]) or a write ([`Pusher::writing`]) of an inode being
//!   pushed waits until its store is done, then records under that lock. So a push
//!   lands before an open or a write of its inode starts, or not at all: no reader
//!   has the inode open while it lands, and no read of it is in flight (a store would
//!   wait for its page locks), so a store never waits for a FUSE thread. Other
//!   inodes' opens do not wait.
//! - What was pushed may be older than the tree by the time it lands (the live tree
//!   moved on: this mount or another device committed). That is harmless: the next
//!   open compares the content it opens with the one recorded and keeps the kernel's
//!   pages only if they are the same (a write's open never keeps them), and a push
//!   that lengthened the file makes the kernel ask for its attributes again. So
//!   pushes go on while the live tree changes.
//! - Pushes in the background run on at most [`PUSHERS`] blocking threads, never on a
//!   runtime worker.

use std::sync::{Arc, Condvar, Mutex, OnceLock};

use fvfs_cas::ChunkId;
use fvfs_node::Entry;

use super::inodes::Inodes;
use super::read::content_key;
use super::{lock, Core, Kernel};
use crate::mount::cache::ChunkCache;
use crate::mount::FastSet;

/// Files this large or larger are not pushed: they are read on demand with their own
/// read-ahead, and once cached, through a backing file (passthrough).
const PUSH_MAX: u64 = crate::mount::backing::MIN_BYTES;

/// Background pushes at once.
const PUSHERS: usize = 2;

/// Bytes of a listed folder's files pushed before its last listing call is answered.
const PUSH_NOW: u64 = 4 << 20;

/// The kernel, once the session exists.
pub type KernelSlot = Arc<OnceLock<Box<dyn Kernel>>>;

/// What pushes content into the kernel's cache.
#[derive(Clone)]
pub struct Pusher {
    kernel: KernelSlot,
    /// Inodes whose content is being stored, and the signal that one store ended.
    storing: Arc<(Mutex<FastSet<u64>>, Condvar)>,
    /// Background pushes running or allowed to.
    running: Arc<tokio::sync::Semaphore>,
    inodes: Arc<Mutex<Inodes>>,
    cache: Arc<ChunkCache>,
}

impl Pusher {
    pub fn new(inodes: Arc<Mutex<Inodes>>, cache: Arc<ChunkCache>) -> Self {
        Self {
            kernel: Arc::default(),
            storing: Arc::default(),
            running: Arc::new(tokio::sync::Semaphore::new(PUSHERS)),
            inodes,
            cache,
        }
    }

    /// Where the session's notifier goes once the mount exists.
    pub fn kernel(&self) -> KernelSlot {
        self.kernel.clone()
    }

    /// A write to `ino` starts here: no content is pushed into it from now on (a push
    /// of it under way finishes first).
    pub fn writing(&self, ino: u64) {
        let _storing = self.not_storing(ino);
        lock(&self.inodes).content_unknown(ino);
    }

    /// `ino` is opened for reading with content `key` (a push of it under way
    /// finishes first): records it, and tells whether the kernel may keep what it
    /// cached or was given of the inode (the same content).
    pub fn opened(&self, ino: u64, key: [u8; 32]) -> bool {
        let _storing = self.not_storing(ino);
        lock(&self.inodes).same_content(ino, key)
    }

    /// The set of inodes being stored, once `ino` is not among them.
    fn not_storing(&self, ino: u64) -> std::sync::MutexGuard<'_, FastSet<u64>> {
        let (set, ended) = &*self.storing;
        let mut storing = lock(set);
        while storing.contains(&ino) {
            storing = ended.wait(storing).unwrap_or_else(|p| p.into_inner());
        }
        storing
    }

    /// Pushes the content of `files` (entries of directory `dir`) whose chunks are
    /// cached, until `budget` bytes are pushed; returns how many of `files` it went
    /// through.
    fn push(&self, dir: u64, files: &[Entry], budget: u64) -> usize {
        let Some(kernel) = self.kernel.get() else {
            return files.len();
        };
        let mut pushed = 0;
        for (i, e) in files.iter().enumerate() {
            if pushed >= budget {
                return i;
            }
            if e.size == 0 || e.size >= PUSH_MAX {
                continue;
            }
            let ino = {
                let inodes = lock(&self.inodes);
                match inodes.known(dir, &e.name) {
                    Some(ino) if inodes.fresh(ino) => ino,
                    _ => continue,
                }
            };
            let Some(data) = self.content(e) else {
                continue;
            };
            {
                let mut storing = lock(&self.storing.0);
                if !lock(&self.inodes).first_content(ino, content_key(e)) {
                    continue;
                }
                storing.insert(ino);
            }
            pushed += e.size;
            if let Err(err) = kernel.store(ino, &data) {
                // The kernel keeps what it stored, or nothing: an open reads through.
                tracing::debug!("pushing inode {ino} into the kernel's cache: {err}");
            }
            lock(&self.storing.0).remove(&ino);
            self.storing.1.notify_all();
        }
        files.len()
    }

    /// [`Pusher::push`] of all of `files`, on a blocking thread once one of
    /// [`PUSHERS`] is free.
    async fn push_all(self, dir: u64, files: Vec<Entry>) {
        let Ok(_running) = self.running.clone().acquire_owned().await else {
            return;
        };
        let pushed = tokio::task::spawn_blocking(move || {
            self.push(dir, &files, u64::MAX);
        });
        if let Err(e) = pushed.await {
            tracing::warn!("pushing a folder's files into the kernel's cache: {e}");
        }
    }

    /// A file's content if all its chunks are cached.
    fn content(&self, e: &Entry) -> Option<Vec<u8>> {
        let mut data = Vec::with_capacity(usize::try_from(e.size).ok()?);
        for c in &e.chunks {
            data.extend_from_slice(&self.cache.get(&c.id)?);
        }
        (data.len() as u64 == e.size).then_some(data)
    }
}

impl Core {
    /// Fetches the read-ahead window of folder `dir` (inode; node `dir_id`) from file
    /// `name` on, and pushes its small files into the kernel's cache once they arrive,
    /// in the background. Most opens find the window asked for already and return at
    /// once. Returns the window's small files (for an open, none if it was asked for
    /// already).
    pub(super) fn fill_ahead(
        &self,
        dir: u64,
        dir_id: ChunkId,
        name: &[u8],
        listed: bool,
    ) -> Vec<Entry> {
        let ahead = self.remote.read_ahead_in_folder(dir_id, name, listed);
        let Some((files, ids)) = self.block(ahead) else {
            return Vec::new();
        };
        let (pusher, remote, window) = (self.pusher.clone(), self.remote.clone(), files.clone());
        self.rt.spawn(async move {
            // The window's own batch, and those of other read-aheads it overlaps.
            remote.settled(&ids).await;
            pusher.push_all(dir, window).await;
        });
        files
    }

    /// A listing of folder `dir` was read to its end (so the kernel made the inodes of
    /// every name in it): pushes the cached files of its first read-ahead window
    /// (`files`), the first [`PUSH_NOW`] bytes before the kernel is answered (the
    /// walk opens them next), the rest in the background. Those still being fetched
    /// are pushed when they arrive ([`Core::fill_ahead`]).
    pub(super) fn push_listed(&self, dir: u64, mut files: Vec<Entry>) {
        let done = self.pusher.push(dir, &files, PUSH_NOW);
        if done < files.len() {
            let rest = files.split_off(done);
            let pusher = self.pusher.clone();
            self.rt.spawn(pusher.push_all(dir, rest));
        }
    }
}

#[cfg(test)]
mod tests {
    use fvfs_node::{ChunkRef, EntryKind};

    use super::super::inodes::ROOT;
    use super::*;

    /// A page cache that records what it is given.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(u64, Vec<u8>)>>);

    impl Kernel for Arc<Recorded> {
        fn forget_name(&self, _dir: u64, _name: &[u8]) -> std::io::Result<()> {
            Ok(())
        }

        fn forget_inode(&self, _ino: u64) -> std::io::Result<()> {
            Ok(())
        }

        fn store(&self, ino: u64, data: &[u8]) -> std::io::Result<()> {
            lock(&self.0).push((ino, data.to_vec()));
            Ok(())
        }
    }

    struct Setup {
        pusher: Pusher,
        stored: Arc<Recorded>,
        files: Vec<Entry>,
        inos: Vec<u64>,
        _dir: tempfile::TempDir,
    }

    /// Files `f0`.. in the root (sizes `sizes`, two chunks each), cached, handed to
    /// the kernel and read by it.
    fn setup(sizes: &[usize]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(ChunkCache::open(dir.path(), 64 << 20).unwrap());
        let inodes = Arc::new(Mutex::new(Inodes::new()));
        let pusher = Pusher::new(inodes.clone(), cache.clone());
        let stored = Arc::new(Recorded::default());
        assert!(pusher.kernel().set(Box::new(stored.clone())).is_ok());
        let (mut files, mut inos) = (Vec::new(), Vec::new());
        for (i, size) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..*size).map(|b| (b * 7 + i) as u8).collect();
            let mut chunks = Vec::new();
            for part in [&data[..size / 3], &data[size / 3..]] {
                let id = ChunkId::of(part);
                cache.put(id, bytes::Bytes::copy_from_slice(part));
                chunks.push(ChunkRef {
                    id,
                    len: part.len() as u64,
                });
            }
            let name = format!("f{i}").into_bytes();
            let mut t = lock(&inodes);
            let ino = t.child(ROOT, &name, EntryKind::File, None, true);
            t.in_kernel(ino);
            inos.push(ino);
            files.push(Entry {
                kind: EntryKind::File,
                size: *size as u64,
                chunks,
                name,
                ..Entry::dir(0o644, 0)
            });
        }
        Setup {
            pusher,
            stored,
            files,
            inos,
            _dir: dir,
        }
    }

    fn stored(s: &Setup) -> Vec<u64> {
        lock(&s.stored.0).iter().map(|(ino, _)| *ino).collect()
    }

    #[test]
    fn each_cached_file_is_pushed_once_whole() {
        let s = setup(&[10, 5000, 70_000]);
        assert_eq!(s.pusher.push(ROOT, &s.files, u64::MAX), 3);
        let got = lock(&s.stored.0).clone();
        assert_eq!(got.len(), 3);
        for ((ino, data), (want, e)) in got.iter().zip(s.inos.iter().zip(&s.files)) {
            assert_eq!(ino, want);
            assert_eq!(data.len() as u64, e.size);
            assert_eq!(
                data[0],
                (s.inos.iter().position(|i| i == ino).unwrap()) as u8
            );
        }
        s.pusher.push(ROOT, &s.files, u64::MAX);
        assert_eq!(stored(&s).len(), 3, "pushed once");
    }

    #[test]
    fn nothing_is_pushed_into_a_file_opened_or_being_written() {
        let s = setup(&[100, 200, 300, 400]);
        s.pusher.writing(s.inos[1]);
        assert!(!s.pusher.opened(s.inos[3], content_key(&s.files[3])));
        s.pusher.push(ROOT, &s.files, u64::MAX);
        assert_eq!(stored(&s), [s.inos[0], s.inos[2]]);
        // An open after the push keeps what was pushed; one that finds another content
        // (the tree moved on since the push was read) does not.
        assert!(s.pusher.opened(s.inos[0], content_key(&s.files[0])));
        assert!(!s.pusher.opened(s.inos[2], [7; 32]));
    }

    #[test]
    fn a_file_not_all_cached_or_not_in_the_kernel_waits_for_a_later_push() {
        let mut s = setup(&[100, 200, 300]);
        // Not in the cache (a chunk missing), not made by the kernel yet, too large.
        s.files[0].chunks[1].id = ChunkId::of(b"elsewhere");
        let late = {
            let mut t = lock(&s.pusher.inodes);
            t.child(ROOT, b"late", EntryKind::File, None, true)
        };
        let mut late_file = s.files[1].clone();
        late_file.name = b"late".to_vec();
        s.files.push(late_file);
        s.files[2].size = PUSH_MAX;
        s.pusher.push(ROOT, &s.files, u64::MAX);
        assert_eq!(stored(&s), [s.inos[1]]);
        lock(&s.pusher.inodes).in_kernel(late);
        s.pusher.push(ROOT, &s.files, u64::MAX);
        assert_eq!(stored(&s), [s.inos[1], late]);
    }

    #[test]
    fn a_budget_stops_the_push_where_the_rest_can_go_on() {
        let s = setup(&[1000, 1000, 1000, 1000]);
        let done = s.pusher.push(ROOT, &s.files, 1500);
        assert_eq!(done, 2);
        assert_eq!(s.pusher.push(ROOT, &s.files[done..], u64::MAX), 2);
        assert_eq!(stored(&s), s.inos);
    }
}
