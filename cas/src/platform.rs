//! The few operating-system calls durability and space depend on, with the macOS
//! variants next to the Linux ones. Nothing else in fvfs calls them directly.
//!
//! - [`sync_data`] / [`sync_all`]: a file's data (and, for `sync_all`, its metadata)
//!   on stable storage when they return. On macOS `fsync` only reaches the drive's
//!   cache, so both use `F_FULLFSYNC` there.
//! - [`sync_dir`]: a folder's entries (files created, renamed, removed) durable. Only
//!   per-file and per-folder syncs are portable promises: `syncfs` flushes nothing on
//!   FUSE and some network file systems, and macOS has none.
//! - [`punch_hole`]: frees a byte range in the middle of a file, keeping its size.
//! - [`lock_exclusive`]: an advisory whole-file lock, without waiting.
//! - [`write_durably`]: a small file written whole or not at all, and durable.
//! - [`rename_new`]: a rename that never replaces an existing name.
//! - [`create_private_dir`]: a folder (and its missing parents) only its owner can enter.
//! - [`read_exact_at`]: a positioned read into memory that is not zeroed first.

use std::fs::File;
use std::io;
use std::path::Path;

/// Makes `file`'s data, and the metadata needed to read it back (its size), durable.
pub fn sync_data(file: &File) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        rustix::fs::fcntl_fullfsync(file).map_err(io::Error::from)
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        rustix::fs::fdatasync(file).map_err(io::Error::from)
    }
}

/// Makes `file`'s data and all of its metadata durable.
pub fn sync_all(file: &File) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        rustix::fs::fcntl_fullfsync(file).map_err(io::Error::from)
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        file.sync_all()
    }
}

/// Makes the entries of folder `dir` durable: call it after creating, renaming or
/// removing a file in it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    sync_all(&File::open(dir)?)
}

/// Creates `dir` and its missing parents with mode 0700, so what fvfs keeps there is out
/// of other local users' reach whatever the umask. An existing folder is left as is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `bytes` to `path` (created with permissions `mode`) so that after a crash or
/// power cut the file is either absent or whole: written under a temporary name,
/// synced, renamed, and the folder synced. For small files (tokens, identities).
pub fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            sync_all(&f)
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Renames `from` to `to` only if `to` does not exist (`AlreadyExists` otherwise),
/// atomically where the file system offers it (`renameat2(RENAME_NOREPLACE)` on Linux,
/// `renamex_np(RENAME_EXCL)` on macOS); elsewhere through a hard link, which is as
/// safe, and last through a check before the rename.
pub fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => return std::fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {}
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    std::fs::rename(from, to)
}

/// Frees the bytes `offset..offset + len` of `file` (they read back as zeros; the
/// size is unchanged). `Ok(false)` when the file system cannot: the space then waits
/// for the file to be rewritten.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::FallocateFlags;
        match rustix::fs::fallocate(
            file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        ) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // macOS has F_PUNCHHOLE, but only through a raw fcntl with a struct argument,
        // which rustix does not wrap and `unsafe_code = "forbid"` rules out here:
        // freed space waits for compaction, as on a file system that refuses.
        let _ = (file, offset, len);
        Ok(false)
    }
}

/// The `len` bytes of `file` at `offset`, read into fresh memory that is never zeroed:
/// zeroing a buffer of a few hundred KiB makes the allocator hand the pages back and
/// fault them in again (with a TLB flush on every core), which was 7% of the CPU of a
/// `fsck --read-data` that reads every record. `UnexpectedEof` when the file ends
/// first.
pub fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        // Reads at most the spare capacity: at least `len - buf.len()` bytes, and should
        // it be more, the truncation below drops what was read past the range.
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Takes an exclusive advisory lock on `file` without waiting; `Ok(false)` if another
/// process holds it. Released when every handle to the file is closed.
pub fn lock_exclusive(file: &File) -> io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_exact_at_reads_the_range_or_says_the_file_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            read_exact_at(&file, 1234, 200_000).unwrap(),
            &bytes[1234..201_234]
        );
        assert_eq!(read_exact_at(&file, 7, 0).unwrap(), b"");
        let e = read_exact_at(&file, 299_000, 2_000).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn rename_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"new").unwrap();
        std::fs::write(&b, b"someone's file").unwrap();
        let e = rename_new(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&b).unwrap(), b"someone's file");
        std::fs::remove_file(&b).unwrap();
        rename_new(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
        assert!(!a.exists());
    }
}
