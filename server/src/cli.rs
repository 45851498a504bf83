//! The command line of fvfsd.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    },
    /// Print the API token clients need when the daemon listens beyond loopback.
    Token,
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
    },
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
