//! Power cuts under a working daemon (the harness drops unsynced writes): acknowledged writes survive.

use super::*;

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
    let mut flushed = 0;
    for cut in 0..cuts {
        let d = start_flushing(&store, &global);
        let opened = newest_table(&meta);
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
        // The manifest wrote a table while the daemon ran, and it survived the cut.
        if newest_table(&meta) > opened {
            flushed += 1;
        }
    }
    let d = start_flushing(&store, &global);
    landed_in_flight += check(&d, &store, &mut model, &snapshots, work.path(), seed);
    eprintln!(
        "{cuts} power cuts: {acked_ops} acknowledged operations, {} paths, {} snapshots, 0 lost; {landed_in_flight} paths changed by operations in flight; {recompressed} segments recompressed; {flushed} runs wrote tables of their manifest; disk: {}",
        model.len(),
        snapshots.len(),
        disk.stats()
    );
    assert!(
        flushed > 0,
        "seed {seed}: no run wrote a table of its manifest"
    );
}
