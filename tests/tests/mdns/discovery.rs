//! fvfsc finds the daemon over mDNS from another host (network namespace).

use super::*;

#[test]
fn fvfsc_finds_the_daemon_over_mdns_from_another_host() {
    let net = Net::new().expect("network namespaces (`ip netns add`; needs root)");
    let store = Fvfsd::new();
    let (_daemon, token) = real_daemon(&net, &store);
    let home = tempfile::tempdir().unwrap();
    let client = |args: &[&str]| device(&net, home.path(), &token, args);

    // Found over mDNS, met over HTTPS: the first contact pins the certificate.
    let status = client(&["status", "--json"]);
    check(&status, 0);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["daemon"]["listen"], "10.77.0.1:7734");
    let fingerprint = v["daemon"]["fingerprint"].as_str().unwrap().to_owned();
    assert!(
        stderr(&status).contains(&format!("pinned its certificate {fingerprint}")),
        "{}",
        stderr(&status)
    );
    let pinned = std::fs::read_to_string(home.path().join(".config/fvfs/pinned.json")).unwrap();
    assert!(
        pinned.contains(&fingerprint) && pinned.contains("https://10.77.0.1:7734"),
        "{pinned}"
    );
    assert!(store
        .run(["pair"])
        .contains(&format!("--fingerprint {fingerprint}")));
    // Later contacts use the pin quietly.
    let again = client(&["status"]);
    check(&again, 0);
    assert!(
        !stderr(&again).contains("first contact"),
        "{}",
        stderr(&again)
    );

    // The announcement carries version, node id and fingerprint, never the token; the
    // daemon saw the client.
    let devices = client(&["devices", "--json"]);
    check(&devices, 0);
    let body = String::from_utf8_lossy(&devices.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let daemons = v["daemons"].as_array().unwrap();
    assert!(
        daemons.iter().any(|x| x["port"] == 7734
            && x["node_id"].is_string()
            && x["fingerprint"] == fingerprint.as_str()),
        "{body}"
    );
    assert!(!body.contains(&token), "the token must never be announced");
    assert!(
        v["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["address"] == "10.77.0.2"),
        "{body}"
    );

    // Content goes both ways over HTTPS.
    let file = home.path().join("hello.txt");
    std::fs::write(&file, "hello over TLS\n").unwrap();
    check(
        &client(&["put", "/hello.txt", "--from", file.to_str().unwrap()]),
        0,
    );
    let cat = client(&["cat", "/hello.txt"]);
    check(&cat, 0);
    assert_eq!(cat.stdout, b"hello over TLS\n");

    // fvfsd commands on the daemon's machine reach it over HTTPS too (it listens on a
    // LAN address only), trusting the certificate in the data directory.
    let mut snapshot = net.exec(&net.a, bin("fvfsd"));
    snapshot
        .args(["snapshot", "create", "over-tls"])
        .env("FVFS_HOME", store.home.path());
    let snapshot = snapshot.output().unwrap();
    check(&snapshot, 0);
    let listed = client(&["snapshot", "list"]);
    check(&listed, 0);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("over-tls"));

    // Plain HTTP across the LAN: fvfsc keeps its token, and the daemon refuses.
    let plain = client(&["--url", "http://10.77.0.1:7734", "status"]);
    check(&plain, 2);
    assert!(
        stderr(&plain).contains("plain HTTP only to this machine"),
        "{}",
        stderr(&plain)
    );
    let plain = device(
        &net,
        home.path(),
        "",
        &["--url", "http://10.77.0.1:7734", "status"],
    );
    check(&plain, 1);
    assert!(stderr(&plain).contains("HTTPS only"), "{}", stderr(&plain));
}
