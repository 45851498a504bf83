//! Errors of the manifest layer.

use fvfs_cas::{ChunkId, StoreError};

use crate::kv::KvError;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] KvError),
    #[error("frame for chunk {id} was refused: {reason}")]
    BadFrame { id: ChunkId, reason: String },
    #[error("tree node {id} is damaged: {reason}")]
    BadNode { id: ChunkId, reason: String },
    #[error("metadata record {key} is damaged: {reason}")]
    BadRecord { key: String, reason: String },
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: is a directory")]
    IsADirectory(String),
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    #[error("{0}: file exists")]
    Exists(String),
    #[error("invalid path {0:?}: {1}")]
    InvalidPath(String, &'static str),
    #[error("no version or snapshot named {0:?}")]
    UnknownVersion(String),
    #[error("{0}: changed by someone else since it was read")]
    Conflict(String),
    #[error("snapshot {0:?} already exists")]
    SnapshotExists(String),
    #[error("invalid snapshot name {0:?}: use 1-128 letters, digits, '.', '_' or '-', not starting with '.', '-' or 'auto-' (kept for automatic snapshots) and not only digits")]
    BadSnapshotName(String),
    #[error("the store has no versions yet")]
    Empty,
    #[error("{0}")]
    Busy(&'static str),
    #[error("{path}: its content is no longer stored (collected meanwhile): {}; upload it again", show_ids(.missing))]
    ContentGone { path: String, missing: Vec<ChunkId> },
}

fn show_ids(ids: &[ChunkId]) -> String {
    let shown: Vec<String> = ids.iter().take(5).map(|i| i.to_string()).collect();
    match ids.len() {
        n if n > 5 => format!("{} and {} more", shown.join(" "), n - 5),
        _ => shown.join(" "),
    }
}

pub type Result<T, E = ManifestError> = std::result::Result<T, E>;

impl From<fvfs_node::path::PathError> for ManifestError {
    fn from(e: fvfs_node::path::PathError) -> Self {
        ManifestError::InvalidPath(e.0, e.1)
    }
}

impl From<fvfs_node::DamagedNode> for ManifestError {
    fn from(e: fvfs_node::DamagedNode) -> Self {
        ManifestError::BadNode {
            id: e.id,
            reason: e.reason.into(),
        }
    }
}
