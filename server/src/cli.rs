//! The command line of fvfsd.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{export, migrate};

#[derive(Parser)]
#[command(
    name = "fvfsd",
    version,
    about = "fvfs daemon and store administration"
)]
pub struct Cli {
    /// Data directory (default: $FVFS_HOME, else the config's data_dir, else
    /// ~/.local/share/fvfs).
    #[arg(long, global = true, env = "FVFS_HOME", hide_env_values = true)]
    pub home: Option<PathBuf>,
    /// TOML config file (see config.example.toml); no file is needed.
    #[arg(long, global = true, env = "FVFS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the store over HTTP and announce it on the LAN (mDNS).
    Serve {
        /// Address and port to listen on (default: the config's, else 127.0.0.1:7734).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Do not announce over mDNS.
        #[arg(long)]
        no_mdns: bool,
        /// For tests: automatic snapshots read the time (Unix seconds) from FILE, checked
        /// every few milliseconds, instead of the system clock.
        #[arg(long, hide = true, value_name = "FILE")]
        clock_file: Option<std::path::PathBuf>,
    },
    /// Print the write token LAN clients need (`--admin`: the admin token), or manage
    /// named tokens of any role.
    Token {
        #[command(subcommand)]
        action: Option<TokenAction>,
        /// Print the admin token (gc, snapshot delete, migrate, export, fsck, evict).
        #[arg(long)]
        admin: bool,
    },
    /// What a device needs to trust this daemon over the LAN: its addresses and
    /// certificate fingerprint, as the `fvfsc pair` command to run on the device
    /// (`--name`: with a new token for it).
    Pair {
        /// Also make a named token for the device.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum, default_value_t = crate::serve::Role::Write, requires = "name")]
        role: crate::serve::Role,
    },
    /// The S3 tier's encryption keys: one per passphrase, kept wrapped in the bucket.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Import existing directory trees, deduplicating their content.
    Migrate(migrate::Args),
    /// Create, list or delete named snapshots.
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// List versions, newest first.
    Log {
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
    /// Write the tree at PATH (of HEAD or an older version) into a local directory.
    Export(export::Args),
    /// Versions, snapshots, chunks, logical and stored bytes, dedup ratio.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a lost store (data directory and metadata gone) from the S3 tier alone.
    Recover {
        /// Read everything from the S3 tier of the config (the only source so far).
        #[arg(long, required = true)]
        from_s3: bool,
        /// Also bring every chunk back to the local tier now (read by pack at full
        /// speed), as the server was; without it, content stays in S3 and is fetched
        /// and kept locally when read.
        #[arg(long)]
        rehydrate: bool,
    },
    /// Drop versions the retention policy does not keep and free what nothing reaches,
    /// on every tier; compact S3 packs. Writers may go on meanwhile.
    Gc(GcArgs),
    /// Convert the local and NAS chunk stores from the one-file-per-chunk layout of
    /// earlier versions to pack files, in place (resumable; run while no daemon runs).
    ConvertStore,
    /// Check that every reachable tree node and chunk is present and intact.
    Fsck {
        /// Also read and verify every data chunk.
        #[arg(long)]
        read_data: bool,
        /// Check every version, not only HEAD and the snapshots.
        #[arg(long, conflicts_with = "version")]
        all: bool,
        /// Check only this version (number, snapshot name or HEAD~N).
        #[arg(long)]
        version: Option<String>,
        /// Copy missing or damaged chunks again from a tier that holds them whole.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Subcommand)]
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

#[derive(Subcommand)]
pub enum KeyAction {
    /// List the bucket's keys.
    List,
    /// Add a passphrase (the new one from FVFS_NEW_PASSPHRASE or the terminal).
    Add,
    /// Remove a key by id (never the last).
    Remove { id: String },
    /// Change a passphrase: the key FVFS_PASSPHRASE opens is replaced by a new one.
    Passwd,
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token for one device or person; it is printed once and kept only hashed.
    New {
        name: String,
        #[arg(long, value_enum, default_value_t = crate::serve::Role::Write)]
        role: crate::serve::Role,
    },
    /// List named tokens (names and roles; tokens themselves are not kept).
    List,
    /// Remove a named token; a running daemon refuses it from its next request on.
    Remove { name: String },
}

/// `fvfsd gc`: the rules override the config's `[gc]` keys one by one; with no rule
/// anywhere, every version is kept and only what no version reaches is freed.
#[derive(Args, Clone, Debug, Default, PartialEq)]
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
}

impl GcArgs {
    /// The query string that carries these to a daemon.
    pub fn to_query(&self) -> String {
        let mut q = vec![format!("dry_run={}", self.dry_run)];
        for (k, v) in [
            ("keep_last", self.keep_last),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
        ] {
            q.extend(v.map(|v| format!("{k}={v}")));
        }
        q.extend(self.grace_secs.map(|v| format!("grace_secs={v}")));
        q.join("&")
    }

    /// Reads what [`GcArgs::to_query`] wrote.
    pub fn from_query(q: &std::collections::HashMap<String, String>) -> Result<Self, String> {
        fn num<T: std::str::FromStr>(
            q: &std::collections::HashMap<String, String>,
            k: &str,
        ) -> Result<Option<T>, String> {
            q.get(k)
                .map(|v| v.parse().map_err(|_| format!("{k}={v:?} is not a number")))
                .transpose()
        }
        Ok(Self {
            dry_run: q.get("dry_run").is_some_and(|v| v == "true" || v == "1"),
            keep_last: num(q, "keep_last")?,
            keep_daily: num(q, "keep_daily")?,
            keep_weekly: num(q, "keep_weekly")?,
            grace_secs: num(q, "grace_secs")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_args_travel_through_a_query_string() {
        let args = GcArgs {
            dry_run: true,
            keep_last: Some(3),
            keep_daily: None,
            keep_weekly: Some(2),
            grace_secs: Some(0),
        };
        let q = args
            .to_query()
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        assert_eq!(GcArgs::from_query(&q).unwrap(), args);
        let bad = [("keep_last".to_owned(), "-1".to_owned())].into();
        assert!(GcArgs::from_query(&bad).unwrap_err().contains("keep_last"));
    }
}
