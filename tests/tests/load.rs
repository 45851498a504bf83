//! Load: many clients at once, over HTTP and through a FUSE mount, writing and reading
//! for a bounded number of operations while collections run. Every answer must be a
//! success, every write must
//! read back as last written, and neither the daemon's nor the mount's memory may grow
//! past a bound (sampled from /proc while the load runs).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::mount::Mount;
use fvfs_tests::{tree, Fvfsd};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Memory either process may use under this load: the mount's memory cache (64 MiB)
/// and the daemon's buffers are well under it; a leak of the written bytes is not.
const RSS_LIMIT: u64 = 400 << 20;

#[test]
fn many_http_and_fuse_clients_lose_nothing_and_stay_bounded() {
    let ops = env_usize("FVFS_LOAD_OPS", 40);
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // A cache limit this disk can afford (the default, 10 GiB, might not be free).
    let m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &["--cache-size", "512M"],
    );
    let (daemon_pid, mount_pid) = (d.pid(), m.pid().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = (0, 0);
            let start = std::time::Instant::now();
            let mut shown = 0;
            while !stop.load(Ordering::Relaxed) {
                let now = (fvfs_tests::rss(daemon_pid), fvfs_tests::rss(mount_pid));
                peak = (peak.0.max(now.0), peak.1.max(now.1));
                // A long run (a soak) shows its memory curve, once a minute.
                let minutes = start.elapsed().as_secs() / 60;
                if minutes > shown {
                    shown = minutes;
                    eprintln!(
                        "{minutes} min: RSS daemon {} MiB, mount {} MiB",
                        now.0 >> 20,
                        now.1 >> 20
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peak
        })
    };
    // Collections run all along, as a home server's would: every superseded version
    // but the last 10 is dropped, and what stayed unreachable for 30 s is freed (a
    // soak's disk stays bounded by the live data).
    let (stop_gc, gc_stopped) = std::sync::mpsc::channel::<()>();
    let collector = {
        let addr = d.addr.clone();
        let admin = d.admin_header();
        std::thread::spawn(move || {
            let (mut runs, mut freed) = (0u64, 0u64);
            loop {
                let gc = request(
                    "POST",
                    "/v1/admin/gc",
                    &[&admin],
                    br#"{"keep_last":10,"grace_secs":30}"#,
                );
                let (status, body) = fvfs_tests::daemon::raw(&addr, &gc);
                assert_eq!(status, 200, "gc: {body}");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                freed += v["chunks_freed"].as_u64().unwrap_or(0);
                runs += 1;
                let every = std::time::Duration::from_secs(10);
                if gc_stopped.recv_timeout(every) != Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                {
                    return (runs, freed);
                }
            }
        })
    };
    let mut clients = Vec::new();
    // HTTP clients: each writes its own paths, reads back at once, and keeps its model.
    for t in 0..8u64 {
        let addr = d.addr.clone();
        clients.push(std::thread::spawn(move || {
            let mut model = BTreeMap::new();
            for k in 0..ops as u64 {
                let path = format!("/http{t}/f{}", k % 5);
                let content = tree::bytes(
                    t * 1_000_000 + k,
                    ((k * 37_003) % 300_000) as usize,
                    k % 3 == 0,
                );
                let put = request("PUT", &format!("/v1/files{path}"), &[], &content);
                let (status, body) = fvfs_tests::daemon::raw(&addr, &put);
                assert_eq!(status, 201, "PUT {path}: {body}");
                let (status, got) = fvfs_tests::daemon::raw(
                    &addr,
                    &request("GET", &format!("/v1/files{path}"), &[], b""),
                );
                assert_eq!(status, 200, "GET {path}");
                assert_eq!(got, String::from_utf8_lossy(&content), "GET {path}");
                model.insert(path, content);
            }
            model
        }));
    }
    // FUSE clients: write with fsync through the mount, read back through the mount.
    for t in 0..3u64 {
        let dir = m.path(&format!("fuse{t}"));
        clients.push(std::thread::spawn(move || {
            fs::create_dir_all(&dir).unwrap();
            let mut model = BTreeMap::new();
            for k in 0..ops as u64 {
                let name = format!("f{}", k % 5);
                let content = tree::bytes(
                    t * 7_000_000 + k,
                    ((k * 53_017) % 400_000) as usize,
                    k % 2 == 0,
                );
                let mut f = fs::File::create(dir.join(&name)).unwrap();
                f.write_all(&content).unwrap();
                f.sync_all().unwrap();
                drop(f);
                assert_eq!(
                    fs::read(dir.join(&name)).unwrap(),
                    content,
                    "fuse{t}/{name}"
                );
                model.insert(format!("/fuse{t}/{name}"), content);
            }
            model
        }));
    }
    let mut expect = BTreeMap::new();
    for c in clients {
        expect.extend(c.join().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    stop_gc.send(()).unwrap();
    let (runs, freed) = collector.join().unwrap();
    let (daemon_peak, mount_peak) = sampler.join().unwrap();
    eprintln!(
        "{} paths, peak RSS: daemon {} MiB, mount {} MiB; {runs} collections freed {freed} chunks",
        expect.len(),
        daemon_peak >> 20,
        mount_peak >> 20
    );
    // Every last write reads back, through the daemon (what the mount wrote is committed).
    for (path, content) in &expect {
        let out = d.fvfsc(["cat", path]).output().unwrap();
        fvfs_tests::check(&out, 0);
        assert!(out.stdout == *content, "{path} differs");
    }
    assert!(daemon_peak > 0 && mount_peak > 0, "RSS was sampled");
    assert!(daemon_peak < RSS_LIMIT, "daemon peak RSS {daemon_peak}");
    assert!(mount_peak < RSS_LIMIT, "mount peak RSS {mount_peak}");
    let (status, body) = d.raw(&request(
        "POST",
        "/v1/admin/fsck",
        &[&d.admin_header()],
        br#"{"read_data":true}"#,
    ));
    assert_eq!(status, 200);
    assert!(body.contains("\"problems\":[]"), "{body}");
}
