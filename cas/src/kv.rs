//! The key-value adapter: the only module that knows the metadata engine is sled. The
//! manifest keeps its records in one; each pack store keeps its chunk locations in one.
//!
//! Everything above it sees a sorted byte map with atomic batches and a durable flush,
//! so the engine could be swapped by rewriting this file alone.
//!
//! # Durability
//! sled 0.34's `flush` does not survive a power cut on Linux (it writes with
//! `sync_file_range`, which neither persists new blocks' metadata nor the disk
//! cache), so [`Kv::flush_durable`] follows it with an `fsync` of sled's `db` and
//! `conf` files and of the folder (and [`Kv::open`] makes the folder's own entry in
//! its parent durable). Values must stay small (well under 64 KiB): sled writes large
//! values to blob files that it never fsyncs. [`Kv::apply`] enforces that.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};

use presence::Presence;

mod presence;

/// Largest value the adapter accepts, far below sled's blob threshold.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("metadata database at {}: {detail}", path.display())]
pub struct KvError {
    path: PathBuf,
    detail: String,
    /// sled found its files damaged (not a passing failure).
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

/// Operations applied between two folds of an open database, unless
/// `FVFS_KV_FOLD_OPS` says otherwise (tests set it low to fold often). A start after
/// a kill replays at most this many: in a pack index of nine million records, from a
/// cold disk, sled opened in 1.0 s after no operation since its snapshot, 1.2-1.5 s
/// after 64,000 random inserts, 2.1-2.2 s after 100,000, 3.0 s after 200,000. A fold
/// itself costs about that replay (up to 1.7 s at ten million records, well under
/// 0.1 s below a million); see [`Kv::apply`].
const FOLD_OPS: u64 = 64_000;

/// Keys of its prefix inserted before the presence filter is installed: a first
/// import of a large tree gets it at its first checkpoints; the 300,000-file re-run,
/// whose few hundred new tree nodes made it scan 600,000 keys, took 0.25 s and 32 MB
/// more with it.
const PRESENCE_AFTER: u64 = 4096;

/// sled's page cache, per database (its default is 1 GiB): records are tiny and the OS
/// caches the file. sled holds several times what it counts here, and two databases
/// fill theirs as a store grows: `fvfsd migrate` of 1,000,000 small files peaked at
/// 516 MB with 64 MiB each, 304 MB with 16 MiB (223 MB with 4 MiB, 20% slower); at
/// 300,000 files 16 MiB was no slower than 64 (21.7-22.0 s against 23.2-24.0 s).
const CACHE_BYTES: u64 = 16 << 20;

/// A held lock is tried again for a second at an open (another process may hold it)...
const OPEN_TRIES: u32 = 50;
/// ...and for ten seconds at a fold, where only this process's old handle can.
const FOLD_TRIES: u32 = 500;

fn fold_ops() -> u64 {
    static OPS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *OPS.get_or_init(|| {
        std::env::var("FVFS_KV_FOLD_OPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(FOLD_OPS)
    })
}

/// A sorted map from byte keys to small byte values, stored durably. Clones share the
/// same database.
#[derive(Clone)]
pub struct Kv {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// `None` only after a fold could not open the database again: every call fails
    /// until a later flush opens it. A fold that finds the database's file gone keeps
    /// the open handle instead.
    db: RwLock<Option<sled::Db>>,
    /// Operations applied since the database was opened or last folded.
    applied: AtomicU64,
    /// Operations after which an apply folds the database.
    fold_after: u64,
    /// Cloned by every scan, which keeps its own handle on sled for as long as it
    /// lives: no fold while one does.
    scans: Arc<()>,
    /// Device and inode of sled's `db` file as first opened: a fold reopens only that
    /// file, never a new database where the folder went away (a NAS share unmounted
    /// under its index, a folder moved).
    file: (u64, u64),
    /// The prefix whose hashed keys [`Kv::keep_presence`] asked to filter...
    wanted: OnceLock<u8>,
    /// ...and the filter, once applies inserted [`PRESENCE_AFTER`] of them.
    presence: OnceLock<Presence>,
    /// Such keys inserted while there was no filter.
    unfiltered: AtomicU64,
    /// Held for reading by each apply from its look at `presence` to sled's write,
    /// for writing while the filter is installed: no apply writes a key unnoted after
    /// the filter's scan went past it.
    installing: RwLock<()>,
    /// The filter's scan, while it may still run (joined by tests).
    scanning: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Device and inode of the database file in folder `path`.
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path.join("db"))?;
    Ok((meta.dev(), meta.ino()))
}

/// Opens sled's database in `path`, trying a held lock again for up to `tries` times
/// 20 ms.
fn open_db(path: &Path, tries: u32) -> Result<sled::Db, KvError> {
    let open = || {
        sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()
    };
    // sled releases its file lock when the last of its background I/O threads lets
    // go of the database, which can be just after the handle was dropped: a reopen
    // in the same process then finds the lock still held for a moment (the pack
    // store's reopen test failed that way in CI). sled offers nothing to wait on, so
    // a held lock is tried again for a while; another process that really holds it
    // is still reported, that much later. (sled 0.34 reports it as an `Other` I/O
    // error with this text.)
    let held = |e: &sled::Error| e.to_string().contains("could not acquire lock");
    let mut tried = 0;
    loop {
        match open() {
            Err(e) if held(&e) && tried < tries => {
                tried += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other,
        }
    }
    .map_err(|e| KvError {
        path: path.to_owned(),
        detail: e.to_string(),
        corrupt: matches!(e, sled::Error::Corruption { .. }),
    })
}

impl Kv {
    /// Opens (or creates) the database in folder `path`. Fails if another process has it open.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        Self::open_folding(path, fold_ops())
    }

    /// [`Kv::open`], folding after `fold_after` operations.
    fn open_folding(path: &Path, fold_after: u64) -> Result<Self, KvError> {
        let fresh = !path.exists();
        let db = open_db(path, OPEN_TRIES)?;
        let file = file_id(path).map_err(|e| KvError::other(path, e))?;
        let kv = Self {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                db: RwLock::new(Some(db)),
                applied: AtomicU64::new(0),
                fold_after,
                scans: Arc::new(()),
                file,
                wanted: OnceLock::new(),
                presence: OnceLock::new(),
                unfiltered: AtomicU64::new(0),
                installing: RwLock::new(()),
                scanning: Default::default(),
            }),
        };
        if fresh {
            kv.flush_durable()?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                crate::platform::sync_dir(parent).map_err(|e| kv.err(e))?;
            }
        }
        Ok(kv)
    }

    /// Folds the log of the closed database in folder `path` into a fresh snapshot, so
    /// that its next open is quick. sled 0.34 writes its snapshot of the page table only
    /// when it opens, and each open replays the whole log written since the last one: the
    /// first open after two million records were written by one process took 2.2 s, the
    /// next 0.15 s. A process that stops (the daemon) calls this after its handles are
    /// closed, so that its next start replays nothing; while open, a database folds
    /// itself every so often ([`Kv::apply`]). A folder without a database (a
    /// disk not mounted) is left alone, nothing created.
    pub fn fold_log(path: &Path) -> Result<(), KvError> {
        if !path.join("db").is_file() {
            return Ok(());
        }
        // Flushed as any write is: the snapshot's new name and the old one's removal
        // are folder entries, made durable by the folder's fsync.
        Self::open(path)?.flush_durable()
    }

    fn err(&self, e: impl ToString) -> KvError {
        KvError::other(&self.shared.path, e)
    }

    /// Runs `f` on the open database.
    fn with<R>(&self, f: impl FnOnce(&sled::Db) -> sled::Result<R>) -> Result<R, KvError> {
        let slot = self.shared.db.read().unwrap_or_else(|p| p.into_inner());
        let db = slot
            .as_ref()
            .ok_or_else(|| self.err("closed: it could not be opened again after a fold"))?;
        f(db).map_err(|e| self.err(e))
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        if !self.may_hold(key) {
            return Ok(None);
        }
        Ok(self.with(|db| db.get(key))?.map(|v| v.to_vec()))
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool, KvError> {
        Ok(self.may_hold(key) && self.with(|db| db.contains_key(key))?)
    }

    /// False only when the presence filter knows that `key` is not held.
    fn may_hold(&self, key: &[u8]) -> bool {
        self.shared.presence.get().is_none_or(|p| p.may_hold(key))
    }

    /// Keeps a presence filter ([`presence`]) of the keys that are `prefix` followed
    /// by a 32-byte hash, so that [`Kv::get`] and [`Kv::contains`] of most such keys
    /// that were never inserted answer without reading the database. Its memory is a
    /// fixed 4 MiB, taken once this handle inserted [`PRESENCE_AFTER`] such keys: a
    /// command that reads, or writes a few chunks (a migrate's re-run stores the
    /// nodes of its partial trees), pays neither the memory nor the scan. What the
    /// database already holds is then noted by a scan on a thread of its own, a step
    /// at a time (a fold or a close waits for one step at most); the filter answers
    /// once the scan is through. One prefix per database: a later call is ignored.
    pub fn keep_presence(&self, prefix: u8) {
        let _ = self.shared.wanted.set(prefix);
    }

    /// Installs the filter wanted, if a key of `batch` is one it covers.
    fn install_presence(&self, batch: &Batch) {
        let (Some(&prefix), None) = (self.shared.wanted.get(), self.shared.presence.get()) else {
            return;
        };
        let covered =
            |(k, v): &&(Vec<u8>, Option<Vec<u8>>)| v.is_some() && Presence::covers(prefix, k);
        let new = batch.ops.iter().filter(covered).count() as u64;
        let inserted = self.shared.unfiltered.fetch_add(new, Ordering::Relaxed) + new;
        if inserted < PRESENCE_AFTER {
            return;
        }
        let _no_apply = self
            .shared
            .installing
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if self.shared.presence.set(Presence::new(prefix)).is_err() {
            return;
        }
        let shared = Arc::downgrade(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("kv-presence".into())
            .spawn(move || note_held(&shared));
        match spawned {
            Ok(handle) => {
                *self
                    .shared
                    .scanning
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(handle)
            }
            Err(e) => tracing::warn!("no presence filter: {e}"),
        }
    }

    /// Waits for the presence filter's scan, if one was started.
    #[cfg(test)]
    fn presence_scanned(&self) {
        let scan = self.shared.scanning.lock().unwrap().take();
        if let Some(scan) = scan {
            scan.join().unwrap();
        }
    }

    /// The pairs of `range`, in key order (or reversed), holding a handle on the
    /// database and a scan token (no fold while it lives), not this handle.
    fn scan<R: std::ops::RangeBounds<Vec<u8>>>(
        &self,
        range: R,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair, KvError>> + Send + 'static> {
        let kv = self.clone();
        let token = Arc::clone(&self.shared.scans);
        let iter = match self.with(|db| Ok(db.range(range))) {
            Ok(iter) => iter,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let map = move |r: sled::Result<(sled::IVec, sled::IVec)>| {
            let _scanning = &token;
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| kv.err(e))
        };
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }

    /// Every pair whose key starts with `prefix`, in key order (or reversed); the
    /// iterator holds the database, not this handle.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair, KvError>> + Send + 'static> {
        use std::ops::Bound;
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
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(k.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        let end = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.scan((start, end), false)
    }

    /// Applies `batch` atomically. Visible at once; durable after [`Kv::flush_durable`]
    /// (or earlier: sled flushes its log in the background every 500 ms).
    ///
    /// Once [`FOLD_OPS`] operations were applied since the last fold, the database is
    /// also folded: flushed durably, closed and opened again, which writes sled's
    /// snapshot, so that an open after a kill replays only what came after. sled 0.34
    /// has no other way to write one: its replay of ten million records took 7.7 s. It
    /// also bounds sled's memory, which grows with what was applied since the open: six
    /// million operations without a fold held 5 GB, folding every 20,000 0.5 GB. The
    /// fold waits for nothing: while another call or a scan holds the database it is
    /// left to a later apply; while it runs, calls on this database wait for it.
    pub fn apply(&self, batch: Batch) -> Result<(), KvError> {
        let ops = batch.ops.len() as u64;
        self.install_presence(&batch);
        let _noting = self
            .shared
            .installing
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let presence = self.shared.presence.get();
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => {
                    assert!(
                        v.len() <= MAX_VALUE_LEN,
                        "metadata value of {} bytes",
                        v.len()
                    );
                    // Noted before sled holds it: the filter never answers "absent"
                    // for a key the database has.
                    if let Some(p) = presence {
                        p.note(&k);
                    }
                    b.insert(k, v)
                }
                None => b.remove(k),
            }
        }
        self.with(|db| db.apply_batch(b))?;
        drop(_noting);
        help_collect(ops);
        let applied = self.shared.applied.fetch_add(ops, Ordering::Relaxed) + ops;
        // The batch is applied whatever the fold does: a failed one is for the next
        // call to report (a database it could not open again stays closed).
        if applied >= self.shared.fold_after {
            if let Err(e) = self.fold() {
                tracing::warn!("{e} (while folding its log)");
            }
        }
        Ok(())
    }

    /// Makes everything applied so far survive a crash or a power cut.
    pub fn flush_durable(&self) -> Result<(), KvError> {
        let closed = self
            .shared
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none();
        if closed {
            self.fold()?;
        }
        self.with(|db| db.flush())?;
        self.sync_files()
    }

    /// fsyncs sled's files and folder (its own flush does not reach the disk).
    fn sync_files(&self) -> Result<(), KvError> {
        let path = &self.shared.path;
        for path in [path.join("db"), path.join("conf"), path.clone()] {
            File::open(&path)
                .and_then(|f| crate::platform::sync_all(&f))
                .map_err(|e| self.err(format!("fsync {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Flushes, closes and reopens the database (opens it, after a fold that could
    /// not), unless a call or a scan holds it (see [`Kv::apply`]).
    fn fold(&self) -> Result<(), KvError> {
        // Held by another call: the next apply tries again.
        let mut slot = match self.shared.db.try_write() {
            Ok(slot) => slot,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        let started = std::time::Instant::now();
        if let Some(db) = slot.as_ref() {
            if Arc::strong_count(&self.shared.scans) > 1 {
                return Ok(());
            }
            db.flush().map_err(|e| self.err(e))?;
        }
        match file_id(&self.shared.path) {
            Ok(file) if file == self.shared.file => {}
            found => {
                return Err(self.err(format!(
                    "not folded: its file is no longer there ({})",
                    found.map_or_else(|e| e.to_string(), |_| "another file".into())
                )))
            }
        }
        *slot = None;
        *slot = Some(open_db(&self.shared.path, FOLD_TRIES)?);
        drop(slot);
        let ops = self.shared.applied.swap(0, Ordering::Relaxed);
        // The new snapshot's name and the old one's removal, durable.
        self.sync_files()?;
        tracing::info!(
            "{}: log of {ops} operations folded into a snapshot in {:.2} s",
            self.shared.path.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Frees what sled replaced: sled hands every node version it replaces to
/// crossbeam-epoch's global collector, which frees a few bags of them each time some
/// thread pins; a writer whose readers no longer touch sled (the presence filter
/// answers them) made garbage faster than it alone collected, and a 300,000-file
/// migrate peaked 150 MB higher. So each apply pins in proportion to its writes (the
/// collector collects at every 128th pin of a thread), without flushing this thread's
/// bag: flushing pushed a partly filled bag per apply, and a daemon serving `put -r`
/// peaked 35 MB higher.
fn help_collect(ops: u64) {
    for _ in 0..ops * 2 {
        drop(crossbeam_epoch::pin());
    }
}

/// The presence filter's scan: notes every key of its prefix that the database holds,
/// [`NOTE_STEP`] keys per scan, holding the database only for a step; stops early
/// (the filter never trusted) when the database is closed or fails.
fn note_held(shared: &Weak<Shared>) {
    const NOTE_STEP: usize = 65_536;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let kv = Kv { shared };
        let presence = kv.shared.presence.get().expect("installed before the scan");
        let prefix = [presence.prefix()];
        let mut noted = 0;
        for pair in kv.scan_after(&prefix, after.as_deref()).take(NOTE_STEP) {
            match pair {
                Ok((key, _)) => {
                    presence.note(&key);
                    after = Some(key);
                    noted += 1;
                }
                Err(e) => {
                    tracing::warn!("no presence filter: {e}");
                    return;
                }
            }
        }
        if noted < NOTE_STEP {
            presence.ready();
            return;
        }
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
