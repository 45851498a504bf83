//! What the metadata database keeps for the S3 tier: where each chunk sits in its
//! packs, which versions were published to S3 (and which dropped ones are still to be
//! marked so in S3's log), and the chunk records of a whole state restored from S3.
//!
//! # Invariants
//! - A pack location is recorded only after its pack object was stored (the S3 store
//!   records after the upload returned), so a location never names a missing pack.
//! - The published mark only grows, and is written after the version log segment it
//!   covers was stored in S3.

use fvfs_cas::ChunkId;
use fvfs_manifest::kv::{Batch, Kv};
use fvfs_manifest::meta::TIER_S3;
use fvfs_manifest::{ChunkKind, ChunkRecord, Repo, Result, Space};

use super::{bad, DROPPED, PACKS, PUBLISHED};

/// Where the S3 tier keeps a chunk: a byte range of a pack object, holding its frame,
/// or the block it is a member of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackLoc {
    /// The pack's name: the BLAKE3 hash of the whole pack object.
    pub pack: [u8; 32],
    pub offset: u64,
    /// Bytes of the range: the frame, or the whole block (what a read GETs).
    pub len: u32,
    pub member: Option<PackMember>,
}

/// A chunk's place in a block (issue 47).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackMember {
    /// Its index in the block's table.
    pub index: u32,
    /// Its share of the block's bytes (`fvfs_cas::block::shares` over the members
    /// the pack lists), what it counts as in usage and compaction.
    pub share: u32,
}

impl PackLoc {
    /// Bytes of the record of a frame's location (the only form before blocks).
    pub const FRAME_LEN: usize = 44;
    /// Bytes of the record of a member's location.
    pub const MEMBER_LEN: usize = 52;

    /// A frame's location.
    pub fn frame(pack: [u8; 32], offset: u64, len: u32) -> Self {
        Self {
            pack,
            offset,
            len,
            member: None,
        }
    }

    /// The bytes this chunk counts for: its frame, or its share of its block.
    pub fn live_len(&self) -> u32 {
        self.member.map_or(self.len, |m| m.share)
    }

    /// The record: [`Self::FRAME_LEN`] bytes for a frame, as written before blocks
    /// existed, [`Self::MEMBER_LEN`] for a member.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_fixed();
        if self.member.is_none() {
            out.truncate(Self::FRAME_LEN);
        }
        out
    }

    /// The record in [`Self::MEMBER_LEN`] bytes whatever it holds (a frame's index
    /// and share are `u32::MAX`), for files of fixed-length records.
    pub fn encode_fixed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::MEMBER_LEN);
        out.extend_from_slice(&self.pack);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        let (index, share) = self
            .member
            .map_or((u32::MAX, u32::MAX), |m| (m.index, m.share));
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&share.to_le_bytes());
        out
    }

    /// Reads either form of [`Self::encode`] or [`Self::encode_fixed`].
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let member = match bytes.len() {
            Self::FRAME_LEN => None,
            Self::MEMBER_LEN => match (u32_at(44)?, u32_at(48)?) {
                (u32::MAX, _) => None,
                (index, share) => Some(PackMember { index, share }),
            },
            _ => return None,
        };
        Some(Self {
            pack: bytes[..32].try_into().ok()?,
            offset: u64::from_le_bytes(bytes[32..40].try_into().ok()?),
            len: u32_at(40)?,
            member,
        })
    }
}

/// A chunk found in S3 by `fvfsd recover`.
#[derive(Clone, Copy, Debug)]
pub struct Recovered {
    pub id: ChunkId,
    pub loc: PackLoc,
    pub raw_len: u32,
}

/// The S3 tier's chunk locations, in the metadata database (a handle sharing it).
#[derive(Clone)]
pub struct PackLocs {
    space: Space,
}

impl PackLocs {
    pub fn new(kv: &Kv) -> Self {
        Self {
            space: Space::new(kv.clone(), PACKS),
        }
    }

    pub fn get(&self, id: &ChunkId) -> Result<Option<PackLoc>> {
        match self.space.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => PackLoc::decode(&v)
                .map(Some)
                .ok_or_else(|| bad("pack location", "bad length")),
        }
    }

    /// Records where chunks were stored in S3, durably.
    pub fn record(&self, locs: &[(ChunkId, PackLoc)]) -> Result<()> {
        let mut batch = Batch::default();
        for (id, loc) in locs {
            self.space.insert(&mut batch, id.as_bytes(), loc.encode());
        }
        self.space.apply(batch, true)
    }

    /// Forgets a chunk's S3 location (its bytes stay in the pack until GC compacts it).
    pub fn forget(&self, id: &ChunkId) -> Result<()> {
        let mut batch = Batch::default();
        self.space.remove(&mut batch, id.as_bytes());
        self.space.apply(batch, false)
    }

    /// Every chunk the S3 tier holds, with its location.
    pub fn iter(&self) -> impl Iterator<Item = Result<(ChunkId, PackLoc)>> + '_ {
        self.space.scan(&[]).map(|r| {
            let (k, v) = r?;
            let id = ChunkId::from_slice(&k).ok_or_else(|| bad("pack location", "bad id"))?;
            let loc = PackLoc::decode(&v).ok_or_else(|| bad("pack location", "bad length"))?;
            Ok((id, loc))
        })
    }
}

/// The S3 tier's records of a store: locations, the publish log, recovery.
#[async_trait::async_trait]
pub trait Publishing {
    /// A handle on the S3 tier's chunk locations.
    fn pack_locs(&self) -> PackLocs;
    /// The newest version number whose log entry is in S3 (0 if none).
    fn published(&self) -> Result<u64>;
    /// Versions up to `n` are in S3's log, durably.
    fn set_published(&self, n: u64) -> Result<()>;
    /// Versions dropped by collections but not yet marked dropped in S3's log.
    fn dropped_unpublished(&self) -> Result<Vec<u64>>;
    /// S3's log now says `numbers` are dropped.
    fn dropped_published(&self, numbers: &[u64]) -> Result<()>;
    /// Recovery, step 1: records where each chunk found in S3 is (what reads of it
    /// need). For an empty database only.
    fn restore_locations(&self, found: &[Recovered]) -> Result<()>;
    /// Recovery, step 2 (beside the fetch of the tree nodes, which needs only the
    /// locations): records the chunks found in S3 as data chunks held by S3 only
    /// (`Repo::restore_mark_nodes` fixes the kind of tree nodes), and the totals.
    /// For an empty database only.
    async fn restore_chunks(&self, found: &[Recovered]) -> Result<()>;
    /// Recovery, step 3: the version log, HEAD and snapshot names, with every version
    /// up to the newest marked published, then a durable flush.
    fn restore_versions_published(
        &self,
        versions: &[fvfs_manifest::Version],
        snapshots: &[(String, u64)],
    ) -> Result<()>;
}

#[async_trait::async_trait]
impl Publishing for Repo {
    fn pack_locs(&self) -> PackLocs {
        PackLocs {
            space: self.space(PACKS),
        }
    }

    fn published(&self) -> Result<u64> {
        Ok(self
            .space(PUBLISHED)
            .get(&[])?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    fn set_published(&self, n: u64) -> Result<()> {
        let space = self.space(PUBLISHED);
        let mut batch = Batch::default();
        space.insert(&mut batch, &[], n.to_be_bytes().to_vec());
        space.apply(batch, true)
    }

    fn dropped_unpublished(&self) -> Result<Vec<u64>> {
        self.space(DROPPED)
            .scan(&[])
            .map(|r| {
                let (k, _) = r?;
                Ok(k.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0))
            })
            .collect()
    }

    fn dropped_published(&self, numbers: &[u64]) -> Result<()> {
        let space = self.space(DROPPED);
        let mut batch = Batch::default();
        for n in numbers {
            space.remove(&mut batch, &n.to_be_bytes());
        }
        space.apply(batch, true)
    }

    fn restore_locations(&self, found: &[Recovered]) -> Result<()> {
        let locs = self.space(PACKS);
        let mut batch = Batch::default();
        for f in distinct(found) {
            locs.insert(&mut batch, f.id.as_bytes(), f.loc.encode());
            if batch.len() >= 4096 {
                locs.apply(std::mem::take(&mut batch), false)?;
            }
        }
        locs.apply(batch, false)
    }

    async fn restore_chunks(&self, found: &[Recovered]) -> Result<()> {
        let mut change = self.change_records().await?;
        for f in distinct(found) {
            let record = ChunkRecord {
                kind: ChunkKind::Data,
                tiers: TIER_S3,
                raw_len: f.raw_len,
                stored_len: f.loc.live_len(),
                last_access: 0,
                accesses: 0.0,
            };
            let t = &mut change.totals;
            t.add(&record);
            t.count_on(TIER_S3, f.loc.live_len());
            t.evicted_chunks += 1;
            t.evicted_bytes += u64::from(f.loc.live_len());
            change.set(&f.id, &record);
            if change.batch.len() >= 4096 {
                change.apply_part()?;
            }
        }
        change.commit(false)
    }

    fn restore_versions_published(
        &self,
        versions: &[fvfs_manifest::Version],
        snapshots: &[(String, u64)],
    ) -> Result<()> {
        let mut published = Batch::default();
        if let Some(head) = versions.iter().map(|v| v.number).max() {
            self.space(PUBLISHED)
                .insert(&mut published, &[], head.to_be_bytes().to_vec());
        }
        self.restore_versions(versions, snapshots, published)
    }
}

/// The chunks of `found` in key order, each once (the same copy for every caller): a
/// frame of its own before a block's member. Both are there when a repair put a frame
/// in place of a damaged block (whose pack stays until compaction: the frame is the
/// good copy), or when blocks were uploaded and their frames' packs not compacted yet
/// (both are good).
fn distinct(found: &[Recovered]) -> Vec<&Recovered> {
    let mut found: Vec<&Recovered> = found.iter().collect();
    found.sort_unstable_by_key(|f| (f.id, f.loc.member.is_some(), f.loc.pack, f.loc.offset));
    found.dedup_by_key(|f| f.id);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_keeps_the_old_record_and_a_member_reads_back_from_either_form() {
        let frame = PackLoc::frame([3; 32], 77, 1000);
        assert_eq!(frame.encode().len(), PackLoc::FRAME_LEN);
        assert_eq!(PackLoc::decode(&frame.encode()), Some(frame));
        assert_eq!(PackLoc::decode(&frame.encode_fixed()), Some(frame));
        assert_eq!(frame.live_len(), 1000);
        let member = PackLoc {
            member: Some(PackMember {
                index: 4,
                share: 120,
            }),
            ..frame
        };
        assert_eq!(member.encode().len(), PackLoc::MEMBER_LEN);
        assert_eq!(PackLoc::decode(&member.encode()), Some(member));
        assert_eq!(member.live_len(), 120);
        assert_eq!(PackLoc::decode(&member.encode()[..50]), None);
    }
}
