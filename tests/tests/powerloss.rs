//! Power cuts: the daemon's data directory and its NAS tier live on `fvfs-powerloss`, a
//! FUSE file system that keeps every write in memory until its file is fsynced (and
//! every new name until its folder is), and drops all of it on command. A random
//! workload (HTTP PUT and DELETE, `fvfsc put -r`, migrations through the daemon,
//! snapshots, collections, some of them recompressing segments; the daemon's databases
//! folding their logs every 200 operations) runs until a SIGKILL at a random moment; then the power is cut and the daemon restarted on what the "disk"
//! kept. Every acknowledged write must read back byte for byte (the one in flight may
//! have landed or not, never half), every acknowledged snapshot must exist, `fsck
//! --read-data --all` must be clean and new writes must be accepted.
//! `FVFS_POWERLOSS_CUTS` sets the number of cuts (CI runs a few; `benches/README.md`
//! records a long run), `FVFS_POWERLOSS_SEED` replays.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fvfs_powerloss::Harness;
use fvfs_tests::daemon::{request, try_raw, Daemon};
use fvfs_tests::{bin, tree, Fvfsd, Rng};

/// A path's acknowledged content (`None`: absent) and, while an operation is in
/// flight, what it would make it.
#[derive(Default)]
struct Expect {
    acked: Option<Vec<u8>>,
    in_flight: Option<Option<Vec<u8>>>,
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// Every file under `dir`, as fvfs paths under `dest`, with its content.
fn files_of(dir: &Path, dest: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{dest}/{}", entry.file_name().to_str().unwrap());
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_of(&entry.path(), &name));
        } else {
            out.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    out
}

/// A small source tree: `files` files in a few folders, some sharing content.
fn small_tree(root: &Path, files: u64, rng: &mut Rng) {
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&dir).unwrap();
        let seed = if i % 5 == 4 { 7 } else { rng.next_u64() };
        let len = rng.below(if i == 0 { 1_500_000 } else { 40_000 }) as usize;
        std::fs::write(
            dir.join(format!("f{i}")),
            tree::bytes(seed, len, i % 2 == 0),
        )
        .unwrap();
    }
    // A second name of the first file (hard links go through their own commit ops).
    if files >= 2 {
        std::fs::hard_link(root.join("d0/f0"), root.join("d1/also-f0")).unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_power_cuts() {
    let cuts = env_u64("FVFS_POWERLOSS_CUTS").unwrap_or(6);
    let seed = env_u64("FVFS_POWERLOSS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("powerloss seed {seed} (FVFS_POWERLOSS_SEED replays it)");
    let mut rng = Rng(seed);
    let work = tempfile::tempdir().unwrap();
    let mut disk = Harness::start(&bin("fvfs-powerloss"), &work.path().join("disk"));
    // The data directory and the NAS share exist durably before fvfs starts, as on
    // a real server.
    let nas = disk.path("nas");
    std::fs::create_dir(&nas).unwrap();
    let config = work.path().join("fvfsd.toml");
    std::fs::write(
        &config,
        // Small local segments: they fill, retire, compact and recompress often.
        format!(
            "[tiers.local]\nsegment_mb = 1\n[tiers.nas]\npath = {:?}\n",
            nas.to_str().unwrap()
        ),
    )
    .unwrap();
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd {
        home: tempfile::tempdir_in(disk.mountpoint()).unwrap(),
    };
    std::fs::File::open(disk.mountpoint())
        .unwrap()
        .sync_all()
        .unwrap();
    let sources = work.path().join("src");

    let mut model: BTreeMap<String, Expect> = BTreeMap::new();
    let mut snapshots: BTreeSet<String> = BTreeSet::new();
    let (mut acked_ops, mut landed_in_flight, mut recompressed) = (0u64, 0u64, 0u64);
    let meta = store.home.path().join("meta");
    let mut folded = 0;
    for cut in 0..cuts {
        let d = start_folding(&store, &global);
        let opened = snapshot_position(&meta);
        if cut > 0 {
            landed_in_flight += check(&d, &store, &mut model, &snapshots, work.path(), seed);
        }
        let killer = {
            let (pid, after) = (d.pid(), Duration::from_millis(300 + rng.below(2500)));
            std::thread::spawn(move || {
                std::thread::sleep(after);
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid as i32).unwrap(),
                    rustix::process::Signal::KILL,
                )
                .ok();
            })
        };
        let started = Instant::now();
        loop {
            let k = rng.below(40);
            let (changes, snapshot, answer) = match rng.below(10) {
                0..=3 => {
                    let path = format!("/p/f{k}");
                    let (seed, len) = (rng.next_u64(), rng.below(300_000) as usize);
                    let content = match rng.below(3) {
                        0 => tree::code(seed, len),
                        kind => tree::bytes(seed, len, kind == 1),
                    };
                    let req = request("PUT", &format!("/v1/files{path}"), &[], &content);
                    mark(&mut model, &[(path, Some(content))]);
                    (None, None, try_raw(&d.addr, &req).map(|(s, _)| s))
                }
                4 => {
                    let path = format!("/p/f{k}");
                    let req = request("DELETE", &format!("/v1/files{path}"), &[], b"");
                    mark(&mut model, &[(path, None)]);
                    (
                        None,
                        None,
                        try_raw(&d.addr, &req).map(|(s, _)| if s == 404 { 200 } else { s }),
                    )
                }
                5 | 6 => {
                    let src = sources.join(format!("t{}", rng.next_u64()));
                    let files = 1 + rng.below(30);
                    small_tree(&src, files, &mut rng);
                    let (dest, migrate) = if rng.below(2) == 0 {
                        (format!("/t{k}"), false)
                    } else {
                        ("/m".to_owned(), true)
                    };
                    let files = files_of(&src, &dest);
                    let changes: Vec<_> = files.into_iter().map(|(p, c)| (p, Some(c))).collect();
                    mark(&mut model, &changes);
                    let mut cmd = if migrate {
                        let mut c = store.cmd(global);
                        c.args([
                            "migrate",
                            "--local-src",
                            src.to_str().unwrap(),
                            "--dest",
                            "/m",
                        ]);
                        c
                    } else {
                        d.fvfsc(["put", &dest, "-r", src.to_str().unwrap()])
                    };
                    let out = cmd.output().unwrap();
                    let answer = if out.status.success() {
                        Some(200)
                    } else {
                        // Refused by a live daemon is a bug; a dead one is the kill.
                        try_raw(&d.addr, &request("GET", "/v1/status", &[], b"")).map(|_| {
                            panic!(
                                "seed {seed}: {} failed with the daemon up: {}",
                                if migrate { "migrate" } else { "fvfsc put -r" },
                                String::from_utf8_lossy(&out.stderr)
                            )
                        })
                    };
                    (Some(changes), None, answer)
                }
                7 | 8 => {
                    let name = format!("s{}", rng.next_u64());
                    let body = format!("{{\"name\":\"{name}\"}}");
                    let req = request(
                        "POST",
                        "/v1/snapshots",
                        &["content-type: application/json"],
                        body.as_bytes(),
                    );
                    let answer = try_raw(&d.addr, &req).map(|(s, _)| s);
                    (None, Some(name), answer)
                }
                _ => {
                    let admin = d.admin_header();
                    let body: &[u8] = match rng.below(2) {
                        0 => br#"{"keep_last":3,"grace_secs":0}"#,
                        _ => br#"{"keep_last":3,"grace_secs":0,"recompress":true}"#,
                    };
                    let req = request("POST", "/v1/admin/gc", &[&admin], body);
                    let answer = try_raw(&d.addr, &req).map(|(s, report)| {
                        recompressed += segments_recompressed(&report);
                        s
                    });
                    (None, None, answer)
                }
            };
            drop(changes);
            match answer {
                Some(200 | 201) => {
                    acked_ops += 1;
                    for e in model.values_mut() {
                        if let Some(lands) = e.in_flight.take() {
                            e.acked = lands;
                        }
                    }
                    snapshots.extend(snapshot);
                }
                // A snapshot of nothing new, a gc with nothing to do: no change.
                Some(404 | 409) => {
                    for e in model.values_mut() {
                        e.in_flight = None;
                    }
                }
                Some(s) => panic!("seed {seed}: status {s} from a live daemon"),
                None => break,
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the kill never came"
            );
        }
        killer.join().unwrap();
        drop(d);
        disk.cut();
        // The manifest folded (closed and reopened) while the daemon ran, and the
        // snapshot that wrote survived the cut.
        if snapshot_position(&meta) > opened {
            folded += 1;
        }
    }
    let d = start_folding(&store, &global);
    landed_in_flight += check(&d, &store, &mut model, &snapshots, work.path(), seed);
    eprintln!(
        "{cuts} power cuts: {acked_ops} acknowledged operations, {} paths, {} snapshots, 0 lost; {landed_in_flight} paths changed by operations in flight; {recompressed} segments recompressed; {folded} runs folded their manifest; disk: {}",
        model.len(),
        snapshots.len(),
        disk.stats()
    );
    assert!(folded > 0, "seed {seed}: no run folded its databases");
}

/// A daemon whose databases fold themselves (close and reopen, writing sled's
/// snapshot) every 200 operations instead of every 500,000, so that cuts meet folds.
fn start_folding(store: &Fvfsd, global: &[&str]) -> Daemon {
    let mut cmd = store.cmd(global);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("FVFS_KV_FOLD_OPS", "200");
    Daemon::spawn(cmd)
}

/// The log position sled's newest snapshot in database folder `dir` covers
/// (`snap.<position>`).
fn snapshot_position(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
        })
        .max()
}

/// Segments a collection's report says it rewrote denser (0 if it is no report).
fn segments_recompressed(report: &str) -> u64 {
    let report: serde_json::Value = serde_json::from_str(report).unwrap_or_default();
    report["recompressed"].as_array().map_or(0, |tiers| {
        tiers
            .iter()
            .filter_map(|t| t[1]["rewritten"].as_u64())
            .sum()
    })
}

/// Notes what `changes` would make each path, while the operation is in flight.
fn mark(model: &mut BTreeMap<String, Expect>, changes: &[(String, Option<Vec<u8>>)]) {
    for (p, lands) in changes {
        model.entry(p.clone()).or_default().in_flight = Some(lands.clone());
    }
}

/// After a cut and a restart: every path holds what was acknowledged (or what the
/// operation in flight would have made it), every acknowledged snapshot exists, fsck
/// is clean and a new write is accepted. Returns how many paths the in-flight
/// operation changed; what the daemon holds becomes the model's truth.
fn check(
    d: &Daemon,
    store: &Fvfsd,
    model: &mut BTreeMap<String, Expect>,
    snapshots: &BTreeSet<String>,
    work: &Path,
    seed: u64,
) -> u64 {
    let out: PathBuf = work.join("export");
    let _ = std::fs::remove_dir_all(&out);
    let exported = store
        .cmd(["export", "/", out.to_str().unwrap()])
        .output()
        .unwrap();
    let mut got: BTreeMap<String, Vec<u8>> = if exported.status.success() {
        files_of(&out, "").into_iter().collect()
    } else {
        // An empty store has no root to export.
        assert!(
            model.values().all(|e| e.acked.is_none()),
            "seed {seed}: export failed: {}",
            String::from_utf8_lossy(&exported.stderr)
        );
        BTreeMap::new()
    };
    let mut landed = 0;
    for (path, e) in model.iter_mut() {
        let now = got.remove(path);
        let ok = now == e.acked || e.in_flight.as_ref().is_some_and(|f| now == *f);
        assert!(
            ok,
            "seed {seed}: {path} holds {:?} bytes after a power cut, acknowledged {:?}",
            now.as_ref().map(Vec::len),
            e.acked.as_ref().map(Vec::len)
        );
        landed += u64::from(now != e.acked);
        e.acked = now;
        e.in_flight = None;
    }
    assert!(
        got.is_empty(),
        "seed {seed}: files nobody wrote: {:?}",
        got.keys().collect::<Vec<_>>()
    );
    let (status, body) = d.raw(&request("GET", "/v1/snapshots", &[], b""));
    assert_eq!(status, 200);
    for name in snapshots {
        assert!(
            body.contains(&format!("\"{name}\"")),
            "seed {seed}: snapshot {name} lost: {body}"
        );
    }
    d.assert_fsck_clean(&format!("seed {seed}"));
    let (status, body) = d.raw(&request(
        "PUT",
        "/v1/files/after-cut",
        &[],
        b"still writable",
    ));
    assert!(matches!(status, 200 | 201), "seed {seed}: {status} {body}");
    let (status, body) = d.raw(&request("DELETE", "/v1/files/after-cut", &[], b""));
    assert_eq!(status, 200, "seed {seed}: {body}");
    landed
}

/// A config in `work` with segments of 1 MiB, so that a small tree fills several.
fn small_segments(work: &Path) -> std::path::PathBuf {
    let config = work.join("fvfsd.toml");
    std::fs::write(&config, "[tiers.local]\nsegment_mb = 1\n").unwrap();
    config
}

/// Runs `cmd` with failpoint `point` armed, and checks that it died there.
fn killed_at(cmd: &mut std::process::Command, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = cmd.env("FVFS_FAILPOINT", point).output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the process should have died at failpoint {point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compaction killed after each of its steps (`FVFS_FAILPOINT=compact-N` aborts the
/// process there): the next process finds every kept file whole and fsck clean.
#[test]
fn a_compaction_killed_at_every_step_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    // Small segments, so the deleted tree fills segments of its own that retire.
    let config = small_segments(work.path());
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let kept = work.path().join("kept");
    tree::generate(&kept, 200, 2 << 20);
    // fvfsd with the NAS config, expecting success.
    let run = |args: &[&str]| store.run(global.iter().chain(args));
    let migrate = |src: &Path, dest: &str| {
        run(&[
            "migrate",
            "--local-src",
            src.to_str().unwrap(),
            "--dest",
            dest,
        ]);
    };
    migrate(&kept, "/kept");
    for step in 1..=4 {
        // Content of its own (tree::generate would repeat the kept tree's).
        let doomed = work.path().join(format!("doomed{step}"));
        small_tree(&doomed, 60, &mut Rng(step * 7919 + 1));
        migrate(&doomed, "/doomed");
        {
            let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &[]);
            let (status, body) = d.raw(&request(
                "DELETE",
                "/v1/files/doomed?recursive=true",
                &[],
                b"",
            ));
            assert_eq!(status, 200, "{body}");
        }
        killed_at(
            store
                .cmd(global)
                .args(["gc", "--keep-last", "1", "--grace-secs", "0"]),
            &format!("compact-{step}"),
        );
        run(&["fsck", "--read-data", "--all"]);
        let back = work.path().join(format!("back{step}"));
        run(&["export", "/kept", back.to_str().unwrap()]);
        tree::assert_same(&kept, &back);
    }
    // And a gc that runs to its end gives the space back.
    run(&["gc", "--keep-last", "1", "--grace-secs", "0"]);
    run(&["fsck", "--read-data", "--all"]);
}

/// A rebuild of a lost index killed after its first segment (`FVFS_FAILPOINT=
/// rebuild-segment`): the partial index must not pass for a whole one, whose unknown
/// segments the next open would delete as strays. The next process rebuilds again and
/// everything reads back whole.
#[test]
fn a_rebuild_killed_midway_loses_no_segment() {
    let work = tempfile::tempdir().unwrap();
    let config = small_segments(work.path());
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let kept = work.path().join("kept");
    tree::generate(&kept, 200, 4 << 20);
    store.run(global.iter().chain(&[
        "migrate",
        "--local-src",
        kept.to_str().unwrap(),
        "--dest",
        "/kept",
    ]));
    let chunks = store.home.path().join("chunks");
    let segments = || std::fs::read_dir(chunks.join("segments")).unwrap().count();
    let before = segments();
    assert!(
        before >= 3,
        "{before} segments: the rebuild must have several to do"
    );
    std::fs::remove_dir_all(chunks.join("index")).unwrap();
    killed_at(store.cmd(global).args(["fsck", "--all"]), "rebuild-segment");
    store.run(global.iter().chain(&["fsck", "--read-data", "--all"]));
    assert_eq!(segments(), before, "no segment deleted");
    let back = work.path().join("back");
    store.run(
        global
            .iter()
            .chain(&["export", "/kept", back.to_str().unwrap()]),
    );
    tree::assert_same(&kept, &back);
}

/// A collection killed after the index dropped its chunks and before their bytes were
/// freed (`FVFS_FAILPOINT=pack-punch`): the next process to open the store frees them,
/// and everything kept reads back whole.
#[test]
fn space_freed_by_a_killed_gc_is_given_back_at_the_next_open() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let kept = work.path().join("kept");
    tree::generate(&kept, 100, 1 << 20);
    let doomed = work.path().join("doomed");
    std::fs::create_dir_all(&doomed).unwrap();
    for i in 0..8u64 {
        std::fs::write(
            doomed.join(format!("d{i}")),
            tree::bytes(9000 + i, 1 << 20, false),
        )
        .unwrap();
    }
    store.run([
        "migrate",
        "--local-src",
        kept.to_str().unwrap(),
        "--dest",
        "/kept",
    ]);
    store.run([
        "migrate",
        "--local-src",
        doomed.to_str().unwrap(),
        "--dest",
        "/doomed",
    ]);
    store.run(["rollback", "1"]);
    let segments = store.home.path().join("chunks/segments");
    let blocks = || -> u64 {
        std::fs::read_dir(&segments)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
            .sum()
    };
    let before = blocks();
    killed_at(
        &mut store.cmd(["gc", "--keep-last", "1", "--grace-secs", "0"]),
        "pack-punch",
    );
    assert!(
        blocks() + (4 << 20) > before,
        "nothing was freed before the kill"
    );
    // The next process opens the store, and frees what the killed one could not.
    run_fsck_clean(&store);
    assert!(
        blocks() + (6 << 20) < before,
        "8 MiB of dropped content freed: {before} -> {} bytes",
        blocks()
    );
    let back = work.path().join("back");
    store.run(["export", "/kept", back.to_str().unwrap()]);
    tree::assert_same(&kept, &back);
}

fn run_fsck_clean(store: &Fvfsd) {
    let out = store.run(["fsck", "--read-data", "--all"]);
    assert!(out.contains(" 0 problems"), "{out}");
}

/// Recompression killed after each of its steps (`FVFS_FAILPOINT=recompress-N` aborts
/// the process there): the next process finds every file whole and fsck clean, and a
/// collection that runs to its end rewrites what was left.
#[test]
fn a_recompression_killed_at_every_step_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let config = small_segments(work.path());
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let run = |args: &[&str]| store.run(global.iter().chain(args));
    let mut trees = Vec::new();
    for step in 1..=3u64 {
        // Source-like text, new in each step, filling segments that retire.
        let src = work.path().join(format!("src{step}"));
        for i in 0..60 {
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(
                src.join(format!("f{i}.rs")),
                tree::code(step * 1000 + i, 200_000),
            )
            .unwrap();
        }
        let dest = format!("/t{step}");
        run(&[
            "migrate",
            "--local-src",
            src.to_str().unwrap(),
            "--dest",
            &dest,
        ]);
        trees.push((src, dest));
        killed_at(
            store.cmd(global).args(["gc", "--recompress"]),
            &format!("recompress-{step}"),
        );
        run(&["fsck", "--read-data", "--all"]);
        for (i, (src, dest)) in trees.iter().enumerate() {
            let back = work.path().join(format!("back{step}-{i}"));
            run(&["export", dest, back.to_str().unwrap()]);
            tree::assert_same(src, &back);
        }
    }
    let report = run(&["gc", "--recompress"]);
    let rewritten: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("local segments recompressed: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no recompression reported: {report}"));
    assert!(rewritten > 0, "{report}");
    run(&["fsck", "--read-data", "--all"]);
}
