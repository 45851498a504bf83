//! `fvfsd recover --from-s3`: rebuilds a lost store from the S3 tier alone.
//!
//! Into an empty data directory: every pack index in the bucket gives the chunks and
//! where they are (one suffix-range GET per pack), the version log and snapshot names
//! give the versions, and a walk of every version's tree (reading nodes from S3 and
//! promoting them to the local tier) proves each one whole and tells tree nodes from
//! data. File content stays in S3 and is fetched, verified and promoted when read. A
//! configured NAS tier is queued to receive everything again.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use fvfs_manifest::meta::TIER_NAS;

use crate::config::Config;
use crate::home::Home;

pub async fn run(home: &Home, config: &Config) -> Result<ExitCode> {
    let s3 = home
        .s3()
        .context("recover --from-s3 needs the S3 tier: give a config with [tiers.s3]")?;
    let repo = home.repo();
    if !repo.is_empty()? {
        bail!(
            "the store in {} already holds data; recover rebuilds into an empty data directory (move this one away first)",
            home.dir().display()
        );
    }
    eprintln!("reading pack indexes from S3...");
    let found = s3.scan_packs().await?;
    repo.restore_chunks(&found)?;
    let (versions, snapshots) = fvfs_tiering::s3::log::read(s3.bucket()).await?;
    if versions.is_empty() {
        bail!("no version log in S3 under this bucket and prefix: nothing to recover");
    }
    eprintln!(
        "found {} chunks; checking {} versions...",
        found.len(),
        versions.len()
    );
    let progress = std::sync::Arc::new(fvfs_fsck::Progress::new("recover"));
    let tiers = home.fsck_tiers();
    let arc = home.repo_arc();
    let work = fvfs_fsck::check(&arc, &tiers, &versions, Default::default(), &progress);
    let report = crate::progress::with_bar(&progress, work).await?;
    repo.restore_mark_nodes(&report.node_ids)?;
    repo.store().sync().await?;
    repo.restore_versions(&versions, &snapshots)?;
    if config.nas_path().is_some() {
        repo.mark_tier_initialised(TIER_NAS).await?;
    }
    let head = versions.last().map_or(0, |v| v.number);
    println!(
        "recovered {} versions (HEAD = version {head}), {} snapshots, {} chunks from S3",
        versions.len(),
        snapshots.len(),
        found.len()
    );
    if report.is_clean() {
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", report.render());
    println!("some versions are incomplete in S3; the paths above cannot be read");
    Ok(ExitCode::from(1))
}
