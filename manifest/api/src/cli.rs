//! The commands fvfsd and fvfsc both offer, written once: their clap arguments, what
//! they need from a store ([`History`]: the store fvfsd opened itself, or a daemon
//! reached through the [`Api`](crate::client::Api)) and how each runs and prints
//! ([`run`]). Also the arguments of gc and fsck, which fvfsd sends a daemon as JSON
//! bodies, like every other request.
//!
//! Invariant: a command prints the same whichever way it reached the store.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

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

/// `fvfsd gc`: the rules override the config's `[gc]` keys one by one; with no rule
/// anywhere, every version is kept and only what no version reaches is freed. The body
/// of `POST /v1/admin/gc` (an empty body is the default: no rule, a real collection).
#[derive(Args, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcArgs {
    /// Count what would be freed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the newest N versions.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u64>,
    /// Keep the newest version of each of the last D days that have versions.
    #[arg(long, value_name = "D")]
    pub keep_daily: Option<u64>,
    /// Keep the newest version of each of the last W weeks that have versions.
    #[arg(long, value_name = "W")]
    pub keep_weekly: Option<u64>,
    /// Keep unreachable chunks written or read in the last SECS seconds (default:
    /// `[gc] grace_secs`, 3600), for writes still on their way to a commit.
    #[arg(long, value_name = "SECS")]
    pub grace_secs: Option<i64>,
    /// Keep chunks a client was told are stored, or uploaded, in the last SECS seconds
    /// until the commit that names them (default: `[gc] in_flight_secs`, 3600); 0
    /// refuses every write in flight.
    #[arg(long, value_name = "SECS")]
    pub in_flight_secs: Option<i64>,
    /// Also rewrite the local and NAS segments' frames at a denser zstd level (about 10%
    /// less on source trees; minutes of CPU on a large store, once; the daemon does
    /// it by itself while idle, see `[gc] recompress_idle_secs`).
    #[arg(long)]
    pub recompress: bool,
}

/// `fvfsd fsck`; the body of `POST /v1/admin/fsck` (empty: HEAD and the snapshots,
/// tree nodes and chunk presence only).
#[derive(Args, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FsckArgs {
    /// Also read and verify every data chunk.
    #[arg(long)]
    pub read_data: bool,
    /// Check every version, not only HEAD and the snapshots.
    #[arg(long, conflicts_with = "version")]
    pub all: bool,
    /// Check only this version (number, snapshot name or HEAD~N).
    #[arg(long)]
    pub version: Option<String>,
    /// Copy missing or damaged chunks again from a tier that holds them whole.
    #[arg(long)]
    pub repair: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_and_fsck_arguments_travel_as_json_and_an_empty_body_is_the_default() {
        let gc = GcArgs {
            dry_run: true,
            keep_last: Some(3),
            keep_weekly: Some(2),
            grace_secs: Some(0),
            ..GcArgs::default()
        };
        let text = serde_json::to_string(&gc).unwrap();
        assert_eq!(serde_json::from_str::<GcArgs>(&text).unwrap(), gc);
        assert_eq!(
            serde_json::from_str::<GcArgs>("{}").unwrap(),
            GcArgs::default()
        );
        let bad = serde_json::from_str::<GcArgs>(r#"{"keep_last": -1}"#).unwrap_err();
        assert!(bad.to_string().contains("-1"), "{bad}");
        let typo = serde_json::from_str::<GcArgs>(r#"{"keep_lats": 1}"#).unwrap_err();
        assert!(typo.to_string().contains("keep_lats"), "{typo}");
        let fsck = FsckArgs {
            read_data: true,
            version: Some("HEAD~1".into()),
            ..FsckArgs::default()
        };
        let text = serde_json::to_string(&fsck).unwrap();
        assert_eq!(serde_json::from_str::<FsckArgs>(&text).unwrap(), fsck);
    }

    #[test]
    fn fvfs_paths_are_absolute() {
        assert_eq!(fvfs_path(&"/a/b".into()).unwrap(), b"/a/b");
        let e = fvfs_path(&"a/b".into()).unwrap_err().to_string();
        assert_eq!(e, "a/b: fvfs paths start with '/'");
    }
}
