//! What makes a check or a collection stop, as its own type: a failure of the store
//! underneath stays that store's error (an unavailable tier is still "unavailable"),
//! while a collection refusing to run on a damaged tree says so, instead of passing
//! for an unavailable store.

use fvfs_manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A kept version has a node that cannot be read: nothing was deleted.
    #[error("garbage collection stopped before deleting anything: {0}; run fsck")]
    Unreadable(String),
    /// A checking task ended without an answer (cancelled at shutdown).
    #[error("fsck worker stopped: {0}")]
    Worker(String),
    /// The sorted sets beyond memory's budget could not be written or read back (a full
    /// or failing disk under the data directory).
    #[error("writing or reading fsck's temporary files: {0}")]
    Spill(#[from] std::io::Error),
}

impl From<fvfs_cas::StoreError> for FsckError {
    fn from(e: fvfs_cas::StoreError) -> Self {
        Self::Manifest(e.into())
    }
}
