//! A presence filter over the keys of one prefix whose rest is a hash (a chunk id):
//! a Bloom filter in a fixed [`BYTES`] of memory that answers "surely absent" for
//! most keys never inserted, so that a lookup of a new chunk (every chunk of a first
//! import) costs no sled read.
//!
//! Why it exists: sled 0.34 takes one process-wide lock for every read once any batch
//! was applied, and holds it exclusively while it applies a batch; a checkpoint's
//! thousands of records held every worker's dedup lookup for its whole length (a
//! third of a 300,000-file migrate's time, workers asleep), and each lookup of a new
//! chunk cost a tree descent (3 µs) to learn nothing.
//!
//! # Invariants
//! - No false "absent": every key of the prefix that the database holds was noted
//!   first. [`Kv::apply`](super::Kv::apply) notes a batch's inserts *before* sled sees
//!   them (the filter is installed while no apply is between its look at the filter
//!   and its write), and the filter is only trusted once a scan of what the database
//!   held when the filter was installed has noted it all ([`Presence::ready`]); until
//!   then every lookup goes to sled.
//! - Removals are never noted (a Bloom filter cannot forget): a removed key costs a
//!   sled read, as every key did before.
//! - Bits come straight from the key's hash bytes (uniform already: BLAKE3 ids, or
//!   ids permuted by a keyed cipher); a key of another length is never filtered.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Memory of one filter: 2^25 bits. With [`PROBES`] bits a key, a key never inserted
/// is sent to sled once in 130,000 at 300,000 keys, once in 120 at 3,000,000 and once
/// in 4 at 10,000,000: the filter helps less past a few million chunks, never wrongly.
pub const BYTES: usize = 4 << 20;
const WORDS: usize = BYTES / 8;
const PROBES: usize = 4;

pub struct Presence {
    prefix: u8,
    words: Vec<AtomicU64>,
    ready: AtomicBool,
}

impl Presence {
    /// An empty filter of the keys `prefix` + 32 hash bytes, not trusted yet.
    pub fn new(prefix: u8) -> Self {
        Self {
            prefix,
            words: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicBool::new(false),
        }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether a filter of `prefix` covers `key`.
    pub fn covers(prefix: u8, key: &[u8]) -> bool {
        key.len() == 33 && key[0] == prefix
    }

    /// The bits of `key`, if it is one this filter covers.
    fn probes(&self, key: &[u8]) -> Option<[usize; PROBES]> {
        if !Self::covers(self.prefix, key) {
            return None;
        }
        let hash = &key[1..];
        let mut at = [0; PROBES];
        for (i, probe) in at.iter_mut().enumerate() {
            let word: [u8; 4] = hash[4 * i..4 * i + 4].try_into().expect("4 bytes");
            *probe = u32::from_le_bytes(word) as usize % (WORDS * 64);
        }
        Some(at)
    }

    /// Records that the database may hold `key` (from now on, before it does).
    pub fn note(&self, key: &[u8]) {
        for bit in self.probes(key).into_iter().flatten() {
            self.words[bit / 64].fetch_or(1 << (bit % 64), Ordering::Release);
        }
    }

    /// False only when the database surely does not hold `key`.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        if !self.ready.load(Ordering::Acquire) {
            return true;
        }
        self.probes(key).is_none_or(|bits| {
            bits.iter()
                .all(|bit| self.words[bit / 64].load(Ordering::Acquire) & (1 << (bit % 64)) != 0)
        })
    }

    /// Trusts the filter: every key the database held when it was installed is noted.
    pub fn ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: u8, n: u64) -> Vec<u8> {
        let mut k = vec![prefix];
        k.extend_from_slice(blake3::hash(&n.to_le_bytes()).as_bytes());
        k
    }

    #[test]
    fn noted_keys_are_held_and_most_others_are_not() {
        let p = Presence::new(b'c');
        for n in 0..10_000 {
            p.note(&key(b'c', n));
        }
        let absent = key(b'c', 1_000_000);
        assert!(p.may_hold(&absent), "not trusted before it is ready");
        p.ready();
        assert!((0..10_000).all(|n| p.may_hold(&key(b'c', n))));
        let held = (10_000..110_000)
            .filter(|&n| p.may_hold(&key(b'c', n)))
            .count();
        assert!(
            held < 10,
            "{held} of 100,000 keys never noted were sent to sled"
        );
    }

    #[test]
    fn keys_it_does_not_cover_always_go_to_the_database() {
        let p = Presence::new(b'c');
        p.ready();
        assert!(p.may_hold(&key(b'l', 1)), "another prefix");
        assert!(p.may_hold(b"c-short"), "another length");
        assert!(p.may_hold(b""));
        assert!(!p.may_hold(&key(b'c', 1)));
    }
}
