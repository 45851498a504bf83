//! Request dispatch: who may call what ([`needs`], [`authorize`]) and which handler
//! answers ([`route`]), with the label each request is counted under in the metrics.
//!
//! # Invariants
//! - Beyond loopback only a TLS connection reaches [`route`]; a plain request from
//!   another machine is refused with the certificate to pin.
//! - The role is checked before a body is read; a route not listed here is a 404, never
//!   a default handler.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use fvfs_api::ErrorCode;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::http::{ok, ApiError, Body};
use super::{admin, auth, dav, files, limits, store, versions, web, Role, State};
pub(super) async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    secure: bool,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (route, result) = if secure || peer.ip().is_loopback() {
        route(&state, peer, req).await
    } else {
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("HOST:PORT");
        let detail = format!(
            "beyond this machine fvfsd speaks HTTPS only: use https://{host} and pin certificate {} (`fvfsd pair` on the daemon prints it)",
            state.fingerprint
        );
        ("insecure", Err(ApiError::new(ErrorCode::Forbidden, detail)))
    };
    let response = result.unwrap_or_else(|e| e.response());
    state.metrics.request(route, response.status().as_u16());
    Ok(response)
}

/// The query string as a map; values percent-decoded.
pub(crate) fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned();
            (k.to_owned(), v)
        })
        .collect()
}

/// The fvfs path named by the rest of a URL path, percent-decoded.
fn fs_path(rest: &str) -> Vec<u8> {
    let mut p = b"/".to_vec();
    p.extend(percent_encoding::percent_decode_str(rest));
    p
}

/// The role a request needs.
fn needs(method: &Method, path: &str) -> Role {
    if dav::is_dav(path) {
        return match method.as_str() {
            "GET" | "HEAD" | "OPTIONS" | "PROPFIND" => Role::Read,
            _ => Role::Write,
        };
    }
    let rest = path.strip_prefix("/v1/").unwrap_or("");
    let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (head, tail) {
        ("snapshots", _) if method == Method::DELETE => Role::Admin,
        ("admin", "flush") => Role::Write,
        ("admin", "wal") => Role::Read,
        ("admin", _) => Role::Admin,
        ("chunks", "read" | "missing") | ("download-links", _) => Role::Read,
        _ if matches!(*method, Method::GET | Method::HEAD) => Role::Read,
        _ => Role::Write,
    }
}

/// Refuses a request without the role its route needs; else the caller's role.
fn authorize(state: &State, req: &Request<Incoming>) -> Result<Role, ApiError> {
    let presented = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::presented_token);
    let presented = presented.as_deref();
    let role = match presented {
        Some(p) => state
            .tokens
            .role_of(p.trim())
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "wrong token"))?,
        None if state.open_on_loopback => Role::Write,
        None => return Err(ApiError::new(ErrorCode::Unauthorized,
            "this daemon listens beyond loopback: send Authorization: Bearer TOKEN (see `fvfsd token`)",
        )),
    };
    let need = needs(req.method(), req.uri().path());
    if role >= need {
        return Ok(role);
    }
    let how = match need {
        Role::Admin => "the admin token (`fvfsd token --admin`, or run the fvfsd command on the daemon's machine)",
        _ => "a token with that role (`fvfsd token new NAME --role write`)",
    };
    let had = match presented {
        Some(_) => format!("this token's role is {role}"),
        None => "no token was sent".to_owned(),
    };
    Err(ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "{} {} needs the {need} role and {had}: use {how}",
            req.method(),
            req.uri().path()
        ),
    ))
}

async fn route(
    state: &Arc<State>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> (&'static str, Result<Response<Body>, ApiError>) {
    req.extensions_mut()
        .insert(limits::Idle(state.limits.idle_timeout));
    if web::is_page(req.uri().path()) {
        // The page holds no data: anyone who can name the daemon may load it (a link
        // from elsewhere too); what it shows comes from the API, under every check.
        let answer = state
            .guard
            .check_host(&req)
            .and_then(|()| web::serve(req.method(), req.uri().path()));
        return ("page", answer);
    }
    if let Some(link) = web::links::used(req.method(), req.uri().path()) {
        // The link is the credential (made with a token); the guard still applies.
        let answer = match state.guard.check(&req) {
            Ok(()) => web::links::download(state, link).await,
            Err(e) => Err(e),
        };
        return ("download", answer);
    }
    let role = match state
        .guard
        .check(&req)
        .and_then(|()| authorize(state, &req))
    {
        Ok(role) => role,
        Err(e) => {
            if e.code == ErrorCode::Unauthorized && dav::is_dav(req.uri().path()) {
                // WebDAV clients send credentials only when challenged.
                let mut resp = e.response();
                resp.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static(
                        "Basic realm=\"fvfs\", charset=\"UTF-8\"",
                    ),
                );
                return ("auth", Ok(resp));
            }
            return ("auth", Err(e));
        }
    };
    if let Some(agent) = req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        if agent.starts_with("fvfsc/") {
            state.devices.client_seen(peer.ip(), agent);
        }
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if dav::is_dav(&path) {
        let (route, answer) = dav::handle(state, req).await;
        return (route, Ok(answer));
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return match (method, path.as_str()) {
            (Method::GET, "/metrics") => ("metrics", admin::metrics(state).await),
            _ => (
                "unknown",
                Err(ApiError::not_found(format!("no route {path}"))),
            ),
        };
    };
    let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let m = &method;
    let wrong_method = |route: &'static str| {
        (
            route,
            Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{m} is not allowed on {path}"),
            )),
        )
    };
    match head {
        "files" => match method {
            Method::GET => ("files", files::get(state, fs_path(tail), &req).await),
            Method::PUT => ("files", files::put(state, fs_path(tail), req).await),
            Method::DELETE => ("files", files::delete(state, fs_path(tail), &req).await),
            _ => wrong_method("files"),
        },
        "meta" if method == Method::GET => ("meta", files::meta(state, fs_path(tail), &req).await),
        "ls" if method == Method::GET => ("ls", files::ls(state, fs_path(tail), &req).await),
        "du" if method == Method::GET => ("du", files::du(state, fs_path(tail)).await),
        "chunks" if tail.is_empty() => match method {
            Method::POST => ("chunks_batch", store::put_batch(state, req).await),
            _ => wrong_method("chunks_batch"),
        },
        "chunks" if tail == "read" => match method {
            Method::POST => ("chunks_read", store::read_many(state, req).await),
            _ => wrong_method("chunks_read"),
        },
        "chunks" if tail == "missing" => match method {
            Method::POST => ("chunks_missing", store::missing(state, req).await),
            _ => wrong_method("chunks_missing"),
        },
        "chunks" => match method {
            Method::GET => ("chunks", store::get(state, tail).await),
            Method::HEAD => ("chunks", store::head(state, tail)),
            Method::PUT => ("chunks", store::put(state, tail, req).await),
            _ => wrong_method("chunks"),
        },
        "nodes" if method == Method::GET => ("nodes", store::node(state, tail).await),
        "versions" if method == Method::GET => ("versions", versions::versions(state, tail, &req)),
        "snapshots" => match method {
            Method::GET => ("snapshots", versions::snapshots(state)),
            Method::POST => ("snapshots", versions::snapshot_create(state, req).await),
            Method::DELETE => ("snapshots", versions::snapshot_delete(state, tail).await),
            _ => wrong_method("snapshots"),
        },
        "rollback" if method == Method::POST => ("rollback", versions::rollback(state, req).await),
        "diff" if method == Method::GET => ("diff", versions::diff(state, &req).await),
        "history" if method == Method::GET => (
            "history",
            versions::history(state, fs_path(tail), &req).await,
        ),
        "commit" if method == Method::POST => ("commit", versions::commit(state, req).await),
        "download-links" if method == Method::POST => (
            "download_links",
            web::links::make(state, fs_path(tail), &req).await,
        ),
        "status" if method == Method::GET && tail == "history" => {
            ("status_history", ok(&state.samples.history()))
        }
        "status" if method == Method::GET => ("status", admin::status(state).await),
        "whoami" if method == Method::GET => (
            "whoami",
            ok(&fvfs_api::reports::Whoami {
                role: role.to_string(),
                auth: !state.open_on_loopback,
                cut_seed: state.repo.cut_seed(),
            }),
        ),
        "devices" if method == Method::GET => ("devices", admin::devices(state)),
        "admin" => match (m.clone(), tail) {
            (Method::POST, "flush") => ("admin_flush", admin::flush(state).await),
            (Method::POST, "evict") => ("admin_evict", admin::evict(state).await),
            (Method::GET, "wal") => ("admin_wal", admin::wal(state)),
            (Method::POST, "fsck") => ("admin_fsck", admin::fsck(state, req).await),
            (Method::POST, "gc") => ("admin_gc", admin::gc(state, req).await),
            (Method::POST, "migrate") => ("admin_migrate", admin::migrate(state, peer, req).await),
            (Method::POST, "export") => ("admin_export", admin::export(state, peer, req).await),
            (_, "flush" | "evict" | "wal" | "fsck" | "gc" | "migrate" | "export") => {
                wrong_method("admin")
            }
            _ => (
                "unknown",
                Err(ApiError::not_found(format!("no route {path}"))),
            ),
        },
        "meta" | "ls" | "du" | "nodes" | "versions" | "rollback" | "diff" | "history"
        | "commit" | "status" | "devices" | "whoami" => wrong_method("method"),
        _ => (
            "unknown",
            Err(ApiError::not_found(format!("no route {path}"))),
        ),
    }
}
