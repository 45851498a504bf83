//! WebDAV under `/dav/` (RFC 4918 classes 1 and 2, by the `dav-server` crate) for the
//! devices that mount it natively: Finder, Windows, the iOS and Android Files apps,
//! file managers, davfs2. The live tree is at `/dav/`, every snapshot read-only under
//! `/dav/.snapshots/<name>/` (copying out of one restores).
//!
//! Authentication is the API's: a token with its role, sent as a bearer token or as
//! the password of HTTP Basic (what every WebDAV client can send), never over plain
//! HTTP beyond loopback. Reads (GET, HEAD, OPTIONS, PROPFIND) need the read role, the
//! rest the write role. Locks are kept in memory (`MemLs`): clients that will not
//! write without class 2 get real locks; they do not outlive the daemon.

mod file;
mod fs;
mod meta;
mod propfind;
mod props;
mod scratch;
mod tree;

use std::cell::Cell;
use std::sync::Arc;

use dav_server::fs::FsError;
use dav_server::memls::MemLs;
use dav_server::{DavConfig, DavHandler};
use fvfs_api::ErrorCode;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::http::{ApiError, Body};
use super::State;

/// Where WebDAV is served.
pub const PREFIX: &str = "/dav";

/// Whether a request's path is WebDAV's.
pub fn is_dav(path: &str) -> bool {
    path == PREFIX || path.starts_with("/dav/")
}

/// The role a WebDAV request needs: reading methods read, the others write.
pub fn needs(method: &hyper::Method) -> super::Role {
    match method.as_str() {
        "GET" | "HEAD" | "OPTIONS" | "PROPFIND" => super::Role::Read,
        _ => super::Role::Write,
    }
}

/// What WebDAV keeps across requests.
pub struct Dav {
    handler: DavHandler,
    /// The locks clients hold (in memory: they do not outlive the daemon).
    locks: MemLs,
    /// Files clients write for themselves ([`scratch`]).
    scratch: scratch::Scratch,
    /// The folder listed last ([`fs::LastListing`]).
    listed: fs::LastListing,
}

impl Dav {
    pub fn new() -> Self {
        Self {
            handler: DavHandler::builder()
                .strip_prefix(PREFIX)
                .hide_symlinks(true)
                // Large reads: each is a chunk lookup.
                .read_buf_size(256 << 10)
                .build_handler(),
            locks: *MemLs::new(),
            scratch: scratch::Scratch::default(),
            listed: fs::LastListing::default(),
        }
    }
}

/// The answer to a WebDAV request, with the route it is counted under in `/metrics`
/// (`dav`, or `dav_propfind` for a PROPFIND answered by [`propfind`]).
pub async fn handle(state: &Arc<State>, req: Request<Incoming>) -> (&'static str, Response<Body>) {
    let headers = req.headers();
    let whole_get = *req.method() == hyper::Method::GET
        && !["range", "if-none-match", "if-modified-since"]
            .iter()
            .any(|h| headers.contains_key(*h));
    let this = ThisRequest {
        unavailable: Cell::new(false),
        whole_get,
    };
    let ((route, mut resp), unavailable) = THIS_REQUEST
        .scope(this, async {
            let answer = answer(state, req).await;
            (answer, THIS_REQUEST.with(|r| r.unavailable.get()))
        })
        .await;
    if unavailable && resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let h = resp.headers_mut();
        h.insert(hyper::header::RETRY_AFTER, RETRY_AFTER.into());
    }
    confine(&mut resp);
    (route, resp)
}

tokio::task_local! {
    /// What dav-server does not pass on about the request being answered.
    static THIS_REQUEST: ThisRequest;
}

struct ThisRequest {
    /// Set when it failed because a store or tier does not answer now: dav-server has
    /// no error for that and answers 500, which becomes 503.
    unavailable: Cell<bool>,
    /// A GET of a whole file that is sure to send it (no range, no condition): only
    /// such a read fetches a file's first chunk before answering.
    whole_get: bool,
}

/// Whether the request being answered is a GET that will send a whole file.
fn whole_get() -> bool {
    THIS_REQUEST.try_with(|r| r.whole_get).unwrap_or(false)
}

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER: u16 = 10;

async fn answer(state: &Arc<State>, req: Request<Incoming>) -> (&'static str, Response<Body>) {
    let fs = fs::FvfsDav::new(state.clone());
    if let Some(answer) = tree::shortcut(&fs, &state.dav.locks, &req).await {
        return ("dav", answer);
    }
    if req.method().as_str() == "PROPFIND" {
        // The body is read here, to see whether it asks only for what `propfind`
        // answers itself; dav-server is given it whole otherwise.
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, PROPFIND_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                return ("dav", tree::answer(StatusCode::PAYLOAD_TOO_LARGE))
            }
            Err(_) => return ("dav", tree::answer(StatusCode::BAD_REQUEST)),
        };
        if let Some(answer) = propfind::answer(&fs, &state.dav.locks, &parts, &body).await {
            return ("dav_propfind", answer);
        }
        let req = Request::from_parts(parts, Full::new(body));
        return ("dav", dav_server(state, fs, req).await);
    }
    ("dav", dav_server(state, fs, req).await)
}

/// What dav-server reads of a PROPFIND body at most (its own limit).
const PROPFIND_BODY: usize = 64 << 10;

async fn dav_server<B>(state: &Arc<State>, fs: fs::FvfsDav, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let config = DavConfig::new()
        .filesystem(Box::new(fs))
        .locksystem(Box::new(state.dav.locks.clone()));
    state
        .dav
        .handler
        .handle_with(config, req)
        .await
        .map(BodyExt::boxed_unsync)
}

/// Stored files come back typed by their names (`.html`, `.svg`) from the daemon's
/// own origin: a browser must never run them as pages of it, which would give them the
/// user's access to the API.
pub(crate) fn confine(resp: &mut Response<Body>) {
    use hyper::header::{HeaderValue, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
    let h = resp.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// What WebDAV answers for an API error.
fn fs_error(e: ApiError) -> FsError {
    match e.code {
        ErrorCode::Unavailable | ErrorCode::TierUnavailable | ErrorCode::Busy => {
            tracing::warn!("WebDAV: {}", e.detail);
            let _ = THIS_REQUEST.try_with(|r| r.unavailable.set(true));
            FsError::GeneralFailure
        }
        ErrorCode::NotFound | ErrorCode::NotADirectory => FsError::NotFound,
        // Someone else wrote the path first (a create that expected it absent).
        ErrorCode::Exists | ErrorCode::Conflict => FsError::Exists,
        ErrorCode::IsADirectory
        | ErrorCode::NotEmpty
        | ErrorCode::BadPath
        | ErrorCode::NameTooLong
        | ErrorCode::BadName
        | ErrorCode::Forbidden => FsError::Forbidden,
        ErrorCode::NoSpace => FsError::InsufficientStorage,
        ErrorCode::TooLarge => FsError::TooLarge,
        _ => {
            tracing::warn!("WebDAV: {}", e.detail);
            FsError::GeneralFailure
        }
    }
}

/// The status dav-server gives an error.
fn status_of(e: FsError) -> hyper::StatusCode {
    use hyper::StatusCode as S;
    match e {
        FsError::NotFound => S::NOT_FOUND,
        FsError::Exists => S::METHOD_NOT_ALLOWED,
        FsError::Forbidden => S::FORBIDDEN,
        FsError::InsufficientStorage => S::INSUFFICIENT_STORAGE,
        FsError::NotImplemented => S::NOT_IMPLEMENTED,
        _ => S::INTERNAL_SERVER_ERROR,
    }
}

fn now_ns() -> i64 {
    fvfs_manifest::node::time_ns(std::time::SystemTime::now())
}
