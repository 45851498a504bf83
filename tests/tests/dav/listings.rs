//! Listings answered directly say what dav-server would.

use super::*;

/// A PROPFIND's status, headers and body, asked over HTTP/1.0 so that the body comes
/// whole, not in chunks.
fn propfind(addr: &str, path: &str, depth: &str, body: &str) -> (u16, String, String) {
    let request = format!(
        "PROPFIND {path} HTTP/1.0\r\nHost: localhost\r\nDepth: {depth}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    split_answer(&whole_answer(addr, request.as_bytes()))
}

/// An XML answer as one string of what it means: names with their namespaces,
/// children and text in order (prefixes and namespace declarations left out).
fn meaning(xml: &str) -> String {
    fn walk(e: &xmltree::Element, out: &mut String) {
        out.push_str(&format!(
            "<{{{}}}{}>",
            e.namespace.as_deref().unwrap_or(""),
            e.name
        ));
        for c in &e.children {
            match c {
                xmltree::XMLNode::Element(k) => walk(k, out),
                xmltree::XMLNode::Text(t) => out.push_str(t),
                _ => {}
            }
        }
        out.push_str("</>");
    }
    let root = xmltree::Element::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let mut out = String::new();
    walk(&root, &mut out);
    out
}

/// PROPFINDs answered by [`propfind`] so far (the daemon counts them under their own
/// route).
fn direct_answers(addr: &str) -> u64 {
    let metrics = raw(
        addr,
        &bare_request("GET", "/metrics", &["Host: localhost"], b""),
    )
    .1;
    metrics
        .lines()
        .filter(|l| l.starts_with("fvfs_http_requests_total{route=\"dav_propfind\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn listings_answered_directly_say_what_dav_server_says() {
    // Names that need encoding or escaping, an executable, a file dated before 1970,
    // an empty file and folder, and a folder long enough to be sent in pieces.
    let src = tempfile::tempdir().unwrap();
    let docs = src.path().join("docs");
    std::fs::create_dir_all(docs.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(docs.join("empty")).unwrap();
    for (name, body) in [
        ("a b&c.txt", &b"words"[..]),
        ("\u{e9}t\u{e9}.html", b"<p>"),
        ("100%.md", b"# all"),
        ("<odd>.txt", b">"),
        (".hidden", b"h"),
        ("nothing", b""),
        ("archive.tar.gz", b"gz"),
        ("sub/inner.json", b"{}"),
    ] {
        std::fs::write(docs.join(name), body).unwrap();
    }
    let run = docs.join("run.sh");
    std::fs::write(&run, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(docs.join("old.txt"), "old").unwrap();
    run_ok(
        Command::new("touch")
            .args(["-d", "1960-01-01"])
            .arg(docs.join("old.txt")),
    );
    for i in 0..1200 {
        std::fs::write(docs.join(format!("sub/f{i:04}")), i.to_string()).unwrap();
    }
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.path().to_str().unwrap()]);
    store.run(["snapshot", "create", "then"]);
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);

    // What dav-server answers the same question: it takes every request that names a
    // property this daemon does not answer itself (dav-server leaves out properties it
    // has no value for, so the stranger changes nothing), or that includes one.
    let stranger = r#"<x:colour xmlns:x="urn:example"/>"#;
    let known = r#"<D:resourcetype/><D:getcontentlength/><D:getcontenttype/><D:getetag/>
        <D:getlastmodified/><D:lockdiscovery/><D:supportedlock/><D:creationdate/>
        <D:displayname/><D:getcontentlanguage/><D:quota-used-bytes/>
        <D:quota-available-bytes/><A:executable/>"#;
    let body = |inner: &str| {
        format!(
            r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:A="http://apache.org/dav/props/">{inner}</D:propfind>"#
        )
    };
    let questions = [
        (
            "allprop",
            body("<D:allprop/>"),
            body(&format!("<D:allprop/><D:include>{stranger}</D:include>")),
        ),
        (
            "empty body",
            String::new(),
            body(&format!("<D:allprop/><D:include>{stranger}</D:include>")),
        ),
        (
            "named",
            body(&format!("<D:prop>{known}</D:prop>")),
            body(&format!("<D:prop>{known}{stranger}</D:prop>")),
        ),
        (
            "two",
            body("<D:prop><D:getetag/><D:resourcetype/></D:prop>"),
            body(&format!(
                "<D:prop><D:getetag/>{stranger}<D:resourcetype/></D:prop>"
            )),
        ),
    ];
    let places = [
        ("/dav/docs/", "1"),
        ("/dav/docs", "1"),
        ("/dav/docs/sub/", "1"),
        ("/dav/docs/empty/", "1"),
        ("/dav/docs/", "0"),
        ("/dav/docs/run.sh", "0"),
        ("/dav/docs/run.sh", "1"),
        ("/dav/docs/%C3%A9t%C3%A9.html", "0"),
        ("/dav/.snapshots/then/docs/", "1"),
    ];
    for (path, depth) in places {
        for (what, fast, slow) in &questions {
            let before = direct_answers(&d.addr);
            let (status, head, answer) = propfind(&d.addr, path, depth, fast);
            assert_eq!(status, 207, "{path} {what}: {answer}");
            assert_eq!(
                direct_answers(&d.addr),
                before + 1,
                "{path} {what}: answered directly"
            );
            let (status, slow_head, expected) = propfind(&d.addr, path, depth, slow);
            assert_eq!(status, 207, "{path} {what}: {expected}");
            assert_eq!(
                direct_answers(&d.addr),
                before + 1,
                "{path} {what}: dav-server's answer"
            );
            assert_eq!(
                meaning(&answer),
                meaning(&expected),
                "{path} depth {depth}, {what}"
            );
            for h in ["content-type:", "content-location:", "cache-control:"] {
                let line = |head: &str| head.lines().find(|l| l.starts_with(h)).map(str::to_owned);
                assert_eq!(line(&head), line(&slow_head), "{path} {what}: {h}");
            }
        }
    }
    let (_, _, sub) = propfind(&d.addr, "/dav/docs/sub/", "1", "");
    assert_eq!(
        sub.matches("<D:response>").count(),
        1 + 1200 + 2,
        "the folder, its files and folder"
    );
    let (_, _, old) = propfind(&d.addr, "/dav/docs/old.txt", "0", "");
    assert!(
        old.contains("Thu, 01 Jan 1970 00:00:00 GMT"),
        "dated as early as HTTP can: {old}"
    );

    // A lock in the folder, or a property someone stored on a file in it, and the
    // listing is dav-server's again: it shows both.
    let by_dav_server = |path: &str, why: &str| {
        let before = direct_answers(&d.addr);
        let (_, _, listing) = propfind(&d.addr, path, "1", "");
        assert_eq!(direct_answers(&d.addr), before, "{why}: dav-server answers");
        listing
    };
    let lock = |path: &str, extra: &[&str]| {
        let body = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>"#;
        let (status, held) = dav(&d.addr, "LOCK", path, extra, body.as_bytes());
        assert_eq!(status, 200, "{held}");
        let token = held
            .split("<D:href>")
            .nth(1)
            .and_then(|s| s.split("</D:href>").next())
            .unwrap()
            .to_owned();
        format!("Lock-Token: <{token}>")
    };
    let held = lock("/dav/docs/run.sh", &["Timeout: Second-600"]);
    let listing = by_dav_server("/dav/docs/", "a lock under the folder");
    assert!(
        listing.contains("<D:activelock>") && listing.contains("tester"),
        "{listing}"
    );
    assert_eq!(
        dav(&d.addr, "UNLOCK", "/dav/docs/run.sh", &[&held], b"").0,
        204
    );
    // A lock on the folder above, even of depth 0, shows in the listing below it.
    let held = lock("/dav/docs/", &["Depth: 0", "Timeout: Second-600"]);
    let listing = by_dav_server("/dav/docs/sub/", "a lock above the folder");
    assert!(listing.contains("<D:activelock>"), "{listing}");
    assert_eq!(dav(&d.addr, "UNLOCK", "/dav/docs/", &[&held], b"").0, 204);
    let patch = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:example"><D:set><D:prop><x:colour>teal</x:colour></D:prop></D:set></D:propertyupdate>"#;
    assert_eq!(
        dav(
            &d.addr,
            "PROPPATCH",
            "/dav/docs/nothing",
            &[],
            patch.as_bytes()
        )
        .0,
        207
    );
    let listing = by_dav_server("/dav/docs/", "a stored property");
    assert!(listing.contains("teal"), "{listing}");
}
