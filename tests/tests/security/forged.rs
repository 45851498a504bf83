//! Every route of the table, and WebDAV, as a web page would forge it and with each role short of what it needs.

use super::*;

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
