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
    path: PathBuf,
    db: sled::Db,
}

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
            path: path.to_owned(),
            db,
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

    fn err(&self, e: impl ToString) -> KvError {
        KvError {
            path: self.path.clone(),
            detail: e.to_string(),
            corrupt: false,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self
            .db
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool, KvError> {
        self.db.contains_key(key).map_err(|e| self.err(e))
    }

    /// Every pair whose key starts with `prefix`, in key order (or reversed); the
    /// iterator holds the database, not this handle.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair, KvError>> + Send + 'static> {
        let iter = self.db.scan_prefix(prefix);
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
        self.db.apply_batch(b).map_err(|e| self.err(e))
    }

    /// Makes everything applied so far survive a crash or a power cut.
    pub fn flush_durable(&self) -> Result<(), KvError> {
        self.db.flush().map_err(|e| self.err(e))?;
        for path in [
            self.path.join("db"),
            self.path.join("conf"),
            self.path.clone(),
        ] {
            File::open(&path)
                .and_then(|f| crate::platform::sync_all(&f))
                .map_err(|e| self.err(format!("fsync {}: {e}", path.display())))?;
        }
        Ok(())
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
}
