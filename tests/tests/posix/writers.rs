//! Writers that meet: two mounts writing one file, a write held while the daemon is down.

use super::*;

/// The names in the folder at `dir`, sorted (without the mount's `.snapshots`).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".snapshots")
        .collect();
    v.sort();
    v
}

/// Two mounts writing one file: in turn, each replaces what it saw; at the same time,
/// the one that commits second keeps its version beside the first one's, as a
/// conflict copy. Neither version is lost.
#[test]
fn two_mounts_writing_one_file_lose_neither_version() {
    let fx = Fixture::new();
    let other = fx.another_mount("other");
    let sees =
        |m: &Mount, text: &str| fs::read_to_string(m.path("doc.txt")).is_ok_and(|s| s == text);

    // In turn.
    fs::write(fx.m.path("doc.txt"), "first").unwrap();
    eventually("the other mount sees the first version", || {
        sees(&other, "first")
    });
    fs::write(other.path("doc.txt"), "second").unwrap();
    eventually("this mount sees the second version", || {
        sees(&fx.m, "second")
    });
    fs::write(fx.m.path("doc.txt"), "third").unwrap();
    assert_eq!(fx.daemon_has("/doc.txt").as_deref(), Some("third"));
    assert_eq!(names(&fx.m.path("")), ["doc.txt"]);

    // At the same time: both open what they see (the third version) for writing.
    eventually("the other mount sees the third version", || {
        sees(&other, "third")
    });
    let open = |m: &Mount| {
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.path("doc.txt"))
            .unwrap()
    };
    let (mut mine, mut theirs) = (open(&fx.m), open(&other));
    mine.write_all(b"mine").unwrap();
    theirs
        .write_all(b"theirs, written at the same time")
        .unwrap();
    mine.sync_all().unwrap();
    drop(mine);
    // Its commit finds the file changed since it was opened: kept beside it.
    theirs.sync_all().unwrap();
    drop(theirs);
    assert_eq!(fx.daemon_has("/doc.txt").as_deref(), Some("mine"));
    let listed = run_ok(&mut fx.d.fvfsc(["ls", "/"]));
    let copies: Vec<&str> = listed
        .lines()
        .filter(|n| n.starts_with("doc (conflict from ") && n.ends_with(").txt"))
        .collect();
    assert_eq!(copies.len(), 1, "{listed}");
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_eq!(
        fx.daemon_has(&format!("/{}", copies[0])).as_deref(),
        Some("theirs, written at the same time")
    );
    // Both mounts show both files.
    eventually("this mount sees the conflict copy", || {
        names(&fx.m.path("")).len() == 2
    });
    eventually("the other mount shows the first commit at the name", || {
        sees(&other, "mine")
    });
    assert_eq!(
        fs::read_to_string(other.path(copies[0])).unwrap(),
        "theirs, written at the same time"
    );
}

/// A write made while the daemon is down is kept by the mount, shown by
/// `fvfsc status` on this device, and committed by itself when the daemon is back.
#[test]
fn a_write_held_while_the_daemon_is_down_is_committed_when_it_returns() {
    let mut fx = Fixture::new();
    fs::write(fx.m.path("doc.txt"), "before").unwrap();
    // Read here once: what a device was using stays usable offline from its cache.
    assert_eq!(fs::read_to_string(fx.m.path("doc.txt")).unwrap(), "before");
    let addr = fx.d.addr.clone();
    fx.d.stop();

    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(fx.m.path("doc.txt"))
        .unwrap();
    f.write_all(b"written while the daemon was down").unwrap();
    assert!(f.sync_all().is_err(), "fsync cannot succeed with no daemon");
    drop(f);
    let cache = fx.work.path().join("cache");
    let status = |d: &Daemon, code| {
        let out = d
            .fvfsc(["status", "--json", "--cache-dir", cache.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["mounts"][0]["waiting"].clone()
    };
    // The retry records what waits at its next pass (every 2 s).
    eventually("fvfsc status shows the held write", || {
        status(&fx.d, 2)[0]["path"] == "/doc.txt"
    });
    let waiting = status(&fx.d, 2);
    assert!(
        Path::new(waiting[0]["local"].as_str().unwrap()).exists(),
        "{waiting}"
    );

    // The same address again: the mount's retry commits the write by itself.
    fx.d = Daemon::start(&fx._store, &addr, &["--no-mdns"]);
    eventually("the held write reaches the daemon", || {
        fx.daemon_has("/doc.txt").as_deref() == Some("written while the daemon was down")
    });
    eventually("nothing waits any more", || {
        status(&fx.d, 0) == serde_json::json!([])
    });
}
