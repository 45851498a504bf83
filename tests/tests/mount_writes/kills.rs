//! A mount killed or its power cut: nothing fsynced lost, nothing half written, what was closed committed by the next mount.

use super::*;

/// Writes files `w/f<n>` into `mnt` (every fifth fsynced) until the mount fails,
/// telling `progress` the count of files closed. A file's close(2) is known to have
/// succeeded once the next file's creation did (a File's drop ignores what close
/// answers, and the mount answers a close only after it journaled the file).
fn write_until_dead(mnt: &Path, progress: mpsc::Sender<usize>) -> Written {
    let mut out = Written::default();
    let _ = fs::create_dir(mnt.join("w"));
    let mut dropped: Option<(String, Vec<u8>)> = None;
    for i in 0.. {
        let path = format!("/w/f{i}");
        let content = content(i);
        let created = File::create(mnt.join(&path[1..]));
        let done = created.and_then(|mut f| {
            if let Some((p, c)) = dropped.take() {
                out.closed.insert(p, c);
                let _ = progress.send(out.closed.len());
            }
            f.write_all(&content)?;
            if i.is_multiple_of(5) {
                f.sync_all()?;
                out.synced.push(path.clone());
            }
            Ok(f)
        });
        match done {
            Ok(f) => {
                drop(f);
                dropped = Some((path, content));
            }
            Err(_) => {
                out.in_flight.extend(dropped);
                out.in_flight.insert(path, content);
                return out;
            }
        }
    }
    unreachable!()
}

/// Every file fsynced is on the daemon, as written.
fn every_fsynced_file_is_there(d: &Daemon, w: &Written) {
    for path in &w.synced {
        let written = w.closed.get(path).or_else(|| w.in_flight.get(path));
        let got = d.has(path);
        assert!(
            got.as_ref() == written,
            "{path}: {:?} bytes on the daemon, fsynced {:?}",
            got.map(|g| g.len()),
            written.map(Vec::len)
        );
    }
}

/// Every file the daemon has under `/w` is one the writer wrote, whole.
fn nothing_half_written(d: &Daemon, w: &Written) {
    let listed = run_ok(&mut d.fvfsc(["ls", "/w"]));
    for name in listed.lines() {
        let path = format!("/w/{name}");
        let got = d.has(&path).unwrap();
        let known = w.closed.get(&path).or_else(|| w.in_flight.get(&path));
        assert!(
            known == Some(&got),
            "{path}: {} bytes on the daemon, written {:?} (folder: {listed})",
            got.len(),
            known.map(Vec::len)
        );
    }
}

#[test]
fn a_killed_mount_loses_nothing_fsynced_and_the_next_commits_what_was_closed() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 600, 0);
    let archive = work.path().join("src.tar");
    tar_of(&src, &archive);
    let store = Fvfsd::new();
    let d = serve(&store);
    let cache = work.path().join("cache");
    let mnt = work.path().join("mnt");
    let mut m = Mount::start(&d, &mnt, &cache, &[]);
    fs::create_dir(m.path("t")).unwrap();
    let mut untar = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(m.path("t"))
        .spawn()
        .unwrap();
    let (progress, closed) = mpsc::channel();
    let writer = {
        let mnt = mnt.clone();
        std::thread::spawn(move || write_until_dead(&mnt, progress))
    };
    // Killed in the middle: some files committed, some closed and waiting, one open.
    while closed.recv().unwrap() < 120 {}
    m.kill();
    let w = writer.join().unwrap();
    let _ = untar.wait();
    assert!(w.closed.len() >= 120);
    // What was fsynced is on the daemon already.
    every_fsynced_file_is_there(&d, &w);
    nothing_half_written(&d, &w);

    // The next mount on the same cache commits what the killed one closed.
    assert!(mount::umount(&mnt, &cache).success());
    let m = Mount::start(&d, &mnt, &cache, &[]);
    for (path, content) in &w.closed {
        let got = d.has(path);
        assert!(
            got.as_ref() == Some(content),
            "{path}: {:?} bytes on the daemon, closed {}",
            got.map(|g| g.len()),
            content.len()
        );
    }
    nothing_half_written(&d, &w);
    // Of the untar, every file the daemon has is whole.
    let fresh = Mount::start(
        &d,
        &work.path().join("mnt2"),
        &work.path().join("cache2"),
        &[],
    );
    let want = tree::snapshot(&src);
    let mut untarred = 0;
    for (rel, node) in tree::snapshot(&fresh.path("t")) {
        if let tree::Node::File {
            content_hash, len, ..
        } = node
        {
            let whole = match want.get(&rel) {
                Some(tree::Node::File {
                    content_hash: h, ..
                }) => *h == content_hash,
                // tar holds a symlink's place with an empty file until its end.
                Some(tree::Node::Symlink { .. }) => len == 0,
                _ => false,
            };
            assert!(whole, "{}: not what the archive holds", rel.display());
            untarred += 1;
        }
    }
    eprintln!(
        "killed after {} files closed ({} fsynced); {untarred} untarred files committed",
        w.closed.len(),
        w.synced.len()
    );
    drop(m);
}

#[test]
fn a_power_cut_under_the_cache_keeps_every_fsynced_file() {
    let work = tempfile::tempdir().unwrap();
    let mut disk = Harness::start(&bin("fvfs-powerloss"), &work.path().join("disk"));
    let cache = disk.path("cache");
    fs::create_dir(&cache).unwrap();
    File::open(disk.mountpoint()).unwrap().sync_all().unwrap();
    let store = Fvfsd::new();
    let d = serve(&store);
    let mnt = work.path().join("mnt");
    let mut m = Mount::start(&d, &mnt, &cache, &[]);
    let (progress, closed) = mpsc::channel();
    let writer = {
        let mnt = mnt.clone();
        std::thread::spawn(move || write_until_dead(&mnt, progress))
    };
    while closed.recv().unwrap() < 80 {}
    // The power goes: the mount dies and its cache folder keeps only what was synced.
    m.kill();
    disk.cut();
    let w = writer.join().unwrap();
    every_fsynced_file_is_there(&d, &w);
    assert!(mount::umount(&mnt, &cache).success());
    // A mount on what the cache kept: whatever it adopts is whole, and it works.
    let m = Mount::start(&d, &mnt, &cache, &[]);
    nothing_half_written(&d, &w);
    every_fsynced_file_is_there(&d, &w);
    fs::write(m.path("after"), b"after the cut").unwrap();
    m.sync();
    assert_eq!(d.has("/after").unwrap(), b"after the cut");
}

#[test]
fn a_mount_killed_during_a_git_clone_keeps_the_repository_whole() {
    let work = tempfile::tempdir().unwrap();
    let origin = work.path().join("origin");
    tree::generate(&origin, 3000, 0);
    git(&origin, &["init", "-q"]);
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-qm", "one"]);
    let store = Fvfsd::new();
    let d = serve(&store);
    let (mnt, cache) = (work.path().join("mnt"), work.path().join("cache"));
    let mut m = Mount::start(&d, &mnt, &cache, &[]);
    let clone = m.path("clone");
    let mut cloning = Command::new("git")
        .args(["clone", "-q", "--no-local"])
        .arg(&origin)
        .arg(&clone)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed in the middle of the checkout: the pack, its index and the refs are
    // written and closed, the work tree in part, files open.
    until("the checkout under way", || {
        clone.join(".git/HEAD").exists() && files_in(&clone) >= 300
    });
    assert!(
        cloning.try_wait().unwrap().is_none(),
        "git clone ended before the kill"
    );
    m.kill();
    let cloned = cloning.wait().unwrap();
    assert!(!cloned.success(), "git clone went on with its mount killed");

    // The next mount on the cache commits what was closed: the objects are whole,
    // and every file of the work tree there holds exactly what it should.
    assert!(mount::umount(&mnt, &cache).success());
    let m = Mount::start(&d, &mnt, &cache, &[]);
    m.sync();
    git(&clone, &["fsck", "--full", "--no-progress"]);
    let want = work_tree(&origin);
    let got = work_tree(&clone);
    for (rel, node) in &got {
        assert_eq!(Some(node), want.get(rel), "{}", rel.display());
    }
    eprintln!(
        "killed with {} of {} work tree files checked out",
        got.len(),
        want.len()
    );
    assert!(got.len() < want.len(), "the checkout had ended");
    // And the clone is finished as after a crash on a disk.
    let _ = fs::remove_file(clone.join(".git/index.lock"));
    git(&clone, &["reset", "-q", "--hard"]);
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    assert_eq!(work_tree(&clone), want);
}

#[test]
fn what_waits_for_a_daemon_that_is_down_survives_a_killed_mount() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let mut d = serve(&store);
    let addr = d.addr.clone();
    let (mnt, cache) = (work.path().join("mnt"), work.path().join("cache"));
    let mut m = Mount::start(&d, &mnt, &cache, &[]);
    fs::write(m.path("seen"), b"committed").unwrap();
    m.sync();
    // The root's listing is cached: looking names up in it needs no daemon.
    assert_eq!(fs::read_dir(m.path("")).unwrap().count(), 2);
    d.kill();
    // A folder, its mode, a symlink and a file in it: all shown here, all waiting.
    fs::create_dir(m.path("made")).unwrap();
    fs::set_permissions(m.path("made"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("inner.txt", m.path("made/link")).unwrap();
    fs::write(m.path("made/inner.txt"), b"written offline").unwrap();
    assert_eq!(fs::read(m.path("made/link")).unwrap(), b"written offline");
    // A second name for the file, given before it was ever committed.
    fs::hard_link(m.path("made/inner.txt"), m.path("made/hard.txt")).unwrap();
    // (fvfsc status itself fails: the daemon is down.)
    until("the mount says what waits", || {
        let out = Command::new(bin("fvfsc"))
            .args(["status", "--cache-dir"])
            .arg(&cache)
            .env("FVFS_URL", &d.url)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        out.contains("/made/inner.txt") && out.contains("changes to folders")
    });
    // Killed before the daemon came back; the next mount commits it all, in order.
    m.kill();
    let d = Daemon::start(&store, &addr, &["--no-mdns"]);
    assert!(mount::umount(&mnt, &cache).success());
    let m = Mount::start(&d, &mnt, &cache, &[]);
    assert_eq!(d.has("/made/inner.txt").unwrap(), b"written offline");
    assert_eq!(d.has("/made/hard.txt").unwrap(), b"written offline");
    {
        use std::os::unix::fs::MetadataExt;
        let (inner, hard) = (
            fs::metadata(m.path("made/inner.txt")).unwrap(),
            fs::metadata(m.path("made/hard.txt")).unwrap(),
        );
        assert_eq!(
            (inner.ino(), inner.nlink()),
            (hard.ino(), 2),
            "one file, two names"
        );
    }
    let listed = run_ok(&mut d.fvfsc(["ls", "/", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let made = (listed.as_array().unwrap().iter())
        .find(|e| e["name"] == "made")
        .expect("the folder made offline");
    assert_eq!(made["mode"].as_u64(), Some(0o750), "{made}");
    let link = run_ok(&mut d.fvfsc(["ls", "/made", "--json"]));
    assert!(
        link.contains("\"link\"") && link.contains("inner.txt"),
        "{link}"
    );
}
