//! Errors of chunk stores, precise enough for callers to match on (missing, corrupt,
//! out of space, unavailable) and to map to HTTP statuses and errnos.

use std::io;
use std::path::PathBuf;

use crate::ChunkId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chunk {0} not found")]
    NotFound(ChunkId),
    #[error("chunk {id} is corrupt: {reason}")]
    Corrupt { id: ChunkId, reason: String },
    #[error("no space left on device while writing {}", path.display())]
    NoSpace { path: PathBuf },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// The same error again, for a second caller it fails (an I/O error keeps its
    /// kind and text, not its source chain).
    pub fn copy(&self) -> Self {
        match self {
            StoreError::NotFound(id) => StoreError::NotFound(*id),
            StoreError::Corrupt { id, reason } => StoreError::Corrupt {
                id: *id,
                reason: reason.clone(),
            },
            StoreError::NoSpace { path } => StoreError::NoSpace { path: path.clone() },
            StoreError::Io { op, path, source } => StoreError::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        }
    }

    /// Wraps an I/O error on `path`, recognising a full disk.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) {
            StoreError::NoSpace { path }
        } else {
            StoreError::Io { op, path, source }
        }
    }
}
