//! `fvfsd`: the fvfs daemon and the administration commands of its store.
//!
//! Every command works with no config file, on the embedded default data directory
//! (`$FVFS_HOME`, else `~/.local/share/fvfs`). Exit codes: 0 success, 1 the command
//! ran but found problems (paths migrate skipped, fsck findings), 2 it could not run.

mod export;
mod home;
mod migrate;
mod report;

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
    /// Data directory (default: $FVFS_HOME, else ~/.local/share/fvfs).
    #[arg(long, global = true, env = "FVFS_HOME", hide_env_values = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    let home = home::Home::open(cli.home)?;
    let repo = home.repo();
    match cli.command {
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
        Command::Status { json } => report::status(&home, json).await?,
        Command::Fsck { read_data, all } => return report::fsck(repo, read_data, all).await,
    }
    Ok(ExitCode::SUCCESS)
}
