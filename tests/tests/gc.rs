//! Garbage collection on real stores: what it frees is exactly what the kept versions
//! do not reach, writes that race with it (over HTTP and through a mount) always read
//! back whole, and a collection
//! killed with SIGKILL leaves a store that fsck finds clean and that a second
//! collection finishes.

use std::collections::BTreeMap;
use std::time::Duration;

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::{check, nas_config, packs, tree, Fvfsd};
use serde_json::Value;

/// An admin request (gc, fsck): with the admin token.
/// POSTs to `path`; a query string (`/v1/admin/gc?keep_last=1`) is sent as the JSON
/// body the administration routes take.
fn post_json(d: &Daemon, path: &str) -> Value {
    let (route, args) = match path.split_once('?') {
        Some((route, q)) => {
            let args: serde_json::Map<String, Value> = q
                .split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_owned(), serde_json::from_str(v).unwrap())
                })
                .collect();
            (route, Value::Object(args).to_string())
        }
        None => (path, String::new()),
    };
    let (status, body) = d.raw(&request(
        "POST",
        route,
        &[&d.admin_header()],
        args.as_bytes(),
    ));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn status(d: &Daemon) -> Value {
    let (code, body) = d.raw(&request("GET", "/v1/status", &[], b""));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["store"].clone()
}

fn put(d: &Daemon, path: &str, content: &[u8]) -> u16 {
    d.raw(&request("PUT", &format!("/v1/files{path}"), &[], content))
        .0
}

fn delete(d: &Daemon, path: &str) -> u16 {
    d.raw(&request("DELETE", &format!("/v1/files{path}"), &[], b""))
        .0
}

fn cat(d: &Daemon, path: &str) -> Vec<u8> {
    let out = d.fvfsc(["cat", path]).output().unwrap();
    check(&out, 0);
    out.stdout
}

fn snapshot(d: &Daemon, name: &str) {
    let body = format!("{{\"name\":\"{name}\"}}");
    let (code, text) = d.raw(&request(
        "POST",
        "/v1/snapshots",
        &["content-type: application/json"],
        body.as_bytes(),
    ));
    assert_eq!(code, 201, "{text}");
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn gc_frees_exactly_what_the_kept_versions_do_not_reach() {
    let work = tempfile::tempdir().unwrap();
    let (nas, config) = nas_config(work.path());
    let store = Fvfsd::new();
    let global = ["--config", config.to_str().unwrap()];
    let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &["--no-mdns"]);
    let mut expect: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..10u64 {
        let content = tree::bytes(i, 150_000 + i as usize * 1000, false);
        assert_eq!(put(&d, &format!("/f{i}"), &content), 201);
        expect.insert(format!("/f{i}"), content);
    }
    snapshot(&d, "keep");
    let kept_by_snapshot = expect.clone();
    // Rewrite half, delete some, over several versions.
    for i in 0..5u64 {
        let content = tree::bytes(100 + i, 120_000, true);
        assert_eq!(put(&d, &format!("/f{i}"), &content), 201);
        expect.insert(format!("/f{i}"), content);
    }
    for i in 5..8u64 {
        assert_eq!(delete(&d, &format!("/f{i}")), 200);
        expect.remove(&format!("/f{i}"));
    }
    // Content that only a dropped version held: written, then overwritten.
    assert_eq!(put(&d, "/tmp", &tree::bytes(999, 400_000, false)), 201);
    assert_eq!(put(&d, "/tmp", b"small now"), 201);
    expect.insert("/tmp".into(), b"small now".to_vec());
    post_json(&d, "/v1/admin/flush");

    // What HEAD and the snapshot reach (fsck's default set is exactly those).
    let reach = post_json(&d, "/v1/admin/fsck");
    let reachable = u(&reach, "nodes") + u(&reach, "data_chunks");
    let before = status(&d);
    let versions_before = u(&before, "versions");
    assert!(versions_before > 10);

    let dry = post_json(&d, "/v1/admin/gc?dry_run=true&keep_last=1&grace_secs=0");
    let report = post_json(&d, "/v1/admin/gc?keep_last=1&grace_secs=0");
    let after = status(&d);
    let freed = u(&report, "chunks_freed");
    assert_eq!(u(&report, "reachable"), reachable, "{report}");
    assert_eq!(freed, u(&before, "chunks") - reachable, "{report}");
    assert_eq!(u(&after, "chunks"), reachable);
    assert_eq!(
        u(&dry, "chunks_freed"),
        freed,
        "a dry run counts the same: {dry}"
    );
    assert_eq!(dry["tiers"], report["tiers"], "{dry}\n{report}");
    assert_eq!(u(&after, "versions"), 2, "HEAD and the snapshot");
    assert_eq!(
        report["versions_dropped"].as_array().unwrap().len() as u64,
        versions_before - 2
    );
    // Bytes: the local tier's report is what the totals lost, and the records are gone.
    let local = &report["tiers"][0];
    assert_eq!(local["tier"], "local");
    assert_eq!(
        u(local, "bytes"),
        u(&before, "stored_bytes") - u(&after, "stored_bytes")
    );
    assert_eq!(
        packs::ids(&store.home.path().join("chunks")).len() as u64,
        reachable
    );
    let nas_tier = &report["tiers"][1];
    assert_eq!(
        (nas_tier["tier"].as_str(), u(nas_tier, "chunks")),
        (Some("nas"), freed)
    );
    assert_eq!(packs::ids(&nas).len() as u64, reachable);

    for (path, content) in &expect {
        assert_eq!(&cat(&d, path), content, "{path}");
    }
    // A file only the snapshot still has reads back from it.
    let out_dir = work.path().join("export");
    let out_arg = out_dir.to_str().unwrap();
    store.run(["export", "--version", "keep", "/", out_arg]);
    for (path, content) in &kept_by_snapshot {
        assert_eq!(
            &std::fs::read(out_dir.join(&path[1..])).unwrap(),
            content,
            "{path}"
        );
    }
    let fsck = post_json(&d, "/v1/admin/fsck?all=true&read_data=true");
    assert_eq!(fsck["problems"], Value::Array(vec![]), "{fsck}");
    // Nothing is left to free.
    let again = post_json(&d, "/v1/admin/gc?keep_last=1&grace_secs=0");
    assert_eq!(u(&again, "chunks_freed"), 0, "{again}");
}

// Needs FUSE: runs with feature `integration`, which scripts/test.sh turns on.
#[cfg(feature = "integration")]
#[test]
fn writes_racing_with_gc_always_read_back_whole() {
    let writes: usize = std::env::var("FVFS_GC_RACE_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // A small pool of contents: writers keep deleting them (so collections find them
    // unreachable) and writing them again (so writes deduplicate against garbage).
    let pool: Vec<Vec<u8>> = (0..6)
        .map(|k| tree::bytes(k, 200_000, k % 2 == 0))
        .collect();
    let addr = d.addr.clone();
    let admin = d.admin_header();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut runs, mut freed) = (0u64, 0u64);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (code, body) = fvfs_tests::daemon::raw(
                    &addr,
                    &request(
                        "POST",
                        "/v1/admin/gc",
                        &[&admin],
                        br#"{"keep_last":1,"grace_secs":0}"#,
                    ),
                );
                assert_eq!(code, 200, "{body}");
                let v: Value = serde_json::from_str(&body).unwrap();
                freed += u(&v, "chunks_freed");
                runs += 1;
            }
            (runs, freed)
        })
    };
    // And a mount writing the same contents with fsync: its writes are sent again
    // when a collection takes what they named, so none may fail.
    let work = tempfile::tempdir().unwrap();
    let m = fvfs_tests::mount::Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &[],
    );
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut refused = 0;
    for k in 1..=writes {
        let name = format!("m{}", k % 4);
        let content = &pool[(k * 5 + k / 2) % pool.len()];
        let mut f = std::fs::File::create(m.path(&name)).unwrap();
        std::io::Write::write_all(&mut f, content).unwrap();
        f.sync_all()
            .expect("fsync through the mount while collections run");
        drop(f);
        model.insert(format!("/{name}"), content.clone());
        if k % 4 == 1 {
            let victim = format!("m{}", (k / 4) % 4);
            if std::fs::remove_file(m.path(&victim)).is_ok() {
                model.remove(&format!("/{victim}"));
            }
        }

        let path = format!("/p{}", k % 4);
        let content = &pool[(k * 7 + k / 3) % pool.len()];
        match put(&d, &path, content) {
            201 => {
                model.insert(path.clone(), content.clone());
            }
            // The content was collected between the dedup check and the commit: the
            // write is refused (not acknowledged), never committed half.
            409 => refused += 1,
            s => panic!("PUT {path}: {s}"),
        }
        if k.is_multiple_of(3) {
            let victim = format!("/p{}", (k / 3) % 4);
            if delete(&d, &victim) == 200 {
                model.remove(&victim);
            }
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (runs, freed) = collector.join().unwrap();
    eprintln!("{writes} writes, {refused} refused, {freed} chunks freed over {runs} collections");
    assert!(runs > 1, "collections must have run while the writes did");
    assert!(
        freed > 0,
        "the collections must have found garbage to race with"
    );
    for (path, content) in &model {
        assert_eq!(&cat(&d, path), content, "{path}");
    }
    let fsck = post_json(&d, "/v1/admin/fsck?all=true&read_data=true");
    assert_eq!(fsck["problems"], Value::Array(vec![]), "{fsck}");
}

#[test]
fn gc_killed_midway_leaves_a_clean_store_and_the_next_run_finishes() {
    let work = tempfile::tempdir().unwrap();
    let (nas, config) = nas_config(work.path());
    let cfg = config.to_str().unwrap();
    let src = work.path().join("src");
    let gc_args = [
        "--config",
        cfg,
        "gc",
        "--keep-last",
        "1",
        "--grace-secs",
        "0",
    ];
    let mut killed_midway = 0;
    let iterations = 3;
    for round in 0..iterations {
        let store = Fvfsd::new();
        let migrate = |dir: &std::path::Path, dest: &str| {
            store.run([
                "--config",
                cfg,
                "migrate",
                "--local-src",
                dir.to_str().unwrap(),
                "--dest",
                dest,
            ]);
        };
        // v1: one file that stays; v2: 1,500 small files; v3: rollback to v1, so that
        // keeping the last version leaves the 1,500 files unreachable.
        let keep = work.path().join(format!("keep{round}"));
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("survivor"), tree::bytes(round, 90_000, true)).unwrap();
        migrate(&keep, "/new");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..1500u64 {
            let f = src.join(format!("f{i}"));
            std::fs::write(f, tree::bytes(round * 10_000 + i, 3000, false)).unwrap();
        }
        migrate(&src, "/");
        let d = Daemon::start_with(&store, &["--config", cfg], "127.0.0.1:0", &["--no-mdns"]);
        post_json(&d, "/v1/admin/flush");
        drop(d);
        store.run(["--config", cfg, "rollback", "1"]);

        let mut gc = store
            .cmd(gc_args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + round * 60));
        let _ = gc.kill();
        let status = gc.wait().unwrap();
        if status.code().is_none() {
            killed_midway += 1;
        }
        let out = store
            .cmd(["--config", cfg, "fsck", "--all", "--read-data"])
            .output()
            .unwrap();
        check(&out, 0);
        let out = store.cmd(gc_args).output().unwrap();
        check(&out, 0);
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("round {round} ({status}):\n{text}");
        // Nothing unreachable is left anywhere: records, local files, NAS files.
        let fsck = store.run(["--config", cfg, "fsck", "--all", "--read-data"]);
        let st: Value =
            serde_json::from_str(&store.run(["--config", cfg, "status", "--json"])).unwrap();
        let reachable: u64 = fsck
            .split("versions: ")
            .nth(1)
            .map(|rest| {
                let nodes: u64 = rest.split(" tree nodes").next().unwrap().parse().unwrap();
                let data: u64 = rest
                    .split(", ")
                    .nth(1)
                    .and_then(|s| s.split(" data chunks").next())
                    .unwrap()
                    .parse()
                    .unwrap();
                nodes + data
            })
            .unwrap();
        assert_eq!(u(&st, "chunks"), reachable, "{fsck}");
        assert_eq!(
            packs::ids(&store.home.path().join("chunks")).len() as u64,
            reachable
        );
        assert!(packs::ids(&nas).len() as u64 <= reachable);
        let out = store
            .cmd([
                "--config",
                cfg,
                "export",
                "/new/survivor",
                work.path().join("out").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        check(&out, 0);
        std::fs::remove_dir_all(work.path().join("out")).ok();
        std::fs::remove_dir_all(&src).unwrap();
        // The next round starts with an empty share.
        std::fs::remove_dir_all(&nas).unwrap();
        std::fs::create_dir(&nas).unwrap();
    }
    assert!(
        killed_midway > 0,
        "no collection was killed before it finished"
    );
}

#[test]
fn a_directory_of_ten_thousand_files_is_split_collected_safely_and_edited_in_place() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let big = src.join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..10_000 {
        std::fs::write(big.join(format!("f{i:05}")), format!("{i}")).unwrap();
    }
    let d = Fvfsd::new();
    let s = src.to_str().unwrap();
    let node_chunks = || {
        let v: Value = serde_json::from_str(&d.run(["status", "--json"])).unwrap();
        v["node_chunks"].as_u64().unwrap()
    };
    d.run(["migrate", "--local-src", s]);
    let first = node_chunks();
    // The root, the index of /big and its parts (about 512 entries each).
    assert!(
        (8..60).contains(&first),
        "{first} tree nodes for one split directory"
    );

    // One more file: one part, the index and the root are new; the rest is shared.
    std::fs::write(big.join("f05000x"), b"new").unwrap();
    d.run(["migrate", "--local-src", s]);
    let added = node_chunks() - first;
    assert!(
        (2..=4).contains(&added),
        "{added} new tree nodes for one new file"
    );
    assert_eq!(d.run(["diff", "1", "2"]), "A /big/f05000x\n");

    // Only the newest version kept: the parts it shares with the dropped one must
    // survive the collection, and everything reads back whole.
    let gc = d.run(["gc", "--keep-last", "1", "--grace-secs", "0"]);
    assert!(gc.contains("1 dropped"), "{gc}");
    let fsck = d.run(["fsck", "--read-data"]);
    assert!(fsck.contains("0 problems"), "{fsck}");
    let out = work.path().join("out");
    d.run(["export", "/", out.to_str().unwrap()]);
    tree::assert_same(&src, &out);
}

#[test]
fn uploads_never_committed_are_kept_through_the_grace_period_then_collected() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    assert_eq!(put(&d, "/kept", &tree::bytes(1, 50_000, false)), 201);
    // A client uploads a chunk and never commits a file that uses it (it crashed, or a
    // hostile peer fills the disk with chunks no tree names).
    let orphan = tree::bytes(2, 100_000, false);
    let id = blake3::hash(&orphan).to_hex().to_string();
    let (code, body) = d.raw(&request(
        "PUT",
        &format!("/v1/chunks/{id}"),
        &["content-type: application/octet-stream"],
        &orphan,
    ));
    assert!(code == 200 || code == 201, "{code} {body}");
    post_json(&d, "/v1/admin/flush");
    let held = |d: &Daemon| {
        d.raw(&request("GET", &format!("/v1/chunks/{id}"), &[], b""))
            .0
    };
    assert_eq!(held(&d), 200);
    let chunks = u(&status(&d), "chunks");

    // Within the grace period (default: a day) an upload may still be committed: kept.
    let report = post_json(&d, "/v1/admin/gc");
    assert_eq!(u(&report, "chunks_freed"), 0, "{report}");
    assert_eq!(held(&d), 200);
    // Arguments in a query string are refused, not ignored: this was meant as a dry run.
    let (code, body) = d.raw(&request(
        "POST",
        "/v1/admin/gc?dry_run=true&grace_secs=0",
        &[&d.admin_header()],
        b"",
    ));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("JSON body"), "{body}");
    assert_eq!(held(&d), 200);
    // Past it, but still promised to the client that uploaded it, for the commit it
    // may still send (the in-flight window, default an hour): kept.
    let report = post_json(&d, "/v1/admin/gc?grace_secs=0");
    assert_eq!(u(&report, "chunks_freed"), 0, "{report}");
    assert_eq!(held(&d), 200);
    // Past both, collected on every tier; what the tree names stays.
    let report = post_json(&d, "/v1/admin/gc?grace_secs=0&in_flight_secs=0");
    assert_eq!(u(&report, "chunks_freed"), 1, "{report}");
    assert_eq!(held(&d), 404);
    assert_eq!(u(&status(&d), "chunks"), chunks - 1);
    assert_eq!(cat(&d, "/kept"), tree::bytes(1, 50_000, false));
}

/// Files of source-like text (what a denser level shrinks) under `root`.
fn code_tree(root: &std::path::Path, files: u64, seed: u64) {
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}.rs")),
            tree::code(seed * 1000 + i, 200_000),
        )
        .unwrap();
    }
}

/// Per tier, the bytes its chunks took when first stored, from the status page.
fn tier_bytes(d: &Daemon) -> Vec<u64> {
    let (code, body) = d.raw(&request("GET", "/v1/status", &[], b""));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let tiers = v["tiers"].as_array().unwrap();
    tiers.iter().map(|t| u(t, "bytes")).collect()
}

/// An idle daemon rewrites its segments denser by itself (`[gc] recompress_idle_secs`):
/// the local and NAS tiers shrink, a write that comes meanwhile is kept, everything
/// reads back and fsck is clean; `gc --recompress` then leaves nothing to visit.
#[test]
fn an_idle_daemon_recompresses_its_segments() {
    let work = tempfile::tempdir().unwrap();
    let (nas, config) = nas_config(work.path());
    std::fs::write(
        &config,
        format!(
            "[tiers.local]\nsegment_mb = 1\n[tiers.nas]\npath = {:?}\nsegment_mb = 1\n\
             [gc]\nrecompress_idle_secs = 1\n",
            nas.to_str().unwrap()
        ),
    )
    .unwrap();
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let src = work.path().join("src");
    code_tree(&src, 60, 1);
    store.run(global.iter().chain(&[
        "migrate",
        "--local-src",
        src.to_str().unwrap(),
        "--dest",
        "/src",
    ]));
    let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    // The segment files are the signal: watched until each tier's hold 3% less than
    // its chunks took when first stored (the status page's count; record headers add
    // 52 bytes to frames of about 16 KB).
    let roots = [store.home.path().join("chunks"), nas.clone()];
    loop {
        let (first, now) = (
            tier_bytes(&d),
            roots.each_ref().map(|r| packs::segment_bytes(r)),
        );
        if first.len() == 2 && (0..2).all(|t| first[t] > 0 && now[t] * 100 <= first[t] * 97) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recompression within 120 s: first stored {first:?}, now {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The status page tells what the tiers' files hold now beside what their chunks
    // took when first stored.
    let (code, body) = d.raw(&request("GET", "/v1/status", &[], b""));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    for t in v["tiers"].as_array().unwrap() {
        assert!(u(t, "disk_bytes") < u(t, "bytes"), "{t}");
    }
    while !d.last_tasks().contains_key("recompression") {
        assert!(
            std::time::Instant::now() < deadline,
            "no recompression job in status"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, summary) = &d.last_tasks()["recompression"];
    assert!(*ok && summary.contains("segments rewritten"), "{summary}");
    let late = tree::code(99_999, 300_000);
    assert!(matches!(put(&d, "/late.rs", &late), 200 | 201));
    d.assert_fsck_clean("after an idle recompression");
    assert_eq!(cat(&d, "/late.rs"), late);
    let back = work.path().join("back");
    store.run(
        global
            .iter()
            .chain(&["export", "/src", back.to_str().unwrap()]),
    );
    tree::assert_same(&src, &back);
    // Whatever the idle loop left, a collection asked to recompresses; after it,
    // nothing is left to visit.
    let visited = |report: &Value| -> u64 {
        let tiers = report["recompressed"].as_array().unwrap();
        assert_eq!(tiers.len(), 2, "{report}");
        tiers
            .iter()
            .map(|t| u(&t[1], "rewritten") + u(&t[1], "kept"))
            .sum()
    };
    post_json(&d, "/v1/admin/gc?recompress=true");
    let again = post_json(&d, "/v1/admin/gc?recompress=true");
    assert_eq!(visited(&again), 0, "{again}");
    d.assert_fsck_clean("after gc --recompress");
}
