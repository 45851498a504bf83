//! New entries other than files written here: folders, symlinks and special files,
//! staged for the next batch and shown at once ([`Core::make`]).

use fvfs_api::commit::CommitOp;
use fvfs_api::path::encode_path;
use fvfs_node::{EntryKind, Meta};
use rustix::io::Errno;

use super::namespace::new_meta;
use super::view::Attr;
use super::{now_ns, Core};

impl Core {
    /// Folder `name` in `parent` (mode without the umask), owned by `caller`.
    pub fn mkdir(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: (u32, u32),
    ) -> Result<Attr, Errno> {
        let now = now_ns();
        let meta = new_meta(self.stored(caller), now);
        self.make(parent, name, "mkdir", |path| {
            Ok(CommitOp::Mkdir {
                path: encode_path(path),
                mode,
                mtime_ns: now,
                meta: Some(meta),
            })
        })
    }

    /// Symlink `name` in `parent` to `target`, owned by `caller`.
    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: (u32, u32),
    ) -> Result<Attr, Errno> {
        let now = now_ns();
        let meta = new_meta(self.stored(caller), now);
        self.make(parent, name, "symlink", |path| {
            Ok(CommitOp::Symlink {
                path: encode_path(path),
                target: encode_path(target),
                mode: 0o777,
                mtime_ns: now,
                meta: Some(meta),
                link: None,
            })
        })
    }

    /// A FIFO, socket or device `name` in `parent`: a name with metadata in the tree
    /// (the kernel serves what is opened through it on the machine that opens it). A
    /// regular file made this way is an empty file.
    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        (kind, perm, rdev): (EntryKind, u32, u32),
        caller: (u32, u32),
    ) -> Result<Attr, Errno> {
        let now = now_ns();
        let meta = Meta {
            rdev: u64::from(rdev),
            ..new_meta(self.stored(caller), now)
        };
        self.make(parent, name, "mknod", |path| {
            let path = encode_path(path);
            Ok(match kind {
                EntryKind::Dir | EntryKind::Symlink => return Err(Errno::INVAL),
                EntryKind::File => CommitOp::File {
                    path,
                    mode: perm,
                    mtime_ns: now,
                    size: 0,
                    node: None,
                    chunks: Vec::new(),
                    meta: Some(meta),
                    link: None,
                    expect: None,
                },
                kind => CommitOp::Special {
                    path,
                    kind,
                    mode: perm,
                    mtime_ns: now,
                    meta: Some(meta),
                    link: None,
                },
            })
        })
    }
}
