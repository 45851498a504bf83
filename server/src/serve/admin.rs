//! Status, devices, administration and metrics routes.

use std::sync::Arc;

use fvfs_manifest::meta::TIER_LOCAL;
use hyper::Response;
use serde_json::json;

use super::http::{full, ok, ApiError, Body};
use super::State;

/// The tiers this daemon runs, with their contents. Only the local tier exists until
/// NAS and S3 tiering land; it is always available and has no replication queue.
fn tiers(state: &State) -> Result<serde_json::Value, ApiError> {
    let t = state.repo.totals()?;
    Ok(json!([{
        "name": "local",
        "bit": TIER_LOCAL,
        "chunks": t.chunks,
        "bytes": t.stored_bytes,
        "high_watermark_bytes": state.watermarks.map(|w| w.0),
        "low_watermark_bytes": state.watermarks.map(|w| w.1),
        "available": true,
        "queue_depth": 0,
    }]))
}

pub async fn status(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    ok(&json!({
        "daemon": {
            "version": env!("CARGO_PKG_VERSION"),
            "node_id": state.node_id,
            "listen": state.listen.to_string(),
            "auth": state.token.is_some(),
            "uptime_secs": state.started.elapsed().as_secs(),
        },
        "store": state.repo.status_info()?,
        "tiers": tiers(state)?,
    }))
}

pub fn devices(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    ok(&state.devices.list())
}

/// Makes everything accepted so far durable: staged chunks and their records.
pub async fn flush(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    state.repo.checkpoint(&state.staged).await?;
    ok(&json!({"flushed": true, "tiers": ["local"]}))
}

pub fn evict(_state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    ok(
        &json!({"evicted_chunks": 0, "evicted_bytes": 0, "detail": "no colder tier is configured: local chunks are never evicted"}),
    )
}

pub fn wal(_state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    ok(&json!({"tiers": [], "pending": 0}))
}

pub async fn fsck(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    let mut versions: Vec<_> = state.repo.head()?.into_iter().collect();
    for (_, n) in state.repo.snapshots()? {
        versions.push(state.repo.version(n)?);
    }
    let report = fvfs_fsck::check(&state.repo, &versions, false).await?;
    let problems: Vec<_> = report
        .problems
        .iter()
        .map(|p| json!({"chunk": p.id.to_hex(), "what": p.what, "path": p.path}))
        .collect();
    ok(
        &json!({"versions": report.versions, "nodes": report.nodes, "data_chunks": report.data_chunks, "problems": problems}),
    )
}

pub async fn metrics(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    let t = state.repo.totals()?;
    let gauges = [
        (
            "fvfs_tier_chunks",
            "Chunks held per tier.",
            "{tier=\"local\"}".to_owned(),
            t.chunks as f64,
        ),
        (
            "fvfs_tier_bytes",
            "Stored bytes per tier.",
            "{tier=\"local\"}".to_owned(),
            t.stored_bytes as f64,
        ),
        (
            "fvfs_replication_queue_depth",
            "Chunks waiting to reach a tier.",
            "{tier=\"nas\"}".to_owned(),
            0.0,
        ),
        (
            "fvfs_replication_queue_depth",
            "Chunks waiting to reach a tier.",
            "{tier=\"s3\"}".to_owned(),
            0.0,
        ),
        (
            "fvfs_versions",
            "Versions in the log.",
            String::new(),
            state.repo.head()?.map_or(0, |v| v.number) as f64,
        ),
    ];
    Ok(Response::builder()
        .header("content-type", "text/plain; version=0.0.4")
        .body(full(state.metrics.render(&gauges)))
        .expect("valid response"))
}
