//! Keys known to be absent, answered from memory: a blocked Bloom filter over the keys
//! of one prefix. Looking up a key that is not in the database is what an ingest does
//! for every new chunk (twice: the chunk records, then the pack index); sled answers it
//! by walking its tree, 1-7 µs under concurrent writes, the filter with one hash and one
//! cache line.
//!
//! # Invariant: no false "absent"
//! Once a filter is ready, every key with the prefix that the database holds has its
//! bits set. Every write goes through [`super::Kv::apply`], which takes a read guard
//! (whether a prefix is set yet or not), then sets the bits of the keys it inserts (or,
//! while a build scans, notes their hashes) before sled sees them, and holds the guard
//! until sled has them. A build takes the write guard to start noting (so every write
//! that did not note was already in sled, where its scan will find it), scans, then
//! takes it again to publish the scanned and noted keys together.
//! Removed keys keep their bits: a stale bit only costs the lookup the filter would
//! have saved. A filter that took more keys than it was sized for is rebuilt in the
//! background, the old one answering meanwhile; until the first build ends, every
//! lookup goes to sled.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard};

/// Bits per key at full capacity (a false "maybe" for about 1% of absent keys).
const BITS_PER_KEY: u64 = 12;
/// Bits set per key, each one 9 bits of a 64-bit mix.
const PROBES: u32 = 7;
/// Smallest capacity built, in keys.
const MIN_CAPACITY: u64 = 1 << 16;

/// One cache line of bits: every probe of a key lands in the same one.
#[repr(align(64))]
struct Block([AtomicU64; 8]);

struct Bloom {
    blocks: Box<[Block]>,
    /// Keys it was sized for.
    capacity: u64,
    /// Keys added, from the build on.
    added: AtomicU64,
}

impl Bloom {
    /// Sized for twice `keys` (at least [`MIN_CAPACITY`]), so that a growing database
    /// is rebuilt only after it doubled.
    fn new(keys: u64) -> Self {
        let capacity = (2 * keys).max(MIN_CAPACITY);
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512);
        Self {
            blocks: (0..blocks).map(|_| Block(Default::default())).collect(),
            capacity,
            added: AtomicU64::new(0),
        }
    }

    /// The block of hash `h` and the bits to probe in it.
    fn spot(&self, h: u64) -> (&Block, u64) {
        let block = ((u128::from(h) * self.blocks.len() as u128) >> 64) as usize;
        // splitmix64's finaliser: the probes must not follow the block's bits.
        let mut bits = h ^ (h >> 30);
        bits = bits.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        bits ^= bits >> 27;
        bits = bits.wrapping_mul(0x94d0_49bb_1331_11eb);
        (&self.blocks[block], bits ^ (bits >> 31))
    }

    fn add(&self, h: u64) {
        let (block, mut bits) = self.spot(h);
        for _ in 0..PROBES {
            let b = bits & 511;
            block.0[(b >> 6) as usize].fetch_or(1 << (b & 63), Ordering::Relaxed);
            bits >>= 9;
        }
        self.added.fetch_add(1, Ordering::Relaxed);
    }

    fn may_contain(&self, h: u64) -> bool {
        let (block, mut bits) = self.spot(h);
        (0..PROBES).all(|_| {
            let b = bits & 511;
            bits >>= 9;
            block.0[(b >> 6) as usize].load(Ordering::Relaxed) & (1 << (b & 63)) != 0
        })
    }

    fn full(&self) -> bool {
        self.added.load(Ordering::Relaxed) > self.capacity
    }
}

#[derive(Default)]
pub(super) struct State {
    /// The filter answering, once a build ended.
    ready: Option<Bloom>,
    /// While a build scans: hashes of the keys written meanwhile.
    noted: Option<Mutex<Vec<u64>>>,
}

/// The filter of the keys starting with one prefix, once one is set.
#[derive(Default)]
pub(super) struct Absent {
    prefix: OnceLock<Vec<u8>>,
    state: RwLock<State>,
    /// A build is running (or about to).
    building: AtomicBool,
}

fn hash(key: &[u8]) -> u64 {
    // Fixed keys: the same on every run, which nothing relies on but tests are simpler.
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(key)
}

impl Absent {
    /// Filters the keys starting with `prefix` from now on. Returns whether it was the
    /// first prefix set: the caller then owns the first build and must run it (later
    /// prefixes are ignored).
    pub(super) fn set_prefix(&self, prefix: &[u8]) -> bool {
        let first = self.prefix.set(prefix.to_vec()).is_ok();
        if first {
            self.building.store(true, Ordering::Release);
        }
        first
    }

    /// Whether a build is running.
    #[cfg(test)]
    pub(super) fn building(&self) -> bool {
        self.building.load(Ordering::Acquire)
    }

    pub(super) fn prefix(&self) -> &[u8] {
        self.prefix.get().map_or(&[], Vec::as_slice)
    }

    fn filters(&self, key: &[u8]) -> bool {
        self.prefix.get().is_some_and(|p| key.starts_with(p))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` is surely not in the database.
    pub(super) fn absent(&self, key: &[u8]) -> bool {
        self.filters(key)
            && self
                .read()
                .ready
                .as_ref()
                .is_some_and(|b| !b.may_contain(hash(key)))
    }

    /// Takes the inserted `keys` in before they are written: hold the guard until the
    /// database has them. Every write takes it, filtered or not: a build that starts
    /// waits for the writes under way.
    pub(super) fn writing<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
    ) -> RwLockReadGuard<'_, State> {
        // The guard first, the prefix after: a write that finds no prefix is waited for.
        let state = self.read();
        if self.prefix.get().is_none() {
            return state;
        }
        let mut noted = state
            .noted
            .as_ref()
            .map(|n| n.lock().unwrap_or_else(|p| p.into_inner()));
        for h in keys.filter(|k| self.filters(k)).map(hash) {
            if let Some(b) = &state.ready {
                b.add(h);
            }
            if let Some(n) = &mut noted {
                n.push(h);
            }
        }
        drop(noted);
        state
    }

    /// Whether the filter took more keys than it was sized for and no build is running;
    /// if so, the caller owns the next build and must run it.
    pub(super) fn claim_rebuild(&self) -> bool {
        self.read().ready.as_ref().is_some_and(Bloom::full)
            && !self.building.swap(true, Ordering::AcqRel)
    }

    /// Runs the build the caller claimed. `step(after)` returns the next keys with the
    /// prefix after `after` (from the first if `None`; a few thousand at a time, none at
    /// the end), or `None` if the database is closed or failed: the build then stops and
    /// the filter stays as it was.
    pub(super) fn build(&self, mut step: impl FnMut(Option<&[u8]>) -> Option<Vec<Vec<u8>>>) {
        self.state.write().unwrap_or_else(|p| p.into_inner()).noted = Some(Mutex::default());
        let (mut hashes, mut after) = (Vec::new(), None);
        let scanned = loop {
            match step(after.as_deref()) {
                None => break false,
                Some(keys) if keys.is_empty() => break true,
                Some(mut keys) => {
                    hashes.extend(keys.iter().map(|k| hash(k)));
                    after = keys.pop();
                }
            }
        };
        // Filled before the guard is taken: lookups and writes wait only for the keys
        // written during the scan.
        let bloom = scanned.then(|| {
            let bloom = Bloom::new(hashes.len() as u64);
            hashes.iter().for_each(|h| bloom.add(*h));
            bloom
        });
        drop(hashes);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let noted = state.noted.take().map(|n| n.into_inner());
        if let Some(bloom) = bloom {
            let noted = noted.map(|n| n.unwrap_or_else(|p| p.into_inner()));
            noted.unwrap_or_default().iter().for_each(|h| bloom.add(*h));
            state.ready = Some(bloom);
        }
        drop(state);
        self.building.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        let mut k = b"c".to_vec();
        k.extend_from_slice(blake3::hash(&i.to_le_bytes()).as_bytes());
        k
    }

    fn filtered() -> Absent {
        let a = Absent::default();
        assert!(a.set_prefix(b"c"));
        assert!(!a.set_prefix(b"x"), "one prefix");
        a
    }

    /// A build over `keys`, in steps of 100.
    fn build_over(a: &Absent, keys: &[Vec<u8>]) {
        let mut sorted = keys.to_vec();
        sorted.sort();
        a.build(|after| {
            let from = after.map_or(0, |k| sorted.partition_point(|x| x.as_slice() <= k));
            Some(sorted[from..].iter().take(100).cloned().collect())
        });
    }

    #[test]
    fn nothing_is_absent_before_the_first_build_and_no_present_key_after() {
        let a = filtered();
        let present: Vec<_> = (0..5000).map(key).collect();
        assert!(
            !a.absent(&key(1_000_000)),
            "not built: nothing is known absent"
        );
        build_over(&a, &present);
        assert!(present.iter().all(|k| !a.absent(k)));
        let absent = (1_000_000..1_010_000)
            .filter(|i| a.absent(&key(*i)))
            .count();
        assert!(
            absent > 9_800,
            "only {absent} of 10,000 absent keys known absent"
        );
        assert!(
            !a.absent(b"x-not-the-prefix"),
            "other prefixes always go to the database"
        );
    }

    #[test]
    fn keys_written_during_a_build_or_after_it_are_never_absent() {
        let a = filtered();
        let before: Vec<_> = (0..1000).map(key).collect();
        let during: Vec<_> = (1000..2000).map(key).collect();
        let mut once = true;
        let mut sorted = before.clone();
        sorted.sort();
        a.build(|after| {
            if once {
                // A write the scan does not see: it must be noted.
                once = false;
                drop(a.writing(during.iter().map(Vec::as_slice)));
            }
            let from = after.map_or(0, |k| sorted.partition_point(|x| x.as_slice() <= k));
            Some(sorted[from..].iter().take(100).cloned().collect())
        });
        let after: Vec<_> = (2000..3000).map(key).collect();
        drop(a.writing(after.iter().map(Vec::as_slice)));
        for k in before.iter().chain(&during).chain(&after) {
            assert!(!a.absent(k));
        }
    }

    #[test]
    fn a_failed_build_keeps_the_filter_it_had_and_a_full_one_is_rebuilt() {
        let a = filtered();
        a.build(|_| None);
        assert!(
            !a.absent(&key(7)),
            "a failed first build leaves nothing to answer"
        );
        assert!(!a.claim_rebuild());
        let a = filtered();
        build_over(&a, &[]);
        let many: Vec<_> = (0..MIN_CAPACITY + 1).map(key).collect();
        drop(a.writing(many.iter().map(Vec::as_slice)));
        assert!(a.claim_rebuild(), "past its capacity");
        assert!(!a.claim_rebuild(), "one build at a time");
        a.build(|_| None);
        assert!(
            many.iter().all(|k| !a.absent(k)),
            "the old filter still answers"
        );
        assert!(a.claim_rebuild(), "the failed build released its claim");
        build_over(&a, &many);
        assert!(!a.claim_rebuild(), "sized for twice what it holds");
        assert!(many.iter().all(|k| !a.absent(k)));
    }
}
