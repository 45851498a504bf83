//! mDNS discovery between two hosts: two network namespaces joined by a veth pair. The
//! daemon runs in one, announces itself, and fvfsc in the other finds it with no URL
//! given; the daemon lists the client it saw.

use std::process::Command;

use fvfs_tests::daemon::Daemon;
use fvfs_tests::{bin, check, Fvfsd};

/// Two namespaces `<name>-a` (10.77.0.1) and `<name>-b` (10.77.0.2), removed on drop.
struct Net {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

impl Net {
    fn new() -> Option<Self> {
        let tag = format!("fvfs{}", std::process::id());
        let net = Net {
            a: format!("{tag}a"),
            b: format!("{tag}b"),
        };
        if !ip(&["netns", "add", &net.a]) {
            return None;
        }
        let (va, vb) = (format!("{tag}x"), format!("{tag}y"));
        let (a, b) = (net.a.as_str(), net.b.as_str());
        let ok = ip(&["netns", "add", b])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &va, "netns", a])
            && ip(&["link", "set", &vb, "netns", b])
            && ip(&["-n", a, "addr", "add", "10.77.0.1/24", "dev", &va])
            && ip(&["-n", b, "addr", "add", "10.77.0.2/24", "dev", &vb])
            && ip(&["-n", a, "link", "set", &va, "up"])
            && ip(&["-n", b, "link", "set", &vb, "up"])
            && ip(&["-n", a, "link", "set", "lo", "up"])
            && ip(&["-n", b, "link", "set", "lo", "up"]);
        assert!(ok, "namespaces were created but could not be wired");
        Some(net)
    }

    fn exec(&self, ns: &str, program: std::path::PathBuf) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

#[test]
fn fvfsc_finds_the_daemon_over_mdns_from_another_host() {
    let net = Net::new().expect("network namespaces (`ip netns add`; needs root)");
    let store = Fvfsd::new();
    let mut serve = net.exec(&net.a, bin("fvfsd"));
    serve
        .args(["serve", "--listen", "10.77.0.1:7734"])
        .env("FVFS_HOME", store.home.path())
        .env_remove("RUST_LOG");
    let _daemon = Daemon::spawn(serve);
    let token = store.run(["token"]).trim().to_owned();

    let client = |args: &[&str]| {
        let mut c = net.exec(&net.b, bin("fvfsc"));
        c.args(args)
            .env_remove("FVFS_URL")
            .env_remove("VFSD_URL")
            .env("FVFS_TOKEN", &token)
            .env("HOME", store.home.path());
        c.output().unwrap()
    };
    let status = client(&["status", "--json"]);
    check(&status, 0);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["daemon"]["listen"], "10.77.0.1:7734");

    // The announcement carries version and node id, never the token; the daemon saw the client.
    let devices = client(&["devices", "--json"]);
    check(&devices, 0);
    let body = String::from_utf8_lossy(&devices.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let daemons = v["daemons"].as_array().unwrap();
    assert!(
        daemons
            .iter()
            .any(|x| x["port"] == 7734 && x["node_id"].is_string()),
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
}
