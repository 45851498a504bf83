//! A home of many small files: migrate, its re-run, export and fsck of 100,000 files
//! (also with its sorts on disk) each stay under a memory bound set by configuration,
//! not by the tree (issue 46);
//! the kernel's peak resident memory of each command is checked. `fvfsc put -r` of the
//! same tree through a daemon lands whole (in pieces the daemon takes), the client and
//! the daemon within the same bound, and so do a mount's walk of every name and the
//! daemon serving it (with the `integration` feature: it needs FUSE).

use std::path::Path;
use std::process::Command;

use fvfs_tests::daemon::Daemon;
use fvfs_tests::mount::Mount;
use fvfs_tests::{check, peak_rss, tree, with_peak_rss, Fvfsd};

const FILES: u64 = 100_000;
/// What each command may take at most, in MiB, whatever the size of the tree (the
/// databases' caches, the workers' buffers and the queues are most of it).
const BOUND_MIB: u64 = 200;

/// `FILES` files of 1-4 KB, half text, in folders of 100, with long names (so that
/// their operations pass what one commit request holds, see below).
fn home(root: &Path) {
    for n in 0..FILES {
        let dir = root.join(format!("d{:02}/d{:03}", n / 10_000, n / 100 % 100));
        if n % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let len = 1024 + (n * 7919 % 3072) as usize;
        let bytes = tree::bytes(n, len, n % 2 == 0);
        let name = format!("f{n}-{}", "long name ".repeat(20));
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn a_hundred_thousand_files_import_export_and_check_in_bounded_memory() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    home(&src);
    let store = Fvfsd::new();
    let run = |what: &str, args: &[&str]| {
        let (out, mib) = with_peak_rss(&store.cmd(args));
        check(&out, 0);
        eprintln!("{what}: peak {mib} MiB");
        assert!(
            mib <= BOUND_MIB,
            "{what} took {mib} MiB at its peak, over {BOUND_MIB}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let src_arg = src.to_str().unwrap();
    let first = run(
        "migrate",
        &["migrate", "--local-src", src_arg, "--dest", "/home"],
    );
    assert!(first.contains("committed version 1"), "{first}");
    let again = run(
        "re-run",
        &["migrate", "--local-src", src_arg, "--dest", "/home"],
    );
    assert!(again.contains(&format!("({FILES} unchanged)")), "{again}");
    assert!(again.contains("no new version"), "{again}");
    let out = work.path().join("out");
    run("export", &["export", "/home", out.to_str().unwrap()]);
    tree::assert_same(&src, &out);
    let checked = run("fsck", &["fsck", "--all", "--read-data"]);
    // The same check with its sorts on disk beyond 512 KiB (100,000 chunks are 3 MiB of
    // ids): it finds the same, in no more memory.
    let small = work.path().join("small-sorts.toml");
    std::fs::write(&small, "[gc]\nsort_memory_mb = 0.5\n").unwrap();
    let config = ["--config", small.to_str().unwrap()];
    let spilled = run(
        "fsck, sorts on disk",
        &[&config[..], &["fsck", "--all", "--read-data"]].concat(),
    );
    assert_eq!(spilled, checked);
    assert!(
        checked.contains(&format!("{FILES} data chunks")),
        "{checked}"
    );

    // The same tree through a daemon: more operations than one commit request holds,
    // committed as they are read; the client and the daemon within the same bound.
    let other = Fvfsd::new();
    let mut d = Daemon::start(&other, "127.0.0.1:0", &["--no-mdns"]);
    let mut put = d.fvfsc(["put", "/home", "-r", src_arg]);
    let (out, mib) = with_peak_rss(put.env("RUST_LOG", "fvfs_client=info"));
    check(&out, 0);
    // No piece was committed before its chunks were stored (the daemon would have
    // refused it, and the whole upload been sent again).
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("sending again"), "{log}");
    eprintln!("put -r: fvfsc peak {mib} MiB");
    assert!(mib <= BOUND_MIB, "put -r took {mib} MiB at its peak");
    let served = peak_rss(d.pid()) >> 20;
    eprintln!("put -r: fvfsd peak {served} MiB");
    assert!(
        served <= BOUND_MIB,
        "the daemon took {served} MiB at its peak"
    );
    // Their operations are more than one commit of put -r holds: several versions.
    assert!(d.head() > 1, "one version for {FILES} files of long names");
    if cfg!(feature = "integration") {
        walk_through_a_mount(&d, work.path());
    }
    d.stop();
    let back = work.path().join("back");
    other.run(["export", "/home", back.to_str().unwrap()]);
    tree::assert_same(&src, &back);
}

/// A mount's full walk of the tree (`find` stats every name): the mount and the daemon
/// serving it within the bound. (The mount holds a record per inode the kernel holds;
/// it fetches no file content for a walk that only lists: 68-70 MiB here, 212-238 MiB
/// when it did.)
fn walk_through_a_mount(d: &Daemon, work: &Path) {
    let m = Mount::start(d, &work.join("mnt"), &work.join("cache"), &[]);
    let found = Command::new("find")
        .arg(m.path("home"))
        .args(["-type", "f"])
        .output()
        .expect("run find");
    assert!(found.status.success());
    let files = found.stdout.iter().filter(|b| **b == b'\n').count();
    assert_eq!(files as u64, FILES, "files found through the mount");
    let mount = peak_rss(m.pid().expect("the mount runs")) >> 20;
    let served = peak_rss(d.pid()) >> 20;
    eprintln!("find through a mount: fvfsc mount peak {mount} MiB, fvfsd {served} MiB");
    assert!(mount <= BOUND_MIB, "the mount took {mount} MiB at its peak");
    assert!(
        served <= BOUND_MIB,
        "the daemon took {served} MiB at its peak"
    );
}
