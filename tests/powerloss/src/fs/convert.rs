//! Translations between FUSE requests and the model: errno for each model error, file
//! attributes, modes and flags, and the replies shared by several handlers.
//!
//! # Invariants
//! Every model error maps to one deliberate errno ([`errno`]); a flag combination the
//! model does not support is refused (EINVAL or EOPNOTSUPP), never approximated.

use std::time::SystemTime;

use fuser::{
    Errno, FileAttr, FileType, Generation, INodeNo, RenameFlags, ReplyAttr, ReplyEmpty, ReplyEntry,
    Request, TimeOrNow,
};
use rustix::fs::FallocateFlags;

use super::TTL;
use crate::model::{Attr, Error, FileKind, Ino, Meta, New, RenameMode, Tree, PAGE};

pub(super) fn errno(e: Error) -> Errno {
    match e {
        Error::NotFound => Errno::ENOENT,
        Error::Exists => Errno::EEXIST,
        Error::NotEmpty => Errno::ENOTEMPTY,
        Error::NotDir => Errno::ENOTDIR,
        Error::IsDir => Errno::EISDIR,
        Error::Invalid => Errno::EINVAL,
        Error::NotPermitted => Errno::EPERM,
        Error::NameTooLong => Errno::ENAMETOOLONG,
        Error::NotSupported => Errno::EOPNOTSUPP,
        Error::Stale => Errno::ESTALE,
        Error::DeadCaller => Errno::EIO,
    }
}

pub(super) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

pub(super) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.meta.atime,
        mtime: a.meta.mtime,
        ctime: a.meta.ctime,
        crtime: a.meta.crtime,
        kind: file_type(a.kind),
        perm: a.meta.perm,
        nlink: a.nlink,
        uid: a.meta.uid,
        gid: a.meta.gid,
        rdev: a.meta.rdev,
        blksize: PAGE as u32,
        flags: 0,
    }
}

/// Metadata for a node created by `req` with `mode` (the kernel already applied umask).
pub(super) fn new_meta(req: &Request, mode: u32, umask: u32) -> Meta {
    Meta::new((mode & !umask & 0o7777) as u16, req.uid(), req.gid())
}

/// What `mknod` with `mode` creates.
pub(super) fn mknod_what(mode: u32, rdev: u32) -> Result<New, Error> {
    use rustix::fs::FileType as T;
    match T::from_raw_mode(mode) {
        T::RegularFile => Ok(New::File),
        T::Fifo => Ok(New::Special(FileKind::Fifo, 0)),
        T::Socket => Ok(New::Special(FileKind::Socket, 0)),
        T::CharacterDevice => Ok(New::Special(FileKind::CharDev, rdev)),
        T::BlockDevice => Ok(New::Special(FileKind::BlockDev, rdev)),
        _ => Err(Error::Invalid),
    }
}

/// The rename flavour of `renameat2` flags (`RENAME_WHITEOUT` is not supported).
pub(super) fn rename_mode(flags: RenameFlags) -> Result<RenameMode, Error> {
    if flags.is_empty() {
        Ok(RenameMode::Replace)
    } else if flags == RenameFlags::RENAME_NOREPLACE {
        Ok(RenameMode::NoReplace)
    } else if flags == RenameFlags::RENAME_EXCHANGE {
        Ok(RenameMode::Exchange)
    } else {
        Err(Error::Invalid)
    }
}

/// `fallocate` with `mode`: plain allocation (optionally `KEEP_SIZE`), `PUNCH_HOLE |
/// KEEP_SIZE` and `ZERO_RANGE` (optionally `KEEP_SIZE`); anything else is EOPNOTSUPP.
pub(super) fn fallocate(
    t: &mut Tree,
    ino: Ino,
    offset: u64,
    len: u64,
    mode: i32,
) -> Result<(), Error> {
    let flags = FallocateFlags::from_bits_retain(mode as u32);
    let keep = flags.contains(FallocateFlags::KEEP_SIZE);
    let rest = flags - FallocateFlags::KEEP_SIZE;
    if rest.is_empty() {
        t.allocate(ino, offset, len, keep)
    } else if rest == FallocateFlags::PUNCH_HOLE && keep {
        t.punch_hole(ino, offset, len)
    } else if rest == FallocateFlags::ZERO_RANGE {
        t.zero_range(ino, offset, len, keep)
    } else {
        Err(Error::NotSupported)
    }
}

/// The attribute changes of a `setattr` the model keeps.
pub(super) struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    pub ctime: Option<SystemTime>,
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl SetAttr {
    /// Applies the changes (the size to the current state only); the new attributes.
    pub(super) fn apply(self, t: &mut Tree, ino: Ino) -> Result<Attr, Error> {
        if let Some(size) = self.size {
            t.set_size(ino, size)?;
        }
        t.set_meta(ino, |m| {
            if let Some(mode) = self.mode {
                m.perm = (mode & 0o7777) as u16;
            }
            m.uid = self.uid.unwrap_or(m.uid);
            m.gid = self.gid.unwrap_or(m.gid);
            m.atime = self.atime.map_or(m.atime, time);
            m.mtime = self.mtime.map_or(m.mtime, time);
        })?;
        if let Some(ctime) = self.ctime {
            t.set_meta(ino, |m| m.ctime = ctime)?;
        }
        t.attr(ino)
    }
}

/// Refuses a change from a process that has died (see [`super`]'s invariants).
pub(super) fn check_caller(req: &Request, tree: &mut Tree) -> Result<(), Error> {
    let Some(pid) = rustix::process::Pid::from_raw(req.pid() as i32) else {
        return Ok(());
    };
    match rustix::process::test_kill_process(pid) {
        Err(rustix::io::Errno::SRCH) => {
            tree.stats.refused_dead += 1;
            Err(Error::DeadCaller)
        }
        _ => Ok(()),
    }
}

/// Counts the kernel's new reference to `ino` and returns its attributes.
pub(super) fn entry(tree: &mut Tree, ino: Ino) -> Result<FileAttr, Error> {
    tree.hold(ino)?;
    Ok(file_attr(&tree.attr(ino)?))
}

pub(super) fn reply_empty(reply: ReplyEmpty, r: Result<(), Error>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

pub(super) fn reply_entry(reply: ReplyEntry, r: Result<FileAttr, Error>) {
    match r {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

pub(super) fn reply_attr(reply: ReplyAttr, r: Result<Attr, Error>) {
    match r {
        Ok(a) => reply.attr(&TTL, &file_attr(&a)),
        Err(e) => reply.error(errno(e)),
    }
}
