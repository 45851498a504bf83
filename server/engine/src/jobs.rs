//! The store's jobs, each kind written once behind one trait ([`Job`]): fsck and gc
//! here, evict, flush, migrate, export, recompression and automatic snapshots where
//! their work lives (the server), all
//! started the one way [`Jobs::run`] has, by the one-shot commands (`fvfsd fsck`,
//! `fvfsd gc`, `fvfsd migrate`, `fvfsd export`), the admin API and the automatic
//! snapshots' pruning alike. So a job runs on a task of its own, shows its progress in
//! one list ([`Maintenance`]: `status`, and the bar on a terminal) and leaves its
//! outcome in one record (`DATA_DIR/maintenance.json`, [`crate::MAINTENANCE`]),
//! whoever ran it: `status` tells when the store was last checked, also after an
//! offline check.
//!
//! Invariant: a job is clean exactly when its report says nothing is left to do
//! ([`Job::outcome`]): an fsck with no problem left unrepaired, a gc that deleted all
//! it condemned and ran its S3 step ([`GcReport::is_complete`]), a migrate or export
//! that skipped no path; a dry run is clean. A job that fails is not clean.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use fvfs_api::args::FsckArgs;
use fvfs_api::reports::GcReport;
use fvfs_fsck::{Checked, FsckError, Progress, Tier};
use fvfs_manifest::Repo;
use fvfs_tiering::TieredStore;

use crate::{Maintenance, Workers};

/// One kind of job on a store: its work, and how its outcome reads.
pub trait Job: Send + Sync + 'static {
    /// Its name in status (`maintenance`, `workers`) and in the record of outcomes.
    const KIND: &'static str;
    type Report: Send + 'static;
    type Error: Display + Send + 'static;

    /// Does the work on `store`, telling `progress` how far it got.
    fn run(
        &self,
        store: &Jobs,
        progress: &Arc<Progress>,
    ) -> impl Future<Output = Result<Self::Report, Self::Error>> + Send;

    /// Whether `report` leaves nothing to do, and its line in the record.
    fn outcome(&self, report: &Self::Report) -> (bool, String);
}

/// The jobs of an open store ([`crate::Engine::jobs`]), cheap to clone. Each runs as a
/// job of the store's [`Workers`], on a task of its own: to its end even when whoever
/// asked goes away (an HTTP client that disconnects), and not at all once the store is
/// closing (then the answer is `None`).
#[derive(Clone)]
pub struct Jobs {
    pub(crate) repo: Arc<Repo>,
    /// Every tier's own store, warmest first.
    pub(crate) tiers: Arc<[Tier]>,
    /// Reads through the tiers, when there are colder ones.
    pub(crate) reads: Option<Arc<TieredStore>>,
    pub(crate) maintenance: Arc<Maintenance>,
    pub(crate) workers: Arc<Workers>,
    /// Where fsck and gc spill what outgrows memory.
    pub(crate) spill: Arc<fvfs_fsck::Spill>,
}

impl Jobs {
    /// The jobs running, and how the last of each kind ended.
    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    /// Reads through the tiers (promotions to record), when there are colder ones.
    pub fn reads(&self) -> Option<&Arc<TieredStore>> {
        self.reads.as_ref()
    }

    /// Runs `job`, listed in the maintenance list while it runs and recorded there.
    pub async fn run<J: Job>(&self, job: J) -> Option<Result<J::Report, J::Error>> {
        let me = self.clone();
        self.workers
            .job(J::KIND, async move {
                let task = me.maintenance.start(J::KIND);
                let done = job.run(&me, &task.progress).await;
                let (clean, summary) = match &done {
                    Ok(report) => job.outcome(report),
                    Err(e) => (false, format!("failed: {e}")),
                };
                me.maintenance.finished(J::KIND, clean, summary);
                done
            })
            .await
    }
}

/// A check of the store as its arguments ask.
pub struct Fsck(pub FsckArgs);

impl Job for Fsck {
    const KIND: &'static str = "fsck";
    type Report = Checked;
    type Error = FsckError;

    async fn run(&self, store: &Jobs, progress: &Arc<Progress>) -> Result<Checked, FsckError> {
        let args = &self.0;
        let versions =
            fvfs_fsck::versions_to_check(&store.repo, args.all, args.version.as_deref())?;
        let opts = fvfs_fsck::Options {
            read_data: args.read_data,
            repair: args.repair,
        };
        fvfs_fsck::check(
            &store.repo,
            &store.tiers,
            &versions,
            opts,
            &store.spill,
            progress,
        )
        .await
    }

    fn outcome(&self, checked: &Checked) -> (bool, String) {
        let r = &checked.report;
        let left = r.problems.iter().filter(|p| !p.repaired).count()
            + r.stores.iter().filter(|p| !p.repaired).count();
        let found = match left {
            0 => "clean".to_owned(),
            n => format!("{n} problems left"),
        };
        let data = match self.0.read_data {
            true => format!(", {} data chunks read", r.data_chunks),
            false => String::new(),
        };
        (
            left == 0,
            format!("{} versions, {} nodes{data}: {found}", r.versions, r.nodes),
        )
    }
}

/// A garbage collection with its options.
pub struct Gc(pub fvfs_fsck::gc::Options);

impl Job for Gc {
    const KIND: &'static str = "gc";
    type Report = GcReport;
    type Error = FsckError;

    async fn run(&self, store: &Jobs, progress: &Arc<Progress>) -> Result<GcReport, FsckError> {
        fvfs_fsck::gc::collect(&store.repo, &store.tiers, &self.0, &store.spill, progress).await
    }

    fn outcome(&self, r: &GcReport) -> (bool, String) {
        if r.dry_run {
            return (
                true,
                format!("dry run: would free {} chunks", r.chunks_freed),
            );
        }
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
}
