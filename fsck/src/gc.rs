//! Garbage collection: drop the versions the retention policy does not keep, mark every
//! chunk reachable from the kept ones, sweep the rest from every tier, and give back
//! S3 space by compacting packs.
//!
//! Writers go on meanwhile: the fence in `fvfs_manifest` (`repo/gc.rs`) keeps every
//! chunk a writer relies on, and the grace period keeps recent records (see there for
//! the invariant and its proof). The order of the steps is what makes the rest safe:
//! - nothing is deleted unless the mark walked every kept version without a broken
//!   node (a tree that cannot be read could hide live chunks);
//! - records go before copies, with tombstones, so an interrupted collection leaves
//!   extra copies, never a record naming a missing one, and the next run finishes;
//! - S3's log learns which versions were dropped before any pack is deleted or
//!   rewritten, so S3 alone never rebuilds a version whose chunks are gone.

use std::collections::HashSet;

use futures::StreamExt;
use fvfs_api::reports::{Freed, GcReport};
use fvfs_cas::{ChunkId, ChunkStore};
use fvfs_manifest::meta::TIER_S3;
use fvfs_manifest::{ChunkKind, Condemned, GcSession, ManifestError, Repo};
use fvfs_tiering::s3::Packs;
use fvfs_tiering::Publishing;

use crate::reach::reachable_set;
use crate::retention::Retention;
use crate::spill::{Sorted, Spill};
use crate::{newest_chunks, FsckError, Progress, Tier};

/// Chunk records looked at, and condemned, at once.
const PAGE: usize = 1024;
/// Copies deleted at once.
const CONCURRENCY: usize = 16;

/// What to collect.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub retention: Retention,
    /// Count, delete nothing.
    pub dry_run: bool,
    /// Records touched (written or read) this recently are kept.
    pub grace_secs: i64,
    /// Chunks promised to clients this recently are kept for their commits.
    pub in_flight_secs: i64,
    /// S3 packs whose live share is under this (0..1) are rewritten.
    pub compact_below: f64,
    /// Also recompress every local and NAS segment not dense yet
    /// ([`fvfs_cas::ChunkStore::recompress`]).
    pub recompress: bool,
    /// No daemon runs on the store: copies no record names (left by crashes) are
    /// deleted too. Never set while writers run, whose new chunks have no record yet.
    pub offline: bool,
}

/// Collects garbage in `repo`, whose tiers are `tiers` (warmest first), with the
/// reachable chunks beyond memory's budget in `spill`.
pub async fn collect(
    repo: &Repo,
    tiers: &[Tier],
    opts: &Options,
    spill: &Spill,
    progress: &Progress,
) -> Result<GcReport, FsckError> {
    let named: HashSet<u64> = repo.snapshots()?.into_iter().map(|(_, n)| n).collect();
    // No other compaction of the bucket from before the sweep forgets S3 locations
    // until this one's compaction is done.
    let s3 = tiers.iter().find_map(|t| t.s3.as_deref());
    let _collecting = match s3 {
        Some(s3) if !opts.dry_run => Some(s3.collecting().await),
        _ => None,
    };
    let session = {
        let lock = repo.lock().await;
        repo.gc_begin(
            &lock,
            |versions| opts.retention.keep(versions, &named),
            opts.grace_secs,
            opts.in_flight_secs,
            opts.dry_run,
        )
        .await?
    };
    let mut report = GcReport {
        dry_run: opts.dry_run,
        versions_kept: session.kept.len(),
        versions_dropped: session.dropped.clone(),
        ..GcReport::default()
    };
    for t in tiers {
        report.tiers.push(Freed {
            tier: t.name.to_owned(),
            ..Freed::default()
        });
    }
    // Leftovers of an interrupted run only where no writer runs (see
    // `finish_interrupted`: a daemon finishes them as it starts).
    if opts.offline && !opts.dry_run {
        let leftover = repo.gc_tombstones(&session)?;
        report.resumed = leftover.chunks.len() as u64;
        bury(repo, tiers, leftover, &mut report).await?;
    }
    progress.phase("marking what the kept versions reach", 0);
    let marked = mark(repo, &session, spill, progress).await?;
    report.reachable = marked.len();
    progress.phase("sweeping", repo.totals()?.chunks);
    sweep(repo, tiers, &session, &marked, opts, progress, &mut report).await?;
    if opts.offline {
        report.orphans = strays(repo, tiers, &marked, spill, opts.dry_run).await?;
    }
    forget_stray_locations(repo, opts.dry_run)?;
    if !opts.dry_run {
        progress.phase("compacting segments", 0);
        for t in tiers.iter().filter(|t| t.s3.is_none()) {
            match t.store.compact().await {
                Ok(c) => report.segments.push((t.name.to_owned(), c)),
                Err(e) => report
                    .failed
                    .push(format!("compacting the {} tier: {e}", t.name)),
            }
        }
        if opts.recompress {
            progress.phase("recompressing segments", 0);
            // HEAD's chunks are packed apart from older versions' (a hint: without
            // it, the rewrite packs in the order chunks were written).
            let newest = newest_chunks(repo).await;
            for t in tiers.iter().filter(|t| t.s3.is_none()) {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                match t.store.recompress(u64::MAX, threads, newest.as_ref()).await {
                    Ok(r) => report.recompressed.push((t.name.to_owned(), r)),
                    Err(e) => report
                        .failed
                        .push(format!("recompressing the {} tier: {e}", t.name)),
                }
            }
            // The bucket follows what the local tier packed (before its compaction
            // below, which then gives back the frames superseded).
            let local = tiers.iter().find(|t| t.name == "local");
            if let (Some(s3), Some(local)) = (s3, local) {
                progress.phase("uploading the local blocks to S3", 0);
                match s3.follow(local.store.as_ref(), &is_node(repo)).await {
                    Ok(f) => report.followed = Some(f),
                    Err(e) => report
                        .failed
                        .push(format!("S3 following the local blocks: {e}")),
                }
            }
        }
    }
    if let Some(s3) = s3 {
        progress.phase("compacting S3 packs", 0);
        let local = tiers.iter().find(|t| t.name == "local");
        let local = local.map(|t| t.store.as_ref());
        compact(repo, s3, local, opts, &mut report).await?;
    }
    drop(session);
    Ok(report)
}

/// Finishes the deletions of an interrupted collection (its tombstones); returns how
/// many. Only while no writer runs (a process opening the store, before its command):
/// a tombstoned chunk has no record, so a writer storing it again finds its old file
/// and relies on it while its own record is still pending, which no fence can see.
pub async fn finish_interrupted(repo: &Repo, tiers: &[Tier]) -> Result<u64, ManifestError> {
    if !repo.gc_interrupted()? {
        return Ok(0);
    }
    let session = {
        let lock = repo.lock().await;
        let everything =
            |versions: &[fvfs_manifest::Version]| versions.iter().map(|v| v.number).collect();
        repo.gc_begin(&lock, everything, 0, 0, true).await?
    };
    let leftover = repo.gc_tombstones(&session)?;
    let mut report = GcReport::default();
    let n = leftover.chunks.len() as u64;
    bury(repo, tiers, leftover, &mut report).await?;
    for f in &report.failed {
        tracing::warn!("interrupted collection: not deleted yet: {f}");
    }
    Ok(n)
}

/// Every chunk reachable from the kept versions, sorted (on disk beyond `spill`'s
/// budget). Fails, before anything is deleted, if any of their nodes cannot be read.
async fn mark(
    repo: &Repo,
    session: &GcSession<'_>,
    spill: &Spill,
    progress: &Progress,
) -> Result<Sorted<ChunkId>, FsckError> {
    let roots: Vec<ChunkId> = session.kept.iter().map(|v| v.root).collect();
    let mut broken = None;
    let stores = std::slice::from_ref(repo.store());
    let reached = reachable_set(&roots, stores, spill, progress, |id, what, at| {
        broken.get_or_insert_with(|| {
            format!(
                "{} (chunk {id}, at {}): {what}",
                "a kept version cannot be read",
                fvfs_manifest::path::show(at)
            )
        });
    })
    .await;
    if let Some(why) = broken {
        return Err(FsckError::Unreadable(why));
    }
    Ok(reached?.0)
}

/// Condemns every record not marked, page by page, and deletes its copies. The
/// records come in the order of their ids, the marked set's own: one pass over each.
async fn sweep(
    repo: &Repo,
    tiers: &[Tier],
    session: &GcSession<'_>,
    marked: &Sorted<ChunkId>,
    opts: &Options,
    progress: &Progress,
    report: &mut GcReport,
) -> Result<(), FsckError> {
    let mut marked = marked.cursor()?;
    let mut after: Option<ChunkId> = None;
    loop {
        let page = repo.chunk_records_after(after.as_ref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(*last);
        progress.add(page.len() as u64, 0);
        let mut unmarked = Vec::new();
        for (id, r) in page {
            if !marked.holds(&id)? {
                unmarked.push((id, r));
            }
        }
        if opts.dry_run {
            for (_, r) in &unmarked {
                if r.last_access > session.condemn_before {
                    report.kept_recent += 1;
                    continue;
                }
                report.chunks_freed += 1;
                for t in tiers.iter().filter(|t| r.tiers & t.bit != 0) {
                    freed(report, t, u64::from(r.stored_len));
                }
            }
            continue;
        }
        let ids: Vec<ChunkId> = unmarked.iter().map(|(id, _)| *id).collect();
        let condemned = repo.gc_condemn(session, &ids).await?;
        report.kept_recent += (ids.len() - condemned.chunks.len()) as u64;
        report.chunks_freed += condemned.chunks.len() as u64;
        bury(repo, tiers, condemned, report).await?;
    }
}

/// Deletes the copies of condemned chunks from every tier, then their tombstones.
/// A copy that cannot be deleted keeps its tombstone, for the next collection.
async fn bury(
    repo: &Repo,
    tiers: &[Tier],
    condemned: Condemned,
    report: &mut GcReport,
) -> Result<(), ManifestError> {
    let results: Vec<_> = futures::stream::iter(condemned.chunks)
        .map(|(id, r)| async move {
            let mut errors = Vec::new();
            for t in tiers {
                // Every tier, whatever the bits say: a copy may exist unclaimed.
                if let Err(e) = t.store.delete(&id).await {
                    errors.push(format!("{}: chunk {id}: {e}", t.name));
                }
            }
            (id, r, errors)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut done = Vec::with_capacity(results.len());
    for (id, r, errors) in results {
        if !errors.is_empty() {
            report.failed.extend(errors);
            continue;
        }
        for t in tiers.iter().filter(|t| r.tiers & t.bit != 0) {
            freed(report, t, u64::from(r.stored_len));
        }
        done.push(id);
    }
    repo.gc_buried(&done)
}

/// Copies on the local and NAS tiers that no record names and nothing reaches
/// (offline only: a writer's new chunk has no record until its commit). A store
/// lists its chunks in its own order: those without a record are sorted (beside
/// `spill`) to be looked for in the marked set in one pass.
async fn strays(
    repo: &Repo,
    tiers: &[Tier],
    marked: &Sorted<ChunkId>,
    spill: &Spill,
    dry_run: bool,
) -> Result<u64, FsckError> {
    let mut deleted = 0;
    for t in tiers.iter().filter(|t| t.bit != TIER_S3) {
        let mut ids = t.store.list();
        let mut unrecorded = spill.sorter();
        while let Some(id) = ids.next().await {
            let id = id?;
            if repo.chunk_record(&id)?.is_none() {
                unrecorded.push(id)?;
            }
        }
        drop(ids);
        let mut reachable = marked.cursor()?;
        for id in unrecorded.finish()?.iter() {
            let id = id?;
            if reachable.holds(&id)? {
                continue;
            }
            if !dry_run {
                t.store.delete(&id).await?;
            }
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// S3 locations of chunks without a record (a replication that finished while the
/// chunk was being collected): forgotten, so compaction can take their packs.
fn forget_stray_locations(repo: &Repo, dry_run: bool) -> Result<(), ManifestError> {
    let locs = repo.pack_locs();
    let stray: Vec<ChunkId> = locs
        .iter()
        .filter_map(|r| match r {
            Ok((id, _)) => match repo.chunk_record(&id) {
                Ok(None) => Some(Ok(id)),
                Ok(Some(_)) => None,
                Err(e) => Some(Err(e)),
            },
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    if !dry_run {
        for id in stray {
            locs.forget(&id)?;
        }
    }
    Ok(())
}

/// Tells S3's log which versions were dropped, then compacts the packs (taking what
/// moves from `local` where it holds a pack's live chunks). If S3 cannot be told, no
/// pack is touched (the next collection tries again).
async fn compact(
    repo: &Repo,
    s3: &dyn Packs,
    local: Option<&dyn ChunkStore>,
    opts: &Options,
    report: &mut GcReport,
) -> Result<(), ManifestError> {
    if !opts.dry_run {
        let dropped = repo.dropped_unpublished()?;
        if let Err(e) = s3.record_dropped(&dropped).await {
            report.s3_skipped = Some(format!("S3 could not record the dropped versions: {e}"));
            return Ok(());
        }
        repo.dropped_published(&dropped)?;
    }
    match s3
        .compact(opts.compact_below, opts.dry_run, &is_node(repo), local)
        .await
    {
        Ok(c) => report.compaction = Some(c),
        Err(e) => report.s3_skipped = Some(e.to_string()),
    }
    Ok(())
}

/// Whether a chunk is a tree node, as `repo`'s records say (what S3 compaction asks, to
/// keep nodes in packs of their own). A record that cannot be read only costs the chunk
/// its place beside the nodes.
pub fn is_node(repo: &Repo) -> impl Fn(&ChunkId) -> bool + Send + Sync + '_ {
    |id: &ChunkId| matches!(repo.chunk_record(id), Ok(Some(r)) if r.kind == ChunkKind::Node)
}

/// Counts one copy of `bytes` deleted from `tier`.
fn freed(report: &mut GcReport, tier: &Tier, bytes: u64) {
    let i = match report.tiers.iter().position(|f| f.tier == tier.name) {
        Some(i) => i,
        None => {
            report.tiers.push(Freed {
                tier: tier.name.to_owned(),
                ..Freed::default()
            });
            report.tiers.len() - 1
        }
    };
    report.tiers[i].chunks += 1;
    report.tiers[i].bytes += bytes;
}
