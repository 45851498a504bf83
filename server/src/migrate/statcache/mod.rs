//! Migrate's stat cache: what each source file's `stat` said when it was imported, and
//! what its content became, so that a file whose `stat` still says the same is reused
//! without being read (a re-run on an unchanged tree reads no file).
//!
//! One file per source folder, `DATA_DIR/statcache/<hash of the folder's path>`,
//! outside the metadata database (kept in sled, the engine then, these records were 85% of
//! its file for 30% of its live bytes). Its entries are in the walk's order ([`blocks`]), so a run
//! reads it alongside its walk ([`StatCache::lookup`], a block at a time) and writes
//! what it meets, in the same order, to a journal of its own beside it
//! (`<file>.j<pid>-<n>`, [`StatCache::met`]: workers finish out of order, a small
//! buffer puts them back in it). Memory follows a block and the files in flight, not
//! the tree.
//!
//! Checkpoints make the journal durable after the chunks its entries name. A run that
//! walked its sources whole renames its journal over the file ([`StatCache::save`]),
//! so files gone from the source leave the cache; one that read nothing and missed
//! nothing leaves the file as it is. A killed run leaves its journal: the next run
//! reads it with the file (newest first) and removes it once it saved its own.
//!
//! The cache is a hint and never a source of truth: an entry is used only when every
//! chunk it names is still recorded, so a lost, stale, damaged or torn cache costs a
//! read of the source, never a wrong file. Each entry's chunks are looked up
//! ([`Repo::knows_file`]) unless the entry is [`Cached::recorded`]: it comes from a
//! saved file (a journal's entries may have outrun its run's last checkpoint) written
//! under the records epoch still in force ([`Repo::records_epoch`]: no record was
//! removed since that run found, or made, every chunk its entries name recorded).
//! A run that meets a file of another epoch saves its own, so the next one trusts it.
//!
//! [`Repo::knows_file`]: fvfs_manifest::Repo::knows_file
//! [`Repo::records_epoch`]: fvfs_manifest::Repo::records_epoch

mod blocks;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as Atomic};
use std::sync::Mutex;

use blocks::{walk_cmp, Reader, Writer};
use fvfs_cas::{platform, ChunkId};
use fvfs_manifest::node::Meta;
use fvfs_manifest::{meta, FileRef};
use serde::{Deserialize, Serialize};

/// What migrate saw of a source file, and its content in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub file: FileRef,
    /// Owner and extended attributes: unchanged while the ctime is.
    pub meta: Meta,
}

/// What the cache holds for a file.
#[derive(Debug, PartialEq, Eq)]
pub struct Cached {
    pub entry: StatEntry,
    /// Every chunk the entry names is recorded: no need to look them up.
    pub recorded: bool,
}

/// The stat caches of one migration's sources.
pub struct StatCache {
    /// The records epoch of this run (held: no collection runs meanwhile).
    epoch: u64,
    sources: Vec<Source>,
    /// Entries met out of order, until those before them are met.
    order: Mutex<Order>,
}

#[derive(Default)]
struct Order {
    next: u64,
    waiting: BTreeMap<u64, Option<Met>>,
}

/// An entry met: its source, path relative to it, and encoded value.
struct Met {
    source: usize,
    rel: Vec<u8>,
    value: Vec<u8>,
}

struct Source {
    root: PathBuf,
    file: PathBuf,
    /// Journals of killed runs, read with the file and removed by a saving run.
    journals: Vec<PathBuf>,
    /// The file was written under this run's records epoch.
    current: bool,
    /// The file, then those journals, newest first, read along the walk.
    streams: Mutex<Vec<Stream>>,
    /// This run's journal: opened at its first entry; `None` again once it failed.
    journal: Mutex<Journal>,
    /// Files this run read (not found unchanged).
    read: AtomicU64,
}

enum Journal {
    NotYet,
    Open(Writer),
    Failed,
}

struct Stream {
    reader: Reader,
    /// Its entries are [`Cached::recorded`].
    recorded: bool,
    head: Option<(Vec<u8>, Vec<u8>)>,
    /// Entries passed over without being met (files gone, or not reached).
    passed: u64,
}

impl Stream {
    fn new(mut reader: Reader, recorded: bool) -> Self {
        let head = reader.next_entry();
        Self {
            reader,
            recorded,
            head,
            passed: 0,
        }
    }

    /// The value at `rel`, if this stream has one; what comes before it is passed.
    fn find(&mut self, rel: &[u8]) -> Option<Vec<u8>> {
        while let Some((at, _)) = &self.head {
            match walk_cmp(at, rel) {
                Ordering::Less => self.passed += 1,
                Ordering::Equal => {
                    let (_, value) = self.head.take().expect("there is a head");
                    self.head = self.reader.next_entry();
                    return Some(value);
                }
                Ordering::Greater => return None,
            }
            self.head = self.reader.next_entry();
        }
        None
    }
}

/// The journal files of a killed run beside `file`, newest first.
fn journals_of(file: &Path) -> Vec<PathBuf> {
    let dir = file.parent().expect("a file in the cache folder");
    let prefix = format!("{}.j", file.file_name().expect("a name").to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| {
            let when = e.metadata().and_then(|m| m.modified());
            (when.unwrap_or(std::time::UNIX_EPOCH), e.path())
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, p)| p).collect()
}

/// A name for this run's journal of `file`, unique in this process.
fn journal_name(file: &Path) -> PathBuf {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Atomic::Relaxed);
    PathBuf::from(format!("{}.j{}-{n}", file.display(), std::process::id()))
}

impl StatCache {
    /// Opens the caches of source folders `roots` (absolute paths) in folder `dir`,
    /// for a run under records `epoch`. What cannot be read is reported in the log and
    /// counts as empty.
    pub fn load(dir: &Path, roots: &[PathBuf], epoch: u64) -> Self {
        remove_leftovers(dir);
        let sources = roots
            .iter()
            .map(|root| {
                let id = ChunkId::of(root.as_os_str().as_encoded_bytes());
                let file = dir.join(hex::encode(&id.as_bytes()[..16]));
                let journals = journals_of(&file);
                let mut streams: Vec<Stream> = journals
                    .iter()
                    .filter_map(|p| Reader::open(p).map(|r| Stream::new(r, false)))
                    .collect();
                let saved = Reader::open(&file);
                let current = saved.as_ref().is_some_and(|r| r.epoch == Some(epoch));
                streams.extend(saved.map(|r| Stream::new(r, current)));
                Source {
                    root: root.clone(),
                    file,
                    journals,
                    current,
                    streams: Mutex::new(streams),
                    journal: Mutex::new(Journal::NotYet),
                    read: AtomicU64::new(0),
                }
            })
            .collect();
        Self {
            epoch,
            sources,
            order: Mutex::default(),
        }
    }

    /// What source file `path` was when last imported. Asked in the walk's order (by
    /// the walker): what the cache holds before it is passed over.
    pub fn lookup(&self, path: &Path) -> Option<Cached> {
        let (s, rel) = self.locate(path)?;
        let mut streams = lock(&self.sources[s].streams);
        // The newest stream that has it wins; every stream moves past it.
        let mut found = None;
        for stream in streams.iter_mut() {
            if let Some(value) = stream.find(&rel) {
                found.get_or_insert((value, stream.recorded));
            }
        }
        let (value, recorded) = found?;
        let entry = meta::decode(&value).ok()?;
        Some(Cached { entry, recorded })
    }

    /// File number `seq` of the walk (every file is met once, in any order) was found
    /// as `entry` (`None`: not imported), read (`read`) or found unchanged.
    pub fn met(&self, seq: u64, path: &Path, entry: Option<&StatEntry>, read: bool) {
        let met = entry.and_then(|e| {
            let (source, rel) = self.locate(path)?;
            if read {
                self.sources[source].read.fetch_add(1, Atomic::Relaxed);
            }
            Some(Met {
                source,
                rel,
                value: meta::encode(e),
            })
        });
        let mut order = lock(&self.order);
        order.waiting.insert(seq, met);
        while let Some(met) = {
            let next = order.next;
            order.waiting.remove(&next)
        } {
            order.next += 1;
            if let Some(m) = met {
                self.write(&m);
            }
        }
    }

    fn write(&self, m: &Met) {
        let source = &self.sources[m.source];
        let mut journal = lock(&source.journal);
        if let Journal::NotYet = *journal {
            *journal = match Writer::create(&journal_name(&source.file), self.epoch) {
                Ok(w) => Journal::Open(w),
                Err(e) => {
                    tracing::warn!(file = %source.file.display(), "stat cache not saved: {e}");
                    Journal::Failed
                }
            };
        }
        if let Journal::Open(w) = &mut *journal {
            if let Err(e) = w.push(&m.rel, &m.value) {
                tracing::warn!(file = %source.file.display(), "stat cache not saved: {e}");
                *journal = Journal::Failed;
            }
        }
    }

    /// Makes the journals durable: after a checkpoint made the chunks their entries
    /// name durable. A failure is logged, not returned: the cache only saves reads.
    pub fn sync(&self) {
        for source in &self.sources {
            let mut journal = lock(&source.journal);
            if let Journal::Open(w) = &mut *journal {
                if let Err(e) = w.sync() {
                    tracing::warn!(file = %source.file.display(), "stat cache not saved: {e}");
                    *journal = Journal::Failed;
                }
            }
        }
    }

    /// At the end of a run that walked its sources whole: each source's journal
    /// becomes its file (files no longer there leave the cache), unless the run read
    /// nothing and passed nothing over and the file is of this epoch (it already holds
    /// just that).
    pub fn save(&self) {
        // Two migrations of the same folder in one daemon save the same file.
        static SAVING: Mutex<()> = Mutex::new(());
        let _one = lock(&SAVING);
        for source in &self.sources {
            if let Err(e) = source.save() {
                tracing::warn!(file = %source.file.display(), "stat cache not saved: {e}");
            }
        }
    }

    /// The source folder `path` is in (the deepest, should two overlap), and the path
    /// relative to it.
    fn locate(&self, path: &Path) -> Option<(usize, Vec<u8>)> {
        let s = (0..self.sources.len())
            .filter(|&i| path.starts_with(&self.sources[i].root))
            .max_by_key(|&i| self.sources[i].root.as_os_str().len())?;
        let rel = path.strip_prefix(&self.sources[s].root).ok()?;
        Some((s, rel.as_os_str().as_encoded_bytes().to_vec()))
    }
}

impl Source {
    fn save(&self) -> std::io::Result<()> {
        let journal = std::mem::replace(&mut *lock(&self.journal), Journal::Failed);
        let mut streams = lock(&self.streams);
        for stream in streams.iter_mut() {
            while stream.head.is_some() {
                stream.passed += 1;
                stream.head = stream.reader.next_entry();
            }
        }
        let passed: u64 = streams.iter().map(|s| s.passed).sum();
        drop(streams);
        let dir = self.file.parent().expect("a file in the cache folder");
        let unchanged = self.read.load(Atomic::Relaxed) == 0 && passed == 0 && self.current;
        match journal {
            Journal::Open(mut w) if !(unchanged && self.journals.is_empty()) => {
                w.sync()?;
                let name = w.path().to_owned();
                drop(w);
                std::fs::rename(&name, &self.file)?;
            }
            Journal::Open(w) => std::fs::remove_file(w.path())?,
            // Nothing met at all: nothing to keep.
            Journal::NotYet => match std::fs::remove_file(&self.file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
            Journal::Failed => return Ok(()),
        }
        for old in &self.journals {
            match std::fs::remove_file(old) {
                // Another migration of the same folder in this daemon saved first.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        platform::sync_dir(dir)
    }
}

/// Removes the temporary files of rewrites that processes of the format before left
/// (`<file>.tmp<pid>`): this one writes none.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().contains(".tmp") {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), "stat cache leftover not removed: {e}");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
