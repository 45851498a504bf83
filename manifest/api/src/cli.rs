//! The commands fvfsd and fvfsc both offer, written once: their clap arguments, what
//! they need from a store ([`History`]: the store fvfsd opened itself, or a daemon
//! reached through the [`Api`](crate::client::Api)) and how each runs and prints
//! ([`run`]).
//!
//! Invariant: a command prints the same whichever way it reached the store.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::show;
use crate::views::{ChangeInfo, PathChange, SnapshotInfo, VersionInfo};

/// The commands on the version history, the same in fvfsd and fvfsc.
#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// Create, list or delete named snapshots.
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Versions, newest first; with PATH, those in which PATH (a file or a folder,
    /// also one gone since) was added (A), modified (M) or removed (D).
    Log {
        path: Option<OsString>,
        /// Show at most this many versions.
        #[arg(short = 'n', long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Make an older version (number, snapshot, HEAD~N) the current tree, as a new version.
    Rollback { version: String },
    /// Paths added (A), removed (D) and modified (M) from version A to version B.
    Diff {
        a: String,
        b: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotAction {
    /// Name the current version.
    Create { name: String },
    /// List snapshots.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a snapshot name (the version stays in the log).
    Delete { name: String },
}

/// What the history commands need from a store.
#[async_trait::async_trait]
pub trait History: Sync {
    /// Names the current version; returns it.
    async fn snapshot_create(&self, name: &str) -> Result<VersionInfo>;
    async fn snapshots(&self) -> Result<Vec<SnapshotInfo>>;
    /// Removes a snapshot name; returns the version it named.
    async fn snapshot_delete(&self, name: &str) -> Result<u64>;
    /// Versions, newest first, at most `limit`.
    async fn log(&self, limit: Option<usize>) -> Result<Vec<VersionInfo>>;
    /// The versions in which `path` changed, newest first, at most `limit`.
    async fn path_log(&self, path: &[u8], limit: Option<usize>) -> Result<Vec<PathChange>>;
    /// The version a number, snapshot name or HEAD~N names.
    async fn version(&self, spec: &str) -> Result<VersionInfo>;
    /// Makes the version `spec` names current, as a new version; returns it.
    async fn rollback(&self, spec: &str) -> Result<VersionInfo>;
    async fn diff(&self, a: &str, b: &str) -> Result<Vec<ChangeInfo>>;
}

/// Runs a history command on `store` and prints its answer.
pub async fn run(store: &(impl History + ?Sized), command: HistoryCommand) -> Result<ExitCode> {
    match command {
        HistoryCommand::Snapshot { action } => match action {
            SnapshotAction::Create { name } => crate::outln!(
                "snapshot {name} = version {}",
                store.snapshot_create(&name).await?.number
            ),
            SnapshotAction::List { json } => {
                crate::out::json_or(&store.snapshots().await?, json, |l| show::snapshots(l))
            }
            SnapshotAction::Delete { name } => {
                let n = store.snapshot_delete(&name).await?;
                crate::outln!("deleted snapshot {name} (version {n} stays in the log)");
            }
        },
        HistoryCommand::Log {
            path: None,
            limit,
            json,
        } => crate::out::json_or(&store.log(limit).await?, json, |l| show::log(l)),
        HistoryCommand::Log {
            path: Some(path),
            limit,
            json,
        } => {
            let changes = store.path_log(fvfs_path(&path)?, limit).await?;
            crate::out::json_or(&changes, json, |c| show::history(c))
        }
        HistoryCommand::Rollback { version } => {
            let target = store.version(&version).await?;
            let v = store.rollback(&version).await?;
            crate::out!("{}", show::rolled_back(&v, &target));
        }
        HistoryCommand::Diff { a, b, json } => {
            crate::out::json_or(&store.diff(&a, &b).await?, json, |l| show::diff(l))
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A path inside fvfs as given on a command line: absolute.
pub fn fvfs_path(p: &OsString) -> Result<&[u8]> {
    let bytes = p.as_bytes();
    if bytes.first() != Some(&b'/') {
        bail!("{}: fvfs paths start with '/'", p.to_string_lossy());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvfs_paths_are_absolute() {
        assert_eq!(fvfs_path(&"/a/b".into()).unwrap(), b"/a/b");
        let e = fvfs_path(&"a/b".into()).unwrap_err().to_string();
        assert_eq!(e, "a/b: fvfs paths start with '/'");
    }
}
