//! End to end with the real `fvfsd serve` and `fvfsc`: every command, raw HTTP routes,
//! bad requests, tokens, commands through the daemon, graceful shutdown.

use std::fs;
use std::process::Output;

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::{check, tree, Fvfsd};

mod commands;
mod requests;
mod snapshots;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Puts `text` at `path` through `local` (a scratch file), with fvfsc.
fn put_text(d: &Daemon, local: &std::path::Path, path: &str, text: &str) {
    fs::write(local, text).unwrap();
    fvfsc(d, 0, &["put", path, "--from", local.to_str().unwrap()]);
}

/// Runs an fvfsc command, expecting exit code `code`; returns stdout.
fn fvfsc(d: &Daemon, code: i32, args: &[&str]) -> String {
    let out = d.fvfsc(args).output().unwrap();
    check(&out, code);
    stdout(&out)
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let store = Fvfsd::new();
    let mut d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let mut written = Vec::new();
    for i in 0..20u64 {
        let body = tree::bytes(i, 50_000 + i as usize, i % 2 == 0);
        let (status, _) = d.raw(&request("PUT", &format!("/v1/files/f{i}"), &[], &body));
        assert_eq!(status, 201);
        written.push(body);
    }
    d.kill();
    // The daemon died holding the store: a command opens it directly again.
    assert!(store.run(["fsck", "--read-data"]).contains("0 problems"));
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    for (i, body) in written.iter().enumerate() {
        let out = d.fvfsc(["cat", &format!("/f{i}")]).output().unwrap();
        assert_eq!(&out.stdout, body, "f{i}");
    }
}

/// Peak resident memory of a process, from /proc (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

// Needs root (mounts): runs with feature `integration`, which scripts/test.sh turns on.
#[cfg(feature = "integration")]
#[test]
fn a_full_disk_answers_507_and_keeps_what_was_committed() {
    let work = tempfile::tempdir().unwrap();
    let disk = fvfs_tests::mounts::Tmpfs::mount(&work.path().join("home"), "12m")
        .expect("a tmpfs mount (needs root)");
    let store = Fvfsd {
        home: tempfile::tempdir_in(disk.path()).unwrap(),
    };
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    assert_eq!(
        d.raw(&request("PUT", "/v1/files/small", &[], b"kept")).0,
        201
    );
    let (status, body) = d.raw(&request(
        "PUT",
        "/v1/files/huge",
        &[],
        &tree::bytes(5, 24 << 20, false),
    ));
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("no_space"), "{body}");
    // The daemon still serves, and what it acknowledged before is whole.
    assert_eq!(
        d.raw(&request("GET", "/v1/files/small", &[], b"")),
        (200, "kept".into())
    );
    assert_eq!(d.raw(&request("GET", "/v1/meta/huge", &[], b"")).0, 404);
    // Stopped on a full disk, the store still opens (its reserve file makes room for
    // the index, and the failed upload's tail is cut back): every byte as written.
    drop(d);
    let fsck = store.run(["fsck", "--all", "--read-data"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
    // With room again, the daemon takes writes.
    disk.resize("64m");
    let fsck = store.run(["fsck", "--all", "--read-data"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    assert_eq!(
        d.raw(&request("PUT", "/v1/files/after", &[], b"room again"))
            .0,
        201
    );
    assert_eq!(
        d.raw(&request("GET", "/v1/files/small", &[], b"")),
        (200, "kept".into())
    );
}

/// The paths below `root`, relative to it.
fn paths(root: &std::path::Path) -> Vec<String> {
    tree::snapshot(root)
        .into_keys()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Sets the time a daemon started with `--clock-file clock` reads, and waits until its
/// automatic snapshots acted on it (their status says so).
fn set_clock(d: &Daemon, clock: &std::path::Path, time: i64) -> serde_json::Value {
    let next = clock.with_extension("next");
    fs::write(&next, time.to_string()).unwrap();
    fs::rename(&next, clock).unwrap();
    for _ in 0..3000 {
        let status: serde_json::Value =
            serde_json::from_str(&fvfsc(d, 0, &["status", "--json"])).unwrap();
        if status["auto_snapshots"]["round"] == time {
            return status["auto_snapshots"].clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the daemon never acted on time {time}");
}

/// Names of the automatic snapshots, and whether the person's one is still there.
fn automatic_snapshots(d: &Daemon) -> (Vec<String>, bool) {
    let list: serde_json::Value =
        serde_json::from_str(&fvfsc(d, 0, &["snapshot", "list", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    let auto = list
        .iter()
        .filter(|s| s["automatic"] == true)
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    (auto, list.iter().any(|s| s["name"] == "mine"))
}
