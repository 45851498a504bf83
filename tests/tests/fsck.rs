//! fsck on deliberately damaged stores: a flipped byte in a chunk file and a deleted
//! chunk are found, named by the paths that use them, with exit code 1.

use std::fs;
use std::path::PathBuf;

use fvfs_tests::{check, nas_config, store_files, tree, Fvfsd};

/// Chunk files of the local store, largest first.
fn chunk_files(d: &Fvfsd) -> Vec<PathBuf> {
    store_files(&d.home.path().join("chunks"))
}

#[test]
fn damage_is_found_and_named() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("only.bin"), tree::bytes(1, 200_000, false)).unwrap();
    let d = Fvfsd::new();
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    assert!(d.run(["fsck", "--read-data"]).contains("0 problems"));

    // The largest chunk files are data chunks of only.bin (incompressible, ~64 KiB).
    let files = chunk_files(&d);
    let flipped = &files[0];
    let mut bytes = fs::read(flipped).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(flipped, bytes).unwrap();
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

    fs::remove_file(&files[1]).unwrap();
    let out = d.cmd(["fsck"]).output().unwrap();
    check(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not found") && text.contains("used by /only.bin"),
        "{text}"
    );
    // Reading the damaged file fails loudly instead of returning wrong bytes.
    let out = d
        .cmd(["export", "/", work.path().join("out").to_str().unwrap()])
        .output()
        .unwrap();
    check(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("only.bin"));
}

fn flip_last_byte(path: &std::path::Path) {
    let mut bytes = fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(path, bytes).unwrap();
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
    {
        // The daemon's replicator copies everything to the NAS.
        let daemon = fvfs_tests::daemon::Daemon::start_with(&d, &c, "127.0.0.1:0", &["--no-mdns"]);
        let (status, body) = daemon.raw(&fvfs_tests::daemon::request(
            "POST",
            "/v1/admin/flush",
            &[],
            b"",
        ));
        assert_eq!(status, 200, "{body}");
    }
    let fsck = |extra: &[&str], code: i32| {
        let mut args = vec![c[0], c[1], "fsck"];
        args.extend_from_slice(extra);
        d.run_code(code, args)
    };
    assert!(fsck(&["--read-data"], 0).contains(" 0 problems"));

    // One chunk of big.bin damaged locally, another missing on the NAS.
    let local = store_files(&d.home.path().join("chunks"));
    flip_last_byte(&local[0]);
    let missing = nas.join(local[1].strip_prefix(d.home.path().join("chunks")).unwrap());
    fs::remove_file(&missing).unwrap();

    let quick = fsck(&[], 1);
    assert!(
        quick.contains("problem: nas: ") && quick.contains("/big.bin"),
        "{quick}"
    );
    let full = fsck(&["--read-data"], 1);
    assert!(
        full.contains("problem: local: ") && full.contains("corrupt"),
        "{full}"
    );
    assert!(
        full.contains("problem: nas: ") && full.contains(" 2 problems"),
        "{full}"
    );
    let repaired = fsck(&["--read-data", "--repair"], 0);
    assert!(repaired.contains("0 problems, 2 repaired"), "{repaired}");
    assert!(fsck(&["--read-data"], 0).contains(" 0 problems, 0 repaired"));
    assert!(missing.exists(), "the NAS copy is back");

    // The root tree node damaged on every tier: found, named, not repairable.
    let log = d.run([c[0], c[1], "log", "--json"]);
    let root = serde_json::from_str::<serde_json::Value>(&log).unwrap()[0]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    for store in [d.home.path().join("chunks"), nas.clone()] {
        flip_last_byte(&store.join(&root[..2]).join(&root));
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
    let chunks = d.home.path().join("chunks");
    let local = &store_files(&chunks)[0];
    let on_nas = nas.join(local.strip_prefix(&chunks).unwrap());
    fs::create_dir_all(on_nas.parent().unwrap()).unwrap();
    fs::copy(local, &on_nas).unwrap();

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
    let mut bytes = fs::read(&on_nas).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&on_nas, bytes).unwrap();
    let out = d
        .cmd(["--config", cfg, "fsck", "--read-data"])
        .output()
        .unwrap();
    check(&out, 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nas: "));
}
