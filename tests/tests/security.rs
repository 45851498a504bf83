//! The hostile-client suite (issue 17): every route as a web page would send it (foreign
//! Origin, foreign Host, a form's content type, a cross-site fetch), and with each
//! role's token; a flood of slow connections while a normal client is served; a
//! man in the middle altering content, which `fvfsc cat` refuses to write out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use fvfs_api::args::{ExportArgs, GcArgs};
use fvfs_api::commit::{CommitOp, CommitRequest};
use fvfs_api::reports::{Ids, Rollback, SnapshotCreate};
use fvfs_api::routes::{call, Call};
use fvfs_tests::daemon::{bare_request, raw, request, split_answer, whole_answer, Daemon};
use fvfs_tests::Fvfsd;

/// A request, a body its route accepts, and the role the suite expects it to need
/// (`None`: the URL is the credential, as for a download link).
struct Route {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    need: Option<Role>,
}

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Role {
    Read,
    Write,
    Admin,
}

/// Every route of the daemon's route table, then WebDAV's.
fn routes(chunk: &str, export_to: &str) -> Vec<Route> {
    let mut all: Vec<Route> = fvfs_api::routes::ROUTES
        .iter()
        .map(|r| api_route(r, chunk, export_to))
        .collect();
    use Role::*;
    let dav = |method, path: &str, body: &[u8], need| Route {
        method,
        path: path.to_owned(),
        content_type: "",
        body: body.to_vec(),
        need: Some(need),
    };
    // WebDAV, as its clients send it (no content type).
    all.extend([
        dav("OPTIONS", "/dav/", b"", Read),
        dav("PROPFIND", "/dav/keep/", b"", Read),
        dav("GET", "/dav/keep/a.txt", b"", Read),
        dav("PUT", "/dav/new-dav.txt", b"dav", Write),
        dav("MKCOL", "/dav/new-dir", b"", Write),
        dav("LOCK", "/dav/keep/a.txt", b"", Write),
        dav("UNLOCK", "/dav/keep/a.txt", b"", Write),
        dav("PROPPATCH", "/dav/keep/a.txt", b"", Write),
        dav("COPY", "/dav/keep/a.txt", b"", Write),
        dav("MOVE", "/dav/keep/a.txt", b"", Write),
        dav("DELETE", "/dav/new-dav.txt", b"", Write),
    ]);
    all
}

/// Route `C`'s JSON body, made from its request type.
fn body_of<C: Call>(request: &C::Request) -> Vec<u8>
where
    C::Request: serde::Serialize,
{
    serde_json::to_vec(request).unwrap()
}

/// A request to `route` that its handler accepts, with the role this suite expects it
/// to need (written here, not read from the table: a route added to the table without
/// a case here does not compile). Its body is of the type the table gives the route,
/// with the content type that goes with it.
fn api_route(route: &fvfs_api::routes::Route, chunk: &str, export_to: &str) -> Route {
    use fvfs_api::routes::{Endpoint as E, Tail};
    use Role::*;
    let ids = || Ids {
        ids: vec![chunk.parse().unwrap()],
    };
    // What follows the route's path (a query for a route without a tail).
    let (at, body, need): (&str, Vec<u8>, Option<Role>) = match route.endpoint {
        E::FileGet => ("/keep/a.txt", vec![], Some(Read)),
        E::FilePut => ("/new.txt", b"new".to_vec(), Some(Write)),
        E::FileDelete => ("/new.txt", vec![], Some(Write)),
        E::Meta => ("/keep/a.txt", vec![], Some(Read)),
        E::Ls | E::Du => ("/keep", vec![], Some(Read)),
        E::ChunksBatch => ("", vec![], Some(Write)),
        E::ChunksRead => ("", body_of::<call::ChunksRead>(&ids()), Some(Read)),
        E::ChunksMissing => ("", body_of::<call::ChunksMissing>(&ids()), Some(Read)),
        E::ChunkGet | E::ChunkHead | E::Node => (chunk, vec![], Some(Read)),
        E::ChunkPut => (chunk, b"kept a".to_vec(), Some(Write)),
        E::Versions | E::Snapshots => ("", vec![], Some(Read)),
        E::Version => ("HEAD", vec![], Some(Read)),
        E::SnapshotCreate => {
            let named = SnapshotCreate { name: "s1".into() };
            ("", body_of::<call::SnapshotCreate>(&named), Some(Write))
        }
        E::SnapshotDelete => ("s1", vec![], Some(Admin)),
        E::Rollback => {
            let to = Rollback { to: "1".into() };
            ("", body_of::<call::Rollback>(&to), Some(Write))
        }
        E::Diff => ("?a=1&b=HEAD", vec![], Some(Read)),
        E::History => ("/keep/a.txt", vec![], Some(Read)),
        E::Commit => {
            let mkdir = CommitOp::Mkdir {
                path: "/d".into(),
                mode: 0o755,
                mtime_ns: 0,
                meta: None,
            };
            let request = CommitRequest {
                message: String::new(),
                ops: vec![mkdir],
            };
            ("", body_of::<call::Commit>(&request), Some(Write))
        }
        E::DownloadLinks => ("/keep/a.txt", vec![], Some(Read)),
        E::Download => ("no-such-link", vec![], None),
        E::Status | E::StatusHistory | E::Whoami | E::Devices | E::Metrics => {
            ("", vec![], Some(Read))
        }
        E::AdminWal => ("", vec![], Some(Read)),
        E::AdminFlush => ("", vec![], Some(Write)),
        E::AdminEvict | E::AdminFsck => ("", vec![], Some(Admin)),
        E::AdminGc => {
            let args = GcArgs {
                grace_secs: Some(0),
                ..GcArgs::default()
            };
            ("", body_of::<call::AdminGc>(&args), Some(Admin))
        }
        E::AdminExport => {
            let args = ExportArgs {
                version: None,
                path: "/keep".into(),
                dir: export_to.into(),
                keep_privileged: false,
                verbose: false,
            };
            ("", body_of::<call::AdminExport>(&args), Some(Admin))
        }
        // No source: refused as a request, after the role.
        E::AdminMigrate => ("", b"{}".to_vec(), Some(Admin)),
    };
    let content_type = match route.request {
        "()" => "",
        "Raw" => "application/octet-stream",
        _ => "application/json",
    };
    let target = match route.tail {
        Tail::Bare => route.endpoint.plain().query(at),
        Tail::Path => route.endpoint.at(at),
        Tail::Name => route.endpoint.named(at),
    };
    Route {
        method: route.verb.as_str(),
        path: target.path,
        content_type,
        body,
        need,
    }
}

/// Sends `route` with exactly `headers`; returns the status and body.
fn send(addr: &str, route: &Route, headers: &[String], body: &[u8]) -> (u16, String) {
    raw(
        addr,
        &bare_request(route.method, &route.path, headers, body),
    )
}

/// The headers fvfs's own clients send, with `token` when given.
fn client(route: &Route, token: Option<&str>) -> Vec<String> {
    let mut h = vec![
        "Host: 127.0.0.1".to_owned(),
        "X-Fvfs-Client: test".to_owned(),
    ];
    if !route.content_type.is_empty() {
        h.push(format!("Content-Type: {}", route.content_type));
    }
    if let Some(t) = token {
        h.push(format!("Authorization: Bearer {t}"));
    }
    h
}

/// What the tree and its history are, to show that refused requests changed nothing.
fn state(d: &Daemon) -> String {
    let (_, versions) = d.raw(&request("GET", "/v1/versions", &[], b""));
    let (_, snapshots) = d.raw(&request("GET", "/v1/snapshots", &[], b""));
    let (_, tree) = d.raw(&request("GET", "/v1/ls/", &[], b""));
    format!("{versions}\n{snapshots}\n{tree}")
}

#[test]
fn forged_browser_requests_and_short_roles_are_refused_on_every_route() {
    let store = Fvfsd::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), "kept a").unwrap();
    let out = tempfile::tempdir().unwrap();
    let export_to = out.path().join("export");
    store.run([
        "migrate",
        "--local-src",
        src.path().to_str().unwrap(),
        "--dest",
        "/keep",
    ]);
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // Tokens made while the daemon runs are taken from its next request on.
    let read = store
        .run(["token", "new", "phone", "--role", "read"])
        .trim()
        .to_owned();
    let write = store.run(["token"]).trim().to_owned();
    let admin = d.admin_token();
    let chunk = fvfs_cas::ChunkId::of(b"kept a").to_hex();
    let routes = routes(&chunk, export_to.to_str().unwrap());
    let before = state(&d);
    let port = d.addr.rsplit(':').next().unwrap().to_owned();

    for route in &routes {
        let body = &route.body;
        let name = format!("{} {}", route.method, route.path);
        let full = client(route, Some(&admin));
        // Even with the admin token, a page's request is refused...
        let mut forged: Vec<(&str, Vec<String>)> = vec![
            (
                "foreign Origin",
                [full.clone(), vec!["Origin: http://evil.example".into()]].concat(),
            ),
            (
                "Origin null",
                [full.clone(), vec!["Origin: null".into()]].concat(),
            ),
            (
                "other port's Origin",
                [
                    full.clone(),
                    vec![format!(
                        "Origin: http://127.0.0.1:{}",
                        port.parse::<u16>().unwrap() ^ 1
                    )],
                ]
                .concat(),
            ),
            (
                "cross-site fetch",
                [full.clone(), vec!["Sec-Fetch-Site: cross-site".into()]].concat(),
            ),
        ];
        // ... and so is one addressed by a rebound DNS name.
        let mut rebound = full.clone();
        rebound[0] = format!("Host: evil.example:{port}");
        forged.push(("rebound Host", rebound));
        // A page sends other methods than these only after a preflight nobody grants,
        // which is what lets WebDAV clients go without the client header.
        let simple = matches!(route.method, "POST") || !route.path.starts_with("/dav");
        if !matches!(route.method, "GET" | "HEAD" | "OPTIONS") && simple {
            // A form or a plain fetch: a text/plain body without the client header.
            let form = vec![
                "Host: 127.0.0.1".to_owned(),
                "Content-Type: text/plain".to_owned(),
                format!("Authorization: Bearer {admin}"),
            ];
            forged.push(("text/plain body", form));
        }
        for (what, headers) in &forged {
            let (status, answer) = send(&d.addr, route, headers, body);
            assert_eq!(status, 403, "{name} with {what}: {answer}");
        }
        // Roles: a request short of the route's role is refused before its body is read.
        let Some(need) = route.need else {
            // A link route takes no token: what it answers is the link's business.
            continue;
        };
        let wrong = send(
            &d.addr,
            route,
            &client(route, Some("0123456789abcdef0123456789abcdef")),
            body,
        );
        assert_eq!(wrong.0, 401, "{name} with a wrong token: {}", wrong.1);
        for (role, token) in [
            (Role::Write, None),
            (Role::Read, Some(read.as_str())),
            (Role::Write, Some(write.as_str())),
        ] {
            if role < need {
                let (status, answer) = send(&d.addr, route, &client(route, token), body);
                assert_eq!(
                    status,
                    403,
                    "{name} as {role:?} (token: {}): {answer}",
                    token.is_some()
                );
                assert!(
                    answer.contains(&format!("{need:?} role").to_lowercase()),
                    "{answer}"
                );
            }
        }
    }
    assert_eq!(state(&d), before, "a refused request changed something");

    // With the role they need, every route is let through (whatever it then answers).
    for route in &routes {
        for (role, token) in [
            (Role::Write, None),
            (Role::Read, Some(read.as_str())),
            (Role::Write, Some(write.as_str())),
            (Role::Admin, Some(admin.as_str())),
        ] {
            if route.need.is_none_or(|need| role >= need) {
                let (status, answer) = send(&d.addr, route, &client(route, token), &route.body);
                assert!(
                    !matches!(status, 401 | 403),
                    "{} {} as {role:?}: {status} {answer}",
                    route.method,
                    route.path
                );
            }
        }
    }
    // The page's own origin, and a binary body without the client header, are fine.
    let own = Route {
        method: "PUT",
        path: "/v1/files/own.txt".into(),
        content_type: "application/octet-stream",
        body: b"own".to_vec(),
        need: Some(Role::Write),
    };
    let headers = vec![
        format!("Host: localhost:{port}"),
        format!("Origin: http://localhost:{port}"),
        "Content-Type: application/octet-stream".to_owned(),
        "Sec-Fetch-Site: same-origin".to_owned(),
    ];
    assert_eq!(send(&d.addr, &own, &headers, &own.body).0, 201);
    // A removed token is refused from the next request on.
    store.run(["token", "remove", "phone"]);
    let status = send(&d.addr, &routes[0], &client(&routes[0], Some(&read)), b"").0;
    assert_eq!(status, 401);
}

/// Connects from `source` (any 127.x address is this machine's loopback).
fn connect_from(source: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::from((source, 0)))?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// A daemon with `config` as its `[daemon]` section.
fn daemon_with(store: &Fvfsd, config: &str) -> Daemon {
    let path = store.home.path().join("fvfsd.toml");
    std::fs::write(&path, format!("[daemon]\n{config}")).unwrap();
    Daemon::start_with(
        store,
        &["--config", path.to_str().unwrap()],
        "127.0.0.1:0",
        &["--no-mdns"],
    )
}

/// Opens `n` connections from `sources` addresses 127.0.1.2 on (`n / sources` each),
/// each having sent an unfinished request head.
fn slow_connections(to: SocketAddr, n: u32, sources: u32) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let source = std::net::Ipv4Addr::new(127, 0, 1, 2 + (i % sources) as u8);
            let mut s = connect_from(source, to).unwrap();
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            s
        })
        .collect()
}

#[test]
fn slowloris_from_many_addresses_leaves_a_normal_client_served() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // 2,000 sockets need more than the usual soft limit of 1,024 files.
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).unwrap();
    let store = Fvfsd::new();
    // A long idle timeout: the 2,000 stay open for as long as this part takes.
    let d = daemon_with(
        &store,
        "max_connections_per_peer = 100\nidle_timeout_secs = 3600\n",
    );
    let to: SocketAddr = d.addr.parse().unwrap();
    let slow = slow_connections(to, 2000, 20);
    fvfs_tests::until("2,000 slow connections held", || {
        d.gauge("fvfs_connections_open") >= 2000.0
    });
    // One more from a peer at its cap is closed at once, without an answer.
    let mut extra = connect_from(std::net::Ipv4Addr::new(127, 0, 1, 2), to).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        extra.read(&mut buf).unwrap_or(0),
        0,
        "closed without an answer"
    );
    assert!(d.gauge("fvfs_connections_refused") >= 1.0);
    // Meanwhile a normal client is served, writes and reads back.
    for i in 0..20 {
        let path = format!("/v1/files/normal/{i}.txt");
        let body = format!("file {i}");
        assert_eq!(d.raw(&request("PUT", &path, &[], body.as_bytes())).0, 201);
        assert_eq!(d.raw(&request("GET", &path, &[], b"")), (200, body));
    }
    assert!(
        d.gauge("fvfs_connections_open") >= 2000.0,
        "the slow ones were held throughout"
    );
    drop(slow);
    drop(d);

    // Slow heads are cut off after the idle timeout, however steadily they trickle.
    let d = daemon_with(&store, "idle_timeout_secs = 2\n");
    let slow = slow_connections(d.addr.parse().unwrap(), 50, 5);
    fvfs_tests::until("50 slow connections held", || {
        d.gauge("fvfs_connections_open") >= 50.0
    });
    let trickle = std::thread::spawn(move || {
        let mut open = slow;
        let mut closed = 0;
        while !open.is_empty() {
            open.retain_mut(|s| {
                let alive = s.write_all(b"X-A: b\r\n").is_ok();
                closed += usize::from(!alive);
                alive
            });
            std::thread::sleep(Duration::from_millis(200));
        }
        closed
    });
    fvfs_tests::until("the slow connections closed", || {
        d.gauge("fvfs_connections_open") <= 1.0
    });
    assert_eq!(trickle.join().unwrap(), 50);
    assert_eq!(
        d.raw(&request("GET", "/v1/files/normal/0.txt", &[], b"")),
        (200, "file 0".into())
    );
}

/// Forwards connections on `listen` to `to`, replacing `from` by `to_bytes` (same
/// length) in everything the daemon sends back; counts the replacements.
fn tampering_proxy(
    to: SocketAddr,
    from: &'static [u8],
    into: &'static [u8],
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    assert_eq!(from.len(), into.len());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tampered = std::sync::Arc::new(AtomicUsize::new(0));
    let count = tampered.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { break };
            let mut daemon = TcpStream::connect(to).unwrap();
            let (mut c2, mut d2) = (client.try_clone().unwrap(), daemon.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut d2);
                let _ = d2.shutdown(std::net::Shutdown::Write);
            });
            let count = count.clone();
            std::thread::spawn(move || {
                // Holds back only a tail that could start a match with the next read.
                let mut pending = Vec::new();
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = daemon.read(&mut buf) {
                    pending.extend_from_slice(&buf[..n]);
                    let mut i = 0;
                    while let Some(at) = pending[i..].windows(from.len()).position(|w| w == from) {
                        pending[i + at..i + at + from.len()].copy_from_slice(into);
                        count.fetch_add(1, Ordering::SeqCst);
                        i += at + from.len();
                    }
                    let keep = (1..from.len())
                        .rev()
                        .find(|&k| pending.ends_with(&from[..k]))
                        .unwrap_or(0);
                    let send: Vec<u8> = pending.drain(..pending.len() - keep).collect();
                    if client.write_all(&send).is_err() {
                        return;
                    }
                }
                let _ = client.write_all(&pending);
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, tampered)
}

#[test]
fn cat_writes_nothing_that_does_not_match_its_hashes() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // Random bytes (kept raw in their frames, so the marker travels as is) with a
    // marker inside.
    let mut rng = fvfs_tests::Rng(17);
    // 12 MB: about 180 chunks, so cat's first batch (64 chunks) is verified and
    // written before the altered one arrives in a later batch.
    let mut content: Vec<u8> = (0..12_000_000).map(|_| rng.next_u64() as u8).collect();
    content[10_000_000..10_000_016].copy_from_slice(b"MARKER-012345678");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &content).unwrap();
    let put = d
        .fvfsc(["put", "/photo.bin", "--from"])
        .arg(file.path())
        .output()
        .unwrap();
    fvfs_tests::check(&put, 0);
    let direct = d.fvfsc(["cat", "/photo.bin"]).output().unwrap();
    fvfs_tests::check(&direct, 0);
    assert!(direct.stdout == content, "cat gives the file back as put");

    let (proxy, tampered) = tampering_proxy(
        d.addr.parse().unwrap(),
        b"MARKER-012345678",
        b"TAMPERED-0000000",
    );
    let out = d
        .fvfsc(["cat", "/photo.bin"])
        .env("FVFS_URL", format!("http://{proxy}"))
        .output()
        .unwrap();
    assert!(
        tampered.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy changed nothing"
    );
    fvfs_tests::check(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("as the daemon sent it"), "{err}");
    assert!(
        !out.stdout.windows(8).any(|w| w == b"TAMPERED"),
        "altered bytes reached stdout"
    );
    assert!(
        !out.stdout.is_empty() && content.starts_with(&out.stdout),
        "what was written ({} bytes) is a verified start of the file",
        out.stdout.len()
    );
}

#[test]
fn the_web_page_holds_no_data_and_everything_it_shows_needs_a_token() {
    let store = Fvfsd::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("secret-name.txt"), "secret content").unwrap();
    store.run([
        "migrate",
        "--local-src",
        src.path().to_str().unwrap(),
        "--dest",
        "/private",
    ]);
    // Beyond loopback: every API request needs a token.
    let d = Daemon::start(&store, "0.0.0.0:0", &["--no-mdns"]);
    let port = d.addr.rsplit(':').next().unwrap().to_owned();
    let addr = format!("127.0.0.1:{port}");
    let read = store
        .run(["token", "new", "phone", "--role", "read"])
        .trim()
        .to_owned();
    // The page's files come to anyone who names the daemon, even from a link on
    // another site, with a policy that keeps other pages and scripts out of them.
    for path in ["/", "/ui/app.js", "/ui/app.css", "/ui/icon.svg"] {
        let headers = [
            format!("Host: 127.0.0.1:{port}"),
            "Origin: http://evil.example".to_owned(),
            "Sec-Fetch-Site: cross-site".to_owned(),
        ];
        let answer = whole_answer(&addr, &bare_request("GET", path, &headers, b""));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "{head}"
        );
        assert!(head.contains("frame-ancestors 'none'"), "{head}");
        assert!(head.contains("x-frame-options: deny"), "{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(
            !body.contains("secret") && !body.contains("private"),
            "{path} holds data of the store"
        );
        // A page rebinding its DNS name to the daemon gets nothing, not even these.
        let rebound = [format!("Host: evil.example:{port}")];
        let (status, _) = raw(&addr, &bare_request("GET", path, &rebound, b""));
        assert_eq!(status, 403, "{path} for a rebound Host");
        let (status, _) = raw(&addr, &request("POST", path, &[], b""));
        assert_eq!(status, 405, "POST {path}");
    }
    assert_eq!(
        raw(&addr, &request("GET", "/ui/nothing.js", &[], b"")).0,
        404
    );
    // What the page shows comes from the API: nothing without a token, a read-only
    // token's role told to the page, and the store's data to that role.
    for path in ["/v1/whoami", "/v1/ls/private", "/v1/status/history"] {
        let (status, _) = raw(&addr, &request("GET", path, &[], b""));
        assert_eq!(status, 401, "{path} without a token");
    }
    let bearer = format!("Authorization: Bearer {read}");
    let (status, me) = raw(&addr, &request("GET", "/v1/whoami", &[&bearer], b""));
    assert_eq!(
        (status, me.as_str()),
        // (A store without an encrypted tier cuts with fastcdc's own table: seed 0.)
        (200, "{\"role\":\"read\",\"auth\":true,\"cut_seed\":0}")
    );
    let (status, listing) = raw(&addr, &request("GET", "/v1/ls/private", &[&bearer], b""));
    assert_eq!(status, 200);
    assert!(listing.contains("secret-name.txt"), "{listing}");
}

#[test]
fn a_download_link_is_good_once_for_what_the_page_showed_and_never_for_another_site() {
    let store = Fvfsd::new();
    // Listening beyond loopback: every API request needs a token, even from here.
    let d = Daemon::start(&store, "0.0.0.0:0", &["--no-mdns"]);
    let addr = format!("127.0.0.1:{}", d.addr.rsplit(':').next().unwrap());
    let write = store.run(["token"]).trim().to_owned();
    let read = store
        .run(["token", "new", "phone", "--role", "read"])
        .trim()
        .to_owned();
    let put = |content: &str| {
        let auth = format!("Authorization: Bearer {write}");
        let path = "/v1/files/docs/%C3%A9t%C3%A9%201.txt";
        let (status, body) = raw(&addr, &request("PUT", path, &[&auth], content.as_bytes()));
        assert_eq!(status, 201, "{body}");
    };
    let link = |token: Option<&str>, path: &str| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        raw(
            &addr,
            &request("POST", &format!("/v1/download-links{path}"), &headers, b""),
        )
    };
    let url = |answer: (u16, String)| {
        assert_eq!(answer.0, 200, "{}", answer.1);
        let v: serde_json::Value = serde_json::from_str(&answer.1).unwrap();
        assert_eq!(v["expires_in_secs"], 60, "{v}");
        v["url"].as_str().unwrap().to_owned()
    };
    let fetch = |url: &str, extra: &[&str]| {
        let mut headers = vec!["Host: 127.0.0.1"];
        headers.extend_from_slice(extra);
        split_answer(&whole_answer(
            &addr,
            &bare_request("GET", url, &headers, b""),
        ))
    };
    put("first");
    put("second");
    let file = "/docs/%C3%A9t%C3%A9%201.txt";

    // Links are made with a token (a read token will do), for files only.
    assert_eq!(link(None, file).0, 401);
    let (status, body) = link(Some(&read), "/docs");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("is_a_directory"), "{body}");
    let old = url(link(Some(&read), &format!("{file}?version=1")));

    // Another site cannot use one, and trying does not use it up.
    for forged in ["Sec-Fetch-Site: cross-site", "Origin: http://evil.example"] {
        let (status, _, body) = fetch(&old, &[forged]);
        assert_eq!(status, 403, "{forged}: {body}");
    }
    // The page's navigation, without a token, gets the file of the version asked for,
    // as an attachment under its own name, never run as a page.
    let (status, head, body) = fetch(&old, &["Sec-Fetch-Site: same-origin"]);
    assert_eq!((status, body.as_str()), (200, "first"), "{head}");
    for h in [
        "content-disposition: attachment; filename=\"_t_ 1.txt\"; filename*=utf-8''%c3%a9t%c3%a9%201%2etxt",
        "content-security-policy: sandbox",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
    ] {
        assert!(head.contains(h), "{h}: {head}");
    }
    // Once.
    let (status, _, body) = fetch(&old, &[]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("used or has expired"), "{body}");
    assert_eq!(fetch("/v1/download/0123456789abcdef", &[]).0, 404);

    // A link to the live file names the version it was made in.
    let now = url(link(Some(&read), file));
    put("third");
    assert_eq!(fetch(&now, &[]).2, "second");
}
