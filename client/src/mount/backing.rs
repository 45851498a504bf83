//! Whole files assembled from the chunk cache, for the kernel to read directly (FUSE
//! passthrough): a large file whose chunks are all cached is copied once into
//! `files/<content key>`, and opens of it hand the kernel that file, so reads run at
//! page-cache speed with no round trip into fvfsc.
//!
//! # Invariants
//! - A backing file under its final name is whole: assembled from verified chunks in
//!   `files/tmp/`, then renamed. Its name is its content's key, so it is never stale.
//! - Backing files hold at most their byte limit; the least recently opened go first
//!   (one the kernel has open stays readable through its open file until closed).
//! - Once made, a backing file is trusted as a local file system trusts its disk
//!   (chunks are verified when read from the cache, and each one when assembled).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fvfs_cas::ChunkId;
use fvfs_node::ChunkRef;

use super::cache::ChunkCache;
use super::lru::Lru;

/// Files smaller than this are read through FUSE: one or two reads each, and a
/// backing copy would cost more than it saves.
pub const MIN_BYTES: u64 = 1 << 20;

pub struct Backing {
    dir: PathBuf,
    limit: u64,
    files: Mutex<Lru>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Backing {
    /// Opens (or creates) the backing files in `dir`, holding at most `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let files = Lru::scan(&[dir], &dir.join("tmp"))?;
        let backing = Self {
            dir: dir.to_owned(),
            limit,
            files: Mutex::new(files),
        };
        backing.shrink();
        Ok(backing)
    }

    /// The backing file of content `key` (`size` bytes, made of `chunks`), opened for
    /// reading: the one made before, or one assembled now if every chunk is cached.
    /// `None` when it cannot be had without fetching (or on any error: the caller
    /// reads through FUSE instead).
    pub fn get(
        &self,
        key: ChunkId,
        size: u64,
        chunks: &[(u64, ChunkRef)],
        cache: &ChunkCache,
    ) -> Option<File> {
        if size < MIN_BYTES || size > self.limit {
            return None;
        }
        let path = self.dir.join(key.to_hex());
        if lock(&self.files).contains(&key) {
            match File::open(&path) {
                Ok(f) if f.metadata().is_ok_and(|m| m.len() == size) => {
                    lock(&self.files).touch(key, size);
                    return Some(f);
                }
                _ => {
                    let _ = fs::remove_file(&path);
                    lock(&self.files).remove(&key);
                }
            }
        }
        if !chunks.iter().all(|(_, c)| cache.contains(&c.id)) {
            return None;
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}", key.to_hex(), std::process::id()));
        let assembled = (|| {
            let mut out = std::io::BufWriter::new(File::create(&tmp)?);
            for (_, c) in chunks {
                let data = cache
                    .get(&c.id)
                    .ok_or_else(|| std::io::Error::other("evicted while assembling"))?;
                out.write_all(&data)?;
            }
            out.flush()?;
            fs::rename(&tmp, &path)?;
            File::open(&path)
        })();
        match assembled {
            Ok(f) if f.metadata().is_ok_and(|m| m.len() == size) => {
                lock(&self.files).touch(key, size);
                self.shrink();
                Some(f)
            }
            Ok(_) => {
                let _ = fs::remove_file(&path);
                None
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                tracing::debug!("backing file {key}: {e}");
                None
            }
        }
    }

    /// Deletes the least recently opened files until under the limit.
    fn shrink(&self) {
        let mut files = lock(&self.files);
        while files.bytes() > self.limit {
            let Some(old) = files.pop_oldest() else { break };
            let _ = fs::remove_file(self.dir.join(old.to_hex()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn assembles_only_from_a_full_cache_and_keeps_under_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(&dir.path().join("chunks"), 64 << 20).unwrap();
        let backing = Backing::open(&dir.path().join("files"), 3 << 20).unwrap();
        let file = |seed: u8| {
            let parts: Vec<Vec<u8>> = (0..4u8).map(|i| vec![seed ^ i; 300_000]).collect();
            let mut at = 0;
            let chunks: Vec<(u64, ChunkRef)> = parts
                .iter()
                .map(|p| {
                    let c = (
                        at,
                        ChunkRef {
                            id: ChunkId::of(p),
                            len: p.len() as u64,
                        },
                    );
                    at += p.len() as u64;
                    c
                })
                .collect();
            (parts, chunks, ChunkId::of(&[seed]))
        };
        let (parts, chunks, key) = file(1);
        cache.put(chunks[0].1.id, Bytes::from(parts[0].clone()));
        assert!(
            backing.get(key, 1_200_000, &chunks, &cache).is_none(),
            "not all cached"
        );
        for (p, (_, c)) in parts.iter().zip(&chunks) {
            cache.put(c.id, Bytes::from(p.clone()));
        }
        let f = backing
            .get(key, 1_200_000, &chunks, &cache)
            .expect("assembled");
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut &f, &mut content).unwrap();
        assert_eq!(content, parts.concat());
        // Three files of 1.2 MB under a 3 MiB limit: the oldest goes.
        for seed in [2, 3] {
            let (parts, chunks, key) = file(seed);
            for (p, (_, c)) in parts.iter().zip(&chunks) {
                cache.put(c.id, Bytes::from(p.clone()));
            }
            assert!(backing.get(key, 1_200_000, &chunks, &cache).is_some());
        }
        assert!(!dir.path().join("files").join(key.to_hex()).exists());
        // Reopened, the rest are known.
        let again = Backing::open(&dir.path().join("files"), 3 << 20).unwrap();
        assert_eq!(lock(&again.files).bytes(), 2_400_000);
    }
}
