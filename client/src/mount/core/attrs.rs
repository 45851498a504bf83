//! Attribute changes: setattr (size, mode, owners, times) and extended attributes,
//! on a file being written here (its write-back) or staged for the next batch.

use fvfs_api::commit::CommitOp;
use fvfs_api::path::encode_path;
use fvfs_node::{Entry, EntryKind, Meta};
use rustix::io::Errno;

use super::namespace::{attrs_of, new_meta};
use super::view::Attr;
use super::{lock, now_ns, stale, Core};
use crate::put::Attrs;

impl Core {
    /// Changes inode `ino` as `set` says (owners as this machine numbers them); its
    /// attributes after.
    pub fn setattr(&self, ino: u64, mut set: SetAttr) -> Result<Attr, Errno> {
        set.uid = set.uid.map(|u| self.ids.stored_uid(u));
        set.gid = set.gid.map(|g| self.ids.stored_gid(g));
        let changes = set.size.is_some()
            || set.mode.is_some()
            || set.mtime_ns.is_some()
            || set.uid.is_some()
            || set.gid.is_some();
        if changes {
            self.set_attrs(ino, &set).map_err(stale)?;
        }
        self.stat(ino).map_err(stale)
    }

    /// Extended attribute `name` of `ino`.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        let meta = self.meta(ino)?;
        meta.as_ref()
            .and_then(|m| m.xattr(name))
            .map(<[u8]>::to_vec)
            .ok_or(Errno::NODATA)
    }

    /// The names of `ino`'s extended attributes, each ended by a NUL (as listxattr(2)).
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let meta = self.meta(ino)?;
        let mut names = Vec::new();
        for x in meta.iter().flat_map(|m| &m.xattrs) {
            names.extend_from_slice(&x.name);
            names.push(0);
        }
        Ok(names)
    }

    /// Sets (`Some` value, with setxattr(2)'s flags) or removes extended attribute
    /// `name` of `ino`. POSIX ACLs (`system.posix_acl_*`) are not kept: refused as a
    /// file system without ACLs refuses them, so cp, tar and rsync set the mode bits
    /// instead.
    pub fn setxattr(
        &self,
        ino: u64,
        name: &[u8],
        value: Option<&[u8]>,
        flags: i32,
    ) -> Result<(), Errno> {
        if value.is_some() && name.starts_with(b"system.") {
            return Err(Errno::OPNOTSUPP);
        }
        let set = SetAttr {
            xattr: Some((name.to_vec(), value.map(<[u8]>::to_vec), flags)),
            ..SetAttr::default()
        };
        self.set_attrs(ino, &set).map_err(stale)
    }

    /// Inode `ino`'s meta: of its write-back if it is being written here, else of its
    /// entry.
    fn meta(&self, ino: u64) -> Result<Option<Meta>, Errno> {
        if let Some(wb) = self.writing.get(ino) {
            return Ok(lock(&wb).attrs.meta.clone());
        }
        let (view, path) = self.locate(ino).map_err(stale)?;
        if view == super::View::SnapshotList || (view == super::View::Live && path == b"/") {
            return Ok(None);
        }
        Ok(self.entry(&view, &path).map_err(stale)?.meta.map(|m| *m))
    }

    /// Changes live inode `ino` as `set` says (the status change time with it).
    fn set_attrs(&self, ino: u64, set: &SetAttr) -> Result<(), Errno> {
        if self.writing.get(ino).is_some() || set.size.is_some() {
            // A change to the content goes through a write-back (the open one, if any).
            let located = lock(&self.inodes).locate(ino);
            if let Some((view, path)) = &located {
                self.writable(view)?;
                let entry = self.entry(view, path);
                if set.size.is_some() && entry.as_ref().is_ok_and(|e| e.kind != EntryKind::File) {
                    return Err(Errno::ISDIR);
                }
            }
            let wb = self.open_write(ino)?;
            let result = {
                let mut w = lock(&wb);
                if let (Some(0), Some((_, path))) = (set.size, &located) {
                    if w.unfilled() {
                        // O_TRUNC (or truncate(2)) before any use of the old content.
                        self.replaced_whole(&mut w, path);
                    }
                }
                let resized = match set.size {
                    Some(size) => w.set_len(size).map_err(|_| Errno::IO),
                    None => Ok(()),
                };
                resized.and_then(|()| {
                    self.apply(&mut w.attrs, set)?;
                    w.touch();
                    // An open handle queues it as it closes (tar sets a file's owner,
                    // mode and times before it closes it). One closed already is queued
                    // again now: the other user may be only the kernel's release of that
                    // close, still on its way, and an fsync of the folder meanwhile
                    // must commit the file as it is now.
                    match w.shared() && w.queued.is_none() {
                        true => Ok(()),
                        false => self.commits.queue(ino, &mut w),
                    }
                })
            };
            return self.close_write(ino, &wb, result);
        }
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let (view, path) = self.locate(ino)?;
        self.writable(&view)?;
        let entry = self.entry(&view, &path)?;
        let mut attrs = attrs_of(&entry);
        self.apply(&mut attrs, set)?;
        let encoded = encode_path(&path);
        let op = match entry.kind {
            EntryKind::File => file_op(&path, &entry, &attrs),
            EntryKind::Dir => CommitOp::Mkdir {
                path: encoded,
                mode: attrs.mode,
                mtime_ns: attrs.mtime_ns,
                meta: attrs.meta,
            },
            EntryKind::Symlink => CommitOp::Symlink {
                path: encoded,
                target: encode_path(&entry.target),
                mode: entry.mode,
                mtime_ns: attrs.mtime_ns,
                meta: attrs.meta,
                link: attrs.link,
            },
            kind => CommitOp::Special {
                path: encoded,
                kind,
                mode: attrs.mode,
                mtime_ns: attrs.mtime_ns,
                meta: attrs.meta,
                link: attrs.link,
            },
        };
        self.stage(op, &path, Some(&entry))
    }

    /// `set` applied to `attrs`: what it names, and the status change time now.
    fn apply(&self, attrs: &mut Attrs, set: &SetAttr) -> Result<(), Errno> {
        let now = now_ns();
        let mut meta = attrs
            .meta
            .take()
            .unwrap_or_else(|| new_meta(self.ids.stored((self.uid, self.gid)), 0));
        if let Some((name, value, flags)) = &set.xattr {
            let exists = meta.xattr(name).is_some();
            if exists && flags & XATTR_CREATE != 0 {
                attrs.meta = Some(meta);
                return Err(Errno::EXIST);
            }
            if !exists && (value.is_none() || flags & XATTR_REPLACE != 0) {
                attrs.meta = Some(meta);
                return Err(Errno::NODATA);
            }
            meta.set_xattr(name, value.clone());
        }
        if let Some(mode) = set.mode {
            attrs.mode = mode & 0o7777;
        }
        meta.uid = set.uid.unwrap_or(meta.uid);
        meta.gid = set.gid.unwrap_or(meta.gid);
        // Truncating changes the mtime; a chmod does not.
        if set.size.is_some() {
            attrs.mtime_ns = now;
        }
        attrs.mtime_ns = set.mtime_ns.unwrap_or(attrs.mtime_ns);
        meta.ctime_ns = now;
        attrs.meta = Some(meta);
        Ok(())
    }
}

/// A change of an inode's attributes (`setattr`, `setxattr`, `removexattr`).
#[derive(Default)]
pub struct SetAttr {
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub mtime_ns: Option<i64>,
    /// Owners (as this machine numbers them at [`Core::setattr`], as stored inside).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// An extended attribute set (`Some` value) or removed, with setxattr's flags.
    pub xattr: Option<(Vec<u8>, Option<Vec<u8>>, i32)>,
}

/// setxattr(2)'s flags.
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;

/// The commit op putting `entry`'s content at `path` with `attrs`.
fn file_op(path: &[u8], entry: &Entry, attrs: &Attrs) -> CommitOp {
    CommitOp::File {
        path: encode_path(path),
        mode: attrs.mode,
        mtime_ns: attrs.mtime_ns,
        meta: attrs.meta.clone(),
        link: attrs.link,
        expect: None,
        size: entry.size,
        node: entry.id.map(|id| id.to_hex()),
        chunks: entry
            .chunks
            .iter()
            .map(|c| (c.id.to_hex(), c.len))
            .collect(),
    }
}
