//! `fvfsd recover --from-s3`: rebuilds a lost store from the S3 tier alone.
//!
//! Into an empty data directory: every pack index in the bucket gives the chunks and
//! where they are (one suffix-range GET per pack, many in flight; the locations are
//! recorded first, the chunks' records beside the fetch of the trees), the version log and
//! snapshot names give the versions, every tree node of every version is fetched by
//! pack, level by level, each shared node once ([`fvfs_manifest::fetch_trees`]), and
//! kept in the local tier; a walk of every version's tree then proves each one whole
//! and tells tree nodes from data, reading locally. File content stays in S3 and is
//! fetched, verified and promoted when read, unless `--rehydrate` asks for all of it
//! back in the local tier now (read by pack, in pack order). A configured NAS tier is
//! queued to receive everything again.

use std::process::ExitCode;

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use fvfs_cas::StoreError;
use fvfs_manifest::{fetch_trees, Repo};
use fvfs_tiering::{Publishing, Recovered, Replication, TierId};

use crate::progress::with_bar;
use fvfs_engine::Engine;

pub async fn run(home: &Engine, rehydrate: bool) -> Result<ExitCode> {
    let s3 = home
        .s3()
        .context("recover --from-s3 needs the S3 tier: give a config with [tiers.s3]")?;
    let tiers = home.tiers().context("recover needs the tiered store")?;
    let repo = home.repo();
    if !repo.is_empty()? {
        bail!(
            "the store in {} already holds data; recover rebuilds into an empty data directory (move this one away first)",
            home.dir().display()
        );
    }
    let started = std::time::Instant::now();
    let progress = Arc::new(fvfs_fsck::Progress::new("recover"));
    progress.phase("pack indexes", 0);
    let found = Arc::new(with_bar(&progress, s3.scan_packs(|bytes| progress.add(1, bytes))).await?);
    let (versions, snapshots) = fvfs_tiering::s3::log::read(s3.bucket()).await?;
    if versions.is_empty() {
        bail!("no version log in S3 under this bucket and prefix: nothing to recover");
    }
    repo.restore_locations(&found)?;
    // The chunks' records on a thread of their own while the tree nodes come (half of
    // a one-version recover's time each).
    let (arc, fsck_tiers) = (home.repo_arc(), home.fsck_tiers());
    let records = {
        let (repo, found, rt) = (
            arc.clone(),
            found.clone(),
            tokio::runtime::Handle::current(),
        );
        tokio::task::spawn_blocking(move || rt.block_on(repo.restore_chunks(&found)))
    };
    progress.phase("tree nodes", 0);
    let roots = versions.iter().map(|v| v.root);
    let nodes = with_bar(&progress, fetch_trees(repo, roots, |b| progress.add(1, b))).await;
    records.await.context("recording the chunks found")??;
    let work = fvfs_fsck::check(
        &arc,
        &fsck_tiers,
        &versions,
        Default::default(),
        home.spill(),
        &progress,
    );
    let checked = with_bar(&progress, work).await?;
    repo.restore_mark_nodes(&checked.node_ids)?;
    let mut unreadable = 0;
    if rehydrate {
        progress.phase("rehydrating the local tier", found.len() as u64);
        unreadable = with_bar(&progress, rehydrate_all(repo, &found, &progress)).await?;
    }
    repo.store().sync().await?;
    tiers.record_reads(repo).await?;
    repo.restore_versions_published(&versions, &snapshots)?;
    if home.tier_set().nas().is_some() {
        repo.mark_tier_initialised(TierId::Nas.bit()).await?;
    }
    let head = versions.last().map_or(0, |v| v.number);
    fvfs_api::outln!(
        "recovered {} versions (HEAD = version {head}), {} snapshots, {} chunks ({nodes} tree nodes{}) from S3 in {:.1} s; S3: {}",
        versions.len(),
        snapshots.len(),
        found.len(),
        if rehydrate { ", all now local" } else { "" },
        started.elapsed().as_secs_f64(),
        s3.requests(),
    );
    if unreadable > 0 {
        fvfs_api::outln!("{unreadable} chunks could not be brought back (named above); fsck --read-data --all names the paths using them");
    }
    if checked.report.is_clean() {
        return Ok(if unreadable > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    fvfs_api::out!("{}", fvfs_api::show::fsck(&checked.report));
    fvfs_api::outln!("some versions are incomplete in S3; the paths above cannot be read");
    Ok(ExitCode::from(1))
}

/// Every chunk found back in the local tier, read by pack in bounded batches; returns
/// how many could not be read (each named on stderr).
async fn rehydrate_all(
    repo: &Repo,
    found: &[Recovered],
    progress: &fvfs_fsck::Progress,
) -> Result<u64> {
    let mut unreadable = 0;
    const BATCH: usize = 65_536;
    let mut found: Vec<&Recovered> = found.iter().collect();
    found.sort_unstable_by_key(|f| (f.loc.pack, f.loc.offset));
    for batch in found.chunks(BATCH) {
        let ids = batch.iter().map(|f| f.id).collect();
        let mut answers = repo.store().get_many(ids);
        while let Some((id, answer)) = answers.next().await {
            match answer {
                Ok(loaded) => progress.add(1, loaded.frame.len() as u64),
                Err(StoreError::Unavailable(e)) => bail!("S3 stopped answering: {e}"),
                Err(e) => {
                    unreadable += 1;
                    eprintln!("fvfsd: chunk {id} not rehydrated: {e}");
                }
            }
        }
    }
    Ok(unreadable)
}
