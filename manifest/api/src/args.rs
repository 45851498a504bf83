//! The arguments of the administration jobs a running daemon takes over HTTP (gc,
//! fsck, migrate, export): the words of `fvfsd`'s commands (clap) and the JSON bodies
//! of their routes (serde), one type each, so the command line and the API cannot
//! drift.

use std::path::PathBuf;

use clap::Args;
use fvfs_walk::ExcludeArgs;
use serde::{Deserialize, Serialize};

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

/// `fvfsd migrate`: what to import. Also the body of `POST /v1/admin/migrate`, so a
/// running daemon can do the import when it holds the store.
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct MigrateArgs {
    /// A local directory to import (repeatable).
    #[arg(long = "local-src", value_name = "DIR")]
    pub local_src: Vec<PathBuf>,
    /// A directory on the NAS mount to import (repeatable).
    #[arg(long = "nas-src", value_name = "DIR")]
    pub nas_src: Vec<PathBuf>,
    /// Where the contents of each source land inside fvfs.
    #[arg(long, default_value = "/")]
    pub dest: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Seconds between checkpoints: the progress an interrupted run resumes from.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub checkpoint_secs: f64,
    #[command(flatten)]
    #[serde(flatten)]
    pub excludes: ExcludeArgs,
}

/// `fvfsd export`: what to export. Also the body of `POST /v1/admin/export`.
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct ExportArgs {
    /// Version number, snapshot name or HEAD~N to export (default: HEAD).
    #[arg(long)]
    pub version: Option<String>,
    /// Path inside fvfs to export.
    pub path: PathBuf,
    /// Local directory to write into (created if missing).
    pub dir: PathBuf,
    /// Recreate privilege-bearing metadata: device nodes, setuid and setgid bits, file
    /// capabilities and other security.* and trusted.* attributes, and (as root) owners
    /// other than the exporter. By default they are left out and counted: any client on
    /// the LAN with a write token may have stored them, and an export by root would
    /// give them power on this machine.
    #[arg(long, alias = "keep-setid")]
    #[serde(default, alias = "keep_setid")]
    pub keep_privileged: bool,
    /// Name each thing left out as privileged.
    #[arg(short, long)]
    #[serde(default)]
    pub verbose: bool,
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
}
