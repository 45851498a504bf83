//! The blocks read last, decoded (issue 47's reads): a block is decompressed whole at
//! the first read of one of its members, and the members read after it are slices
//! of what it decoded, so a sequential read decodes each block once.
//!
//! Decoding a block only as far as the member asked for (a streaming decoder kept
//! with the prefix) was tried: it made `fsck --read-data` of rewritten data 1.35x
//! slower (benches/README.md, thirty-third session), for no gain measured on random
//! reads through a mount, whose read-ahead asks for a small file's neighbours anyway.
//!
//! # Invariants
//! - A key names the same bytes for as long as the cache lives: segments are
//!   append-only and numbered afresh, and a punched block is named by no location (a
//!   stale entry is never asked for; readers check ids and hashes all the same); S3
//!   packs are named by the hash of their bytes.
//! - Readers of one block wait for the first (its slot's lock); readers of other
//!   blocks do not.
//! - A block that fails to load or decode is not kept: the next reader loads it
//!   afresh.
//! - Memory: at most [`CACHED_BLOCKS`] blocks and [`KEPT_BYTES`] of their raw bytes
//!   (beyond the blocks being read now). A block may declare up to a frame's
//!   [`crate::frame::MAX_RAW_LEN`] (a tree node of a huge folder, or a hostile clear
//!   bucket): the bytes, not only the count, bound what readers keep.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::{decode, Decoded};
use crate::ChunkId;
use bytes::Bytes;

/// Decoded blocks kept for readers (least recently used dropped first): a sequential
/// read decodes each block once, and a mount's reads ahead, several windows of small
/// files at once, find the blocks their neighbours decoded. About 16 MiB.
const CACHED_BLOCKS: usize = 16;
/// Raw bytes of the blocks kept, at most: twice sixteen blocks as the rewrite makes
/// them ([`super::BLOCK_RAW`]).
const KEPT_BYTES: usize = 32 << 20;

/// Why a member could not be served from its block.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberError<E> {
    /// Loading the block's frame failed.
    Load(E),
    /// The frame is not a whole, consistent block, or its payload does not decode.
    Damaged,
    /// The block's table does not name the chunk at that index.
    NotListed,
}

/// Member `index` (chunk `id`, not yet hash-checked) of block `frame`, read once and
/// not kept.
pub fn member_of<E>(frame: &[u8], index: u32, id: &ChunkId) -> Result<Bytes, MemberError<E>> {
    decode(frame)
        .ok_or(MemberError::Damaged)?
        .member(index, id)
        .ok_or(MemberError::NotListed)
}

/// One block being decoded or decoded: readers of the same block wait for the first.
type Slot = Arc<Mutex<Option<Decoded>>>;

/// The blocks read last (see [`CACHED_BLOCKS`], [`KEPT_BYTES`]), by their place: in a pack store the
/// segment and offset of their record, in S3 the pack's name and the block's offset.
pub struct Cache<Key = (u32, u64)> {
    slots: Mutex<Slots<Key>>,
}

impl<Key> Default for Cache<Key> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(Slots {
                by_key: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
        }
    }
}

struct Slots<Key> {
    /// Each block's slot and the raw bytes it holds (none until loaded).
    by_key: HashMap<Key, (Slot, usize)>,
    /// Least recently used first.
    order: VecDeque<Key>,
    /// Raw bytes of the blocks in `by_key`.
    bytes: usize,
}

impl<Key: Copy + Eq + std::hash::Hash> Slots<Key> {
    /// Forgets the least recently used block (readers holding it read on).
    fn drop_oldest(&mut self) {
        if let Some(old) = self.order.pop_front() {
            if let Some((_, bytes)) = self.by_key.remove(&old) {
                self.bytes -= bytes;
            }
        }
    }
}

impl<Key: Copy + Eq + std::hash::Hash> Cache<Key> {
    /// The raw bytes of member `index` (chunk `id`, not yet hash-checked) of the block
    /// at `key`, from what is decoded of it, loading its frame with `load` unless it is
    /// kept.
    pub fn member<E>(
        &self,
        key: Key,
        index: u32,
        id: &ChunkId,
        load: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, MemberError<E>> {
        let slot = self.slot(key);
        let mut decoded = lock(&slot);
        if decoded.is_none() {
            let frame = load().map_err(MemberError::Load)?;
            let d = decode(&frame).ok_or(MemberError::Damaged)?;
            self.holds(key, d.table.raw_len);
            *decoded = Some(d);
        }
        decoded
            .as_ref()
            .and_then(|d| d.member(index, id))
            .ok_or(MemberError::NotListed)
    }

    /// Notes that the block at `key` holds `bytes` raw bytes, then drops the least
    /// recently used others while the kept bytes are over [`KEPT_BYTES`].
    fn holds(&self, key: Key, bytes: usize) {
        let mut slots = lock(&self.slots);
        let Some((_, held)) = slots.by_key.get_mut(&key) else {
            // Dropped meanwhile: its readers hold it, the cache does not.
            return;
        };
        let before = std::mem::replace(held, bytes);
        slots.bytes = slots.bytes - before + bytes;
        while slots.bytes > KEPT_BYTES && slots.order.front().is_some_and(|k| *k != key) {
            slots.drop_oldest();
        }
    }

    /// The slot of `key`, made most recently used (a new one drops the least).
    fn slot(&self, key: Key) -> Slot {
        let mut slots = lock(&self.slots);
        if let Some((slot, _)) = slots.by_key.get(&key) {
            let slot = slot.clone();
            if let Some(at) = slots.order.iter().position(|k| *k == key) {
                slots.order.remove(at);
            }
            slots.order.push_back(key);
            return slot;
        }
        if slots.order.len() >= CACHED_BLOCKS {
            slots.drop_oldest();
        }
        slots.order.push_back(key);
        slots.by_key.entry(key).or_default().0.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{encoded, members};
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn members_read_in_any_order_from_one_load() {
        let m = members(40);
        let frame = Bytes::from(encoded(&m));
        let cache = Cache::default();
        let loads = AtomicUsize::new(0);
        let load = || {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(frame.clone())
        };
        for i in [3usize, 1, 20, 0, 39, 7, 39] {
            let got = cache.member((1, 0), i as u32, &m[i].0, load).unwrap();
            assert_eq!(got, m[i].1[..], "member {i}");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "loaded once");
        assert_eq!(
            cache.member((1, 0), 5, &m[6].0, load),
            Err(MemberError::NotListed)
        );
        assert_eq!(
            cache.member((1, 0), 40, &m[0].0, load),
            Err(MemberError::NotListed)
        );
    }

    #[test]
    fn a_damaged_block_fails_its_readers_and_is_not_kept() {
        let m = members(40);
        let good = encoded(&m);
        let mut bad = good.clone();
        let at = bad.len() - 30;
        bad[at] ^= 0x5a;
        let mut cut = good.clone();
        cut.truncate(good.len() - good.len() / 3);
        for broken in [bad, cut] {
            let cache = Cache::default();
            let broken = Bytes::from(broken);
            // Refused, or decoded to bytes the reader's hash check refuses.
            for i in [0usize, 39] {
                match cache.member((1, 0), i as u32, &m[i].0, || Ok::<_, ()>(broken.clone())) {
                    Err(e) => assert_eq!(e, MemberError::Damaged),
                    Ok(raw) => assert_ne!(ChunkId::of(&raw), m[i].0),
                }
            }
        }
        // A failed decode is not kept: the next reader loads again (here, the good
        // frame under the same key, as a store would after a repair).
        let cache = Cache::default();
        let mut bad = good.clone();
        bad.truncate(good.len() / 2);
        let bad = Bytes::from(bad);
        assert_eq!(
            cache.member((1, 0), 39, &m[39].0, || Ok::<_, ()>(bad.clone())),
            Err(MemberError::Damaged)
        );
        let good = Bytes::from(good);
        let again = cache.member((1, 0), 39, &m[39].0, || Ok::<_, ()>(good.clone()));
        assert_eq!(again.unwrap(), m[39].1[..]);
        assert_eq!(
            cache.member((2, 0), 0, &m[0].0, || Ok::<_, ()>(Bytes::from_static(
                b"FB"
            ))),
            Err(MemberError::Damaged),
            "not a block"
        );
        assert_eq!(
            cache.member((3, 0), 0, &m[0].0, || Err::<Bytes, _>("gone")),
            Err(MemberError::Load("gone"))
        );
    }

    #[test]
    fn large_blocks_are_kept_up_to_the_byte_budget() {
        // Blocks of 8 MiB raw (a tree node's size, or a hostile bucket's claim): four
        // fit the budget, not sixteen.
        let m: Vec<(ChunkId, Vec<u8>)> = (0..2u8)
            .map(|i| {
                let raw = vec![i; 4 << 20];
                (ChunkId::of(&raw), raw)
            })
            .collect();
        let frame = Bytes::from(encoded(&m));
        let cache = Cache::default();
        let loads = AtomicUsize::new(0);
        let read = |k: u64| {
            cache
                .member((k, 0), 1, &m[1].0, || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(frame.clone())
                })
                .unwrap()
        };
        for k in 0..6 {
            assert_eq!(read(k), m[1].1[..]);
        }
        let kept = lock(&cache.slots).bytes;
        assert!(kept <= KEPT_BYTES, "{kept} bytes kept");
        assert_eq!(lock(&cache.slots).order.len(), KEPT_BYTES / (8 << 20));
        read(5);
        assert_eq!(loads.load(Ordering::SeqCst), 6, "the newest is kept");
        read(0);
        assert_eq!(loads.load(Ordering::SeqCst), 7, "the oldest was dropped");
    }

    #[test]
    fn concurrent_readers_of_one_block_load_it_once_and_the_least_used_goes() {
        let cache = Cache::default();
        let m = members(3);
        let frame = Bytes::from(encoded(&m));
        let loads = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..4u32 {
                let (cache, frame, loads, m) = (&cache, &frame, &loads, &m);
                s.spawn(move || {
                    let k = (i % 3) as usize;
                    let got = cache
                        .member::<()>((1, 0), k as u32, &m[k].0, || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            Ok(frame.clone())
                        })
                        .unwrap();
                    assert_eq!(got, m[k].1[..]);
                });
            }
        });
        assert_eq!(loads.into_inner(), 1);
        // Full: (1, 0) and the others; (1, 0) read again, then one more block: the
        // least recently used, (2, 0), goes, and (1, 0) stays.
        let read = |key, load_ok: bool| {
            cache.member(key, 0, &m[0].0, || load_ok.then(|| frame.clone()).ok_or(()))
        };
        for k in 0..CACHED_BLOCKS as u64 - 1 {
            read((2, k), true).unwrap();
        }
        read((1, 0), false).unwrap();
        read((3, 0), true).unwrap();
        assert!(read((1, 0), false).is_ok(), "kept");
        assert!(read((2, 0), false).is_err(), "dropped");
    }
}
