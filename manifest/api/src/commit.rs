//! The body of `POST /v1/commit`: the changes a client asks for, with paths and
//! targets percent-encoded (see [`crate::path`]).

use fvfs_cas::ChunkId;
use fvfs_node::{ChunkRef, Entry, EntryKind, Link, Meta, INLINE_CHUNKS};
use serde::{Deserialize, Serialize};

use crate::path::decode_path;

/// One change in a `POST /v1/commit`. Paths and symlink targets are percent-encoded
/// bytes (see [`encode_path`]), so names that are not UTF-8 cross JSON intact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum CommitOp {
    /// A file whose chunks (and file node, for a large file) are already uploaded.
    File {
        path: String,
        mode: u32,
        mtime_ns: i64,
        size: u64,
        /// The file node of a large file (hex id).
        #[serde(default)]
        node: Option<String>,
        /// A small file's chunks: (hex id, length).
        #[serde(default)]
        chunks: Vec<(String, u64)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Meta>,
        /// The file's other names, when it has some: kept if the path holds a name of
        /// that file (then the change is made to every name), ignored otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<Link>,
        /// What the path must hold for the write to apply (else `conflict`, 409):
        /// how a client that read the file makes sure it replaces only what it read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Expect>,
    },
    Symlink {
        path: String,
        target: String,
        mode: u32,
        mtime_ns: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Meta>,
        /// The file's other names, when it has some: kept if the path holds a name of
        /// that file (then the change is made to every name), ignored otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<Link>,
    },
    /// Creates a directory, or sets an existing one's mode, mtime (and meta, if given).
    Mkdir {
        path: String,
        mode: u32,
        mtime_ns: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Meta>,
    },
    /// A FIFO, socket or device (its number in `meta`).
    Special {
        path: String,
        kind: EntryKind,
        mode: u32,
        mtime_ns: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Meta>,
        /// The file's other names, when it has some: kept if the path holds a name of
        /// that file (then the change is made to every name), ignored otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<Link>,
    },
    Remove {
        path: String,
        #[serde(default)]
        recursive: bool,
    },
    /// Moves a file, symlink or directory (as rename(2)).
    Rename {
        from: String,
        to: String,
        /// The status change time the moved entry (and a file's other names) takes:
        /// the one a client already showed for the move; the daemon's clock if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ctime_ns: Option<i64>,
    },
    /// Gives the file (or symlink, or special file) at `from` a new name `to`, which
    /// must not exist (as link(2)) unless `replace` (then a file or symlink there is
    /// replaced, as a put does): the two names are one file from then on.
    Link {
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replace: bool,
        /// The status change time every name of the file takes (as in `Rename`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ctime_ns: Option<i64>,
    },
    /// Copies a file, symlink or whole directory tree in O(1), by sharing its nodes:
    /// `from` as it is in `version` (a number, snapshot name or `HEAD~N`; HEAD when the
    /// commit starts if absent) put at `to`, replacing what `to` holds as a put does.
    Copy {
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
}

/// The largest `POST /v1/commit` body the daemon takes (about 50,000 operations of
/// small files): a client with more commits them in pieces.
pub const MAX_COMMIT_BODY: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRequest {
    #[serde(default)]
    pub message: String,
    pub ops: Vec<CommitOp>,
}

impl CommitOp {
    /// What a file op expects at its path, if it says.
    pub fn expect(&self) -> Option<&Expect> {
        match self {
            Self::File { expect, .. } => expect.as_ref(),
            _ => None,
        }
    }

    /// The (percent-encoded) paths whose entries the op may change.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Self::File { path, .. }
            | Self::Symlink { path, .. }
            | Self::Mkdir { path, .. }
            | Self::Special { path, .. }
            | Self::Remove { path, .. } => vec![path],
            Self::Rename { from, to, .. } | Self::Link { from, to, .. } => vec![from, to],
            Self::Copy { to, .. } => vec![to],
        }
    }

    /// The entry a put-like op carries, and its path. Ids are parsed; lengths and
    /// sizes must agree (checked again when the tree node is decoded).
    pub fn to_entry(&self) -> std::result::Result<Option<(Vec<u8>, Entry)>, String> {
        let parse = |s: &str| s.parse::<ChunkId>().map_err(|e| e.to_string());
        let entry =
            |kind, mode: &u32, mtime_ns: &i64, meta: &Option<Meta>, link: &Option<Link>| Entry {
                name: Vec::new(),
                kind,
                mode: *mode & 0o7777,
                mtime_ns: *mtime_ns,
                size: 0,
                id: None,
                chunks: Vec::new(),
                target: Vec::new(),
                meta: meta.clone().map(|mut m| {
                    // Sorted by name, each name once (the last value given wins).
                    m.xattrs.reverse();
                    m.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
                    m.xattrs.dedup_by(|a, b| a.name == b.name);
                    Box::new(m)
                }),
                links: 0,
                link: *link,
            };
        Ok(Some(match self {
            CommitOp::File {
                path,
                mode,
                mtime_ns,
                size,
                node,
                chunks,
                meta,
                link,
                expect: _,
            } => {
                let mut e = entry(EntryKind::File, mode, mtime_ns, meta, link);
                e.size = *size;
                e.id = node.as_deref().map(parse).transpose()?;
                e.chunks = chunks
                    .iter()
                    .map(|(id, len)| {
                        Ok(ChunkRef {
                            id: parse(id)?,
                            len: *len,
                        })
                    })
                    .collect::<std::result::Result<_, String>>()?;
                let listed: u64 = e.chunks.iter().map(|c| c.len).sum();
                if e.id.is_none() && (listed != *size || e.chunks.len() > INLINE_CHUNKS) {
                    return Err(format!(
                        "{path}: give a node, or at most {} chunks adding up to size",
                        INLINE_CHUNKS
                    ));
                }
                if e.id.is_some() && !e.chunks.is_empty() {
                    return Err(format!("{path}: give a node or chunks, not both"));
                }
                (decode_path(path), e)
            }
            CommitOp::Symlink {
                path,
                target,
                mode,
                mtime_ns,
                meta,
                link,
            } => {
                let mut e = entry(EntryKind::Symlink, mode, mtime_ns, meta, link);
                e.target = decode_path(target);
                if e.target.is_empty() || e.target.contains(&0) {
                    return Err(format!(
                        "{path}: a symlink target must be non-empty and hold no NUL"
                    ));
                }
                (decode_path(path), e)
            }
            CommitOp::Special {
                path,
                kind,
                mode,
                mtime_ns,
                meta,
                link,
            } => {
                if !kind.is_special() {
                    return Err(format!("{path}: {kind:?} is not a special file"));
                }
                (decode_path(path), entry(*kind, mode, mtime_ns, meta, link))
            }
            CommitOp::Mkdir { .. }
            | CommitOp::Remove { .. }
            | CommitOp::Rename { .. }
            | CommitOp::Link { .. }
            | CommitOp::Copy { .. } => return Ok(None),
        }))
    }
}

/// What a write expects at its path when it applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Nothing: the write creates the file.
    Absent,
    /// A file with this content key ([`fvfs_node::content_key`], hex): what the writer
    /// read and changed.
    Content(String),
    /// What `path` (percent-encoded: where the file was when opened; a rename since
    /// may have moved it) held in version `since`, HEAD when a writer that replaces
    /// the whole file opened it: nobody changed it since.
    Unchanged { since: u64, path: String },
}

impl Expect {
    /// Whether `found`, the entry at the path now (if any), is what was expected;
    /// `then` is what the path held in the version an [`Expect::Unchanged`] names.
    pub fn holds(&self, found: Option<&Entry>, then: Option<&Entry>) -> bool {
        match (self, found) {
            (Expect::Absent, None) => true,
            (Expect::Content(key), Some(e)) => {
                e.kind == EntryKind::File && e.content_key().to_hex() == *key
            }
            (Expect::Unchanged { .. }, found) => same_content(found, then),
            _ => false,
        }
    }
}

/// Whether two entries (or absences) of a path hold the same: equal kinds, and for
/// files equal content, for others equal nodes and targets.
fn same_content(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if a.kind == EntryKind::File => {
            b.kind == EntryKind::File && a.content_key() == b.content_key()
        }
        (Some(a), Some(b)) => a.kind == b.kind && a.id == b.id && a.target == b.target,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> Entry {
        Entry {
            kind: EntryKind::File,
            size: data.len() as u64,
            chunks: vec![ChunkRef {
                id: ChunkId::of(data),
                len: data.len() as u64,
            }],
            ..Entry::dir(0o644, 0)
        }
    }

    #[test]
    fn an_expectation_holds_only_for_what_the_writer_saw() {
        let (a, b) = (file(b"a"), file(b"b"));
        let key = Expect::Content(a.content_key().to_hex());
        assert!(key.holds(Some(&a), None));
        assert!(!key.holds(Some(&b), None) && !key.holds(None, None));
        assert!(Expect::Absent.holds(None, None));
        assert!(!Expect::Absent.holds(Some(&a), None));
        let since = Expect::Unchanged {
            since: 7,
            path: "/f".into(),
        };
        // `then` is what the path held in version 7.
        assert!(since.holds(Some(&a), Some(&a)) && since.holds(None, None));
        assert!(!since.holds(Some(&b), Some(&a)));
        assert!(!since.holds(Some(&a), None) && !since.holds(None, Some(&a)));
        let dir = Entry::dir(0o755, 0);
        assert!(!since.holds(Some(&dir), Some(&a)));
    }
}
