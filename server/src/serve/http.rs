//! HTTP plumbing of the API: the body type, JSON answers (typed by the route table's
//! [`Call`]: a handler answers what its route's row says), and errors as
//! `{"error": ..., "detail": ...}` with the status code a client can act on.

use std::convert::Infallible;

use bytes::Bytes;
use fvfs_api::routes::Call;
use fvfs_api::{ErrorBody, ErrorCode};
use fvfs_cas::StoreError;
use fvfs_fsck::FsckError;
use fvfs_manifest::path::PathError;
use fvfs_manifest::ManifestError;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Every response body: complete or streamed.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("API values serialise");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body))
        .expect("valid response")
}

/// Route `C`'s answer with 200, or its error.
pub fn reply<C: Call>(answer: Result<C::Answer, ApiError>) -> Result<Response<Body>, ApiError>
where
    C::Answer: Serialize,
{
    answer.map(|a| json(StatusCode::OK, &a))
}

/// Route `C`'s answer with 201 (something was made), or its error.
pub fn created<C: Call>(answer: Result<C::Answer, ApiError>) -> Result<Response<Body>, ApiError>
where
    C::Answer: Serialize,
{
    answer.map(|a| json(StatusCode::CREATED, &a))
}

/// An error answer: its code (which implies the status) and a sentence for people.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).expect("error codes map to valid statuses")
    }

    pub fn response(&self) -> Response<Body> {
        json(
            self.status(),
            &ErrorBody {
                error: self.code,
                detail: self.detail.clone(),
            },
        )
    }
}

/// The code of a store failure.
fn store_code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::NotFound(_) => ErrorCode::NotFound,
        StoreError::NoSpace { .. } => ErrorCode::NoSpace,
        StoreError::Corrupt { .. } => ErrorCode::Corrupt,
        StoreError::Unavailable(_) => ErrorCode::Unavailable,
        StoreError::Io { .. } => ErrorCode::IoError,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::new(store_code(&e), e.to_string())
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        let code = if e.is_too_long() {
            ErrorCode::NameTooLong
        } else {
            ErrorCode::BadPath
        };
        Self::new(code, e.to_string())
    }
}

impl From<FsckError> for ApiError {
    fn from(e: FsckError) -> Self {
        match e {
            FsckError::Manifest(m) => m.into(),
            FsckError::Unreadable(_) => Self::new(ErrorCode::Corrupt, e.to_string()),
            FsckError::Worker(_) => Self::new(ErrorCode::Internal, e.to_string()),
            // A full disk under the data directory is the user's to fix, and says so.
            FsckError::Spill(ref io) => {
                let code = match io.kind() {
                    std::io::ErrorKind::StorageFull => ErrorCode::NoSpace,
                    _ => ErrorCode::IoError,
                };
                Self::new(code, e.to_string())
            }
        }
    }
}

impl From<ManifestError> for ApiError {
    fn from(e: ManifestError) -> Self {
        use ErrorCode as C;
        use ManifestError as M;
        let code = match &e {
            M::Store(s) => store_code(s),
            M::NotFound(_) | M::UnknownVersion(_) | M::Empty => C::NotFound,
            M::NotADirectory(_) => C::NotADirectory,
            M::IsADirectory(_) => C::IsADirectory,
            M::NotEmpty(_) => C::NotEmpty,
            M::Exists(_) => C::Exists,
            M::SnapshotExists(_) => C::Exists,
            M::Conflict(_) => C::Conflict,
            M::ContentGone { .. } => C::MissingChunks,
            M::Busy(_) => C::Busy,
            M::InvalidPath(_, why) if fvfs_manifest::path::too_long(why) => C::NameTooLong,
            M::InvalidPath(..) => C::BadPath,
            M::BadFrame { .. } => C::BadFrame,
            M::BadSnapshotName(_) => C::BadName,
            M::BadNode { .. } | M::BadRecord { .. } => C::Corrupt,
            M::Db(_) => C::DbError,
        };
        Self::new(code, e.to_string())
    }
}
