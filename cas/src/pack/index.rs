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
//! d<segment BE>  -> (empty): the segment's frames are dense (rewritten at the dense
//!                   level, or found not to shrink): recompression skips it. A key of
//!                   its own, so versions that do not know it ignore it
//! ```
//! Every value is fixed-size and tiny, so ten million chunks are a few hundred MB of
//! database and opening it costs no scan.

use crate::ChunkId;

pub const LOC_PREFIX: u8 = b'l';
pub const SEG_PREFIX: u8 = b's';
pub const TOTALS: &[u8] = b"u";
pub const FREE_PREFIX: u8 = b'f';
pub const DENSE_PREFIX: u8 = b'd';

/// The key noting that `len` bytes at `offset` of segment `seg` are to be punched.
pub fn free_key(seg: u32, offset: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = FREE_PREFIX;
    k[1..5].copy_from_slice(&seg.to_be_bytes());
    k[5..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The segment and offset of a [`free_key`].
pub fn decode_free_key(k: &[u8]) -> Option<(u32, u64)> {
    let k: &[u8; 13] = k.try_into().ok()?;
    Some((
        u32::from_be_bytes(k[1..5].try_into().ok()?),
        u64::from_be_bytes(k[5..].try_into().ok()?),
    ))
}

/// Where a record is: its segment, the offset of its header, its frame's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub seg: u32,
    pub offset: u64,
    pub frame_len: u32,
}

impl Loc {
    pub fn record_len(&self) -> u64 {
        super::record::HEADER_LEN as u64 + u64::from(self.frame_len)
    }

    pub fn end(&self) -> u64 {
        self.offset + self.record_len()
    }

    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.seg.to_le_bytes());
        out[4..12].copy_from_slice(&self.offset.to_le_bytes());
        out[12..].copy_from_slice(&self.frame_len.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let b: &[u8; 16] = bytes.try_into().ok()?;
        Some(Self {
            seg: u32::from_le_bytes(b[..4].try_into().ok()?),
            offset: u64::from_le_bytes(b[4..12].try_into().ok()?),
            frame_len: u32::from_le_bytes(b[12..].try_into().ok()?),
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
    /// Counts the record at `loc` (of this segment) as live and synced.
    pub fn add(&mut self, loc: &Loc) {
        self.live_bytes += loc.record_len();
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

/// The segment of a [`seg_key`] or [`dense_key`].
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
