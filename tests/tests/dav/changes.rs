//! WebDAV changes are versions (snapshots read only), and a Finder upload commits only what it announced.

use super::*;

#[test]
fn webdav_changes_are_versions_and_snapshots_are_read_only() {
    let store = Fvfsd::new();
    // Listening beyond loopback: every request needs the token, even from here.
    let d = Daemon::start(&store, "0.0.0.0:0", &["--no-mdns"]);
    let addr = format!("127.0.0.1:{}", d.addr.rsplit(':').next().unwrap());
    let token = store.run(["token"]).trim().to_owned();
    let basic = format!(
        "Authorization: Basic {}",
        base64_encode(format!("anyone:{token}").as_bytes())
    );
    let auth = [basic.as_str()];
    let (status, body) = dav(&addr, "PROPFIND", "/dav/", &["Depth: 1"], b"");
    assert_eq!(status, 401, "{body}");
    let wrong = format!("Authorization: Basic {}", base64_encode(b"anyone:wrong"));
    assert_eq!(
        dav(&addr, "PROPFIND", "/dav/", &[&wrong, "Depth: 1"], b"").0,
        401
    );

    assert_eq!(dav(&addr, "MKCOL", "/dav/docs", &auth, b"").0, 201);
    assert_eq!(dav(&addr, "PUT", "/dav/docs/a.txt", &auth, b"first").0, 201);
    let (status, got) = dav(
        &addr,
        "GET",
        "/v1/files/docs/a.txt",
        &[&format!("Authorization: Bearer {token}")],
        b"",
    );
    assert_eq!(
        (status, got.as_str()),
        (200, "first"),
        "the API reads what WebDAV wrote"
    );
    let snap = d
        .fvfsc([
            "--url",
            &format!("http://{addr}"),
            "snapshot",
            "create",
            "before",
        ])
        .env("FVFS_TOKEN", &token)
        .output()
        .unwrap();
    check(&snap, 0);
    // A property set on the file survives its overwrite (as do its mode and xattrs).
    let patch = br#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:fvfs-test"><D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>"#;
    assert_eq!(
        dav(
            &addr,
            "PROPPATCH",
            "/dav/docs/a.txt",
            &[&basic, "Content-Type: application/xml"],
            patch
        )
        .0,
        207
    );
    assert_eq!(
        dav(&addr, "PUT", "/dav/docs/a.txt", &auth, b"second").0,
        204
    );
    let (status, got) = dav(&addr, "GET", "/dav/docs/a.txt", &auth, b"");
    assert_eq!((status, got.as_str()), (200, "second"));
    let (_, props) = dav(
        &addr,
        "PROPFIND",
        "/dav/docs/a.txt",
        &[&basic, "Depth: 0"],
        b"",
    );
    assert!(
        props.contains("colour") && props.contains("blue"),
        "{props}"
    );
    let old = "/dav/.snapshots/before/docs/a.txt";
    assert_eq!(
        dav(&addr, "GET", old, &auth, b""),
        (200, "first".to_owned())
    );
    // Whatever a stored file's name says, a browser never runs it as a page here.
    let whole = whole_answer(
        &addr,
        &bare_request("GET", old, &["Host: localhost", &basic], b""),
    );
    let lower = whole.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: sandbox")
            && lower.contains("x-content-type-options: nosniff"),
        "{whole}"
    );
    for (method, path) in [
        ("PUT", "/dav/.snapshots/before/docs/b.txt"),
        ("DELETE", old),
        ("MKCOL", "/dav/.snapshots/before/new"),
    ] {
        let body: &[u8] = if method == "PUT" { b"x" } else { b"" };
        let (status, body) = dav(&addr, method, path, &auth, body);
        assert!(
            status == 403 || status == 405,
            "{method} {path}: {status} {body}"
        );
    }
    // Copying out of a snapshot restores.
    let dest = format!("Destination: http://{addr}/dav/docs/restored.txt");
    assert_eq!(dav(&addr, "COPY", old, &[&basic, &dest], b"").0, 201);
    assert_eq!(
        dav(&addr, "GET", "/dav/docs/restored.txt", &auth, b"").1,
        "first"
    );
    let (status, listing) = dav(&addr, "PROPFIND", "/dav/docs/", &[&basic, "Depth: 1"], b"");
    assert_eq!(status, 207, "{listing}");
    for name in ["a.txt", "restored.txt", "getetag"] {
        assert!(listing.contains(name), "{listing}");
    }
    // Files clients write for themselves stay out of the tree and its history.
    let quiet = versions_now(&addr, &token);
    for name in [".DS_Store", "._a.txt", "Thumbs.db"] {
        let path = format!("/dav/docs/{name}");
        assert_eq!(
            dav(&addr, "PUT", &path, &auth, b"window positions").0,
            201,
            "{name}"
        );
        assert_eq!(dav(&addr, "GET", &path, &auth, b"").1, "window positions");
    }
    assert_eq!(versions_now(&addr, &token), quiet, "no version for them");
    let bearer = format!("Authorization: Bearer {token}");
    let (status, ls) = dav(&addr, "GET", "/v1/ls/docs", &[&bearer], b"");
    assert_eq!(status, 200, "{ls}");
    assert!(
        ls.contains("a.txt") && !ls.contains("DS_Store") && !ls.contains("._a"),
        "{ls}"
    );
    // One of those names in the tree (written another way) is the tree's file.
    let api_put = bare_request(
        "PUT",
        "/v1/files/docs/desktop.ini",
        &[
            "Host: localhost",
            &bearer,
            "Content-Type: application/octet-stream",
        ],
        b"[.ShellClassInfo]",
    );
    assert_eq!(raw(&addr, &api_put).0, 201);
    assert_eq!(
        dav(&addr, "GET", "/dav/docs/desktop.ini", &auth, b"").1,
        "[.ShellClassInfo]"
    );
    assert_eq!(
        dav(&addr, "DELETE", "/dav/docs/.DS_Store", &auth, b"").0,
        204
    );
    assert_eq!(dav(&addr, "GET", "/dav/docs/.DS_Store", &auth, b"").0, 404);

    // A folder copied and deleted whole: one version each, however many files.
    for i in 0..30 {
        let path = format!("/dav/docs/many-{i}.txt");
        assert_eq!(dav(&addr, "PUT", &path, &auth, b"x").0, 201);
    }
    let versions = || versions_now(&addr, &token);
    let before = versions();
    let dest = format!("Destination: http://{addr}/dav/copy-of-docs");
    assert_eq!(
        dav(&addr, "COPY", "/dav/docs", &[&basic, &dest], b"").0,
        201
    );
    assert_eq!(versions(), before + 1, "a folder copy is one version");
    let (_, copied) = dav(&addr, "GET", "/dav/copy-of-docs/many-29.txt", &auth, b"");
    assert_eq!(copied, "x");
    assert_eq!(dav(&addr, "DELETE", "/dav/copy-of-docs", &auth, b"").0, 204);
    assert_eq!(versions(), before + 2, "a folder delete is one version");
    assert_eq!(
        dav(&addr, "GET", "/dav/copy-of-docs/many-29.txt", &auth, b"").0,
        404
    );
    // An upload cut off before its announced length changes nothing.
    let cut_at = versions_now(&addr, &token);
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!(
            "PUT /dav/docs/cut.bin HTTP/1.1\r\nHost: localhost\r\n{basic}\r\nContent-Length: 100000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&[7u8; 1000]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }
    assert_eq!(dav(&addr, "GET", "/dav/docs/cut.bin", &auth, b"").0, 404);
    assert_eq!(versions_now(&addr, &token), cut_at, "nothing committed");
    let log = d
        .fvfsc(["--url", &format!("http://{addr}"), "log"])
        .env("FVFS_TOKEN", &token)
        .output()
        .unwrap();
    check(&log, 0);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("dav put /docs/a.txt") && log.contains("dav copy"),
        "{log}"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_finder_upload_commits_only_when_it_brought_the_size_it_announced() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // Printable, since the test reads it back as text.
    let whole: Vec<u8> = (0..5_000u32).map(|i| (i % 95 + 32) as u8).collect();
    assert_eq!(
        finder_put(&d.addr, "/dav/photo.jpg", whole.len(), &whole),
        201
    );
    let (status, got) = d.raw(&fvfs_tests::daemon::request(
        "GET",
        "/v1/files/photo.jpg",
        &[],
        b"",
    ));
    assert_eq!((status, got.len()), (200, whole.len()));
    assert_eq!(blake3::hash(got.as_bytes()), blake3::hash(&whole));

    // Fewer bytes than announced (the Mac went to sleep): refused, nothing committed.
    let versions = || dav(&d.addr, "GET", "/v1/versions", &[], b"").1;
    let before = versions();
    let status = finder_put(&d.addr, "/dav/half.jpg", whole.len(), &whole[..2_000]);
    assert!(status >= 400, "a short upload answered {status}");
    assert_eq!(dav(&d.addr, "GET", "/dav/half.jpg", &[], b"").0, 404);
    assert_eq!(versions(), before, "nothing committed");
}

/// A chunked PUT as macOS Finder sends it: no `Content-Length`, the size in
/// `X-Expected-Entity-Length`.
fn finder_put(addr: &str, path: &str, expected: usize, body: &[u8]) -> u16 {
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\nX-Expected-Entity-Length: {expected}\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    raw(addr, &request).0
}
