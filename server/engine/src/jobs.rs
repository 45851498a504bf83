//! The store's maintenance jobs, fsck and gc, each written once: the one-shot
//! commands (`fvfsd fsck`, `fvfsd gc`), the admin API and the automatic snapshots'
//! pruning all run them here. So a job starts one way, shows its progress in one list
//! ([`Maintenance`]: `status`, and the bar on a terminal) and leaves its outcome in one
//! record (`DATA_DIR/maintenance.json`, [`crate::MAINTENANCE`]), whoever ran it:
//! `status` tells when the store was last checked, also after an offline check.
//!
//! Invariant: a job is clean exactly when its report says nothing is left to do: an
//! fsck with no problem left unrepaired, a gc that deleted all it condemned and ran
//! its S3 step ([`GcReport::is_complete`]); a dry run is clean.

use std::sync::Arc;

use fvfs_api::cli::FsckArgs;
use fvfs_api::reports::GcReport;
use fvfs_fsck::{Checked, FsckError, Tier};
use fvfs_manifest::Repo;

use crate::{Maintenance, Workers};

/// The maintenance jobs of an open store ([`crate::Engine::jobs`]), cheap to clone.
/// Each runs as a job of the store's [`Workers`], on a task of its own: to its end
/// even when whoever asked goes away (an HTTP client that disconnects), and not at
/// all once the store is closing (then the answer is `None`).
#[derive(Clone)]
pub struct Jobs {
    pub(crate) repo: Arc<Repo>,
    /// Every tier's own store, warmest first.
    pub(crate) tiers: Arc<[Tier]>,
    pub(crate) maintenance: Arc<Maintenance>,
    pub(crate) workers: Arc<Workers>,
}

impl Jobs {
    /// The jobs running, and how the last of each kind ended.
    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    /// One fsck as `args` asks.
    pub async fn fsck(&self, args: FsckArgs) -> Option<Result<Checked, FsckError>> {
        let me = self.clone();
        self.workers
            .job("fsck", async move { me.check(&args).await })
            .await
    }

    /// One garbage collection with `opts`.
    pub async fn gc(&self, opts: fvfs_fsck::gc::Options) -> Option<Result<GcReport, FsckError>> {
        let me = self.clone();
        self.workers
            .job("gc", async move { me.collect(&opts).await })
            .await
    }

    /// An fsck as `args` asks, listed in the maintenance list while it runs and
    /// recorded there.
    async fn check(&self, args: &FsckArgs) -> Result<Checked, FsckError> {
        let (repo, tiers) = (&self.repo, &self.tiers[..]);
        let task = self.maintenance.start("fsck");
        let checked = async {
            let versions = fvfs_fsck::versions_to_check(repo, args.all, args.version.as_deref())?;
            let opts = fvfs_fsck::Options {
                read_data: args.read_data,
                repair: args.repair,
            };
            fvfs_fsck::check(repo, tiers, &versions, opts, &task.progress).await
        }
        .await;
        let (clean, summary) = match &checked {
            Ok(c) => {
                let r = &c.report;
                let left = r.problems.iter().filter(|p| !p.repaired).count()
                    + r.stores.iter().filter(|p| !p.repaired).count();
                let found = match left {
                    0 => "clean".to_owned(),
                    n => format!("{n} problems left"),
                };
                let data = match args.read_data {
                    true => format!(", {} data chunks read", r.data_chunks),
                    false => String::new(),
                };
                (
                    left == 0,
                    format!("{} versions, {} nodes{data}: {found}", r.versions, r.nodes),
                )
            }
            Err(e) => (false, format!("failed: {e}")),
        };
        self.maintenance.finished("fsck", clean, summary);
        checked
    }

    /// A garbage collection with `opts`, listed in the maintenance list while it runs
    /// and recorded there.
    async fn collect(&self, opts: &fvfs_fsck::gc::Options) -> Result<GcReport, FsckError> {
        let task = self.maintenance.start("gc");
        let collected = fvfs_fsck::gc::collect(&self.repo, &self.tiers, opts, &task.progress).await;
        let (clean, summary) = match &collected {
            Ok(r) if r.dry_run => (
                true,
                format!("dry run: would free {} chunks", r.chunks_freed),
            ),
            Ok(r) => {
                let mut summary = format!(
                    "{} versions dropped, {} chunks freed",
                    r.versions_dropped.len(),
                    r.chunks_freed
                );
                if !r.failed.is_empty() {
                    summary += &format!(", {} copies not deleted", r.failed.len());
                }
                if let Some(why) = &r.s3_skipped {
                    summary += &format!(", S3 not collected: {why}");
                }
                (r.is_complete(), summary)
            }
            Err(e) => (false, format!("failed: {e}")),
        };
        self.maintenance.finished("gc", clean, summary);
        collected
    }
}
