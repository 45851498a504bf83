//! fvfsd's store commands, each written once over a [`Backend`]: the store this
//! process opened ([`Local`]), or the daemon that holds it, reached through its API
//! ([`remote`]). The history commands are fvfsc's too ([`fvfs_api::cli`]).
//!
//! Invariant: a command prints the same and ends with the same exit code whichever
//! backend ran it: 0 done, 1 it ran but found problems (paths skipped, fsck findings,
//! gc work left), 2 it could not run.

mod local;
pub mod remote;
mod report;

use std::process::ExitCode;

use anyhow::Result;
use fvfs_api::args::{ExportArgs, FsckArgs, GcArgs, MigrateArgs};
use fvfs_api::cli::History;
use fvfs_api::reports::{FsckReport, GcReport, Outcome};
use fvfs_api::views::StatusInfo;

use crate::cli::StoreCommand;

pub use local::Local;

/// What the store commands need from a store, beyond its history.
#[async_trait::async_trait]
pub trait Backend: History {
    /// Where the store is, as `status` names it.
    fn place(&self) -> String;
    async fn status(&self) -> Result<StatusInfo>;
    /// A garbage collection, with a progress bar on a terminal.
    async fn gc(&self, args: GcArgs) -> Result<GcReport>;
    /// A check, with a progress bar on a terminal.
    async fn fsck(&self, args: FsckArgs) -> Result<FsckReport>;
    async fn migrate(&self, args: MigrateArgs) -> Result<Outcome>;
    async fn export(&self, args: ExportArgs) -> Result<Outcome>;
}

/// Runs `command` on `store` and prints its answer.
pub async fn run(store: &impl Backend, command: StoreCommand) -> Result<ExitCode> {
    Ok(match command {
        StoreCommand::History(c) => return fvfs_api::cli::run(store, c).await,
        StoreCommand::Status { json } => {
            report::status(&store.status().await?, &store.place(), json);
            ExitCode::SUCCESS
        }
        StoreCommand::Gc(args) => report::gc(&store.gc(args).await?),
        StoreCommand::Fsck(args) => report::fsck(&store.fsck(args).await?),
        StoreCommand::Migrate(args) => report::outcome(&store.migrate(args).await?, "skipped"),
        StoreCommand::Export(args) => report::outcome(&store.export(args).await?, "not exported"),
    })
}
