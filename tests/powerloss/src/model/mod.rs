//! The file system's state without FUSE: inodes, each with a *current* state (what every
//! operation sees) and a *durable* state (what survives a power cut), and the cut itself.
//!
//! - A regular file's bytes and size: see [`Content`]; fsync/fdatasync make them durable.
//! - A directory's entry list (name -> inode): `fsyncdir` copies the current list to the
//!   durable one. Entries are the only thing that makes an inode reachable, so a file
//!   created (or renamed, linked, unlinked) without an fsync of its directory is undone
//!   by a cut, whatever was done to the file itself.
//! - Metadata (mode, owner, times) is not modelled: it is kept as it is at a cut.
//!
//! # Invariants
//! - Inode numbers are never reused while the state lives; [`ROOT`] always exists.
//! - `links` counts the current entries naming a node, `durable_refs` the durable ones,
//!   `lookups` the kernel's references (FUSE lookup count). A node is freed as soon as
//!   all three are zero (directories free the nodes their lists held, in cascade).
//! - In the current state a directory other than the root is named by one entry (none
//!   once removed), in the directory `parent` says; `subdirs` counts child directories.
//! - After a cut, every directory's current and durable lists are equal and every node is
//!   reachable from the root.

mod content;
mod cut;
mod file;
mod namespace;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

pub use content::{Content, Dropped, PAGE};
pub use cut::CutReport;
pub use namespace::RenameMode;

/// An inode number.
pub type Ino = u64;
/// The root directory's inode number.
pub const ROOT: Ino = 1;

/// Why an operation failed; the FUSE layer maps each to its errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such entry (ENOENT).
    NotFound,
    /// The name is taken (EEXIST).
    Exists,
    /// A directory that is not empty (ENOTEMPTY).
    NotEmpty,
    /// Not a directory where one is needed (ENOTDIR).
    NotDir,
    /// A directory where one is not allowed (EISDIR).
    IsDir,
    /// A bad argument, or a directory moved into itself (EINVAL).
    Invalid,
    /// Hard links to directories (EPERM).
    NotPermitted,
    /// A name longer than 255 bytes (ENAMETOOLONG).
    NameTooLong,
    /// An unsupported mode or flag (EOPNOTSUPP).
    NotSupported,
    /// An inode that no longer exists, e.g. held across a cut (ESTALE).
    Stale,
    /// A change asked for by a process that has died (EIO; see [`crate::fs`]).
    DeadCaller,
}

pub type Result<T> = std::result::Result<T, Error>;

/// The kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

/// Mode bits, owner and times: kept across cuts (not modelled for durability).
#[derive(Clone, Debug)]
pub struct Meta {
    /// Permission bits (`mode & 0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
}

impl Meta {
    /// Fresh metadata, all times now.
    pub fn new(perm: u16, uid: u32, gid: u32) -> Self {
        let now = SystemTime::now();
        Self {
            perm: perm & 0o7777,
            uid,
            gid,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        }
    }
}

/// A directory's entries, current and durable.
#[derive(Clone, Debug, Default)]
struct Dir {
    entries: BTreeMap<Vec<u8>, Ino>,
    durable: Arc<BTreeMap<Vec<u8>, Ino>>,
    parent: Ino,
    subdirs: u32,
}

#[derive(Debug)]
enum Body {
    File(Content),
    Dir(Dir),
    Symlink(Vec<u8>),
    Special,
}

#[derive(Debug)]
struct Node {
    kind: FileKind,
    body: Body,
    meta: Meta,
    links: u32,
    durable_refs: u32,
    lookups: u64,
}

/// A directory listing: name, inode and kind of each entry.
pub type Listing = Vec<(Vec<u8>, Ino, FileKind)>;

/// What to create.
#[derive(Clone, Debug)]
pub enum New {
    File,
    Dir,
    Symlink(Vec<u8>),
    /// A FIFO, socket or device node, with its device number.
    Special(FileKind, u32),
}

/// An inode's attributes, as `stat` shows them.
#[derive(Clone, Debug)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub size: u64,
    /// 512-byte blocks holding data (holes excluded).
    pub blocks: u64,
    pub nlink: u32,
    pub meta: Meta,
}

/// Counters for the `stats` command.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub fsync: u64,
    pub fdatasync: u64,
    pub fsyncdir: u64,
    /// Pages made durable by fsync/fdatasync, in total.
    pub synced_pages: u64,
    pub cuts: u64,
    pub last_cut: CutReport,
    /// Writes through `O_SYNC`/`O_DSYNC` descriptors (each synced the file).
    pub sync_writes: u64,
    /// Changes refused because the calling process had died (in flight across a cut).
    pub refused_dead: u64,
}

/// The whole file system.
#[derive(Debug)]
pub struct Tree {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    pub stats: Stats,
}

impl Tree {
    /// An empty file system whose root (mode 0755) belongs to `uid:gid`.
    pub fn new(uid: u32, gid: u32) -> Self {
        let root = Node {
            kind: FileKind::Dir,
            body: Body::Dir(Dir {
                parent: ROOT,
                ..Dir::default()
            }),
            meta: Meta::new(0o755, uid, gid),
            links: 1,
            durable_refs: 1,
            lookups: 0,
        };
        Self {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            stats: Stats::default(),
        }
    }

    fn node(&self, ino: Ino) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(Error::Stale)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Error::Stale)
    }

    fn dir(&self, ino: Ino) -> Result<&Dir> {
        match &self.node(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Error::NotDir),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut Dir> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Error::NotDir),
        }
    }

    /// The kind of `ino`.
    pub fn kind(&self, ino: Ino) -> Result<FileKind> {
        Ok(self.node(ino)?.kind)
    }

    /// The inode `name` names in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(Error::NotFound)
    }

    /// The kernel took a reference to `ino` (any reply carrying an entry).
    pub fn hold(&mut self, ino: Ino) -> Result<()> {
        self.node_mut(ino)?.lookups += 1;
        Ok(())
    }

    /// The kernel dropped `n` references to `ino`; frees it if nothing else holds it.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            self.maybe_free(ino);
        }
    }

    /// The attributes of `ino`.
    pub fn attr(&self, ino: Ino) -> Result<Attr> {
        let node = self.node(ino)?;
        let (size, blocks, nlink) = match &node.body {
            Body::File(c) => (
                c.size(),
                c.allocated_pages() * (PAGE as u64 / 512),
                node.links,
            ),
            Body::Dir(d) if node.links > 0 => (4096, 8, 2 + d.subdirs),
            Body::Dir(_) => (4096, 8, 0),
            Body::Symlink(t) => (t.len() as u64, 0, node.links),
            Body::Special => (0, 0, node.links),
        };
        Ok(Attr {
            ino,
            kind: node.kind,
            size,
            blocks,
            nlink,
            meta: node.meta.clone(),
        })
    }

    /// Changes metadata (mode, owner, times) through `f`; ctime becomes now.
    pub fn set_meta(&mut self, ino: Ino, f: impl FnOnce(&mut Meta)) -> Result<()> {
        let meta = &mut self.node_mut(ino)?.meta;
        f(meta);
        meta.ctime = SystemTime::now();
        Ok(())
    }

    /// The target of a symbolic link.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        match &self.node(ino)?.body {
            Body::Symlink(t) => Ok(t.clone()),
            _ => Err(Error::Invalid),
        }
    }

    /// A directory's current entries, `.` and `..` first, with their kinds.
    pub fn list(&self, ino: Ino) -> Result<Listing> {
        let dir = self.dir(ino)?;
        let mut out = Vec::with_capacity(dir.entries.len() + 2);
        out.push((b".".to_vec(), ino, FileKind::Dir));
        out.push((b"..".to_vec(), dir.parent, FileKind::Dir));
        for (name, &child) in &dir.entries {
            let kind = self.node(child).map_or(FileKind::File, |n| n.kind);
            out.push((name.clone(), child, kind));
        }
        Ok(out)
    }

    /// Creates `name` in directory `parent` (current state only) with metadata `meta`.
    pub fn make(&mut self, parent: Ino, name: &[u8], what: New, mut meta: Meta) -> Result<Ino> {
        namespace::check_name(name)?;
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Error::Exists);
        }
        let (kind, body) = match what {
            New::File => (FileKind::File, Body::File(Content::new())),
            New::Dir => (FileKind::Dir, Body::Dir(Dir::default())),
            New::Symlink(target) => (FileKind::Symlink, Body::Symlink(target)),
            New::Special(kind, rdev) => {
                meta.rdev = rdev;
                (kind, Body::Special)
            }
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = Node {
            kind,
            body,
            meta,
            links: 0,
            durable_refs: 0,
            lookups: 0,
        };
        self.nodes.insert(ino, node);
        self.add_entry(parent, name, ino)?;
        Ok(ino)
    }

    /// Counts what the file system holds now.
    pub fn census(&self) -> Census {
        let mut c = Census::default();
        for node in self.nodes.values() {
            match &node.body {
                Body::File(content) => {
                    c.files += 1;
                    c.bytes += content.size();
                    c.allocated_pages += content.allocated_pages();
                    c.dirty_pages += content.dirty_pages();
                }
                Body::Dir(_) => c.dirs += 1,
                _ => c.others += 1,
            }
        }
        c
    }
}

/// What the file system holds, for `stats` and `statfs`.
#[derive(Clone, Debug, Default)]
pub struct Census {
    pub files: u64,
    pub dirs: u64,
    /// Symbolic links, FIFOs, sockets and device nodes.
    pub others: u64,
    /// Sum of the current sizes of the regular files.
    pub bytes: u64,
    /// Pages holding data in the current state.
    pub allocated_pages: u64,
    /// Pages changed since their file's last fsync (what a cut now would drop).
    pub dirty_pages: u64,
}

#[cfg(test)]
mod tests;
