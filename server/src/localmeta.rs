//! What fvfs keeps of a local file beyond its kind, mode, mtime and content: owner,
//! device number and extended attributes, as migrate reads them and export writes
//! them back (on open descriptors, or names never followed).
//!
//! Reading never fails a migration: a file system without extended attributes simply
//! has none. Writing back reports what it could not set; ownership is set only by
//! root (as `tar` and `rsync` do).

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use fvfs_manifest::node::{EntryKind, Meta, Xattr};
use rustix::fs::{AtFlags, FileType, Gid, Uid, XattrFlags};

/// The most bytes of names, or of one value, read from a file's attributes (Linux
/// allows 64 KiB for either).
const XATTR_MAX: usize = 64 << 10;

/// The meta of local file `path` (lstat'ed as `m`).
pub fn read(path: &Path, m: &Metadata) -> Meta {
    let device = m.file_type();
    let is_device = {
        use std::os::unix::fs::FileTypeExt;
        device.is_block_device() || device.is_char_device()
    };
    Meta {
        uid: m.uid(),
        gid: m.gid(),
        ctime_ns: 0,
        rdev: if is_device { m.rdev() } else { 0 },
        xattrs: xattrs(
            |buf| rustix::fs::llistxattr(path, buf),
            |name, buf| rustix::fs::lgetxattr(path, name, buf),
        ),
    }
}

/// The meta of regular file `file`, open for reading, owned by `uid`:`gid`: read
/// through its descriptor, so it is the meta of the content read from it.
pub fn read_open(file: &std::fs::File, uid: u32, gid: u32) -> Meta {
    Meta {
        uid,
        gid,
        xattrs: xattrs(
            |buf| rustix::fs::flistxattr(file, buf),
            |name, buf| rustix::fs::fgetxattr(file, name, buf),
        ),
        ..Meta::default()
    }
}

type XattrResult = rustix::io::Result<usize>;

/// A file's extended attributes, sorted by name (none where unsupported or
/// unreadable), listed by `list` and read by `get`.
fn xattrs(
    list: impl Fn(&mut [u8]) -> XattrResult,
    get: impl Fn(&std::ffi::CStr, &mut [u8]) -> XattrResult,
) -> Vec<Xattr> {
    // Most files have no attributes: a small buffer on the stack asks, and 64 KiB are
    // allocated only for a list that does not fit (zeroing them for each of a tree's
    // files took a sixth of a re-run's walk).
    let mut small = [0u8; 1024];
    let names = match list(&mut small[..]) {
        Ok(0) => return Vec::new(),
        Ok(n) => small[..n].to_vec(),
        Err(rustix::io::Errno::RANGE) => {
            let mut names = vec![0u8; XATTR_MAX];
            let Ok(n) = list(&mut names[..]) else {
                return Vec::new();
            };
            names.truncate(n);
            names
        }
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; XATTR_MAX];
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name_str) = std::ffi::CString::new(name) else {
            continue;
        };
        if let Ok(len) = get(name_str.as_c_str(), &mut value[..]) {
            out.push(Xattr {
                name: name.to_vec(),
                value: value[..len].to_vec(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Where export writes metadata: an open file or folder, or a name in an open folder
/// that is never followed (a symlink or special file, which are not opened: a device
/// must not be).
pub enum At<'a> {
    Open(BorrowedFd<'a>),
    Name(BorrowedFd<'a>, &'a [u8]),
}

/// Sets `owner` (if any) and `xattrs` on `at`. Returns what could not be set.
pub fn apply(at: At<'_>, owner: Option<(u32, u32)>, xattrs: &[&Xattr]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some((uid, gid)) = owner {
        let ids = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        let owned = match at {
            At::Open(fd) => rustix::fs::fchown(fd, ids.0, ids.1),
            At::Name(dir, name) => rustix::fs::chownat(
                dir,
                OsStr::from_bytes(name),
                ids.0,
                ids.1,
                AtFlags::SYMLINK_NOFOLLOW,
            ),
        };
        if let Err(e) = owned {
            problems.push(format!("owner {uid}:{gid}: {e}"));
        }
    }
    for x in xattrs {
        let Ok(name) = std::ffi::CString::new(x.name.clone()) else {
            continue;
        };
        let set = match at {
            At::Open(fd) => {
                rustix::fs::fsetxattr(fd, name.as_c_str(), &x.value, XattrFlags::empty())
            }
            At::Name(dir, file) => set_xattr_at(dir, file, &name, &x.value),
        };
        if let Err(e) = set {
            problems.push(format!(
                "extended attribute {}: {e}",
                String::from_utf8_lossy(&x.name)
            ));
        }
    }
    problems
}

/// Sets an attribute of `name` in `dir` without following it: through the folder's
/// descriptor in /proc (a magic link to the open folder itself, so no path is
/// resolved again), where Linux has it.
fn set_xattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    attr: &std::ffi::CStr,
    value: &[u8],
) -> rustix::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    rustix::fs::lsetxattr(OsStr::from_bytes(&path), attr, value, XattrFlags::empty())
}

/// The kind of entry a local special file is.
pub fn special_kind(m: &Metadata) -> Option<EntryKind> {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    Some(if t.is_fifo() {
        EntryKind::Fifo
    } else if t.is_socket() {
        EntryKind::Socket
    } else if t.is_char_device() {
        EntryKind::CharDevice
    } else if t.is_block_device() {
        EntryKind::BlockDevice
    } else {
        return None;
    })
}

/// The file type of special entry `kind`.
pub fn special_type(kind: EntryKind) -> Option<FileType> {
    Some(match kind {
        EntryKind::Fifo => FileType::Fifo,
        EntryKind::Socket => FileType::Socket,
        EntryKind::CharDevice => FileType::CharacterDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::Mode;

    #[test]
    fn a_fifo_and_its_attributes_go_out_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let fifo_type = special_type(EntryKind::Fifo).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            fifo_type,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        let m = std::fs::symlink_metadata(&fifo).unwrap();
        assert_eq!(special_kind(&m), Some(EntryKind::Fifo));
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let want = Meta {
            uid: m.uid(),
            gid: m.gid(),
            xattrs: vec![Xattr {
                name: b"user.fvfs-test".to_vec(),
                value: b"value".to_vec(),
            }],
            ..Meta::default()
        };
        let problems = set_all(&file, &want);
        assert!(problems.is_empty(), "{problems:?}");
        let got = read(&file, &std::fs::symlink_metadata(&file).unwrap());
        assert_eq!(got, want);
    }

    #[test]
    fn attribute_names_longer_than_the_stack_buffer_are_all_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let m = std::fs::symlink_metadata(&file).unwrap();
        let mut xattrs: Vec<Xattr> = (0..40)
            .map(|i| Xattr {
                name: format!("user.fvfs-test-attribute-with-a-long-name-{i:03}").into_bytes(),
                value: vec![b'v'; i],
            })
            .collect();
        xattrs.sort_by(|a, b| a.name.cmp(&b.name));
        let names: usize = xattrs.iter().map(|x| x.name.len() + 1).sum();
        assert!(names > 1024, "{names} bytes of names");
        let want = Meta {
            uid: m.uid(),
            gid: m.gid(),
            xattrs,
            ..Meta::default()
        };
        let problems = set_all(&file, &want);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(read(&file, &m), want);
        let open = std::fs::File::open(&file).unwrap();
        assert_eq!(read_open(&open, m.uid(), m.gid()), want);
    }

    /// Sets every attribute of `want` on `file` through its descriptor.
    fn set_all(file: &Path, want: &Meta) -> Vec<String> {
        use std::os::fd::AsFd;
        let open = std::fs::File::open(file).unwrap();
        let xattrs: Vec<&Xattr> = want.xattrs.iter().collect();
        apply(At::Open(open.as_fd()), None, &xattrs)
    }
}
