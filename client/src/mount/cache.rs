//! The device's chunk cache: raw chunk bytes on disk, named by id, shared by every
//! mount on the device, with a small memory cache in front.
//!
//! # Invariants
//! - A file under its final name is whole (written to `tmp/`, then renamed) and is
//!   verified against its name when read; a bad one is deleted and counts as a miss.
//! - The disk cache never holds more than its byte limit once a `put` returns: chunks
//!   in use are held in memory by their readers, so eviction never waits for them.
//!   Each process keeps its own index (loaded at start); two mounts on one device may
//!   each fill up to the limit before they see each other's files (left as is: one
//!   mount per device is the common case).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::FastMap;
use bytes::Bytes;
use fvfs_cas::ChunkId;

use super::lru::Lru;

/// Bytes of chunks kept in memory in front of the disk cache.
const MEMORY_BYTES: u64 = 64 << 20;

pub struct ChunkCache {
    dir: PathBuf,
    limit: u64,
    disk: Mutex<Lru>,
    memory: Mutex<(Lru, FastMap<ChunkId, Bytes>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChunkCache {
    /// Opens (or creates) the cache in `dir`, holding at most `limit` bytes on disk.
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut shards = Vec::new();
        for shard in fs::read_dir(dir)? {
            let shard = shard?;
            if shard.file_name() != "tmp" && shard.file_type()?.is_dir() {
                shards.push(shard.path());
            }
        }
        let shards: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
        let disk = Lru::scan(&shards, &dir.join("tmp"))?;
        let cache = Self {
            dir: dir.to_owned(),
            limit,
            disk: Mutex::new(disk),
            memory: Mutex::default(),
        };
        cache.shrink();
        Ok(cache)
    }

    fn path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Bytes on disk now.
    #[cfg(test)]
    pub fn disk_bytes(&self) -> u64 {
        lock(&self.disk).bytes()
    }

    /// Whether the chunk is cached (without reading it).
    pub fn contains(&self, id: &ChunkId) -> bool {
        lock(&self.memory).1.contains_key(id) || lock(&self.disk).contains(id)
    }

    /// The chunk's bytes if cached (verified).
    pub fn get(&self, id: &ChunkId) -> Option<Bytes> {
        {
            let mut mem = lock(&self.memory);
            if let Some(b) = mem.1.get(id).cloned() {
                mem.0.touch(*id, b.len() as u64);
                return Some(b);
            }
        }
        if !lock(&self.disk).contains(id) {
            return None;
        }
        let path = self.path(id);
        let data = match fs::read(&path) {
            Ok(d) if ChunkId::of(&d) == *id => Bytes::from(d),
            _ => {
                let _ = fs::remove_file(&path);
                lock(&self.disk).remove(id);
                return None;
            }
        };
        lock(&self.disk).touch(*id, data.len() as u64);
        self.remember(*id, data.clone());
        Some(data)
    }

    /// Keeps `data` (already verified to be chunk `id`) in memory and on disk.
    pub fn put(&self, id: ChunkId, data: Bytes) {
        self.remember(id, data.clone());
        if lock(&self.disk).contains(&id) {
            return;
        }
        let path = self.path(&id);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}", id.to_hex(), std::process::id()));
        let written = fs::create_dir_all(path.parent().expect("sharded"))
            .and_then(|()| fs::File::create(&tmp))
            .and_then(|mut f| f.write_all(&data))
            .and_then(|()| fs::rename(&tmp, &path));
        match written {
            Ok(()) => {
                lock(&self.disk).touch(id, data.len() as u64);
                self.shrink();
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                tracing::warn!("chunk cache: cannot keep {id}: {e}");
            }
        }
    }

    fn remember(&self, id: ChunkId, data: Bytes) {
        let mut mem = lock(&self.memory);
        mem.0.touch(id, data.len() as u64);
        mem.1.insert(id, data);
        while mem.0.bytes() > MEMORY_BYTES {
            let Some(old) = mem.0.pop_oldest() else { break };
            mem.1.remove(&old);
        }
    }

    /// Deletes least recently used files until the disk cache is under its limit.
    fn shrink(&self) {
        let mut disk = lock(&self.disk);
        while disk.bytes() > self.limit {
            let Some(old) = disk.pop_oldest() else { break };
            let _ = fs::remove_file(self.path(&old));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_under_its_limit_survives_reopen_and_drops_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000]).collect();
        {
            let c = ChunkCache::open(dir.path(), 5000).unwrap();
            for data in &chunks {
                c.put(ChunkId::of(data), Bytes::from(data.clone()));
                assert!(c.disk_bytes() <= 5000);
            }
        }
        let c = ChunkCache::open(dir.path(), 5000).unwrap();
        assert_eq!(c.disk_bytes(), 5000, "the newest five survive a restart");
        let newest = ChunkId::of(&chunks[9]);
        assert_eq!(&c.get(&newest).unwrap()[..], &chunks[9][..]);
        assert!(
            c.get(&ChunkId::of(&chunks[0])).is_none(),
            "the oldest went first"
        );
        // A damaged file is never returned.
        let victim = ChunkId::of(&chunks[8]);
        fs::write(c.path(&victim), b"garbage").unwrap();
        let c = ChunkCache::open(dir.path(), 5000).unwrap();
        assert!(c.get(&victim).is_none());
    }
}
