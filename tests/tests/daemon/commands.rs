//! fvfsc's and fvfsd's commands against a real daemon: put, ls, cat, cp, restore, log, and fvfsd's commands going through the daemon that holds the store.

use super::*;

#[test]
fn fvfsc_commands_against_a_real_daemon() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();

    // put from stdin, from a file, and a whole tree.
    let mut child = d
        .fvfsc(["put", "/notes/hello.txt"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"hello from stdin\n").unwrap();
    check(&child.wait_with_output().unwrap(), 0);
    let big = work.path().join("big.bin");
    tree::write_big(&big, 3, 5 << 20);
    fvfsc(&d, 0, &["put", "/big.bin", "--from", big.to_str().unwrap()]);
    let src = work.path().join("src");
    tree::generate(&src, 500, 2 << 20);
    let out = fvfsc(
        &d,
        0,
        &["put", "/tree", "-r", src.to_str().unwrap(), "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["files"], 500 + 10, "{out}");
    // The second upload of the same tree sends no chunk at all.
    let again: serde_json::Value = serde_json::from_str(&fvfsc(
        &d,
        0,
        &["put", "/tree2", "-r", src.to_str().unwrap(), "--json"],
    ))
    .unwrap();
    assert_eq!(again["sent_bytes"], 0, "dedup across uploads: {again}");

    // Read everything back: cat, and an export by the daemon compared byte for byte.
    assert_eq!(
        fvfsc(&d, 0, &["cat", "/notes/hello.txt"]),
        "hello from stdin\n"
    );
    let cat = d.fvfsc(["cat", "/big.bin"]).output().unwrap();
    assert_eq!(cat.stdout, fs::read(&big).unwrap());
    let exported = work.path().join("exported");
    store.run(["export", "/tree", exported.to_str().unwrap()]);
    tree::assert_same(&src, &exported);

    // ls, -l, --json.
    let ls = fvfsc(&d, 0, &["ls", "/"]);
    assert_eq!(ls, "big.bin\nnotes/\ntree/\ntree2/\n");
    let long = fvfsc(&d, 0, &["ls", "-l", "/notes"]);
    assert!(
        long.starts_with("-rw-r--r--") && long.contains("hello.txt"),
        "{long}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&fvfsc(&d, 0, &["ls", "--json", "/tree/odd"])).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "dangling" && e["kind"] == "symlink"),
        "{json}"
    );

    // Snapshots, log, diff, rollback.
    assert!(
        fvfsc(&d, 0, &["snapshot", "create", "before-rm"]).contains("snapshot before-rm = version")
    );
    fvfsc(&d, 0, &["rm", "/notes/hello.txt"]);
    assert_eq!(
        d.fvfsc(["cat", "/notes/hello.txt"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(3),
        "not found is exit code 3"
    );
    let out = d.fvfsc(["rm", "/tree"]).output().unwrap();
    check(&out, 1);
    assert!(
        stderr(&out).contains("directory not empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fvfsc(&d, 0, &["diff", "before-rm", "HEAD"]),
        "D /notes/hello.txt\n"
    );
    // Printed as fvfsd prints it (fvfsc printed the version's message instead).
    let rolled = fvfsc(&d, 0, &["rollback", "before-rm"]);
    assert_eq!(rolled, "version 7: rolled back to version 5\n");
    assert_eq!(
        fvfsc(&d, 0, &["cat", "/notes/hello.txt"]),
        "hello from stdin\n"
    );
    let log: serde_json::Value =
        serde_json::from_str(&fvfsc(&d, 0, &["log", "--json", "-n", "2"])).unwrap();
    assert_eq!(log[0]["kind"], "rollback");
    let snaps: serde_json::Value =
        serde_json::from_str(&fvfsc(&d, 0, &["snapshot", "list", "--json"])).unwrap();
    assert_eq!(snaps[0]["name"], "before-rm");
    // Deleting a snapshot is the admin's: the write role a loopback client has is refused.
    let refused = d
        .fvfsc(["snapshot", "delete", "before-rm"])
        .output()
        .unwrap();
    check(&refused, 1);
    assert!(
        stderr(&refused).contains("admin role"),
        "{}",
        stderr(&refused)
    );
    let deleted = d
        .fvfsc(["snapshot", "delete", "before-rm"])
        .env("FVFS_TOKEN", d.admin_token())
        .output()
        .unwrap();
    check(&deleted, 0);
    assert_eq!(fvfsc(&d, 0, &["snapshot", "list"]), "");

    // du, status, wal, completions.
    let du = |p: &str| -> serde_json::Value {
        serde_json::from_str(&fvfsc(&d, 0, &["du", "--json", p])).unwrap()
    };
    let (all, tree, tree2) = (du("/"), du("/tree"), du("/tree2"));
    assert_eq!(tree["unique_bytes"], tree2["unique_bytes"]);
    // tree2 shares every chunk with tree: it adds nothing unique to the whole.
    let expected = tree["unique_bytes"].as_u64().unwrap() + (5 << 20) + 17;
    assert_eq!(all["unique_bytes"].as_u64().unwrap(), expected, "{all}");
    assert_eq!(all["tiers"]["local"], all["unique_bytes"]);
    let status: serde_json::Value =
        serde_json::from_str(&fvfsc(&d, 0, &["status", "--json"])).unwrap();
    assert_eq!(status["tiers"][0]["name"], "local");
    // About 19.8 MB logical over 12.5 MB unique: tree2 is free.
    assert!(
        status["store"]["dedup_ratio"].as_f64().unwrap() > 1.5,
        "{status}"
    );
    assert!(fvfsc(&d, 0, &["wal"]).contains("no replication work pending"));
    assert!(fvfsc(&d, 0, &["completions", "bash"]).contains("fvfsc"));
}

#[test]
fn fvfsd_commands_go_through_the_running_daemon_and_shutdown_is_clean() {
    let store = Fvfsd::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 200, 1 << 20);
    let mut d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let out = store.run([
        "migrate",
        "--local-src",
        src.to_str().unwrap(),
        "--dest",
        "/m",
    ]);
    assert!(out.contains("committed version 1"), "{out}");
    assert!(store.run(["snapshot", "create", "s"]).contains("version 2"));
    let new = work.path().join("new.txt");
    fs::write(&new, b"new").unwrap();
    fvfsc(
        &d,
        0,
        &["put", "/m/odd/new.txt", "--from", new.to_str().unwrap()],
    );
    // The history commands are one implementation for fvfsd and fvfsc: the same words
    // print the same, through the daemon and (below) on the store opened by fvfsd.
    let shared: [&[&str]; 5] = [
        &["log"],
        &["log", "-n", "1"],
        &["log", "/m/odd/new.txt", "--json"],
        &["snapshot", "list"],
        &["diff", "1", "HEAD"],
    ];
    let printed: Vec<String> = shared.iter().map(|args| store.run(*args)).collect();
    for (args, through_daemon) in shared.iter().zip(&printed) {
        let out = d.fvfsc(*args).output().unwrap();
        check(&out, 0);
        assert_eq!(
            &String::from_utf8_lossy(&out.stdout),
            through_daemon,
            "{args:?}"
        );
    }
    assert!(printed[2].contains("\"A\""), "{}", printed[2]);
    // gc's arguments reach the daemon: keep-last 1 would drop version 1 (2 has a
    // snapshot), and a dry run drops nothing.
    let dry = store.run(["gc", "--dry-run", "--keep-last", "1", "--grace-secs", "0"]);
    assert!(
        dry.contains("versions: 2 kept, 1 would be dropped (1)"),
        "{dry}"
    );
    assert_eq!(
        store.run(["log"]).lines().count(),
        3,
        "a dry run drops nothing"
    );
    assert!(store
        .run(["status"])
        .contains(&format!("served by {}", d.url)));
    assert!(store.run(["fsck", "--read-data"]).contains("0 problems"));
    let exported = work.path().join("out");
    store.run(["export", "--version", "s", "/m", exported.to_str().unwrap()]);
    tree::assert_same(&src, &exported);
    let busy = store.cmd(["serve"]).output().unwrap();
    check(&busy, 2);
    assert!(stderr(&busy).contains("already serves this store"));

    // SIGTERM: clean exit, everything acknowledged is there after a restart.
    assert_eq!(d.stop(), Some(0));
    assert!(!store.home.path().join("daemon.url").exists());
    assert!(store.run(["log"]).contains("[s]"));
    for (args, through_daemon) in shared.iter().zip(&printed) {
        assert_eq!(
            &store.run(*args),
            through_daemon,
            "{args:?} on the store opened here"
        );
    }
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let cat = d.fvfsc(["cat", "/m/odd/hard-a"]).output().unwrap();
    assert_eq!(cat.stdout, b"hard linked content");
}

/// `fvfsc cp` copies a file or a whole tree by sharing its nodes, from the live tree or
/// from an older version (a restore in place), and refuses what cannot be copied.
#[test]
fn cp_copies_trees_at_no_cost_and_restores_from_versions() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 300, 1 << 20);
    fvfsc(&d, 0, &["put", "/docs", "-r", src.to_str().unwrap()]);
    let du = || -> (u64, u64) {
        let du: serde_json::Value =
            serde_json::from_str(&fvfsc(&d, 0, &["du", "/", "--json"])).unwrap();
        let n = |k: &str| du[k].as_u64().unwrap();
        (n("logical_bytes"), n("unique_bytes"))
    };
    let before = du();
    fvfsc(&d, 0, &["cp", "/docs", "/docs-copy"]);
    let listed = |p: &str| fvfsc(&d, 0, &["ls", "-l", p]);
    assert_eq!(listed("/docs"), listed("/docs-copy"));
    let nested = tree::snapshot(&src)
        .into_keys()
        .find(|p| src.join(p).is_file())
        .unwrap();
    let nested = nested.to_str().unwrap();
    assert_eq!(
        fvfsc(&d, 0, &["cat", &format!("/docs/{nested}")]),
        fvfsc(&d, 0, &["cat", &format!("/docs-copy/{nested}")])
    );
    // Twice the files, the same content stored.
    let after = du();
    assert_eq!(after.0, 2 * before.0);
    assert_eq!(after.1, before.1);

    // Restore in place: the version before a change, copied back over it.
    let put = |content: &[u8]| {
        let mut child = d
            .fvfsc(["put", "/budget.txt"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), content).unwrap();
        let out = child.wait_with_output().unwrap();
        check(&out, 0);
        let line = stdout(&out);
        let number = line
            .strip_prefix("version ")
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        number.parse::<u64>().unwrap()
    };
    put(b"first draft");
    let second = put(b"second draft");
    let before_second = (second - 1).to_string();
    fvfsc(
        &d,
        0,
        &[
            "cp",
            "--version",
            &before_second,
            "/budget.txt",
            "/budget.txt",
        ],
    );
    assert_eq!(fvfsc(&d, 0, &["cat", "/budget.txt"]), "first draft");
    // Refusals (3: not found; 1: refused): a missing source, an unknown version, a
    // copy onto the root.
    fvfsc(&d, 3, &["cp", "/nothing", "/x"]);
    fvfsc(&d, 3, &["cp", "--version", "9999", "/docs", "/x"]);
    fvfsc(&d, 1, &["cp", "/docs", "/"]);
    fvfsc(&d, 3, &["ls", "/x"]); // Nothing was copied.
}

/// `fvfsc put -r` keeps hard links: the other names of a file are links to its first
/// name, also when put again over the same place; export makes them one file again.
#[test]
fn put_keeps_hard_links() {
    use std::os::unix::fs::MetadataExt;
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a"), b"one file, two names").unwrap();
    std::fs::hard_link(src.join("a"), src.join("sub/b")).unwrap();
    std::fs::write(src.join("c"), b"alone").unwrap();
    for _ in 0..2 {
        fvfsc(&d, 0, &["put", "/h", "-r", src.to_str().unwrap()]);
    }
    let out = work.path().join("out");
    store.run(["export", "/h", out.to_str().unwrap()]);
    let m = |p: &str| std::fs::symlink_metadata(out.join(p)).unwrap();
    assert_eq!(m("a").ino(), m("sub/b").ino());
    assert_eq!(m("a").nlink(), 2);
    assert_eq!(m("c").nlink(), 1);
    assert_eq!(
        std::fs::read(out.join("sub/b")).unwrap(),
        b"one file, two names"
    );
}

/// `fvfsc log PATH`: the versions in which one file (or a folder) changed, across 50
/// versions where it is written now and then, removed and made again, and others
/// change meanwhile; a path gone from HEAD still has its history.
#[test]
fn log_of_a_path_lists_the_versions_that_changed_it() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("content");
    // (version, change, size) expected for /docs/f, newest last.
    let mut expected: Vec<(u64, &str, u64)> = Vec::new();
    let mut docs: Vec<u64> = Vec::new();
    let mut exists = false;
    for v in 1..=50u64 {
        if v == 31 {
            fvfsc(&d, 0, &["rm", "/docs/f"]);
            expected.push((v, "D", 0));
            exists = false;
            docs.push(v);
        } else if v % 7 == 1 {
            let text = "x".repeat(v as usize);
            put_text(&d, &local, "/docs/f", &text);
            expected.push((v, if exists { "M" } else { "A" }, v));
            exists = true;
            docs.push(v);
        } else {
            put_text(&d, &local, "/other", &format!("other {v}"));
        }
    }
    let log = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["log"];
        all.extend_from_slice(args);
        all.push("--json");
        serde_json::from_str(&fvfsc(&d, 0, &all)).unwrap()
    };
    let got: Vec<(u64, String, u64)> = log(&["/docs/f"])
        .iter()
        .map(|c| {
            let version = c["version"]["number"].as_u64().unwrap();
            assert_eq!(c["kind"], "file");
            let change = c["change"].as_str().unwrap().to_owned();
            (version, change, c["size"].as_u64().unwrap())
        })
        .collect();
    let want: Vec<(u64, String, u64)> = expected
        .iter()
        .rev()
        .map(|(v, c, s)| (*v, c.to_string(), *s))
        .collect();
    assert_eq!(got, want);
    // The folder changed exactly when its file did.
    let folder: Vec<u64> = log(&["/docs"])
        .iter()
        .map(|c| c["version"]["number"].as_u64().unwrap())
        .collect();
    docs.reverse();
    assert_eq!(folder, docs);
    // A limit, a path never there, and the words people read.
    assert_eq!(log(&["/docs/f", "-n", "2"]).len(), 2);
    assert!(log(&["/never/there"]).is_empty());
    let text = fvfsc(&d, 0, &["log", "/docs/f"]);
    assert_eq!(text.lines().count(), want.len(), "{text}");
    assert!(text.lines().next().unwrap().contains("  M  file"), "{text}");
}

/// `fvfsc restore`: a deleted folder of 10,000 files comes back whole from a snapshot
/// in one version (the tree is then the snapshot's: nothing differs), one file comes
/// back beside its newer self, and a restore is undone by restoring from the version
/// before it.
#[test]
fn restore_brings_back_a_deleted_folder_and_one_file_and_is_undone() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("photos");
    fs::create_dir_all(&src).unwrap();
    for i in 0..10_000 {
        fs::write(src.join(format!("p{i:05}.txt")), format!("photo {i}")).unwrap();
    }
    fvfsc(&d, 0, &["put", "/photos", "-r", src.to_str().unwrap()]);
    let local = work.path().join("budget");
    put_text(&d, &local, "/docs/budget", "old budget");
    fvfsc(&d, 0, &["snapshot", "create", "before"]);

    fvfsc(&d, 0, &["rm", "-r", "/photos"]);
    put_text(&d, &local, "/docs/budget", "new budget");
    assert!(fvfsc(&d, 0, &["log", "/photos"])
        .lines()
        .next()
        .unwrap()
        .contains("  D  dir"));

    let out = fvfsc(&d, 0, &["restore", "/photos", "--from", "before"]);
    assert!(out.contains("/photos is /photos as of before"), "{out}");
    assert_eq!(fvfsc(&d, 0, &["cat", "/photos/p04321.txt"]), "photo 4321");
    let listed: serde_json::Value =
        serde_json::from_str(&fvfsc(&d, 0, &["ls", "/photos", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 10_000);
    // Only the budget differs from the snapshot: the folder is the snapshot's.
    assert_eq!(
        fvfsc(&d, 0, &["diff", "before", "HEAD"]),
        "M /docs/budget\n"
    );

    // One file beside its newer self, then a restore in place, undone.
    fvfsc(
        &d,
        0,
        &[
            "restore",
            "/docs/budget",
            "--from",
            "before",
            "--to",
            "/docs/budget.old",
        ],
    );
    assert_eq!(fvfsc(&d, 0, &["cat", "/docs/budget.old"]), "old budget");
    assert_eq!(fvfsc(&d, 0, &["cat", "/docs/budget"]), "new budget");
    let out = fvfsc(&d, 0, &["restore", "/docs/budget", "--from", "before"]);
    assert_eq!(fvfsc(&d, 0, &["cat", "/docs/budget"]), "old budget");
    let before: &str = out
        .trim_end()
        .rsplit("the version before: ")
        .next()
        .unwrap()
        .trim_end_matches(')');
    fvfsc(&d, 0, &["restore", "/docs/budget", "--from", before]);
    assert_eq!(fvfsc(&d, 0, &["cat", "/docs/budget"]), "new budget");
    // A path the version did not have: a clear error, nothing changed.
    let out = d
        .fvfsc(["restore", "/nothing", "--from", "before"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nothing"), "{}", stderr(&out));
    assert_eq!(fvfsc(&d, 0, &["cat", "/docs/budget"]), "new budget");
}
