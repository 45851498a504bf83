//! Commands run through a daemon that holds the store: `fvfsd serve` writes its URL to
//! `HOME/daemon.url`, and a command that finds the store locked sends the same request
//! to it over HTTP and prints the answer exactly as it would have printed its own.
//! Migrate and export run inside the daemon (loopback callers only).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use fvfs_manifest::api::{encode_path, ChangeInfo, SnapshotInfo, StatusInfo, VersionInfo};
use fvfs_manifest::client::Api;
use hyper::Method;
use serde_json::{json, Value};

use crate::cli::{Command, SnapshotAction};
use crate::home::DAEMON_INFO;
use crate::{migrate, report};

/// Runs `command` through the daemon that holds the store in `dir`; `busy` is the
/// lock error, reported as is when no daemon answers.
pub async fn run(dir: &Path, busy: anyhow::Error, command: Command) -> Result<ExitCode> {
    let Ok(url) = std::fs::read_to_string(dir.join(DAEMON_INFO)) else {
        return Err(busy);
    };
    let token = std::fs::read_to_string(dir.join("token"))
        .ok()
        .map(|t| t.trim().to_owned());
    let api = Api::new(url.trim().to_owned(), token, "fvfsd");
    let result = through(&api, command).await;
    match result {
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(fvfs_manifest::client::Failure::Unreachable { .. })
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
        Command::Token => unreachable!("answered before the store is opened"),
        Command::Migrate(args) => {
            let outcome: migrate::Outcome = api
                .json(
                    Method::POST,
                    "/v1/admin/migrate",
                    Some(&serde_json::to_value(&args)?),
                )
                .await?;
            return Ok(outcome.report());
        }
        Command::Export(args) => {
            let v: Value = api
                .json(
                    Method::POST,
                    "/v1/admin/export",
                    Some(&serde_json::to_value(&args)?),
                )
                .await?;
            println!("{}", v["summary"].as_str().unwrap_or_default());
        }
        Command::Snapshot { action } => match action {
            SnapshotAction::Create { name } => {
                let v: VersionInfo = api
                    .json(
                        Method::POST,
                        "/v1/snapshots",
                        Some(&json!({ "name": name })),
                    )
                    .await?;
                println!("snapshot {name} = version {}", v.number);
            }
            SnapshotAction::List { json } => {
                report::snapshots(&api.get::<Vec<SnapshotInfo>>("/v1/snapshots").await?, json)?
            }
            SnapshotAction::Delete { name } => {
                let v: Value = api
                    .json(
                        Method::DELETE,
                        &format!("/v1/snapshots/{}", encode_path(name.as_bytes())),
                        None,
                    )
                    .await?;
                println!(
                    "deleted snapshot {name} (version {} stays in the log)",
                    v["version"]
                );
            }
        },
        Command::Log { limit, json } => {
            let q = limit.map(|n| format!("?limit={n}")).unwrap_or_default();
            report::log(
                &api.get::<Vec<VersionInfo>>(&format!("/v1/versions{q}"))
                    .await?,
                json,
            )?
        }
        Command::Rollback { version } => {
            let target: VersionInfo = api
                .get(&format!("/v1/versions/{}", encode_path(version.as_bytes())))
                .await?;
            let v: VersionInfo = api
                .json(
                    Method::POST,
                    "/v1/rollback",
                    Some(&json!({ "to": version })),
                )
                .await?;
            println!(
                "version {}: rolled back to version {}",
                v.number, target.number
            );
        }
        Command::Diff { a, b, json } => {
            let q = format!(
                "?a={}&b={}",
                encode_path(a.as_bytes()),
                encode_path(b.as_bytes())
            );
            report::diff(
                &api.get::<Vec<ChangeInfo>>(&format!("/v1/diff{q}")).await?,
                json,
            )?
        }
        Command::Status { json } => {
            let v: Value = api.get("/v1/status").await?;
            let store: StatusInfo =
                serde_json::from_value(v["store"].clone()).context("status answer")?;
            report::status(&store, &format!("served by {}", api.base), json)?
        }
        Command::Fsck { read_data, all } => {
            let report: fvfs_fsck::Report = api
                .json(
                    Method::POST,
                    &format!("/v1/admin/fsck?read_data={read_data}&all={all}"),
                    None,
                )
                .await?;
            print!("{}", report.render());
            return Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
