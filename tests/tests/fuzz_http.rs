//! Fuzzing the daemon's HTTP front: hostile requests (any method, paths made of
//! traversal tricks, bad percent-encoding, NUL, invalid UTF-8, ids of every shape,
//! query strings and headers that lie, bodies that are garbage, JSON of the wrong shape
//! or mutated valid bodies for every route) against a real `fvfsd serve`. After each
//! one the daemon still answers, never with a server error, and files the fuzzer has
//! no name for read back unchanged; at the end fsck reading every byte is clean.
//!
//! The corpus (`tests/fuzz-corpus/http/`, raw requests that found bugs or guard a rule)
//! is replayed first. Then proptest drives it (cargo-fuzz needs a nightly toolchain):
//! `PROPTEST_CASES` bounds the run (256 by default), each run draws a fresh seed, and a
//! failure prints the request that failed. `benches/scripts/fuzz-long.sh` runs it for
//! hours.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use fvfs_cas::{frame, ChunkId};
use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::Fvfsd;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Files outside the fuzzer's vocabulary: nothing it sends may change them.
const KEPT: &[(&str, &[u8])] = &[
    ("/keep/a", b"the first file kept"),
    ("/keep/deep/b", b"the second file kept, in a subdirectory"),
];

const METHODS: &[&str] = &[
    "GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS", "get", "G\tT", "",
];

const ROUTES: &[&str] = &[
    "/v1/files/",
    "/v1/meta/",
    "/v1/ls/",
    "/v1/du/",
    "/v1/chunks",
    "/v1/chunks/",
    "/v1/chunks/missing",
    "/v1/nodes/",
    "/v1/versions",
    "/v1/versions/",
    "/v1/snapshots",
    "/v1/snapshots/",
    "/v1/rollback",
    "/v1/diff",
    "/v1/commit",
    "/v1/status",
    "/v1/devices",
    "/v1/admin/fsck",
    "/v1/admin/gc",
    "/v1/admin/flush",
    "/v1/admin/evict",
    "/v1/admin/wal",
    "/v1/admin/",
    "/v1/",
    "/metrics",
    "/",
    "",
    "*",
];

/// Path segments: the first [`GOOD_SEGMENTS`] are names a client would send (file
/// names, version names, stored ids), then traversal in every spelling, bad escapes,
/// NUL, invalid UTF-8, ids of the wrong shape.
fn segments() -> Vec<String> {
    let stored = ChunkId::of(KEPT[0].1).to_string();
    vec![
        "a".into(),
        "dir".into(),
        "HEAD".into(),
        "HEAD~1".into(),
        "1".into(),
        "snap".into(),
        stored.clone(),
        ChunkId::of(b"fuzzed content").to_string(),
        "..".into(),
        ".".into(),
        "".into(),
        "%2e%2e".into(),
        "%2E.".into(),
        "%00".into(),
        "%ff%fe".into(),
        "%2f".into(),
        "%".into(),
        "%zz".into(),
        "é".into(),
        "HEAD~99999999999999999999".into(),
        "0".into(),
        "-1".into(),
        "18446744073709551616".into(),
        stored[..63].into(),
        stored.to_uppercase(),
        format!("{stored}0"),
        "x".repeat(300),
    ]
}

const GOOD_SEGMENTS: usize = 8;

const QUERY_KEYS: &[&str] = &[
    "version",
    "recursive",
    "mode",
    "mtime_ns",
    "kind",
    "limit",
    "a",
    "b",
    "dry_run",
    "keep_last",
    "keep_daily",
    "keep_weekly",
    "grace_secs",
    "read_data",
    "all",
    "repair",
    "",
];

const QUERY_VALUES: &[&str] = &[
    "",
    "true",
    "false",
    "yes",
    "1",
    "0",
    "-1",
    "7777",
    "99999999999999999999",
    "%ff",
    "%",
    "HEAD",
    "snap",
    "node",
    "data",
    "a=b",
    "1e3",
];

const HEADERS: &[&str] = &[
    "content-type: application/json",
    "content-type: application/octet-stream",
    "content-type: text/plain; charset=\u{1F4A9}",
    "authorization: Bearer nonsense",
    "authorization: Bearer @ADMIN@",
    "origin: http://evil.example",
    "authorization: Basic",
    "user-agent: fvfsc/0.0.0",
    "user-agent: \u{0}",
    "range: bytes=5-2",
    "range: bytes=-99999999999",
    "expect: 100-continue",
    "transfer-encoding: gzip",
    "x-fvfs-mode: 99999999",
];

/// Valid bodies for the routes that take one, mutated by the fuzzer.
fn templates() -> Vec<Vec<u8>> {
    let id = ChunkId::of(KEPT[0].1);
    let data = b"fuzzed content";
    let mut batch = vec![0u8];
    batch.extend_from_slice(ChunkId::of(data).as_bytes());
    let framed = frame::encode(data);
    batch.extend_from_slice(&(framed.len() as u32).to_le_bytes());
    batch.extend_from_slice(&framed);
    vec![
        br#"{"name":"snap"}"#.to_vec(),
        br#"{"to":"snap"}"#.to_vec(),
        br#"{"to":"HEAD~1"}"#.to_vec(),
        format!(r#"{{"ids":["{id}","{}"]}}"#, ChunkId::of(b"nothing")).into_bytes(),
        format!(
            r#"{{"message":"m","ops":[{{"op":"file","path":"/a","mode":420,"mtime_ns":0,"size":19,"chunks":[["{id}",19]]}},{{"op":"mkdir","path":"/dir","mode":493,"mtime_ns":0}},{{"op":"symlink","path":"/dir/l","target":"../a","mode":511,"mtime_ns":0}},{{"op":"rename","from":"/a","to":"/dir/a"}},{{"op":"remove","path":"/dir","recursive":true}}]}}"#
        )
        .into_bytes(),
        batch,
        data.to_vec(),
        framed,
    ]
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// A valid body with bytes flipped, cut or inserted.
    Mutated(usize, Vec<(usize, u8, u8)>),
}

#[derive(Debug, Clone)]
enum Hostile {
    /// A request hyper can parse, with everything in it chosen by the fuzzer.
    Request {
        method: &'static str,
        route: &'static str,
        path: Vec<usize>,
        query: Vec<(usize, usize)>,
        headers: Vec<usize>,
        body: Body,
    },
    /// Bytes on the wire that may not be HTTP at all, then end of input.
    Raw(Vec<u8>),
}

/// Requests shaped as clients send them: the method a route takes and the body it
/// expects (a template, mutated or not), so the fuzzer reaches past the refusals.
const SHAPES: &[(&str, &str, Option<usize>)] = &[
    ("PUT", "/v1/files/", None),
    ("GET", "/v1/files/", None),
    ("DELETE", "/v1/files/", None),
    ("GET", "/v1/meta/", None),
    ("GET", "/v1/ls/", None),
    ("GET", "/v1/du/", None),
    ("GET", "/v1/chunks/", None),
    ("HEAD", "/v1/chunks/", None),
    ("PUT", "/v1/chunks/", Some(7)),
    ("POST", "/v1/chunks", Some(5)),
    ("POST", "/v1/chunks/missing", Some(3)),
    ("GET", "/v1/nodes/", None),
    ("GET", "/v1/versions/", None),
    ("POST", "/v1/snapshots", Some(0)),
    ("DELETE", "/v1/snapshots/", None),
    ("POST", "/v1/rollback", Some(1)),
    ("POST", "/v1/rollback", Some(2)),
    ("GET", "/v1/diff", None),
    ("POST", "/v1/commit", Some(4)),
    ("POST", "/v1/admin/fsck", None),
    ("POST", "/v1/admin/gc", None),
];

fn hostile() -> impl Strategy<Value = Hostile> {
    let n_seg = segments().len();
    let n_tpl = templates().len();
    let edits = || proptest::collection::vec((any::<usize>(), 0u8..3, any::<u8>()), 0..6);
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(Body::Bytes),
        (0..n_tpl, edits()).prop_map(|(t, m)| Body::Mutated(t, m)),
    ];
    let rest = |segment: BoxedStrategy<usize>, headers: usize| {
        (
            proptest::collection::vec(segment, 0..5),
            proptest::collection::vec((0..QUERY_KEYS.len(), 0..QUERY_VALUES.len()), 0..4),
            proptest::collection::vec(0..HEADERS.len(), 0..headers),
        )
    };
    let anything = (
        0..METHODS.len(),
        0..ROUTES.len(),
        rest((0..n_seg).boxed(), 3),
        body,
    )
        .prop_map(|(m, r, (path, query, headers), body)| Hostile::Request {
            method: METHODS[m],
            route: ROUTES[r],
            path,
            query,
            headers,
            body,
        });
    // Mostly good names, rarely a header: most such requests are taken.
    let segment = prop_oneof![4 => 0..GOOD_SEGMENTS, 1 => 0..n_seg].boxed();
    let plausible = (
        0..SHAPES.len(),
        rest(segment, 2),
        proptest::collection::vec(any::<u8>(), 0..3000),
        prop_oneof![Just(vec![]), edits()],
    )
        .prop_map(|(s, (path, query, headers), data, edits)| {
            let (method, route, template) = SHAPES[s];
            Hostile::Request {
                method,
                route,
                // Only routes that name something take a path.
                path: if route.ends_with('/') { path } else { vec![] },
                query,
                headers,
                body: match template {
                    Some(t) => Body::Mutated(t, edits),
                    None => Body::Bytes(data),
                },
            }
        });
    let raw = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        // A request line and headers, then garbage where the grammar continues.
        (
            0..ROUTES.len(),
            proptest::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(r, tail)| {
                let mut b =
                    format!("GET {} HTTP/1.1\r\nHost: localhost\r\n", ROUTES[r]).into_bytes();
                b.extend(tail);
                b
            }),
    ];
    prop_oneof![
        3 => plausible,
        2 => anything,
        1 => raw.prop_map(Hostile::Raw),
    ]
}

impl Hostile {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Hostile::Raw(b) => b.clone(),
            Hostile::Request {
                method,
                route,
                path,
                query,
                headers,
                body,
            } => {
                let segs = segments();
                let mut target = (*route).to_owned();
                if !path.is_empty() && !target.ends_with('/') {
                    target.push('/');
                }
                target.push_str(
                    &path
                        .iter()
                        .map(|s| segs[*s].as_str())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
                if !query.is_empty() {
                    let q: Vec<String> = query
                        .iter()
                        .map(|(k, v)| format!("{}={}", QUERY_KEYS[*k], QUERY_VALUES[*v]))
                        .collect();
                    target = format!("{target}?{}", q.join("&"));
                }
                let body = match body {
                    Body::Bytes(b) => b.clone(),
                    Body::Mutated(t, edits) => {
                        let mut b = templates()[*t].clone();
                        for (at, how, x) in edits {
                            let at = at % (b.len() + 1);
                            match how {
                                0 if at < b.len() => b[at] ^= x | 1,
                                1 => b.truncate(at),
                                _ => b.insert(at, *x),
                            }
                        }
                        b
                    }
                };
                let hs: Vec<&str> = headers.iter().map(|h| HEADERS[*h]).collect();
                request(method, &target, &hs, &body)
            }
        }
    }
}

/// Sends `bytes`, ends the input, and reads the answer: its status, 0 if the daemon
/// closed without one (allowed for bytes that are not HTTP). A daemon that neither
/// answers nor closes within a minute is hung: the test fails.
fn send(addr: &str, bytes: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).expect("the daemon still accepts connections");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    if let Err(e) = s.read_to_end(&mut answer) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the daemon hung on {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let mut answer = String::from_utf8_lossy(&answer).into_owned();
    // After interim `100 Continue` answers, the final one.
    while answer.starts_with("HTTP/1.1 100 ") {
        answer = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, r)| r)
            .to_owned();
    }
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `bytes` with every `@ADMIN@` replaced by `token`.
fn with_admin(bytes: &[u8], token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(7).position(|w| w == b"@ADMIN@") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(token.as_bytes());
        rest = &rest[at + 7..];
    }
    out.extend_from_slice(rest);
    out
}

fn get(d: &Daemon, path: &str) -> (u16, String) {
    d.raw(&request("GET", path, &[], b""))
}

#[test]
fn hostile_requests_get_clean_refusals_and_touch_nothing_else() {
    // The kept files are the first version (one migration): no rollback goes before it.
    let store = Fvfsd::new();
    let src = tempfile::tempdir().unwrap();
    for (path, content) in KEPT {
        let file = src.path().join(path.trim_start_matches("/keep/"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    let migrated = store
        .cmd(["migrate", "--local-src"])
        .arg(src.path())
        .args(["--dest", "/keep"])
        .status()
        .unwrap();
    assert!(migrated.success());
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // The daemon's state is not part of a case: shrinking would replay requests on a
    // changed daemon and blame the wrong one, and there is no seed to persist. A
    // failure prints the request that failed, as sent.
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    });
    // Answers by class (2xx, 4xx, closed): the run must reach past the refusals too.
    let answers = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new());
    // Sends one request and checks the daemon: an answer below 500 (`must_answer`: a
    // request hyper can parse gets one), and the kept files unchanged.
    // `@ADMIN@` in a request stands for the admin token, so requests reach admin routes.
    let admin = d.admin_token();
    let check = |bytes: &[u8], must_answer: bool| -> Result<(), String> {
        let bytes = &with_admin(bytes, &admin);
        let status = send(&d.addr, bytes);
        *answers.lock().unwrap().entry(status / 100).or_default() += 1;
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
        if status >= 500 || status == 0 && must_answer {
            return Err(format!("answered {status} to {shown:?}"));
        }
        for (path, content) in KEPT {
            let (status, body) = get(&d, &format!("/v1/files{path}"));
            if status != 200 || body.as_bytes() != *content {
                return Err(format!("{path} changed ({status}) after {shown:?}"));
            }
        }
        Ok(())
    };
    // First the corpus: requests that found bugs or guard a rule (`.raw`: bytes that
    // need not be HTTP). A request the fuzzer finds failing belongs there.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus/http");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the corpus")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus at {}", corpus.display());
    for file in &files {
        let must_answer = file.extension().is_some_and(|e| e == "http");
        if let Err(e) = check(&std::fs::read(file).unwrap(), must_answer) {
            panic!("{}: {e}", file.display());
        }
    }
    let result = runner.run(&hostile(), |h| {
        check(&h.bytes(), matches!(h, Hostile::Request { .. }))
            .map_err(|e| TestCaseError::fail(format!("{e}\n(add it to tests/fuzz-corpus/http/)")))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let answers = answers.into_inner().unwrap();
    eprintln!("hostile requests by answer class (0: closed): {answers:?}");
    assert!(answers.get(&2).is_some_and(|n| *n > 0), "{answers:?}");
    d.assert_fsck_clean("after the hostile requests");
}
