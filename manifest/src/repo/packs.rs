//! What the metadata database keeps for the S3 tier: where each chunk sits in its packs,
//! which versions were published to S3, and the restore of a whole state from S3.
//!
//! # Invariants
//! - A pack location is recorded only after its pack object was stored (the S3 store
//!   records after the upload returned), so a location never names a missing pack.
//! - The published mark only grows, and is written after the version log segment it
//!   covers was stored in S3.

use fvfs_cas::ChunkId;

use super::Repo;
use crate::error::{ManifestError, Result};
use crate::kv::{Batch, Kv};
use crate::meta::{self, ChunkRecord, PackLoc, Totals, Version, TIER_S3};
use crate::node::ChunkKind;

fn loc_key(id: &ChunkId) -> Vec<u8> {
    meta::key(meta::PACK_PREFIX, id.as_bytes())
}

fn bad(key: &str, reason: &str) -> ManifestError {
    ManifestError::BadRecord {
        key: key.into(),
        reason: reason.into(),
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
    kv: Kv,
}

impl PackLocs {
    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }

    pub fn get(&self, id: &ChunkId) -> Result<Option<PackLoc>> {
        match self.kv.get(&loc_key(id))? {
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
            batch.insert(loc_key(id), loc.encode().to_vec());
        }
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }

    /// Forgets a chunk's S3 location (its bytes stay in the pack until GC compacts it).
    pub fn forget(&self, id: &ChunkId) -> Result<()> {
        let mut batch = Batch::default();
        batch.remove(loc_key(id));
        self.kv.apply(batch)?;
        Ok(())
    }

    /// Every chunk the S3 tier holds, with its location.
    pub fn iter(&self) -> impl Iterator<Item = Result<(ChunkId, PackLoc)>> + '_ {
        self.kv.scan_prefix(&[meta::PACK_PREFIX], false).map(|r| {
            let (k, v) = r?;
            let id = ChunkId::from_slice(&k[1..]).ok_or_else(|| bad("pack location", "bad id"))?;
            let loc = PackLoc::decode(&v).ok_or_else(|| bad("pack location", "bad length"))?;
            Ok((id, loc))
        })
    }
}

impl Repo {
    /// A handle on the S3 tier's chunk locations.
    pub fn pack_locs(&self) -> PackLocs {
        PackLocs::new(self.kv.clone())
    }

    /// The newest version number whose log entry is in S3 (0 if none).
    pub fn published(&self) -> Result<u64> {
        Ok(self
            .kv
            .get(meta::PUBLISHED)?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    pub fn set_published(&self, n: u64) -> Result<()> {
        let mut batch = Batch::default();
        batch.insert(meta::PUBLISHED, n.to_be_bytes().to_vec());
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }

    /// Recovery, step 1: records chunks found in S3 (as data chunks held by S3 only;
    /// [`Repo::restore_mark_nodes`] fixes the kind of tree nodes), their locations and
    /// the totals. For an empty database only.
    pub fn restore_chunks(&self, found: &[Recovered]) -> Result<()> {
        let mut totals = self.totals()?;
        let mut batch = Batch::default();
        for f in found {
            let key = meta::chunk_key(&f.id);
            if self.kv.contains(&key)? {
                continue;
            }
            let record = ChunkRecord {
                kind: ChunkKind::Data,
                tiers: TIER_S3,
                raw_len: f.raw_len,
                stored_len: f.loc.len,
                last_access: 0,
                accesses: 0.0,
            };
            totals.add(&record);
            totals.count_on(TIER_S3, f.loc.len);
            totals.evicted_chunks += 1;
            totals.evicted_bytes += u64::from(f.loc.len);
            batch.insert(key, meta::encode(&record));
            batch.insert(loc_key(&f.id), f.loc.encode().to_vec());
            if batch.len() >= 4096 {
                batch.insert(meta::TOTALS, meta::encode(&totals));
                self.kv.apply(std::mem::take(&mut batch))?;
            }
        }
        batch.insert(meta::TOTALS, meta::encode(&totals));
        self.kv.apply(batch)?;
        Ok(())
    }

    /// Recovery, step 2: marks chunks reached as tree nodes.
    pub fn restore_mark_nodes(&self, nodes: &[ChunkId]) -> Result<()> {
        let mut totals: Totals = self.totals()?;
        let mut batch = Batch::default();
        for id in nodes {
            if let Some(mut r) = self.chunk_record(id)? {
                if r.kind != ChunkKind::Node {
                    r.kind = ChunkKind::Node;
                    totals.node_chunks += 1;
                    batch.insert(meta::chunk_key(id), meta::encode(&r));
                }
            }
        }
        batch.insert(meta::TOTALS, meta::encode(&totals));
        self.kv.apply(batch)?;
        Ok(())
    }

    /// Recovery, step 3: the version log, HEAD (the newest version) and snapshot names,
    /// then a durable flush of everything restored.
    pub fn restore_versions(
        &self,
        versions: &[Version],
        snapshots: &[(String, u64)],
    ) -> Result<()> {
        let mut batch = Batch::default();
        let mut head = 0;
        for v in versions {
            batch.insert(meta::version_key(v.number), meta::encode(v));
            head = head.max(v.number);
        }
        if head > 0 {
            batch.insert(meta::HEAD, head.to_be_bytes().to_vec());
            batch.insert(meta::PUBLISHED, head.to_be_bytes().to_vec());
        }
        for (name, n) in snapshots {
            batch.insert(
                meta::key(meta::SNAPSHOT_PREFIX, name.as_bytes()),
                n.to_be_bytes().to_vec(),
            );
        }
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }

    /// Whether the database holds nothing yet (no version, no chunk).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.head()?.is_none() && self.totals()?.chunks == 0)
    }
}
