//! WebDAV under `/dav/` against a real daemon: the litmus suite (Debian's `litmus`,
//! written by the authors of neon, which nobody here wrote) runs its basic, copymove,
//! props, locks and http suites. Changes made over WebDAV are versions the API reads;
//! snapshots are read-only under `/dav/.snapshots/`, and copying out of one restores;
//! beyond loopback the token goes as HTTP Basic's password.

use std::collections::BTreeMap;
use std::process::Command;

use fvfs_tests::daemon::{bare_request, raw, Daemon};
use fvfs_tests::{check, Fvfsd};

/// `(passed, failed)` of each suite litmus ran, from its summary lines
/// ("<- summary for `basic': of 16 tests run: 16 passed, 0 failed. 100.0%").
fn summaries(out: &str) -> BTreeMap<String, (u32, u32)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.split("summary for `").nth(1)?;
            let (suite, rest) = rest.split_once('\'')?;
            let numbers: Vec<u32> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            // of N tests run: P passed, F failed.
            Some((suite.to_owned(), (*numbers.get(1)?, *numbers.get(2)?)))
        })
        .collect()
}

#[test]
fn litmus_passes_every_suite_it_runs() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let out = Command::new("litmus")
        .arg(format!("{}/dav/", d.url))
        .env("TESTS", "basic copymove props locks http")
        .output()
        .expect("litmus (apt install litmus; scripts/install-deps.sh does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let suites = summaries(&text);
    println!("litmus: {suites:?}");
    assert_eq!(
        suites.keys().map(String::as_str).collect::<Vec<_>>(),
        ["basic", "copymove", "http", "locks", "props"],
        "{text}"
    );
    for (suite, (passed, failed)) in &suites {
        assert!(
            *passed > 0 && *failed == 0,
            "{suite}: {failed} failed\n{text}"
        );
    }
}

/// A WebDAV client's request (no content type, no fvfs header) with `auth`.
fn dav(addr: &str, method: &str, path: &str, extra: &[&str], body: &[u8]) -> (u16, String) {
    let mut headers = vec!["Host: localhost".to_owned()];
    headers.extend(extra.iter().map(|h| h.to_string()));
    raw(addr, &bare_request(method, path, &headers, body))
}

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
    assert!(matches!(
        dav(&addr, "PUT", "/dav/docs/a.txt", &auth, b"second").0,
        201 | 204
    ));
    assert_eq!(dav(&addr, "GET", "/dav/docs/a.txt", &auth, b"").1, "second");
    let old = "/dav/.snapshots/before/docs/a.txt";
    assert_eq!(
        dav(&addr, "GET", old, &auth, b""),
        (200, "first".to_owned())
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
