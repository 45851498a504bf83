//! The mount as people use it: trees read back whole, programs run on it, concurrent writers, the cache limit, a daemon that goes away, races of stat and close, HTTPS.

use super::*;

#[test]
fn a_migrated_tree_reads_back_whole_and_snapshots_are_read_only() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 3000, 5 << 20);
    fs::write(src.join("plain.txt"), b"plain").unwrap();
    let store = Fvfsd::new();
    store.run([
        "migrate",
        "--local-src",
        src.to_str().unwrap(),
        "--dest",
        "/data",
    ]);
    store.run(["snapshot", "create", "first"]);
    let d = serve(&store);
    let mut m = mount_in(&d, work.path());

    tree::assert_same(&src, &m.path("data"));
    assert_eq!(content(&src), content(&m.path(".snapshots/first/data")));

    // Snapshots refuse every change.
    let snap = m.path(".snapshots/first/data");
    let err = fs::write(snap.join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
    let err = fs::create_dir(snap.join("d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
    // Errors are the right errno.
    let missing = fs::metadata(m.path("data/no-such-file")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(2), "ENOENT");
    let notdir = fs::metadata(m.path("data/plain.txt/x")).unwrap_err();
    assert_eq!(notdir.raw_os_error(), Some(20), "ENOTDIR");
    let notempty = fs::remove_dir(m.path("data")).unwrap_err();
    assert_eq!(notempty.raw_os_error(), Some(39), "ENOTEMPTY");
    let exists = fs::create_dir(m.path("data")).unwrap_err();
    assert_eq!(exists.raw_os_error(), Some(17), "EEXIST");
    let isdir = fs::remove_file(m.path("data")).unwrap_err();
    assert_eq!(isdir.raw_os_error(), Some(21), "EISDIR");
    let isdir = fs::OpenOptions::new()
        .write(true)
        .open(m.path("data"))
        .unwrap_err();
    assert_eq!(isdir.raw_os_error(), Some(21), "EISDIR");
    assert_eq!(m.unmount(), Some(0));
}

#[test]
fn programs_people_run_work_on_the_mount() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 300, 1 << 20);
    tree::write_big(&src.join("known.bin"), 7, 3 << 20);
    let store = Fvfsd::new();
    let d = serve(&store);
    let m = mount_in(&d, work.path());

    // cp -a in, and the daemon sees it.
    run(Command::new("cp").arg("-a").arg(&src).arg(m.path("cp")));
    same_in_mount(&src, &m, "cp");
    m.sync();
    let cat = d.fvfsc(["cat", "/cp/known.bin"]).output().unwrap();
    assert!(
        cat.stdout == fs::read(src.join("known.bin")).unwrap(),
        "the daemon serves what cp wrote"
    );

    // tar in and out.
    fs::create_dir(m.path("tar")).unwrap();
    let archive = work.path().join("in.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("."));
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(m.path("tar")));
    same_to_the_second(&src, &m.path("tar"), "tar into the mount");
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let back = work.path().join("out.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&back)
        .arg("-C")
        .arg(m.path("tar"))
        .arg("."));
    run(Command::new("tar")
        .arg("-xf")
        .arg(&back)
        .arg("-C")
        .arg(&out));
    same_to_the_second(&src, &out, "tar out of the mount");

    // rsync -a both ways. Nanoseconds count (--modify-window=-1): by default rsync
    // compares times to the second, so a folder whose entries were made within the
    // second of the source folder's mtime keeps that time, on any file system.
    run(Command::new("rsync")
        .args(["-a", "--modify-window=-1"])
        .arg(format!("{}/", src.display()))
        .arg(m.path("rsync")));
    same_in_mount(&src, &m, "rsync");
    let synced = work.path().join("synced");
    run(Command::new("rsync")
        .args(["-a", "--modify-window=-1"])
        .arg(format!("{}/", m.path("rsync").display()))
        .arg(&synced));
    tree::assert_same(&src, &synced);

    // git: init, add, commit, status.
    let repo = m.path("repo");
    run(Command::new("git").arg("init").arg("-q").arg(&repo));
    fs::write(repo.join("a.txt"), b"first\n").unwrap();
    fs::create_dir(repo.join("sub")).unwrap();
    fs::write(repo.join("sub/b.txt"), b"second\n").unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
            .args(args))
    };
    git(&["add", "-A"]);
    git(&["commit", "-qm", "one"]);
    fs::write(repo.join("a.txt"), b"changed\n").unwrap();
    git(&["commit", "-qam", "two"]);
    assert_eq!(git(&["status", "--porcelain"]), "", "a clean work tree");
    assert_eq!(git(&["log", "--oneline"]).lines().count(), 2);
    git(&["fsck", "--no-progress"]);

    // sqlite3 with transactions, one of them rolled back.
    let db = m.path("db.sqlite");
    let sql = |q: &str| run(Command::new("sqlite3").arg(&db).arg(q));
    sql("create table t(n integer); begin; insert into t values(1); insert into t values(2); commit;");
    sql("begin; insert into t values(3); rollback;");
    sql("begin; update t set n = n * 10; commit;");
    assert_eq!(sql("select sum(n) from t;").trim(), "30");
    assert_eq!(sql("pragma integrity_check;").trim(), "ok");
}

#[test]
fn concurrent_writers_each_get_their_bytes() {
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = serve(&store);
    let m = mount_in(&d, work.path());
    fs::create_dir(m.path("w")).unwrap();
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let dir = m.path("w");
            std::thread::spawn(move || {
                for i in 0..10u64 {
                    let data = tree::bytes(t * 100 + i, 50_000 + (i as usize) * 7_000, i % 2 == 0);
                    let mut f = fs::File::create(dir.join(format!("t{t}-{i}"))).unwrap();
                    f.write_all(&data).unwrap();
                    f.sync_all().unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // Every file, read by the daemon (not through this mount), holds its writer's bytes.
    for t in 0..4u64 {
        for i in 0..10u64 {
            let expect = tree::bytes(t * 100 + i, 50_000 + (i as usize) * 7_000, i % 2 == 0);
            let got = d.fvfsc(["cat", &format!("/w/t{t}-{i}")]).output().unwrap();
            assert!(got.stdout == expect, "/w/t{t}-{i}");
        }
    }
}

/// Bytes of the files below `dir` (a read-ahead may still be filling the cache and
/// evicting from it: a file gone between the listing and its stat holds nothing).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = match e.metadata() {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => panic!("{}: {err}", e.path().display()),
        };
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn the_cache_limit_holds_while_reading_ten_times_more() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..20u64 {
        fs::write(src.join(format!("f{i}")), tree::bytes(i, 1 << 20, false)).unwrap();
    }
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    let cache = work.path().join("cache");
    let m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &cache,
        &["--cache-size", "2M"],
    );
    // At most a few chunks (256 KiB each at most) over the limit, at any time.
    let bound = (2 << 20) + 4 * (256 << 10);
    for i in 0..20u64 {
        let got = fs::read(m.path(&format!("f{i}"))).unwrap();
        assert!(got == tree::bytes(i, 1 << 20, false), "f{i}");
        let held = dir_bytes(&cache.join("chunks"));
        assert!(held <= bound, "cache holds {held} bytes after f{i}");
    }
    // Still right when read again (partly from the cache, partly refetched).
    for i in (0..20u64).rev() {
        assert!(fs::read(m.path(&format!("f{i}"))).unwrap() == tree::bytes(i, 1 << 20, false));
    }
}

#[test]
fn the_mount_survives_its_daemon_and_leaves_nothing_stale() {
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let mut d = serve(&store);
    let addr = d.addr.clone();
    let mut m = mount_in(&d, work.path());
    fs::write(m.path("cached.txt"), b"read before the daemon died").unwrap();
    fs::create_dir(m.path("dir")).unwrap();
    fs::write(m.path("dir/other.txt"), b"never read here").unwrap();
    // Committed: no longer held by the mount (a file waiting for its batch would be
    // read from there).
    m.sync();
    assert_eq!(
        fs::read(m.path("cached.txt")).unwrap(),
        b"read before the daemon died"
    );

    d.kill();
    // Past the live tree's time-to-live, so the mount must do without the daemon.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // What was read stays readable (the kernel may re-ask; the chunk cache answers)...
    assert_eq!(
        fs::read(m.path("cached.txt")).unwrap(),
        b"read before the daemon died"
    );
    // ...anything else fails with EIO instead of hanging: a new file, and an fsync of a
    // file opened before.
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(m.path("new.txt"))?;
        f.write_all(b"x")?;
        f.sync_all()
    };
    let err = write().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "EIO: {err}");
    let uncached = fs::read(m.path("dir/other.txt")).unwrap_err();
    assert_eq!(uncached.raw_os_error(), Some(5), "EIO: {uncached}");

    // The daemon comes back on the same address: the mount works again by itself.
    let d = Daemon::start(&store, &addr, &["--no-mdns"]);
    fs::write(m.path("after.txt"), b"after the restart").unwrap();
    m.sync();
    let got = d.fvfsc(["cat", "/after.txt"]).output().unwrap();
    assert_eq!(got.stdout, b"after the restart");
    assert_eq!(
        fs::read(m.path("dir/other.txt")).unwrap(),
        b"never read here"
    );

    // A killed mount process leaves a stale mount; fvfsc umount clears it.
    m.kill();
    assert!(is_mounted(&m.dir), "the kernel keeps the dead mount");
    // (A name never looked up: the kernel cannot answer it from its caches.)
    let stale = fs::metadata(m.path("never-looked-up")).unwrap_err();
    assert_eq!(stale.raw_os_error(), Some(107), "ENOTCONN: {stale}");
    run(Command::new(fvfs_tests::bin("fvfsc"))
        .arg("umount")
        .arg(&m.dir));
    assert!(!is_mounted(&m.dir));
}

/// Regression: `stat` of a file took the table of files being written and then the
/// file's own lock, while closing it took them in the other order; a `git add` in CI
/// hung on it. Writers close a file over and over while others stat it.
#[test]
fn stat_racing_close_never_deadlocks() {
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = serve(&store);
    let m = mount_in(&d, work.path());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for t in 0..4u64 {
        let (dir, done) = (m.path(""), done_tx.clone());
        std::thread::spawn(move || {
            for i in 0..400u64 {
                // Writers make a new file each time (so closing it releases a
                // write-back); the others stat it, missing the kernel's attr cache.
                let file = dir.join(format!("f{}-{i}", t / 2));
                if t % 2 == 0 {
                    fs::write(&file, format!("{t}-{i}")).unwrap();
                } else {
                    for _ in 0..20 {
                        let _ = fs::metadata(&file);
                    }
                }
            }
            done.send(()).unwrap();
        });
    }
    // A hang detector, not a speed limit: the whole takes a few seconds.
    for _ in 0..4 {
        done_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the mount deadlocked");
    }
}

/// Another client removes a file the kernel still has looked up, and this mount learns
/// of it (through its own next commit): creating the file again must work, not fail
/// with ENOENT because the old name is gone (found by the crash workload).
#[test]
fn a_file_another_client_removed_can_be_written_again() {
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = serve(&store);
    let m = mount_in(&d, work.path());
    for round in 0..10 {
        let (f, g) = (m.path("f"), m.path("g"));
        fs::write(&f, format!("old {round}")).unwrap();
        m.sync();
        assert!(fs::metadata(&f).is_ok()); // The kernel holds the name for a second.
        run(&mut d.fvfsc(["rm", "/f"]));
        fs::write(&g, format!("{round}")).unwrap(); // The mount follows HEAD.
        let new = format!("new {round}");
        let mut file = fs::File::create(&f).expect("create a file removed elsewhere");
        file.write_all(new.as_bytes()).unwrap();
        file.sync_all().unwrap();
        drop(file);
        assert_eq!(run(&mut d.fvfsc(["cat", "/f"])), new);
        assert_eq!(fs::read_to_string(&f).unwrap(), new);
    }
}

/// A device mounts the daemon over HTTPS (here on loopback, the same path as from the
/// LAN), after `fvfsc pair` with the fingerprint `fvfsd pair` printed.
#[test]
fn a_mount_over_https_reads_and_writes() {
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "0.0.0.0:0", &["--no-mdns"]);
    let port = d.addr.rsplit(':').next().unwrap().to_owned();
    let token = store.run(["token"]).trim().to_owned();
    let paired = store.run(["pair"]);
    let fingerprint = paired
        .lines()
        .find_map(|l| l.strip_prefix("certificate: "))
        .expect("fvfsd pair prints the certificate")
        .to_owned();
    let url = format!("https://127.0.0.1:{port}");
    let home = work.path().join("device");
    let fvfsc = || {
        let mut c = Command::new(fvfs_tests::bin("fvfsc"));
        c.env("FVFS_URL", &url)
            .env("FVFS_TOKEN", &token)
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("FVFS_FINGERPRINT");
        c
    };
    run(fvfsc().args(["pair", &url, "--fingerprint", &fingerprint]));
    let mut m = Mount::start_with(
        fvfsc(),
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &[],
    );
    let big = tree::bytes(5, 3 << 20, false);
    fs::write(m.path("over-tls.bin"), &big).unwrap();
    assert_eq!(fs::read(m.path("over-tls.bin")).unwrap(), big);
    m.sync();
    let out = fvfsc().args(["cat", "/over-tls.bin"]).output().unwrap();
    fvfs_tests::check(&out, 0);
    assert!(
        out.stdout == big,
        "cat over HTTPS gives what the mount wrote"
    );
    assert_eq!(m.unmount(), Some(0));
}
