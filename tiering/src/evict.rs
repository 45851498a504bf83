//! Watermark eviction: when a tier holds more than its high watermark, drop its copies
//! of the lowest-scoring chunks until it is under the low watermark.
//!
//! score = recency_weight / seconds_since_access + frequency_weight x access_count_30d
//!
//! Only chunks whose S3 bit is set are candidates (the candidate lists in the metadata
//! database hold nothing else, and the S3 bit is checked again as bits are cleared); S3
//! is never evicted from. Candidates are visited least recently used first, in windows
//! of about twice the bytes still to free, and each window is evicted by score, so the
//! cost grows with what is evicted, not with the size of the store.
//!
//! Each run first records the reads and promotions the [`TieredStore`] saw since the
//! last (after syncing the local tier, so a promoted chunk's bit is set only once its
//! copy is durable).

use std::sync::Arc;

use fvfs_api::reports::Evicted;
use fvfs_cas::{ChunkId, ChunkStore};
use fvfs_manifest::Repo;

use crate::records::{recent_accesses, Eviction};

use crate::{TierId, TieredStore};

/// Candidates looked at per window at least.
const MIN_WINDOW: usize = 64;

/// Weights of the eviction score (`[eviction]`).
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    pub recency: f64,
    pub frequency: f64,
}

/// One evicting tier: which, its store and (high, low) watermarks in bytes.
pub struct EvictTier {
    pub id: TierId,
    pub store: Arc<dyn ChunkStore>,
    pub marks: (u64, u64),
}

pub struct Evictor {
    repo: Arc<Repo>,
    reads: Arc<TieredStore>,
    tiers: Vec<EvictTier>,
    weights: Weights,
    /// One run at a time.
    running: tokio::sync::Mutex<()>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Evictor {
    pub fn new(
        repo: Arc<Repo>,
        reads: Arc<TieredStore>,
        tiers: Vec<EvictTier>,
        weights: Weights,
    ) -> Self {
        Self {
            repo,
            reads,
            tiers,
            weights,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The evicting tiers and their watermarks.
    pub fn tiers(&self) -> &[EvictTier] {
        &self.tiers
    }

    fn held(&self, bit: u8) -> Result<u64, String> {
        Ok(self.repo.totals().map_err(err)?.held(bit).1)
    }

    /// Records reads and promotions seen since the last call.
    pub async fn record_reads(&self) -> Result<(), String> {
        self.reads.record_reads(&self.repo).await.map_err(err)
    }

    /// Records reads, then brings every tier over its high watermark under its low one.
    pub async fn run(&self) -> Result<Vec<Evicted>, String> {
        let _one = self.running.lock().await;
        self.record_reads().await?;
        let mut out = Vec::new();
        for tier in &self.tiers {
            out.push(self.evict(tier).await?);
        }
        Ok(out)
    }

    async fn evict(&self, tier: &EvictTier) -> Result<Evicted, String> {
        let before = self.held(tier.id.bit())?;
        let mut done = Evicted {
            tier: tier.id.name().to_owned(),
            before,
            after: before,
            ..Evicted::default()
        };
        let (high, low) = tier.marks;
        if before <= high {
            return Ok(done);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let score = |r: &fvfs_manifest::ChunkRecord| {
            let age = (now - r.last_access).max(1) as f64;
            self.weights.recency / age + self.weights.frequency * recent_accesses(r, now)
        };
        while done.after > low {
            let need = done.after - low;
            // A window of least recently used candidates worth about twice `need`.
            let mut window = Vec::new();
            let mut bytes = 0u64;
            let mut limit = MIN_WINDOW;
            while bytes < need.saturating_mul(2) {
                window = self
                    .repo
                    .eviction_candidates(tier.id.bit(), limit)
                    .map_err(err)?;
                bytes = window.iter().map(|(_, r)| u64::from(r.stored_len)).sum();
                if window.len() < limit {
                    break;
                }
                limit *= 2;
            }
            if window.is_empty() {
                tracing::warn!(
                    tier = tier.id.name(),
                    held = done.after,
                    low,
                    "over the watermark, but nothing more is in S3 yet to evict"
                );
                break;
            }
            window.sort_by(|a, b| score(&a.1).total_cmp(&score(&b.1)));
            let mut chosen: Vec<ChunkId> = Vec::new();
            let mut freed = 0u64;
            for (id, r) in &window {
                if freed >= need {
                    break;
                }
                chosen.push(*id);
                freed += u64::from(r.stored_len);
            }
            // Fenced until the copies are gone: fsck does not claim them meanwhile.
            let evicting = self.repo.evicting(&chosen);
            let cleared = self
                .repo
                .evicted(tier.id.bit(), &chosen)
                .await
                .map_err(err)?;
            for (id, _) in &cleared {
                tier.store.delete(id).await.map_err(err)?;
            }
            tier.store.sync().await.map_err(err)?;
            drop(evicting);
            done.chunks += cleared.len() as u64;
            done.bytes += cleared.iter().map(|(_, len)| u64::from(*len)).sum::<u64>();
            done.after = self.held(tier.id.bit())?;
            if cleared.is_empty() {
                break;
            }
        }
        tracing::info!(
            tier = tier.id.name(),
            chunks = done.chunks,
            bytes = done.bytes,
            "evicted"
        );
        Ok(done)
    }
}
