//! What eviction keeps in the metadata database: per tier, the chunks it may drop,
//! ordered by last access, and the access statistics (in the chunk records) that
//! score them.
//!
//! # Invariants
//! - **Only S3-backed chunks are candidates.** A chunk enters a tier's candidate list
//!   in the batch that gives it its S3 bit (or the tier's bit, if S3 came first), and
//!   [`Eviction::evicted`] re-checks the S3 bit before clearing a tier's bit. So no
//!   chunk without a confirmed S3 copy is ever evicted, whatever the order of events.
//! - **Bits before bytes.** A tier's bit is cleared (durably) before the chunk's file is
//!   deleted; a crash in between leaves an extra copy, never a bit claiming a missing one.
//! - Candidate keys carry the record's `last_access`, and are moved whenever it changes,
//!   so walking a tier's candidates from the start visits the least recently used
//!   first, at a cost in proportion to what is visited.

use std::collections::HashSet;

use fvfs_cas::ChunkId;
use fvfs_manifest::kv::Batch;
use fvfs_manifest::meta::{TIER_LOCAL, TIER_S3};
use fvfs_manifest::{now_secs, ChunkRecord, Repo, Result, Space};

use super::{bad, CANDIDATES, EVICTING};

fn key(tier: u8, last_access: i64, id: &ChunkId) -> Vec<u8> {
    let mut k = Vec::with_capacity(41);
    k.push(tier);
    k.extend_from_slice(&(last_access.max(0) as u64).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// Adds `r`'s candidate keys (for every evicting tier holding it) if S3 holds it.
pub(super) fn add_candidates(space: &Space, batch: &mut Batch, id: &ChunkId, r: &ChunkRecord) {
    if r.tiers & TIER_S3 == 0 {
        return;
    }
    for t in EVICTING.into_iter().filter(|t| r.tiers & t != 0) {
        space.insert(batch, &key(t, r.last_access, id), Vec::new());
    }
}

pub(super) fn remove_candidates(space: &Space, batch: &mut Batch, id: &ChunkId, r: &ChunkRecord) {
    for t in EVICTING {
        space.remove(batch, &key(t, r.last_access, id));
    }
}

/// Accesses in the last 30 days, approximately: the stored count decays exponentially
/// with a 30-day time constant since the last access.
pub fn recent_accesses(r: &ChunkRecord, now: i64) -> f64 {
    let age = (now - r.last_access).max(0) as f64;
    f64::from(r.accesses) * (-age / (30.0 * 86_400.0)).exp()
}

/// Eviction's records of a store.
#[async_trait::async_trait]
pub trait Eviction {
    /// Notes reads of chunks (`count` each) at the present time, and chunks read back
    /// into the local tier from a colder one (`promoted`, after the local store synced
    /// them: their local bit is set again), in one pass over their records, applied
    /// in parts of about 4,096 operations (each part whole chunks and the totals), so
    /// that a round after a cold walk of a large tree stays small in memory. Flushed
    /// durably when any was promoted; access statistics alone may lose their last
    /// seconds in a crash.
    async fn note_reads(&self, reads: &[(ChunkId, u32)], promoted: &[ChunkId]) -> Result<()>;
    /// Up to `limit` eviction candidates of `tier`, least recently used first.
    fn eviction_candidates(&self, tier: u8, limit: usize) -> Result<Vec<(ChunkId, ChunkRecord)>>;
    /// Clears `tier`'s bit of `ids`, durably, for those S3 still holds; returns those
    /// (the caller deletes their copies after this returns).
    async fn evicted(&self, tier: u8, ids: &[ChunkId]) -> Result<Vec<(ChunkId, u32)>>;
}

#[async_trait::async_trait]
impl Eviction for Repo {
    async fn note_reads(&self, reads: &[(ChunkId, u32)], promoted: &[ChunkId]) -> Result<()> {
        let space = self.space(CANDIDATES);
        let mut change = self.change_records().await?;
        let now = now_secs();
        let promoted_set: HashSet<&ChunkId> = promoted.iter().collect();
        let read: HashSet<&ChunkId> = reads.iter().map(|(id, _)| id).collect();
        let unread = promoted
            .iter()
            .filter(|id| !read.contains(id))
            .map(|id| (*id, 0));
        for (id, count) in reads.iter().copied().chain(unread) {
            let Some(mut r) = change.record(&id)? else {
                continue;
            };
            let back = promoted_set.contains(&id) && r.tiers & TIER_LOCAL == 0;
            if count == 0 && !back {
                continue;
            }
            remove_candidates(&space, &mut change.batch, &id, &r);
            if count > 0 {
                r.accesses = (recent_accesses(&r, now) + f64::from(count)) as f32;
                r.last_access = now;
            }
            if back {
                r.tiers |= TIER_LOCAL;
                let t = &mut change.totals;
                t.evicted_chunks = t.evicted_chunks.saturating_sub(1);
                t.evicted_bytes = t.evicted_bytes.saturating_sub(u64::from(r.stored_len));
            }
            add_candidates(&space, &mut change.batch, &id, &r);
            change.set(&id, &r);
            if change.batch.len() >= 4096 {
                change.apply_part()?;
            }
        }
        change.commit(!promoted.is_empty())
    }

    fn eviction_candidates(&self, tier: u8, limit: usize) -> Result<Vec<(ChunkId, ChunkRecord)>> {
        let mut out = Vec::new();
        for item in self.space(CANDIDATES).scan(&[tier]) {
            let (k, _) = item?;
            let id =
                ChunkId::from_slice(&k[9..]).ok_or_else(|| bad("eviction candidate", "bad id"))?;
            if let Some(r) = self.chunk_record(&id)? {
                out.push((id, r));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn evicted(&self, tier: u8, ids: &[ChunkId]) -> Result<Vec<(ChunkId, u32)>> {
        let space = self.space(CANDIDATES);
        let mut change = self.change_records().await?;
        let mut done = Vec::new();
        for id in ids {
            let Some(mut r) = change.record(id)? else {
                continue;
            };
            if r.tiers & TIER_S3 == 0 || r.tiers & tier == 0 {
                continue;
            }
            space.remove(&mut change.batch, &key(tier, r.last_access, id));
            r.tiers &= !tier;
            let t = &mut change.totals;
            if tier == TIER_LOCAL {
                t.evicted_chunks += 1;
                t.evicted_bytes += u64::from(r.stored_len);
            } else {
                t.nas_chunks = t.nas_chunks.saturating_sub(1);
                t.nas_bytes = t.nas_bytes.saturating_sub(u64::from(r.stored_len));
            }
            change.set(id, &r);
            done.push((*id, r.stored_len));
        }
        change.commit(true)?;
        Ok(done)
    }
}
