//! The NAS tier end to end: chunks replicate after the local write, the bitmask says
//! so only once the NAS holds them, a vanished mount is never written to while writes
//! keep succeeding locally, and the queue survives kill -9 and drains when it returns.

use std::fs;

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::{nas_config, packs, tree, Fvfsd};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn nas_replication_survives_an_unmounted_share_and_kill_9() {
    let work = tempfile::tempdir().unwrap();
    let (nas, config) = nas_config(work.path());
    let store = Fvfsd::new();
    let global = ["--config", config.to_str().unwrap()];
    let put = |d: &Daemon, name: &str, seed: u64| {
        let (status, body) = d.raw(&request(
            "PUT",
            &format!("/v1/files/{name}"),
            &[],
            &tree::bytes(seed, 300_000, seed.is_multiple_of(2)),
        ));
        assert_eq!(status, 201, "{body}");
    };

    let mut d = Daemon::start_with(&store, &global, "127.0.0.1:0", &["--no-mdns"]);
    for i in 0..5 {
        put(&d, &format!("a{i}"), i);
    }
    let (status, body) = d.raw(&request("POST", "/v1/admin/flush", &[], b""));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["tiers"], serde_json::json!(["local", "nas"]));
    let local = store.home.path().join("chunks");
    assert_eq!(
        packs::ids(&nas),
        packs::ids(&local),
        "the NAS holds every chunk"
    );
    let du = json(&d.raw(&request("GET", "/v1/du/", &[], b"")).1);
    assert_eq!(
        du["tiers"]["nas"], du["unique_bytes"],
        "bits set for everything: {du}"
    );

    // The share goes away: its mountpoint stays, empty.
    let away = work.path().join("nas-away");
    fs::rename(&nas, &away).unwrap();
    fs::create_dir(&nas).unwrap();
    for i in 5..10 {
        put(&d, &format!("b{i}"), i);
    }
    let (status, body) = d.raw(&request("POST", "/v1/admin/flush", &[], b""));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("tier_unavailable"), "{body}");
    let wal = json(&d.raw(&request("GET", "/v1/admin/wal", &[], b"")).1);
    assert!(wal["pending"].as_u64().unwrap() > 0, "{wal}");
    assert_eq!(wal["tiers"][0]["available"], false, "{wal}");
    assert!(
        wal["tiers"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("not there"),
        "{wal}"
    );
    assert_eq!(
        fs::read_dir(&nas).unwrap().count(),
        0,
        "nothing written to the bare mountpoint"
    );
    let du = json(&d.raw(&request("GET", "/v1/du/", &[], b"")).1);
    assert!(
        du["tiers"]["nas"].as_u64() < du["unique_bytes"].as_u64(),
        "{du}"
    );

    // Crash with work queued, bring the share back, restart: the queue drains.
    d.kill();
    fs::remove_dir(&nas).unwrap();
    fs::rename(&away, &nas).unwrap();
    let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &["--no-mdns"]);
    let (status, body) = d.raw(&request("POST", "/v1/admin/flush", &[], b""));
    assert_eq!(status, 200, "{body}");
    assert_eq!(packs::ids(&nas), packs::ids(&local));
    let du = json(&d.raw(&request("GET", "/v1/du/", &[], b"")).1);
    assert_eq!(du["tiers"]["nas"], du["unique_bytes"], "{du}");
    let status = json(&d.raw(&request("GET", "/v1/status", &[], b"")).1);
    assert_eq!(status["tiers"][1]["queue_depth"], 0, "{status}");
    assert_eq!(
        status["tiers"][1]["chunks"], status["tiers"][0]["chunks"],
        "{status}"
    );
    assert_eq!(
        status["tiers"][1]["bytes"], status["tiers"][0]["bytes"],
        "{status}"
    );
    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    assert!(
        metrics.contains("fvfs_replication_queue_depth{tier=\"nas\"} 0"),
        "{metrics}"
    );
}

#[test]
fn a_nas_share_unmounted_mid_segment_comes_back_without_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let (nas, config) = nas_config(work.path());
    let share = work.path().join("share");
    fs::create_dir(&share).unwrap();
    let mount = fvfs_tests::mounts::Bind::mount(&share, &nas).expect("a bind mount (needs root)");
    let store = Fvfsd::new();
    let global = ["--config", config.to_str().unwrap()];
    let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &["--no-mdns"]);
    let put = |name: &str, seed: u64, len: usize| {
        let body = tree::bytes(seed, len, false);
        let (status, text) = d.raw(&request("PUT", &format!("/v1/files/{name}"), &[], &body));
        assert_eq!(status, 201, "{text}");
    };
    let flush = || d.raw(&request("POST", "/v1/admin/flush", &[], b""));
    for i in 0..3 {
        put(&format!("a{i}"), i, 300_000);
    }
    assert_eq!(flush().0, 200);
    // The NAS store has a segment open and partly filled; a large write is being
    // replicated into it when the share drops.
    std::thread::scope(|s| {
        s.spawn(|| {
            put("big", 99, 8 << 20);
            let _ = flush();
        });
        s.spawn(|| mount.detach());
    });
    for i in 3..6 {
        put(&format!("b{i}"), i, 300_000);
    }
    let (status, body) = flush();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("tier_unavailable"), "{body}");
    assert_eq!(
        fs::read_dir(&nas).unwrap().count(),
        0,
        "nothing written to the bare mountpoint"
    );

    // The share comes back under the same daemon: the store reopens where its last
    // sync left it and the queue drains into it.
    mount.reattach();
    let (status, body) = flush();
    assert_eq!(status, 200, "{body}");
    let local = store.home.path().join("chunks");
    assert_eq!(packs::ids(&nas), packs::ids(&local));
    let status = json(&d.raw(&request("GET", "/v1/status", &[], b"")).1);
    assert_eq!(status["tiers"][1]["queue_depth"], 0, "{status}");
    assert_eq!(
        status["tiers"][1]["chunks"], status["tiers"][0]["chunks"],
        "{status}"
    );
    drop(d);
    let fsck = store.run([global[0], global[1], "fsck", "--all", "--read-data"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
}

#[test]
fn a_corrupt_local_copy_is_read_from_the_nas_and_repaired() {
    let work = tempfile::tempdir().unwrap();
    let (_nas, config) = nas_config(work.path());
    let store = Fvfsd::new();
    let global = ["--config", config.to_str().unwrap()];
    let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &["--no-mdns"]);
    let content = tree::bytes(42, 100_000, false);
    assert_eq!(
        d.raw(&request("PUT", "/v1/files/photo.raw", &[], &content))
            .0,
        201
    );
    assert_eq!(d.raw(&request("POST", "/v1/admin/flush", &[], b"")).0, 200);

    // Flip a byte in every local record.
    for record in packs::records(&store.home.path().join("chunks")) {
        record.flip_last_byte();
    }
    let cat = d.fvfsc(["cat", "/photo.raw"]).output().unwrap();
    fvfs_tests::check(&cat, 0);
    assert!(cat.stdout == content, "served whole from the NAS");
    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    assert!(metrics.contains("fvfs_repaired_chunks "), "{metrics}");
    assert!(
        !metrics.contains("fvfs_repaired_chunks 0\n"),
        "the bad copies are counted: {metrics}"
    );
    // Once flushed, the local copies are whole again.
    assert_eq!(d.raw(&request("POST", "/v1/admin/flush", &[], b"")).0, 200);
    assert!(store.run(["fsck", "--read-data"]).contains("0 problems"));
}
