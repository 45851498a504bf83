//! Writing through the mount: close() queues a journaled write-back and batches commit
//! what closed together as one version; a mount killed (or a cache folder that lost
//! power) loses nothing that was fsynced, and the next mount commits what was closed;
//! two mounts writing the same files in batches keep both versions; real programs
//! (untar, git clone, cargo build) work on it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;

use fvfs_powerloss::Harness;
use fvfs_tests::daemon::Daemon;
use fvfs_tests::mount::{self, Mount};
use fvfs_tests::{bin, run_ok, tree, until, Fvfsd};

fn serve(store: &Fvfsd) -> Daemon {
    Daemon::start(store, "127.0.0.1:0", &["--no-mdns"])
}

/// `src` archived by tar, with times to the nanosecond (pax).
fn tar_of(src: &Path, archive: &Path) {
    run_ok(
        Command::new("tar")
            .arg("--format=posix")
            .arg("-cf")
            .arg(archive)
            .arg("-C")
            .arg(src)
            .arg("."),
    );
}

#[test]
fn an_untar_is_committed_in_a_few_batches_and_umount_waits_for_them() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 1000, 0);
    let archive = work.path().join("src.tar");
    tar_of(&src, &archive);
    let store = Fvfsd::new();
    let d = serve(&store);
    let mut m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &[],
    );
    let before = d.head();
    fs::create_dir(m.path("t")).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(m.path("t")),
    );
    // The mount shows it all at once...
    tree::assert_same(&src, &m.path("t"));
    // ...and umount returns once all of it is committed.
    assert_eq!(m.unmount(), Some(0));
    // Files, folders and their attributes go in batches: each file, folder and change
    // of attributes made a version of its own before (over 1,400 here).
    let made = d.head() - before;
    assert!(made <= 1000 / 20, "{made} versions for 1,000 files");
    let fresh = Mount::start(
        &d,
        &work.path().join("mnt2"),
        &work.path().join("cache2"),
        &[],
    );
    tree::assert_same(&src, &fresh.path("t"));
}

/// What a writer did before its mount died.
#[derive(Default)]
struct Written {
    /// Closed for sure: path -> content.
    closed: BTreeMap<String, Vec<u8>>,
    /// Of those, fsynced before their close.
    synced: Vec<String>,
    /// Closed or being written when the mount died: committed whole or not at all.
    in_flight: BTreeMap<String, Vec<u8>>,
}

/// The content of the writer's file `i`.
fn content(i: u64) -> Vec<u8> {
    tree::bytes(i, 500 + (i as usize * 7919) % 300_000, i.is_multiple_of(2))
}

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

/// The contents of `name` and of its conflict copies in the daemon's folder `dir`.
fn versions_of(d: &Daemon, dir: &str, name: &str) -> Vec<Vec<u8>> {
    let (stem, ext) = name.rsplit_once('.').unwrap();
    let listed = run_ok(&mut d.fvfsc(["ls", dir]));
    let mut got: Vec<Vec<u8>> = listed
        .lines()
        .filter(|n| {
            *n == name || n.starts_with(&format!("{stem} (conflict from ")) && n.ends_with(ext)
        })
        .map(|n| d.has(&format!("{dir}/{n}")).unwrap())
        .collect();
    got.sort();
    got
}

#[test]
fn two_mounts_writing_the_same_files_in_batches_keep_both_versions() {
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = serve(&store);
    let a = Mount::start(
        &d,
        &work.path().join("a"),
        &work.path().join("cache-a"),
        &[],
    );
    let b = Mount::start(
        &d,
        &work.path().join("b"),
        &work.path().join("cache-b"),
        &[],
    );
    fs::create_dir(a.path("shared")).unwrap();
    until("the second mount sees the folder", || {
        b.path("shared").is_dir()
    });
    let names: Vec<String> = (0..30).map(|i| format!("doc{i}.txt")).collect();
    std::thread::scope(|s| {
        for (m, who) in [(&a, "a"), (&b, "b")] {
            let names = &names;
            s.spawn(move || {
                for n in names {
                    fs::write(m.path(&format!("shared/{n}")), format!("{n} from {who}")).unwrap();
                }
            });
        }
    });
    a.sync();
    b.sync();
    for n in &names {
        let want: Vec<Vec<u8>> = ["a", "b"]
            .iter()
            .map(|who| format!("{n} from {who}").into_bytes())
            .collect();
        assert_eq!(versions_of(&d, "/shared", n), want, "{n}");
    }
}

/// Runs `git ARGS` in `dir`, which must succeed; its output.
fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
            .args(args),
    )
}

/// The files and symlinks of a work tree (`.git` left out), each with its content's
/// hash or its target.
fn work_tree(root: &Path) -> BTreeMap<std::path::PathBuf, tree::Node> {
    tree::snapshot(root)
        .into_iter()
        .filter(|(rel, node)| !rel.starts_with(".git") && !matches!(node, tree::Node::Dir { .. }))
        .map(|(rel, node)| {
            let node = match node {
                tree::Node::File {
                    content_hash, len, ..
                } => tree::Node::File {
                    mode: 0,
                    mtime_ns: 0,
                    content_hash,
                    len,
                },
                tree::Node::Symlink { target, .. } => tree::Node::Symlink {
                    target,
                    mtime_ns: 0,
                },
                dir => dir,
            };
            (rel, node)
        })
        .collect()
}

/// The regular files under `dir`, outside `.git`, counted while a program changes
/// them (what vanishes meanwhile is not counted).
fn files_in(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name() != ".git")
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_in(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
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
fn git_clone_and_cargo_build_work_on_the_mount() {
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = serve(&store);
    let m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &[],
    );
    // A repository of a few hundred files with history, cloned onto the mount.
    let origin = work.path().join("origin");
    tree::generate(&origin, 300, 0);
    git(&origin, &["init", "-q"]);
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-qm", "one"]);
    fs::write(origin.join("d000/s0/f0.txt"), "changed").unwrap();
    git(&origin, &["commit", "-qam", "two"]);
    let clone = m.path("clone");
    run_ok(
        Command::new("git")
            .args(["clone", "-q", "--no-local"])
            .arg(&origin)
            .arg(&clone),
    );
    git(&clone, &["fsck", "--full", "--no-progress"]);
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    assert_eq!(git(&clone, &["log", "--oneline"]).lines().count(), 2);
    // A small crate built on the mount, its target folder there too.
    let krate = m.path("hello");
    run_ok(
        Command::new("cargo")
            .args(["new", "-q", "--vcs", "none", "--name", "hello"])
            .arg(&krate),
    );
    fs::write(
        krate.join("src/main.rs"),
        "mod greet;\nfn main() { println!(\"{}\", greet::hello()); }\n",
    )
    .unwrap();
    fs::write(
        krate.join("src/greet.rs"),
        "pub fn hello() -> &'static str { \"built on fvfs\" }\n",
    )
    .unwrap();
    let built = run_ok(
        Command::new("cargo")
            .args(["run", "-q", "--offline"])
            .current_dir(&krate)
            .env_remove("CARGO_TARGET_DIR"),
    );
    assert_eq!(built.trim(), "built on fvfs");
    // And what was built is the daemon's too, once committed.
    m.sync();
    let listed = run_ok(&mut d.fvfsc(["ls", "/hello/target/debug"]));
    assert!(listed.lines().any(|n| n == "hello"), "{listed}");
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

#[test]
fn rsync_into_the_mount_renames_its_temporary_files_in_the_batches() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 400, 0);
    // Folders and symlinks of another second than now, as rsync compares times to the
    // second.
    for (rel, node) in tree::snapshot(&src) {
        if let tree::Node::Dir { .. } | tree::Node::Symlink { .. } = node {
            let t = rustix::fs::Timespec {
                tv_sec: 1_500_000_000,
                tv_nsec: 7,
            };
            let times = rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            };
            let flags = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
            rustix::fs::utimensat(rustix::fs::CWD, src.join(rel), &times, flags).unwrap();
        }
    }
    let store = Fvfsd::new();
    let d = serve(&store);
    let m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &[],
    );
    let before = d.head();
    // rsync writes each file under a temporary name, then renames it into place (and
    // sets a folder's time when it differs, as renames into it make it).
    run_ok(
        Command::new("rsync")
            .arg("-a")
            .arg(format!("{}/", src.display()))
            .arg(m.path("r")),
    );
    tree::assert_same(&src, &m.path("r"));
    m.sync();
    let made = d.head() - before;
    assert!(made <= 400 / 10, "{made} versions for 400 files");
    let fresh = Mount::start(
        &d,
        &work.path().join("mnt2"),
        &work.path().join("cache2"),
        &[],
    );
    tree::assert_same(&src, &fresh.path("r"));
}
