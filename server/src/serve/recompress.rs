//! Recompression while idle: once a local or NAS tier's chunk count has not changed
//! for `[gc] recompress_idle_secs`, its segments are rewritten at the dense zstd level
//! a segment at a time ([`fvfs_cas::ChunkStore::recompress`]), until none is left or
//! a write comes, each round a [`Recompress`] job of the store (listed, its outcome
//! recorded); a tier with nothing left gets no job until its chunk count moves. Ingest stays at the fast level; the space comes back later.
//!
//! # Invariants
//! - A round stops between segments once it ran for [`ROUND`] or the tier's chunk
//!   count changed, so writes share the machine with at most one segment's work (one
//!   core, up to about 20 s for 64 MB of text; writes never wait on it: it holds the
//!   store's sync lock only to switch locations). A shutdown waits for the round in
//!   progress up to the workers' limit; a segment cut short there (by the process
//!   ending) is left as a crash leaves it, which the pack store recovers from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fvfs_cas::Recompressed;
use fvfs_engine::jobs::{Job, Jobs};
use fvfs_fsck::Progress;
use fvfs_tiering::{Tier, TierId};

use super::State;

/// How often the tiers are looked at.
const EVERY: Duration = Duration::from_secs(5);
/// Work per round, at most (plus the segment in progress).
const ROUND: Duration = Duration::from_secs(10);

/// Per tier: the chunk count last seen, since when it has not changed, and whether
/// recompression finished at that count (nothing left: no job until it changes).
type Seen = Mutex<HashMap<&'static str, (u64, Instant, bool)>>;

/// Starts the loop, unless `idle` is zero (recompression turned off).
pub fn start(state: &Arc<State>, idle: Duration) {
    if idle.is_zero() {
        return;
    }
    let tiers: Vec<Tier> = state
        .tier_set
        .all()
        .iter()
        .filter(|t| t.id != TierId::S3)
        .cloned()
        .collect();
    let seen: Arc<Seen> = Arc::default();
    let jobs = state.jobs.clone();
    state.workers.every("recompress", EVERY, move || {
        let (tiers, seen, jobs) = (tiers.clone(), seen.clone(), jobs.clone());
        async move {
            for t in &tiers {
                round(&jobs, t, idle, &seen).await?;
            }
            Ok(())
        }
    });
}

/// A [`Recompress`] job on `tier` if it has been idle for `idle` and has work left.
async fn round(jobs: &Jobs, tier: &Tier, idle: Duration, seen: &Seen) -> Result<(), String> {
    let name = tier.id.name();
    // An unavailable tier (a NAS share not mounted) is not idle: it is skipped
    // quietly (its replication worker reports it) and waited for again once back.
    let Some(now) = chunks(tier).await else {
        lock(seen).remove(name);
        return Ok(());
    };
    {
        let mut seen = lock(seen);
        let (count, since, finished) = seen.entry(name).or_insert((now, Instant::now(), false));
        if *count != now {
            (*count, *since, *finished) = (now, Instant::now(), false);
        }
        if *finished || since.elapsed() < idle {
            return Ok(());
        }
    }
    let job = Recompress {
        tier: tier.clone(),
        chunks: now,
    };
    let done = jobs.run(job).await.ok_or("the daemon is stopping")??;
    if done.remaining == 0 {
        if let Some(entry) = lock(seen).get_mut(name) {
            entry.2 = entry.0 == now;
        }
    }
    Ok(())
}

/// The tier's chunk count, if it answers.
async fn chunks(tier: &Tier) -> Option<u64> {
    tier.store.usage().await.ok().map(|u| u.chunks)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One round of recompression on an idle tier: segments rewritten one at a time for
/// at most [`ROUND`], until none is left or the tier's chunk count moves from
/// `chunks` (a write came).
pub struct Recompress {
    tier: Tier,
    chunks: u64,
}

impl Job for Recompress {
    const KIND: &'static str = "recompression";
    type Report = Recompressed;
    type Error = String;

    async fn run(&self, _: &Jobs, progress: &Arc<Progress>) -> Result<Recompressed, String> {
        let name = self.tier.id.name();
        progress.phase(name, 0);
        let start = Instant::now();
        let mut done = Recompressed::default();
        loop {
            // One thread: writes that come meanwhile find a core free.
            let r = self.tier.store.recompress(1, 1).await;
            let r = r.map_err(|e| format!("recompressing the {name} tier: {e}"))?;
            progress.add(r.rewritten + r.kept, r.before_bytes);
            done.add(r);
            let moved = chunks(&self.tier).await != Some(self.chunks);
            if done.remaining == 0 || start.elapsed() >= ROUND || moved {
                break;
            }
        }
        if done.rewritten + done.kept > 0 {
            tracing::info!(
                tier = name,
                rewritten = done.rewritten,
                kept = done.kept,
                before = done.before_bytes,
                after = done.after_bytes,
                left = done.remaining,
                "segments recompressed"
            );
        }
        Ok(done)
    }

    fn outcome(&self, d: &Recompressed) -> (bool, String) {
        let summary = format!(
            "{} tier: {} segments rewritten ({} -> {} bytes), {} kept, {} left",
            self.tier.id.name(),
            d.rewritten,
            d.before_bytes,
            d.after_bytes,
            d.kept,
            d.remaining
        );
        (true, summary)
    }
}
