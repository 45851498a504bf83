//! HTTP plumbing of the API: the body type, JSON answers, and errors as
//! `{"error": ..., "detail": ...}` with the status code a client can act on.

use std::convert::Infallible;

use bytes::Bytes;
use fvfs_cas::StoreError;
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

pub fn ok<T: Serialize>(value: &T) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, value))
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// The same error under a more precise code.
    pub fn with_error(mut self, error: &'static str) -> Self {
        self.error = error;
        self
    }

    pub fn response(&self) -> Response<Body> {
        #[derive(Serialize)]
        struct E<'a> {
            error: &'a str,
            detail: &'a str,
        }
        json(
            self.status,
            &E {
                error: self.error,
                detail: &self.detail,
            },
        )
    }
}

/// The status and error code of a store failure.
fn store_status(e: &StoreError) -> (StatusCode, &'static str) {
    match e {
        StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        StoreError::NoSpace { .. } => (StatusCode::INSUFFICIENT_STORAGE, "no_space"),
        StoreError::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
        StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        StoreError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "io_error"),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, error) = store_status(&e);
        Self::new(status, error, e.to_string())
    }
}

impl From<ManifestError> for ApiError {
    fn from(e: ManifestError) -> Self {
        use ManifestError as M;
        let (status, error) = match &e {
            M::Store(s) => store_status(s),
            M::NotFound(_) | M::UnknownVersion(_) | M::Empty => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            M::NotADirectory(_) => (StatusCode::CONFLICT, "not_a_directory"),
            M::IsADirectory(_) => (StatusCode::CONFLICT, "is_a_directory"),
            M::NotEmpty(_) => (StatusCode::CONFLICT, "not_empty"),
            M::SnapshotExists(_) => (StatusCode::CONFLICT, "exists"),
            M::ContentGone { .. } => (StatusCode::CONFLICT, "missing_chunks"),
            M::Busy(_) => (StatusCode::CONFLICT, "busy"),
            M::InvalidPath(..) => (StatusCode::BAD_REQUEST, "bad_path"),
            M::BadFrame { .. } => (StatusCode::BAD_REQUEST, "bad_frame"),
            M::BadSnapshotName(_) => (StatusCode::BAD_REQUEST, "bad_name"),
            M::BadNode { .. } | M::BadRecord { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "corrupt")
            }
            M::Db(_) => (StatusCode::INTERNAL_SERVER_ERROR, "db_error"),
        };
        Self::new(status, error, e.to_string())
    }
}
