//! Commands run through a daemon that holds the store: `fvfsd serve` writes its URL to
//! `HOME/daemon.url`, and a command that finds the store locked sends the same request
//! to it over HTTP and prints the answer exactly as it would have printed its own.
//! Migrate and export run inside the daemon (loopback callers only).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use fvfs_api::client::Api;
use fvfs_api::reports::{FsckReport, GcReport, Outcome, TaskProgress};
use hyper::Method;

use crate::cli::{Command, SnapshotAction};
use crate::home::DAEMON_INFO;
use crate::report;

/// Runs `command` through the daemon that holds the store in `dir`; `busy` is the
/// lock error, reported as is when no daemon answers.
pub async fn run(dir: &Path, busy: anyhow::Error, command: Command) -> Result<ExitCode> {
    let Ok(url) = std::fs::read_to_string(dir.join(DAEMON_INFO)) else {
        return Err(busy);
    };
    // fvfsd on the daemon's machine administers it: gc, snapshot delete, fsck...
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .ok()
        .map(|t| t.trim().to_owned());
    // Beyond loopback the daemon speaks HTTPS: its identity is in the same folder.
    let pin = match url.starts_with("https:") {
        true => crate::serve::tls::Identity::load(dir)
            .ok()
            .map(|i| i.fingerprint),
        false => None,
    };
    let api = Api::new(url.trim().to_owned(), token, "fvfsd", pin);
    let result = through(&api, command).await;
    match result {
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(fvfs_api::client::Failure::Unreachable { .. })
            ) =>
        {
            Err(busy)
        }
        other => other,
    }
}

async fn through(api: &Api, command: Command) -> Result<ExitCode> {
    match command {
        Command::Serve { .. } => {
            anyhow::bail!("a daemon already serves this store at {}", api.base)
        }
        Command::Token { .. }
        | Command::Pair { .. }
        | Command::Key { .. }
        | Command::ConvertStore => {
            unreachable!("answered before the store is opened")
        }
        Command::Recover { .. } => {
            anyhow::bail!("a daemon serves this store at {}: recover rebuilds a lost store, stop the daemon and use an empty data directory", api.base)
        }
        Command::Migrate(mut args) => {
            args.inline_exclude_files()?;
            let outcome: Outcome = api.json(Method::POST, "/v1/admin/migrate", &args).await?;
            return Ok(report::outcome(&outcome, "skipped"));
        }
        Command::Export(args) => {
            let outcome: Outcome = api.json(Method::POST, "/v1/admin/export", &args).await?;
            return Ok(report::outcome(&outcome, "not exported"));
        }
        Command::Snapshot { action } => match action {
            SnapshotAction::Create { name } => fvfs_api::outln!(
                "snapshot {name} = version {}",
                api.snapshot_create(&name).await?.number
            ),
            SnapshotAction::List { json } => report::snapshots(&api.snapshots().await?, json),
            SnapshotAction::Delete { name } => {
                let n = api.snapshot_delete(&name).await?;
                fvfs_api::outln!("deleted snapshot {name} (version {n} stays in the log)");
            }
        },
        Command::Log { limit, json } => report::log(&api.log(limit).await?, json),
        Command::Rollback { version } => {
            let target = api.version(&version).await?;
            let v = api.rollback(&version).await?;
            fvfs_api::out!("{}", fvfs_api::show::rolled_back(&v, &target));
        }
        Command::Diff { a, b, json } => report::diff(&api.diff(&a, &b).await?, json),
        Command::Status { json } => report::status(
            &api.status().await?.store,
            &format!("served by {}", api.base),
            json,
        ),
        Command::Gc(args) => {
            let path = format!("/v1/admin/gc?{}", args.to_query());
            let work = api.call(Method::POST, &path);
            let report: GcReport =
                crate::progress::with_bar_from(|| running(api, "gc"), work).await?;
            return Ok(report::gc(&report));
        }
        Command::Fsck {
            read_data,
            all,
            version,
            repair,
        } => {
            let version = version
                .map(|v| format!("&version={}", fvfs_api::path::encode_path(v.as_bytes())))
                .unwrap_or_default();
            let path =
                format!("/v1/admin/fsck?read_data={read_data}&all={all}&repair={repair}{version}");
            let work = api.call(Method::POST, &path);
            let report: FsckReport =
                crate::progress::with_bar_from(|| running(api, "fsck"), work).await?;
            return Ok(report::fsck(&report));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The daemon's progress of a running `task`, from its status.
async fn running(api: &Api, task: &str) -> Option<TaskProgress> {
    let status = api.status().await.ok()?;
    status.maintenance.into_iter().find(|m| m.task == task)
}
