//! Bad input for `fvfsd`: unreadable files, files that change while
//! being read, missing sources, a full disk, a store in use. Each gets a clear message
//! naming the path; nothing committed is lost and the store stays consistent.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use fvfs_tests::{check, tree, Fvfsd};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn small_tree(root: &Path) {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.txt"), b"alpha").unwrap();
    fs::write(root.join("sub/b.txt"), tree::bytes(1, 50_000, true)).unwrap();
}

#[test]
fn a_missing_source_is_refused_before_anything_is_written() {
    let d = Fvfsd::new();
    let out = d
        .cmd(["migrate", "--local-src", "/no/such/dir"])
        .output()
        .unwrap();
    check(&out, 2);
    let err = stderr_of(&out);
    assert!(
        err.contains("/no/such/dir") && err.lines().count() == 1,
        "{err}"
    );
    assert!(d.run(["status"]).contains("versions:    0"));
    let out = d.cmd(["migrate"]).output().unwrap();
    check(&out, 2);
    assert!(stderr_of(&out).contains("nothing to migrate"));
}

#[test]
fn a_file_that_changes_while_being_read_is_reported_not_imported_half_written() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let busy = src.join("growing.log");
    fs::write(&busy, tree::bytes(5, 20 << 20, false)).unwrap();
    let stop = AtomicBool::new(false);
    let d = Fvfsd::new();
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&busy).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"another log line\n").unwrap();
            }
        });
        let out = d
            // One worker leaves the other core to the appender while every read runs.
            .cmd([
                "migrate",
                "--jobs",
                "1",
                "--local-src",
                src.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        out
    });
    check(&out, 1);
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("{}: changed while being read", busy.display())),
        "{err}"
    );
    assert!(d.run(["fsck", "--read-data"]).contains("0 problems"));
    // Once the file is quiet, a re-run imports it whole.
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let dest = work.path().join("out");
    d.run(["export", "/", dest.to_str().unwrap()]);
    tree::assert_same(&src, &dest);
}

// Needs root (chown, setpriv): runs with feature `integration` (scripts/test.sh).
#[cfg(feature = "integration")]
#[test]
fn unreadable_files_and_directories_are_reported_by_name() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let secret = src.join("secret.txt");
    fs::write(&secret, b"top secret").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let closed = src.join("closed");
    fs::create_dir(&closed).unwrap();
    fs::write(closed.join("x"), b"x").unwrap();
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o000)).unwrap();
    let home = work.path().join("home");
    fs::create_dir(&home).unwrap();
    rustix::fs::chown(
        &home,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    // Root reads everything, so the migration runs as nobody.
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(fvfs_tests::bin("fvfsd"))
            .args(args)
            .env("FVFS_HOME", &home)
            .output()
            .unwrap()
    };
    let out = as_nobody(&["migrate", "--local-src", src.to_str().unwrap()]);
    check(&out, 1);
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "{}: cannot open: Permission denied",
            secret.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}: cannot list directory: Permission denied",
            closed.display()
        )),
        "{err}"
    );
    let fsck = as_nobody(&["fsck", "--read-data"]);
    check(&fsck, 0);
    let out_dir = home.join("out");
    check(
        &as_nobody(&["export", "/sub", out_dir.to_str().unwrap()]),
        0,
    );
    tree::assert_same(&src.join("sub"), &out_dir);
}

// Needs root (mounts): runs with feature `integration`, which scripts/test.sh turns on.
#[cfg(feature = "integration")]
#[test]
fn a_full_disk_stops_migration_cleanly_and_loses_nothing_committed() {
    let work = tempfile::tempdir().unwrap();
    let disk = fvfs_tests::mounts::Tmpfs::mount(&work.path().join("home"), "12m")
        .expect("a tmpfs mount (needs root)");
    let d = Fvfsd::new();
    let small = work.path().join("small");
    small_tree(&small);
    let big = work.path().join("big");
    for i in 0..40 {
        fs::create_dir_all(&big).unwrap();
        // One file larger than the disk, stored by migrate's helper threads.
        let len = if i == 0 { 16 << 20 } else { 1 << 20 };
        fs::write(
            big.join(format!("noise{i}")),
            tree::bytes(100 + i, len, false),
        )
        .unwrap();
    }
    let run = |args: &[&str]| d.cmd(args).env("FVFS_HOME", disk.path()).output().unwrap();
    check(
        &run(&[
            "migrate",
            "--local-src",
            small.to_str().unwrap(),
            "--dest",
            "/small",
        ]),
        0,
    );
    let out = run(&[
        "migrate",
        "--local-src",
        big.to_str().unwrap(),
        "--dest",
        "/big",
    ]);
    check(&out, 2);
    let err = stderr_of(&out);
    assert!(err.contains("no space left on device"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");

    // Version 1 is intact and the store consistent.
    let fsck = run(&["fsck", "--read-data"]);
    check(&fsck, 0);
    let out1 = work.path().join("out1");
    check(&run(&["export", "/small", out1.to_str().unwrap()]), 0);
    tree::assert_same(&small, &out1);

    // With room again, the same command finishes the job.
    disk.resize("96m");
    check(
        &run(&[
            "migrate",
            "--local-src",
            big.to_str().unwrap(),
            "--dest",
            "/big",
        ]),
        0,
    );
    let out2 = work.path().join("out2");
    check(&run(&["export", "/big", out2.to_str().unwrap()]), 0);
    tree::assert_same(&big, &out2);
    check(&run(&["fsck", "--read-data"]), 0);
}

#[test]
fn a_store_in_use_is_reported_in_one_line() {
    let d = Fvfsd::new();
    d.run(["status"]);
    let lock = fs::File::open(d.home.path().join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let out = d.cmd(["snapshot", "list"]).output().unwrap();
    check(&out, 2);
    let err = stderr_of(&out);
    assert!(
        err.contains("is in use by another fvfs process") && err.lines().count() == 1,
        "{err}"
    );
    drop(lock);
    d.run(["snapshot", "list"]);
}

#[test]
fn export_refuses_escapes_and_never_overwrites() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src);
    let d = Fvfsd::new();
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let dest = work.path().join("dest");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("a.txt"), b"mine, keep me").unwrap();
    let out = d
        .cmd(["export", "/", dest.to_str().unwrap()])
        .output()
        .unwrap();
    // Named and left alone; the rest is exported.
    check(&out, 1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("a.txt") && stderr.contains("left alone"),
        "{stderr}"
    );
    assert_eq!(fs::read(dest.join("a.txt")).unwrap(), b"mine, keep me");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 files not exported"));
    for bad in ["/sub/../../etc", "relative", "/missing"] {
        let out = d
            .cmd(["export", bad, work.path().join("x").to_str().unwrap()])
            .output()
            .unwrap();
        check(&out, 2);
        assert!(
            stderr_of(&out).contains(bad.trim_start_matches('/')),
            "{bad}: {}",
            stderr_of(&out)
        );
    }
}
