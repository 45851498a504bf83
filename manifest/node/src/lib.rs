//! Tree nodes: the content-addressed directory, file and chunk-list nodes of the
//! Merkle manifest, and the [`path`]s that name entries in them.
//!
//! This crate holds only the types and their encoding (no store, no database), so
//! the API types and fvfsc can use them without compiling the daemon's storage.
//!
//! Nodes are encoded as canonical CBOR: `serde_cbor`'s packed form of structs with a
//! fixed field order (fields and enum variants as integer indices), never maps with
//! unordered keys, so the same tree always encodes to the same bytes and hashes to
//! the same id. Directory entries are kept sorted by name and unique; [`decode`]
//! rejects nodes that break that, or that hold names a file system cannot hold.
//! Golden-hash tests below pin the encoding: changing it would silently break
//! deduplication against every existing store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fvfs_cas::ChunkId;
use serde::{Deserialize, Serialize};

pub mod dir;
pub mod path;

pub use dir::{DirIndex, DirPart};

/// Chunk refs per file node (and per list node) before a file becomes a tree of lists:
/// 4096 refs of 64 KiB chunks are 256 MiB, about 180 KiB of node.
pub const LIST_FANOUT: usize = 4096;

/// The largest tree node a client may send: a file node (or list node) lists at most
/// [`LIST_FANOUT`] refs (about 180 KiB), or the list nodes of a file of some 20 TiB.
/// Directory nodes are the daemon's own, never a client's.
pub const MAX_UPLOAD_NODE: usize = 4 << 20;

/// Files of at most this many chunks (about 1 MiB) list them inline in their directory
/// entry instead of in a file node of their own. Most files are that small (88% of a
/// Rust toolchain's 52,000 files are under 16 KiB), and a file node per file would
/// double the chunks, the objects and the writes that storing them costs.
pub const INLINE_CHUNKS: usize = 16;

/// Whether a chunk holds file content or a tree node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkKind {
    Data,
    Node,
}

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A named pipe (its data never leaves the machine using it).
    Fifo,
    /// A UNIX domain socket's name.
    Socket,
    /// A character device (its number in [`Meta::rdev`]).
    CharDevice,
    /// A block device (its number in [`Meta::rdev`]).
    BlockDevice,
}

impl EntryKind {
    /// FIFOs, sockets and devices: a name and metadata, no content.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            Self::Fifo | Self::Socket | Self::CharDevice | Self::BlockDevice
        )
    }
}

/// What an entry keeps beyond its kind, mode and mtime, for entries written by a
/// client that knows them (entries without it show their reader's own ids).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Last status change, in nanoseconds since the Unix epoch (0: the mtime).
    #[serde(default)]
    pub ctime_ns: i64,
    /// A device's number.
    #[serde(default)]
    pub rdev: u64,
    /// Extended attributes, sorted by name, names unique.
    #[serde(default)]
    pub xattrs: Vec<Xattr>,
}

/// The identity of a file with several names in one tree, and how many it has.
///
/// The names of one file are the entries of a tree whose `link.id` is the same: they
/// agree on everything but their name (the daemon keeps them so: a change through one
/// name is made to all), and each counts them all in `nlink` (at least 2: a file left
/// with one name is an ordinary entry again). Ids are unique within a tree, chosen at
/// random when a link is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: u64,
    pub nlink: u32,
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl Meta {
    /// The value of attribute `name`.
    pub fn xattr(&self, name: &[u8]) -> Option<&[u8]> {
        let at = self
            .xattrs
            .binary_search_by(|x| x.name.as_slice().cmp(name));
        at.ok().map(|i| self.xattrs[i].value.as_slice())
    }

    /// Sets (`Some`) or removes (`None`) attribute `name`; whether it was there.
    pub fn set_xattr(&mut self, name: &[u8], value: Option<Vec<u8>>) -> bool {
        match (
            self.xattrs
                .binary_search_by(|x| x.name.as_slice().cmp(name)),
            value,
        ) {
            (Ok(i), Some(value)) => {
                self.xattrs[i].value = value;
                true
            }
            (Ok(i), None) => {
                self.xattrs.remove(i);
                true
            }
            (Err(i), Some(value)) => {
                let name = name.to_vec();
                self.xattrs.insert(i, Xattr { name, value });
                false
            }
            (Err(_), None) => false,
        }
    }
}

/// One name in a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Raw bytes of the name: any byte but `/` and NUL, not `.` or `..`; need not be UTF-8.
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits (including setuid, setgid, sticky), without the file type.
    pub mode: u32,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// File: its length. Directory: logical bytes of all files below it. Symlink: 0.
    pub size: u64,
    /// The directory node, or the file node of a large file; `None` for a symlink and
    /// for a file whose chunks are listed inline.
    pub id: Option<ChunkId>,
    /// A small file's chunks (at most [`INLINE_CHUNKS`]); empty otherwise.
    pub chunks: Vec<ChunkRef>,
    /// Symlink target; empty otherwise.
    #[serde(with = "serde_bytes")]
    pub target: Vec<u8>,
    /// Owner, status change time, device number and extended attributes, when known
    /// (absent from the encoding when `None`: entries written before it hash as they
    /// did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<Meta>>,
    /// A directory: how many entries below it, at any depth, are names of a file with
    /// several ([`Meta::link`]), so that finding a file's other names skips every
    /// subtree without any (absent from the encoding when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links: u64,
    /// A file with more than one name (hard links): every name of it holds the same
    /// entry but for the name (absent from the encoding when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
}

pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a file holds, as one id: its file node, or for a file whose chunks are listed
/// inline the BLAKE3 hash of their ids and lengths. Equal keys mean equal bytes; a
/// write-back compares them to notice that someone else changed its file.
pub fn content_key(id: Option<ChunkId>, chunks: &[ChunkRef]) -> ChunkId {
    if let Some(id) = id {
        return id;
    }
    let mut listed = b"fvfs inline chunks".to_vec();
    for c in chunks {
        listed.extend_from_slice(c.id.as_bytes());
        listed.extend_from_slice(&c.len.to_le_bytes());
    }
    ChunkId::of(&listed)
}

impl Entry {
    /// What this file holds, as one id ([`content_key`]).
    pub fn content_key(&self) -> ChunkId {
        content_key(self.id, &self.chunks)
    }

    /// A directory entry with no name, no node and nothing below it yet.
    pub fn dir(mode: u32, mtime_ns: i64) -> Self {
        Self {
            name: Vec::new(),
            kind: EntryKind::Dir,
            mode,
            mtime_ns,
            size: 0,
            id: None,
            chunks: Vec::new(),
            target: Vec::new(),
            meta: None,
            links: 0,
            link: None,
        }
    }

    /// Names of files with several names this entry is or holds: what the directory
    /// holding it counts in its own [`Entry::links`].
    pub fn links_held(&self) -> u64 {
        u64::from(self.link.is_some()) + self.links
    }
}

/// A reference to a chunk (or, in `FileNode::lists`, to a list node) and how many
/// bytes of file content it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirNode {
    pub entries: Vec<Entry>,
}

/// A file's content. Small files list their chunks; a file with more than
/// [`LIST_FANOUT`] chunks lists list nodes instead (`chunks` is then empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileNode {
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
    pub lists: Vec<ChunkRef>,
}

/// A run of a large file's chunks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListNode {
    pub chunks: Vec<ChunkRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    Dir(DirNode),
    File(FileNode),
    List(ListNode),
    /// The parts of a directory too large for one node (see [`dir`]). Last, so the
    /// encodings of the variants before it are unchanged.
    DirIndex(DirIndex),
}

/// What changed at one path between two trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    /// Same kind, different content, symlink target or mode. An mtime alone is not a change.
    Modified,
}

/// One path that differs between two trees, and the kind of its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: Vec<u8>,
    pub entry: EntryKind,
}

/// Why bytes are not a valid tree node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("not a tree node: {0}")]
    Cbor(#[from] serde_cbor::Error),
    #[error("directory entries are not sorted and unique at {0:?}")]
    Unsorted(String),
    #[error("invalid file name {0:?}")]
    BadName(String),
    #[error("entry {0:?} is inconsistent: {1}")]
    BadEntry(String, &'static str),
    #[error("file node sizes do not add up")]
    BadSize,
    #[error("directory index is inconsistent: {0}")]
    BadIndex(&'static str),
}

/// How a file's chunk list is stored: inline in its directory entry, or as a file node
/// (with list nodes below it when the file has more than [`LIST_FANOUT`] chunks).
pub enum FileLayout {
    Inline(Vec<ChunkRef>),
    /// The file node, then the list nodes it refers to (store those first).
    Nodes {
        file: Node,
        lists: Vec<Node>,
    },
}

/// The layout of a file made of `chunks`, in order.
pub fn file_layout(chunks: Vec<ChunkRef>) -> FileLayout {
    let size = chunks.iter().map(|c| c.len).sum();
    if chunks.len() <= INLINE_CHUNKS {
        return FileLayout::Inline(chunks);
    }
    if chunks.len() <= LIST_FANOUT {
        return FileLayout::Nodes {
            file: Node::File(FileNode {
                size,
                chunks,
                lists: Vec::new(),
            }),
            lists: Vec::new(),
        };
    }
    let lists: Vec<Node> = chunks
        .chunks(LIST_FANOUT)
        .map(|run| {
            Node::List(ListNode {
                chunks: run.to_vec(),
            })
        })
        .collect();
    let refs = lists
        .iter()
        .zip(chunks.chunks(LIST_FANOUT))
        .map(|(node, run)| ChunkRef {
            id: ChunkId::of(&node.encode()),
            len: run.iter().map(|c| c.len).sum(),
        })
        .collect();
    FileLayout::Nodes {
        file: Node::File(FileNode {
            size,
            chunks: Vec::new(),
            lists: refs,
        }),
        lists,
    }
}

impl Node {
    /// The canonical encoding of this node; its id is `ChunkId::of` these bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_cbor::ser::to_vec_packed(self).expect("tree nodes always serialize")
    }
}

/// Decodes and validates a node read from a store (after the store checked its hash).
pub fn decode(bytes: &[u8]) -> Result<Node, NodeError> {
    let node: Node = serde_cbor::from_slice(bytes)?;
    match &node {
        Node::Dir(d) => validate_dir(d)?,
        Node::File(f) => {
            let listed = f.chunks.iter().chain(&f.lists).map(|c| c.len).sum::<u64>();
            if listed != f.size || (!f.chunks.is_empty() && !f.lists.is_empty()) {
                return Err(NodeError::BadSize);
            }
        }
        Node::List(_) => {}
        Node::DirIndex(ix) => {
            if ix.parts.is_empty() || ix.depth == 0 {
                return Err(NodeError::BadIndex("it lists no part, or is of depth 0"));
            }
            if ix.parts.iter().any(|p| !valid_name(&p.first)) {
                return Err(NodeError::BadIndex("a part starts at an invalid name"));
            }
            if ix.parts.windows(2).any(|w| w[0].first >= w[1].first) {
                return Err(NodeError::BadIndex("its parts are not sorted and unique"));
            }
        }
    }
    Ok(node)
}

/// Whether `name` can be a directory entry.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// One name of two directory listings: in the first only, the second only, or both.
#[derive(Clone, Copy, Debug)]
pub enum Pair<'a> {
    A(&'a Entry),
    B(&'a Entry),
    Both(&'a Entry, &'a Entry),
}

impl<'a> Pair<'a> {
    /// The entry in each listing, if it has one.
    pub fn sides(self) -> (Option<&'a Entry>, Option<&'a Entry>) {
        match self {
            Pair::A(x) => (Some(x), None),
            Pair::B(y) => (None, Some(y)),
            Pair::Both(x, y) => (Some(x), Some(y)),
        }
    }
}

/// The entries of two directory listings (each sorted by name, as nodes keep them)
/// paired by name, in name order: what a diff of two directories walks.
pub fn pair_by_name<'a>(a: &'a [Entry], b: &'a [Entry]) -> impl Iterator<Item = Pair<'a>> {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    std::iter::from_fn(move || {
        let order = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return None,
        };
        Some(match order {
            std::cmp::Ordering::Less => Pair::A(a.next()?),
            std::cmp::Ordering::Greater => Pair::B(b.next()?),
            std::cmp::Ordering::Equal => Pair::Both(a.next()?, b.next()?),
        })
    })
}

fn validate_dir(d: &DirNode) -> Result<(), NodeError> {
    let show = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
    for e in &d.entries {
        if !valid_name(&e.name) {
            return Err(NodeError::BadName(show(&e.name)));
        }
        let consistent = match e.kind {
            EntryKind::File if e.id.is_some() => e.chunks.is_empty() && e.target.is_empty(),
            EntryKind::File => {
                e.chunks.len() <= INLINE_CHUNKS
                    && e.target.is_empty()
                    && e.chunks.iter().map(|c| c.len).sum::<u64>() == e.size
            }
            EntryKind::Dir => e.id.is_some() && e.chunks.is_empty() && e.target.is_empty(),
            EntryKind::Symlink => e.id.is_none() && e.chunks.is_empty() && !e.target.is_empty(),
            _ => e.id.is_none() && e.chunks.is_empty() && e.target.is_empty() && e.size == 0,
        };
        let xattrs_sorted = e
            .meta
            .as_ref()
            .is_none_or(|m| m.xattrs.windows(2).all(|w| w[0].name < w[1].name));
        if !consistent {
            return Err(NodeError::BadEntry(
                show(&e.name),
                "kind, id and target disagree",
            ));
        }
        if !xattrs_sorted {
            return Err(NodeError::BadEntry(
                show(&e.name),
                "extended attributes unsorted or repeated",
            ));
        }
        let links_fit = match e.kind {
            EntryKind::Dir => e.link.is_none(),
            _ => e.links == 0 && e.link.is_none_or(|l| l.nlink >= 2),
        };
        if !links_fit {
            return Err(NodeError::BadEntry(
                show(&e.name),
                "a directory with other names, or a file with one counted as several",
            ));
        }
    }
    if let Some(w) = d.entries.windows(2).find(|w| w[0].name >= w[1].name) {
        return Err(NodeError::Unsorted(show(&w[1].name)));
    }
    Ok(())
}

/// A node that decoded but does not fit where the tree refers to it.
#[derive(Debug, thiserror::Error)]
#[error("tree node {id} is damaged: {reason}")]
pub struct DamagedNode {
    pub id: ChunkId,
    pub reason: &'static str,
}

/// A file's chunks, in order: inline in its entry, or listed by its file node and the
/// file node's list nodes, each fetched with `fetch` (the daemon's store, or a client's
/// cache of the daemon's). Checks that their lengths add up to the entry's size.
pub async fn file_chunks<E, F, Fut>(entry: &Entry, fetch: F) -> Result<Vec<ChunkRef>, E>
where
    F: Fn(ChunkId) -> Fut,
    Fut: std::future::Future<Output = Result<Node, E>>,
    E: From<DamagedNode>,
{
    let bad = |id: ChunkId, reason: &'static str| E::from(DamagedNode { id, reason });
    let Some(id) = entry.id else {
        return Ok(entry.chunks.clone());
    };
    let Node::File(file) = fetch(id).await? else {
        return Err(bad(id, "expected a file node"));
    };
    let mut chunks = file.chunks;
    for list in &file.lists {
        match fetch(list.id).await? {
            Node::List(l) => chunks.extend(l.chunks),
            _ => return Err(bad(list.id, "expected a list node")),
        }
    }
    if chunks.iter().map(|c| c.len).sum::<u64>() != entry.size {
        return Err(bad(id, "chunk lengths do not add up to the file size"));
    }
    Ok(chunks)
}

/// Nanoseconds since the Unix epoch of a file system time (`secs`, `nsec` as `stat`
/// gives them), saturating at what an `i64` holds (1677-09-21 to 2262-04-11): a file
/// dated 2300 is kept as 2262, never wrapped round to 1901.
pub fn unix_ns(secs: i64, nsec: i64) -> i64 {
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nsec))
        .unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX })
}

/// The time `ns` nanoseconds from the Unix epoch (before it when negative).
pub fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// Nanoseconds from the Unix epoch to `t` (negative before it), saturating like
/// [`unix_ns`].
pub fn time_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

#[cfg(test)]
mod tests;
