//! The metadata records kept in the key-value store, and their key layout.
//!
//! ```text
//! h               head: the newest version number (u64, big endian)
//! v <u64 BE>      Version
//! s <name>        snapshot name -> version number (u64 BE)
//! c <32-byte id>  ChunkRecord, one per chunk known to the store
//! f <source path> migrate's stat cache of old (dropped by its next run: it has files
//!                 of its own now, see `fvfsd`'s `migrate::statcache`)
//! k               Totals over all chunk records
//! g <32-byte id>  ChunkRecord of a chunk garbage collection condemned: its record is
//!                 gone, its copies are being deleted (removed once they are)
//! r               records epoch (u64, little endian): a random number replaced in the
//!                 batch that removes chunk records (the only batch that does), so a
//!                 list of ids checked under one epoch is still all recorded under it
//! ```
//! Every other first byte is a namespace the layer above keeps through a
//! [`Space`](crate::Space) (tiering's replication queue, eviction candidates, S3
//! locations and publish log: `tiering/src/records`).
//! Values are packed CBOR structs (or fixed-width integers), all a few dozen bytes.

use fvfs_cas::ChunkId;

use crate::node::{ChunkKind, ChunkRef, Entry, EntryKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub(crate) const HEAD: &[u8] = b"h";
pub(crate) const TOTALS: &[u8] = b"k";
pub(crate) const VERSION_PREFIX: u8 = b'v';
pub(crate) const SNAPSHOT_PREFIX: u8 = b's';
pub(crate) const CHUNK_PREFIX: u8 = b'c';
pub(crate) const STAT_PREFIX: u8 = b'f';
pub(crate) const TOMBSTONE_PREFIX: u8 = b'g';
/// The seed of the store's chunk cut points (8 bytes, little endian), when it has one.
pub(crate) const CUT_SEED: &[u8] = b"x";
/// See [`crate::Repo::records_epoch`].
pub(crate) const RECORDS_EPOCH: &[u8] = b"r";

/// The first bytes of the manifest's own keys: never handed out as a space.
pub(crate) const OWN_PREFIXES: [u8; 9] = [
    HEAD[0],
    TOTALS[0],
    VERSION_PREFIX,
    SNAPSHOT_PREFIX,
    CHUNK_PREFIX,
    STAT_PREFIX,
    TOMBSTONE_PREFIX,
    CUT_SEED[0],
    RECORDS_EPOCH[0],
];

pub(crate) fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

pub(crate) fn version_key(n: u64) -> Vec<u8> {
    key(VERSION_PREFIX, &n.to_be_bytes())
}

pub(crate) fn chunk_key(id: &ChunkId) -> Vec<u8> {
    key(CHUNK_PREFIX, id.as_bytes())
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_cbor::ser::to_vec_packed(v).expect("records always serialize")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_cbor::Error> {
    serde_cbor::from_slice(bytes)
}

/// Why a version was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionKind {
    Write,
    Snapshot,
    Rollback,
}

impl VersionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionKind::Write => "write",
            VersionKind::Snapshot => "snapshot",
            VersionKind::Rollback => "rollback",
        }
    }
}

/// One state of the whole tree. Versions are numbered from 1 and never rewritten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub number: u64,
    /// The root directory node.
    pub root: ChunkId,
    pub parent: Option<u64>,
    /// Seconds since the Unix epoch.
    pub time: i64,
    pub kind: VersionKind,
    pub message: String,
    /// Logical bytes of all files in the tree.
    pub logical_bytes: u64,
}

/// Bit of the tier bitmask: the local disk tier.
pub const TIER_LOCAL: u8 = 0b001;
/// Bit of the tier bitmask: the NAS tier.
pub const TIER_NAS: u8 = 0b010;
/// Bit of the tier bitmask: the S3 tier.
pub const TIER_S3: u8 = 0b100;

/// What the store knows of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub kind: ChunkKind,
    /// Tiers that confirmed holding the chunk (`TIER_*` bits).
    pub tiers: u8,
    pub raw_len: u32,
    pub stored_len: u32,
    /// Seconds since the Unix epoch.
    pub last_access: i64,
    /// Decayed count of recent accesses.
    pub accesses: f32,
}

/// A file's content as its directory entry refers to it: a file node, or (for a small
/// file) its chunks inline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub size: u64,
    pub node: Option<ChunkId>,
    pub chunks: Vec<ChunkRef>,
}

impl FileRef {
    /// The directory entry of this content, with the given mode and mtime.
    pub fn entry(self, mode: u32, mtime_ns: i64) -> Entry {
        Entry {
            name: Vec::new(),
            kind: EntryKind::File,
            mode,
            mtime_ns,
            size: self.size,
            id: self.node,
            chunks: self.chunks,
            target: Vec::new(),
            meta: None,
            links: 0,
            link: None,
        }
    }

    /// What file entry `entry` refers to: [`Self::entry`] undone.
    pub fn of(entry: Entry) -> Self {
        Self {
            size: entry.size,
            node: entry.id,
            chunks: entry.chunks,
        }
    }
}

/// Sums over all chunk records, kept up to date in the same batch as the records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub chunks: u64,
    pub node_chunks: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// Chunks, and their stored bytes, that the NAS tier confirmed holding.
    #[serde(default)]
    pub nas_chunks: u64,
    #[serde(default)]
    pub nas_bytes: u64,
    /// Chunks, and their stored bytes, that the S3 tier confirmed holding.
    #[serde(default)]
    pub s3_chunks: u64,
    #[serde(default)]
    pub s3_bytes: u64,
    /// Chunks, and their stored bytes, that the local tier no longer holds (evicted,
    /// or never fetched after a recovery).
    #[serde(default)]
    pub evicted_chunks: u64,
    #[serde(default)]
    pub evicted_bytes: u64,
}

impl Totals {
    pub fn add(&mut self, r: &ChunkRecord) {
        self.chunks += 1;
        self.node_chunks += u64::from(r.kind == ChunkKind::Node);
        self.raw_bytes += u64::from(r.raw_len);
        self.stored_bytes += u64::from(r.stored_len);
    }

    /// Takes out a record that is deleted, on whichever tiers it claims.
    pub(crate) fn remove(&mut self, r: &ChunkRecord) {
        let sub = |v: &mut u64, n: u64| *v = v.saturating_sub(n);
        let stored = u64::from(r.stored_len);
        sub(&mut self.chunks, 1);
        sub(&mut self.node_chunks, u64::from(r.kind == ChunkKind::Node));
        sub(&mut self.raw_bytes, u64::from(r.raw_len));
        sub(&mut self.stored_bytes, stored);
        if r.tiers & TIER_NAS != 0 {
            sub(&mut self.nas_chunks, 1);
            sub(&mut self.nas_bytes, stored);
        }
        if r.tiers & TIER_S3 != 0 {
            sub(&mut self.s3_chunks, 1);
            sub(&mut self.s3_bytes, stored);
        }
        if r.tiers & TIER_LOCAL == 0 {
            sub(&mut self.evicted_chunks, 1);
            sub(&mut self.evicted_bytes, stored);
        }
    }

    /// Chunks and bytes the local tier holds.
    pub fn local(&self) -> (u64, u64) {
        (
            self.chunks.saturating_sub(self.evicted_chunks),
            self.stored_bytes.saturating_sub(self.evicted_bytes),
        )
    }

    /// Chunks and bytes tier `tier` (a `TIER_*` bit) holds.
    pub fn held(&self, tier: u8) -> (u64, u64) {
        match tier {
            TIER_NAS => (self.nas_chunks, self.nas_bytes),
            TIER_S3 => (self.s3_chunks, self.s3_bytes),
            _ => self.local(),
        }
    }

    /// Counts a chunk of `stored_len` bytes that colder tier `tier` newly holds.
    pub fn count_on(&mut self, tier: u8, stored_len: u32) {
        let (chunks, bytes) = match tier {
            TIER_NAS => (&mut self.nas_chunks, &mut self.nas_bytes),
            TIER_S3 => (&mut self.s3_chunks, &mut self.s3_bytes),
            _ => return,
        };
        *chunks += 1;
        *bytes += u64::from(stored_len);
    }
}
