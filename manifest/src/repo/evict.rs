//! What eviction keeps in the metadata database: per tier, the chunks it may drop,
//! ordered by last access, and the access statistics that score them.
//!
//! # Invariants
//! - **Only S3-backed chunks are candidates.** A chunk enters a tier's candidate list
//!   in the batch that gives it its S3 bit (or the tier's bit, if S3 came first), and
//!   [`Repo::evicted`] re-checks the S3 bit before clearing a tier's bit. So no chunk
//!   without a confirmed S3 copy is ever evicted, whatever the order of events.
//! - **Bits before bytes.** A tier's bit is cleared (durably) before the chunk's file is
//!   deleted; a crash in between leaves an extra copy, never a bit claiming a missing one.
//! - Candidate keys carry the record's `last_access`, and are moved whenever it changes,
//!   so walking a tier's candidates from the start visits the least recently used
//!   first, at a cost in proportion to what is visited.

use fvfs_cas::ChunkId;

use super::{now, Repo};
use crate::error::{ManifestError, Result};
use crate::kv::Batch;
use crate::meta::{self, ChunkRecord, TIER_LOCAL, TIER_NAS, TIER_S3};

/// Tiers that evict (S3 never does).
const EVICTING: [u8; 2] = [TIER_LOCAL, TIER_NAS];

/// Adds `r`'s candidate keys (for every evicting tier holding it) if S3 holds it.
pub(crate) fn add_candidates(batch: &mut Batch, id: &ChunkId, r: &ChunkRecord) {
    if r.tiers & TIER_S3 == 0 {
        return;
    }
    for t in EVICTING.into_iter().filter(|t| r.tiers & t != 0) {
        batch.insert(meta::candidate_key(t, r.last_access, id), Vec::new());
    }
}

fn remove_candidates(batch: &mut Batch, id: &ChunkId, r: &ChunkRecord) {
    for t in EVICTING {
        batch.remove(meta::candidate_key(t, r.last_access, id));
    }
}

/// Accesses in the last 30 days, approximately: the stored count decays exponentially
/// with a 30-day time constant since the last access.
pub fn recent_accesses(r: &ChunkRecord, now: i64) -> f64 {
    let age = (now - r.last_access).max(0) as f64;
    f64::from(r.accesses) * (-age / (30.0 * 86_400.0)).exp()
}

impl Repo {
    fn record_of(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.chunk_record(id)
    }

    /// Notes reads of chunks (`count` each) at the present time. Not flushed: access
    /// statistics may lose their last seconds in a crash.
    pub async fn note_accesses(&self, reads: &[(ChunkId, u32)]) -> Result<()> {
        let _one_at_a_time = self.persisting.lock().await;
        let now = now();
        let mut batch = Batch::default();
        for (id, count) in reads {
            let Some(mut r) = self.record_of(id)? else {
                continue;
            };
            remove_candidates(&mut batch, id, &r);
            r.accesses = (recent_accesses(&r, now) + f64::from(*count)) as f32;
            r.last_access = now;
            add_candidates(&mut batch, id, &r);
            batch.insert(meta::chunk_key(id), meta::encode(&r));
        }
        self.kv.apply(batch)?;
        Ok(())
    }

    /// Chunks read back into the local tier from a colder one (after the local store
    /// synced them): the local bit is set again.
    pub async fn note_promoted(&self, ids: &[ChunkId]) -> Result<()> {
        let _one_at_a_time = self.persisting.lock().await;
        let mut totals = self.totals()?;
        let mut batch = Batch::default();
        for id in ids {
            let Some(mut r) = self.record_of(id)? else {
                continue;
            };
            if r.tiers & TIER_LOCAL == 0 {
                r.tiers |= TIER_LOCAL;
                totals.evicted_chunks = totals.evicted_chunks.saturating_sub(1);
                totals.evicted_bytes = totals.evicted_bytes.saturating_sub(u64::from(r.stored_len));
                add_candidates(&mut batch, id, &r);
                batch.insert(meta::chunk_key(id), meta::encode(&r));
            }
        }
        batch.insert(meta::TOTALS, meta::encode(&totals));
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }

    /// Up to `limit` eviction candidates of `tier`, least recently used first.
    pub fn eviction_candidates(
        &self,
        tier: u8,
        limit: usize,
    ) -> Result<Vec<(ChunkId, ChunkRecord)>> {
        let mut out = Vec::new();
        for item in self.kv.scan_prefix(&[meta::CANDIDATE_PREFIX, tier], false) {
            let (k, _) = item?;
            let id = ChunkId::from_slice(&k[10..]).ok_or_else(|| ManifestError::BadRecord {
                key: "eviction candidate".into(),
                reason: "bad id".into(),
            })?;
            if let Some(r) = self.record_of(&id)? {
                out.push((id, r));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Clears `tier`'s bit of `ids`, durably, for those S3 still holds; returns those
    /// (the caller deletes their copies after this returns).
    pub async fn evicted(&self, tier: u8, ids: &[ChunkId]) -> Result<Vec<(ChunkId, u32)>> {
        let _one_at_a_time = self.persisting.lock().await;
        let mut totals = self.totals()?;
        let mut batch = Batch::default();
        let mut done = Vec::new();
        for id in ids {
            let Some(mut r) = self.record_of(id)? else {
                continue;
            };
            if r.tiers & TIER_S3 == 0 || r.tiers & tier == 0 {
                continue;
            }
            batch.remove(meta::candidate_key(tier, r.last_access, id));
            r.tiers &= !tier;
            if tier == TIER_LOCAL {
                totals.evicted_chunks += 1;
                totals.evicted_bytes += u64::from(r.stored_len);
            } else {
                totals.nas_chunks = totals.nas_chunks.saturating_sub(1);
                totals.nas_bytes = totals.nas_bytes.saturating_sub(u64::from(r.stored_len));
            }
            batch.insert(meta::chunk_key(id), meta::encode(&r));
            done.push((*id, r.stored_len));
        }
        batch.insert(meta::TOTALS, meta::encode(&totals));
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(done)
    }
}
