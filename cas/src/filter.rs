//! An approximate set of chunk ids (a Bloom filter), small enough to hold every chunk
//! of a large tree: about ten bits an id, and about one id in a hundred that was never
//! added is said to be there. Chunk ids are BLAKE3 hashes, so their own bytes are the
//! filter's hashes.
//!
//! For hints only (which chunks the idle rewrite packs together): a wrong "maybe"
//! costs a worse order, never a byte.

use crate::ChunkId;

/// Bits set per id.
const PROBES: u64 = 7;
/// Bits kept per id the filter is made for (at least; rounded up to a power of two).
const BITS_PER_ID: u64 = 10;

/// A set of chunk ids that answers "maybe" or "no".
#[derive(Clone, Debug)]
pub struct IdFilter {
    words: Vec<u64>,
    /// Bits in `words`, minus one (a power of two minus one).
    mask: u64,
}

impl IdFilter {
    /// An empty filter for about `ids` ids.
    pub fn for_ids(ids: u64) -> Self {
        let bits = ids.saturating_mul(BITS_PER_ID).max(64).next_power_of_two();
        Self {
            words: vec![0; (bits / 64) as usize],
            mask: bits - 1,
        }
    }

    pub fn insert(&mut self, id: &ChunkId) {
        for bit in self.probes(id) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Whether `id` may have been inserted: `false` means it was not.
    pub fn may_hold(&self, id: &ChunkId) -> bool {
        self.probes(id)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Bytes the filter takes.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    fn probes(&self, id: &ChunkId) -> impl Iterator<Item = u64> {
        let b = id.as_bytes();
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let (first, step) = (word(0), word(8) | 1);
        let mask = self.mask;
        (0..PROBES).map(move |i| first.wrapping_add(i.wrapping_mul(step)) & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_added_and_few_others() {
        let ids: Vec<ChunkId> = (0..20_000u32)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        let mut f = IdFilter::for_ids(10_000);
        for id in &ids[..10_000] {
            f.insert(id);
        }
        assert!(ids[..10_000].iter().all(|id| f.may_hold(id)));
        let wrong = ids[10_000..].iter().filter(|id| f.may_hold(id)).count();
        assert!(wrong < 300, "{wrong} of 10000 said to be there");
        assert!(f.bytes() <= 2 * 10_000 * 10 / 8);
        assert!(!IdFilter::for_ids(0).may_hold(&ids[0]), "empty");
    }
}
