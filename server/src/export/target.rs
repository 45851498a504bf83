//! The export's only way to touch the local file system: a target folder opened once,
//! and every name beneath it reached from that open folder without following a link.
//!
//! What a tree holds is hostile input (any device with a write token wrote it), and an
//! export often runs as root. So:
//! - a folder beneath the target is opened with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)` where the kernel has it, else one `O_NOFOLLOW` component at a
//!   time from the target (macOS, kernels before 5.6): a symlink anywhere on the way,
//!   whoever put it there, makes the open fail instead of leading outside;
//! - every name handed to this module is one valid component (no `/`, `.`, `..`, NUL),
//!   checked here again whatever the node decoder promised;
//! - a file is written under a temporary name that is new (`O_CREAT | O_EXCL |
//!   O_NOFOLLOW`) and unpredictable (a random number per export, then a counter), reopened
//!   only if it is still the inode created, and renamed into place without replacing
//!   anything; or, written at once where the file system can, made with no name at all
//!   (`O_TMPFILE`) and linked into place complete, without replacing anything;
//! - modes, owners, attributes and times of files and folders are set on open
//!   descriptors; those of symlinks and special files (which are never opened: a device
//!   must not be) on their name in an open folder with `AT_SYMLINK_NOFOLLOW`.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fvfs_manifest::node::valid_name;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

/// Folders beneath the target, opened for reading metadata and as parents.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The folder an export writes into, open.
pub struct Target {
    root: OwnedFd,
    /// As the user named it, for messages.
    shown: PathBuf,
    /// Random per export: temporary names cannot be guessed by whoever wrote the tree.
    temp_base: u64,
    temp_next: AtomicU64,
    /// Files can be made unnamed in the target and linked into place ([`Self::create_unnamed`]).
    unnamed: bool,
}

/// What a name beneath the target is, not following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Absent,
    Dir,
    /// A regular file: its size and mtime (ns).
    File {
        size: u64,
        mtime_ns: i64,
        id: (u64, u64),
    },
    Other(FileType),
}

impl Found {
    // `Stat`'s field types differ by platform: the casts are not no-ops everywhere.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &Stat) -> Self {
        match FileType::from_raw_mode(st.st_mode as _) {
            FileType::Directory => Found::Dir,
            FileType::RegularFile => Found::File {
                size: st.st_size as u64,
                mtime_ns: fvfs_manifest::node::unix_ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
                id: file_id(st),
            },
            other => Found::Other(other),
        }
    }

    /// What it is, in words, for the reason a name is left alone.
    pub fn describe(self) -> &'static str {
        match self {
            Found::Absent => "nothing",
            Found::Dir => "a folder",
            Found::File { .. } => "a file",
            Found::Other(FileType::Symlink) => "a symlink",
            Found::Other(FileType::Fifo) => "a FIFO",
            Found::Other(FileType::Socket) => "a socket",
            Found::Other(FileType::CharacterDevice) => "a character device",
            Found::Other(FileType::BlockDevice) => "a block device",
            Found::Other(_) => "a file of another kind",
        }
    }
}

#[allow(clippy::unnecessary_cast)] // as in `Found::of`
fn file_id(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// `name`, checked to be one component.
fn component(name: &[u8]) -> io::Result<&OsStr> {
    if valid_name(name) {
        Ok(OsStr::from_bytes(name))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a valid name", String::from_utf8_lossy(name)),
        ))
    }
}

/// A symlink met where a folder was expected reads as `ELOOP`, `ENOTDIR` (with
/// `O_NOFOLLOW | O_DIRECTORY`) or `EXDEV` (openat2's `RESOLVE_BENEATH`): said plainly.
fn not_followed(e: Errno) -> io::Error {
    match e {
        Errno::LOOP | Errno::XDEV | Errno::NOTDIR => io::Error::other(
            "a symlink or another file that is not a folder is in the way (not followed)",
        ),
        e => e.into(),
    }
}

impl Target {
    /// Creates folder `path` if missing (following the user's own path to it) and opens it.
    pub fn open(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let root = rustix::fs::openat(
            rustix::fs::CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
        let mut target = Self {
            root,
            shown: path.to_owned(),
            temp_base: u64::from_le_bytes(seed),
            temp_next: AtomicU64::new(0),
            unnamed: false,
        };
        target.unnamed = target.links_unnamed();
        Ok(target)
    }

    /// Whether a file made unnamed in the target can be linked into it: tried once,
    /// with a temporary name removed at once. Not where the file system lacks
    /// `O_TMPFILE` (NFS, most FUSE file systems, macOS), nor where neither a link by
    /// descriptor (`CAP_DAC_READ_SEARCH` before Linux 6.10) nor `/proc` is there.
    fn links_unnamed(&self) -> bool {
        let Ok(Some(file)) = make_unnamed(&self.root) else {
            return false;
        };
        let name = self.temp_name();
        let linked = link_new(&file, &self.root, &name).is_ok();
        if linked {
            remove(&self.root, &name);
        }
        linked
    }

    /// `rel` as the user sees it.
    pub fn show(&self, rel: &Path) -> PathBuf {
        self.shown.join(rel)
    }

    /// The folder `rel` (relative, components checked; empty: the target), opened
    /// without following any link on the way.
    pub fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        for c in rel.iter() {
            component(c.as_bytes())?;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(done) = self.dir_openat2(rel) {
            return done;
        }
        let mut fd = rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty())?;
        for c in rel.iter() {
            fd = rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty()).map_err(not_followed)?;
        }
        Ok(fd)
    }

    /// [`Target::dir`] by one `openat2`; `None` where the kernel lacks it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn dir_openat2(&self, rel: &Path) -> Option<io::Result<OwnedFd>> {
        use rustix::fs::ResolveFlags;
        static MISSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if MISSING.load(Ordering::Relaxed) {
            return None;
        }
        let path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        // EAGAIN: a rename elsewhere raced the lookup, which the kernel refuses to vouch for.
        for _ in 0..16 {
            match rustix::fs::openat2(&self.root, path, DIR_FLAGS, Mode::empty(), resolve) {
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) => {
                    MISSING.store(true, Ordering::Relaxed);
                    return None;
                }
                // Deeper than PATH_MAX: one component at a time has no such limit.
                Err(Errno::NAMETOOLONG) => return None,
                other => return Some(other.map_err(not_followed)),
            }
        }
        Some(Err(io::Error::other(
            "the folder kept being renamed while opened",
        )))
    }

    /// A temporary name never given before in this export.
    fn temp_name(&self) -> Vec<u8> {
        let n = self.temp_next.fetch_add(1, Ordering::Relaxed);
        format!(".fvfs-export-{:016x}-{n}", self.temp_base).into_bytes()
    }

    /// A new file in `dir` without a name (`O_TMPFILE`), open for writing; `None` where
    /// the target cannot have them. Nothing is in `dir` until [`link_new`] names it:
    /// a crash before leaves nothing behind.
    pub fn create_unnamed(&self, dir: &OwnedFd) -> io::Result<Option<File>> {
        match self.unnamed {
            true => make_unnamed(dir),
            false => Ok(None),
        }
    }

    /// A new temporary file in `dir`: its name and the file, open for writing.
    pub fn create_temp(&self, dir: &OwnedFd) -> io::Result<(Vec<u8>, File)> {
        loop {
            let name = self.temp_name();
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(
                dir,
                OsStr::from_bytes(&name),
                flags,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => return Ok((name, File::from(fd))),
                // Someone's file with that name: another name.
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Opens temporary file `name` in `dir` again, if it is still inode `id`.
pub fn reopen_temp(dir: &OwnedFd, name: &[u8], id: (u64, u64)) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        flags,
        Mode::empty(),
    )?);
    if file_id(&rustix::fs::fstat(&file)?) != id {
        return Err(io::Error::other("its temporary file was replaced"));
    }
    Ok(file)
}

/// The inode of open file `file`.
pub fn open_id(file: &File) -> io::Result<(u64, u64)> {
    Ok(file_id(&rustix::fs::fstat(file)?))
}

/// What `name` in `dir` is, without following it.
pub fn look(dir: &OwnedFd, name: &[u8]) -> io::Result<Found> {
    match rustix::fs::statat(dir, component(name)?, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Found::of(&st)),
        Err(Errno::NOENT) => Ok(Found::Absent),
        Err(e) => Err(e.into()),
    }
}

/// Makes folder `name` in `dir` (or finds it there) and opens it; `Err(found)` when
/// something else holds the name.
pub fn make_dir(dir: &OwnedFd, name: &[u8]) -> io::Result<Result<OwnedFd, Found>> {
    let c = component(name)?;
    match rustix::fs::mkdirat(dir, c, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    match rustix::fs::openat(dir, c, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Ok(fd)),
        Err(Errno::LOOP | Errno::NOTDIR) => Ok(Err(look(dir, name)?)),
        Err(e) => Err(e.into()),
    }
}

/// Renames `tmp` to `name` in `dir`, never over an existing name.
pub fn rename_new(dir: &OwnedFd, tmp: &[u8], name: &[u8]) -> io::Result<()> {
    let (tmp, to) = (component(tmp)?, component(name)?);
    match rustix::fs::renameat_with(dir, tmp, dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    // A file system without renameat2's flag: a hard link cannot replace either.
    match rustix::fs::linkat(dir, tmp, dir, to, AtFlags::empty()) {
        Ok(()) => return Ok(rustix::fs::unlinkat(dir, tmp, AtFlags::empty())?),
        Err(Errno::EXIST) => return Err(Errno::EXIST.into()),
        Err(_) => {}
    }
    // Neither (some FUSE and FAT file systems): looked at first, then renamed.
    if look(dir, name)? != Found::Absent {
        return Err(Errno::EXIST.into());
    }
    Ok(rustix::fs::renameat(dir, tmp, dir, to)?)
}

/// A new file in `dir` without a name, open for writing; `None` where the file system
/// (or the platform) has no `O_TMPFILE`.
fn make_unnamed(dir: &OwnedFd) -> io::Result<Option<File>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        match rustix::fs::openat(dir, ".", flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok(Some(File::from(fd))),
            // A file system without it (EISDIR: a kernel without it at all).
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = dir;
    Ok(None)
}

/// Names unnamed file `file` (from [`Target::create_unnamed`]) `name` in `dir`,
/// never over an existing name.
pub fn link_new(file: &File, dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let to = component(name)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        match rustix::fs::linkat(file, "", dir, to, AtFlags::EMPTY_PATH) {
            Ok(()) => return Ok(()),
            // Refused without CAP_DAC_READ_SEARCH before Linux 6.10: through /proc.
            Err(Errno::NOENT | Errno::PERM | Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(file));
        Ok(rustix::fs::linkat(
            rustix::fs::CWD,
            fd.as_str(),
            dir,
            to,
            AtFlags::SYMLINK_FOLLOW,
        )?)
    }
    // No unnamed files there ([`Target::create_unnamed`]).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (file, dir, to);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Removes temporary file `name` from `dir` (not following it); gone already is fine.
pub fn remove(dir: &OwnedFd, name: &[u8]) {
    if let Ok(c) = component(name) {
        let _ = rustix::fs::unlinkat(dir, c, AtFlags::empty());
    }
}

/// Makes symlink `name` in `dir` pointing at `target` (or finds the same one there);
/// `Err(found)` when something else holds the name.
pub fn make_symlink(dir: &OwnedFd, name: &[u8], target: &[u8]) -> io::Result<Result<(), Found>> {
    let c = component(name)?;
    match rustix::fs::symlinkat(OsStr::from_bytes(target), dir, c) {
        Ok(()) => return Ok(Ok(())),
        Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    match rustix::fs::readlinkat(dir, c, Vec::new()) {
        Ok(t) if t.as_bytes() == target => Ok(Ok(())),
        _ => Ok(Err(look(dir, name)?)),
    }
}

/// Makes special file `name` in `dir` (or finds one of that type there); `Err(found)`
/// when something else holds the name.
pub fn make_special(
    dir: &OwnedFd,
    name: &[u8],
    kind: FileType,
    mode: u32,
    rdev: u64,
) -> io::Result<Result<(), Found>> {
    let c = component(name)?;
    match rustix::fs::mknodat(dir, c, kind, Mode::from_raw_mode(mode & 0o777), rdev) {
        Ok(()) => Ok(Ok(())),
        Err(Errno::EXIST) => match look(dir, name)? {
            Found::Other(t) if t == kind => Ok(Ok(())),
            other => Ok(Err(other)),
        },
        Err(e) => Err(e.into()),
    }
}

/// Sets the mode of special file `name` in `dir` without following it (a symlink there
/// would be changed instead of its target, or the call refused).
pub fn chmod_special(dir: &OwnedFd, name: &[u8], mode: u32) -> io::Result<()> {
    let c = component(name)?;
    let mode = Mode::from_raw_mode(mode);
    match rustix::fs::chmodat(dir, c, mode, AtFlags::SYMLINK_NOFOLLOW) {
        // Kernels before fchmodat2 (6.6): the name was just made or checked by type.
        Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => match look(dir, name)? {
            Found::Other(FileType::Symlink) => Err(io::Error::other("a symlink is in the way")),
            _ => Ok(rustix::fs::chmodat(dir, c, mode, AtFlags::empty())?),
        },
        other => Ok(other?),
    }
}

/// Makes `name` in `dir` a hard link of `first` in `first_dir`, not following either.
pub fn link(first_dir: &OwnedFd, first: &[u8], dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let (from, to) = (component(first)?, component(name)?);
    Ok(rustix::fs::linkat(
        first_dir,
        from,
        dir,
        to,
        AtFlags::empty(),
    )?)
}

fn timestamps(mtime_ns: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets the mtime (and atime) of open file or folder `fd`.
pub fn set_mtime(fd: BorrowedFd<'_>, mtime_ns: i64) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &timestamps(mtime_ns))?)
}

/// Sets the mtime of `name` in `dir`, not following it.
pub fn set_mtime_at(dir: &OwnedFd, name: &[u8], mtime_ns: i64) -> io::Result<()> {
    let c = component(name)?;
    let times = timestamps(mtime_ns);
    Ok(rustix::fs::utimensat(
        dir.as_fd(),
        c,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_on_the_way_to_a_folder_is_never_followed() {
        let work = tempfile::tempdir().unwrap();
        let outside = work.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let t = Target::open(&work.path().join("t")).unwrap();
        std::fs::create_dir(work.path().join("t/a")).unwrap();
        std::os::unix::fs::symlink(&outside, work.path().join("t/a/b")).unwrap();
        std::os::unix::fs::symlink("..", work.path().join("t/up")).unwrap();
        assert!(t.dir(Path::new("a")).is_ok());
        for rel in ["a/b", "up", "a/b/c", "..", "a/../.."] {
            let e = t.dir(Path::new(rel)).unwrap_err();
            let e = e.to_string();
            assert!(
                e.contains("in the way") || e.contains("not a valid name"),
                "{rel}: {e}"
            );
        }
        let root = t.dir(Path::new("")).unwrap();
        assert_eq!(
            make_dir(&root, b"up").unwrap().unwrap_err(),
            Found::Other(FileType::Symlink)
        );
        assert!(make_dir(&root, b"../x").is_err());
    }

    #[test]
    fn folders_deeper_than_path_max_are_reached() {
        let work = tempfile::tempdir().unwrap();
        let t = Target::open(work.path()).unwrap();
        let name = "d".repeat(255);
        let mut rel = PathBuf::new();
        let mut dir = t.dir(&rel).unwrap();
        for _ in 0..20 {
            dir = make_dir(&dir, name.as_bytes()).unwrap().unwrap();
            rel.push(&name);
        }
        assert!(rel.as_os_str().len() > 4096);
        let deep = t.dir(&rel).unwrap();
        let (tmp, _) = t.create_temp(&deep).unwrap();
        rename_new(&deep, &tmp, b"f").unwrap();
        assert!(matches!(look(&dir, b"f").unwrap(), Found::File { .. }));
    }

    /// Where the target's file system has `O_TMPFILE` (ext4 here, as most local
    /// file systems), a file is made with no name, and linked complete, never over
    /// a name; the probe at open leaves nothing.
    #[cfg(target_os = "linux")]
    #[test]
    fn unnamed_files_are_linked_complete_and_never_over_a_name() {
        use std::io::Write;
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("victim"), b"mine").unwrap();
        let t = Target::open(work.path()).unwrap();
        let names = || -> Vec<_> {
            let mut n: Vec<_> = std::fs::read_dir(work.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(), ["victim"]);
        let dir = t.dir(Path::new("")).unwrap();
        let mut f = t.create_unnamed(&dir).unwrap().expect("ext4 has O_TMPFILE");
        f.write_all(b"whole").unwrap();
        assert_eq!(names(), ["victim"], "nothing is named before the link");
        let refused = link_new(&f, &dir, b"victim").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(Errno::EXIST.raw_os_error()));
        assert_eq!(std::fs::read(work.path().join("victim")).unwrap(), b"mine");
        assert!(link_new(&f, &dir, b"../escape").is_err());
        link_new(&f, &dir, b"new").unwrap();
        assert_eq!(std::fs::read(work.path().join("new")).unwrap(), b"whole");
        assert_eq!(names(), ["new", "victim"]);
        // Dropped before its link: gone without a trace.
        drop(t.create_unnamed(&dir).unwrap());
        assert_eq!(names(), ["new", "victim"]);
    }

    #[test]
    fn temporary_files_are_new_and_renamed_without_replacing() {
        let work = tempfile::tempdir().unwrap();
        let t = Target::open(work.path()).unwrap();
        let dir = t.dir(Path::new("")).unwrap();
        let (a, fa) = t.create_temp(&dir).unwrap();
        let (b, _) = t.create_temp(&dir).unwrap();
        assert_ne!(a, b);
        let id = open_id(&fa).unwrap();
        drop(fa);
        assert!(reopen_temp(&dir, &a, id).is_ok());
        // Swapped for a link to someone's file: refused.
        std::fs::write(work.path().join("victim"), b"mine").unwrap();
        let tmp_path = work.path().join(OsStr::from_bytes(&a));
        std::fs::remove_file(&tmp_path).unwrap();
        std::os::unix::fs::symlink(work.path().join("victim"), &tmp_path).unwrap();
        assert!(reopen_temp(&dir, &a, id).is_err());
        // Renamed over nothing, never over a name.
        let refused = rename_new(&dir, &b, b"victim").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(Errno::EXIST.raw_os_error()));
        assert_eq!(std::fs::read(work.path().join("victim")).unwrap(), b"mine");
        rename_new(&dir, &b, b"new").unwrap();
        assert!(matches!(
            look(&dir, b"new").unwrap(),
            Found::File { size: 0, .. }
        ));
    }
}
