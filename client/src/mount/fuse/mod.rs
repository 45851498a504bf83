//! The FUSE adapter: answers the kernel's requests by calling the mount's core
//! ([`super::core`]) and translating its plain types (inode numbers, byte names,
//! attributes, errnos) into fuser's. It holds nothing of the file system's state but
//! what only FUSE has: the kernel's backing files of passthrough opens
//! ([`passthrough`]).

mod passthrough;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, Notifier, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use fvfs_node::EntryKind;

use super::backing::Backing;
use super::core::{self, Attr, Core, Handed, Kernel, Opened, Released, SetAttr, LIVE_TTL};

/// The mount as the kernel sees it.
pub struct Fuse {
    core: Core,
    passthrough: passthrough::Passthrough,
}

impl Fuse {
    pub fn new(core: Core, backing: Backing) -> Self {
        Self {
            core,
            passthrough: passthrough::Passthrough::new(backing),
        }
    }
}

/// The core's errno as FUSE answers it.
fn errno(e: core::Errno) -> Errno {
    Errno::from_i32(e.raw_os_error())
}

macro_rules! tri {
    ($reply:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(errno(e)),
        }
    };
}

fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::Dir => FileType::Directory,
        EntryKind::File => FileType::RegularFile,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
    }
}

/// The core's attributes as FUSE gives them (the access and creation times are the
/// modification time).
fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        flags: 0,
        blksize: 4096,
    }
}

fn entry(reply: ReplyEntry, attr: &Attr, ttl: Duration) {
    reply.entry(&ttl, &file_attr(attr), Generation(0));
}

/// The caller of a request, as this machine numbers users.
fn caller(req: &Request) -> (u32, u32) {
    (req.uid(), req.gid())
}

/// The notifier of the session: what the core tells the kernel.
impl Kernel for Notifier {
    fn forget_name(&self, dir: u64, name: &[u8]) -> std::io::Result<()> {
        self.inval_entry(INodeNo(dir), OsStr::from_bytes(name))
    }

    fn forget_inode(&self, ino: u64) -> std::io::Result<()> {
        // From offset 0 to the end: attributes and every cached page.
        self.inval_inode(INodeNo(ino), 0, 0)
    }

    fn store(&self, ino: u64, data: &[u8]) -> std::io::Result<()> {
        Notifier::store(self, INodeNo(ino), 0, data)
    }
}

impl Filesystem for Fuse {
    /// Not FUSE_ATOMIC_O_TRUNC: with it, the kernel checks that a file being executed is
    /// not opened `O_RDONLY|O_TRUNC` (ETXTBSY) only after this open truncated it (and
    /// sets its size to 0 itself), so the running program dies of SIGBUS. Without it,
    /// O_TRUNC comes after the kernel's checks as a resize to nothing, which reaches
    /// the write-back the open made before any of the old content was fetched: a
    /// truncating rewrite still downloads nothing, and is committed with its new data
    /// (at close or fsync), never first as an empty file.
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Listings come with attributes (and the kernel makes the inodes, which files
        // pushed into its cache need): a walk looks nothing up. Not READDIRPLUS_AUTO,
        // with which a large folder's later pieces come as names only, each then
        // looked up on its own.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS) {
            tracing::info!("kernel lacks {missing:?}: every listed name is looked up");
        }
        // Large cached files are read by the kernel from backing files; without
        // passthrough they are read through FUSE as before.
        let on = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        self.passthrough.enable(on);
        if !on {
            tracing::info!("kernel without FUSE passthrough: every read goes through fvfsc");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (attr, ttl) = tri!(reply, self.core.lookup(parent.into(), name.as_bytes()));
        entry(reply, &attr, ttl);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.into(), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let (attr, ttl) = tri!(reply, self.core.getattr(ino.into(), fh.map(|fh| fh.0)));
        reply.attr(&ttl, &file_attr(&attr));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = tri!(reply, self.core.readlink(ino.into()));
        reply.data(&target);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(self.core.opendir()), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let window = tri!(reply, self.core.listed(fh.0, ino.into(), offset, false));
        for (i, (item, _)) in window.items.iter().enumerate() {
            let next = offset + i as u64 + 1;
            if reply.add(INodeNo(item.ino), next, file_type(item.kind), item.name()) {
                break;
            }
        }
        reply.ok();
    }

    /// Names with their attributes: a walk that stats what it lists (tar, ls -l, rsync)
    /// needs no lookup per name.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let window = tri!(reply, self.core.listed(fh.0, ino.into(), offset, true));
        for (i, (item, attr)) in window.items.iter().enumerate() {
            let Some(attr) = attr else { break };
            let next = offset + i as u64 + 1;
            // Node id 0: linked to nothing (client/fuser/PATCH.md).
            let (node, ino) = match self.core.hand_out(ino.into(), item) {
                Some(Handed::Linked(ino)) => (ino, ino),
                Some(Handed::Listed(ino)) => (0, ino),
                None => continue,
            };
            let attr = file_attr(&Attr { ino, ..*attr });
            let full = reply.add(
                INodeNo(node),
                next,
                item.name(),
                &window.ttl,
                &attr,
                Generation(0),
            );
            if full {
                // Not handed out after all.
                if node != 0 && !item.is_dot() {
                    self.core.forget(ino, 1);
                }
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.close_listing(fh.0);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let file = match tri!(reply, self.core.open(ino.into(), write)) {
            Opened::Write(fh) => return reply.opened(FileHandle(fh), FopenFlags::empty()),
            Opened::Read(file) => file,
        };
        if let Some(id) = self.passthrough.open(&file, self.core.cache(), &reply) {
            let fh = self.core.keep_open(file, true);
            return reply.opened_passthrough(FileHandle(fh), FopenFlags::FOPEN_NOFLUSH, &id);
        }
        // A read-only handle has nothing to commit: no FLUSH round trip at close.
        let flags = match file.keep_cache {
            true => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
            false => FopenFlags::FOPEN_NOFLUSH,
        };
        reply.opened(FileHandle(self.core.keep_open(file, false)), flags);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = tri!(reply, self.core.read(fh.0, offset, size));
        reply.data(&data);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let written = tri!(reply, self.core.write(fh.0, offset, data));
        reply.written(written);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        tri!(reply, self.core.flush(fh.0));
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        tri!(reply, self.core.fsync(fh.0));
        reply.ok();
    }

    /// fsync of a directory: whatever was closed on the mount and waits for a batch
    /// is committed now (more than the directory's own entries; those made or moved
    /// by mkdir, rename and the like are committed as they happen).
    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        tri!(reply, self.core.sync_all());
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Released::ByKernel(ino) = tri!(reply, self.core.release(fh.0)) {
            self.passthrough.closed(ino);
        }
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = mode & !umask & 0o7777;
        let (attr, fh) = tri!(
            reply,
            self.core
                .create(parent.into(), name.as_bytes(), mode, caller(req))
        );
        reply.created(
            &LIVE_TTL,
            &file_attr(&attr),
            Generation(0),
            FileHandle(fh),
            FopenFlags::empty(),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !umask & 0o7777;
        let attr = tri!(
            reply,
            self.core
                .mkdir(parent.into(), name.as_bytes(), mode, caller(req))
        );
        entry(reply, &attr, LIVE_TTL);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes();
        let attr = tri!(
            reply,
            self.core
                .symlink(parent.into(), name.as_bytes(), target, caller(req))
        );
        entry(reply, &attr, LIVE_TTL);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match mode & S_IFMT {
            S_IFIFO => EntryKind::Fifo,
            S_IFSOCK => EntryKind::Socket,
            S_IFCHR => EntryKind::CharDevice,
            S_IFBLK => EntryKind::BlockDevice,
            S_IFREG => EntryKind::File,
            _ => return reply.error(Errno::EINVAL),
        };
        let node = (kind, mode & !umask & 0o7777, rdev);
        let attr = tri!(
            reply,
            self.core
                .mknod(parent.into(), name.as_bytes(), node, caller(req))
        );
        entry(reply, &attr, LIVE_TTL);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = tri!(reply, self.core.getxattr(ino.into(), name.as_bytes()));
        xattr_reply(reply, &value, size);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names = tri!(reply, self.core.listxattr(ino.into()));
        xattr_reply(reply, &names, size);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let set = self
            .core
            .setxattr(ino.into(), name.as_bytes(), Some(value), flags);
        tri!(reply, set);
        reply.ok();
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tri!(
            reply,
            self.core.setxattr(ino.into(), name.as_bytes(), None, 0)
        );
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tri!(
            reply,
            self.core.remove(parent.into(), name.as_bytes(), false)
        );
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tri!(
            reply,
            self.core.remove(parent.into(), name.as_bytes(), true)
        );
        reply.ok();
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            size,
            mode,
            mtime_ns: mtime.map(|t| match t {
                TimeOrNow::Now => fvfs_node::time_ns(SystemTime::now()),
                TimeOrNow::SpecificTime(t) => fvfs_node::time_ns(t),
            }),
            uid,
            gid,
            xattr: None,
        };
        let attr = tri!(reply, self.core.setattr(ino.into(), set));
        reply.attr(&LIVE_TTL, &file_attr(&attr));
    }

    /// A hard link becomes a second entry sharing the file's content (no extra space);
    /// the two are separate files afterwards, as when migrate imports hard links.
    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let attr = tri!(
            reply,
            self.core
                .link(ino.into(), newparent.into(), newname.as_bytes())
        );
        entry(reply, &attr, LIVE_TTL);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let no_replace = flags == fuser::RenameFlags::RENAME_NOREPLACE;
        if !flags.is_empty() && !no_replace {
            return reply.error(Errno::EINVAL);
        }
        tri!(
            reply,
            self.core.rename(
                parent.into(),
                name.as_bytes(),
                newparent.into(),
                newname.as_bytes(),
                no_replace,
            )
        );
        reply.ok();
    }
}

/// An extended attribute's value or a list of names, as getxattr(2) and listxattr(2)
/// answer: the size alone when asked with size 0.
fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

/// File types in a mode, as mknod(2) passes them.
const S_IFMT: u32 = 0o170000;
const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const S_IFSOCK: u32 = 0o140000;
