//! The replication queue: chunks waiting to be copied to a colder tier, and which
//! tiers were initialised.
//!
//! # Invariants
//! - A chunk is queued for every replica tier in the same batch that records it
//!   ([`TierIndex`](super::TierIndex), told by the manifest), so no recorded chunk is
//!   ever forgotten, crash or not.
//! - A tier's bit is set, and the chunk unqueued, in one durable batch, and only after
//!   the tier confirmed the copy (its own sync returned).

use fvfs_cas::ChunkId;
use fvfs_manifest::kv::Batch;
use fvfs_manifest::meta::{decode, encode, TIER_LOCAL};
use fvfs_manifest::{now_secs, CopyMark, Repo, Result, Space};
use serde::{Deserialize, Serialize};

use super::evict::{add_candidates, Eviction};
use super::{bad, CANDIDATES, INITIALISED, QUEUE};

/// A chunk waiting to reach a colder tier: written in the same batch as the chunk's
/// record, removed in the same batch that sets the tier's bit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// When it was queued (seconds since the Unix epoch).
    pub since: i64,
    pub attempts: u32,
    /// Not before this time (exponential backoff after failures).
    pub next_try: i64,
    /// The last failure, if any.
    pub error: String,
}

impl QueueEntry {
    /// Queued now, due at once.
    pub fn new() -> Self {
        Self {
            since: now_secs(),
            attempts: 0,
            next_try: 0,
            error: String::new(),
        }
    }
}

impl Default for QueueEntry {
    fn default() -> Self {
        Self::new()
    }
}

/// What waits for one tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub pending: u64,
    /// Seconds since the oldest waiting chunk was queued.
    pub oldest_age_secs: Option<i64>,
    pub last_error: Option<String>,
}

pub(super) fn key(tier: u8, id: &ChunkId) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(tier);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn enqueue(space: &Space, batch: &mut Batch, tier: u8, id: &ChunkId, e: &QueueEntry) {
    space.insert(batch, &key(tier, id), encode(e));
}

fn decode_entry(v: &[u8]) -> Result<QueueEntry> {
    decode(v).map_err(|e| bad("queue", e))
}

fn queue(repo: &Repo, tier: u8) -> impl Iterator<Item = Result<(ChunkId, QueueEntry)>> {
    repo.space(QUEUE).scan(&[tier]).map(|r| {
        let (k, v) = r?;
        let id = ChunkId::from_slice(&k[1..]).ok_or_else(|| bad("queue", "bad id"))?;
        Ok((id, decode_entry(&v)?))
    })
}

/// The replication queue of a store.
#[async_trait::async_trait]
pub trait Replication {
    /// Up to `limit` chunks waiting for `tier` whose retry time has come, leaving out
    /// those in `skip` (copied already, waiting for the tier's sync).
    fn replication_due_except(
        &self,
        tier: u8,
        limit: usize,
        skip: &std::collections::HashSet<ChunkId>,
    ) -> Result<Vec<ChunkId>>;
    /// Those of `ids` still waiting for `tier` with their retry time come (a worker
    /// copying from a list it took earlier skips what was copied, collected or failed
    /// since).
    fn replication_still_due(&self, tier: u8, ids: &[ChunkId]) -> Result<Vec<ChunkId>>;
    /// `tier` holds `ids` durably (its sync returned, or it said so on its own), copied by the batch that
    /// took `mark`: set their bits and unqueue them in one durable batch. Chunks a
    /// collection buried since `mark` stay queued: the copy confirmed may be the one it
    /// deleted, and a record made since names a chunk stored again.
    async fn replication_done(&self, tier: u8, ids: &[ChunkId], mark: &CopyMark) -> Result<()>;
    /// fsck found a durable copy of `id` on `tier` that its bitmask does not claim:
    /// the bit is set (and the chunk unqueued for that tier).
    async fn claim_copy(&self, tier: u8, id: &ChunkId, mark: &CopyMark) -> Result<()>;
    /// Copying `ids` to `tier` failed: note why, and retry after `backoff_secs`.
    async fn replication_failed(
        &self,
        tier: u8,
        ids: &[ChunkId],
        error: &str,
        backoff_secs: i64,
    ) -> Result<()>;
    /// What waits for `tier`. Walks its queue.
    fn replication_status(&self, tier: u8) -> Result<QueueStatus>;
    /// Whether nothing waits for `tier` (one look at the queue, not a count).
    fn replication_drained(&self, tier: u8) -> Result<bool>;
    /// Whether `tier` was initialised before (a store made there once).
    fn tier_initialised(&self, tier: u8) -> Result<bool>;
    /// Marks `tier` initialised and queues for it every chunk recorded so far that it
    /// lacks (a tier added to an existing store receives all of it), in bounded batches
    /// with the mark last, so a crash in between redoes the backfill at the next start.
    async fn mark_tier_initialised(&self, tier: u8) -> Result<()>;
    /// Makes every chunk waiting for `tier` due now (a flush asks for a retry now,
    /// whatever the backoff said).
    async fn replication_retry_now(&self, tier: u8) -> Result<()>;
    /// When the oldest chunk still waiting for `tier` was queued (seconds since the
    /// Unix epoch), if any waits.
    fn replication_oldest(&self, tier: u8) -> Result<Option<i64>>;
}

#[async_trait::async_trait]
impl Replication for Repo {
    fn replication_due_except(
        &self,
        tier: u8,
        limit: usize,
        skip: &std::collections::HashSet<ChunkId>,
    ) -> Result<Vec<ChunkId>> {
        let now = now_secs();
        let mut out = Vec::new();
        for item in queue(self, tier) {
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

    fn replication_still_due(&self, tier: u8, ids: &[ChunkId]) -> Result<Vec<ChunkId>> {
        let now = now_secs();
        let space = self.space(QUEUE);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(v) = space.get(&key(tier, id))? else {
                continue;
            };
            if decode_entry(&v)?.next_try <= now {
                out.push(*id);
            }
        }
        Ok(out)
    }

    async fn replication_done(&self, tier: u8, ids: &[ChunkId], mark: &CopyMark) -> Result<()> {
        let (queue, candidates) = (self.space(QUEUE), self.space(CANDIDATES));
        let mut change = self.change_records().await?;
        for id in ids {
            if mark.buried_since(id) {
                continue;
            }
            if let Some(mut r) = change.record(id)? {
                if r.tiers & tier == 0 {
                    change.totals.count_on(tier, r.stored_len);
                }
                r.tiers |= tier;
                change.set(id, &r);
                add_candidates(&candidates, &mut change.batch, id, &r);
            }
            queue.remove(&mut change.batch, &key(tier, id));
        }
        change.commit(true)
    }

    async fn claim_copy(&self, tier: u8, id: &ChunkId, mark: &CopyMark) -> Result<()> {
        if tier == TIER_LOCAL {
            self.note_reads(&[], &[*id]).await
        } else {
            self.replication_done(tier, &[*id], mark).await
        }
    }

    async fn replication_failed(
        &self,
        tier: u8,
        ids: &[ChunkId],
        error: &str,
        backoff_secs: i64,
    ) -> Result<()> {
        let space = self.space(QUEUE);
        // One at a time with the changes that unqueue.
        let mut change = self.change_records().await?;
        for id in ids {
            let Some(v) = space.get(&key(tier, id))? else {
                continue;
            };
            let mut e = decode_entry(&v)?;
            e.attempts += 1;
            e.next_try = now_secs() + backoff_secs;
            e.error = error.chars().take(300).collect();
            enqueue(&space, &mut change.batch, tier, id, &e);
        }
        change.commit(true)
    }

    fn replication_status(&self, tier: u8) -> Result<QueueStatus> {
        let mut s = QueueStatus::default();
        let (now, mut oldest) = (now_secs(), i64::MAX);
        for item in queue(self, tier) {
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

    fn replication_drained(&self, tier: u8) -> Result<bool> {
        queue(self, tier)
            .next()
            .transpose()
            .map(|first| first.is_none())
    }

    fn tier_initialised(&self, tier: u8) -> Result<bool> {
        self.space(INITIALISED).contains(&[tier])
    }

    async fn mark_tier_initialised(&self, tier: u8) -> Result<()> {
        let space = self.space(QUEUE);
        let queued = QueueEntry::new();
        let mut change = self.change_records().await?;
        let mut after = None;
        loop {
            let records = self.chunk_records_after(after.as_ref(), 4096)?;
            let Some((last, _)) = records.last() else {
                break;
            };
            after = Some(*last);
            for (id, r) in &records {
                if r.tiers & tier == 0 {
                    enqueue(&space, &mut change.batch, tier, id, &queued);
                }
            }
            change.apply_part()?;
        }
        self.space(INITIALISED)
            .insert(&mut change.batch, &[tier], vec![1]);
        change.commit(true)
    }

    async fn replication_retry_now(&self, tier: u8) -> Result<()> {
        let space = self.space(QUEUE);
        let mut change = self.change_records().await?;
        for item in queue(self, tier) {
            let (id, mut e) = item?;
            if e.next_try > 0 {
                e.next_try = 0;
                enqueue(&space, &mut change.batch, tier, &id, &e);
            }
        }
        change.commit(false)
    }

    fn replication_oldest(&self, tier: u8) -> Result<Option<i64>> {
        let mut oldest = None;
        for item in queue(self, tier) {
            let (_, e) = item?;
            oldest = Some(oldest.map_or(e.since, |o: i64| o.min(e.since)));
        }
        Ok(oldest)
    }
}
