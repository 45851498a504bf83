//! `fvfs-garage`: a throwaway Garage S3 server for shell scripts (scripts/test.sh, the
//! bench scripts): `source "$(fvfs-garage start DIR)"` starts a node in DIR and exports
//! AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_DEFAULT_REGION,
//! FVFS_S3_ENDPOINT, FVFS_S3_BUCKET, GARAGE_PID, GARAGE_CONFIG, GARAGE_DIR, GARAGE_BIN,
//! GARAGE_ADMIN_ENDPOINT and GARAGE_ADMIN_TOKEN; `cluster DIR N` does the same for N
//! nodes in DIR/node1..N (DIR/env describes node 1, plus GARAGE_CLUSTER_DIR,
//! GARAGE_CLUSTER_NODES and GARAGE_CLUSTER_S3_ENDPOINTS), and each node folder works
//! with stop, kill, restart and status.
//!
//! # Invariants
//! - Stdout carries only the env file's path (start, restart, cluster); messages go to
//!   stderr.
//! - A command that changes a folder holds its lock (`DIR/.lock`) throughout.
//! - A node started here keeps running after the command exits (it is detached);
//!   a start that fails leaves nothing running.

mod install;
mod lock;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Parser;
use fvfs_garage::{start_cluster, start_nodes, stop_nodes, write_env, Node, Settings};

use crate::lock::DirLock;

/// A throwaway Garage (S3) server on loopback, for tests and benches. Environment:
/// GARAGE_ROOT, GARAGE_BIN, GARAGE_VERSION, GARAGE_START_TIMEOUT, GARAGE_STOP_TIMEOUT.
#[derive(Parser)]
#[command(name = "fvfs-garage")]
enum Cmd {
    /// Build garage into $GARAGE_ROOT with cargo install, unless $GARAGE_BIN exists.
    Install,
    /// Start a fresh node in DIR; print the path of DIR/env.
    Start { dir: PathBuf },
    /// Stop the node in DIR: SIGTERM, a bounded wait, then SIGKILL.
    Stop { dir: PathBuf },
    /// SIGKILL the node in DIR (a crash).
    Kill { dir: PathBuf },
    /// Start the node in DIR again with its data, ports and keys; print DIR/env.
    Restart { dir: PathBuf },
    /// Exit 0 if the node in DIR runs, 1 if not.
    Status { dir: PathBuf },
    /// Create bucket NAME on the node in DIR, allowed to its key.
    Bucket { dir: PathBuf, name: String },
    /// Start a fresh cluster of NODES nodes in DIR/node1..; print the path of DIR/env.
    Cluster {
        dir: PathBuf,
        #[arg(default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
        nodes: u8,
    },
    /// Stop every node of the cluster in DIR, all at once.
    ClusterStop { dir: PathBuf },
}

fn main() -> ExitCode {
    let cmd = Cmd::parse();
    match Settings::from_env().and_then(|s| run(cmd, &s)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fvfs-garage: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd, settings: &Settings) -> Result<ExitCode> {
    let lock = |dir: &Path| {
        std::fs::create_dir_all(dir)?;
        DirLock::acquire(dir, settings.start_timeout + settings.stop_timeout * 2)
    };
    match cmd {
        Cmd::Install => install::install(settings)?,
        Cmd::Start { dir } => {
            let _lock = lock(&dir)?;
            let node = start_nodes(&[dir], settings)?.pop().expect("one node");
            eprintln!(
                "fvfs-garage: garage ready: endpoint {} bucket {}",
                node.s3().endpoint,
                node.s3().bucket
            );
            println!("{}", node.dir.join("env").display());
            node.detach();
        }
        Cmd::Stop { dir } => stop(&dir, settings, false, lock)?,
        Cmd::Kill { dir } => stop(&dir, settings, true, lock)?,
        Cmd::Restart { dir } => {
            let _lock = lock(&dir)?;
            let mut node = Node::open(&dir, settings)?;
            node.restart()?;
            let env = write_env(&node, settings)?;
            let pid = node.pid().unwrap_or_default();
            eprintln!("fvfs-garage: garage ready again, pid {pid}");
            println!("{}", env.display());
            node.detach();
        }
        Cmd::Status { dir } => {
            let running = dir.join("state.json").exists() && Node::open(&dir, settings)?.running();
            let state = if running { "running" } else { "not running" };
            eprintln!("fvfs-garage: garage in {} is {state}", dir.display());
            return Ok(if running {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Cmd::Bucket { dir, name } => {
            if !valid_bucket(&name) {
                bail!("invalid bucket name {name:?} (3-63 characters: a-z 0-9 . -)");
            }
            let _lock = lock(&dir)?;
            let mut node = Node::open(&dir, settings)?;
            if !node.running() {
                bail!("garage in {} is not running", dir.display());
            }
            node.add_bucket(&name)?;
            eprintln!("fvfs-garage: bucket {name} ready");
        }
        Cmd::Cluster { dir, nodes } => {
            let _lock = lock(&dir)?;
            let nodes = start_cluster(&dir, nodes.into(), settings)?;
            eprintln!(
                "fvfs-garage: cluster of {} nodes ready: endpoint {}",
                nodes.len(),
                nodes[0].s3().endpoint
            );
            println!("{}", dir.join("env").display());
            nodes.into_iter().for_each(Node::detach);
        }
        Cmd::ClusterStop { dir } => {
            if !dir.exists() {
                eprintln!(
                    "fvfs-garage: {} does not exist; nothing to stop",
                    dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let _lock = lock(&dir)?;
            let dirs = (1..)
                .map(|k| dir.join(format!("node{k}")))
                .take_while(|d| d.join("state.json").exists());
            let mut locks = Vec::new();
            let mut nodes = Vec::new();
            for d in dirs {
                locks.push(lock(&d)?);
                nodes.push(Node::open(&d, settings)?);
            }
            stop_nodes(&mut nodes)?;
            eprintln!(
                "fvfs-garage: cluster in {} stopped ({} nodes)",
                dir.display(),
                nodes.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `stop DIR` and `kill DIR`: nothing to do for a node that does not run.
fn stop(
    dir: &Path,
    settings: &Settings,
    kill: bool,
    lock: impl Fn(&Path) -> Result<DirLock>,
) -> Result<()> {
    if !dir.join("state.json").exists() {
        eprintln!("fvfs-garage: no node in {}; nothing to stop", dir.display());
        return Ok(());
    }
    let _lock = lock(dir)?;
    let mut node = Node::open(dir, settings)?;
    match node.pid() {
        Some(pid) if kill => {
            node.kill()?;
            eprintln!("fvfs-garage: killed garage pid {pid}");
        }
        Some(pid) => {
            node.stop()?;
            eprintln!("fvfs-garage: stopped garage pid {pid}");
        }
        // Drops a stale pid file.
        None => {
            node.stop()?;
            eprintln!("fvfs-garage: garage in {} is not running", dir.display());
        }
    }
    Ok(())
}

/// S3's rule for bucket names, as Garage applies it.
fn valid_bucket(name: &str) -> bool {
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && ok(b[0])
        && ok(b[b.len() - 1])
        && b.iter().all(|&c| ok(c) || c == b'.' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3s_rule() {
        for good in ["abc", "fvfs-test", "a.b-c9", &"a".repeat(63)] {
            assert!(valid_bucket(good), "{good}");
        }
        for bad in ["ab", "-ab", "ab-", "aBc", "a_b", "", &"a".repeat(64)] {
            assert!(!valid_bucket(bad), "{bad}");
        }
    }
}
