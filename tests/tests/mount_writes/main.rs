//! Writing through the mount: close() queues a journaled write-back and batches commit
//! what closed together as one version; a mount killed (or a cache folder that lost
//! power) loses nothing that was fsynced, and the next mount commits what was closed;
//! two mounts writing the same files in batches keep both versions; real programs
//! (untar, git clone, cargo build) work on it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;

use fvfs_powerloss::Harness;
use fvfs_tests::daemon::Daemon;
use fvfs_tests::mount::{self, Mount};
use fvfs_tests::{bin, run_ok, tree, until, Fvfsd};

mod batches;
mod kills;

fn serve(store: &Fvfsd) -> Daemon {
    Daemon::start(store, "127.0.0.1:0", &["--no-mdns"])
}

/// `src` archived by tar, with times to the nanosecond (pax).
fn tar_of(src: &Path, archive: &Path) {
    run_ok(
        Command::new("tar")
            .arg("--format=posix")
            .arg("-cf")
            .arg(archive)
            .arg("-C")
            .arg(src)
            .arg("."),
    );
}

/// What a writer did before its mount died.
#[derive(Default)]
struct Written {
    /// Closed for sure: path -> content.
    closed: BTreeMap<String, Vec<u8>>,
    /// Of those, fsynced before their close.
    synced: Vec<String>,
    /// Closed or being written when the mount died: committed whole or not at all.
    in_flight: BTreeMap<String, Vec<u8>>,
}

/// The content of the writer's file `i`.
fn content(i: u64) -> Vec<u8> {
    tree::bytes(i, 500 + (i as usize * 7919) % 300_000, i.is_multiple_of(2))
}

/// Runs `git ARGS` in `dir`, which must succeed; its output.
fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
            .args(args),
    )
}

/// The files and symlinks of a work tree (`.git` left out), each with its content's
/// hash or its target.
fn work_tree(root: &Path) -> BTreeMap<std::path::PathBuf, tree::Node> {
    tree::snapshot(root)
        .into_iter()
        .filter(|(rel, node)| !rel.starts_with(".git") && !matches!(node, tree::Node::Dir { .. }))
        .map(|(rel, node)| {
            let node = match node {
                tree::Node::File {
                    content_hash, len, ..
                } => tree::Node::File {
                    mode: 0,
                    mtime_ns: 0,
                    content_hash,
                    len,
                },
                tree::Node::Symlink { target, .. } => tree::Node::Symlink {
                    target,
                    mtime_ns: 0,
                },
                dir => dir,
            };
            (rel, node)
        })
        .collect()
}

/// The regular files under `dir`, outside `.git`, counted while a program changes
/// them (what vanishes meanwhile is not counted).
fn files_in(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name() != ".git")
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_in(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}
