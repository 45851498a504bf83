//! Blocks: runs of chunks compressed together, for cold data. The idle rewrite
//! (`recompress`) packs the chunks of a segment that compress, in the order they were
//! written (one file's chunks, then the next file's), into blocks of about
//! [`BLOCK_RAW`] raw bytes: zstd then finds what neighbouring chunks share, which a
//! frame per chunk cannot (issue 47: 0.64 of today's bytes on a source tree).
//!
//! A block is the frame of an ordinary record (see `record`), so scans, checksums,
//! compaction and hole punching treat it as any record; its frame tells itself apart
//! from a chunk's by its magic:
//!
//! ```text
//! offset  size    field
//! 0       2       magic "FB" (a chunk frame starts "FV")
//! 2       1       format version (1)
//! 3       1       codec: 1 = zstd
//! 4       4       members n, little endian
//! 8       4       raw length of all members together
//! 12      36 * n  the table: each member's chunk id (32) and raw length (4), in order
//! ...             payload: one zstd frame of the members' raw bytes, concatenated
//! ```
//!
//! The record's header names the block by the hash of its frame (never a chunk's
//! id: a chunk's frame starts with another magic). Each member is indexed on its own
//! (`index::Member`: the block's record and the member's place in its table), so dedup,
//! `has`, deletion and fsck stay per chunk.
//!
//! # Invariants
//! - The table is outside the payload: the index is rebuilt, and a location checked,
//!   from the table alone, without decompressing.
//! - Decoding is bounded: a hostile table cannot make it allocate more than
//!   [`crate::frame::MAX_RAW_LEN`] nor index past the payload; a member is answered
//!   only when the table names the chunk asked for (and its reader checks the hash).
//! - A block's bytes are shared out among its members ([`shares`]) so that the live
//!   bytes of a segment fall as members are deleted, and sum to the record exactly.

use bytes::Bytes;

use crate::ChunkId;

mod cache;
pub use cache::{member_of, Cache, MemberError};

const MAGIC: &[u8; 2] = b"FB";
const VERSION: u8 = 1;
const CODEC_ZSTD: u8 = 1;
/// Bytes before the table.
pub const HEAD_LEN: usize = 12;
/// Bytes of one table entry.
pub const ENTRY_LEN: usize = 36;
/// Members of one block at most (a block of tiny chunks still has a bounded table).
pub const MAX_MEMBERS: usize = 1 << 16;
/// Raw bytes a block gathers before it is closed. Measured on the stable Rust sysroot
/// at zstd 15 (benches/README.md, twenty-third session): 1 MiB blocks keep 0.641 of
/// today's frames and cost a random read of one chunk 290 us; 4 MiB blocks 0.600 and
/// 1.2 ms. Chunks are at most 256 KiB, so a block holds four of the largest.
pub const BLOCK_RAW: usize = 1 << 20;
/// Bytes a block's frame can take at most: its head, the largest table, and zstd's
/// bound on the payload of [`crate::frame::MAX_RAW_LEN`] raw bytes (what a decoder of
/// untrusted lengths checks against).
pub const MAX_LEN: usize = HEAD_LEN
    + ENTRY_LEN * MAX_MEMBERS
    + crate::frame::MAX_RAW_LEN
    + (crate::frame::MAX_RAW_LEN >> 8)
    + (64 << 10);

/// Whether a record's frame is a block.
pub fn is_block(frame: &[u8]) -> bool {
    frame.get(..2) == Some(MAGIC)
}

/// The raw bytes of the chunk in `frame`, when they are worth a block: they decode,
/// verify, and the fast level shrinks them by a tenth at least. What it barely shrank
/// (photos, archives) is copied as it is; a frame kept raw is tried again (a copy of
/// a block's member promoted from a colder tier is served raw).
pub fn worth(id: &ChunkId, frame: &[u8]) -> Option<Vec<u8>> {
    use crate::frame;
    let raw_len = frame::raw_len(frame).ok()?;
    let shrinks = |len: usize| len * 10 <= raw_len * 9;
    if !frame::is_raw(frame) && !shrinks(frame.len()) {
        return None;
    }
    let raw = frame::decode(id, frame).ok()?;
    (!frame::is_raw(frame) || shrinks(frame::encode(&raw).len())).then_some(raw)
}

/// What cold `members` are rewritten as: a lone chunk as a frame, several as a block,
/// at the dense level.
pub fn dense(members: &[(ChunkId, &[u8])]) -> Vec<u8> {
    match members {
        [(_, raw)] => crate::frame::encode_dense(raw),
        _ => encode(members, crate::frame::DENSE_LEVEL),
    }
}

/// Whether `frame`, made by [`dense`] or read whole from a store, gives back each of
/// `members` (id and index in the block; a lone frame's index is 0): it decodes, and
/// each member's bytes hash to its id. A copy is checked so before it replaces others
/// (an encoder's bug or a bit flipped in memory must not reach every tier).
pub fn gives_back(frame: &[u8], members: &[(ChunkId, u32)]) -> bool {
    if !is_block(frame) {
        return matches!(members, [(id, 0)] if crate::frame::decode(id, frame).is_ok());
    }
    let Some(d) = decode(frame) else {
        return false;
    };
    members.iter().all(|(id, index)| {
        d.member(*index, id)
            .is_some_and(|raw| ChunkId::of(&raw) == *id)
    })
}

/// The block of `members` (chunk id and raw bytes), compressed at zstd `level`.
///
/// # Panics
/// With no member, more than [`MAX_MEMBERS`], or more raw bytes than a frame may
/// hold: the rewrite builds blocks far below those.
pub fn encode(members: &[(ChunkId, &[u8])], level: i32) -> Vec<u8> {
    assert!(!members.is_empty() && members.len() <= MAX_MEMBERS);
    let total: usize = members.iter().map(|(_, raw)| raw.len()).sum();
    assert!(total <= crate::frame::MAX_RAW_LEN, "block too large");
    let mut raw = Vec::with_capacity(total);
    for (_, r) in members {
        raw.extend_from_slice(r);
    }
    let payload = zstd::bulk::compress(&raw, level).expect("zstd compresses in memory");
    let mut out = Vec::with_capacity(HEAD_LEN + ENTRY_LEN * members.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(CODEC_ZSTD);
    out.extend_from_slice(&(members.len() as u32).to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    for (id, r) in members {
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(&payload);
    out
}

/// A block's table: each member's id, and where its bytes are in the raw payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub members: Vec<(ChunkId, u32, u32)>,
    pub raw_len: usize,
}

impl Table {
    /// Bytes of the head and table, where the payload starts.
    pub fn payload_at(&self) -> usize {
        HEAD_LEN + ENTRY_LEN * self.members.len()
    }

    /// The raw lengths of the members, in order.
    pub fn raw_lens(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.2).collect()
    }
}

/// The members `n` a block declares, after checking its head; `None` if `frame` does
/// not start with a block's head.
fn members(frame: &[u8]) -> Option<usize> {
    let head = frame.get(..HEAD_LEN)?;
    if &head[..2] != MAGIC || head[2] != VERSION || head[3] != CODEC_ZSTD {
        return None;
    }
    let n = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    (1..=MAX_MEMBERS).contains(&n).then_some(n)
}

/// The entry `index` of the table at the start of `frame` (which may hold only the
/// head and the table up to that entry): its chunk id.
pub fn entry(frame: &[u8], index: u32) -> Option<ChunkId> {
    let n = members(frame)?;
    let i = index as usize;
    if i >= n {
        return None;
    }
    let at = HEAD_LEN + ENTRY_LEN * i;
    ChunkId::from_slice(frame.get(at..at + 32)?)
}

/// The table of block `frame`, if its head and table are whole and consistent.
pub fn table(frame: &[u8]) -> Option<Table> {
    let n = members(frame)?;
    let raw_len = u32::from_le_bytes(frame[8..12].try_into().ok()?) as usize;
    if raw_len > crate::frame::MAX_RAW_LEN {
        return None;
    }
    let entries = frame.get(HEAD_LEN..HEAD_LEN + ENTRY_LEN * n)?;
    let mut members = Vec::with_capacity(n);
    let mut at = 0u64;
    for e in entries.chunks_exact(ENTRY_LEN) {
        let id = ChunkId::from_slice(&e[..32])?;
        let len = u32::from_le_bytes(e[32..].try_into().ok()?);
        members.push((id, at as u32, len));
        at += u64::from(len);
    }
    (at == raw_len as u64).then_some(Table { members, raw_len })
}

/// A block decompressed: its table and the members' raw bytes.
pub struct Decoded {
    pub table: Table,
    raw: Bytes,
}

impl Decoded {
    /// The raw bytes of member `index`, if the table names `id` there (the caller
    /// checks that they hash to it).
    pub fn member(&self, index: u32, id: &ChunkId) -> Option<Bytes> {
        let &(named, start, len) = self.table.members.get(index as usize)?;
        (named == *id).then(|| self.raw.slice(start as usize..(start + len) as usize))
    }
}

/// Decompresses block `frame`; `None` if it is not a whole, consistent block.
pub fn decode(frame: &[u8]) -> Option<Decoded> {
    let table = table(frame)?;
    let payload = frame.get(table.payload_at()..)?;
    let raw = zstd::bulk::decompress(payload, table.raw_len).ok()?;
    (raw.len() == table.raw_len).then(|| Decoded {
        table,
        raw: Bytes::from(raw),
    })
}

/// How `record_len` bytes of a block's record are shared out among members of raw
/// lengths `lens`: in proportion, the last taking what rounding left, so the shares
/// sum to `record_len` exactly.
pub fn shares(record_len: u64, lens: &[u32]) -> Vec<u32> {
    let total: u64 = lens.iter().map(|l| u64::from(*l)).sum::<u64>().max(1);
    let mut out: Vec<u32> = lens
        .iter()
        .map(|l| (u128::from(record_len) * u128::from(*l) / u128::from(total)) as u32)
        .collect();
    let given: u64 = out.iter().map(|s| u64::from(*s)).sum();
    if let Some(last) = out.last_mut() {
        *last += (record_len - given) as u32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn members(n: usize) -> Vec<(ChunkId, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let raw = format!("member {i} ").repeat(100 + i * 7).into_bytes();
                (ChunkId::of(&raw), raw)
            })
            .collect()
    }

    pub(super) fn encoded(m: &[(ChunkId, Vec<u8>)]) -> Vec<u8> {
        let refs: Vec<(ChunkId, &[u8])> = m.iter().map(|(id, r)| (*id, &r[..])).collect();
        encode(&refs, 3)
    }

    #[test]
    fn members_round_trip_and_the_table_reads_without_the_payload() {
        let m = members(20);
        let frame = encoded(&m);
        assert!(is_block(&frame) && !is_block(&crate::frame::encode(b"chunk")));
        let raw: usize = m.iter().map(|(_, r)| r.len()).sum();
        assert!(frame.len() < raw / 10, "{} of {raw}", frame.len());
        let d = decode(&frame).unwrap();
        for (i, (id, r)) in m.iter().enumerate() {
            assert_eq!(d.member(i as u32, id).unwrap(), r[..]);
            // The table's prefix up to an entry names it.
            let upto = HEAD_LEN + ENTRY_LEN * (i + 1);
            assert_eq!(entry(&frame[..upto], i as u32), Some(*id));
        }
        assert_eq!(d.member(3, &m[4].0), None, "another member's id");
        assert_eq!(d.member(20, &m[0].0), None);
        assert_eq!(entry(&frame, 20), None);
        assert_eq!(table(&frame[..HEAD_LEN + 5]), None);
    }

    #[test]
    fn a_copy_gives_back_its_members_or_is_refused() {
        let m = members(6);
        let refs: Vec<(ChunkId, &[u8])> = m.iter().map(|(id, r)| (*id, &r[..])).collect();
        let frame = dense(&refs);
        let listed: Vec<(ChunkId, u32)> = (0..).zip(&m).map(|(i, (id, _))| (*id, i)).collect();
        assert!(gives_back(&frame, &listed));
        assert!(
            !gives_back(&frame, &[(m[1].0, 2)]),
            "another member's place"
        );
        let mut bad = frame.clone();
        let at = bad.len() - 10;
        bad[at] ^= 0x08;
        assert!(!gives_back(&bad, &listed), "a flipped payload byte");
        let lone = dense(&refs[..1]);
        assert!(!is_block(&lone));
        assert!(gives_back(&lone, &[(m[0].0, 0)]));
        assert!(!gives_back(&lone, &[(m[1].0, 0)]));
    }

    #[test]
    fn shares_sum_to_the_record_and_follow_the_sizes() {
        let s = shares(1000, &[100, 300, 600, 1]);
        assert_eq!(s.iter().map(|x| u64::from(*x)).sum::<u64>(), 1000);
        assert!(s[1] > s[0] && s[2] > s[1]);
        assert_eq!(shares(7, &[0, 0]), vec![0, 7]);
    }

    #[test]
    fn damaged_blocks_are_refused() {
        let frame = encoded(&members(5));
        for i in [0, 2, 3, 4, 9, 12, 40, frame.len() - 3] {
            let mut bad = frame.clone();
            bad[i] ^= 0x21;
            // A damaged table or payload decodes to nothing, or to bytes whose ids
            // the reader's hash check refuses; it never panics.
            if let Some(d) = decode(&bad) {
                let ok = (0..5u32).all(|k| {
                    let (id, ..) = d.table.members[k as usize];
                    d.member(k, &id).is_some_and(|r| ChunkId::of(&r) == id)
                });
                assert!(!ok, "flip at {i} went unseen");
            }
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut b = bytes;
            if b.len() > 4 { b[..4].copy_from_slice(&[b'F', b'B', 1, 1]); }
            let _ = decode(&b);
            let _ = entry(&b, 0);
        }
    }
}
