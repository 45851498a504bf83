//! Hostile requests: odd content types, node bombs within the memory budget, a flood from another local user.

use super::*;

/// A change whose Content-Type a page could send without a preflight (one that does
/// not parse as an ASCII type/subtype among them) needs the client header.
#[test]
fn odd_content_types_are_form_like() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let odd: [&[u8]; 4] = [b"text/plain;a=\xe9", b"\xe9", b"text/plain\xe9", b"json"];
    for ct in odd {
        let mut req = b"PUT /v1/files/odd HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                        Content-Length: 1\r\nContent-Type: "
            .to_vec();
        req.extend_from_slice(ct);
        req.extend_from_slice(b"\r\n\r\nx");
        let (status, body) = d.raw(&req);
        assert_eq!(status, 403, "{}: {body}", String::from_utf8_lossy(ct));
    }
    let ok = b"PUT /v1/files/odd HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
               Content-Length: 1\r\nContent-Type: application/octet-stream\r\n\r\nx";
    assert_eq!(d.raw(ok).0, 201);
}

/// One record of a `POST /v1/chunks` body: kind (0 data, 1 node), id, length, frame.
fn record(node: bool, id: &fvfs_cas::ChunkId, frame: &[u8]) -> Vec<u8> {
    let mut r = vec![u8::from(node)];
    r.extend_from_slice(id.as_bytes());
    r.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    r.extend_from_slice(frame);
    r
}

/// A directory node of tiny entries, about `bytes` of CBOR: what decodes to the most
/// memory per byte sent.
fn dir_bomb(bytes: usize) -> Vec<u8> {
    // Empty files: no id, no chunk.
    let entry = |i: usize| fvfs_node::Entry {
        name: format!("{i:07}").into_bytes(),
        kind: fvfs_node::EntryKind::File,
        ..fvfs_node::Entry::dir(0o644, 0)
    };
    let per = fvfs_node::Node::Dir(fvfs_node::DirNode {
        entries: (0..1000).map(entry).collect(),
    })
    .encode()
    .len()
        / 1000;
    let node = fvfs_node::Node::Dir(fvfs_node::DirNode {
        entries: (0..bytes / per).map(entry).collect(),
    });
    node.encode()
}

/// Bombs of every kind, ten of each in parallel: frames whose declared size is beyond
/// their kind's (a data record declaring 64 MiB, a node declaring 64 MiB), and nodes
/// within the limit that decode to the most memory (a directory of tiny entries, in a
/// batch and as a raw PUT). Each is refused; the daemon's memory stays within the
/// decoding budget's reach and `/v1/status` answers throughout (its latency printed,
/// for benches/README.md: timing is not asserted here).
#[test]
fn bombs_are_refused_within_the_memory_budget() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let pid = d.pid();
    let zeros = |n: usize| fvfs_cas::frame::encode(&vec![0u8; n]);
    // Declared beyond the kind: a 64 MiB data record, 400 to a body.
    let data_bomb = zeros(64 << 20);
    let data_id = fvfs_cas::ChunkId::of(&vec![0u8; 64 << 20]);
    let data_body: Vec<u8> = (0..400)
        .flat_map(|_| record(false, &data_id, &data_bomb))
        .collect();
    // A node of 60 MiB of CBOR (what one 589 KB record took the daemon to 1.1 GB with).
    let huge = dir_bomb(60 << 20);
    let huge_body = record(
        true,
        &fvfs_cas::ChunkId::of(&huge),
        &fvfs_cas::frame::encode(&huge),
    );
    // Within the limit (4 MiB), a directory: refused once decoded.
    let dir = dir_bomb((4 << 20) - (64 << 10));
    let dir_id = fvfs_cas::ChunkId::of(&dir);
    let dir_body = record(true, &dir_id, &fvfs_cas::frame::encode(&dir));
    let before = fvfs_tests::rss(pid);
    let stop = AtomicBool::new(false);
    let (d, stop) = (&d, &stop);
    let (peak, worst) = std::thread::scope(|s| {
        let sampler = s.spawn(move || {
            let (mut peak, mut worst) = (0, std::time::Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(fvfs_tests::rss(pid));
                let t = Instant::now();
                let (status, body) = d.raw(&request("GET", "/v1/status", &[], b""));
                assert_eq!(status, 200, "{body}");
                worst = worst.max(t.elapsed());
            }
            (peak, worst)
        });
        let octets = ["Content-Type: application/octet-stream"];
        let mut bombs = Vec::new();
        for _ in 0..10 {
            for (body, why) in [
                (&data_body, "more than a data chunk may hold"),
                (&huge_body, "more than a file or list node may hold"),
                (&dir_body, "file and list nodes only"),
            ] {
                bombs.push(s.spawn(move || {
                    let answer = d.raw(&request("POST", "/v1/chunks", &octets, body));
                    assert_eq!(answer.0, 400, "{why}: {}", answer.1);
                    assert!(answer.1.contains(why), "{why}: {}", answer.1);
                }));
            }
            let dir = &dir;
            bombs.push(s.spawn(move || {
                let url = format!("/v1/chunks/{dir_id}?kind=node");
                let answer = d.raw(&request("PUT", &url, &octets, dir));
                assert_eq!(answer.0, 400, "{}", answer.1);
                assert!(
                    answer.1.contains("file and list nodes only"),
                    "{}",
                    answer.1
                );
            }));
        }
        for b in bombs {
            b.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap()
    });
    let grew = peak.saturating_sub(before);
    println!(
        "bombs: RSS {} MiB before, peak {} MiB (+{} MiB); worst /v1/status {:.1} ms",
        before >> 20,
        peak >> 20,
        grew >> 20,
        worst.as_secs_f64() * 1000.0
    );
    // The budget (128 MiB) and ten bodies of a few MiB each; 1.1 GB before the limits.
    assert!(grew < 400 << 20, "the daemon grew by {} MiB", grew >> 20);
    // Nothing of it was stored.
    d.assert_fsck_clean("after the bombs");
}

/// A local process of another user holding 2,000 stalled connections from 127.0.0.1
/// fills only its own user's share of the per-peer cap: fvfsc of this user goes on
/// working throughout (before, the flood held 127.0.0.1's whole share until the idle
/// timeout).
#[test]
fn another_users_flood_on_loopback_leaves_local_clients_served() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    use std::io::Write;
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root"
    );
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).unwrap();
    let store = Fvfsd::new();
    let config = store.home.path().join("fvfsd.toml");
    // Stalled connections stay for as long as this test takes.
    fs::write(&config, "[daemon]\nidle_timeout_secs = 3600\n").unwrap();
    let d = Daemon::start_with(
        &store,
        &["--config", config.to_str().unwrap()],
        "127.0.0.1:0",
        &["--no-mdns"],
    );
    let to: std::net::SocketAddr = d.addr.parse().unwrap();
    // Sockets belong to the user of the thread that makes them: this one is nobody.
    let flood = std::thread::spawn(move || {
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(65534)).unwrap();
        (0..2000)
            .filter_map(|_| {
                let mut s = std::net::TcpStream::connect(to).ok()?;
                s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n")
                    .ok()?;
                Some(s)
            })
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert!(flood.len() > 1000, "{} connections made", flood.len());
    // The daemon admitted nobody's share (256) and closed the rest.
    fvfs_tests::until("the flood held at its cap", || {
        d.gauge("fvfs_connections_refused") >= (flood.len() - 256) as f64
    });
    assert!(d.gauge("fvfs_connections_open") >= 256.0);
    // Meanwhile fvfsc, from the same address as another user, writes and reads back.
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("f");
    for i in 0..10 {
        fs::write(&local, format!("file {i}")).unwrap();
        let path = format!("/mine/{i}");
        let out = d
            .fvfsc(["put", &path, "--from", local.to_str().unwrap()])
            .output()
            .unwrap();
        check(&out, 0);
        let out = d.fvfsc(["cat", &path]).output().unwrap();
        check(&out, 0);
        assert_eq!(out.stdout, format!("file {i}").into_bytes());
    }
    assert!(
        d.gauge("fvfs_connections_open") >= 256.0,
        "the flood was held throughout"
    );
    drop(flood);
}

/// A large file's node uploaded without the chunk it lists: a commit naming it is
/// refused whole (`missing_chunks`, naming the chunk: the writer looks up what a node
/// lists, not only the node) and the file is not there; once the chunk is sent, the
/// same commit goes through. The same for a small file's chunk, which the commit's
/// entry lists itself.
#[test]
fn a_file_whose_chunk_was_never_sent_is_not_committed() {
    use fvfs_api::commit::{CommitOp, CommitRequest};
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let data = b"the chunk the node lists, never sent at first".to_vec();
    let chunk = fvfs_cas::ChunkId::of(&data);
    let size = data.len() as u64;
    let listed = fvfs_node::ChunkRef {
        id: chunk,
        len: size,
    };
    let node = fvfs_node::Node::File(fvfs_node::FileNode {
        size,
        chunks: vec![listed],
        lists: vec![],
    })
    .encode();
    let node_id = fvfs_cas::ChunkId::of(&node);
    let octets = ["Content-Type: application/octet-stream"];
    let send = |kind_node: bool, id: &fvfs_cas::ChunkId, raw: &[u8]| {
        let body = record(kind_node, id, &fvfs_cas::frame::encode(raw));
        let (status, answer) = d.raw(&request("POST", "/v1/chunks", &octets, &body));
        assert!((200..300).contains(&status), "{status}: {answer}");
    };
    send(true, &node_id, &node);
    let commit = CommitRequest {
        message: String::new(),
        ops: vec![CommitOp::File {
            path: "/big".into(),
            mode: 0o644,
            mtime_ns: 0,
            size,
            node: Some(node_id.to_hex()),
            chunks: vec![],
            meta: None,
            link: None,
            expect: None,
        }],
    };
    // `commit` is refused, naming the chunk `raw`, and none of `absent` is made; once
    // the chunk is sent it goes through, and `file` reads `raw`.
    let refused_until_sent = |commit: &CommitRequest, raw: &[u8], file: &str, absent: &[&str]| {
        let body = serde_json::to_vec(commit).unwrap();
        let json = ["Content-Type: application/json"];
        let id = fvfs_cas::ChunkId::of(raw);
        let (status, answer) = d.raw(&request("POST", "/v1/commit", &json, &body));
        assert_eq!(status, 409, "{answer}");
        assert!(answer.contains("missing_chunks"), "{answer}");
        assert!(answer.contains(&id.to_hex()), "{answer}");
        for path in absent {
            let (status, _) = d.raw(&request("GET", path, &[], b""));
            assert_eq!(status, 404, "{path} of a refused commit was committed");
        }
        send(false, &id, raw);
        let (status, answer) = d.raw(&request("POST", "/v1/commit", &json, &body));
        assert_eq!(status, 200, "{answer}");
        let (status, content) = d.raw(&request("GET", file, &[], b""));
        assert_eq!((status, content.into_bytes()), (200, raw.to_vec()));
    };
    refused_until_sent(&commit, &data, "/v1/files/big", &["/v1/files/big"]);

    // A small file's chunk, listed in the entry itself and never sent: refused the
    // same way (the writer looks it up), in a commit that changes nothing else.
    let small = b"a small file's only chunk, never sent".to_vec();
    let small_id = fvfs_cas::ChunkId::of(&small);
    let commit = CommitRequest {
        message: String::new(),
        ops: vec![
            CommitOp::Mkdir {
                path: "/made-with-it".into(),
                mode: 0o755,
                mtime_ns: 0,
                meta: None,
            },
            CommitOp::File {
                path: "/small".into(),
                mode: 0o644,
                mtime_ns: 0,
                size: small.len() as u64,
                node: None,
                chunks: vec![(small_id.to_hex(), small.len() as u64)],
                meta: None,
                link: None,
                expect: None,
            },
        ],
    };
    let absent = ["/v1/files/small", "/v1/files/made-with-it"];
    refused_until_sent(&commit, &small, "/v1/files/small", &absent);
}
