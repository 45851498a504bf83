//! The store commands on the store this process opened: the repository's own views
//! and operations, gc and fsck (the engine's jobs, [`fvfs_engine::jobs`]) with a progress
//! bar, migrate and export in process.

use anyhow::{Context, Result};
use fvfs_api::args::{ExportArgs, FsckArgs, GcArgs, MigrateArgs};
use fvfs_api::cli::History;
use fvfs_api::reports::{FsckReport, GcReport, Outcome};
use fvfs_api::views::{ChangeInfo, PathChange, SnapshotInfo, StatusInfo, VersionInfo};
use fvfs_manifest::Repo;

use super::Backend;
use crate::config::Config;
use crate::export::Export;
use crate::migrate::Migrate;
use crate::progress;
use fvfs_engine::jobs::{Fsck, Gc};
use fvfs_engine::Engine;

/// A job that did not run: the store was closing.
const CLOSING: &str = "the store is closing";

/// The store opened by this process, and its config.
pub struct Local<'a> {
    pub home: &'a Engine,
    pub config: &'a Config,
}

impl Local<'_> {
    fn repo(&self) -> &Repo {
        self.home.repo()
    }
}

#[async_trait::async_trait]
impl History for Local<'_> {
    async fn snapshot_create(&self, name: &str) -> Result<VersionInfo> {
        let v = self.repo().lock().await.snapshot_create(name).await?;
        Ok(self.repo().version_info(&v)?)
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        Ok(self.repo().snapshot_infos()?)
    }

    async fn snapshot_delete(&self, name: &str) -> Result<u64> {
        Ok(self.repo().lock().await.snapshot_delete(name)?)
    }

    async fn log(&self, limit: Option<usize>) -> Result<Vec<VersionInfo>> {
        Ok(self.repo().log_info(limit.unwrap_or(usize::MAX))?)
    }

    async fn path_log(&self, path: &[u8], limit: Option<usize>) -> Result<Vec<PathChange>> {
        Ok(self
            .repo()
            .history(path, limit.unwrap_or(usize::MAX))
            .await?)
    }

    async fn version(&self, spec: &str) -> Result<VersionInfo> {
        Ok(self.repo().version_info(&self.repo().resolve(spec)?)?)
    }

    async fn rollback(&self, spec: &str) -> Result<VersionInfo> {
        let target = self.repo().resolve(spec)?;
        let v = self.repo().lock().await.rollback(&target).await?;
        Ok(self.repo().version_info(&v)?)
    }

    async fn diff(&self, a: &str, b: &str) -> Result<Vec<ChangeInfo>> {
        Ok(self.repo().diff_info(a, b).await?)
    }
}

#[async_trait::async_trait]
impl Backend for Local<'_> {
    fn place(&self) -> String {
        self.home.dir().display().to_string()
    }

    async fn status(&self) -> Result<StatusInfo> {
        Ok(self.repo().status_info()?)
    }

    async fn gc(&self, args: GcArgs) -> Result<GcReport> {
        // Offline: no daemon writes meanwhile, so nothing needs the grace of a live one.
        let opts = self.config.gc.options(&args, true);
        let jobs = self.home.jobs();
        let collected = progress::with_bar_of(jobs.maintenance(), jobs.run(Gc(opts))).await;
        Ok(collected.context(CLOSING)??)
    }

    async fn fsck(&self, args: FsckArgs) -> Result<FsckReport> {
        let jobs = self.home.jobs();
        let checked = progress::with_bar_of(jobs.maintenance(), jobs.run(Fsck(args))).await;
        Ok(checked.context(CLOSING)??.report)
    }

    async fn migrate(&self, args: MigrateArgs) -> Result<Outcome> {
        let caches = self.home.stat_caches();
        let job = Migrate { args, caches };
        self.home.jobs().run(job).await.context(CLOSING)?
    }

    async fn export(&self, args: ExportArgs) -> Result<Outcome> {
        let job = Export {
            args,
            s3: self.home.s3(),
        };
        self.home.jobs().run(job).await.context(CLOSING)?
    }
}
