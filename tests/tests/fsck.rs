//! fsck on deliberately damaged stores: a flipped byte in a record's frame and a
//! record wiped from its segment (a lost sector) are found, named by the paths that
//! use them, with exit code 1, and repaired from another tier where one is whole.

use std::fs;

use fvfs_cas::ChunkId;
use fvfs_tests::packs::{self, Record};
use fvfs_tests::{check, nas_config, tree, Fvfsd};

/// Records of the local store, largest first.
fn local_records(d: &Fvfsd) -> Vec<Record> {
    packs::records(&d.home.path().join("chunks"))
}

/// A daemon started on the store of `d` with the options `c` until its replicator
/// copied everything to the NAS.
fn copy_to_nas(d: &Fvfsd, c: &[&str]) {
    let daemon = fvfs_tests::daemon::Daemon::start_with(d, c, "127.0.0.1:0", &["--no-mdns"]);
    let (status, body) = daemon.raw(&fvfs_tests::daemon::request(
        "POST",
        "/v1/admin/flush",
        &[],
        b"",
    ));
    assert_eq!(status, 200, "{body}");
}

/// `fvfsd fsck EXTRA` with the options `c`, expected to exit with `code`; its output.
fn fsck_with(d: &Fvfsd, c: &[&str], extra: &[&str], code: i32) -> String {
    let mut args = c.to_vec();
    args.push("fsck");
    args.extend_from_slice(extra);
    d.run_code(code, args)
}

#[test]
fn damage_is_found_and_named() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("only.bin"), tree::bytes(1, 200_000, false)).unwrap();
    fs::write(src.join("fine.txt"), b"not damaged").unwrap();
    let d = Fvfsd::new();
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    assert!(d.run(["fsck", "--read-data"]).contains("0 problems"));

    // The largest records are data chunks of only.bin (incompressible, ~64 KiB).
    let records = local_records(&d);
    records[0].flip_last_byte();
    // Without --read-data the chunk is present; reading it finds the flip.
    assert!(d.run(["fsck"]).contains("0 problems"));
    let out = d.cmd(["fsck", "--read-data"]).output().unwrap();
    check(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("is corrupt") && text.contains("used by /only.bin"),
        "{text}"
    );
    assert!(text.contains("1 problems"), "{text}");
    // The same through a running daemon: its report travels as JSON (chunk ids in hex).
    {
        let _daemon = fvfs_tests::daemon::Daemon::start(&d, "127.0.0.1:0", &["--no-mdns"]);
        let out = d.cmd(["fsck", "--read-data"]).output().unwrap();
        check(&out, 1);
        let remote = String::from_utf8_lossy(&out.stdout);
        assert!(
            remote.contains(&format!("chunk {}", records[0].id))
                && remote.contains("used by /only.bin"),
            "{remote}"
        );
    }

    // A record gone from its segment: the index check finds it without reading data.
    records[1].wipe();
    let out = d.cmd(["fsck"]).output().unwrap();
    check(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("chunk {}", records[1].id))
            && text.contains("no intact record")
            && text.contains("used by /only.bin"),
        "{text}"
    );
    // Export names the damaged file instead of writing wrong bytes, and exports the rest.
    let out_dir = work.path().join("out");
    let out = d
        .cmd(["export", "/", out_dir.to_str().unwrap()])
        .output()
        .unwrap();
    check(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not exported")
            && err.contains("only.bin")
            && records[..2].iter().any(|r| err.contains(&r.id.to_string())),
        "{err}"
    );
    assert_eq!(fs::read(out_dir.join("fine.txt")).unwrap(), b"not damaged");
    let left: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["fine.txt"], "no partial file is left");
}

#[test]
fn tier_damage_is_repaired_from_a_healthy_tier_or_reported() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), tree::bytes(5, 400_000, false)).unwrap();
    fs::write(src.join("small.txt"), b"small").unwrap();
    let (nas, config) = nas_config(work.path());
    let c = ["--config", config.to_str().unwrap()];
    let d = Fvfsd::new();
    d.run([c[0], c[1], "migrate", "--local-src", src.to_str().unwrap()]);
    copy_to_nas(&d, &c);
    let fsck = |extra: &[&str], code: i32| fsck_with(&d, &c, extra, code);
    assert!(fsck(&["--read-data"], 0).contains(" 0 problems"));

    // One chunk of big.bin damaged locally, another wiped from the NAS.
    let local = local_records(&d);
    local[0].flip_last_byte();
    let missing = local[1].id;
    for r in packs::find(&nas, &missing) {
        r.wipe();
    }

    let quick = fsck(&[], 1);
    assert!(
        quick.contains("problem: nas: ") && quick.contains("/big.bin"),
        "{quick}"
    );
    // The NAS index check reads the wiped record's header and names it.
    assert!(quick.contains("no intact record"), "{quick}");
    let full = fsck(&["--read-data"], 1);
    assert!(
        full.contains("problem: local: ") && full.contains("corrupt"),
        "{full}"
    );
    // The wiped record once: reading it fails (the index check leaves the records
    // the reads take whole to them, so it is not named a second time).
    assert!(
        full.contains("problem: nas: ") && full.contains(" 2 problems"),
        "{full}"
    );
    // Both indexes are rebuilt from their segments, which drops the entries naming
    // damage (two lines); then both chunks are copied back from the other tier.
    let repaired = fsck(&["--read-data", "--repair"], 0);
    assert!(repaired.contains("0 problems, 4 repaired"), "{repaired}");
    assert!(fsck(&["--read-data"], 0).contains(" 0 problems, 0 repaired"));
    assert!(packs::ids(&nas).contains(&missing), "the NAS copy is back");

    // The root tree node damaged on every tier: found, named, not repairable.
    let log = d.run([c[0], c[1], "log", "--json"]);
    let root = serde_json::from_str::<serde_json::Value>(&log).unwrap()[0]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    let root_id: ChunkId = root.parse().unwrap();
    for store in [d.home.path().join("chunks"), nas.clone()] {
        for r in packs::find(&store, &root_id) {
            r.flip_last_byte();
        }
    }
    let broken = fsck(&["--repair"], 1);
    assert!(
        broken.contains(&root) && broken.contains("used by /"),
        "{broken}"
    );
    assert!(
        broken.contains("cannot repair") || broken.contains("corrupt"),
        "{broken}"
    );
}

#[test]
fn a_copy_its_bitmask_does_not_claim_is_reported_then_claimed() {
    let work = tempfile::tempdir().unwrap();
    let (nas, config) = nas_config(work.path());
    let cfg = config.to_str().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("doc.bin"), tree::bytes(3, 200_000, false)).unwrap();
    let d = Fvfsd::new();
    // Offline: the chunks are queued for the NAS, not copied yet.
    d.run([
        "--config",
        cfg,
        "migrate",
        "--local-src",
        src.to_str().unwrap(),
    ]);
    let local = &local_records(&d)[0];
    local.copy_to(&nas);

    let out = d.run(["--config", cfg, "fsck", "--read-data"]);
    assert!(
        out.contains("1 copies held by a tier whose bit did not claim them, 0 claimed now")
            && out.contains("0 problems"),
        "{out}"
    );
    let out = d.run(["--config", cfg, "fsck", "--repair"]);
    assert!(out.contains("1 claimed now"), "{out}");
    let out = d.run(["--config", cfg, "fsck", "--read-data"]);
    assert!(!out.contains("did not claim"), "{out}");
    // A claimed copy is checked like any other: damage to it is now a problem.
    for r in packs::find(&nas, &local.id) {
        r.flip_last_byte();
    }
    let out = d
        .cmd(["--config", cfg, "fsck", "--read-data"])
        .output()
        .unwrap();
    check(&out, 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nas: "));
}

#[test]
fn a_collection_refused_on_a_damaged_tree_says_so_and_deletes_nothing() {
    use fvfs_tests::daemon::{request, Daemon};
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"first").unwrap();
    let d = Fvfsd::new();
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    fs::write(src.join("a.txt"), b"second").unwrap();
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let log = d.run(["log", "--json"]);
    let root: ChunkId = serde_json::from_str::<serde_json::Value>(&log).unwrap()[0]["root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for r in packs::find(&d.home.path().join("chunks"), &root) {
        r.flip_last_byte();
    }
    let before = packs::ids(&d.home.path().join("chunks"));
    let daemon = Daemon::start(&d, "127.0.0.1:0", &["--no-mdns"]);
    let (status, body) = daemon.raw(&request(
        "POST",
        "/v1/admin/gc",
        &[&daemon.admin_header()],
        br#"{"keep_last":1,"grace_secs":0}"#,
    ));
    // A damaged tree, not an unavailable store (it used to answer 503 "unavailable").
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains(r#""error":"corrupt""#) && body.contains("before deleting anything"),
        "{body}"
    );
    drop(daemon);
    assert_eq!(
        packs::ids(&d.home.path().join("chunks")),
        before,
        "nothing deleted"
    );
}

#[test]
fn every_job_leaves_its_outcome_for_status_whoever_ran_it() {
    use fvfs_tests::daemon::{request, Daemon};
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("only.bin"), tree::bytes(2, 200_000, false)).unwrap();
    let out = work.path().join("out");
    let d = Fvfsd::new();
    // Run by this process, with no daemon.
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    d.run(["export", "/", out.to_str().unwrap()]);
    d.run(["fsck"]);
    d.run(["gc", "--dry-run"]);
    let daemon = Daemon::start(&d, "127.0.0.1:0", &["--no-mdns"]);
    let seen = daemon.last_tasks();
    let kinds: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["export", "fsck", "gc", "migrate"], "{seen:?}");
    let clean = |kind: &str, says: &str| {
        let (ok, summary) = &seen[kind];
        assert!(*ok && summary.contains(says), "{kind}: {seen:?}");
    };
    clean("migrate", "1 files");
    clean("export", "1 files");
    clean("fsck", "clean");
    clean("gc", "dry run");
    // Run by the daemon for a client: the daemon's own jobs too.
    for job in ["flush", "evict"] {
        let post = request(
            "POST",
            &format!("/v1/admin/{job}"),
            &[&daemon.admin_header()],
            b"",
        );
        let (status, body) = daemon.raw(&post);
        assert_eq!(status, 200, "{job}: {body}");
    }
    let seen = daemon.last_tasks();
    assert!(
        seen["flush"].0 && seen["flush"].1.contains("local"),
        "{seen:?}"
    );
    assert!(seen["evict"].0, "{seen:?}");
    // After damage: not clean, and kept across a restart.
    local_records(&d)[0].flip_last_byte();
    let (status, body) = daemon.raw(&request(
        "POST",
        "/v1/admin/fsck",
        &[&daemon.admin_header()],
        br#"{"read_data":true}"#,
    ));
    assert_eq!(status, 200, "{body}");
    drop(daemon);
    let daemon = Daemon::start(&d, "127.0.0.1:0", &["--no-mdns"]);
    let seen = daemon.last_tasks();
    let (ok, summary) = &seen["fsck"];
    assert!(!ok && summary.ends_with("1 problems left"), "{seen:?}");
}

/// Blocks (what the idle rewrite and `gc --recompress` pack cold chunks into): a
/// flipped byte in one is named for every chunk it hides and every file using them,
/// and the repair copies each of those chunks back from the NAS.
#[test]
fn a_damaged_block_names_every_chunk_it_hides_and_is_repaired_from_the_nas() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40u64 {
        let name = src.join(format!("f{i:02}.rs"));
        fs::write(name, tree::code(i, 20_000 + i as usize * 1_000)).unwrap();
    }
    let (_nas, config) = nas_config(work.path());
    // Small local segments, so that the rewrite visits them (it leaves a segment
    // still taking puts alone until it is an eighth full).
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("[tiers.local]\nsegment_mb = 1\n");
    fs::write(&config, text).unwrap();
    let c = ["--config", config.to_str().unwrap()];
    let d = Fvfsd::new();
    d.run([c[0], c[1], "migrate", "--local-src", src.to_str().unwrap()]);
    copy_to_nas(&d, &c);
    let report = d.run([c[0], c[1], "gc", "--recompress"]);
    let fsck = |extra: &[&str], code: i32| fsck_with(&d, &c, extra, code);
    assert!(fsck(&["--read-data"], 0).contains(" 0 problems"));
    let blocks: Vec<Record> = local_records(&d)
        .into_iter()
        .filter(|r| !r.members.is_empty())
        .collect();
    assert!(!blocks.is_empty(), "no block after the rewrite: {report}");
    let block = &blocks[0];
    assert!(block.members.len() > 1, "{block:?}");
    block.flip_last_byte();

    let full = fsck(&["--read-data"], 1);
    for id in &block.members {
        assert!(full.contains(&id.to_string()), "{id} not named: {full}");
    }
    assert!(
        full.contains("problem: local: ") && full.contains("used by /f"),
        "{full}"
    );
    assert!(
        full.contains(&format!(" {} problems", block.members.len())),
        "{full}"
    );
    let repaired = fsck(&["--read-data", "--repair"], 0);
    assert!(repaired.contains(" 0 problems"), "{repaired}");
    assert!(fsck(&["--read-data"], 0).contains(" 0 problems, 0 repaired"));
    let out = work.path().join("out");
    d.run([c[0], c[1], "export", "/", out.to_str().unwrap()]);
    tree::assert_same(&src, &out);
}
