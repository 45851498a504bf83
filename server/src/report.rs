//! Read-only commands and their output: status, log, snapshot list, diff, fsck.
//! The views and their human-readable form are `fvfs_manifest::api`'s, shared with the
//! daemon's answers and with fvfsc; `--json` prints the same views for scripts.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use fvfs_manifest::api::show;
use fvfs_manifest::Repo;
use serde::Serialize;

use crate::home::Home;

/// Prints `value` as JSON, or its human form.
pub fn print<T: Serialize>(value: &T, json: bool, human: impl FnOnce(&T) -> String) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    } else {
        out.write_all(human(value).as_bytes())?;
    }
    Ok(())
}

pub fn status(home: &Home, json: bool) -> Result<()> {
    let s = home.repo().status_info()?;
    print(&s, json, |s| {
        format!("data dir:    {}\n{}", home.dir().display(), show::status(s))
    })
}

pub fn log(repo: &Repo, limit: Option<usize>, json: bool) -> Result<()> {
    print(&repo.log_info(limit.unwrap_or(usize::MAX))?, json, |v| {
        show::log(v)
    })
}

pub fn snapshots(repo: &Repo, json: bool) -> Result<()> {
    print(&repo.snapshot_infos()?, json, |s| show::snapshots(s))
}

pub async fn diff(repo: &Repo, a: &str, b: &str, json: bool) -> Result<()> {
    print(&repo.diff_info(a, b).await?, json, |c| show::diff(c))
}

pub async fn fsck(repo: &Repo, read_data: bool, all: bool) -> Result<ExitCode> {
    let mut versions = Vec::new();
    if all {
        for v in repo.log() {
            versions.push(v?);
        }
    } else {
        versions.extend(repo.head()?);
        for (_, n) in repo.snapshots()? {
            versions.push(repo.version(n)?);
        }
    }
    let report = fvfs_fsck::check(repo, &versions, read_data).await?;
    for p in &report.problems {
        println!("problem: {} (chunk {}, used by {})", p.what, p.id, p.path);
    }
    let read = if read_data {
        format!(
            " ({} read and verified)",
            show::bytes(report.data_bytes_read)
        )
    } else {
        String::new()
    };
    println!(
        "checked {} versions: {} tree nodes, {} data chunks{read}; {} problems",
        report.versions,
        report.nodes,
        report.data_chunks,
        report.problems.len()
    );
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
