//! Requests a daemon must get right: bad ones, ones from beyond loopback, large streams, concurrent uploads, deep paths, excludes, privileged metadata on export.

use super::*;

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
    // where zeroing used to return them at once; the databases' caches): the bound is under a
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
