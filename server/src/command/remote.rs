//! The store commands through a daemon that holds the store: `fvfsd serve` writes its
//! URL to `HOME/daemon.url`, and a command that finds the store locked sends its
//! request there. Migrate and export run inside the daemon (loopback callers only); gc
//! and fsck show the daemon's progress of them.

use std::path::Path;

use anyhow::Result;
use fvfs_api::args::{ExportArgs, FsckArgs, GcArgs, MigrateArgs};
use fvfs_api::client::Api;
use fvfs_api::reports::{FsckReport, GcReport, Outcome, TaskProgress};
use fvfs_api::routes::{call, Call};
use fvfs_api::views::StatusInfo;

use super::Backend;
use crate::progress;
use fvfs_engine::DAEMON_INFO;

/// The API of the daemon serving the store in `dir`, as its administrator (the admin
/// token and the certificate are in the same folder); `None` if no daemon said where.
pub fn connect(dir: &Path) -> Option<Api> {
    let url = std::fs::read_to_string(dir.join(DAEMON_INFO)).ok()?;
    // fvfsd on the daemon's machine administers it: gc, snapshot delete, fsck...
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .ok()
        .map(|t| t.trim().to_owned());
    // Beyond loopback the daemon speaks HTTPS: its identity is in the same folder.
    let pin = match url.starts_with("https:") {
        true => crate::serve::tls::Identity::load(dir)
            .ok()
            .map(|i| i.fingerprint),
        false => None,
    };
    Some(Api::new(url.trim().to_owned(), token, "fvfsd", pin))
}

/// Whether `e` says the daemon did not answer at all.
pub fn unreachable(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref(),
        Some(fvfs_api::client::Failure::Unreachable { .. })
    )
}

#[async_trait::async_trait]
impl Backend for Api {
    fn place(&self) -> String {
        format!("served by {}", self.base)
    }

    async fn status(&self) -> Result<StatusInfo> {
        Ok(Api::status(self).await?.store)
    }

    async fn gc(&self, args: GcArgs) -> Result<GcReport> {
        let work = self.ask_with(call::AdminGc::plain(), &args);
        Ok(progress::with_bar_from(|| running(self, "gc"), work).await?)
    }

    async fn fsck(&self, args: FsckArgs) -> Result<FsckReport> {
        let work = self.ask_with(call::AdminFsck::plain(), &args);
        Ok(progress::with_bar_from(|| running(self, "fsck"), work).await?)
    }

    async fn migrate(&self, mut args: MigrateArgs) -> Result<Outcome> {
        args.excludes.inline_files()?;
        Ok(self.ask_with(call::AdminMigrate::plain(), &args).await?)
    }

    async fn export(&self, args: ExportArgs) -> Result<Outcome> {
        Ok(self.ask_with(call::AdminExport::plain(), &args).await?)
    }
}

/// The daemon's progress of a running `task`, from its status.
async fn running(api: &Api, task: &str) -> Option<TaskProgress> {
    let status = Api::status(api).await.ok()?;
    status.maintenance.into_iter().find(|m| m.task == task)
}
