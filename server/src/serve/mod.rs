//! `fvfsd serve`: the HTTP/1.1 API (hyper) over the store, with mDNS registration and
//! graceful shutdown.
//!
//! Routes (see also README.md): files, meta, ls, du by path; chunks, the missing-ids
//! batch and tree nodes by id; versions, snapshots, rollback, diff and commits; status,
//! devices, admin and `/metrics`. Every error is JSON `{"error", "detail"}`.
//!
//! # Invariants
//! - Requests a browser page could forge are refused first ([`guard`]), on every
//!   listen address.
//! - Beyond loopback only HTTPS is served ([`tls`]): a request over plain HTTP from
//!   another machine is refused before anything else, so a token is never accepted
//!   from the clear.
//! - Every route needs a role ([`needs`]): read, write or admin. A token carries one
//!   ([`auth`]); on a loopback listen address a request without a token may read and
//!   write, never administer. Any other listen address requires `Bearer TOKEN` on every
//!   route. Both are checked before a body is read.
//! - Connections are capped in all and per peer address, a request head must arrive
//!   within the header timeout (which also ends idle connections), and a body that
//!   stalls longer than it is cut off ([`limits`]).
//! - Paths are percent-decoded then normalised by `fvfs_manifest::path`, which refuses
//!   `..` and NUL: no request can name anything outside the tree.
//! - Bodies stream both ways in chunk-sized pieces; no handler holds a whole file.
//! - Every tree change goes through the group-commit [`writer`], and is answered only
//!   once durable. On SIGINT/SIGTERM the daemon stops accepting, lets requests in flight
//!   finish (up to 30 s), stops the replication workers after their current round
//!   (up to 10 s each), then flushes the store and the database.

mod admin;
mod auth;
pub mod auto;
mod dav;
mod files;
mod guard;
mod http;
mod jobs;
mod limits;
mod metrics;
mod peer_uid;
mod recompress;
mod routes;
mod samples;
mod store;
pub mod tls;
mod versions;
mod web;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fvfs_manifest::{Pending, Repo};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use fvfs_engine::Workers;
use fvfs_fsck::retention::SnapshotPolicy;
use fvfs_tiering::evict::Weights;
use fvfs_tiering::{Evictor, Replicator};

use crate::mdns::{Announcement, Devices};
pub use auth::{command as token_command, Role, TokenAction};
use fvfs_engine::Engine;
pub use limits::Limits;
use metrics::Metrics;
use routes::handle;
pub use tls::pair_command;
use writer::Writer;

/// Largest request head (request line and headers) accepted; larger gets 431.
const MAX_HEAD: usize = 32 * 1024;

pub struct State {
    repo: Arc<Repo>,
    /// Chunks uploaded on their own, recorded with the next commit.
    staged: Arc<Pending>,
    writer: Writer,
    /// The tokens accepted, and the role each carries.
    tokens: auth::Tokens,
    /// Whether requests without a token get the write role (loopback listen address).
    open_on_loopback: bool,
    guard: guard::Guard,
    limits: Limits,
    /// Connections open, per peer, and refused.
    admission: Arc<limits::Admission>,
    metrics: Metrics,
    devices: Arc<Devices>,
    node_id: String,
    /// The TLS certificate's fingerprint: the daemon's identity.
    fingerprint: fvfs_api::tls::Fingerprint,
    listen: SocketAddr,
    /// The tiers, their stores and how each is run.
    tier_set: Arc<fvfs_tiering::TierSet>,
    /// Evicts by watermarks and records reads for it, when there are colder tiers.
    evictor: Option<Arc<Evictor>>,
    /// Garbage collection defaults (`[gc]`).
    gc: crate::config::Gc,
    /// fsck and gc, and the list of those running.
    jobs: fvfs_engine::jobs::Jobs,
    /// The folder of migrate's stat caches.
    stat_caches: std::path::PathBuf,
    /// What automatic snapshots did last, when `[snapshots]` asks for them.
    auto_snapshots: Option<std::sync::Mutex<fvfs_api::reports::AutoSnapshots>>,
    /// One worker per colder tier, draining the replication queue.
    replicators: Vec<Arc<Replicator>>,
    started: Instant,
    /// WebDAV's handler, the locks its clients hold, their own files.
    dav: dav::Dav,
    /// The tiers' usage over time, for the web page.
    samples: samples::Samples,
    /// The page's download links not yet used.
    links: web::links::Links,
    /// Checkpoints, eviction, usage samples, automatic snapshots.
    workers: Arc<Workers>,
}

/// How to serve.
pub struct Options {
    pub listen: SocketAddr,
    pub mdns: bool,
    /// Name announced over mDNS; default: the host name.
    pub node_name: Option<String>,
    /// How often eviction runs, and its score's weights (`[eviction]`).
    pub evict_every: Duration,
    pub weights: Weights,
    /// Garbage collection defaults (`[gc]`).
    pub gc: crate::config::Gc,
    /// Automatic snapshots (`[snapshots]`), and the clock they follow.
    pub snapshots: SnapshotPolicy,
    pub clock: auto::Clock,
    /// Names besides the machine's that clients may address the daemon by (`[daemon]
    /// host_names`).
    pub host_names: Vec<String>,
    /// Connection caps and the idle timeout.
    pub limits: Limits,
}

/// Records reads every few seconds, and evicts every `every`.
fn start_eviction(workers: &Workers, evictor: Arc<Evictor>, every: Duration) {
    const RECORD_READS: Duration = Duration::from_secs(5);
    let mut last_run = Instant::now();
    workers.every("eviction", RECORD_READS.min(every), move || {
        let due = last_run.elapsed() >= every;
        if due {
            last_run = Instant::now();
        }
        let evictor = evictor.clone();
        async move {
            match due {
                true => evictor.run().await.map(drop),
                false => evictor.record_reads().await,
            }
        }
    });
}

/// Makes uploaded chunks durable every 2 s, so a big upload's commit has little left
/// to do and memory for their records stays bounded.
fn start_checkpoints(state: &Arc<State>) {
    let me = state.clone();
    state
        .workers
        .every("checkpoints", Duration::from_secs(2), move || {
            let state = me.clone();
            async move {
                if state.staged.is_empty() {
                    return Ok(());
                }
                let done = state.repo.checkpoint(&state.staged).await;
                done.map_err(|e| format!("checkpoint of uploaded chunks: {e}"))
            }
        });
}

/// The background loops: checkpoints of uploads, eviction, usage samples, idle
/// recompression and automatic snapshots.
fn start_workers(
    state: &Arc<State>,
    evict_every: Duration,
    snapshots: SnapshotPolicy,
    clock: auto::Clock,
) {
    start_checkpoints(state);
    if let Some(evictor) = &state.evictor {
        start_eviction(&state.workers, evictor.clone(), evict_every);
    }
    samples::start(state);
    recompress::start(state, Duration::from_secs(state.gc.recompress_idle_secs));
    if let Some(every) = snapshots.every() {
        auto::start(state, snapshots, every, clock);
    }
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(home: &Engine, options: Options) -> Result<()> {
    let Options {
        listen,
        mdns,
        node_name,
        evict_every,
        weights,
        gc,
        snapshots,
        clock,
        host_names,
        limits,
    } = options;
    let limits = limits.fit_file_limit();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let listen = listener.local_addr()?;
    let tokens = auth::Tokens::load(home.dir())?;
    let identity = tls::Identity::load_or_create(home.dir())?;
    let acceptor = identity.acceptor()?;
    let node_id = home.node_id()?;
    notice_local_clients(listen, &identity.fingerprint, &node_id);
    let devices = Arc::new(Devices::default());
    let announcement = match mdns {
        true => Announcement::start(
            listen,
            &node_id,
            &identity.fingerprint,
            node_name.as_deref(),
            &devices,
        )
        .map_err(|e| tracing::warn!("mDNS unavailable, not announcing: {e:#}"))
        .ok(),
        false => None,
    };
    let repo = home.repo_arc();
    let staged = Arc::new(Pending::default());
    let tier_set = home.tier_set().clone();
    let replicators = tier_set.spawn_replicators(&repo);
    let evictor = tier_set.reads().map(|reads| {
        Arc::new(Evictor::new(
            repo.clone(),
            reads.clone(),
            tier_set.evicted(),
            weights,
        ))
    });
    let state = Arc::new(State {
        writer: Writer::spawn(repo.clone(), staged.clone()),
        replicators,
        repo,
        staged,
        tokens,
        open_on_loopback: listen.ip().is_loopback(),
        guard: guard::Guard::new(&crate::mdns::machine_names(), &host_names),
        limits,
        admission: limits::Admission::new(limits),
        metrics: Metrics::default(),
        devices,
        node_id,
        fingerprint: identity.fingerprint,
        listen,
        tier_set,
        evictor,
        gc,
        jobs: home.jobs(),
        stat_caches: home.stat_caches(),
        auto_snapshots: auto::status(&snapshots),
        started: Instant::now(),
        dav: dav::Dav::new(),
        links: web::links::Links::default(),
        samples: samples::Samples::open(home.dir().join("usage.jsonl")),
        workers: home.workers().clone(),
    });
    start_workers(&state, evict_every, snapshots, clock);
    home.write_daemon_info(listen)?;
    // The line scripts and tests wait for: the daemon answers from now on.
    fvfs_api::outln!("fvfsd: listening on http://{listen}");
    fvfs_api::outln!(
        "fvfsd: and on https://{listen}, certificate {} (HTTPS only beyond this machine)",
        identity.fingerprint
    );
    tracing::info!(%listen, open_on_loopback = state.open_on_loopback, "serving");

    accept_until_signal(listener, &state, acceptor).await;
    if let Some(a) = announcement {
        a.stop();
    }
    for r in &state.replicators {
        r.stop(Duration::from_secs(10)).await;
    }
    state.workers.stop(Duration::from_secs(30)).await;
    state.repo.checkpoint(&state.staged).await?;
    home.remove_daemon_info();
    fvfs_api::outln!("fvfsd: stopped");
    Ok(())
}

/// Accepts connections until SIGINT or SIGTERM, each served on a task of its own
/// within the admission limits; then stops accepting and lets the requests in flight
/// finish (up to 30 s).
async fn accept_until_signal(
    listener: TcpListener,
    state: &Arc<State>,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let graceful = GracefulShutdown::new();
    // Tells connections still before their first request (the first byte, the TLS
    // handshake) to give up, so that a silent one does not hold the shutdown.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut backoff = limits::Backoff::default();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    // An IPv4 peer of a dual-stack listener shows as ::ffff:a.b.c.d:
                    // canonical, 127.0.0.1 is loopback as it should be.
                    Ok((stream, peer)) => {
                        backoff.success();
                        (stream, SocketAddr::new(peer.ip().to_canonical(), peer.port()))
                    }
                    Err(e) => {
                        // Out of file descriptors, say: waiting lets connections end
                        // instead of spinning on the same error.
                        let wait = backoff.failure();
                        tracing::warn!("accept failed, waiting {wait:?}: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => continue,
                            _ = &mut shutdown => break,
                        }
                    }
                };
                let from = match stream.local_addr() {
                    Ok(local) => limits::Peer::of(local, peer),
                    Err(_) => limits::Peer { addr: peer.ip(), uid: None },
                };
                let ticket = match state.admission.admit(from) {
                    Ok(t) => t,
                    Err(why) => {
                        tracing::debug!(%peer, "connection refused: {why}");
                        continue;
                    }
                };
                // Answers stream in pieces (chunks as they are read, listings): no
                // piece may wait for the peer's delayed acknowledgement of the last.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, "TCP_NODELAY: {e}");
                }
                let state = state.clone();
                let watcher = graceful.watcher();
                let acceptor = acceptor.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(state, stream, peer, acceptor, watcher, stop).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    drop(ticket);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stopping.send(true);
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 30 s; stopping anyway");
    }
}

/// Serves one connection, over TLS when it opens with a TLS handshake.
async fn serve_connection(
    state: Arc<State>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    watcher: hyper_util::server::graceful::Watcher,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let idle = state.limits.idle_timeout;
    let mut stopping = std::pin::pin!(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(idle, stream.peek(&mut first)) => peeked,
        () = &mut stopping => return Ok(()),
    };
    match peeked {
        Err(_) => anyhow::bail!("nothing sent within {idle:?}"),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(0)) => return Ok(()),
        Ok(Ok(_)) => {}
    }
    // half_close: a client may end its side once the request is sent and still wait
    // for the answer (hyper would drop the connection unanswered).
    let mut http = http1::Builder::new();
    http.max_buf_size(MAX_HEAD)
        .half_close(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle);
    if first[0] == tls::HANDSHAKE {
        let stream = tokio::select! {
            accepted = tokio::time::timeout(idle, acceptor.accept(stream)) => accepted
                .map_err(|_| anyhow::anyhow!("no TLS handshake within {idle:?}"))??,
            () = &mut stopping => return Ok(()),
        };
        serve_http(http, stream, state, peer, true, watcher).await
    } else {
        serve_http(http, stream, state, peer, false, watcher).await
    }
}

/// HTTP/1.1 on `io` (TLS when `secure`) until the connection or the shutdown ends it.
async fn serve_http<I>(
    http: http1::Builder,
    io: I,
    state: Arc<State>,
    peer: SocketAddr,
    secure: bool,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(state.clone(), peer, secure, req));
    watcher
        .watch(http.serve_connection(TokioIo::new(io), service))
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Tells fvfsc on this machine which certificate the daemon on loopback presents
/// ([`fvfs_api::local`]), when it listens there; a failure only costs local clients
/// that protection.
fn notice_local_clients(
    listen: SocketAddr,
    fingerprint: &fvfs_api::tls::Fingerprint,
    node_id: &str,
) {
    let ip = listen.ip();
    if !(ip.is_loopback() || ip.is_unspecified()) {
        return;
    }
    let host = match ip {
        std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() && !ip.is_unspecified() => {
            "[::1]"
        }
        _ => "127.0.0.1",
    };
    let notice = fvfs_api::local::Notice {
        url: format!("https://{host}:{}", listen.port()),
        fingerprint: fingerprint.to_string(),
        node_id: node_id.to_owned(),
    };
    match fvfs_api::local::publish(listen.port(), &notice) {
        Ok(path) => tracing::debug!("local clients trust this daemon through {}", path.display()),
        Err(e) => tracing::warn!("local clients cannot authenticate this daemon: {e}"),
    }
}
