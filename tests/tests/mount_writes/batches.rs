//! Writes committed in batches: an untar, two mounts writing the same files, git and cargo, rsync's temporary files.

use super::*;

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
