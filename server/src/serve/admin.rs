//! Status, devices, administration and metrics routes.

use std::net::SocketAddr;
use std::sync::Arc;

use fvfs_api::reports::{
    Backlog, DaemonInfo, Devices, Eviction, Flushed, FsckReport, GcReport, Outcome, Status,
    TierStatus,
};
use fvfs_api::routes::{call, Call};
use fvfs_api::ErrorCode;
use fvfs_engine::jobs::{Fsck, Gc};
use fvfs_tiering::TierId;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::de::DeserializeOwned;

use super::http::{full, ApiError, Body};
use super::jobs::{Evict, Flush};
use super::store::json_body;
use super::State;
use crate::export::Export;
use crate::migrate::Migrate;

/// The tiers this daemon runs, warmest first: the local one, always available with
/// nothing queued, then each colder tier with its availability and replication queue.
pub(super) fn tiers(state: &State) -> Result<Vec<TierStatus>, ApiError> {
    let totals = state.repo.totals()?;
    let mut tiers = Vec::new();
    for tier in state.tier_set.all() {
        let (chunks, bytes) = totals.held(tier.id.bit());
        let marks = tier.run.watermarks;
        let mut status = TierStatus {
            name: tier.id.name().into(),
            bit: tier.id.bit(),
            chunks,
            bytes,
            disk_bytes: None,
            high_watermark_bytes: marks.map(|w| w.0),
            low_watermark_bytes: marks.map(|w| w.1),
            available: true,
            queue_depth: 0,
            oldest_age_secs: None,
            last_error: None,
        };
        if let Some(r) = state.replicators.iter().find(|r| r.bit == tier.id.bit()) {
            let q = r
                .status(&state.repo)
                .map_err(|e| ApiError::new(ErrorCode::DbError, e))?;
            status.available = r.available();
            status.queue_depth = q.pending;
            status.oldest_age_secs = q.oldest_age_secs;
            status.last_error = r.last_error().or(q.last_error);
        }
        tiers.push(status);
    }
    Ok(tiers)
}

/// `tiers` with what the local and NAS tiers' files hold (their stores count it in
/// memory; an unavailable NAS says nothing). Never asked of S3, which may list a bucket.
async fn on_disk(state: &State, mut tiers: Vec<TierStatus>) -> Vec<TierStatus> {
    for (status, tier) in tiers.iter_mut().zip(state.tier_set.all()) {
        if tier.id != TierId::S3 {
            status.disk_bytes = tier.store.usage().await.ok().map(|u| u.bytes);
        }
    }
    tiers
}

pub async fn status(state: &Arc<State>) -> Result<Status, ApiError> {
    Ok(Status {
        daemon: DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            node_id: state.node_id.clone(),
            listen: state.listen.to_string(),
            fingerprint: state.fingerprint.to_string(),
            auth: !state.open_on_loopback,
            uptime_secs: state.started.elapsed().as_secs(),
        },
        store: state.repo.status_info()?,
        tiers: on_disk(state, tiers(state)?).await,
        maintenance: state.jobs.maintenance().snapshots(),
        auto_snapshots: state
            .auto_snapshots
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        last_tasks: state.jobs.maintenance().outcomes(),
        workers: state.workers.status(),
    })
}

pub fn devices(state: &Arc<State>) -> Devices {
    state.devices.list()
}

/// `POST /v1/admin/flush`: a [`Flush`] job.
pub async fn flush(state: &Arc<State>) -> Result<Flushed, ApiError> {
    state
        .jobs
        .run(Flush::of(state))
        .await
        .ok_or_else(stopping)?
}

/// `POST /v1/admin/evict`: an [`Evict`] job.
pub async fn evict(state: &Arc<State>) -> Result<Eviction, ApiError> {
    let evict = Evict(state.evictor.clone());
    state.jobs.run(evict).await.ok_or_else(stopping)?
}

/// Replication work waiting per colder tier: count, oldest age, last error.
pub fn wal(state: &Arc<State>) -> Result<Backlog, ApiError> {
    let tiers: Vec<TierStatus> = tiers(state)?.into_iter().skip(1).collect();
    let pending = tiers.iter().map(|t| t.queue_depth).sum();
    Ok(Backlog { tiers, pending })
}

/// `POST /v1/admin/fsck` with [`fvfs_api::args::FsckArgs`] as its body (none: the defaults); the check
/// runs as a job, to its end even if the caller goes away.
pub async fn fsck(state: &Arc<State>, req: Request<Incoming>) -> Result<FsckReport, ApiError> {
    let args = args_body::<call::AdminFsck>(req).await?;
    Ok(state
        .jobs
        .run(Fsck(args))
        .await
        .ok_or_else(stopping)??
        .report)
}

/// `POST /v1/admin/gc` with [`fvfs_api::args::GcArgs`] as its body (none: the defaults): a collection
/// while the daemon serves (never offline: writers run), as a job that runs to its end
/// even if the caller goes away.
pub async fn gc(state: &Arc<State>, req: Request<Incoming>) -> Result<GcReport, ApiError> {
    let args = args_body::<call::AdminGc>(req).await?;
    let opts = state.gc.options(&args, false);
    Ok(state.jobs.run(Gc(opts)).await.ok_or_else(stopping)??)
}

/// The answer to a request whose job the daemon's shutdown did not let run.
fn stopping() -> ApiError {
    ApiError::new(ErrorCode::Unavailable, "the daemon is shutting down")
}

/// Route `C`'s arguments: a JSON body, or the defaults for none. A query string is
/// refused rather than ignored: `gc?dry_run=true` must not collect.
async fn args_body<C: Call>(req: Request<Incoming>) -> Result<C::Request, ApiError>
where
    C::Request: Default + DeserializeOwned,
{
    if req.uri().query().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::bad_request(
            "the arguments go in a JSON body, e.g. {\"dry_run\": true}, not in the query string",
        ));
    }
    let raw = super::store::body(req, 1 << 16).await?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(C::Request::default());
    }
    serde_json::from_slice(&raw).map_err(|e| ApiError::bad_request(format!("arguments: {e}")))
}

/// Migrate and export act on the daemon's own file system: only for callers on this machine.
fn local_only(peer: SocketAddr) -> Result<(), ApiError> {
    if peer.ip().is_loopback() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "only callers on the daemon's machine may migrate or export",
        ))
    }
}

pub async fn migrate(
    state: &Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Outcome, ApiError> {
    local_only(peer)?;
    let args = json_body::<call::AdminMigrate>(req, 1 << 20, "migrate arguments").await?;
    let caches = state.stat_caches.clone();
    let migrated = state.jobs.run(Migrate { args, caches }).await;
    migrated
        .ok_or_else(stopping)?
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))
}

pub async fn export(
    state: &Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Outcome, ApiError> {
    local_only(peer)?;
    let args = json_body::<call::AdminExport>(req, 1 << 20, "export arguments").await?;
    let s3 = state.tier_set.s3().cloned();
    let exported = state.jobs.run(Export { args, s3 }).await;
    exported
        .ok_or_else(stopping)?
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))
}

pub async fn metrics(state: &Arc<State>) -> Result<Response<Body>, ApiError> {
    let t = state.repo.totals()?;
    let mut gauges = vec![
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
    ];
    let (open, refused) = state.admission.counts();
    gauges.push((
        "fvfs_connections_open",
        "HTTP connections open now.",
        String::new(),
        open as f64,
    ));
    gauges.push((
        "fvfs_connections_refused",
        "Connections closed at once since start: over the cap in all or per peer address.",
        String::new(),
        refused as f64,
    ));
    tier_gauges(state, &mut gauges)?;
    worker_gauges(state, &mut gauges);
    gauges.push((
        "fvfs_versions",
        "Versions in the log.",
        String::new(),
        state.repo.head()?.map_or(0, |v| v.number) as f64,
    ));
    // The exposition format wants each metric's samples together.
    gauges.sort_by(|a, b| a.0.cmp(b.0));
    Ok(Response::builder()
        .header("content-type", "text/plain; version=0.0.4")
        .body(full(state.metrics.render(&gauges)))
        .expect("valid response"))
}

/// A gauge of `/metrics`: name, help, labels, value.
type Gauge = (&'static str, &'static str, String, f64);

/// The colder tiers: replication queues, availability, promotions, S3 requests.
fn tier_gauges(state: &State, gauges: &mut Vec<Gauge>) -> Result<(), ApiError> {
    for r in &state.replicators {
        let q = r
            .status(&state.repo)
            .map_err(|e| ApiError::new(ErrorCode::DbError, e))?;
        let labels = format!("{{tier=\"{}\"}}", r.name);
        gauges.push((
            "fvfs_replication_queue_depth",
            "Chunks waiting to reach a tier.",
            labels.clone(),
            q.pending as f64,
        ));
        gauges.push((
            "fvfs_tier_available",
            "Whether a tier answers (1) or not (0).",
            labels,
            f64::from(u8::from(r.available())),
        ));
    }
    if let Some(t) = state.tier_set.reads() {
        gauges.push((
            "fvfs_promoted_chunks",
            "Chunks read from a colder tier and copied back to local.",
            String::new(),
            t.promoted() as f64,
        ));
        gauges.push((
            "fvfs_repaired_chunks",
            "Corrupt local copies replaced from a colder tier.",
            String::new(),
            t.repaired() as f64,
        ));
    }
    if let Some(s3) = state.tier_set.s3() {
        let r = s3.requests();
        for (method, n, bytes) in [("PUT", r.puts, r.put_bytes), ("GET", r.gets, r.get_bytes)] {
            let labels = format!("{{method=\"{method}\"}}");
            gauges.push((
                "fvfs_s3_requests",
                "Requests sent to S3 since start, by method.",
                labels.clone(),
                n as f64,
            ));
            gauges.push((
                "fvfs_s3_bytes",
                "Bytes carried by requests to S3 since start (PUT bodies sent, GET bodies received).",
                labels,
                bytes as f64,
            ));
        }
    }
    Ok(())
}

/// Each background worker's rounds, failures and whether it is busy.
fn worker_gauges(state: &State, gauges: &mut Vec<Gauge>) {
    for w in state.workers.status() {
        let labels = format!("{{worker=\"{}\"}}", w.name);
        gauges.push((
            "fvfs_worker_rounds",
            "Rounds a background worker ran since start.",
            labels.clone(),
            w.rounds as f64,
        ));
        gauges.push((
            "fvfs_worker_failures",
            "Rounds of a background worker that failed since start.",
            labels.clone(),
            w.failures as f64,
        ));
        gauges.push((
            "fvfs_worker_busy",
            "Whether a background worker is in a round now (1) or waiting (0).",
            labels,
            f64::from(u8::from(w.busy)),
        ));
    }
}
