//! Reading one source file into the store: chunk, hash, deduplicate, compress, put.
//!
//! Runs on a worker thread (blocking reads), entering the async store through a
//! runtime handle. A file whose stat changes while it is read is read again, a few
//! times, then reported: a half-written file is never imported as if it were whole.
//!
//! A worker's new chunks wait in its [`Stow`] and are stored together (one call to the
//! store, one write of their records) at the end of its batch of files or once they
//! reach [`STOW_BYTES`]: a call per small file cost more than the file. A file read is
//! told to the stat cache (and remembered as a hard link's content) only once its
//! chunks are stored, so the stat cache never names a chunk that a checkpoint could
//! leave out; its entry is handed on only after [`Ingest::stow`] returned.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use fvfs_cas::{chunker, ChunkId};
use fvfs_manifest::node::Meta;
use fvfs_manifest::{
    ChunkKind, ChunkRef, CollectionsHeld, EntryKind, FileRef, Lookups, ManifestError, Pending, Repo,
};
use tokio::runtime::Handle;

use super::statcache::{print, Cached, Landed, StatCache, StatEntry};
use super::walk::{FileJob, Stat};
use crate::localmeta;

const READ_ATTEMPTS: usize = 3;
/// Files at least this large have their new chunks compressed and stored by helper
/// threads while the worker reads on: otherwise the few largest files of a tree keep
/// one core busy at the end while the others have nothing left to do.
const HELPED_FILE_BYTES: u64 = 8 << 20;
/// Chunks read ahead of the helpers, at most.
const HELPER_QUEUE: usize = 8;
/// Raw bytes of new chunks a worker holds before it stores them.
const STOW_BYTES: usize = 4 << 20;

/// Counters shown by the progress bar and the final summary.
#[derive(Default)]
pub struct Counters {
    pub files: AtomicU64,
    pub files_unchanged: AtomicU64,
    pub bytes: AtomicU64,
    pub bytes_new: AtomicU64,
    pub bytes_dedup: AtomicU64,
}

/// Why a file was not imported.
pub enum Failure {
    /// A problem with this source file only: report it and go on.
    Source(String),
    /// A problem with the store (full disk, I/O error): stop the migration.
    Store(ManifestError),
}

impl From<ManifestError> for Failure {
    fn from(e: ManifestError) -> Self {
        Failure::Store(e)
    }
}

/// A worker's new chunks not stored yet, and the files read that wait for them.
#[derive(Default)]
pub struct Stow {
    chunks: Vec<(ChunkId, Vec<u8>)>,
    ids: HashSet<ChunkId>,
    bytes: usize,
    /// Files read, told to the stat cache and counted finished once their chunks are
    /// stored.
    read: Vec<(u64, PathBuf, StatEntry, Stat)>,
}

/// Shared state of the workers.
pub struct Ingest<'a> {
    pub repo: &'a Repo,
    pub pending: &'a Pending,
    /// Collections held off for the whole migration: content found stored stays so
    /// until its commit, and the folds do not look it up again.
    pub held: &'a CollectionsHeld,
    pub handle: Handle,
    pub counters: &'a Counters,
    pub stats: &'a StatCache,
    /// HEAD's tree as the migration began, where a saved print's content is.
    head: Option<Lookups<'a>>,
    /// Hard-linked files already read in this run: (dev, ino) -> what was read, and the
    /// stat it was read with.
    links: Mutex<HashMap<(u64, u64), (StatEntry, Stat)>>,
}

impl<'a> Ingest<'a> {
    pub fn new(
        (repo, pending, held): (&'a Repo, &'a Pending, &'a CollectionsHeld),
        handle: Handle,
        counters: &'a Counters,
        (stats, head): (&'a StatCache, Option<Lookups<'a>>),
    ) -> Self {
        Self {
            repo,
            pending,
            held,
            handle,
            counters,
            stats,
            head,
            links: Mutex::default(),
        }
    }

    /// Imports `job`'s content, its new chunks into `stow` (stored when it is full);
    /// returns what its directory entry refers to, and the file's owner and extended
    /// attributes. Not to be handed on before [`Ingest::stow`].
    pub fn file(&self, job: &FileJob, stow: &mut Stow) -> Result<(FileRef, Box<Meta>), Failure> {
        if let Some(e) = self.unchanged(job)? {
            self.stats.met(job.seq, &job.src.path, Some(&e), false);
            self.counters
                .files_unchanged
                .fetch_add(1, Ordering::Relaxed);
            self.done(job.stat.size);
            return Ok((e.file, Box::new(e.meta)));
        }
        let mut last = String::new();
        for _ in 0..READ_ATTEMPTS {
            match self.read(job, stow)? {
                Ok((entry, stat)) => {
                    let found = (entry.file.clone(), Box::new(entry.meta.clone()));
                    stow.read.push((job.seq, job.src.path.clone(), entry, stat));
                    if stow.bytes >= STOW_BYTES {
                        self.stow(stow)?;
                    }
                    return Ok(found);
                }
                Err(why) => last = why,
            }
        }
        self.stats.met(job.seq, &job.src.path, None, false);
        Err(Failure::Source(last))
    }

    /// Stores the chunks `stow` holds, in one call, then tells the stat cache of the
    /// files that waited for them.
    pub fn stow(&self, stow: &mut Stow) -> Result<(), ManifestError> {
        if !stow.chunks.is_empty() {
            self.handle.block_on(self.repo.put_hashed_chunks(
                self.pending,
                &stow.chunks,
                ChunkKind::Data,
            ))?;
            stow.chunks.clear();
            stow.ids.clear();
            stow.bytes = 0;
        }
        for (seq, src, entry, stat) in stow.read.drain(..) {
            self.stats.met(seq, &src, Some(&entry), true);
            self.done(stat.size);
            if stat.nlink > 1 {
                self.links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((stat.dev, stat.ino), (entry, stat));
            }
        }
        Ok(())
    }

    fn done(&self, size: u64) {
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// The content of an unchanged file: same stat as when it was imported (by an
    /// earlier run, or as another hard link of the same inode in this one).
    fn unchanged(&self, job: &FileJob) -> Result<Option<StatEntry>, ManifestError> {
        let stat = &job.stat;
        if stat.nlink > 1 {
            if let Some((entry, seen)) = self
                .links
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(stat.dev, stat.ino))
            {
                if seen == stat {
                    return Ok(Some(entry.clone()));
                }
            }
        }
        let Some(cached) = &job.cached else {
            return Ok(None);
        };
        if cached.stat() != (stat.size, stat.mtime_ns, stat.ctime_ns, stat.ino) {
            return Ok(None);
        }
        match cached {
            Cached::Whole { entry, recorded } => {
                let known = *recorded
                    || self
                        .handle
                        .block_on(self.repo.knows_file(self.pending, &entry.file))?;
                Ok(known.then(|| entry.clone()))
            }
            Cached::Landed(landed) => self.landed(job, landed),
        }
    }

    /// The content a saved print stands for: the file at the job's destination on HEAD
    /// (as the migration began), if its print matches (HEAD's content is recorded).
    fn landed(&self, job: &FileJob, landed: &Landed) -> Result<Option<StatEntry>, ManifestError> {
        let Some(head) = &self.head else {
            return Ok(None);
        };
        let mut entry = match self.handle.block_on(head.entry(&job.dest)) {
            Ok(entry) if entry.kind == EntryKind::File => entry,
            Ok(_) | Err(ManifestError::NotFound(_) | ManifestError::NotADirectory(_)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let meta = entry.meta.take().map(|m| *m).unwrap_or_default();
        let file = FileRef::of(entry);
        if print(&file, &meta) != landed.print {
            return Ok(None);
        }
        Ok(Some(StatEntry {
            size: landed.size,
            mtime_ns: landed.mtime_ns,
            ctime_ns: landed.ctime_ns,
            ino: landed.ino,
            file,
            meta,
        }))
    }

    /// Makes what was read durable: the chunks and their records, then the stat
    /// cache's entries naming them.
    pub async fn checkpoint(&self) -> Result<(), ManifestError> {
        self.repo.checkpoint(self.pending).await?;
        self.stats.sync();
        Ok(())
    }

    /// One attempt at reading the file: its content, owner and extended attributes, all
    /// between two `fstat`s that agree. The outer error is the store's, the inner one
    /// the source file's.
    fn read(
        &self,
        job: &FileJob,
        stow: &mut Stow,
    ) -> Result<Result<(StatEntry, Stat), String>, ManifestError> {
        let (file, before) = match job.src.open() {
            Ok((file, meta)) => (file, Stat::of(&meta)),
            Err(e) => return Ok(Err(format!("cannot open: {e}"))),
        };
        if before.ino != job.stat.ino || before.dev != job.stat.dev {
            return Ok(Err("replaced while being read".into()));
        }
        let refs = if before.size >= HELPED_FILE_BYTES {
            self.chunks_helped(&file, before.size)?
        } else {
            self.chunks(&file, before.size, |id, data| {
                let (len, new) = (data.len() as u64, stow.ids.insert(id));
                let counter = match new {
                    true => &self.counters.bytes_new,
                    false => &self.counters.bytes_dedup,
                };
                counter.fetch_add(len, Ordering::Relaxed);
                if new {
                    stow.bytes += data.len();
                    stow.chunks.push((id, data));
                }
                Ok(())
            })?
        };
        let refs = match refs {
            Ok(refs) => refs,
            Err(why) => return Ok(Err(why)),
        };
        let meta = localmeta::read_open(&file, before.uid, before.gid);
        let after = match file.metadata() {
            Ok(m) => Stat::of(&m),
            Err(e) => return Ok(Err(format!("cannot stat: {e}"))),
        };
        let read: u64 = refs.iter().map(|r| r.len).sum();
        if after != before || read != after.size {
            return Ok(Err("changed while being read".into()));
        }
        let file = self
            .handle
            .block_on(self.repo.put_file(self.pending, refs))?;
        let entry = StatEntry {
            size: after.size,
            mtime_ns: after.mtime_ns,
            ctime_ns: after.ctime_ns,
            ino: after.ino,
            file,
            meta,
        };
        Ok(Ok((entry, after)))
    }

    /// Cuts `file` into chunks, handing each one not stored yet to `store`; returns
    /// the file's chunk list (or why the source could not be read).
    fn chunks(
        &self,
        file: &File,
        size: u64,
        mut store: impl FnMut(ChunkId, Vec<u8>) -> Result<(), ManifestError>,
    ) -> Result<Result<Vec<ChunkRef>, String>, ManifestError> {
        let mut refs = Vec::new();
        for chunk in chunker::chunks_sized(file, size, self.repo.cut_seed()) {
            let data = match chunk {
                Ok(d) => d,
                Err(e) => return Ok(Err(format!("read error: {e}"))),
            };
            let id = ChunkId::of(&data);
            let len = data.len() as u64;
            if self.repo.knows(self.pending, &id)? {
                self.counters.bytes_dedup.fetch_add(len, Ordering::Relaxed);
            } else {
                store(id, data)?;
            }
            refs.push(ChunkRef { id, len });
        }
        Ok(Ok(refs))
    }

    /// Compresses and stores a new chunk.
    fn store(&self, id: ChunkId, data: &[u8]) -> Result<(), ManifestError> {
        self.handle.block_on(self.repo.put_hashed_chunks(
            self.pending,
            &[(id, data)],
            ChunkKind::Data,
        ))?;
        self.counters
            .bytes_new
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// [`Ingest::chunks`] of a large file, with one helper thread per core compressing
    /// and storing while this one reads, chunks and hashes. Every chunk is stored when
    /// it returns; the first store error stops the reading.
    fn chunks_helped(
        &self,
        file: &File,
        size: u64,
    ) -> Result<Result<Vec<ChunkRef>, String>, ManifestError> {
        let helpers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let failed: Mutex<Option<ManifestError>> = Mutex::new(None);
        let (tx, rx) = std::sync::mpsc::sync_channel::<(ChunkId, Vec<u8>)>(HELPER_QUEUE);
        // Owned by the helpers alone: if they all stopped (a panic), sending fails
        // instead of waiting for ever.
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let refs = std::thread::scope(|scope| {
            for _ in 0..helpers {
                let (rx, failed) = (rx.clone(), &failed);
                scope.spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((id, data)) = next else { return };
                    // After a failure, drain the queue so the reader never blocks.
                    if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                        continue;
                    }
                    if let Err(e) = self.store(id, &data) {
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                    }
                });
            }
            drop(rx);
            let refs = self.chunks(file, size, |id, data| {
                if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(e);
                }
                tx.send((id, data)).expect("a helper thread panicked");
                Ok(())
            });
            drop(tx);
            refs
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => refs,
        }
    }
}
