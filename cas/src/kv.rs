//! The key-value adapter: the only module that knows the metadata engine, fjall (an
//! LSM tree). The manifest keeps its records in one database; each pack store keeps
//! its chunk locations in one.
//!
//! Everything above it sees a sorted byte map with atomic batches and a durable flush,
//! so the engine could be swapped by rewriting this file alone (it was: sled 0.34
//! before, see ARCHITECTURE.md, "fjall, not sled").
//!
//! # Durability
//! Each [`Kv::apply`] is one batch in the engine's journal, written to the OS at once
//! (a killed process loses nothing applied); [`Kv::flush_durable`] fsyncs the journal
//! (`fsync`, `F_FULLFSYNC` on macOS), after which a power cut loses nothing applied
//! before it. fjall writes its sorted tables and syncs them before it lets a journal
//! go. Values must stay small (well under 64 KiB): [`Kv::apply`] enforces that.
//!
//! # One process per database
//! fjall locks nothing, so [`Kv::open`] takes an exclusive `flock` on `lock` in the
//! database's folder and holds it while any handle lives.
//!
//! # Closing
//! fjall's close waits for its monitor thread's next wake-up (up to 250 ms), which
//! every command would pay once for each database it opened. The last handle's drop
//! hands the database to a thread of its own ([`Shared`]'s `Drop`) and returns; an open
//! of the same folder in this process waits for that close first. A process that ends
//! meanwhile leaves the database as a killed one would: everything applied was written
//! to the OS, and fjall deletes a table it was cut short writing at the next open.
//!
//! # Databases written by sled
//! A folder holding sled's files (`conf`, `db`: a store made before the switch) is
//! converted at its first open: every pair copied into a new database beside it
//! (`<folder>.fjall-new`), made durable, then swapped in by two renames
//! (`<folder>` -> `<folder>.sled-old`, the new one -> `<folder>`) and the old one
//! removed. An open after a crash at any point finds either sled's folder (the copy
//! is made again) or the new one (the renames are finished).

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fjall::PersistMode;

/// Largest value the adapter accepts.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

/// fjall's cache of table blocks, per database: records are tiny and the OS caches
/// the files. It holds blocks decoded, one allocation per key and value, at about 2.2x
/// the bytes it counts: at 16 MiB the two databases' caches were 78 MB of a 1,000,000-
/// file fsck's 213 MB; at 4 MiB fsck takes 162 MB and 5% longer, gc 146 MB instead of
/// 226, and migrate (which no longer looks records up on a re-run) is unchanged
/// (benches/README.md, twenty-ninth session).
const CACHE_BYTES: u64 = 4 << 20;
/// Memory of the memtables, per database, before they are written out as tables.
const WRITE_BUFFER_BYTES: u64 = 16 << 20;
/// A memtable is written out as a table once it holds this much, unless
/// `FVFS_KV_MEMTABLE_BYTES` says otherwise (the power-cut tests set it low, so that
/// cuts meet the writes of tables and their compactions).
const MEMTABLE_BYTES: u32 = 8 << 20;
/// Table block size of a new database (a database keeps the size it was made with).
/// A read that misses the cache decodes a whole block: 1 KiB holds about 15 records
/// where fjall's default 4 KiB holds 60, so an unchanged re-run of 1,000,000 files
/// (a chunk-record lookup per file, the records five times the cache) took 10.5 s
/// instead of 13.4; tables grow about 7% (twenty-seventh session, benches/README.md).
const BLOCK_BYTES: u32 = 1024;
/// fjall's smallest journal budget (one journal takes up to 16 MiB).
const JOURNAL_BYTES: u64 = 24 << 20;
/// The one partition each database holds.
const PARTITION: &str = "kv";
/// A held lock is tried again for a second at an open: the handle of the same process
/// that held it may be going away on another thread.
const OPEN_TRIES: u32 = 50;
/// Pairs copied per batch when a sled database is converted.
const CONVERT_BATCH: usize = 16_384;

#[derive(Debug, thiserror::Error)]
#[error("metadata database at {}: {detail}", path.display())]
pub struct KvError {
    path: PathBuf,
    detail: String,
    /// The engine found its files damaged (not a passing failure).
    corrupt: bool,
}

impl KvError {
    /// A failure that is not damage to the database's files.
    fn other(path: &Path, e: impl ToString) -> Self {
        Self {
            path: path.to_owned(),
            detail: e.to_string(),
            corrupt: false,
        }
    }

    fn engine(path: &Path, e: fjall::Error) -> Self {
        use fjall::{Error as F, LsmError as L};
        let corrupt = match &e {
            F::Storage(L::Io(_)) => false,
            F::Storage(_) | F::Decode(_) | F::JournalRecovery(_) | F::InvalidVersion(_) => true,
            _ => false,
        };
        Self {
            path: path.to_owned(),
            detail: e.to_string(),
            corrupt,
        }
    }

    /// Whether the database's files are damaged, so that opening it again cannot work.
    pub fn is_corruption(&self) -> bool {
        self.corrupt
    }
}

/// A set of writes applied all together or not at all.
#[derive(Default)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A sorted map from byte keys to small byte values, stored durably. Clones share the
/// same database.
#[derive(Clone)]
pub struct Kv {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// Taken only by the drop.
    open: Option<Open>,
}

/// An open database; its fields drop in order, the lock last.
struct Open {
    part: fjall::PartitionHandle,
    keyspace: fjall::Keyspace,
    /// The folder's `lock`, `flock`ed while this database is open here.
    _lock: File,
}

/// Databases being closed, by folder (see the module's doc, "Closing").
static CLOSING: Mutex<Vec<(PathBuf, JoinHandle<()>)>> = Mutex::new(Vec::new());

impl Shared {
    fn open(&self) -> &Open {
        self.open
            .as_ref()
            .expect("a database is open until its drop")
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Some(open) = self.open.take() else { return };
        let mut closing = CLOSING.lock().unwrap_or_else(|p| p.into_inner());
        closing.retain(|(_, close)| !close.is_finished());
        // A thread that cannot be made closes the database here.
        if let Ok(close) = std::thread::Builder::new()
            .name("kv-close".into())
            .spawn(move || drop(open))
        {
            closing.push((self.path.clone(), close));
        }
    }
}

/// Waits until the databases of folder `path` that this process was closing are closed.
fn wait_closed(path: &Path) {
    let mine: Vec<_> = {
        let mut closing = CLOSING.lock().unwrap_or_else(|p| p.into_inner());
        let (mine, others) = std::mem::take(&mut *closing)
            .into_iter()
            .partition(|(p, _)| p == path);
        *closing = others;
        mine
    };
    for (_, close) in mine {
        let _ = close.join();
    }
}

/// The folder beside `path` named `<its name>.<suffix>`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Whether folder `path` holds a database sled wrote.
fn is_sled(path: &Path) -> bool {
    path.join("conf").is_file() && path.join("db").is_file()
}

/// Opens fjall's database in folder `path` (created if missing).
fn open_engine(path: &Path) -> Result<(fjall::Keyspace, fjall::PartitionHandle), KvError> {
    let keyspace = fjall::Config::new(path)
        .cache_size(CACHE_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_BYTES)
        .max_journaling_size(JOURNAL_BYTES)
        .flush_workers(1)
        .compaction_workers(1)
        .open()
        .map_err(|e| KvError::engine(path, e))?;
    let memtable = std::env::var("FVFS_KV_MEMTABLE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MEMTABLE_BYTES);
    let options = fjall::PartitionCreateOptions::default()
        .max_memtable_size(memtable)
        // The random keys do not compress, the rest of a record does: 300,000 files'
        // manifest tables 17.5 -> 15.6 MB (thirtieth session, ARCHITECTURE.md).
        .compression(fjall::CompressionType::Lz4)
        .block_size(BLOCK_BYTES);
    let part = keyspace
        .open_partition(PARTITION, options)
        .map_err(|e| KvError::engine(path, e))?;
    Ok((keyspace, part))
}

/// fsyncs every file and folder under `dir`, and `dir` itself.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            crate::platform::sync_all(&File::open(entry.path())?)?;
        }
    }
    crate::platform::sync_dir(dir)
}

/// Takes the exclusive lock of folder `path`, trying a held one again for a while.
fn lock(path: &Path) -> Result<File, KvError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.join("lock"))
        .map_err(|e| KvError::other(path, format!("lock: {e}")))?;
    for _ in 0..OPEN_TRIES {
        if crate::platform::lock_exclusive(&file).map_err(|e| KvError::other(path, e))? {
            return Ok(file);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(KvError::other(path, "held by another process"))
}

/// Finishes or redoes a conversion from sled that a crash interrupted, then converts
/// folder `path` if sled wrote it (see the module's doc).
fn convert_sled(path: &Path) -> Result<(), KvError> {
    let (new, old) = (beside(path, "fjall-new"), beside(path, "sled-old"));
    let io = |e: std::io::Error| KvError::other(path, format!("converting from sled: {e}"));
    if !path.exists() && new.is_dir() {
        std::fs::rename(&new, path).map_err(io)?;
    }
    if is_sled(path) {
        if new.exists() {
            std::fs::remove_dir_all(&new).map_err(io)?;
        }
        copy_from_sled(path, &new)?;
        sync_tree(&new).map_err(io)?;
        std::fs::rename(path, &old).map_err(io)?;
        std::fs::rename(&new, path).map_err(io)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::platform::sync_dir(parent).map_err(io)?;
        }
        tracing::info!("{}: converted from sled", path.display());
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io)?;
    }
    Ok(())
}

/// Copies every pair of sled's database in `from` into a new database in `to`, made
/// durable.
fn copy_from_sled(from: &Path, to: &Path) -> Result<(), KvError> {
    let sled_err = |e: sled::Error| KvError {
        path: from.to_owned(),
        detail: format!("reading sled's database to convert it: {e}"),
        corrupt: matches!(e, sled::Error::Corruption { .. }),
    };
    let db = sled::Config::new().path(from).open().map_err(sled_err)?;
    let (keyspace, part) = open_engine(to)?;
    let mut batch = keyspace.batch();
    let mut n = 0;
    for pair in db.iter() {
        let (k, v) = pair.map_err(sled_err)?;
        batch.insert(&part, &*k, &*v);
        n += 1;
        if n % CONVERT_BATCH == 0 {
            std::mem::replace(&mut batch, keyspace.batch())
                .commit()
                .map_err(|e| KvError::engine(to, e))?;
        }
    }
    batch.commit().map_err(|e| KvError::engine(to, e))?;
    keyspace
        .persist(PersistMode::SyncAll)
        .map_err(|e| KvError::engine(to, e))
}

impl Kv {
    /// Opens (or creates) the database in folder `path`. Fails if another process has
    /// it open.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        wait_closed(path);
        convert_sled(path)?;
        let fresh = !path.exists();
        std::fs::create_dir_all(path).map_err(|e| KvError::other(path, e))?;
        let lock = lock(path)?;
        let (keyspace, part) = open_engine(path)?;
        let kv = Self {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                open: Some(Open {
                    part,
                    keyspace,
                    _lock: lock,
                }),
            }),
        };
        if fresh {
            kv.flush_durable()?;
            sync_tree(path).map_err(|e| kv.err(e))?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                crate::platform::sync_dir(parent).map_err(|e| kv.err(e))?;
            }
        }
        Ok(kv)
    }

    /// Whether folder `path` holds a database (of this engine, or one sled wrote).
    pub fn exists(path: &Path) -> bool {
        path.join("version").is_file() || is_sled(path)
    }

    fn err(&self, e: impl ToString) -> KvError {
        KvError::other(&self.shared.path, e)
    }

    fn engine_err(&self, e: fjall::Error) -> KvError {
        KvError::engine(&self.shared.path, e)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let value = self
            .shared
            .open()
            .part
            .get(key)
            .map_err(|e| self.engine_err(e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool, KvError> {
        self.shared
            .open()
            .part
            .contains_key(key)
            .map_err(|e| self.engine_err(e))
    }

    /// The pairs of `range`, in key order (or reversed), read [`PAGE`] at a time (what
    /// a page holds is read at once; a write between pages shows in the pages after
    /// it); the iterator holds the database, not this handle.
    fn scan(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair, KvError>> + Send + 'static> {
        Box::new(Pages {
            kv: self.clone(),
            range,
            reverse,
            page: VecDeque::new(),
            done: false,
        })
    }

    /// Every pair whose key starts with `prefix`, in key order (or reversed); the
    /// iterator holds the database, not this handle.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair, KvError>> + Send + 'static> {
        let end = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.scan((Bound::Included(prefix.to_vec()), end), reverse)
    }

    /// Every pair whose key starts with `prefix` and comes after `after` (all of them
    /// if `None`), in key order: a scan that resumes where an earlier one stopped.
    pub fn scan_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<Pair, KvError>> + Send + 'static> {
        let start = match after {
            Some(k) => Bound::Excluded(k.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        let end = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.scan((start, end), false)
    }

    /// Applies `batch` atomically. Visible at once, survives a killed process at once
    /// (written to the OS), and a power cut after [`Kv::flush_durable`].
    ///
    /// # Panics
    /// If a value is larger than [`MAX_VALUE_LEN`].
    pub fn apply(&self, batch: Batch) -> Result<(), KvError> {
        let Open { part, keyspace, .. } = self.shared.open();
        let mut b = keyspace.batch();
        for (k, v) in batch.ops {
            match v {
                Some(v) => {
                    assert!(
                        v.len() <= MAX_VALUE_LEN,
                        "metadata value of {} bytes",
                        v.len()
                    );
                    b.insert(part, k, v);
                }
                None => b.remove(part, k),
            }
        }
        b.commit().map_err(|e| self.engine_err(e))
    }

    /// Makes everything applied so far survive a crash or a power cut.
    pub fn flush_durable(&self) -> Result<(), KvError> {
        self.shared
            .open()
            .keyspace
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.engine_err(e))
    }
}

/// Pairs read per page of a scan: the engine's iterators stay on the thread that
/// made them, a page's worth of pairs is what a scan holds.
const PAGE: usize = 1024;

/// A scan, a page at a time (see [`Kv::scan`]).
struct Pages {
    kv: Kv,
    /// What is left to read.
    range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    reverse: bool,
    page: VecDeque<Pair>,
    /// The last page was read (or failed).
    done: bool,
}

impl Pages {
    /// Reads the next page and moves the range past it.
    fn turn(&mut self) -> Result<(), KvError> {
        let iter = self.kv.shared.open().part.range(self.range.clone());
        let page: Vec<_> = if self.reverse {
            iter.rev().take(PAGE).collect()
        } else {
            iter.take(PAGE).collect()
        };
        self.done = page.len() < PAGE;
        for pair in page {
            let (k, v) = pair.map_err(|e| self.kv.engine_err(e))?;
            self.page.push_back((k.to_vec(), v.to_vec()));
        }
        if let Some((last, _)) = self.page.back() {
            let past = Bound::Excluded(last.clone());
            if self.reverse {
                self.range.1 = past;
            } else {
                self.range.0 = past;
            }
        }
        Ok(())
    }
}

impl Iterator for Pages {
    type Item = Result<Pair, KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            if let Err(e) = self.turn() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.page.pop_front().map(Ok)
    }
}

/// The first key after every key that starts with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests;
