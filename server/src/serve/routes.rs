//! Request dispatch: the page, WebDAV, and the API's routes as the route table
//! ([`fvfs_api::routes`]) finds them, each authorised with the role the table gives
//! ([`authorize`]) and answered by its handler ([`dispatch`]), counted under the
//! table's label in the metrics.
//!
//! # Invariants
//! - Beyond loopback only a TLS connection reaches [`route`]; a plain request from
//!   another machine is refused with the certificate to pin.
//! - The role is checked before a body is read; a route the table does not have is a
//!   404 (after the role its method implies), never a default handler.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use fvfs_api::routes::{self, call, Access, Call, Endpoint, Found};
use fvfs_api::ErrorCode;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::de::DeserializeOwned;

use super::http::{created, reply, ApiError, Body};
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

/// Route `C`'s query string; a 400 naming the parameter that does not parse.
fn query<C: Call>(req: &Request<Incoming>) -> Result<C::Query, ApiError>
where
    C::Query: DeserializeOwned,
{
    fvfs_api::queries::parse(req.uri().query().unwrap_or("")).map_err(ApiError::bad_request)
}

/// The fvfs path named by the rest of a URL path, percent-decoded.
fn fs_path(rest: &str) -> Vec<u8> {
    let mut p = b"/".to_vec();
    p.extend(percent_encoding::percent_decode_str(rest));
    p
}

/// Refuses a request without the role its route needs; else the caller's role.
fn authorize(state: &State, req: &Request<Incoming>, need: Role) -> Result<Role, ApiError> {
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
    let path = req.uri().path().to_owned();
    let dav = dav::is_dav(&path);
    let found = if dav {
        Found::NotFound
    } else {
        routes::find(req.method().as_str(), &path)
    };
    let access = match found.access(req.method().as_str()) {
        _ if dav => Access::Token(dav::needs(req.method())),
        access => access,
    };
    let checked = state.guard.check(&req);
    // The caller's role; none for a link, which is the credential (made with a token).
    let role = match access {
        Access::Link => match checked {
            Ok(()) => None,
            Err(e) => return ("auth", Err(e)),
        },
        Access::Token(need) => match checked.and_then(|()| authorize(state, &req, need)) {
            Ok(role) => Some(role),
            Err(e) if e.code == ErrorCode::Unauthorized && dav => {
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
            Err(e) => return ("auth", Err(e)),
        },
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
    if dav {
        let (route, answer) = dav::handle(state, req).await;
        return (route, Ok(answer));
    }
    match found {
        Found::Route(r, tail) => (
            r.label,
            dispatch(state, peer, role, r.endpoint, tail, req).await,
        ),
        Found::WrongMethod(label) => (
            label,
            Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} is not allowed on {path}", req.method()),
            )),
        ),
        Found::NotFound => (
            "unknown",
            Err(ApiError::not_found(format!("no route {path}"))),
        ),
    }
}

/// The answer of the handler of `endpoint`, `tail` what followed its path.
async fn dispatch(
    state: &Arc<State>,
    peer: SocketAddr,
    role: Option<Role>,
    endpoint: Endpoint,
    tail: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    use call as c;
    use Endpoint as E;
    // A JSON answer goes through its route's marker type: the handler must return
    // what the table's row says.
    match endpoint {
        E::FileGet => files::get(state, fs_path(tail), &query::<c::FileGet>(&req)?).await,
        E::FilePut => {
            let attrs = query::<c::FilePut>(&req)?;
            created::<c::FilePut>(files::put(state, fs_path(tail), attrs, req).await)
        }
        E::FileDelete => {
            let removal = query::<c::FileDelete>(&req)?;
            reply::<c::FileDelete>(files::delete(state, fs_path(tail), removal).await)
        }
        E::Meta => {
            let at = query::<c::Meta>(&req)?;
            reply::<c::Meta>(files::meta(state, fs_path(tail), &at).await)
        }
        E::Ls => reply::<c::Ls>(files::ls(state, fs_path(tail), &query::<c::Ls>(&req)?).await),
        E::Du => reply::<c::Du>(files::du(state, fs_path(tail)).await),
        E::ChunksBatch => reply::<c::ChunksBatch>(store::put_batch(state, req).await),
        E::ChunksRead => store::read_many(state, query::<c::ChunksRead>(&req)?, req).await,
        E::ChunksMissing => reply::<c::ChunksMissing>(store::missing(state, req).await),
        E::ChunkGet => store::get(state, tail).await,
        E::ChunkHead => store::head(state, tail),
        E::ChunkPut => match store::put(state, tail, query::<c::ChunkPut>(&req)?, req).await {
            Ok(s) if !s.stored => reply::<c::ChunkPut>(Ok(s)),
            answer => created::<c::ChunkPut>(answer),
        },
        E::Node => store::node(state, tail).await,
        E::Versions => reply::<c::Versions>(versions::log(state, query::<c::Versions>(&req)?)),
        E::Version => reply::<c::Version>(versions::version(state, tail)),
        E::Snapshots => reply::<c::Snapshots>(versions::snapshots(state)),
        E::SnapshotCreate => {
            created::<c::SnapshotCreate>(versions::snapshot_create(state, req).await)
        }
        E::SnapshotDelete => {
            reply::<c::SnapshotDelete>(versions::snapshot_delete(state, tail).await)
        }
        E::Rollback => reply::<c::Rollback>(versions::rollback(state, req).await),
        E::Diff => reply::<c::Diff>(versions::diff(state, query::<c::Diff>(&req)?).await),
        E::History => {
            let limit = query::<c::History>(&req)?;
            reply::<c::History>(versions::history(state, fs_path(tail), limit).await)
        }
        E::Commit => reply::<c::Commit>(versions::commit(state, req).await),
        E::DownloadLinks => {
            let at = query::<c::DownloadLinks>(&req)?;
            reply::<c::DownloadLinks>(web::links::make(state, fs_path(tail), &at).await)
        }
        E::Download => web::links::download(state, tail).await,
        E::Status => reply::<c::Status>(admin::status(state).await),
        E::StatusHistory => reply::<c::StatusHistory>(Ok(state.samples.history())),
        E::Whoami => reply::<c::Whoami>(Ok(fvfs_api::reports::Whoami {
            role: role.map(|r| r.to_string()).unwrap_or_default(),
            auth: !state.open_on_loopback,
            cut_seed: state.repo.cut_seed(),
        })),
        E::Devices => reply::<c::Devices>(Ok(admin::devices(state))),
        E::AdminFlush => reply::<c::AdminFlush>(admin::flush(state).await),
        E::AdminEvict => reply::<c::AdminEvict>(admin::evict(state).await),
        E::AdminWal => reply::<c::AdminWal>(admin::wal(state)),
        E::AdminFsck => reply::<c::AdminFsck>(admin::fsck(state, req).await),
        E::AdminGc => reply::<c::AdminGc>(admin::gc(state, req).await),
        E::AdminMigrate => reply::<c::AdminMigrate>(admin::migrate(state, peer, req).await),
        E::AdminExport => reply::<c::AdminExport>(admin::export(state, peer, req).await),
        E::Metrics => admin::metrics(state).await,
    }
}
