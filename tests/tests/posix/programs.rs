//! Programs people run on the mount: git and SQLite in WAL mode, rsync and tar with special files and attributes.

use super::*;

/// git (clone, checkout, rebase, gc) and sqlite in WAL mode on the mount.
#[test]
fn git_and_sqlite_in_wal_mode_work_on_the_mount() {
    let fx = Fixture::new();
    let git = |dir: &Path, args: &[&str]| {
        run_ok(
            std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
                .args(["-c", "init.defaultBranch=main", "-c", "gc.auto=0"])
                .args(args),
        )
    };
    // An origin on the local disk with some history and a branch.
    let origin = fx.work.path().join("origin");
    fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "-q"]);
    for i in 0..20 {
        fs::write(
            origin.join(format!("f{}.txt", i % 7)),
            format!("line {i}\n"),
        )
        .unwrap();
        git(&origin, &["add", "-A"]);
        git(&origin, &["commit", "-qm", &format!("c{i}")]);
    }
    git(&origin, &["checkout", "-qb", "topic", "HEAD~5"]);
    fs::write(origin.join("topic.txt"), "topic\n").unwrap();
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-qm", "topic"]);
    git(&origin, &["checkout", "-q", "main"]);
    let clone = fx.m.path("clone");
    run_ok(
        std::process::Command::new("git")
            .args(["clone", "-q"])
            .arg(&origin)
            .arg(&clone),
    );
    git(&clone, &["checkout", "-q", "topic"]);
    git(&clone, &["rebase", "-q", "main"]);
    assert_eq!(git(&clone, &["log", "--oneline"]).lines().count(), 21);
    git(&clone, &["checkout", "-q", "main"]);
    git(&clone, &["gc", "-q", "--aggressive", "--prune=now"]);
    git(&clone, &["fsck", "--no-progress", "--strict"]);
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    assert_eq!(
        fs::read_to_string(clone.join("f5.txt")).unwrap(),
        fs::read_to_string(origin.join("f5.txt")).unwrap()
    );

    let db = fx.m.path("wal.sqlite");
    let sql = |q: &str| run_ok(std::process::Command::new("sqlite3").arg(&db).arg(q));
    assert_eq!(sql("pragma journal_mode=wal;").trim(), "wal");
    sql("create table t(n integer);");
    for i in 0..50 {
        sql(&format!("begin; insert into t values({i}); commit;"));
    }
    sql("begin; insert into t values(1000); rollback;");
    sql("pragma wal_checkpoint(truncate);");
    assert_eq!(sql("select count(*), sum(n) from t;").trim(), "50|1225");
    assert_eq!(sql("pragma integrity_check;").trim(), "ok");
    // What the daemon has is a working database too.
    let copy = fx.work.path().join("copy.sqlite");
    let bytes = fx.d.fvfsc(["cat", "/wal.sqlite"]).output().unwrap().stdout;
    fs::write(&copy, bytes).unwrap();
    let out = run_ok(
        std::process::Command::new("sqlite3")
            .arg(&copy)
            .arg("select count(*) from t;"),
    );
    assert_eq!(out.trim(), "50");
}

/// rsync -aHAX and tar --xattrs carry FIFOs, devices, hard links, owners and attributes
/// into the mount and out again, identical.
#[test]
fn rsync_and_tar_keep_special_files_and_attributes_through_the_mount() {
    use std::os::unix::fs::FileTypeExt;
    let fx = Fixture::new();
    let src = fx.work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/f"), "content").unwrap();
    fs::hard_link(src.join("sub/f"), src.join("hard")).unwrap();
    let cwd = rustix::fs::CWD;
    let mode = rustix::fs::Mode::from_raw_mode(0o640);
    rustix::fs::mknodat(cwd, src.join("fifo"), rustix::fs::FileType::Fifo, mode, 0).unwrap();
    let dev = rustix::fs::makedev(1, 3);
    let kind = rustix::fs::FileType::CharacterDevice;
    rustix::fs::mknodat(cwd, src.join("null"), kind, mode, dev).unwrap();
    let flags = rustix::fs::XattrFlags::empty();
    rustix::fs::lsetxattr(src.join("sub/f"), "user.tag", b"red", flags).unwrap();
    let owner = |p: &Path, uid: u32| {
        let (u, g) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(uid + 1),
        );
        rustix::fs::chownat(
            cwd,
            p,
            Some(u),
            Some(g),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    owner(&src.join("sub/f"), 1234);
    owner(&src.join("sub"), 2000);
    let check = |dir: &Path| {
        let m = |p: &str| fs::symlink_metadata(dir.join(p)).unwrap();
        assert!(m("fifo").file_type().is_fifo(), "{}", dir.display());
        assert!(m("null").file_type().is_char_device());
        assert_eq!(m("null").rdev(), dev);
        assert_eq!((m("sub/f").uid(), m("sub/f").gid()), (1234, 1235));
        assert_eq!((m("sub").uid(), m("sub").gid()), (2000, 2001));
        let mut v = [0u8; 8];
        let n = rustix::fs::lgetxattr(dir.join("sub/f"), "user.tag", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"red");
        assert_eq!(fs::read_to_string(dir.join("sub/f")).unwrap(), "content");
        assert_eq!(
            m("sub/f").ino(),
            m("hard").ino(),
            "hard links in {}",
            dir.display()
        );
        assert_eq!(m("hard").nlink(), 2);
    };
    let slash = |p: &Path| format!("{}/", p.display());
    run_ok(
        std::process::Command::new("rsync")
            .args(["-aHAX"])
            .arg(slash(&src))
            .arg(fx.m.path("rsync")),
    );
    check(&fx.m.path("rsync"));
    let back = fx.work.path().join("back");
    run_ok(
        std::process::Command::new("rsync")
            .args(["-aHAX"])
            .arg(slash(&fx.m.path("rsync")))
            .arg(&back),
    );
    check(&back);
    // tar with attributes, into the mount and out of it.
    let archive = fx.work.path().join("a.tar");
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("."),
    );
    fs::create_dir(fx.m.path("tar")).unwrap();
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "--same-owner", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(fx.m.path("tar")),
    );
    check(&fx.m.path("tar"));
    let out = fx.work.path().join("out.tar");
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "-cf"])
            .arg(&out)
            .arg("-C")
            .arg(fx.m.path("tar"))
            .arg("."),
    );
    let unpacked = fx.work.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "--same-owner", "-xpf"])
            .arg(&out)
            .arg("-C")
            .arg(&unpacked),
    );
    check(&unpacked);
}
