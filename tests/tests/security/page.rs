//! The web page holds no data, and a download link is good once.

use super::*;

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
