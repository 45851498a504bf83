//! The replication queue: chunks waiting to be copied to a colder tier.
//!
//! # Invariants
//! - A chunk is queued for every replica tier in the same batch that records it
//!   ([`Repo::persist`](super::Repo)), so no recorded chunk is ever forgotten, crash or not.
//! - A tier's bit is set, and the chunk unqueued, in one durable batch, and only after
//!   the tier confirmed the copy (its own sync returned).

use fvfs_cas::ChunkId;

use super::gc::CopyMark;
use super::{now, Repo};
use crate::error::{ManifestError, Result};
use crate::kv::Batch;
use crate::meta::{self, QueueEntry, QueueStatus, TIER_LOCAL, TIER_NAS, TIER_S3};

/// The replication queue (see `meta::QueueEntry`).
impl Repo {
    /// Queues every chunk recorded from now on for the tiers in `mask` (`TIER_*` bits).
    pub fn set_replicas(&self, mask: u8) {
        self.replicas.store(
            mask & (TIER_NAS | TIER_S3),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn queue(&self, tier: u8) -> impl Iterator<Item = Result<(ChunkId, QueueEntry)>> + '_ {
        self.kv
            .scan_prefix(&[meta::QUEUE_PREFIX, tier], false)
            .map(|r| {
                let (k, v) = r?;
                let id = ChunkId::from_slice(&k[2..]).ok_or_else(|| ManifestError::BadRecord {
                    key: "queue".into(),
                    reason: "bad id".into(),
                })?;
                let e = meta::decode(&v).map_err(|e| ManifestError::BadRecord {
                    key: "queue".into(),
                    reason: e.to_string(),
                })?;
                Ok((id, e))
            })
    }

    /// Up to `limit` chunks waiting for `tier` whose retry time has come, leaving out
    /// those in `skip` (copied already, waiting for the tier's sync).
    pub fn replication_due_except(
        &self,
        tier: u8,
        limit: usize,
        skip: &std::collections::HashSet<ChunkId>,
    ) -> Result<Vec<ChunkId>> {
        let now = now();
        let mut out = Vec::new();
        for item in self.queue(tier) {
            let (id, e) = item?;
            if e.next_try <= now && !skip.contains(&id) {
                out.push(id);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Those of `ids` still waiting for `tier` with their retry time come (a worker
    /// copying from a list it took earlier skips what was copied, collected or failed
    /// since).
    pub fn replication_still_due(&self, tier: u8, ids: &[ChunkId]) -> Result<Vec<ChunkId>> {
        let now = now();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(v) = self.kv.get(&meta::queue_key(tier, id))? else {
                continue;
            };
            let e: QueueEntry = meta::decode(&v).map_err(|e| ManifestError::BadRecord {
                key: "queue".into(),
                reason: e.to_string(),
            })?;
            if e.next_try <= now {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// `tier` confirmed holding `ids` (after its own sync), copied by the batch that
    /// took `mark`: set their bits and unqueue them in one durable batch. Chunks a
    /// collection buried since `mark` stay queued: the copy confirmed may be the one it
    /// deleted, and a record made since names a chunk stored again.
    pub async fn replication_done(&self, tier: u8, ids: &[ChunkId], mark: &CopyMark) -> Result<()> {
        let _one_at_a_time = self.persisting.lock().await;
        let mut batch = Batch::default();
        let mut totals = self.totals()?;
        for id in ids {
            if mark.buried_since(id) {
                continue;
            }
            if let Some(mut r) = self.chunk_record(id)? {
                if r.tiers & tier == 0 {
                    totals.count_on(tier, r.stored_len);
                }
                r.tiers |= tier;
                batch.insert(meta::chunk_key(id), meta::encode(&r));
                super::evict::add_candidates(&mut batch, id, &r);
            }
            batch.remove(meta::queue_key(tier, id));
        }
        batch.insert(meta::TOTALS, meta::encode(&totals));
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }

    /// fsck found a durable copy of `id` on `tier` that its bitmask does not claim:
    /// the bit is set (and the chunk unqueued for that tier).
    pub async fn claim_copy(&self, tier: u8, id: &ChunkId, mark: &CopyMark) -> Result<()> {
        if tier == TIER_LOCAL {
            self.note_promoted(&[*id]).await
        } else {
            self.replication_done(tier, &[*id], mark).await
        }
    }

    /// Copying `ids` to `tier` failed: note why, and retry after `backoff_secs`.
    pub async fn replication_failed(
        &self,
        tier: u8,
        ids: &[ChunkId],
        error: &str,
        backoff_secs: i64,
    ) -> Result<()> {
        let _one_at_a_time = self.persisting.lock().await;
        let mut batch = Batch::default();
        for id in ids {
            let key = meta::queue_key(tier, id);
            let Some(v) = self.kv.get(&key)? else {
                continue;
            };
            let mut e: QueueEntry = meta::decode(&v).map_err(|e| ManifestError::BadRecord {
                key: "queue".into(),
                reason: e.to_string(),
            })?;
            e.attempts += 1;
            e.next_try = now() + backoff_secs;
            e.error = error.chars().take(300).collect();
            batch.insert(key, meta::encode(&e));
        }
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }

    /// What waits for `tier`. Walks its queue.
    pub fn replication_status(&self, tier: u8) -> Result<QueueStatus> {
        let mut s = QueueStatus::default();
        let (now, mut oldest) = (now(), i64::MAX);
        for item in self.queue(tier) {
            let (_, e) = item?;
            s.pending += 1;
            oldest = oldest.min(e.since);
            if !e.error.is_empty() {
                s.last_error = Some(e.error);
            }
        }
        s.oldest_age_secs = (s.pending > 0).then(|| now - oldest);
        Ok(s)
    }

    /// Whether `tier` was initialised before (a store made there once).
    pub fn tier_initialised(&self, tier: u8) -> Result<bool> {
        Ok(self.kv.contains(&[meta::TIER_PREFIX, tier])?)
    }

    /// Marks `tier` initialised and queues for it every chunk recorded so far that it
    /// lacks (a tier added to an existing store receives all of it), in bounded batches
    /// with the mark last, so a crash in between redoes the backfill at the next start.
    pub async fn mark_tier_initialised(&self, tier: u8) -> Result<()> {
        let _one_at_a_time = self.persisting.lock().await;
        let queued = meta::encode(&QueueEntry {
            since: now(),
            attempts: 0,
            next_try: 0,
            error: String::new(),
        });
        let mut batch = Batch::default();
        for item in self.kv.scan_prefix(&[meta::CHUNK_PREFIX], false) {
            let (k, v) = item?;
            let r: meta::ChunkRecord = meta::decode(&v).map_err(|e| ManifestError::BadRecord {
                key: "chunk".into(),
                reason: e.to_string(),
            })?;
            let Some(id) = ChunkId::from_slice(&k[1..]) else {
                continue;
            };
            if r.tiers & tier == 0 {
                batch.insert(meta::queue_key(tier, &id), queued.clone());
            }
            if batch.len() >= 4096 {
                self.kv.apply(std::mem::take(&mut batch))?;
            }
        }
        batch.insert(vec![meta::TIER_PREFIX, tier], vec![1]);
        self.kv.apply(batch)?;
        self.kv.flush_durable()?;
        Ok(())
    }
}

impl Repo {
    /// Makes every chunk waiting for `tier` due now (a flush asks for a retry now,
    /// whatever the backoff said).
    pub async fn replication_retry_now(&self, tier: u8) -> Result<()> {
        let _one_at_a_time = self.persisting.lock().await;
        let mut batch = Batch::default();
        for item in self.queue(tier) {
            let (id, mut e) = item?;
            if e.next_try > 0 {
                e.next_try = 0;
                batch.insert(meta::queue_key(tier, &id), meta::encode(&e));
            }
        }
        if !batch.is_empty() {
            self.kv.apply(batch)?;
        }
        Ok(())
    }
}

impl Repo {
    /// When the oldest chunk still waiting for `tier` was queued (seconds since the
    /// Unix epoch), if any waits.
    pub fn replication_oldest(&self, tier: u8) -> Result<Option<i64>> {
        let mut oldest = None;
        for item in self.queue(tier) {
            let (_, e) = item?;
            oldest = Some(oldest.map_or(e.since, |o: i64| o.min(e.since)));
        }
        Ok(oldest)
    }
}
