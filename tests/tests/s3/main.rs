//! The S3 tier end to end, against real Garage servers: replication sets the S3 bit
//! once packs are in the bucket, the queue survives Garage going away mid-flush and a
//! kill -9 of the daemon, and `fvfsd recover --from-s3` rebuilds a wiped store so that
//! every file of every snapshot reads back identical.

mod blocks;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::garage::{Garage, GarageCluster, S3Env};
use fvfs_tests::{tree, Fvfsd};

/// A prefix of the shared bucket for one test: `name-<its work folder's name>`.
fn prefix_for(name: &str, work: &tempfile::TempDir) -> String {
    format!(
        "{name}-{}",
        work.path().file_name().unwrap().to_string_lossy()
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn put(d: &Daemon, name: &str, content: &[u8]) {
    let (status, body) = d.raw(&request("PUT", &format!("/v1/files/{name}"), &[], content));
    assert_eq!(status, 201, "{body}");
}

fn flush(d: &Daemon) -> (u16, String) {
    d.raw(&request("POST", "/v1/admin/flush", &[], b""))
}

fn tier(d: &Daemon, name: &str) -> serde_json::Value {
    let status = json(&d.raw(&request("GET", "/v1/status", &[], b"")).1);
    status["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tier {name}: {status}"))
        .clone()
}

/// After a flush, S3 holds every chunk the store records, and nothing waits.
fn assert_all_in_s3(d: &Daemon) {
    let (local, s3) = (tier(d, "local"), tier(d, "s3"));
    assert_eq!(s3["queue_depth"], 0, "{s3}");
    assert_eq!(s3["chunks"], local["chunks"], "{local} {s3}");
    assert_eq!(s3["bytes"], local["bytes"], "{local} {s3}");
    assert_eq!(s3["available"], true, "{s3}");
}

/// Recovers `config`'s S3 tier into a fresh store and checks that each version named
/// in `expect` holds exactly those files.
fn recover_and_compare(
    config: &Path,
    s3: &S3Env,
    expect: &BTreeMap<&str, BTreeMap<String, Vec<u8>>>,
) {
    let fresh = Fvfsd::new();
    let mut cmd = fresh.cmd(["--config", config.to_str().unwrap(), "recover", "--from-s3"]);
    s3.apply(&mut cmd);
    let out = cmd.output().unwrap();
    fvfs_tests::check(&out, 0);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("recovered"), "{said}");
    let work = tempfile::tempdir().unwrap();
    for (version, files) in expect {
        let dir = work.path().join(version);
        let mut cmd = fresh.cmd(["--config", config.to_str().unwrap(), "export", "--version"]);
        cmd.args([*version, "/", dir.to_str().unwrap()]);
        s3.apply(&mut cmd);
        fvfs_tests::check(&cmd.output().unwrap(), 0);
        let mut found = BTreeMap::new();
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            found.insert(
                entry.file_name().to_string_lossy().into_owned(),
                fs::read(entry.path()).unwrap(),
            );
        }
        assert_eq!(found.len(), files.len(), "files of {version}");
        for (name, content) in files {
            assert!(
                found.get(name) == Some(content),
                "{version}:/{name} differs"
            );
        }
    }
    let mut cmd = fresh.cmd([
        "--config",
        config.to_str().unwrap(),
        "fsck",
        "--all",
        "--read-data",
    ]);
    s3.apply(&mut cmd);
    let out = cmd.output().unwrap();
    fvfs_tests::check(&out, 0);
}

#[test]
fn replication_to_s3_then_recover_from_s3_alone() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix_for("e2e", &work);
    let config = s3.config(
        work.path(),
        &prefix,
        "[upload]\nflush_size_mb = 1\nflush_interval_secs = 1\n",
    );
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..6u64 {
        let content = tree::bytes(i, 200_000 + i as usize * 1000, i.is_multiple_of(2));
        put(&d, &format!("f{i}"), &content);
        files.insert(format!("f{i}"), content);
    }
    let snap = d.fvfsc(["snapshot", "create", "before"]).output().unwrap();
    fvfs_tests::check(&snap, 0);
    let before = files.clone();
    let changed = tree::bytes(99, 150_000, false);
    put(&d, "f0", &changed);
    files.insert("f0".into(), changed);
    let (status, body) = flush(&d);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["tiers"], serde_json::json!(["local", "s3"]));
    assert_all_in_s3(&d);
    let wal = json(&d.raw(&request("GET", "/v1/admin/wal", &[], b"")).1);
    assert_eq!(wal["pending"], 0, "{wal}");
    drop(d);

    // The local store is gone: S3 alone gives back every version.
    drop(store);
    let expect = BTreeMap::from([("before", before), ("HEAD", files)]);
    recover_and_compare(&config, &s3, &expect);
}

#[test]
fn garage_stopped_mid_flush_and_a_killed_daemon_lose_nothing() {
    let mut garage = Garage::start().expect("start Garage");
    let s3 = S3Env::from(garage.s3());
    let work = tempfile::tempdir().unwrap();
    let config = s3.config(
        work.path(),
        "faults",
        "[upload]\nflush_size_mb = 1\nflush_interval_secs = 3600\n",
    );
    let store = Fvfsd::new();
    let mut d = s3.serve(&store, &config);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut write = |d: &Daemon, i: u64| {
        let content = tree::bytes(i, 300_000, i.is_multiple_of(3));
        put(d, &format!("f{i}"), &content);
        files.insert(format!("f{i}"), content);
    };
    for i in 0..4 {
        write(&d, i);
    }
    assert_eq!(flush(&d).0, 200);

    // Garage stops while a flush is under way: the flush may finish first or fail.
    for i in 4..8 {
        write(&d, i);
    }
    let flusher = {
        let addr = d.addr.clone();
        std::thread::spawn(move || {
            fvfs_tests::daemon::raw(&addr, &request("POST", "/v1/admin/flush", &[], b"")).0
        })
    };
    garage.stop().expect("stop Garage");
    let first = flusher.join().unwrap();
    assert!(first == 200 || first == 503, "flush answered {first}");

    // Writes keep succeeding on the local tier; S3 work waits, with the error shown.
    for i in 8..12 {
        write(&d, i);
    }
    let (status, body) = flush(&d);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("s3 tier unavailable"), "{body}");
    let s3_tier = tier(&d, "s3");
    assert!(s3_tier["queue_depth"].as_u64().unwrap() > 0, "{s3_tier}");
    assert_eq!(s3_tier["available"], false, "{s3_tier}");
    assert!(s3_tier["last_error"].as_str().is_some(), "{s3_tier}");
    let wal = json(&d.raw(&request("GET", "/v1/admin/wal", &[], b"")).1);
    assert!(
        wal["tiers"][0]["oldest_age_secs"].as_i64().is_some(),
        "{wal}"
    );

    // The daemon dies with work queued; Garage comes back; a new daemon drains it all.
    d.kill();
    garage.restart().expect("restart Garage");
    let d = s3.serve(&store, &config);
    let (status, body) = flush(&d);
    assert_eq!(status, 200, "{body}");
    assert_all_in_s3(&d);
    for (name, content) in &files {
        let got = d.fvfsc(["cat", &format!("/{name}")]).output().unwrap();
        assert!(got.stdout == *content, "{name} reads back");
    }
    drop(d);
    let expect = BTreeMap::from([("HEAD", files)]);
    recover_and_compare(&config, &s3, &expect);
}

/// One eviction round, asked for now; its report.
fn evict(d: &Daemon) -> serde_json::Value {
    let (status, body) = d.raw(&request(
        "POST",
        "/v1/admin/evict",
        &[&d.admin_header()],
        b"",
    ));
    assert_eq!(status, 200, "{body}");
    json(&body)
}

/// Uploads to S3 only when flushed, eviction only when asked, and a local tier
/// evicted down to 256 KiB once over 512 KiB.
const SMALL_LOCAL: &str = "[upload]\nflush_size_mb = 1024\nflush_interval_secs = 3600\n\
     [tiers.local]\nhigh_watermark_gb = 0.00048828125\nlow_watermark_gb = 0.000244140625\n\
     [eviction]\ninterval_secs = 3600\n";

#[test]
fn a_file_whose_only_copy_is_in_a_stopped_bucket_is_unavailable_not_missing() {
    let mut garage = Garage::start().expect("start Garage");
    let s3 = S3Env::from(garage.s3());
    let work = tempfile::tempdir().unwrap();
    let config = s3.config(work.path(), "away", SMALL_LOCAL);
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    // Files of one chunk each: each is wholly local or wholly in the bucket.
    let files: BTreeMap<String, Vec<u8>> = (0..40u64)
        .map(|i| (format!("f{i}"), tree::bytes(300 + i, 16_000, false)))
        .collect();
    for (name, content) in &files {
        put(&d, name, content);
    }
    assert_eq!(flush(&d).0, 200);
    assert!(evict(&d)["evicted_chunks"].as_u64().unwrap() > 0);

    garage.stop().expect("stop Garage");
    let get = |path: &str| {
        let request = fvfs_tests::daemon::bare_request("GET", path, &["Host: localhost"], b"");
        fvfs_tests::daemon::split_answer(&fvfs_tests::daemon::whole_answer(&d.addr, &request))
    };
    let mut away = 0;
    for (name, content) in &files {
        let content = String::from_utf8_lossy(content);
        let (status, _, body) = get(&format!("/v1/files/{name}"));
        match status {
            200 => assert!(body == content, "{name}: a 200 brings the whole file"),
            503 => {
                assert!(body.contains("unavailable"), "{name}: {body}");
                away += 1;
            }
            _ => panic!("{name}: {status} {body}"),
        }
        // WebDAV says the same, and when to ask again.
        let (dav_status, head, dav_body) = get(&format!("/dav/{name}"));
        assert_eq!(dav_status, status, "{name} over WebDAV: {head}");
        if status == 200 {
            assert!(dav_body == content, "{name} over WebDAV");
        } else {
            assert!(head.contains("retry-after: 10"), "{head}");
        }
    }
    assert!(away > 0, "some files were only in the bucket");

    // The bucket is back: everything reads whole, through both.
    garage.restart().expect("restart Garage");
    for (name, content) in &files {
        let content = String::from_utf8_lossy(content);
        for path in [format!("/v1/files/{name}"), format!("/dav/{name}")] {
            let (status, _, body) = get(&path);
            assert_eq!(status, 200, "{path}: {body}");
            assert!(body == content, "{path} reads back whole");
        }
    }
}

/// Chunks the local pack store holds, read from its segments.
fn local_chunks(root: &Path) -> usize {
    fvfs_tests::packs::ids(root).len()
}

#[test]
fn eviction_under_a_small_watermark_drops_only_s3_backed_copies() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix_for("evict", &work);
    let config = s3.config(work.path(), &prefix, SMALL_LOCAL);
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    let mut files = BTreeMap::new();
    for i in 0..8u64 {
        let content = tree::bytes(100 + i, 300_000, false);
        put(&d, &format!("f{i}"), &content);
        files.insert(format!("f{i}"), content);
    }
    let chunks = store.home.path().join("chunks");
    let held = local_chunks(&chunks);

    // Over the watermark, but nothing is in S3 yet: nothing may go.
    let none = evict(&d);
    assert_eq!(none["evicted_chunks"], 0, "{none}");
    assert_eq!(local_chunks(&chunks), held);

    assert_eq!(flush(&d).0, 200);
    let some = evict(&d);
    assert!(some["evicted_chunks"].as_u64().unwrap() > 0, "{some}");
    let local = tier(&d, "local");
    assert!(local["bytes"].as_u64().unwrap() <= 256 * 1024, "{local}");
    assert_eq!(local["high_watermark_bytes"], 512 * 1024, "{local}");
    assert_eq!(
        local_chunks(&chunks) as u64,
        local["chunks"].as_u64().unwrap(),
        "the records left are the chunks the local bit claims"
    );
    assert!(local_chunks(&chunks) < held);

    // Every byte still reads back (from S3, verified and promoted).
    for (name, content) in &files {
        let got = d.fvfsc(["cat", &format!("/{name}")]).output().unwrap();
        fvfs_tests::check(&got, 0);
        assert!(got.stdout == *content, "{name} reads back whole");
    }
    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    let evicted = some["evicted_chunks"].as_u64().unwrap();
    assert!(
        metrics.contains(&format!("fvfs_promoted_chunks {evicted}\n")),
        "each evicted chunk was read from S3 and promoted once: {metrics}"
    );
    // The next run records the promotions and evicts down again.
    let again = evict(&d);
    assert!(again["evicted_chunks"].as_u64().unwrap() > 0, "{again}");
    assert!(tier(&d, "local")["bytes"].as_u64().unwrap() <= 256 * 1024);
    let fsck = store.run(["fsck", "--read-data"]);
    assert!(fsck.contains("0 problems"), "{fsck}");
}

#[test]
fn a_deleted_s3_pack_is_found_and_uploaded_again() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix_for("pack", &work);
    let config = s3.config(work.path(), &prefix, "");
    let store = Fvfsd::new();
    let content = tree::bytes(77, 300_000, false);
    {
        let d = s3.serve(&store, &config);
        put(&d, "photo.raw", &content);
        assert_eq!(flush(&d).0, 200);
    }
    // The file's content, and apart from it the folder's node.
    let packs = s3.packs(&prefix);
    assert_eq!(packs.len(), 2, "{packs:?}");
    let content_pack = packs.iter().max_by_key(|(_, size)| *size).unwrap();
    s3.request("DELETE", &format!("/{}", content_pack.0));

    let fsck = |extra: &[&str], code: i32| {
        let mut cmd = store.cmd(["--config", config.to_str().unwrap(), "fsck", "--read-data"]);
        cmd.args(extra);
        s3.apply(&mut cmd);
        let out = cmd.output().unwrap();
        fvfs_tests::check(&out, code);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Without reading data, one listing of the bucket shows the pack is gone.
    let mut cmd = store.cmd(["--config", config.to_str().unwrap(), "fsck"]);
    s3.apply(&mut cmd);
    let out = cmd.output().unwrap();
    fvfs_tests::check(&out, 1);
    let plain = String::from_utf8_lossy(&out.stdout);
    assert!(
        plain.contains("missing from S3") && plain.contains("/photo.raw"),
        "{plain}"
    );
    let found = fsck(&[], 1);
    assert!(
        found.contains("problem: s3: ") && found.contains("/photo.raw"),
        "{found}"
    );
    assert!(found.contains("missing from S3"), "{found}");
    let repaired = fsck(&["--repair"], 0);
    assert!(repaired.contains("0 problems,"), "{repaired}");
    assert!(fsck(&[], 0).contains(" 0 problems, 0 repaired"));
    assert_eq!(s3.packs(&prefix).len(), 2, "a new pack beside the nodes'");
}

#[test]
fn a_three_node_garage_keeps_taking_writes_with_one_node_down() {
    let mut cluster = GarageCluster::start(3).expect("start a Garage cluster");
    let s3 = S3Env::from(cluster.s3());
    let work = tempfile::tempdir().unwrap();
    let config = s3.config(
        work.path(),
        "cluster",
        "[upload]\nflush_size_mb = 1\nflush_interval_secs = 3600\n",
    );
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut write = |i: u64| {
        let content = tree::bytes(500 + i, 250_000, i.is_multiple_of(2));
        put(&d, &format!("f{i}"), &content);
        files.insert(format!("f{i}"), content);
    };
    for i in 0..5 {
        write(i);
    }
    assert_eq!(flush(&d).0, 200);

    // One node of three goes down: writes and uploads go on (quorum 2 of 3).
    cluster.stop_node(3).expect("stop node 3");
    for i in 5..10 {
        write(i);
    }
    let (status, body) = flush(&d);
    assert_eq!(status, 200, "{body}");
    assert_all_in_s3(&d);
    drop(d);

    // Back to three nodes; the bucket alone rebuilds the store.
    cluster.restart_node(3).expect("restart node 3");
    let expect = BTreeMap::from([("HEAD", files)]);
    recover_and_compare(&config, &s3, &expect);
}

#[test]
fn gc_gives_back_s3_space_and_recovery_forgets_dropped_versions() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix_for("gc", &work);
    let config = s3.config(work.path(), &prefix, "");
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    // Pack 1: a big file that will be overwritten, and a small one that stays.
    let keep = tree::bytes(5, 200_000, false);
    put(&d, "big", &tree::bytes(6, 1_500_000, false));
    put(&d, "keep", &keep);
    assert_eq!(flush(&d).0, 200);
    // Pack 2: the big file replaced.
    let small = tree::bytes(7, 50_000, true);
    put(&d, "big", &small);
    assert_eq!(flush(&d).0, 200);
    let before = s3.packs(&prefix).iter().map(|(_, size)| size).sum::<u64>();

    let (status, body) = d.raw(&request(
        "POST",
        "/v1/admin/gc",
        &[&d.admin_header()],
        br#"{"keep_last":1,"grace_secs":0}"#,
    ));
    assert_eq!(status, 200, "{body}");
    let report = json(&body);
    let c = &report["compaction"];
    assert_eq!(
        c["packs_rewritten"], 1,
        "the first pack is mostly garbage: {report}"
    );
    let freed = c["bytes_freed"].as_u64().unwrap();
    assert!(freed > 1_400_000, "{report}");
    let after = s3.packs(&prefix).iter().map(|(_, size)| size).sum::<u64>();
    // What is left: the untouched pack, plus the moved frames in a new pack (with its
    // index and trailer).
    let moved = c["bytes_moved"].as_u64().unwrap();
    let overhead = after - (before - freed) - moved;
    assert!(overhead < 4096, "{before} - {freed} + {moved} vs {after}");
    assert!(after < before - 1_300_000, "{before} -> {after}");
    assert_all_in_s3(&d);
    drop(d);

    // S3 alone rebuilds HEAD, and not the dropped versions (their chunks are gone:
    // recovery would report them incomplete).
    drop(store);
    let head = BTreeMap::from([("big".to_owned(), small), ("keep".to_owned(), keep)]);
    recover_and_compare(&config, &s3, &BTreeMap::from([("HEAD", head)]));
}

/// A first upload cut short (the daemon killed mid-flush) resumes where it stopped:
/// packs already stored are not sent again, and S3 alone still gives everything back.
#[test]
fn an_interrupted_upload_resumes_without_sending_stored_packs_again() {
    use std::io::BufRead;
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix_for("resume", &work);
    // 5 MB/s: a 32 MiB pack takes seconds, time to stop the daemon in the middle.
    let config = s3.config(
        work.path(),
        &prefix,
        "[upload]\nflush_size_mb = 4096\nflush_interval_secs = 3600\nmax_mbps = 40\n",
    );
    let store = Fvfsd::new();
    let mut cmd = s3.fvfsd(
        &store,
        &config,
        ["serve", "--listen", "127.0.0.1:0", "--no-mdns"],
    );
    cmd.env("RUST_LOG", "fvfs_tiering=info");
    let (mut d, log) = Daemon::spawn_logged(cmd, std::process::Stdio::piped());
    let mut files = BTreeMap::new();
    for i in 0..5u64 {
        let content = tree::bytes(100 + i, 16 << 20, false);
        put(&d, &format!("big{i}"), &content);
        files.insert(format!("big{i}"), content);
    }
    let total: u64 = files.values().map(|c| c.len() as u64).sum();
    let flusher = {
        let addr = d.addr.clone();
        std::thread::spawn(move || {
            fvfs_tests::daemon::try_raw(&addr, &request("POST", "/v1/admin/flush", &[], b""))
        })
    };
    // Killed as soon as the first pack is stored and its chunks' locations recorded.
    let line = std::io::BufReader::new(log.unwrap())
        .lines()
        .map(|l| l.unwrap())
        .find(|l| l.contains("pack stored"))
        .expect("a pack is stored");
    d.kill();
    let _ = flusher.join().unwrap();
    let stored: u64 = line
        .split("bytes=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no size in {line:?}"));
    assert!(stored >= 32 << 20, "{line}");

    // A new daemon sends only the rest.
    let d = s3.serve(&store, &config);
    let (status, body) = flush(&d);
    assert_eq!(status, 200, "{body}");
    assert_all_in_s3(&d);
    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    let sent: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fvfs_s3_bytes{method=\"PUT\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PUT bytes in {metrics}"));
    assert!(
        (sent as u64) < total - stored + (1 << 20),
        "sent {sent} after the restart: {total} in all, {stored} stored before"
    );
    drop(d);
    let expect = BTreeMap::from([("HEAD", files)]);
    recover_and_compare(&config, &s3, &expect);
}
