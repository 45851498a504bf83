//! Recompression while idle: once a local or NAS tier's chunk count has not changed
//! for `[gc] recompress_idle_secs`, its segments are rewritten at the dense zstd level
//! a segment at a time ([`fvfs_cas::ChunkStore::recompress`]), until none is left or
//! a write comes. Ingest stays at the fast level; the space comes back later.
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

use fvfs_tiering::{Tier, TierId};

use super::State;

/// How often the tiers are looked at.
const EVERY: Duration = Duration::from_secs(5);
/// Work per round, at most (plus the segment in progress).
const ROUND: Duration = Duration::from_secs(10);

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
    // Per tier: the chunk count last seen and since when it has not changed.
    let seen: Arc<Mutex<HashMap<&'static str, (u64, Instant)>>> = Arc::default();
    state.workers.every("recompress", EVERY, move || {
        let (tiers, seen) = (tiers.clone(), seen.clone());
        async move {
            for t in &tiers {
                round(t, idle, &seen).await?;
            }
            Ok(())
        }
    });
}

async fn round(
    tier: &Tier,
    idle: Duration,
    seen: &Mutex<HashMap<&'static str, (u64, Instant)>>,
) -> Result<(), String> {
    let name = tier.id.name();
    // An unavailable tier (a NAS share not mounted) is not idle: it is skipped
    // quietly (its replication worker reports it) and waited for again once back.
    let chunks = || async { tier.store.usage().await.ok().map(|u| u.chunks) };
    let Some(now) = chunks().await else {
        seen.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        return Ok(());
    };
    {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = seen.entry(name).or_insert((now, Instant::now()));
        if *count != now {
            *count = now;
            *since = Instant::now();
        }
        if since.elapsed() < idle {
            return Ok(());
        }
    }
    let start = Instant::now();
    let mut done = fvfs_cas::Recompressed::default();
    loop {
        // One thread: writes that come meanwhile find a core free.
        let r = tier.store.recompress(1, 1).await;
        done.add(r.map_err(|e| format!("recompressing the {name} tier: {e}"))?);
        if done.remaining == 0 || start.elapsed() >= ROUND || chunks().await != Some(now) {
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
    Ok(())
}
