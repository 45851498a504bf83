//! `fvfsd`: the fvfs daemon and the administration commands of its store.
//!
//! Every command works with no config file, on the embedded default data directory
//! (`$FVFS_HOME`, else `~/.local/share/fvfs`). Exit codes: 0 success, 1 the command
//! ran but found problems (paths migrate skipped, fsck findings), 2 it could not run.

mod config;
mod export;
mod home;
mod mdns;
mod migrate;
mod report;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fvfsd",
    version,
    about = "fvfs daemon and store administration"
)]
struct Cli {
    /// Data directory (default: $FVFS_HOME, else the config's data_dir, else
    /// ~/.local/share/fvfs).
    #[arg(long, global = true, env = "FVFS_HOME", hide_env_values = true)]
    home: Option<PathBuf>,
    /// TOML config file (see config.example.toml); no file is needed.
    #[arg(long, global = true, env = "FVFS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Check that every reachable tree node and chunk is present and intact.
    Fsck {
        /// Also read and verify every data chunk.
        #[arg(long)]
        read_data: bool,
        /// Check every version, not only HEAD and the snapshots.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum SnapshotAction {
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fvfsd: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let config = match &cli.config {
        Some(path) => config::Config::load(path)?,
        None => config::Config::default(),
    };
    let dir = config.data_dir(cli.home)?;
    let home = home::Home::open(dir.clone(), &config.local_path(&dir))?;
    let repo = home.repo();
    match cli.command {
        Command::Serve { listen, no_mdns } => {
            for note in config.not_in_effect() {
                tracing::warn!("config: {note}");
            }
            let options = serve::Options {
                listen: listen.unwrap_or_else(|| config.listen()),
                mdns: config.daemon.mdns && !no_mdns,
                node_name: config.daemon.node_name.clone(),
                watermarks: config.local_watermarks(),
            };
            serve::run(&home, options).await?
        }
        Command::Token => println!("{}", serve::token(home.dir())?),
        Command::Migrate(args) => return migrate::run(&home, args).await,
        Command::Snapshot { action } => match action {
            SnapshotAction::Create { name } => {
                let v = repo.lock().await.snapshot_create(&name).await?;
                println!("snapshot {name} = version {}", v.number);
            }
            SnapshotAction::List { json } => report::snapshots(repo, json)?,
            SnapshotAction::Delete { name } => {
                let n = repo.lock().await.snapshot_delete(&name)?;
                println!("deleted snapshot {name} (version {n} stays in the log)");
            }
        },
        Command::Log { limit, json } => report::log(repo, limit, json)?,
        Command::Rollback { version } => {
            let target = repo.resolve(&version)?;
            let v = repo.lock().await.rollback(&target).await?;
            println!(
                "version {}: rolled back to version {}",
                v.number, target.number
            );
        }
        Command::Diff { a, b, json } => report::diff(repo, &a, &b, json).await?,
        Command::Export(args) => export::run(repo, args).await?,
        Command::Status { json } => report::status(&home, json)?,
        Command::Fsck { read_data, all } => return report::fsck(repo, read_data, all).await,
    }
    Ok(ExitCode::SUCCESS)
}
