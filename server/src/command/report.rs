//! How the store commands print their answers (the views and their human form are
//! `fvfs_api`'s, shared with the daemon's answers and with fvfsc; `--json` prints the
//! views themselves), and the exit codes their findings give.

use std::process::ExitCode;

use fvfs_api::reports::{FsckReport, GcReport, Outcome};
use fvfs_api::show;
use fvfs_api::views::StatusInfo;

/// Prints the outcome of a bulk command, each path left out as
/// `fvfsd: <what> <path>: <reason>`; exit code 1 if any was.
pub fn outcome(o: &Outcome, what: &str) -> ExitCode {
    for s in &o.skipped {
        eprintln!("fvfsd: {what} {s}");
    }
    for n in &o.notes {
        fvfs_api::outln!("{n}");
    }
    fvfs_api::outln!("{}", o.summary);
    if o.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn status(s: &StatusInfo, where_: &str, json: bool) {
    fvfs_api::out::json_or(s, json, |s| {
        format!("store:       {where_}\n{}", show::status(s))
    })
}

/// Prints an fsck report; exit code 1 if it found problems.
pub fn fsck(report: &FsckReport) -> ExitCode {
    fvfs_api::out!("{}", show::fsck(report));
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints a gc report; exit code 1 if something is left for the next run.
pub fn gc(report: &GcReport) -> ExitCode {
    fvfs_api::out!("{}", show::gc(report));
    if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
