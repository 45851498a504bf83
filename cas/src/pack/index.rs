//! The pack store's index, in its own small database (see [`crate::kv`]): where each
//! chunk's record is, and what each segment holds.
//!
//! ```text
//! l<id>          -> Loc: segment u32, offset u64, frame length u32 (little endian)
//! s<segment BE>  -> SegStat: synced length, live bytes, live records (u64 each)
//! u              -> totals: live records, live bytes
//! f<seg BE><offset BE> -> length u64: bytes freed, written in the batch that drops
//!                   their locations and removed once punched (so a crash in between
//!                   punches them at the next open; segments are append-only, so
//!                   punching a range twice is harmless)
//! d<segment BE>  -> (empty) or [2]: the segment's frames are dense. Empty: rewritten
//!                   frame by frame at the dense level (by versions before blocks; the
//!                   idle rewrite visits it again, to make blocks). [2]: rewritten into
//!                   blocks, or found not to shrink: recompression skips it. A key of
//!                   its own, so versions that do not know it ignore it
//! b<seg BE><offset BE> -> live members u32: how many locations name a member of the
//!                   block at that record; the block's bytes are freed when it falls
//!                   to zero (recounted from the locations after a crash)
//! ```
//! A location is 16 bytes for a record of its own and 24 for a member of a block (see
//! [`Member`]). Every value is fixed-size and tiny, so ten million chunks are a few
//! hundred MB of database and opening it costs no scan.

use crate::ChunkId;

pub const LOC_PREFIX: u8 = b'l';
pub const SEG_PREFIX: u8 = b's';
pub const TOTALS: &[u8] = b"u";
pub const FREE_PREFIX: u8 = b'f';
pub const DENSE_PREFIX: u8 = b'd';
pub const BLOCK_PREFIX: u8 = b'b';
/// The value of a dense mark set by the rewrite into blocks.
pub const BLOCKED: &[u8] = &[2];

/// The key noting that `len` bytes at `offset` of segment `seg` are to be punched.
pub fn free_key(seg: u32, offset: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = FREE_PREFIX;
    k[1..5].copy_from_slice(&seg.to_be_bytes());
    k[5..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The segment and offset of a [`free_key`] or a [`block_key`].
pub fn decode_free_key(k: &[u8]) -> Option<(u32, u64)> {
    let k: &[u8; 13] = k.try_into().ok()?;
    Some((
        u32::from_be_bytes(k[1..5].try_into().ok()?),
        u64::from_be_bytes(k[5..].try_into().ok()?),
    ))
}

/// Where a chunk is: the segment, offset of the header and frame length of its
/// record, and when that record is a block, the chunk's place in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub seg: u32,
    pub offset: u64,
    pub frame_len: u32,
    pub member: Option<Member>,
}

/// A chunk's place in a block (see `block`): its entry in the table, and its share
/// of the block's bytes (what its deletion frees in the statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub index: u32,
    pub share: u32,
}

impl Loc {
    /// The location of a record of its own.
    pub fn record(seg: u32, offset: u64, frame_len: u32) -> Self {
        Self {
            seg,
            offset,
            frame_len,
            member: None,
        }
    }

    /// Bytes the record takes in its segment (a whole block for a member).
    pub fn record_len(&self) -> u64 {
        super::record::HEADER_LEN as u64 + u64::from(self.frame_len)
    }

    /// Bytes counted live for this chunk: its record, or its share of the block.
    pub fn live_len(&self) -> u64 {
        self.member
            .map_or(self.record_len(), |m| u64::from(m.share))
    }

    pub fn end(&self) -> u64 {
        self.offset + self.record_len()
    }

    /// Whether `other` names the same chunk's place: the same record and entry.
    pub fn same_place(&self, other: &Loc) -> bool {
        self.seg == other.seg
            && self.offset == other.offset
            && self.member.map(|m| m.index) == other.member.map(|m| m.index)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.seg.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.frame_len.to_le_bytes());
        if let Some(m) = self.member {
            out.extend_from_slice(&m.index.to_le_bytes());
            out.extend_from_slice(&m.share.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let u32_at = |at: usize| bytes[at..at + 4].try_into().ok().map(u32::from_le_bytes);
        let member = match bytes.len() {
            16 => None,
            24 => Some(Member {
                index: u32_at(16)?,
                share: u32_at(20)?,
            }),
            _ => return None,
        };
        Some(Self {
            seg: u32_at(0)?,
            offset: u64::from_le_bytes(bytes[4..12].try_into().ok()?),
            frame_len: u32_at(12)?,
            member,
        })
    }

    /// A key that sorts records in file order, for reading many of them.
    pub fn order_key(&self) -> u64 {
        (u64::from(self.seg) << 32) | (self.offset & 0xffff_ffff)
    }
}

/// What one segment holds, as of the last sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegStat {
    /// Bytes known durable from the start of the file: anything after is cut at open.
    pub synced_len: u64,
    /// Bytes of records the index names.
    pub live_bytes: u64,
    pub live_records: u64,
}

impl SegStat {
    /// Counts the chunk at `loc` (of this segment) as live and synced.
    pub fn add(&mut self, loc: &Loc) {
        self.live_bytes += loc.live_len();
        self.live_records += 1;
        self.synced_len = self.synced_len.max(loc.end());
    }

    pub fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.synced_len.to_le_bytes());
        out[8..16].copy_from_slice(&self.live_bytes.to_le_bytes());
        out[16..].copy_from_slice(&self.live_records.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let b: &[u8; 24] = bytes.try_into().ok()?;
        Some(Self {
            synced_len: u64::from_le_bytes(b[..8].try_into().ok()?),
            live_bytes: u64::from_le_bytes(b[8..16].try_into().ok()?),
            live_records: u64::from_le_bytes(b[16..].try_into().ok()?),
        })
    }
}

pub fn loc_key(id: &ChunkId) -> [u8; 33] {
    let mut k = [LOC_PREFIX; 33];
    k[1..].copy_from_slice(id.as_bytes());
    k
}

pub fn seg_key(seg: u32) -> [u8; 5] {
    let mut k = [SEG_PREFIX; 5];
    k[1..].copy_from_slice(&seg.to_be_bytes());
    k
}

/// The key marking segment `seg` dense.
pub fn dense_key(seg: u32) -> [u8; 5] {
    let mut k = [DENSE_PREFIX; 5];
    k[1..].copy_from_slice(&seg.to_be_bytes());
    k
}

/// The key counting the live members of the block whose record is at `offset` of
/// segment `seg`.
pub fn block_key(seg: u32, offset: u64) -> [u8; 13] {
    let mut k = free_key(seg, offset);
    k[0] = BLOCK_PREFIX;
    k
}

/// The live-member count kept under a [`block_key`].
pub fn decode_count(bytes: &[u8]) -> Option<u32> {
    bytes.try_into().ok().map(u32::from_le_bytes)
}

/// The prefix of the [`block_key`]s of segment `seg`.
pub fn blocks_of(seg: u32) -> [u8; 5] {
    let mut k = seg_key(seg);
    k[0] = BLOCK_PREFIX;
    k
}

/// The segment of a [`seg_key`], [`dense_key`] or [`block_key`].
pub fn seg_of_key(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(1..5)?.try_into().ok()?))
}

pub fn encode_totals(records: u64, bytes: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&records.to_le_bytes());
    out[8..].copy_from_slice(&bytes.to_le_bytes());
    out
}

pub fn decode_totals(bytes: &[u8]) -> Option<(u64, u64)> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some((
        u64::from_le_bytes(b[..8].try_into().ok()?),
        u64::from_le_bytes(b[8..].try_into().ok()?),
    ))
}
