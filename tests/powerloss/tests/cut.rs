//! End-to-end: the real `fvfs-powerloss` binary mounted on a temporary directory, used
//! through ordinary file system calls, then cut.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use fvfs_powerloss::Harness;
use rustix::fs::{FallocateFlags, FlockOperation, OFlags};

/// A mount in a fresh temporary directory; unmounted before the directory goes.
struct Mount {
    h: Harness,
    _dir: tempfile::TempDir,
}

impl Mount {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let h = Harness::start(
            Path::new(env!("CARGO_BIN_EXE_fvfs-powerloss")),
            &dir.path().join("mnt"),
        );
        Self { h, _dir: dir }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.h.path(rel)
    }
}

/// fsync of a directory: open it O_RDONLY|O_DIRECTORY, then `sync_all`.
fn sync_dir(dir: &Path) {
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::DIRECTORY.bits() as i32)
        .open(dir)
        .unwrap();
    d.sync_all().unwrap();
}

/// Creates `path` with `data`, fsynced (its directory is not).
fn write_synced(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn exists(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => panic!("stat {}: {e}", path.display()),
    }
}

/// The byte a test writes at `offset`.
fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(31) ^ (offset >> 12)) as u8
}

#[test]
fn fsynced_content_survives_and_later_writes_do_not() {
    let mut m = Mount::new();
    let path = m.p("f");
    let synced: Vec<u8> = (0..10_000).map(pattern).collect();
    write_synced(&path, &synced);
    sync_dir(m.h.mountpoint());
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"overwritten", 5000).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(&[9; 20_000]).unwrap();
    drop(f);
    assert_eq!(fs::metadata(&path).unwrap().len(), 30_000);
    m.h.cut();
    assert_eq!(fs::read(&path).unwrap(), synced);
    // fdatasync makes content durable too.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(3).unwrap();
    f.sync_data().unwrap();
    drop(f);
    m.h.cut();
    assert_eq!(fs::read(&path).unwrap(), &synced[..3]);
    let stats = m.h.stats();
    assert!(stats.contains("\"fdatasync\":1"), "{stats}");
    assert!(stats.contains("\"cuts\":2"), "{stats}");
}

#[test]
fn o_sync_and_o_dsync_writes_are_durable() {
    let mut m = Mount::new();
    for (name, flag) in [("sync", OFlags::SYNC), ("dsync", OFlags::DSYNC)] {
        write_synced(&m.p(name), b"");
        sync_dir(m.h.mountpoint());
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(flag.bits() as i32)
            .open(m.p(name))
            .unwrap();
        f.write_all(b"synchronous").unwrap();
        drop(f);
        m.h.cut();
        assert_eq!(fs::read(m.p(name)).unwrap(), b"synchronous", "{name}");
    }
    assert!(m.h.stats().contains("\"sync_writes\":2"));
}

#[test]
fn a_new_file_needs_its_directory_synced() {
    let mut m = Mount::new();
    write_synced(&m.p("orphan"), b"synced data, unsynced name");
    m.h.cut();
    assert!(!exists(&m.p("orphan")));

    write_synced(&m.p("kept"), b"synced data and name");
    sync_dir(m.h.mountpoint());
    write_synced(&m.p("late"), b"created after the directory sync");
    m.h.cut();
    assert_eq!(fs::read(m.p("kept")).unwrap(), b"synced data and name");
    assert!(!exists(&m.p("late")));
    let names: Vec<_> = fs::read_dir(m.h.mountpoint())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["kept"]);
}

#[test]
fn rename_over_a_file_is_undone_without_a_directory_sync() {
    let mut m = Mount::new();
    write_synced(&m.p("db"), b"old");
    write_synced(&m.p("db.tmp"), b"new");
    sync_dir(m.h.mountpoint());
    fs::rename(m.p("db.tmp"), m.p("db")).unwrap();
    assert_eq!(fs::read(m.p("db")).unwrap(), b"new");
    m.h.cut();
    assert_eq!(fs::read(m.p("db")).unwrap(), b"old");
    assert_eq!(fs::read(m.p("db.tmp")).unwrap(), b"new");

    fs::rename(m.p("db.tmp"), m.p("db")).unwrap();
    sync_dir(m.h.mountpoint());
    m.h.cut();
    assert_eq!(fs::read(m.p("db")).unwrap(), b"new");
    assert!(!exists(&m.p("db.tmp")));
}

#[test]
fn a_rename_across_directories_needs_both_synced() {
    let mut m = Mount::new();
    fs::create_dir(m.p("a")).unwrap();
    fs::create_dir(m.p("b")).unwrap();
    sync_dir(m.h.mountpoint());
    write_synced(&m.p("a/f"), b"f");
    sync_dir(&m.p("a"));
    fs::rename(m.p("a/f"), m.p("b/f")).unwrap();
    sync_dir(&m.p("b"));
    m.h.cut();
    // Only b was synced after the move: the file is durably named in both.
    assert_eq!(fs::read(m.p("a/f")).unwrap(), b"f");
    assert_eq!(fs::read(m.p("b/f")).unwrap(), b"f");
    assert_eq!(fs::metadata(m.p("a/f")).unwrap().nlink(), 2);
}

#[test]
fn punch_hole_zeroes_keeps_the_size_and_needs_fsync() {
    let mut m = Mount::new();
    let path = m.p("sparse");
    let len = 3 * 4096 + 100;
    let data = vec![0xAB; len];
    write_synced(&path, &data);
    sync_dir(m.h.mountpoint());
    let punch = |sync: bool| {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        rustix::fs::fallocate(&f, flags, 1000, 8192).unwrap();
        if sync {
            f.sync_all().unwrap();
        }
    };
    let mut punched = data.clone();
    punched[1000..1000 + 8192].fill(0);
    punch(false);
    assert_eq!(fs::read(&path).unwrap(), punched);
    m.h.cut();
    assert_eq!(fs::read(&path).unwrap(), data);
    punch(true);
    m.h.cut();
    assert_eq!(fs::read(&path).unwrap(), punched);
    // Other modes: not supported.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    let err = rustix::fs::fallocate(&f, FallocateFlags::COLLAPSE_RANGE, 0, 4096).unwrap_err();
    assert_eq!(err, rustix::io::Errno::OPNOTSUPP);
    // Plain allocation extends the size.
    rustix::fs::fallocate(&f, FallocateFlags::empty(), 0, 100_000).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 100_000);
}

#[test]
fn truncate_and_unlink_are_undone_without_fsync() {
    let mut m = Mount::new();
    write_synced(&m.p("t"), b"0123456789");
    write_synced(&m.p("u"), b"durable");
    sync_dir(m.h.mountpoint());
    OpenOptions::new()
        .write(true)
        .open(m.p("t"))
        .unwrap()
        .set_len(4)
        .unwrap();
    assert_eq!(fs::read(m.p("t")).unwrap(), b"0123");
    let mut u = OpenOptions::new().write(true).open(m.p("u")).unwrap();
    u.write_all(b"CHANGED, longer").unwrap();
    drop(u);
    fs::remove_file(m.p("u")).unwrap();
    // O_TRUNC on open is a truncation too.
    File::create(m.p("t")).unwrap();
    m.h.cut();
    assert_eq!(fs::read(m.p("t")).unwrap(), b"0123456789");
    assert_eq!(fs::read(m.p("u")).unwrap(), b"durable");
}

#[test]
fn nested_directories_keep_exactly_the_durable_entries() {
    let mut m = Mount::new();
    fs::create_dir_all(m.p("a/b/c")).unwrap();
    write_synced(&m.p("a/top"), b"top");
    write_synced(&m.p("a/b/mid"), b"mid");
    write_synced(&m.p("a/b/c/deep"), b"deep");
    fs::write(m.p("a/b/c/unsynced"), b"never fsynced").unwrap();
    // a and a/b/c are synced; a/b (naming c and mid) is not.
    sync_dir(m.h.mountpoint());
    sync_dir(&m.p("a"));
    sync_dir(&m.p("a/b/c"));
    m.h.cut();
    assert_eq!(fs::read(m.p("a/top")).unwrap(), b"top");
    assert!(exists(&m.p("a/b")));
    assert_eq!(fs::read_dir(m.p("a/b")).unwrap().count(), 0);
    assert!(!exists(&m.p("a/b/c")));

    fs::create_dir_all(m.p("a/b/c")).unwrap();
    write_synced(&m.p("a/b/c/deep"), b"deep");
    fs::write(m.p("a/b/c/unsynced"), b"never fsynced").unwrap();
    sync_dir(&m.p("a/b/c"));
    sync_dir(&m.p("a/b"));
    m.h.cut();
    assert_eq!(fs::read(m.p("a/b/c/deep")).unwrap(), b"deep");
    assert_eq!(fs::read(m.p("a/b/c/unsynced")).unwrap(), b"");
    let stats = m.h.stats();
    assert!(stats.contains("\"dirs\":4"), "{stats}");
}

#[test]
fn flock_works() {
    let m = Mount::new();
    let path = m.p("lock");
    let a = File::create(&path).unwrap();
    let b = File::open(&path).unwrap();
    rustix::fs::flock(&a, FlockOperation::NonBlockingLockExclusive).unwrap();
    let err = rustix::fs::flock(&b, FlockOperation::NonBlockingLockExclusive).unwrap_err();
    assert_eq!(err, rustix::io::Errno::WOULDBLOCK);
    rustix::fs::flock(&a, FlockOperation::Unlock).unwrap();
    rustix::fs::flock(&b, FlockOperation::NonBlockingLockExclusive).unwrap();
}

#[test]
fn links_symlinks_and_open_files_across_a_cut() {
    let mut m = Mount::new();
    write_synced(&m.p("f"), b"content");
    std::os::unix::fs::symlink("f", m.p("s")).unwrap();
    fs::hard_link(m.p("f"), m.p("h")).unwrap();
    sync_dir(m.h.mountpoint());
    std::os::unix::fs::symlink("f", m.p("s2")).unwrap();
    let mut open = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("f"))
        .unwrap();
    m.h.cut();
    assert_eq!(fs::read_link(m.p("s")).unwrap(), Path::new("f"));
    assert!(!exists(&m.p("s2")));
    assert_eq!(fs::read(m.p("h")).unwrap(), b"content");
    // A file open across the cut: whatever it answers, the harness keeps serving.
    let _ = open.write_all(b"after");
    let mut buf = Vec::new();
    let _ = open.read_to_end(&mut buf);
    drop(open);
    assert!(m.h.stats().contains("\"files\":1"));
}

#[test]
fn a_64_mib_append_only_file_with_frequent_fsyncs() {
    const TOTAL: u64 = 64 << 20;
    const WRITE: usize = 4096;
    const SYNC_EVERY: u64 = 256 << 10;
    let mut m = Mount::new();
    let path = m.p("segment");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    sync_dir(m.h.mountpoint());
    let start = Instant::now();
    let mut buf = vec![0; WRITE];
    let mut off = 0;
    while off < TOTAL {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = pattern(off + i as u64);
        }
        f.write_all(&buf).unwrap();
        off += WRITE as u64;
        if off % SYNC_EVERY == 0 {
            f.sync_data().unwrap();
        }
    }
    let wrote = start.elapsed();
    f.write_all(b"unsynced tail").unwrap();
    drop(f);
    m.h.cut();
    let start = Instant::now();
    let data = fs::read(&path).unwrap();
    let read = start.elapsed();
    eprintln!(
        "64 MiB in 4 KiB appends, fdatasync every 256 KiB: {wrote:?} ({:.0} MB/s); \
         read back after the cut: {read:?} ({:.0} MB/s)",
        TOTAL as f64 / 1e6 / wrote.as_secs_f64(),
        TOTAL as f64 / 1e6 / read.as_secs_f64(),
    );
    assert_eq!(data.len() as u64, TOTAL);
    let bad = (0..TOTAL).find(|&i| data[i as usize] != pattern(i));
    assert_eq!(bad, None, "first wrong byte");
    let stats = m.h.stats();
    assert!(stats.contains("\"fdatasync\":256"), "{stats}");
}

#[test]
fn eof_or_sigterm_unmounts_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let h = Harness::start(Path::new(env!("CARGO_BIN_EXE_fvfs-powerloss")), &mnt);
    fs::write(mnt.join("x"), b"x").unwrap();
    let status = h.stop().expect("exit status");
    assert!(status.success(), "{status}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(mnt.to_str().unwrap()), "still mounted");

    // SIGTERM too, also with a file open in the mount (the unmount is then lazy).
    let h = Harness::start(Path::new(env!("CARGO_BIN_EXE_fvfs-powerloss")), &mnt);
    let busy = File::create(mnt.join("busy")).unwrap();
    let pid = rustix::process::Pid::from_raw(h.pid().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = h.stop().expect("exit status");
    assert!(status.success(), "{status}");
    drop(busy);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(mnt.to_str().unwrap()), "still mounted");
}
