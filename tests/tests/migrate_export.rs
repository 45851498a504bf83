//! End to end with the real `fvfsd`: migrate generated trees, export them back and
//! compare byte for byte; snapshots, rollback and diff; resuming and re-running.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use fvfs_tests::{check, tree, Fvfsd};

#[test]
fn ten_thousand_files_with_edge_cases_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 10_000, 300 << 20);
    let d = Fvfsd::new();
    let out = d.run([
        "migrate",
        "--local-src",
        src.to_str().unwrap(),
        "--dest",
        "/imported",
    ]);
    assert!(out.contains("committed version 1"), "{out}");

    let dest = work.path().join("out");
    d.run(["export", "/imported", dest.to_str().unwrap()]);
    tree::assert_same(&src, &dest);

    // An unchanged tree is not read again and makes no version.
    let again = d.run([
        "migrate",
        "--local-src",
        src.to_str().unwrap(),
        "--dest",
        "/imported",
    ]);
    assert!(again.contains("no changes, no new version"), "{again}");
    assert!(
        again.contains("(10"),
        "every file should be unchanged: {again}"
    );

    let status = d.run(["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["versions"], 1);
    let logical = v["logical_bytes"].as_u64().unwrap();
    assert!(logical > 300 << 20, "{status}");
    assert!(
        v["stored_bytes"].as_u64().unwrap() < logical,
        "dedup and compression must save space: {status}"
    );
    assert!(v["dedup_ratio"].as_f64().unwrap() > 1.0, "{status}");

    let fsck = d.run(["fsck", "--read-data"]);
    assert!(fsck.contains("0 problems"), "{fsck}");
}

#[test]
fn snapshot_change_rollback_and_diff() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 300, 1 << 20);
    let original = work.path().join("original");
    let d = Fvfsd::new();
    let s = src.to_str().unwrap();
    d.run(["migrate", "--local-src", s]);
    d.run(["export", "/", original.to_str().unwrap()]);
    assert!(d
        .run(["snapshot", "create", "before"])
        .contains("version 2"));
    let listed = d.run(["snapshot", "list"]);
    assert!(listed.starts_with("before\tversion 2"), "{listed}");

    fs::write(src.join("d000/s1/f1.txt"), b"edited").unwrap();
    fs::create_dir(src.join("new-dir")).unwrap();
    fs::write(src.join("new-dir/new.txt"), b"new").unwrap();
    fs::write(src.join("odd/added"), b"added").unwrap();
    let out = d.run(["migrate", "--local-src", s]);
    assert!(out.contains("committed version 3"), "{out}");

    let diff = d.run(["diff", "before", "HEAD"]);
    let mut lines: Vec<&str> = diff.lines().collect();
    lines.sort();
    // The root and d000/s1 change mtime only, which is not reported; odd/ gained an entry.
    assert_eq!(
        lines,
        [
            "A /new-dir/",
            "A /new-dir/new.txt",
            "A /odd/added",
            "M /d000/s1/f1.txt"
        ],
        "{diff}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&d.run(["diff", "--json", "2", "3"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);

    let out = d.run(["rollback", "before"]);
    assert!(out.contains("version 4: rolled back to version 2"), "{out}");
    assert_eq!(d.run(["diff", "before", "HEAD"]), "");
    let restored = work.path().join("restored");
    d.run(["export", "/", restored.to_str().unwrap()]);
    tree::assert_same(&original, &restored);

    // The rollback itself can be undone, and old versions stay exportable.
    let v3 = work.path().join("v3");
    d.run(["export", "--version", "3", "/new-dir", v3.to_str().unwrap()]);
    assert_eq!(fs::read(v3.join("new.txt")).unwrap(), b"new");
    let log = d.run(["log"]);
    assert_eq!(log.lines().count(), 4, "{log}");
    assert!(log.lines().next().unwrap().contains("rollback"), "{log}");
    assert!(log.contains("[before]"), "{log}");

    d.run(["snapshot", "delete", "before"]);
    let err = d.cmd(["rollback", "before"]).output().unwrap();
    check(&err, 2);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("no version or snapshot named \"before\"")
    );
}

#[test]
fn interrupted_migration_resumes_without_rereading_finished_files() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for i in 0..400 {
        let dir = src.join(format!("dir{}", i / 50));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("file{i}")), tree::bytes(i, 300_000, false)).unwrap();
    }
    let d = Fvfsd::new();
    let s = src.to_str().unwrap();
    let mut child = d
        .cmd([
            "migrate",
            "--jobs",
            "1",
            "--checkpoint-secs",
            "0.05",
            "--local-src",
            s,
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for a checkpoint that saved some files, then kill -9 mid-run.
    let mut saved = 0u64;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line
            .split("files=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
        {
            if n > 0 {
                saved = n;
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(saved > 0 && saved < 400, "checkpoint after {saved} files");

    let out = d.run(["migrate", "--local-src", s]);
    let reused = unchanged(&out);
    assert!(
        reused >= saved,
        "{reused} reused, {saved} were checkpointed: {out}"
    );
    let dest = work.path().join("out");
    d.run(["export", "/", dest.to_str().unwrap()]);
    tree::assert_same(&src, &dest);
    assert!(d.run(["fsck", "--read-data"]).contains("0 problems"));
}

/// How many files a migration found unchanged (its summary's "N files (M unchanged)").
fn unchanged(out: &str) -> u64 {
    out.split("files (")
        .nth(1)
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count of unchanged files in: {out}"))
}

#[test]
fn the_stat_cache_is_a_hint_a_damaged_one_costs_a_read_and_gone_files_leave_it() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for i in 0..300 {
        let dir = src.join(format!("dir{}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("file{i}")), tree::bytes(i, 5_000, false)).unwrap();
    }
    let s = src.to_str().unwrap();
    let d = Fvfsd::new();
    d.run(["migrate", "--local-src", s]);
    let caches: Vec<_> = fs::read_dir(d.home.path().join("statcache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(caches.len(), 1, "one cache for one source: {caches:?}");
    let cache = &caches[0];
    assert_eq!(unchanged(&d.run(["migrate", "--local-src", s])), 300);

    // An attribute set since: the file's ctime moved, so it is read again, and the
    // unchanged files keep their meta from the cache.
    let tagged = src.join("dir0/file7");
    rustix::fs::lsetxattr(
        &tagged,
        "user.colour",
        b"blue",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let out = d.run(["migrate", "--local-src", s]);
    assert_eq!(unchanged(&out), 299, "{out}");
    let dest = work.path().join("tagged");
    d.run(["export", "/", dest.to_str().unwrap()]);
    tree::assert_same(&src, &dest);
    let mut value = [0u8; 16];
    let n = rustix::fs::lgetxattr(dest.join("dir0/file7"), "user.colour", &mut value[..]).unwrap();
    assert_eq!(&value[..n], b"blue");

    // A damaged cache: every file is read again, and nothing changes.
    let mut bytes = fs::read(cache).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    fs::write(cache, &bytes).unwrap();
    let again = d.run(["migrate", "--local-src", s]);
    assert_eq!(unchanged(&again), 0, "{again}");
    assert!(again.contains("no changes, no new version"), "{again}");
    assert_eq!(unchanged(&d.run(["migrate", "--local-src", s])), 300);

    // Files deleted from the source leave the cache with the run that misses them.
    let whole = fs::metadata(cache).unwrap().len();
    fs::remove_dir_all(src.join("dir1")).unwrap();
    fs::remove_dir_all(src.join("dir2")).unwrap();
    assert_eq!(unchanged(&d.run(["migrate", "--local-src", s])), 100);
    let smaller = fs::metadata(cache).unwrap().len();
    assert!(smaller * 2 < whole, "{smaller} bytes after, {whole} before");
    let dest = work.path().join("out");
    d.run(["export", "/", dest.to_str().unwrap()]);
    assert!(dest.join("dir1/file150").is_file(), "migrate never deletes");
    assert!(d.run(["fsck", "--read-data"]).contains("0 problems"));
}

/// The stat cache keeps a print of each file's content, and takes the content from
/// HEAD: a file whose copy in fvfs changed since its import (another migration wrote
/// over it) is read again from its unchanged source and put back, the others are not.
#[test]
fn a_file_changed_in_fvfs_since_its_import_is_read_again_from_its_source() {
    let work = tempfile::tempdir().unwrap();
    let (src, other) = (work.path().join("src"), work.path().join("other"));
    for i in 0..200 {
        let dir = src.join(format!("dir{}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("file{i}")), tree::bytes(i, 3_000, false)).unwrap();
    }
    fs::create_dir_all(other.join("dir1")).unwrap();
    fs::write(other.join("dir1/file150"), b"written over in fvfs").unwrap();
    let d = Fvfsd::new();
    let migrate = |dir: &std::path::Path| d.run(["migrate", "--local-src", dir.to_str().unwrap()]);
    migrate(&src);
    assert_eq!(unchanged(&migrate(&src)), 200);
    migrate(&other);
    let out = migrate(&src);
    assert_eq!(unchanged(&out), 199, "{out}");
    assert!(out.contains("committed version 3"), "{out}");
    let dest = work.path().join("out");
    d.run(["export", "/", dest.to_str().unwrap()]);
    tree::assert_same(&src, &dest);
    assert_eq!(unchanged(&migrate(&src)), 200);
}

/// A stat cache saved before a collection took the chunks it names: the next run reads
/// every file again (HEAD no longer holds the content its prints name), puts back what
/// was collected, and the run after it finds every file unchanged.
#[test]
fn a_collection_since_the_last_run_makes_the_stat_cache_look_its_chunks_up_again() {
    let work = tempfile::tempdir().unwrap();
    let (keep, src) = (work.path().join("keep"), work.path().join("src"));
    fs::create_dir(&keep).unwrap();
    fs::write(keep.join("survivor"), tree::bytes(1, 9_000, false)).unwrap();
    // Small files, hard links, and a file large enough to be named by a file node.
    tree::generate(&src, 200, 3_000_000);
    let d = Fvfsd::new();
    let migrate = |dir: &std::path::Path, dest: &str| {
        d.run([
            "migrate",
            "--local-src",
            dir.to_str().unwrap(),
            "--dest",
            dest,
        ])
    };
    // v1: the survivor; v2: the tree; v3: back to v1, so the tree's chunks are garbage.
    // What a run stored anew ("new unique data 4.28 MiB (2.37 MiB stored)").
    let new_data = |out: &str| {
        out.split("new unique data ")
            .nth(1)
            .map(|r| r[..r.find(')').unwrap()].to_owned())
    };
    migrate(&keep, "/keep");
    let first = migrate(&src, "/src");
    let files = unchanged(&migrate(&src, "/src"));
    assert!(files > 200, "{files} files unchanged");
    d.run(["rollback", "1"]);
    let gc = d.run(["gc", "--keep-last", "1", "--grace-secs", "0"]);
    assert!(gc.contains("2 dropped"), "{gc}");

    // Every file with content is read and stored again (empty files, and second names
    // of a file read in the same run, are found unchanged without the cache).
    let again = migrate(&src, "/src");
    assert!(unchanged(&again) < files / 4, "{again}");
    assert_eq!(new_data(&again), new_data(&first), "{again}\n{first}");
    let out = work.path().join("out");
    d.run(["export", "/src", out.to_str().unwrap()]);
    tree::assert_same(&src, &out);
    assert!(d.run(["fsck", "--read-data"]).contains("0 problems"));
    assert_eq!(unchanged(&migrate(&src, "/src")), files);
}

#[test]
fn times_far_from_1970_are_kept_or_saturate_never_wrap() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    let year = |secs: u64| Duration::from_secs(secs);
    let dated = [
        // 1960-01-01: before the epoch, representable: kept to the second.
        ("1960", UNIX_EPOCH - year(315_619_200)),
        // 2300-01-01: past what nanoseconds in an i64 hold (ext4 keeps times up to
        // 2446; its lower bound, 1901, is within the i64 range, so the early side is
        // left to the unit tests of `fvfs_node::unix_ns`).
        ("2300", UNIX_EPOCH + year(10_413_792_000)),
    ];
    for (name, t) in &dated {
        let f = fs::File::create(src.join(name)).unwrap();
        f.set_modified(*t).unwrap();
    }
    let d = Fvfsd::new();
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let out = work.path().join("out");
    d.run(["export", "/", out.to_str().unwrap()]);
    let mtime = |name: &str| fs::metadata(out.join(name)).unwrap().modified().unwrap();
    assert_eq!(mtime("1960"), dated[0].1);
    let secs_from_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    // i64::MAX ns is 2262-04-11T23:47:16Z; before the fix, 2300 came back as 1901.
    assert_eq!(secs_from_epoch(mtime("2300")), 9_223_372_036);
}

#[test]
fn a_reader_that_stops_early_ends_commands_quietly() {
    use fvfs_tests::daemon::Daemon;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // 6,000 files: the diff's output (about 150 KB) outgrows a pipe's buffer, so the
    // command is still writing when its reader goes away.
    tree::generate(&src, 6_000, 0);
    let d = Fvfsd::new();
    let s = src.to_str().unwrap();
    d.run(["migrate", "--local-src", s, "--dest", "/a"]);
    d.run(["migrate", "--local-src", s, "--dest", "/b"]);
    let read_one_line_then_close = |mut cmd: std::process::Command, who: &str| {
        let mut child = cmd
            .args(["diff", "1", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("A /b/"), "{who}: {first}");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{who} complained: {stderr}");
        // What a shell reports for `cmd | head` when cmd ends by SIGPIPE.
        assert_eq!(out.status.code(), Some(141), "{who}");
    };
    read_one_line_then_close(d.cmd(Vec::<&str>::new()), "fvfsd");
    let daemon = Daemon::start(&d, "127.0.0.1:0", &["--no-mdns"]);
    read_one_line_then_close(daemon.fvfsc(Vec::<&str>::new()), "fvfsc");
}

/// FIFOs, sockets and devices, owners and extended attributes go into the tree with
/// migrate and come back with export `--keep-privileged` (devices and owners need root
/// to be created).
#[test]
fn special_files_owners_and_attributes_round_trip() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/f"), b"content").unwrap();
    let mode = |m: u32| rustix::fs::Mode::from_raw_mode(m);
    let cwd = rustix::fs::CWD;
    rustix::fs::mknodat(
        cwd,
        src.join("pipe"),
        rustix::fs::FileType::Fifo,
        mode(0o640),
        0,
    )
    .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let root = rustix::process::geteuid().is_root();
    let dev = rustix::fs::makedev(1, 3);
    if root {
        let made = rustix::fs::mknodat(
            cwd,
            src.join("null"),
            rustix::fs::FileType::CharacterDevice,
            mode(0o600),
            dev,
        );
        made.unwrap();
        rustix::fs::chownat(
            cwd,
            src.join("sub/f"),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
    }
    let xattrs = rustix::fs::lsetxattr(
        src.join("sub/f"),
        "user.colour",
        b"blue",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    let d = Fvfsd::new();
    let out = d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    assert!(out.contains("0 skipped"), "{out}");
    let dest = work.path().join("out");
    // Devices and foreign owners are privileged: brought back when asked.
    d.run(["export", "--keep-privileged", "/", dest.to_str().unwrap()]);
    tree::assert_same(&src, &dest);
    let meta = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
    assert!(meta("pipe").file_type().is_fifo());
    assert_eq!(meta("pipe").mode() & 0o7777, 0o640 & !0o022);
    assert!(meta("sock").file_type().is_socket());
    if root {
        assert!(meta("null").file_type().is_char_device());
        assert_eq!(meta("null").rdev(), dev);
        assert_eq!((meta("sub/f").uid(), meta("sub/f").gid()), (1234, 5678));
    }
    if xattrs {
        let mut value = [0u8; 16];
        let n = rustix::fs::lgetxattr(dest.join("sub/f"), "user.colour", &mut value[..]).unwrap();
        assert_eq!(&value[..n], b"blue");
    }
}

/// Hard links: the names of one source file are one file in fvfs (re-running migrate
/// changes nothing) and one file again after export; a name outside the source does
/// not count.
#[test]
fn hard_links_round_trip_through_migrate_and_export() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/f"), b"shared").unwrap();
    fs::hard_link(src.join("a/f"), src.join("a/b/g")).unwrap();
    fs::hard_link(src.join("a/f"), src.join("h")).unwrap();
    fs::write(src.join("alone"), b"one name here").unwrap();
    fs::hard_link(src.join("alone"), work.path().join("outside")).unwrap();
    let d = Fvfsd::new();
    let out = d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    assert!(out.contains("0 skipped"), "{out}");
    let again = d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    assert!(
        again.contains("no new version"),
        "a re-run changes nothing: {again}"
    );
    let dest = work.path().join("out");
    d.run(["export", "/", dest.to_str().unwrap()]);
    tree::assert_same(&src, &dest);
    let m = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
    assert_eq!(m("a/f").ino(), m("a/b/g").ino());
    assert_eq!(m("a/f").ino(), m("h").ino());
    assert_eq!(m("a/f").nlink(), 3);
    assert_eq!(m("alone").nlink(), 1);
    // fsck checks that the three names agree (and finds nothing to say).
    let fsck = d.run(["fsck", "--all"]);
    assert!(fsck.contains("0 problems"), "{fsck}");
}
