//! The versioned Merkle directory manifest of fvfs.
//!
//! A tree of content-addressed [`node`]s (directories, files, chunk lists) stored as
//! chunks in a [`fvfs_cas::ChunkStore`], and a small metadata database ([`kv`], fjall
//! behind an adapter) that names versions, snapshots and chunk records. Updates copy
//! only the path they change ([`TreeEdit`]), so a version is one root id: snapshots and
//! rollbacks are O(1) and two versions [`diff`] in proportion to what changed.

pub mod autosnap;
mod error;
pub use fvfs_cas::kv;
pub mod meta;
pub use fvfs_node as node;
pub use fvfs_node::path;
mod repo;
mod space;
mod tree;
pub mod upload;
mod views;
mod walk;

pub use error::{ManifestError, Result};
pub use fvfs_node::ChunkKind;
pub use fvfs_node::{Change, ChangeKind};
pub use meta::{ChunkRecord, FileRef, Totals, Version, VersionKind};
pub use node::{ChunkRef, DirNode, Entry, EntryKind, FileNode, Node};
pub use repo::now as now_secs;
pub use repo::{
    CollectionsHeld, Condemned, CopyMark, Evicting, GcSession, HeadLock, Pending, RecordChange,
    Repo,
};
pub use space::{RecordIndex, Space, Unindexed};
pub use tree::{Origin, TreeEdit};
pub use walk::{diff, fetch_trees, lookup, walk, Lookups};
