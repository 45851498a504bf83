//! The command line of fvfsd.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fvfs_api::args::{ExportArgs, FsckArgs, GcArgs, MigrateArgs};
use fvfs_api::cli::HistoryCommand;
use fvfs_api::routes::Role;

pub use crate::keys::KeyAction;
pub use crate::serve::TokenAction;

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
        #[arg(long, value_enum, default_value_t = Role::Write, requires = "name")]
        role: Role,
    },
    /// The S3 tier's encryption keys: one per passphrase, kept wrapped in the bucket.
    Key {
        #[command(subcommand)]
        action: KeyAction,
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
    /// Convert the local and NAS chunk stores from the one-file-per-chunk layout of
    /// earlier versions to pack files, in place (resumable; run while no daemon runs).
    ConvertStore,
    #[command(flatten)]
    Store(StoreCommand),
}

/// The commands on a store, run by this process or by the daemon that holds it
/// (`crate::command`).
#[derive(Subcommand)]
pub enum StoreCommand {
    #[command(flatten)]
    History(HistoryCommand),
    /// Import existing directory trees, deduplicating their content.
    Migrate(MigrateArgs),
    /// Write the tree at PATH (of HEAD or an older version) into a local directory.
    Export(ExportArgs),
    /// Versions, snapshots, chunks, logical and stored bytes, dedup ratio.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Drop versions the retention policy does not keep and free what nothing reaches,
    /// on every tier; compact S3 packs. Writers may go on meanwhile.
    Gc(GcArgs),
    /// Check that every reachable tree node and chunk is present and intact.
    Fsck(FsckArgs),
}
