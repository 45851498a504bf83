//! The mount behaves like a local file system: every case here runs on a local
//! directory and on a real `fvfsc mount`, and both must give the same transcript; and
//! what is written through an inode lands where that inode is, or nowhere once it is
//! unlinked (files used to come back from the dead).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use fvfs_tests::daemon::Daemon;
use fvfs_tests::mount::Mount;
use fvfs_tests::{run_ok, Fvfsd};

mod local_disk;
mod open_files;
mod owners;
mod programs;
mod writers;

struct Fixture {
    work: tempfile::TempDir,
    d: Daemon,
    m: Mount,
    _store: Fvfsd,
}

impl Fixture {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let store = Fvfsd::new();
        let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
        let m = Mount::start(
            &d,
            &work.path().join("mnt"),
            &work.path().join("cache"),
            &[],
        );
        Self {
            work,
            d,
            m,
            _store: store,
        }
    }

    /// A second mount of the same daemon.
    fn another_mount(&self, name: &str) -> Mount {
        let dir = self.work.path().join(name);
        Mount::start(
            &self.d,
            &dir,
            &self.work.path().join(format!("{name}-cache")),
            &[],
        )
    }

    /// What the daemon has at `path` (its content), or `None`, once this fixture's
    /// mount committed every file closed on it (close alone queues it for a batch).
    fn daemon_has(&self, path: &str) -> Option<String> {
        self.m.sync();
        let out = self.d.fvfsc(["cat", path]).output().expect("run fvfsc cat");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn errno(r: std::io::Result<impl Sized>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => match e.raw_os_error() {
            Some(n) => format!("errno {n}"),
            None => e.to_string(),
        },
    }
}

fn read_all(f: &mut File) -> String {
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut s).unwrap();
    s
}

/// Waits until `cond` holds on a mount that learns of others' commits when its
/// follower polls HEAD (about a second; the kernel may keep what it was told of the
/// live tree for minutes, so a pass shows the kernel was told).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
