//! What the HTTP API, `fvfsd` and `fvfsc` show of a repository: JSON-serialisable
//! views of versions, snapshots, the store's totals, directory entries and diffs.
//! The manifest builds them from a repository; [`crate::show`] prints them.

use fvfs_node::{Change, ChangeKind, Entry, EntryKind};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub number: u64,
    pub root: String,
    pub parent: Option<u64>,
    pub time: i64,
    pub kind: String,
    pub message: String,
    pub logical_bytes: u64,
    /// Snapshot names bound to this version.
    pub snapshots: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub version: u64,
    pub time: i64,
    pub logical_bytes: u64,
    /// Taken by the daemon under `[snapshots]` (and pruned by that policy).
    #[serde(default)]
    pub automatic: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub versions: u64,
    pub head: Option<VersionInfo>,
    pub snapshots: usize,
    pub chunks: u64,
    pub node_chunks: u64,
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub stored_bytes: u64,
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
}

/// A directory entry as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// The name, with bytes that are not UTF-8 replaced (U+FFFD).
    pub name: String,
    pub kind: String,
    pub mode: u32,
    pub mtime_ns: i64,
    pub size: u64,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    /// Owner, when the entry records one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gid: Option<u32>,
    /// A device's number.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rdev: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInfo {
    /// "A" added, "D" removed, "M" modified.
    pub change: String,
    pub path: String,
    pub dir: bool,
}

/// A version in which one path changed (`fvfsc log PATH`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathChange {
    pub version: VersionInfo,
    /// "A" added, "D" removed, "M" modified (as in a diff).
    pub change: String,
    /// What the path holds after the change (before it, when removed): "file",
    /// "dir", "symlink"...
    pub kind: String,
    /// Its size after the change (0 when removed); for a directory, the bytes below it.
    pub size: u64,
}

/// `a / b`, or 1 when `b` is 0.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

pub fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
        EntryKind::Fifo => "fifo",
        EntryKind::Socket => "socket",
        EntryKind::CharDevice => "char-device",
        EntryKind::BlockDevice => "block-device",
    }
}

impl EntryInfo {
    pub fn of(e: &Entry) -> Self {
        Self {
            name: String::from_utf8_lossy(&e.name).into_owned(),
            kind: kind_name(e.kind).to_owned(),
            mode: e.mode,
            mtime_ns: e.mtime_ns,
            size: e.size,
            target: (e.kind == EntryKind::Symlink)
                .then(|| String::from_utf8_lossy(&e.target).into_owned()),
            uid: e.meta.as_ref().map(|m| m.uid),
            gid: e.meta.as_ref().map(|m| m.gid),
            rdev: e
                .meta
                .as_ref()
                .filter(|_| matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice))
                .map(|m| m.rdev),
        }
    }
}

impl ChangeInfo {
    pub fn of(c: &Change) -> Self {
        let change = match c.kind {
            ChangeKind::Added => "A",
            ChangeKind::Removed => "D",
            ChangeKind::Modified => "M",
        };
        Self {
            change: change.into(),
            path: String::from_utf8_lossy(&c.path).into_owned(),
            dir: c.entry == EntryKind::Dir,
        }
    }
}
