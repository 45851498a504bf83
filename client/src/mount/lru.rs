//! Least-recently-used bookkeeping by bytes, shared by the memory and disk caches.

use std::collections::{BTreeMap, HashMap};

use fvfs_cas::ChunkId;

/// Which chunks are held, how big, and in which order they were last used.
#[derive(Default)]
pub struct Lru {
    entries: HashMap<ChunkId, (u64, u64)>,
    order: BTreeMap<u64, ChunkId>,
    bytes: u64,
    tick: u64,
}

impl Lru {
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
