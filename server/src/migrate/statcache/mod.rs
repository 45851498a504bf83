//! Migrate's stat cache: what each source file's `stat` said when it was imported, and
//! what its content became, so that a file whose `stat` still says the same is reused
//! without being read (a re-run on an unchanged tree reads no file).
//!
//! One file per source folder, `DATA_DIR/statcache/<hash of the folder's path>`,
//! outside the metadata database. Its entries are in the walk's order ([`blocks`]), so
//! a run reads it alongside its walk ([`StatCache::lookup`], a block at a time) and
//! writes what it meets, in the same order, to a journal of its own beside it
//! (`<file>.j<pid>-<n>`, [`StatCache::met`]: workers finish out of order, a small
//! buffer puts them back in it). Memory follows a block and the files in flight, not
//! the tree.
//!
//! A journal holds whole entries ([`StatEntry`]: the chunks, owner and attributes),
//! made durable by checkpoints after the chunks they name, so a killed run's journal
//! lets the next one resume without reading what it finished. A run that walked its
//! sources whole, once its tree landed, saves the file ([`StatCache::save`]) from its
//! journal with only a [`Landed`] print of each file's content, owner and attributes,
//! about a quarter of a whole entry (a chunk id is most of one): the tree on HEAD holds
//! the rest, and a later run takes it from there ([`Lookups`]) when the print matches.
//! Files gone from the source so leave the cache; a run that read nothing and missed
//! nothing leaves the file as it is. The next run reads a killed run's journals with
//! the file (newest first) and removes them once it saved its own.
//!
//! The cache is a hint and never a source of truth: a whole entry is used only when
//! every chunk it names is still recorded, a print only when HEAD holds that very
//! content at the file's destination (so recorded too), so a lost, stale, damaged or
//! torn cache costs a read of the source, never a wrong file. A whole entry's chunks
//! are looked up ([`Repo::knows_file`]) unless it is trusted ([`Cached::Whole`]'s
//! `recorded`): it comes from a file saved before prints (a journal's entries may have
//! outrun its run's last checkpoint) under the records epoch still in force
//! ([`Repo::records_epoch`]: no record was removed since). Such a file is replaced by
//! the first run that meets it.
//!
//! [`Lookups`]: fvfs_manifest::Lookups
//! [`Repo::knows_file`]: fvfs_manifest::Repo::knows_file
//! [`Repo::records_epoch`]: fvfs_manifest::Repo::records_epoch

mod blocks;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as Atomic};
use std::sync::Mutex;

use blocks::{walk_cmp, Form, Reader, Writer};
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

impl StatEntry {
    /// The print a saved file keeps of this entry.
    fn landed(&self) -> Landed {
        Landed {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            print: print(&self.file, &self.meta),
        }
    }
}

/// What a saved file keeps of a source file: its stat, and a print of the content,
/// owner and extended attributes it landed with (in fvfs, at its destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landed {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub print: u64,
}

/// The print of a file's content, owner and extended attributes (64 bits of their
/// hash): what a saved file keeps instead of them.
pub fn print(file: &FileRef, meta: &Meta) -> u64 {
    let hash = ChunkId::of(&meta::encode(&(file, meta)));
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// What the cache holds for a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    /// From a journal, or a file saved before prints.
    Whole {
        entry: StatEntry,
        /// Every chunk the entry names is recorded: no need to look them up.
        recorded: bool,
    },
    /// From a saved file: the content is the one at the file's destination on HEAD,
    /// if its print matches.
    Landed(Landed),
}

impl Cached {
    /// Size, mtime, ctime and inode when it was imported.
    pub fn stat(&self) -> (u64, i64, i64, u64) {
        match self {
            Cached::Whole { entry: e, .. } => (e.size, e.mtime_ns, e.ctime_ns, e.ino),
            Cached::Landed(l) => (l.size, l.mtime_ns, l.ctime_ns, l.ino),
        }
    }
}

/// The stat caches of one migration's sources.
pub struct StatCache {
    /// The records epoch of this run (held: no collection runs meanwhile): a file
    /// saved before prints under it is trusted. Journals, whose format is that of
    /// such files, carry it too, but are never trusted.
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
    /// The file holds prints (one saved before them is replaced).
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
    /// Its entries are whole and trusted to be recorded (see [`Cached::Whole`]).
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
                let current = saved.as_ref().is_some_and(|r| r.form == Form::Landed);
                let trusted = |r: &Reader| r.form == Form::Whole(Some(epoch));
                streams.extend(saved.map(|r| {
                    let recorded = trusted(&r);
                    Stream::new(r, recorded)
                }));
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
                found.get_or_insert((value, stream.reader.form, stream.recorded));
            }
        }
        let (value, form, recorded) = found?;
        match form {
            Form::Landed => meta::decode(&value).ok().map(Cached::Landed),
            Form::Whole(_) => {
                let entry = meta::decode(&value).ok()?;
                Some(Cached::Whole { entry, recorded })
            }
        }
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
            *journal = match Writer::journal(&journal_name(&source.file), self.epoch) {
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

    /// At the end of a run that walked its sources whole, once what it met landed on
    /// HEAD: each source's journal becomes its file, as prints (files no longer there
    /// leave the cache), unless the run read nothing and passed nothing over and the
    /// file is current (it already holds just that).
    pub fn save(&self) {
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
                w.cut()?;
                let name = w.path().to_owned();
                drop(w);
                let landed =
                    PathBuf::from(format!("{}.tmp{}", self.file.display(), std::process::id()));
                let written = save_prints(&name, &landed);
                if written.is_err() {
                    let _ = std::fs::remove_file(&landed);
                }
                written?;
                std::fs::rename(&landed, &self.file)?;
                std::fs::remove_file(&name)?;
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

/// Saves (and one load) at a time in this process: two migrations of the same folder in
/// one daemon save the same file, and a load removes the temporary files of saves.
static SAVING: Mutex<()> = Mutex::new(());

/// Writes the prints of journal `from`'s entries to a new file `to`, durably.
fn save_prints(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut reader = Reader::open(from).ok_or_else(|| {
        std::io::Error::other(format!("its journal {} cannot be read", from.display()))
    })?;
    let mut writer = Writer::landed(to)?;
    while let Some((path, value)) = reader.next_entry() {
        // A value this run wrote decodes; one that would not is left out (read again).
        if let Ok(entry) = meta::decode::<StatEntry>(&value) {
            writer.push(&path, &meta::encode(&entry.landed()))?;
        }
    }
    writer.sync()
}

/// Removes the temporary files (`<name>.tmp<pid>`) of saves that were cut short, here
/// or by a killed process.
fn remove_leftovers(dir: &Path) {
    let _no_save = lock(&SAVING);
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
