//! Least-recently-used bookkeeping by bytes, shared by the memory and disk caches and
//! the backing files; and finding what a cache folder holds when a mount starts.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use super::FastMap;
use fvfs_cas::ChunkId;

/// Which chunks are held, how big, and in which order they were last used.
#[derive(Default)]
pub struct Lru {
    entries: FastMap<ChunkId, (u64, u64)>,
    order: BTreeMap<u64, ChunkId>,
    bytes: u64,
    tick: u64,
}

impl Lru {
    /// The files named by id in `dirs`, oldest first by modification time; also
    /// empties `tmp` (what a stopped process left half-written).
    pub fn scan(dirs: &[&Path], tmp: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(tmp)?;
        for stale in fs::read_dir(tmp)? {
            let _ = fs::remove_file(stale?.path());
        }
        let mut found: Vec<(SystemTime, ChunkId, u64)> = Vec::new();
        for dir in dirs {
            for f in fs::read_dir(dir)? {
                let f = f?;
                let Some(id) = f.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                let m = f.metadata()?;
                found.push((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), id, m.len()));
            }
        }
        found.sort();
        let mut lru = Self::default();
        for (_, id, len) in found {
            lru.touch(id, len);
        }
        Ok(lru)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.entries.contains_key(id)
    }

    /// Marks `id` (of `size` bytes) used now, adding it if new.
    pub fn touch(&mut self, id: ChunkId, size: u64) {
        self.tick += 1;
        if let Some((old_size, old_tick)) = self.entries.insert(id, (size, self.tick)) {
            self.order.remove(&old_tick);
            self.bytes -= old_size;
        }
        self.order.insert(self.tick, id);
        self.bytes += size;
    }

    pub fn remove(&mut self, id: &ChunkId) {
        if let Some((size, tick)) = self.entries.remove(id) {
            self.order.remove(&tick);
            self.bytes -= size;
        }
    }

    /// Removes and returns the least recently used chunk.
    pub fn pop_oldest(&mut self) -> Option<ChunkId> {
        let (_, id) = self.order.pop_first()?;
        if let Some((size, _)) = self.entries.remove(&id) {
            self.bytes -= size;
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first_and_counts_bytes() {
        let ids: Vec<ChunkId> = (0..3u8).map(|i| ChunkId::of(&[i])).collect();
        let mut l = Lru::default();
        l.touch(ids[0], 10);
        l.touch(ids[1], 20);
        l.touch(ids[2], 30);
        l.touch(ids[0], 10);
        assert_eq!(l.bytes(), 60);
        assert_eq!(l.pop_oldest(), Some(ids[1]));
        assert_eq!(l.pop_oldest(), Some(ids[2]));
        l.remove(&ids[0]);
        assert_eq!((l.bytes(), l.pop_oldest()), (0, None));
    }
}
