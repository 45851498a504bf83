//! End to end with the real `fvfsd serve` and `fvfsc`: every command, raw HTTP routes,
//! bad requests, tokens, commands through the daemon, graceful shutdown.

use std::fs;
use std::process::Output;

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::{check, tree, Fvfsd};

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
fn bad_requests_get_the_right_status_and_the_daemon_keeps_serving() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let put = |path: &str, body: &[u8]| d.raw(&request("PUT", path, &[], body));
    assert_eq!(put("/v1/files/ok.txt", b"fine").0, 201);

    for path in [
        "/v1/files/a/../../etc/passwd",
        "/v1/files/%2e%2e/x",
        "/v1/files/a/%2E%2E/%2e%2e/x",
        "/v1/files/nul%00byte",
    ] {
        let (status, body) = put(path, b"x");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("\"error\":\"bad_path\""), "{path}: {body}");
    }
    for id in ["zz", "../../etc/passwd", &"A".repeat(64)] {
        assert_eq!(
            d.raw(&request("GET", &format!("/v1/chunks/{id}"), &[], b""))
                .0,
            400,
            "{id}"
        );
    }
    let wrong = fvfs_cas::ChunkId::of(b"what the id says").to_hex();
    let (status, body) = put(&format!("/v1/chunks/{wrong}"), b"something else");
    assert_eq!(
        (status, body.contains("hash_mismatch")),
        (400, true),
        "{body}"
    );
    // A batch whose frame does not decode to its id is refused, and stores nothing.
    let mut batch = vec![0u8];
    batch.extend_from_slice(fvfs_cas::ChunkId::of(b"claimed").as_bytes());
    let framed = fvfs_cas::frame::encode(b"actual content");
    batch.extend_from_slice(&(framed.len() as u32).to_le_bytes());
    batch.extend_from_slice(&framed);
    let (status, body) = d.raw(&request("POST", "/v1/chunks", &[], &batch));
    assert_eq!((status, body.contains("bad_frame")), (400, true), "{body}");
    let (status, body) = d.raw(&request("POST", "/v1/chunks", &[], &batch[..20]));
    assert_eq!((status, body.contains("bad_batch")), (400, true), "{body}");
    let huge = vec![7u8; 300 << 10];
    let huge_id = fvfs_cas::ChunkId::of(&huge).to_hex();
    assert_eq!(put(&format!("/v1/chunks/{huge_id}"), &huge).0, 413);
    let too_many: Vec<String> = (0..10_001)
        .map(|i| fvfs_cas::ChunkId::of(&i.to_string().into_bytes()).to_hex())
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "ids": too_many })).unwrap();
    assert_eq!(
        d.raw(&request("POST", "/v1/chunks/missing", &[], &body)).0,
        413
    );
    assert_eq!(d.raw(&request("GET", "/v1/nope", &[], b"")).0, 404);
    assert_eq!(
        d.raw(&request("GET", "/nothing-here.html", &[], b"")).0,
        404
    );
    assert_eq!(
        d.raw(&request("PATCH", "/v1/files/ok.txt", &[], b"")).0,
        405
    );
    assert_eq!(d.raw(&request("POST", "/v1/status", &[], b"")).0, 405);
    let long_header = format!("X-Junk: {}", "j".repeat(100_000));
    assert_eq!(
        d.raw(&request("GET", "/v1/status", &[&long_header], b"")).0,
        431
    );
    assert_eq!(
        d.raw(&request("POST", "/v1/snapshots", &[], b"{not json"))
            .0,
        400
    );
    assert_eq!(d.raw(&request("GET", "/v1/files/missing", &[], b"")).0, 404);
    assert_eq!(
        d.raw(&request("GET", "/v1/files/", &[], b"")).0,
        409,
        "reading a directory"
    );
    assert_eq!(
        d.raw(&request("PUT", "/v1/files/ok.txt/below", &[], b"x"))
            .0,
        409,
        "a file is not a directory"
    );

    // A truncated upload: the client promises 1 MB, sends 10 bytes and goes away.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&d.addr).unwrap();
        s.write_all(b"PUT /v1/files/truncated HTTP/1.1\r\nHost: localhost\r\nX-Fvfs-Client: test\r\nContent-Length: 1000000\r\n\r\n0123456789").unwrap();
    }
    // Nothing half-written appears, and the daemon still answers everyone.
    assert_eq!(
        d.raw(&request("GET", "/v1/files/ok.txt", &[], b"")),
        (200, "fine".into())
    );
    assert_eq!(
        d.raw(&request("GET", "/v1/meta/truncated", &[], b"")).0,
        404
    );

    // Concurrent writers to one path: each succeeds, and the file is one of them, whole.
    let bodies: Vec<Vec<u8>> = (0..8u64)
        .map(|i| tree::bytes(i, 200_000 + i as usize * 1000, false))
        .collect();
    std::thread::scope(|s| {
        for b in &bodies {
            s.spawn(|| assert_eq!(put("/v1/files/contended.bin", b).0, 201));
        }
    });
    let out = d.fvfsc(["cat", "/contended.bin"]).output().unwrap();
    assert!(
        bodies.contains(&out.stdout),
        "the file must be exactly one writer's content"
    );

    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    assert!(
        metrics.contains("fvfs_http_requests_total{route=\"files\",status=\"201\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fvfs_tier_chunks{tier=\"local\"}"),
        "{metrics}"
    );
}

#[test]
fn beyond_loopback_every_route_needs_the_token() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "0.0.0.0:0", &["--no-mdns"]);
    let port = d.addr.rsplit(':').next().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let token = store.run(["token"]).trim().to_owned();
    assert_eq!(token.len(), 64);
    let mode = fs::metadata(store.home.path().join("token"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    let (status, body) = fvfs_tests::daemon::raw(&addr, &request("GET", "/v1/status", &[], b""));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Bearer"), "{body}");
    assert_eq!(
        fvfs_tests::daemon::raw(
            &addr,
            &request("GET", "/metrics", &["Authorization: Bearer wrong"], b"")
        )
        .0,
        401
    );
    let auth = format!("Authorization: Bearer {token}");
    assert_eq!(
        fvfs_tests::daemon::raw(&addr, &request("GET", "/v1/status", &[&auth], b"")).0,
        200
    );
    let status = d
        .fvfsc(["--url", &format!("http://{addr}"), "status"])
        .output()
        .unwrap();
    check(&status, 1);
    assert!(stderr(&status).contains("Bearer"), "{}", stderr(&status));
    let ok = d
        .fvfsc(["--url", &format!("http://{addr}"), "status"])
        .env("FVFS_TOKEN", &token)
        .output()
        .unwrap();
    check(&ok, 0);
    let mdns = d.raw(&request("GET", "/v1/status", &[&auth], b"")).1;
    assert!(!mdns.contains(&token), "the token never appears in answers");
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

#[test]
fn a_large_put_and_get_stream_through_bounded_memory() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.bin");
    let size = 768 << 20;
    tree::write_big(&big, 11, size);
    let baseline = peak_rss(d.pid());
    fvfsc(&d, 0, &["put", "/big.bin", "--from", big.to_str().unwrap()]);
    // The whole file in one streamed GET (fvfsc cat reads verified chunk batches).
    let mut conn = std::net::TcpStream::connect(&d.addr).unwrap();
    std::io::Write::write_all(
        &mut conn,
        b"GET /v1/files/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut stdout = std::io::BufReader::new(conn);
    let mut head = String::new();
    while head != "\r\n" {
        head.clear();
        std::io::BufRead::read_line(&mut stdout, &mut head).unwrap();
        assert!(!head.is_empty(), "the answer ended in its head");
    }
    let mut got = blake3::Hasher::new();
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        if k == 0 {
            break;
        }
        got.update(&buf[..k]);
        n += k as u64;
    }
    assert_eq!(n, size as u64);
    let mut want = blake3::Hasher::new();
    want.update_reader(fs::File::open(&big).unwrap()).unwrap();
    assert_eq!(got.finalize(), want.finalize(), "the file reads back whole");
    // 768 MiB went through both ways; the daemon grew by far less than that. Measured
    // 81-86 MiB alone and 112-113 MiB with the rest of this file's tests running beside
    // it (allocator pages not yet given back: record reads land in memory that is not
    // zeroed, so freed read buffers stay resident until jemalloc's decay returns them,
    // where zeroing used to return them at once; sled's cache): the bound is under a
    // quarter of the data, so holding the file whole, or a quarter of it, still fails.
    let grown = peak_rss(d.pid()).saturating_sub(baseline);
    eprintln!(
        "daemon peak memory grew by {} MiB for 768 MiB each way",
        grown >> 20
    );
    assert!(
        grown < 160 << 20,
        "daemon peak memory grew by {} MiB",
        grown >> 20
    );
}

#[test]
fn concurrent_tree_uploads_sharing_chunks_all_commit() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 300, 1 << 20);
    // Four clients upload the same tree (every chunk shared) at once, while flushes run:
    // none may see another's chunks vanish between upload and commit.
    std::thread::scope(|s| {
        for i in 0..4 {
            let (d, src) = (&d, &src);
            s.spawn(move || {
                fvfsc(
                    d,
                    0,
                    &["put", &format!("/copy{i}"), "-r", src.to_str().unwrap()],
                )
            });
        }
        s.spawn(|| {
            for _ in 0..10 {
                assert_eq!(d.raw(&request("POST", "/v1/admin/flush", &[], b"")).0, 200);
            }
        });
    });
    for i in 0..4 {
        let out = work.path().join(format!("out{i}"));
        store.run(["export", &format!("/copy{i}"), out.to_str().unwrap()]);
        tree::assert_same(&src, &out);
    }
    assert!(store.run(["fsck", "--read-data"]).contains("0 problems"));
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

/// The paths below `root`, relative to it.
fn paths(root: &std::path::Path) -> Vec<String> {
    tree::snapshot(root)
        .into_keys()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn excludes_are_honoured_by_put_and_migrate() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for (path, text) in [
        (".fvfsignore", "*.log\n!important.log\n"),
        ("a.log", "noise"),
        ("important.log", "keep me"),
        ("keep.txt", "keep"),
        ("proj/node_modules/dep/index.js", "dep"),
        (
            "proj/target/CACHEDIR.TAG",
            "Signature: 8a477f597d28d172789f06886806bc55\n",
        ),
        ("proj/target/debug/big", "build output"),
        ("proj/src/main.rs", "fn main() {}"),
        ("proj/main.o", "object"),
    ] {
        let p = src.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    let kept = [
        ".fvfsignore",
        "important.log",
        "keep.txt",
        "proj",
        "proj/src",
        "proj/src/main.rs",
        "proj/target",
        "proj/target/CACHEDIR.TAG",
    ];
    let s = src.to_str().unwrap();

    // put -r with patterns on the command line.
    let out = fvfsc(
        &d,
        0,
        &[
            "put",
            "/up",
            "-r",
            s,
            "--exclude",
            "node_modules",
            "--exclude",
            "*.o",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["excluded"], 4,
        "a.log, node_modules, main.o, debug: {out}"
    );
    assert_eq!(v["files"], 5, "{out}");
    let up = work.path().join("up");
    store.run(["export", "/up", up.to_str().unwrap()]);
    assert_eq!(paths(&up), kept);

    // migrate through the running daemon, the patterns in a file the daemon never reads.
    let list = work.path().join("excludes");
    fs::write(&list, "# build litter\nnode_modules\n*.o\n").unwrap();
    let out = store.run([
        "migrate",
        "--local-src",
        s,
        "--dest",
        "/mig",
        "--exclude-file",
        list.to_str().unwrap(),
    ]);
    assert!(out.contains("4 excluded"), "{out}");
    let mig = work.path().join("mig");
    store.run(["export", "/mig", mig.to_str().unwrap()]);
    assert_eq!(paths(&mig), kept);

    // The rules can be turned off; a bad pattern stops before anything is imported.
    let out = store.run([
        "migrate",
        "--local-src",
        s,
        "--dest",
        "/all",
        "--include-caches",
        "--no-ignore-files",
    ]);
    assert!(out.contains("0 excluded"), "{out}");
    let all = work.path().join("all");
    store.run(["export", "/all", all.to_str().unwrap()]);
    assert_eq!(paths(&all), paths(&src));
    let versions = fvfsc(&d, 0, &["log", "--json"]);
    let bad = store
        .cmd(["migrate", "--local-src", s, "--exclude", "x[z-a]"])
        .output()
        .unwrap();
    assert_ne!(bad.status.code(), Some(0));
    assert!(stderr(&bad).contains("x[z-a]"), "{}", stderr(&bad));
    let bad = d
        .fvfsc(["put", "/bad", "-r", s, "--exclude", "x[z-a]"])
        .output()
        .unwrap();
    assert_ne!(bad.status.code(), Some(0));
    assert!(stderr(&bad).contains("x[z-a]"), "{}", stderr(&bad));
    assert_eq!(
        fvfsc(&d, 0, &["log", "--json"]),
        versions,
        "no version made"
    );
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

#[test]
fn automatic_snapshots_follow_the_clock_and_the_policy() {
    let store = Fvfsd::new();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("fvfsd.toml");
    fs::write(
        &config,
        "[snapshots]\nhourly = 3\ndaily = 2\n[gc]\nkeep_last = 1\ngrace_secs = 0\n",
    )
    .unwrap();
    let clock = work.path().join("clock");
    // 2026-11-02T00:30:00Z, a Monday.
    let t0 = 1_793_579_400;
    fs::write(&clock, t0.to_string()).unwrap();
    let d = Daemon::start_with(
        &store,
        &["--config", config.to_str().unwrap()],
        "127.0.0.1:0",
        &["--no-mdns", "--clock-file", clock.to_str().unwrap()],
    );
    let local = work.path().join("text");
    let hour = 3600;

    // An empty store gets no snapshot; a person's snapshot is never pruned, and people
    // cannot take names that look automatic.
    assert_eq!(
        set_clock(&d, &clock, t0 + 1)["taken"],
        serde_json::Value::Null
    );
    put_text(&d, &local, "/doc.txt", "v0");
    fvfsc(&d, 0, &["snapshot", "create", "mine"]);
    let refused = d
        .fvfsc(["snapshot", "create", "auto-2026-11-02-0100"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));

    // One snapshot per hour at most, and only when something changed.
    put_text(&d, &local, "/doc.txt", "v1");
    assert_eq!(
        set_clock(&d, &clock, t0 + 60)["taken"],
        "auto-2026-11-02-0031"
    );
    put_text(&d, &local, "/doc.txt", "v2");
    set_clock(&d, &clock, t0 + 120);
    assert_eq!(automatic_snapshots(&d).0, ["auto-2026-11-02-0031"]);
    set_clock(&d, &clock, t0 + hour);
    assert_eq!(
        automatic_snapshots(&d).0,
        ["auto-2026-11-02-0031", "auto-2026-11-02-0130"]
    );
    // 02:00, a new hour, but nothing changed: none taken.
    set_clock(&d, &clock, t0 + hour + 1800);
    assert_eq!(
        automatic_snapshots(&d).0.len(),
        2,
        "nothing changed: none taken"
    );
    let shown = fvfsc(&d, 0, &["snapshot", "list"]);
    assert!(
        shown.contains("auto-2026-11-02-0130\tversion") && shown.contains("\tautomatic"),
        "{shown}"
    );

    // A change every hour: hours 2 to 4 of day 0, 0 to 2 of day 1, 0 of day 2.
    let mut status = serde_json::Value::Null;
    for (h, name) in [
        (2, "02-0230"),
        (3, "02-0330"),
        (4, "02-0430"),
        (24, "03-0030"),
        (25, "03-0130"),
        (26, "03-0230"),
        (48, "04-0030"),
    ] {
        put_text(&d, &local, "/doc.txt", &format!("hour {h}"));
        status = set_clock(&d, &clock, t0 + h * hour);
        assert_eq!(status["last_error"], serde_json::Value::Null, "{status}");
        assert_eq!(status["taken"], format!("auto-2026-11-{name}"));
    }
    // Kept: the three most recent hours (day 1's 01:30 and 02:30, day 2's 00:30) and
    // the newest of the two most recent days (the same ones).
    let (auto, mine) = automatic_snapshots(&d);
    assert_eq!(
        auto,
        [
            "auto-2026-11-03-0130",
            "auto-2026-11-03-0230",
            "auto-2026-11-04-0030"
        ]
    );
    assert!(mine, "a person's snapshot is never pruned");
    // The collection after the last pruning kept only the versions that snapshots
    // name (keep_last = 1 is HEAD, the newest snapshot's own version).
    assert_eq!(
        status["pruned"],
        serde_json::json!(["auto-2026-11-02-0430", "auto-2026-11-03-0030"])
    );
    assert!(status["versions_dropped"].as_u64().unwrap() > 0, "{status}");
    // The rounds ran as a worker of the daemon, which status and metrics show, and
    // the collections after pruning as gc jobs (as any gc).
    let full: serde_json::Value =
        serde_json::from_str(&fvfsc(&d, 0, &["status", "--json"])).unwrap();
    let workers = full["workers"].as_array().unwrap();
    let names: Vec<&str> = workers
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["checkpoints", "samples", "recompress", "snapshots", "gc"],
        "{full}"
    );
    let snapshots = &workers[3];
    assert!(snapshots["rounds"].as_u64().unwrap() >= 12, "{snapshots}");
    assert_eq!(snapshots["failures"], 0, "{snapshots}");
    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    assert!(
        metrics.contains("fvfs_worker_rounds{worker=\"snapshots\"}"),
        "{metrics}"
    );
    // The numbers under `key` in what `fvfsc ARGS --json` lists, sorted.
    let numbers = |args: &[&str], key: &str| {
        let list: serde_json::Value = serde_json::from_str(&fvfsc(&d, 0, args)).unwrap();
        let mut n: Vec<u64> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[key].as_u64().unwrap())
            .collect();
        n.sort_unstable();
        n
    };
    let named = numbers(&["snapshot", "list", "--json"], "version");
    let versions = numbers(&["log", "--json"], "number");
    assert_eq!(versions, named);
    d.assert_fsck_clean("after automatic snapshots and their collection");
}

/// A path deeper or longer than fvfs keeps is answered 400, whatever the route, and the
/// daemon lives on; the deepest path it keeps is committed, sealed and checked whole
/// (the walks that recurse per level stay within their stack).
#[test]
fn deep_and_huge_paths_are_refused_and_the_deepest_kept_one_works() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let commit = |path: &str| {
        let body = serde_json::json!({
            "message": "deep",
            "ops": [{"op": "file", "path": path, "mode": 420, "mtime_ns": 0, "size": 0}],
        });
        let body = body.to_string();
        d.raw(&request(
            "POST",
            "/v1/commit",
            &["Content-Type: application/json"],
            body.as_bytes(),
        ))
    };
    for (path, why) in [
        ("/a".repeat(500_000), "32 KiB"),
        ("/a".repeat(2_000), "512 levels"),
        (format!("/{}", "x".repeat(40_000)), "32 KiB"),
    ] {
        let (status, body) = commit(&path);
        assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
        assert!(body.contains(why) && body.len() < 1000, "{why}: {body}");
    }
    // The deepest path kept: a file 512 levels down.
    let deepest = format!("{}/f", "/d".repeat(511));
    let (status, body) = commit(&deepest);
    assert_eq!(status, 200, "{body}");
    assert_eq!(fvfsc(&d, 0, &["cat", &deepest]), "");
    d.assert_fsck_clean("after the deepest path");
}

/// Setuid and setgid bits a LAN client set are written by an export only when asked
/// (`--keep-setid`): an export by root would otherwise make them run as root.
#[test]
fn export_drops_setuid_and_setgid_unless_asked_to_keep_them() {
    use std::os::unix::fs::MetadataExt;
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    for (path, mode) in [("bin/tool", "6755"), ("shared/note", "1644")] {
        let url = format!("/v1/files/{path}?mode={mode}");
        let (status, body) = d.raw(&request("PUT", &url, &[], b"#!/bin/sh\n"));
        assert_eq!(status, 201, "{body}");
    }
    let work = tempfile::tempdir().unwrap();
    let mode = |dir: &str, path: &str| {
        fs::metadata(work.path().join(dir).join(path))
            .unwrap()
            .mode()
            & 0o7777
    };
    let plain = work.path().join("plain");
    store.run(["export", "/", plain.to_str().unwrap()]);
    assert_eq!(mode("plain", "bin/tool"), 0o755);
    assert_eq!(mode("plain", "shared/note"), 0o1644, "the sticky bit stays");
    let kept = work.path().join("kept");
    store.run(["export", "--keep-setid", "/", kept.to_str().unwrap()]);
    assert_eq!(mode("kept", "bin/tool"), 0o6755);
}

/// More new chunks than one missing-chunks question may hold (10,000), from small files
/// read in batches: all of them reach the daemon. (No big file: the client would ask
/// about its chunks early, by bytes, and the count limit might never be met.)
#[test]
fn put_r_of_more_chunks_than_one_question_holds() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::tiny_files(&src, 24, 500);
    let out = fvfsc(
        &d,
        0,
        &["put", "/many", "-r", src.to_str().unwrap(), "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["files"], 24 * 500, "{out}");
    let exported = work.path().join("exported");
    store.run(["export", "/many", exported.to_str().unwrap()]);
    tree::assert_same(&src, &exported);
}
