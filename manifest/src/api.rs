//! What the HTTP API, `fvfsd` and `fvfsc` show of a repository: JSON-serialisable
//! views (status, versions, snapshots, directory entries, diffs), built here once from
//! a [`Repo`] and printed here once for humans, so the daemon's answers, the local
//! commands and the client all say the same thing the same way.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use fvfs_cas::ChunkId;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::meta::Version;
use crate::node::{Entry, EntryKind};
use crate::walk::{Change, ChangeKind};
use crate::Repo;

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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInfo {
    /// "A" added, "D" removed, "M" modified.
    pub change: String,
    pub path: String,
    pub dir: bool,
}

fn ratio(a: u64, b: u64) -> f64 {
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

impl Repo {
    pub fn version_info(&self, v: &Version) -> Result<VersionInfo> {
        let names = self.snapshots()?;
        Ok(version_info(v, &names))
    }

    /// The newest `limit` versions, newest first.
    pub fn log_info(&self, limit: usize) -> Result<Vec<VersionInfo>> {
        let names = self.snapshots()?;
        self.log()
            .take(limit)
            .map(|v| Ok(version_info(&v?, &names)))
            .collect()
    }

    pub fn snapshot_infos(&self) -> Result<Vec<SnapshotInfo>> {
        self.snapshots()?
            .into_iter()
            .map(|(name, n)| {
                let v = self.version(n)?;
                Ok(SnapshotInfo {
                    name,
                    version: n,
                    time: v.time,
                    logical_bytes: v.logical_bytes,
                })
            })
            .collect()
    }

    pub fn status_info(&self) -> Result<StatusInfo> {
        let head = self.head()?;
        let t = self.totals()?;
        let logical = head.as_ref().map_or(0, |v| v.logical_bytes);
        Ok(StatusInfo {
            versions: self.version_count()?,
            head: head.as_ref().map(|v| self.version_info(v)).transpose()?,
            snapshots: self.snapshots()?.len(),
            chunks: t.chunks,
            node_chunks: t.node_chunks,
            logical_bytes: logical,
            unique_bytes: t.raw_bytes,
            stored_bytes: t.stored_bytes,
            dedup_ratio: ratio(logical, t.raw_bytes),
            compression_ratio: ratio(t.raw_bytes, t.stored_bytes),
        })
    }

    /// Changes from version `a` to version `b` (numbers, snapshot names, HEAD~N).
    pub async fn diff_info(&self, a: &str, b: &str) -> Result<Vec<ChangeInfo>> {
        let (va, vb) = (self.resolve(a)?, self.resolve(b)?);
        Ok(crate::diff(self, va.root, vb.root)
            .await?
            .iter()
            .map(ChangeInfo::of)
            .collect())
    }
}

fn version_info(v: &Version, names: &[(String, u64)]) -> VersionInfo {
    VersionInfo {
        number: v.number,
        root: v.root.to_hex(),
        parent: v.parent,
        time: v.time,
        kind: v.kind.as_str().to_owned(),
        message: v.message.clone(),
        logical_bytes: v.logical_bytes,
        snapshots: names
            .iter()
            .filter(|(_, n)| *n == v.number)
            .map(|(s, _)| s.clone())
            .collect(),
    }
}

/// Human-readable output, shared by `fvfsd` and `fvfsc`.
pub mod show {
    use super::*;

    /// `1.5 GiB`-style sizes.
    pub fn bytes(n: u64) -> String {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = n as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < UNITS.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            format!("{n} B")
        } else {
            format!("{v:.2} {}", UNITS[u])
        }
    }

    /// RFC 3339 time, UTC, to the second.
    pub fn time(secs: i64) -> String {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
            .to_string()
    }

    pub fn status(s: &StatusInfo) -> String {
        let mut out = String::new();
        match &s.head {
            Some(h) => writeln!(
                out,
                "versions:    {} (head {} at {})",
                s.versions,
                h.number,
                time(h.time)
            ),
            None => writeln!(out, "versions:    0 (empty store)"),
        }
        .ok();
        writeln!(out, "snapshots:   {}", s.snapshots).ok();
        writeln!(
            out,
            "chunks:      {} ({} tree nodes)",
            s.chunks, s.node_chunks
        )
        .ok();
        writeln!(out, "logical:     {} at head", bytes(s.logical_bytes)).ok();
        writeln!(
            out,
            "unique:      {} in distinct chunks",
            bytes(s.unique_bytes)
        )
        .ok();
        writeln!(out, "stored:      {} compressed", bytes(s.stored_bytes)).ok();
        writeln!(
            out,
            "dedup ratio: {:.2}x (compression {:.2}x, overall {:.2}x)",
            s.dedup_ratio,
            s.compression_ratio,
            s.dedup_ratio * s.compression_ratio
        )
        .ok();
        out
    }

    pub fn log(versions: &[VersionInfo]) -> String {
        let mut out = String::new();
        for v in versions {
            let tags = if v.snapshots.is_empty() {
                String::new()
            } else {
                format!(" [{}]", v.snapshots.join(", "))
            };
            writeln!(
                out,
                "{:>6}  {}  {:<8}  {:>10}  {}{}",
                v.number,
                time(v.time),
                v.kind,
                bytes(v.logical_bytes),
                v.message,
                tags
            )
            .ok();
        }
        out
    }

    pub fn snapshots(list: &[SnapshotInfo]) -> String {
        list.iter()
            .map(|s| {
                format!(
                    "{}\tversion {}\t{}\t{}\n",
                    s.name,
                    s.version,
                    time(s.time),
                    bytes(s.logical_bytes)
                )
            })
            .collect()
    }

    pub fn diff(changes: &[ChangeInfo]) -> String {
        changes
            .iter()
            .map(|c| format!("{} {}{}\n", c.change, c.path, if c.dir { "/" } else { "" }))
            .collect()
    }

    /// `ls -l`-style line of an entry.
    pub fn entry_long(e: &EntryInfo) -> String {
        let kind = match e.kind.as_str() {
            "dir" => 'd',
            "symlink" => 'l',
            _ => '-',
        };
        let perms: String = (0..9)
            .map(|i| {
                if e.mode & (0o400 >> i) != 0 {
                    ['r', 'w', 'x'][i % 3]
                } else {
                    '-'
                }
            })
            .collect();
        let target = e
            .target
            .as_ref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        format!(
            "{kind}{perms} {:>10}  {}  {}{target}",
            bytes(e.size),
            time(e.mtime_ns.div_euclid(1_000_000_000)),
            e.name
        )
    }
}

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
    },
    Symlink {
        path: String,
        target: String,
        mode: u32,
        mtime_ns: i64,
    },
    Mkdir {
        path: String,
        mode: u32,
        mtime_ns: i64,
    },
    Remove {
        path: String,
        #[serde(default)]
        recursive: bool,
    },
    /// Moves a file, symlink or directory (as rename(2)).
    Rename { from: String, to: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRequest {
    #[serde(default)]
    pub message: String,
    pub ops: Vec<CommitOp>,
}

/// Characters left as they are in encoded paths: unreserved ones and `/`.
const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path (or any bytes) for URLs and JSON.
pub fn encode_path(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, PATH_SET).to_string()
}

/// The bytes a percent-encoded path names.
pub fn decode_path(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

impl CommitOp {
    /// The entry a put-like op carries, and its path. Ids are parsed; lengths and
    /// sizes must agree (checked again when the tree node is decoded).
    pub fn to_entry(&self) -> std::result::Result<Option<(Vec<u8>, Entry)>, String> {
        let parse = |s: &str| s.parse::<ChunkId>().map_err(|e| e.to_string());
        let entry = |kind, mode: &u32, mtime_ns: &i64| Entry {
            name: Vec::new(),
            kind,
            mode: *mode & 0o7777,
            mtime_ns: *mtime_ns,
            size: 0,
            id: None,
            chunks: Vec::new(),
            target: Vec::new(),
        };
        Ok(Some(match self {
            CommitOp::File {
                path,
                mode,
                mtime_ns,
                size,
                node,
                chunks,
            } => {
                let mut e = entry(EntryKind::File, mode, mtime_ns);
                e.size = *size;
                e.id = node.as_deref().map(parse).transpose()?;
                e.chunks = chunks
                    .iter()
                    .map(|(id, len)| {
                        Ok(crate::ChunkRef {
                            id: parse(id)?,
                            len: *len,
                        })
                    })
                    .collect::<std::result::Result<_, String>>()?;
                let listed: u64 = e.chunks.iter().map(|c| c.len).sum();
                if e.id.is_none()
                    && (listed != *size || e.chunks.len() > crate::node::INLINE_CHUNKS)
                {
                    return Err(format!(
                        "{path}: give a node, or at most {} chunks adding up to size",
                        crate::node::INLINE_CHUNKS
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
            } => {
                let mut e = entry(EntryKind::Symlink, mode, mtime_ns);
                e.target = decode_path(target);
                if e.target.is_empty() || e.target.contains(&0) {
                    return Err(format!(
                        "{path}: a symlink target must be non-empty and hold no NUL"
                    ));
                }
                (decode_path(path), e)
            }
            CommitOp::Mkdir { .. } | CommitOp::Remove { .. } | CommitOp::Rename { .. } => {
                return Ok(None)
            }
        }))
    }
}

/// The body of `POST /v1/chunks`: many chunks, already framed (compressed) by the
/// client, in one request. Each record is `kind` (0 data, 1 tree node), the 32-byte
/// id, the frame's length (u32, little endian), then the frame.
pub mod batch {
    use bytes::Bytes;
    use fvfs_cas::{frame, ChunkId};

    use crate::ChunkKind;

    const HEADER: usize = 1 + 32 + 4;
    /// Largest frame a record may carry.
    pub const MAX_FRAME: usize = frame::HEADER_LEN + frame::MAX_RAW_LEN + (1 << 20);

    /// Appends one record to `out`.
    pub fn push(out: &mut Vec<u8>, kind: ChunkKind, id: &ChunkId, framed: &[u8]) {
        out.push(u8::from(kind == ChunkKind::Node));
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&(framed.len() as u32).to_le_bytes());
        out.extend_from_slice(framed);
    }

    /// Splits a body arriving in pieces into records, holding at most one record.
    #[derive(Default)]
    pub struct Parser {
        buf: Vec<u8>,
    }

    impl Parser {
        /// The records `data` completed; an error for a malformed one.
        pub fn push(&mut self, data: &[u8]) -> Result<Vec<(ChunkKind, ChunkId, Bytes)>, String> {
            self.buf.extend_from_slice(data);
            let mut out = Vec::new();
            let mut at = 0;
            while self.buf.len() - at >= HEADER {
                let h = &self.buf[at..at + HEADER];
                let kind = match h[0] {
                    0 => ChunkKind::Data,
                    1 => ChunkKind::Node,
                    k => return Err(format!("record {}: unknown kind {k}", out.len())),
                };
                let id = ChunkId::from_slice(&h[1..33]).expect("32 bytes");
                let len = u32::from_le_bytes(h[33..37].try_into().expect("4 bytes")) as usize;
                if len > MAX_FRAME {
                    return Err(format!(
                        "record for {id}: frame of {len} bytes is too large"
                    ));
                }
                if self.buf.len() - at - HEADER < len {
                    break;
                }
                out.push((
                    kind,
                    id,
                    Bytes::copy_from_slice(&self.buf[at + HEADER..at + HEADER + len]),
                ));
                at += HEADER + len;
            }
            self.buf.drain(..at);
            Ok(out)
        }

        /// Whether the body ended on a record boundary.
        pub fn finished(&self) -> bool {
            self.buf.is_empty()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn records_round_trip_in_any_pieces_and_garbage_is_refused() {
            let mut body = Vec::new();
            let items: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 * i as usize]).collect();
            for (i, d) in items.iter().enumerate() {
                let kind = if i == 2 {
                    ChunkKind::Node
                } else {
                    ChunkKind::Data
                };
                push(&mut body, kind, &ChunkId::of(d), &frame::encode(d));
            }
            for piece in [1, 7, 100, body.len()] {
                let mut p = Parser::default();
                let mut got = Vec::new();
                for part in body.chunks(piece) {
                    got.extend(p.push(part).unwrap());
                }
                assert!(p.finished());
                assert_eq!(got.len(), 5);
                for ((kind, id, f), d) in got.iter().zip(&items) {
                    assert_eq!(frame::decode(id, f).unwrap(), *d);
                    assert_eq!(*kind == ChunkKind::Node, d.len() == 2000);
                }
            }
            let mut p = Parser::default();
            assert!(p.push(&[9; 40]).is_err());
            let mut p = Parser::default();
            let mut huge = vec![0u8; 33];
            huge.extend_from_slice(&u32::MAX.to_le_bytes());
            assert!(p.push(&huge).is_err());
            let mut p = Parser::default();
            p.push(&body[..body.len() - 1]).unwrap();
            assert!(!p.finished(), "a truncated body is noticed");
        }
    }
}
