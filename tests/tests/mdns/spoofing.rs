//! A spoofed daemon on the LAN, or a local user on the daemon's port, receives no token.

use super::*;

#[test]
fn a_spoofed_daemon_on_the_lan_receives_no_token() {
    let net = Net::new().expect("network namespaces (`ip netns add`; needs root)");
    let store = Fvfsd::new();
    let (mut daemon, token) = real_daemon(&net, &store);
    let home = tempfile::tempdir().unwrap();
    let client = |args: &[&str]| device(&net, home.path(), &token, args);
    let status = client(&["status", "--json"]);
    check(&status, 0);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let (node_id, real) = (
        v["daemon"]["node_id"].as_str().unwrap().to_owned(),
        v["daemon"]["fingerprint"].as_str().unwrap().to_owned(),
    );
    daemon.stop();

    // The real daemon's node id, another certificate: reached, refused at the handshake.
    let twin = Spoof::start(&net.a, "10.77.0.1:7735", "twin", &node_id, Cert::Own);
    let out = client(&["ls", "/"]);
    check(&out, 2);
    let err = stderr(&out);
    let presented = twin.fingerprint.clone().unwrap();
    assert!(
        err.contains(&format!("presented certificate {presented}")) && err.contains(&real),
        "{err}"
    );
    let (connections, received) = twin.seen();
    assert!(
        connections >= 1,
        "fvfsc should have tried the twin (and refused it)"
    );
    assert!(received.is_empty(), "the twin read {received:?}");
    drop(twin);

    // The real certificate, copied, without its key: the fingerprint matches, the
    // handshake's signature does not.
    let pem = std::fs::read(store.home.path().join("tls.pem")).unwrap();
    let real_der =
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::from_pem_slice(
            &pem,
        )
        .unwrap();
    let thief = Spoof::start(
        &net.a,
        "10.77.0.1:7738",
        "thief",
        &node_id,
        Cert::Stolen(real_der.to_vec()),
    );
    assert_eq!(thief.fingerprint.as_deref(), Some(real.as_str()));
    let out = client(&["ls", "/"]);
    check(&out, 2);
    let (connections, received) = thief.seen();
    assert!(
        connections >= 1,
        "fvfsc should have tried the thief (and refused it)"
    );
    assert!(received.is_empty(), "the thief read {received:?}");
    drop(thief);

    // A new daemon, and one announcing plain HTTP under the real node id: a device that
    // paired is not taken elsewhere, and says which daemons it ignored.
    let stranger = Spoof::start(
        &net.a,
        "10.77.0.1:7736",
        "stranger",
        "00112233445566778899aabbccddeeff",
        Cert::Own,
    );
    let plain = Spoof::start(&net.a, "10.77.0.1:7737", "plain", &node_id, Cert::Plain);
    let out = client(&["ls", "/"]);
    check(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("no daemon this device has paired with"),
        "{err}"
    );
    for s in [&stranger, &plain] {
        assert!(err.contains(&s.name), "{err}");
        let (connections, received) = s.seen();
        assert_eq!((connections, received.as_str()), (0, ""), "{}", s.name);
    }
    assert!(err.contains("announces no certificate"), "{err}");
    let pinned = std::fs::read_to_string(home.path().join(".config/fvfs/pinned.json")).unwrap();
    assert!(
        pinned.contains(&real) && !pinned.contains(&presented),
        "{pinned}"
    );
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Another local user binding the daemon's port while it is down gets no token from a
/// local fvfsc: the daemon's notice makes fvfsc speak HTTPS to loopback and insist on
/// the daemon's certificate. Without a notice (the control), the token goes out.
#[test]
fn a_local_user_on_the_daemons_port_receives_no_token() {
    let net = Net::new().expect("network namespaces (`ip netns add`; needs root)");
    let store = Fvfsd::new();
    let runtime = tempfile::tempdir().unwrap();
    let start = || {
        let mut serve = net.exec(&net.a, bin("fvfsd"));
        serve
            .args(["serve", "--listen", "127.0.0.1:7734", "--no-mdns"])
            .env("FVFS_HOME", store.home.path())
            .env("FVFS_RUNTIME_DIR", runtime.path())
            .env_remove("RUST_LOG");
        Daemon::spawn(serve)
    };
    let mut daemon = start();
    let token = store.run(["token"]).trim().to_owned();
    let home = tempfile::tempdir().unwrap();
    let local = |runtime: &std::path::Path, args: &[&str]| {
        let mut c = net.exec(&net.a, bin("fvfsc"));
        c.args(args)
            .env_remove("FVFS_URL")
            .env_remove("VFSD_URL")
            .env_remove("FVFS_FINGERPRINT")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", home.path())
            .env("FVFS_RUNTIME_DIR", runtime)
            .env("FVFS_TOKEN", &token);
        c.output().unwrap()
    };
    let status = local(runtime.path(), &["status", "--json"]);
    check(&status, 0);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let real = v["daemon"]["fingerprint"].as_str().unwrap().to_owned();
    let notice = std::fs::read_to_string(runtime.path().join("7734.json")).unwrap();
    assert!(
        notice.contains(&real) && notice.contains("https://127.0.0.1:7734"),
        "{notice}"
    );
    assert!(
        !stderr(&status).contains("first contact"),
        "trusted through the notice, not on first use: {}",
        stderr(&status)
    );
    daemon.stop();

    let squatter = Squatter::start(&net.a, "127.0.0.1:7734");
    let out = local(runtime.path(), &["ls", "/"]);
    check(&out, 2);
    let got = squatter.received();
    assert_eq!(got.first(), Some(&0x16), "fvfsc began a TLS handshake");
    assert!(!holds(&got, &token), "the squatter read the token");
    assert!(stderr(&out).contains("127.0.0.1:7734"), "{}", stderr(&out));
    // Control: without the daemon's notice, loopback is plain HTTP and the token goes.
    let none = tempfile::tempdir().unwrap();
    local(none.path(), &["ls", "/"]);
    assert!(
        holds(&squatter.received(), &token),
        "control: the token went out"
    );
    // The daemon back on its port: fvfsc trusts it again.
    drop(squatter);
    let _daemon = start();
    let status = local(runtime.path(), &["status", "--json"]);
    check(&status, 0);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["daemon"]["fingerprint"].as_str(), Some(real.as_str()));
}
