//! Recompression while idle: once a local or NAS tier's chunk count has not changed
//! for `[gc] recompress_idle_secs`, its segments are rewritten at the dense zstd level
//! a segment at a time ([`fvfs_cas::ChunkStore::recompress`]), until none is left or
//! a write comes, each round a [`Recompress`] job of the store (listed, its outcome
//! recorded); a tier with nothing left gets no job until its chunk count moves. Ingest stays at the fast level; the space comes back later.
//!
//! Once the local tier has nothing left, the S3 tier follows its blocks (issue 47:
//! `S3Store::follow_blocks`): each local block whose members S3 holds as frames is
//! uploaded whole, a [`Follow`] job a round, from where the last round stopped, until
//! every block was looked at (then again once the local chunk count moves). A round
//! that uploaded something then compacts the packs as gc does (`[gc] compact_below`):
//! those it left with nothing live are deleted, those mostly superseded rewritten, so
//! the bucket does not keep both copies until the next collection; unless versions
//! dropped by a collection are still to be noted in S3's log (gc's order: the log
//! learns of them before any pack goes).
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

use fvfs_api::reports::{Compaction, Followed};
use fvfs_cas::{BlockPlace, IdFilter, Recompressed};
use fvfs_engine::jobs::{Job, Jobs};
use fvfs_fsck::Progress;
use fvfs_manifest::Repo;
use fvfs_tiering::s3::{Packs, FOLLOW_BATCH};
use fvfs_tiering::{Publishing, S3Store, Tier, TierId};

use super::State;

/// How often the tiers are looked at.
const EVERY: Duration = Duration::from_secs(5);
/// Work per round, at most (plus the segment in progress).
const ROUND: Duration = Duration::from_secs(10);

/// A pass over the local blocks that found some whose members S3 does not hold yet
/// (replication is behind) is made again after this long.
const FOLLOW_AGAIN: Duration = Duration::from_secs(60);

/// HEAD's chunks (a filter) and the version they are of: computed when a round
/// starts on a HEAD that moved (one walk of its tree), so each tier's rewrite packs
/// them apart from older versions' chunks (`fvfs_fsck::newest_chunks`).
#[derive(Default)]
struct Newest(tokio::sync::Mutex<Option<(u64, Arc<IdFilter>)>>);

impl Newest {
    async fn of(&self, repo: &Repo) -> Option<Arc<IdFilter>> {
        let head = repo.head_number().ok()??;
        let mut kept = self.0.lock().await;
        if let Some((at, filter)) = &*kept {
            if *at == head {
                return Some(filter.clone());
            }
        }
        let filter = Arc::new(fvfs_fsck::newest_chunks(repo).await?);
        *kept = Some((head, filter.clone()));
        Some(filter)
    }
}

/// Per tier: the chunk count last seen, since when it has not changed, and whether
/// recompression finished at that count (nothing left: no job until it changes).
type Seen = Mutex<HashMap<&'static str, (u64, Instant, bool)>>;

/// Where the S3 tier's follow of the local blocks goes on from; the local chunk count
/// at which a pass looked at every block and uploaded every one it could (nothing to
/// do until that count moves); blocks of this pass waiting for replication, and when a
/// pass that left some may start again.
#[derive(Default)]
struct Following {
    next: Option<BlockPlace>,
    finished_at: Option<u64>,
    waiting: u64,
    again_at: Option<Instant>,
}

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
    let s3 = state.tier_set.s3().cloned();
    let repo = state.repo.clone();
    let compact_below = state.gc.compact_below;
    let following: Arc<Mutex<Following>> = Arc::default();
    let newest: Arc<Newest> = Arc::default();
    state.workers.every("recompress", EVERY, move || {
        let (tiers, seen, jobs) = (tiers.clone(), seen.clone(), jobs.clone());
        let (s3, repo, following) = (s3.clone(), repo.clone(), following.clone());
        let newest = newest.clone();
        async move {
            // Every tier's round first: a follow that fails (S3 away) holds up no
            // tier's recompression.
            let mut local_done = None;
            for t in &tiers {
                let finished = round(&jobs, t, idle, &seen, (&repo, &newest)).await?;
                if t.id == TierId::Local {
                    local_done = finished.map(|count| (t.clone(), count));
                }
            }
            if let (Some(s3), Some((local, count))) = (s3, local_done) {
                let job = Follow {
                    local,
                    s3,
                    repo,
                    chunks: count,
                    after: None,
                    compact_below,
                };
                follow(&jobs, job, &following).await?;
            }
            Ok(())
        }
    });
}

/// `job`, if the local tier (idle, its rewrite finished at the job's chunk count) has
/// blocks the S3 tier has not looked at since that count, from where the last stopped.
async fn follow(jobs: &Jobs, mut job: Follow, following: &Mutex<Following>) -> Result<(), String> {
    let count = job.chunks;
    {
        let f = lock(following);
        if f.finished_at == Some(count) || f.again_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        job.after = f.next;
    }
    let done = jobs.run(job).await.ok_or("the daemon is stopping")??;
    let mut f = lock(following);
    f.next = done.next;
    f.waiting += done.followed.waiting;
    f.again_at = None;
    if f.next.is_none() {
        match f.waiting {
            0 => f.finished_at = Some(count),
            _ => f.again_at = Some(Instant::now() + FOLLOW_AGAIN),
        }
        f.waiting = 0;
    }
    Ok(())
}

/// A [`Recompress`] job on `tier` if it has been idle for `idle` and has work left;
/// the tier's chunk count if it is idle and has none left (now or already).
async fn round(
    jobs: &Jobs,
    tier: &Tier,
    idle: Duration,
    seen: &Seen,
    (repo, newest): (&Repo, &Newest),
) -> Result<Option<u64>, String> {
    let name = tier.id.name();
    // An unavailable tier (a NAS share not mounted) is not idle: it is skipped
    // quietly (its replication worker reports it) and waited for again once back.
    let Some(now) = chunks(tier).await else {
        lock(seen).remove(name);
        return Ok(None);
    };
    {
        let mut seen = lock(seen);
        let (count, since, finished) = seen.entry(name).or_insert((now, Instant::now(), false));
        if *count != now {
            (*count, *since, *finished) = (now, Instant::now(), false);
        }
        if since.elapsed() < idle {
            return Ok(None);
        }
        if *finished {
            return Ok(Some(now));
        }
    }
    let job = Recompress {
        tier: tier.clone(),
        chunks: now,
        newest: newest.of(repo).await,
    };
    let done = jobs.run(job).await.ok_or("the daemon is stopping")??;
    if done.remaining == 0 {
        if let Some(entry) = lock(seen).get_mut(name) {
            entry.2 = entry.0 == now;
            if entry.2 {
                return Ok(Some(now));
            }
        }
    }
    Ok(None)
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
    /// HEAD's chunks, packed apart from the others.
    newest: Option<Arc<IdFilter>>,
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
            let r = self
                .tier
                .store
                .recompress(1, 1, self.newest.as_deref())
                .await;
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

/// One round of the S3 tier following the local blocks: [`FOLLOW_BATCH`] blocks at a
/// time from `after`, for at most [`ROUND`], until every block was looked at or the
/// local chunk count moves from `chunks`; then the packs left with nothing live are
/// deleted, when S3's log knows of every dropped version.
pub struct Follow {
    local: Tier,
    s3: Arc<S3Store>,
    repo: Arc<Repo>,
    chunks: u64,
    after: Option<BlockPlace>,
    /// `[gc] compact_below`.
    compact_below: f64,
}

/// What a [`Follow`] round did.
#[derive(Clone, Debug, Default)]
pub struct FollowReport {
    pub followed: Followed,
    /// Where the next round goes on from (`None`: every local block looked at).
    next: Option<BlockPlace>,
    /// Packs deleted afterwards (nothing live left in them), rewritten (mostly
    /// superseded), and the bytes given back.
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    pub bytes_freed: u64,
}

impl Job for Follow {
    const KIND: &'static str = "s3 follows local blocks";
    type Report = FollowReport;
    type Error = String;

    async fn run(&self, _: &Jobs, progress: &Arc<Progress>) -> Result<FollowReport, String> {
        progress.phase("s3", 0);
        let start = Instant::now();
        let mut report = FollowReport {
            next: self.after,
            ..FollowReport::default()
        };
        let failed = |e: fvfs_cas::StoreError| format!("S3 following the local blocks: {e}");
        loop {
            let local = self.local.store.as_ref();
            let is_node = fvfs_fsck::gc::is_node(&self.repo);
            let (f, next) = self
                .s3
                .follow_blocks(local, report.next, FOLLOW_BATCH, &is_node)
                .await
                .map_err(failed)?;
            progress.add(f.looked, f.bytes);
            report.followed.add(&f);
            report.next = next;
            let moved = chunks(&self.local).await != Some(self.chunks);
            if next.is_none() || start.elapsed() >= ROUND || moved {
                break;
            }
        }
        let f = report.followed;
        if f.blocks > 0 {
            // Not beside a gc (its sweep forgets locations before S3's log learns of
            // the versions dropped).
            let _collecting = Packs::collecting(self.s3.as_ref()).await;
            let unpublished = self.repo.dropped_unpublished().map_err(|e| e.to_string())?;
            if unpublished.is_empty() {
                let is_node = fvfs_fsck::gc::is_node(&self.repo);
                let c: Compaction = Packs::compact(
                    self.s3.as_ref(),
                    self.compact_below,
                    false,
                    &is_node,
                    Some(self.local.store.as_ref()),
                )
                .await
                .map_err(failed)?;
                report.packs_deleted = c.packs_deleted;
                report.packs_rewritten = c.packs_rewritten;
                report.bytes_freed = c.bytes_freed;
            }
            tracing::info!(
                blocks = f.blocks,
                chunks = f.chunks,
                bytes = f.bytes,
                packs_deleted = report.packs_deleted,
                "S3 follows the local blocks"
            );
        }
        Ok(report)
    }

    fn outcome(&self, r: &FollowReport) -> (bool, String) {
        let summary = format!(
            "s3 tier: {} local blocks looked at, {} uploaded ({} chunks, {} bytes), {} waiting for replication; packs: {} deleted, {} rewritten ({} bytes freed)",
            r.followed.looked,
            r.followed.blocks,
            r.followed.chunks,
            r.followed.bytes,
            r.followed.waiting,
            r.packs_deleted,
            r.packs_rewritten,
            r.bytes_freed
        );
        (true, summary)
    }
}
