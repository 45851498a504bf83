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
//!
//! # Absent keys
//! [`Kv::filter_absent`] keeps the keys of one prefix in an in-memory filter
//! (`absent.rs`), so that a lookup of a key that is not there (a new chunk) usually
//! skips sled. Every write goes through [`Kv::apply`], which keeps the filter exact:
//! it never calls a stored key absent.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

mod absent;

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
    // Dropped before `shared`: the last handle stops the filter's builder, so that the
    // database closes on the dropping thread, not on the builder's.
    handles: Arc<Handles>,
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    db: sled::Db,
    absent: Arc<absent::Absent>,
}

/// What the handles of one database share: the filter's builder, stopped and waited
/// for when the last handle goes.
#[derive(Default)]
struct Handles {
    stop: Arc<AtomicBool>,
    builder: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let builder = self.builder.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(builder) = builder.take() {
            // It stops at its next step (a few thousand keys); a panic there only cost
            // the filter.
            let _ = builder.join();
        }
    }
}

/// Keys read per step of a filter's build: the build holds the database only that long.
const BUILD_STEP: usize = 4096;

impl Kv {
    /// Opens (or creates) the database in folder `path`. Fails if another process has it open.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let fresh = !path.exists();
        let open = || {
            sled::Config::new()
                .path(path)
                .mode(sled::Mode::HighThroughput)
                // sled's default page cache is 1 GiB; records are tiny and the OS caches
                // the file.
                .cache_capacity(64 << 20)
                .open()
        };
        // sled releases its file lock when the last of its background I/O threads lets
        // go of the database, which can be just after the handle was dropped: a reopen
        // in the same process then finds the lock still held for a moment (the pack
        // store's reopen test failed that way in CI). sled offers nothing to wait on, so
        // a held lock is tried again for up to a second; another process that really
        // holds it is still reported, a second later. (sled 0.34 reports it as an
        // `Other` I/O error with this text.)
        let held = |e: &sled::Error| e.to_string().contains("could not acquire lock");
        let mut tries = 0;
        let db = loop {
            match open() {
                Err(e) if held(&e) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        }
        .map_err(|e| KvError {
            path: path.to_owned(),
            detail: e.to_string(),
            corrupt: matches!(e, sled::Error::Corruption { .. }),
        })?;
        let kv = Self {
            handles: Arc::default(),
            shared: Arc::new(Shared {
                path: path.to_owned(),
                db,
                absent: Arc::default(),
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
    /// next 0.15 s. A process that writes much and runs long (the daemon) calls this after
    /// its handles are closed, moving that replay from its next start to its stop. A
    /// folder without a database (a disk not mounted) is left alone, nothing created.
    pub fn fold_log(path: &Path) -> Result<(), KvError> {
        if !path.join("db").is_file() {
            return Ok(());
        }
        // Flushed as any write is: the snapshot's new name and the old one's removal
        // are folder entries, made durable by the folder's fsync.
        Self::open(path)?.flush_durable()
    }

    /// Keeps the keys starting with `prefix` in an in-memory filter, so that looking up
    /// one that is absent usually costs no database read (`absent.rs` says how it stays
    /// exact, whatever the other handles are writing meanwhile). It is built by a
    /// background thread that reads the keys a few thousand at a time and stops when the
    /// last handle is dropped; lookups go to the database until it is ready. One prefix
    /// per database; later calls are ignored.
    pub fn filter_absent(&self, prefix: &[u8]) {
        if self.shared.absent.set_prefix(prefix) {
            self.build_filter();
        }
    }

    /// Whether the filter knows `key` is not in the database.
    fn known_absent(&self, key: &[u8]) -> bool {
        self.shared.absent.absent(key)
    }

    fn err(&self, e: impl ToString) -> KvError {
        KvError {
            path: self.shared.path.clone(),
            detail: e.to_string(),
            corrupt: false,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        if self.known_absent(key) {
            return Ok(None);
        }
        Ok(self
            .shared
            .db
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool, KvError> {
        if self.known_absent(key) {
            return Ok(false);
        }
        self.shared.db.contains_key(key).map_err(|e| self.err(e))
    }

    /// Every pair whose key starts with `prefix`, in key order (or reversed); the
    /// iterator holds the database, not this handle.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair, KvError>> + Send + 'static> {
        let iter = self.shared.db.scan_prefix(prefix);
        let kv = self.clone();
        let map = move |r: sled::Result<(sled::IVec, sled::IVec)>| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| kv.err(e))
        };
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }

    /// Every pair whose key starts with `prefix` and comes after `after` (all of them
    /// if `None`), in key order: a scan that resumes where an earlier one stopped.
    pub fn scan_after<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = Result<Pair, KvError>> + 'a> {
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(sled::IVec::from(k)),
            None => Bound::Included(sled::IVec::from(prefix)),
        };
        let iter = self
            .shared
            .db
            .range::<sled::IVec, _>((start, Bound::Unbounded))
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)));
        Box::new(iter.map(move |r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| self.err(e))
        }))
    }

    /// Applies `batch` atomically. Visible at once; durable after [`Kv::flush_durable`].
    pub fn apply(&self, batch: Batch) -> Result<(), KvError> {
        // Held until sled has the batch (the filter's invariant).
        let writing = self.shared.absent.writing(
            batch
                .ops
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| k.as_slice()),
        );
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => {
                    assert!(
                        v.len() <= MAX_VALUE_LEN,
                        "metadata value of {} bytes",
                        v.len()
                    );
                    b.insert(k, v)
                }
                None => b.remove(k),
            }
        }
        let applied = self.shared.db.apply_batch(b).map_err(|e| self.err(e));
        drop(writing);
        if self.shared.absent.claim_rebuild() {
            self.build_filter();
        }
        applied
    }

    /// Makes everything applied so far survive a crash or a power cut.
    pub fn flush_durable(&self) -> Result<(), KvError> {
        self.shared.db.flush().map_err(|e| self.err(e))?;
        let dir = &self.shared.path;
        for path in [dir.join("db"), dir.join("conf"), dir.clone()] {
            File::open(&path)
                .and_then(|f| crate::platform::sync_all(&f))
                .map_err(|e| self.err(format!("fsync {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

impl Kv {
    /// Runs the build the caller claimed on a thread of its own, reading the database
    /// one step at a time (it holds a weak reference between steps).
    fn build_filter(&self) {
        let filter = self.shared.absent.clone();
        let prefix = filter.prefix().to_vec();
        let (shared, stop) = (Arc::downgrade(&self.shared), self.handles.stop.clone());
        let step = move |after: Option<&[u8]>| -> Option<Vec<Vec<u8>>> {
            use std::ops::Bound;
            if stop.load(Ordering::Acquire) {
                return None;
            }
            let shared = shared.upgrade()?;
            let start = match after {
                Some(k) => Bound::Excluded(sled::IVec::from(k)),
                None => Bound::Included(sled::IVec::from(prefix.as_slice())),
            };
            let keys: Result<Vec<_>, _> = shared
                .db
                .range::<sled::IVec, _>((start, Bound::Unbounded))
                .keys()
                .take_while(|k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
                .take(BUILD_STEP)
                .map(|k| k.map(|k| k.to_vec()))
                .collect();
            keys.map_err(|e| {
                tracing::warn!(path = %shared.path.display(), "key filter not built: {e}");
            })
            .ok()
        };
        let run = filter.clone();
        let spawned = std::thread::Builder::new()
            .name("kv-filter".into())
            .spawn(move || run.build(step));
        match spawned {
            // The previous builder, if any, has ended its build (one at a time).
            Ok(builder) => {
                *self
                    .handles
                    .builder
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(builder);
            }
            Err(e) => {
                // Nothing is lost: lookups keep going to the database.
                tracing::warn!("key filter not built: {e}");
                filter.build(|_| None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_scans_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path()).unwrap();
        let mut b = Batch::default();
        for k in [b"v1", b"v3", b"v2", b"x1"] {
            b.insert(&k[..], &k[..]);
        }
        b.remove(&b"v3"[..]);
        kv.apply(b).unwrap();
        kv.flush_durable().unwrap();
        assert!(
            Kv::open(dir.path()).is_err(),
            "a second open of the same folder must fail"
        );
        drop(kv);
        let kv = Kv::open(dir.path()).unwrap();
        let keys: Vec<_> = kv.scan_prefix(b"v", true).map(|r| r.unwrap().0).collect();
        assert_eq!(keys, vec![b"v2".to_vec(), b"v1".to_vec()]);
        assert_eq!(kv.get(b"x1").unwrap().as_deref(), Some(&b"x1"[..]));
        assert!(!kv.contains(b"v3").unwrap());
    }

    /// sled's snapshots, `snap.<log position>`: the newest position covered.
    fn snapshot_position(dir: &Path) -> Option<u64> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
            })
            .max()
    }

    #[test]
    fn a_folded_log_is_in_a_newer_snapshot_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path()).unwrap();
        for i in 0..2000u32 {
            let mut b = Batch::default();
            b.insert(i.to_be_bytes().to_vec(), vec![7u8; 100]);
            kv.apply(b).unwrap();
        }
        kv.flush_durable().unwrap();
        let before = snapshot_position(dir.path());
        drop(kv);
        Kv::fold_log(dir.path()).unwrap();
        let after = snapshot_position(dir.path());
        assert!(after > before, "{before:?} -> {after:?}");
        let kv = Kv::open(dir.path()).unwrap();
        assert_eq!(kv.scan_prefix(b"", false).count(), 2000);
        assert_eq!(
            kv.get(&1999u32.to_be_bytes()).unwrap(),
            Some(vec![7u8; 100])
        );
    }

    #[test]
    fn folding_where_no_database_is_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("index");
        Kv::fold_log(&gone).unwrap();
        assert!(!gone.exists());
        std::fs::create_dir(&gone).unwrap();
        Kv::fold_log(&gone).unwrap();
        assert_eq!(std::fs::read_dir(&gone).unwrap().count(), 0);
    }

    fn chunk_key(i: u64) -> Vec<u8> {
        let mut k = b"c".to_vec();
        k.extend_from_slice(blake3::hash(&i.to_le_bytes()).as_bytes());
        k
    }

    fn insert_all(kv: &Kv, keys: impl Iterator<Item = Vec<u8>>) {
        let mut b = Batch::default();
        keys.for_each(|k| b.insert(k, b"v".to_vec()));
        kv.apply(b).unwrap();
    }

    #[test]
    fn a_filtered_database_never_reports_a_written_key_absent() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path()).unwrap();
        insert_all(&kv, (0..3000).map(chunk_key));
        kv.filter_absent(b"c");
        // Two writers, past the first filter's capacity (so a rebuild runs while they
        // write), each checking its keys right after writing them and removing some.
        std::thread::scope(|s| {
            for w in 0..2u64 {
                let kv = &kv;
                s.spawn(move || {
                    for batch in 0..80u64 {
                        let first = 10_000 + (w * 80 + batch) * 500;
                        insert_all(kv, (first..first + 500).map(chunk_key));
                        let mut gone = Batch::default();
                        gone.remove(chunk_key(first));
                        kv.apply(gone).unwrap();
                        for i in first + 1..first + 500 {
                            assert!(
                                kv.contains(&chunk_key(i)).unwrap(),
                                "key {i} written, reported absent"
                            );
                        }
                        assert!(!kv.contains(&chunk_key(first)).unwrap());
                    }
                });
            }
        });
        // Once the builds are over, the filter alone answers: every key written before
        // or during them is found, and most absent keys are answered from memory.
        let filter = kv.shared.absent.clone();
        for _ in 0..1000 {
            if !filter.building() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!filter.building());
        for i in (0..3000).chain(10_000..10_000 + 160 * 500) {
            let removed = i >= 10_000 && (i - 10_000) % 500 == 0;
            assert_eq!(kv.get(&chunk_key(i)).unwrap().is_none(), removed, "key {i}");
        }
        let known = (1u64 << 40..(1 << 40) + 1000)
            .filter(|i| kv.known_absent(&chunk_key(*i)))
            .count();
        assert!(known > 950, "{known} of 1000 absent keys known absent");
        // Dropped while a build runs: the builder stops and the database closes before
        // the drop returns.
        drop(kv);
        let kv = Kv::open(dir.path()).unwrap();
        kv.filter_absent(b"c");
        drop(kv);
        let kv = Kv::open(dir.path()).unwrap();
        assert!(kv.contains(&chunk_key(10_001)).unwrap());
    }
}
