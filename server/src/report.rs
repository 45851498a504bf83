//! How read-only commands print: the same for a store opened here and for one reached
//! through a running daemon. The views and their human form are
//! `fvfs_api`'s, shared with the daemon's answers and with fvfsc; `--json`
//! prints the views themselves.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use fvfs_api::show;
use fvfs_api::views::{ChangeInfo, SnapshotInfo, StatusInfo, VersionInfo};
use serde::Serialize;

/// What a bulk command (migrate, export) did: its summary line, and each path it
/// could not do, with the reason.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub summary: String,
    pub skipped: Vec<String>,
    /// The version made (migrate) or read (export).
    pub version: Option<u64>,
}

impl Outcome {
    /// Prints the outcome, each path left out as `fvfsd: <what> <path>: <reason>`;
    /// exit code 1 if any was.
    pub fn report(&self, what: &str) -> ExitCode {
        for s in &self.skipped {
            eprintln!("fvfsd: {what} {s}");
        }
        fvfs_api::outln!("{}", self.summary);
        if self.skipped.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

/// Prints `value` as JSON, or its human form.
pub fn print<T: Serialize + ?Sized>(
    value: &T,
    json: bool,
    human: impl FnOnce(&T) -> String,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    } else {
        out.write_all(human(value).as_bytes())?;
    }
    Ok(())
}

pub fn status(s: &StatusInfo, where_: &str, json: bool) -> Result<()> {
    print(s, json, |s| {
        format!("store:       {where_}\n{}", show::status(s))
    })
}

pub fn log(v: &[VersionInfo], json: bool) -> Result<()> {
    print(v, json, show::log)
}

pub fn snapshots(s: &[SnapshotInfo], json: bool) -> Result<()> {
    print(s, json, show::snapshots)
}

pub fn diff(c: &[ChangeInfo], json: bool) -> Result<()> {
    print(c, json, show::diff)
}

/// Prints an fsck report; exit code 1 if it found problems.
pub fn fsck(report: &fvfs_fsck::Report) -> ExitCode {
    fvfs_api::out!("{}", report.render());
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints a gc report; exit code 1 if something is left for the next run.
pub fn gc(report: &fvfs_fsck::gc::Report) -> ExitCode {
    fvfs_api::out!("{}", report.render());
    if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
