//! A chunk store in a directory: the local tier, and the NAS tier on a mounted path.
//!
//! ```text
//! ROOT/FVFS-STORE     marker: this directory is a chunk store (format 1)
//! ROOT/ab/abcd...     a frame, named by its id, in one of 256 shards by id prefix
//! ROOT/ab/abcd....N.tmp  a frame put since the last sync, not yet under its final name
//! ROOT/OPEN           present while a process has the store open (or crashed with it)
//! ```
//!
//! # Invariant: a file under its final name is whole and durable
//!
//! `put` writes the frame to a `.tmp` name beside its final one and remembers it as
//! *pending*; readers find pending frames through that table. `sync` flushes the whole
//! file system (`syncfs`, one call for any number of chunks, instead of one `fsync`
//! per file), renames every pending frame to its final name (within its shard, so
//! renames never serialise on the file system's cross-directory rename lock), and
//! flushes again so the renames are durable too. A crash can therefore leave garbage
//! only under `.tmp` names, never a truncated frame under a final name that a later
//! idempotent `put` would trust. `OPEN` tells the next `open` that a crash may have
//! left such files, and only then does it sweep the shards for them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::store::verify;
use crate::{ChunkId, ChunkStore, Loaded, StoreError, Usage};

const MARKER: &str = "FVFS-STORE";
const OPEN_MARKER: &str = "OPEN";
const MARKER_TEXT: &str = "fvfs chunk store, format 1\n";

/// A [`ChunkStore`] in a local or network-mounted directory.
#[derive(Clone)]
pub struct DirStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// Frames written under `.tmp` names but not yet renamed: id -> temporary path.
    pending: Mutex<HashMap<ChunkId, PathBuf>>,
    seq: AtomicU64,
    /// Set by put and delete, cleared by sync: a sync with nothing to do is free.
    dirty: AtomicBool,
    /// Serialises syncs, so two never rename the same pending frame.
    sync_lock: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DirStore {
    /// Opens the store at `root`, creating it if the directory is missing or empty.
    /// Refuses a non-empty directory that is not a chunk store, so a typo in a config
    /// never scatters chunks into someone's photo folder. After a crash, removes the
    /// `.tmp` files it left: they were never synced, so no one relies on them.
    ///
    /// Only one process may open a store for writing at a time; the caller holds the lock.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let marker = root.join(MARKER);
        if !marker.exists() {
            Self::create(&root)?;
        }
        let open_marker = root.join(OPEN_MARKER);
        if open_marker.exists() {
            remove_stale_tmp(&root)?;
        } else {
            File::create(&open_marker).map_err(|e| StoreError::io("create", &open_marker, e))?;
            // The marker must be durable before any .tmp file can be.
            syncfs(&root)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                pending: Mutex::default(),
                seq: AtomicU64::new(0),
                dirty: AtomicBool::new(false),
                sync_lock: Mutex::default(),
            }),
        })
    }

    fn create(root: &Path) -> Result<(), StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::io("create", root, e))?;
        let non_empty = fs::read_dir(root)
            .map_err(|e| StoreError::io("read", root, e))?
            .next()
            .is_some();
        if non_empty {
            return Err(StoreError::Unavailable(format!(
                "{} is not empty and not an fvfs chunk store",
                root.display()
            )));
        }
        for shard in 0..=255u8 {
            let dir = root.join(hex::encode([shard]));
            fs::create_dir(&dir).map_err(|e| StoreError::io("create", dir, e))?;
        }
        let marker = root.join(MARKER);
        fs::write(&marker, MARKER_TEXT).map_err(|e| StoreError::io("write", &marker, e))?;
        syncfs(root)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// [`ChunkStore::list`], as a stream that owns its handle on the store: one shard
    /// in memory at a time, whatever the store's size.
    pub fn list_owned(&self) -> BoxStream<'static, Result<ChunkId, StoreError>> {
        let this = self.clone();
        stream::iter(0..=255u8)
            .then(move |shard| {
                let this = this.clone();
                async move { this.blocking(move |s| s.scan_shard(shard)).await }
            })
            .flat_map(|r| match r {
                Ok(ids) => stream::iter(ids.into_iter().map(|(id, _)| Ok(id)).collect::<Vec<_>>()),
                Err(e) => stream::iter(vec![Err(e)]),
            })
            .boxed()
    }

    /// Whether `root` holds a chunk store (its marker file is there). A network mount
    /// that went away leaves an empty mountpoint, which does not.
    pub fn exists_at(root: &Path) -> bool {
        root.join(MARKER).is_file()
    }

    /// Where the frame of `id` lives once synced.
    pub fn path_of(&self, id: &ChunkId) -> PathBuf {
        self.inner.final_path(id)
    }

    /// Runs blocking file I/O off the async executor: in place on a multi-threaded
    /// runtime (other tasks move to another worker; far cheaper than a thread hop per
    /// small chunk), on the blocking pool otherwise.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(move || f(&inner));
        }
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Inner {
    fn final_path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    fn put(&self, id: ChunkId, frame: &[u8]) -> Result<(), StoreError> {
        if lock(&self.pending).contains_key(&id) || self.final_path(&id).exists() {
            return Ok(());
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut tmp = self.final_path(&id).into_os_string();
        tmp.push(format!(".{seq}.tmp"));
        let tmp = PathBuf::from(tmp);
        let written = File::create_new(&tmp).and_then(|mut f| f.write_all(frame));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io("write", &tmp, e));
        }
        self.dirty.store(true, Ordering::Release);
        let duplicate = match lock(&self.pending).entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => Some(tmp),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(tmp);
                None
            }
        };
        // Another put of the same id won the race: its frame holds the same bytes.
        if let Some(tmp) = duplicate {
            let _ = fs::remove_file(tmp);
        }
        Ok(())
    }

    fn read(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        let path = self.final_path(id);
        match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other.map_err(|e| StoreError::io("read", path, e)),
        }
        let Some(tmp) = lock(&self.pending).get(id).cloned() else {
            return Err(StoreError::NotFound(*id));
        };
        match fs::read(&tmp) {
            Ok(frame) => Ok(frame),
            // A sync renamed it between our two looks: it is under its final name now.
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::read(&path).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    StoreError::NotFound(*id)
                } else {
                    StoreError::io("read", &path, e)
                }
            }),
            Err(e) => Err(StoreError::io("read", tmp, e)),
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.sync_lock);
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.flush_pending();
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }

    fn flush_pending(&self) -> Result<(), StoreError> {
        let batch: Vec<(ChunkId, PathBuf)> = lock(&self.pending)
            .iter()
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        // 1. frame contents durable, 2. names durable.
        syncfs(&self.root)?;
        for (id, tmp) in &batch {
            let dest = self.final_path(id);
            fs::rename(tmp, &dest).map_err(|e| StoreError::io("rename", dest, e))?;
            lock(&self.pending).remove(id);
        }
        syncfs(&self.root)
    }

    fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        if let Some(tmp) = lock(&self.pending).remove(id) {
            let _ = fs::remove_file(tmp);
        }
        let path = self.final_path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io("delete", path, e)),
            _ => {
                self.dirty.store(true, Ordering::Release);
                Ok(())
            }
        }
    }

    /// Ids in shard `shard` (plus, for shard 0, the pending ones) and their sizes.
    fn scan_shard(&self, shard: u8) -> Result<Vec<(ChunkId, u64)>, StoreError> {
        let dir = self.root.join(hex::encode([shard]));
        let entries = fs::read_dir(&dir).map_err(|e| StoreError::io("list", &dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &dir, e))?;
            let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // A chunk deleted while we list is simply not listed.
            if let Ok(meta) = entry.metadata() {
                out.push((id, meta.len()));
            }
        }
        if shard == 0 {
            for (id, tmp) in lock(&self.pending).iter() {
                out.push((*id, fs::metadata(tmp).map(|m| m.len()).unwrap_or(0)));
            }
        }
        Ok(out)
    }
}

impl Drop for Inner {
    /// A clean close: nothing pending means no `.tmp` files, so the next open need not sweep.
    fn drop(&mut self) {
        if lock(&self.pending).is_empty() {
            let _ = fs::remove_file(self.root.join(OPEN_MARKER));
        }
    }
}

/// Removes `.tmp` files that a crashed process left in the shards.
fn remove_stale_tmp(root: &Path) -> Result<(), StoreError> {
    for shard in 0..=255u8 {
        let dir = root.join(hex::encode([shard]));
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("list", &dir, e))? {
            let path = entry.map_err(|e| StoreError::io("list", &dir, e))?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                fs::remove_file(&path).map_err(|e| StoreError::io("delete", &path, e))?;
            }
        }
    }
    Ok(())
}

/// Flushes the file system holding `path`: data, metadata and directory entries.
fn syncfs(path: &Path) -> Result<(), StoreError> {
    let dir = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| StoreError::io("sync", path, e.into()))
}

#[async_trait]
impl ChunkStore for DirStore {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.blocking(move |s| s.put(id, &frame)).await
    }

    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        let id = *id;
        let frame = self.blocking(move |s| s.read(&id)).await?;
        verify(&id, Bytes::from(frame))
    }

    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        let ids = ids.to_vec();
        self.blocking(move |s| {
            let pending = lock(&s.pending);
            Ok(ids
                .iter()
                .map(|id| pending.contains_key(id) || s.final_path(id).exists())
                .collect())
        })
        .await
    }

    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        let id = *id;
        self.blocking(move |s| s.delete(&id)).await
    }

    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>> {
        self.list_owned()
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        self.blocking(|s| {
            let mut usage = Usage::default();
            for shard in 0..=255u8 {
                for (_, len) in s.scan_shard(shard)? {
                    usage.chunks += 1;
                    usage.bytes += len;
                }
            }
            Ok(usage)
        })
        .await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.blocking(|s| s.sync()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkStoreExt;

    #[tokio::test]
    async fn passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::run(&DirStore::open(dir.path().join("s")).unwrap()).await;
    }

    #[tokio::test]
    async fn synced_chunks_survive_reopen_and_unsynced_ones_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let store = DirStore::open(&root).unwrap();
        let kept = store.put_data(b"kept").await.unwrap();
        store.sync().await.unwrap();
        let lost = store.put_data(b"never synced").await.unwrap();
        // A crash: the process dies with the store open and a frame pending.
        std::mem::forget(store);
        let store = DirStore::open(&root).unwrap();
        assert_eq!(&store.get_data(&kept).await.unwrap()[..], b"kept");
        assert!(matches!(
            store.get(&lost).await,
            Err(StoreError::NotFound(_))
        ));
        let leftovers = walk_names(&root)
            .into_iter()
            .filter(|n| n.ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[tokio::test]
    async fn flipped_byte_on_disk_is_reported_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path().join("s")).unwrap();
        let id = store
            .put_data(&b"precious photo ".repeat(99))
            .await
            .unwrap();
        store.sync().await.unwrap();
        let path = store.path_of(&id);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            store.get(&id).await,
            Err(StoreError::Corrupt { .. })
        ));
    }

    fn walk_names(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for shard in fs::read_dir(root).unwrap() {
            let shard = shard.unwrap().path();
            if shard.is_dir() {
                out.extend(
                    fs::read_dir(shard)
                        .unwrap()
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned()),
                );
            }
        }
        out
    }

    #[test]
    fn refuses_a_foreign_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("holiday.jpg"), b"jpeg").unwrap();
        assert!(matches!(
            DirStore::open(dir.path()),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
