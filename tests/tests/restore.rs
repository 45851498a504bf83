//! Restores from the S3 bucket alone, against a real Garage: `recover --from-s3` into an
//! empty data directory, then `export`. Reads go by pack (the number of GETs is bounded
//! by the packs, not the chunks); a pack lost in the middle of a restore fails only the
//! files using it, named with their version; an S3 server that stops mid-restore
//! stops it with one line, and a second run finishes it. Encrypted, neither the bucket
//! nor an encrypted NAS tier shows a name, a byte of content or a chunk id.

use std::fs;
use std::path::Path;
use std::process::Output;

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::garage::{Garage, S3Env};
use fvfs_tests::{check, tree, Fvfsd};

/// Small packs, so that even a test's data spans several.
const SMALL_PACKS: &str = "[upload]\nflush_size_mb = 1\nflush_interval_secs = 1\n";

fn prefix(work: &Path, what: &str) -> String {
    format!("{what}-{}", work.file_name().unwrap().to_string_lossy())
}

/// Migrates `src` through a daemon with `config`, and waits until S3 holds all of it.
fn store_in_s3(s3: &S3Env, config: &Path, src: &Path) {
    let store = Fvfsd::new();
    let d = s3.serve(&store, config);
    check(
        &s3.fvfsd(
            &store,
            config,
            ["migrate", "--local-src", src.to_str().unwrap()],
        )
        .output()
        .unwrap(),
        0,
    );
    flush(&d);
}

fn flush(d: &Daemon) {
    let (status, body) = d.raw(&request("POST", "/v1/admin/flush", &[], b""));
    assert_eq!(status, 200, "{body}");
}

/// `recover --from-s3` into a fresh store; returns it.
fn recover(s3: &S3Env, config: &Path, code: i32) -> Fvfsd {
    let fresh = Fvfsd::new();
    let out = s3
        .fvfsd(&fresh, config, ["recover", "--from-s3"])
        .output()
        .unwrap();
    check(&out, code);
    fresh
}

/// `fvfsd export --version VERSION PATH DIR` on `store`, reading through `config`'s S3.
fn export(
    s3: &S3Env,
    store: &Fvfsd,
    config: &Path,
    version: &str,
    path: &str,
    dir: &Path,
) -> Output {
    s3.fvfsd(
        store,
        config,
        ["export", "--version", version, path, dir.to_str().unwrap()],
    )
    .output()
    .unwrap()
}

/// The number in "S3: N GETs" of an export's summary.
fn gets(summary: &str) -> u64 {
    let at = summary
        .find("S3: ")
        .unwrap_or_else(|| panic!("no S3 figures: {summary}"));
    summary[at + 4..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no GET count: {summary}"))
}

#[test]
fn a_tree_restores_from_the_bucket_alone_by_pack_not_by_chunk() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 10_000, 3 << 20);
    for (i, size) in [(1u64, 9 << 20), (2, 5 << 20)] {
        tree::write_big(&src.join(format!("large{i}.bin")), i, size);
    }
    let prefix = prefix(work.path(), "restore");
    let config = s3.config(work.path(), &prefix, SMALL_PACKS);
    store_in_s3(&s3, &config, &src);
    let packs = s3.packs(&prefix).len() as u64;

    let fresh = recover(&s3, &config, 0);
    let out_dir = work.path().join("out");
    let out = export(&s3, &fresh, &config, "HEAD", "/", &out_dir);
    check(&out, 0);
    tree::assert_same(&src, &out_dir);
    let summary = String::from_utf8_lossy(&out.stdout);
    let used = gets(&summary);
    // Each pack is read in at most a couple of ranges; one GET per chunk would be
    // more than ten thousand.
    assert!(
        used <= 2 * packs + 2,
        "{used} GETs for {packs} packs: {summary}"
    );
    // An export passes through: nothing was promoted, so a second one reads the
    // bucket again, as economically.
    let again = work.path().join("again");
    let out = export(&s3, &fresh, &config, "HEAD", "/", &again);
    check(&out, 0);
    let summary = String::from_utf8_lossy(&out.stdout);
    let again_used = gets(&summary);
    assert!(
        again_used > 0 && again_used <= 2 * packs + 2,
        "{again_used} GETs for {packs} packs: {summary}"
    );
    tree::assert_same(&src, &again);
}

#[test]
fn a_pack_lost_mid_restore_fails_only_its_files_and_names_them() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix(work.path(), "lost");
    let config = s3.config(work.path(), &prefix, SMALL_PACKS);
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    let put = |name: &str, content: &[u8]| {
        let (status, body) = d.raw(&request("PUT", &format!("/v1/files/{name}"), &[], content));
        assert_eq!(status, 201, "{body}");
    };
    // Two flushes, two packs: the first holds kept/*, the second doomed/*.
    let kept: Vec<Vec<u8>> = (0..20u64)
        .map(|i| tree::bytes(i, 3000 + i as usize, true))
        .collect();
    for (i, c) in kept.iter().enumerate() {
        put(&format!("kept/{i}.txt"), c);
    }
    flush(&d);
    let first = s3.packs(&prefix);
    for i in 0..5u64 {
        put(
            &format!("doomed/{i}.bin"),
            &tree::bytes(100 + i, 50_000, false),
        );
    }
    flush(&d);
    drop(d);
    let doomed_pack: Vec<String> = s3
        .packs(&prefix)
        .into_iter()
        .filter(|p| !first.contains(p))
        .map(|(key, _)| key)
        .collect();
    assert!(!doomed_pack.is_empty());

    let fresh = recover(&s3, &config, 0);
    for key in &doomed_pack {
        s3.request("DELETE", &format!("/{key}"));
    }
    let out_dir = work.path().join("out");
    let out = export(&s3, &fresh, &config, "HEAD", "/", &out_dir);
    check(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    for i in 0..5 {
        assert!(
            err.contains(&format!(
                "not exported {}",
                out_dir.join(format!("doomed/{i}.bin")).display()
            )),
            "{err}"
        );
    }
    let pack_name = doomed_pack[0].rsplit('/').next().unwrap();
    assert!(
        err.contains(&format!("its pack {pack_name} is missing from S3")),
        "{err}"
    );
    assert!(err.contains("(version "), "{err}");
    for (i, c) in kept.iter().enumerate() {
        assert_eq!(&fs::read(out_dir.join(format!("kept/{i}.txt"))).unwrap(), c);
    }
    assert_eq!(
        fs::read_dir(out_dir.join("doomed")).unwrap().count(),
        0,
        "nothing half-written is left"
    );
}

#[test]
fn s3_stopping_mid_restore_stops_it_in_one_line_and_a_second_run_finishes() {
    let mut garage = Garage::start().expect("start Garage");
    let s3 = S3Env::from(garage.s3());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 600, 1 << 20);
    let config = s3.config(work.path(), "stop", SMALL_PACKS);
    store_in_s3(&s3, &config, &src);
    let fresh = recover(&s3, &config, 0);
    // One folder read through a daemon now: reads promote, so its chunks come back to
    // the local tier (an export passes through and would leave them in S3).
    {
        let d = s3.serve(&fresh, &config);
        for e in fs::read_dir(src.join("d000/s0")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            check(
                &d.fvfsc(["cat", &format!("/d000/s0/{name}")])
                    .output()
                    .unwrap(),
                0,
            );
        }
    }
    let export = |path: &str, dir: &Path| export(&s3, &fresh, &config, "HEAD", path, dir);

    garage.stop().expect("stop Garage");
    let out_dir = work.path().join("out");
    let out = export("/", &out_dir);
    check(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("export stopped") && err.contains("run the same export again"),
        "{err}"
    );
    let written = walk_files(&out_dir);
    assert!(written > 0, "what was local is exported before the stop");
    assert!(
        !walk_names(&out_dir)
            .iter()
            .any(|n| n.starts_with(".fvfs-export-")),
        "no temporary file is left"
    );

    garage.restart().expect("restart Garage");
    let out = export("/", &out_dir);
    check(&out, 0);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("({written} files already there kept)")),
        "{summary}"
    );
    tree::assert_same(&src, &out_dir);
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_names(&e.path()));
        }
    }
    out
}

fn walk_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            n += walk_files(&e.path());
        } else if t.is_file() {
            n += 1;
        }
    }
    n
}

#[test]
fn recover_brings_back_fifty_versions_and_five_snapshots() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix(work.path(), "fifty");
    let config = s3.config(work.path(), &prefix, SMALL_PACKS);
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    for i in 0..50u64 {
        let (status, body) = d.raw(&request(
            "PUT",
            &format!("/v1/files/dir{}/f{i}", i % 4),
            &[],
            &tree::bytes(i, 1000 + i as usize * 37, true),
        ));
        assert_eq!(status, 201, "{body}");
        if i % 10 == 9 {
            check(
                &d.fvfsc(["snapshot", "create", &format!("s{i}")])
                    .output()
                    .unwrap(),
                0,
            );
        }
    }
    flush(&d);
    drop(d);

    let fresh = recover(&s3, &config, 0);
    let log = fresh.run(["log", "--json"]);
    let versions: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert!(versions.as_array().unwrap().len() >= 50, "{log}");
    let snaps = fresh.run(["snapshot", "list"]);
    for i in [9, 19, 29, 39, 49] {
        assert!(snaps.contains(&format!("s{i}")), "{snaps}");
        // Each snapshot holds exactly the files written before it.
        let dir = work.path().join(format!("s{i}"));
        let out = export(&s3, &fresh, &config, &format!("s{i}"), "/", &dir);
        check(&out, 0);
        for j in 0..50u64 {
            let got = fs::read(dir.join(format!("dir{}/f{j}", j % 4))).ok();
            let want = (j <= i).then(|| tree::bytes(j, 1000 + j as usize * 37, true));
            assert_eq!(got, want, "s{i}: dir{}/f{j}", j % 4);
        }
    }
    check(
        &s3.fvfsd(&fresh, &config, ["fsck", "--all", "--read-data"])
            .output()
            .unwrap(),
        0,
    );
}

/// Whether `haystack` holds `needle`.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Puts the secret file twice (one version dropped by gc) into `store`, a snapshot,
/// and flushes every tier; returns what the bucket (and an encrypted NAS) must not
/// show.
fn fill_secret(s3: &S3Env, config: &Path, store: &Fvfsd) -> Vec<Vec<u8>> {
    let d = s3.serve(store, config);
    // Incompressible, so zstd stores it as is: the clear bucket shows it.
    let content = tree::bytes(4711, 300_000, false);
    for body in [&b"first draft"[..], &content] {
        let req = request("PUT", "/v1/files/photos/secret-name-4711.jpg", &[], body);
        assert_eq!(d.raw(&req).0, 201);
    }
    check(
        &d.fvfsc(["snapshot", "create", "holiday-4711"])
            .output()
            .unwrap(),
        0,
    );
    check(
        &s3.fvfsd(
            store,
            config,
            ["gc", "--keep-last", "1", "--grace-secs", "0"],
        )
        .output()
        .unwrap(),
        0,
    );
    flush(&d);
    // Cut as the store cuts (keyed where a tier is encrypted).
    let first = fvfs_cas::chunker::cut_lengths(&content, d.cut_seed())[0];
    let chunk = fvfs_cas::ChunkId::of(&content[..first]).as_bytes().to_vec();
    vec![
        b"secret-name-4711".to_vec(),
        b"holiday-4711".to_vec(),
        content[100_000..100_064].to_vec(),
        chunk,
    ]
}

#[test]
fn the_bucket_shows_nothing_and_every_changed_object_is_caught() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    // Control: in the clear (encrypt = false) the search finds the secrets, so it can
    // find them.
    let clear_dir = work.path().join("clear");
    fs::create_dir(&clear_dir).unwrap();
    let clear_prefix = prefix(work.path(), "clear");
    let clear = s3.config(
        &clear_dir,
        &clear_prefix,
        &format!("encrypt = false\n{SMALL_PACKS}"),
    );
    let secrets = fill_secret(&s3, &clear, &Fvfsd::new());
    let everything = |prefix: &str| -> Vec<(String, Vec<u8>)> {
        s3.list(&format!("{prefix}/"))
            .into_iter()
            .map(|(key, _)| {
                let bytes = s3.object(&key);
                (key, bytes)
            })
            .collect()
    };
    let clear_objects = everything(&clear_prefix);
    for s in &secrets[..3] {
        assert!(
            clear_objects.iter().any(|(_, b)| holds(b, s)),
            "control: {:?}",
            String::from_utf8_lossy(s)
        );
    }

    let prefix = prefix(work.path(), "sealed");
    let config = s3.config(work.path(), &prefix, SMALL_PACKS);
    fill_secret(&s3, &config, &Fvfsd::new());
    let objects = everything(&prefix);
    let kinds = ["/packs/", "/log/", "/snapshots", "/dropped/", "/keys/"];
    for kind in kinds {
        assert!(
            objects.iter().any(|(k, _)| k.contains(kind)),
            "no {kind} object: {:?}",
            objects.iter().map(|o| &o.0).collect::<Vec<_>>()
        );
    }
    for (key, bytes) in &objects {
        for s in &secrets {
            assert!(
                !holds(bytes, s),
                "{key} shows {:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    // With the right passphrase, everything comes back as it was.
    let fresh = recover(&s3, &config, 0);
    let out_dir = work.path().join("out");
    check(&export(&s3, &fresh, &config, "HEAD", "/", &out_dir), 0);
    assert_eq!(
        fs::read(out_dir.join("photos/secret-name-4711.jpg")).unwrap(),
        tree::bytes(4711, 300_000, false)
    );
    assert!(fresh.run(["snapshot", "list"]).contains("holiday-4711"));
    // A wrong passphrase is refused in one line.
    let wrong = Fvfsd::new();
    let out = s3
        .fvfsd(&wrong, &config, ["recover", "--from-s3"])
        .env("FVFS_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    check(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("wrong passphrase"), "{err}");

    // One byte changed in any kind of object: recover stops, or names what it cannot
    // read; never trusts it.
    for kind in kinds {
        let (key, original) = objects.iter().find(|(k, _)| k.contains(kind)).unwrap();
        let mut changed = original.clone();
        let at = changed.len() / 2;
        changed[at] ^= 0x01;
        s3.put_object(key, &changed);
        let fresh = Fvfsd::new();
        let out = s3
            .fvfsd(&fresh, &config, ["recover", "--from-s3", "--rehydrate"])
            .output()
            .unwrap();
        s3.put_object(key, original);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(
            out.status.code(),
            Some(0),
            "{key} changed, yet recover succeeded: {said}"
        );
        let caught = [
            "authentication failed",
            "does not authenticate",
            "does not match its hash",
            "wrong passphrase",
            "damaged",
        ];
        assert!(caught.iter().any(|c| said.contains(c)), "{key}: {said}");
    }
    // Put back, the bucket recovers again.
    recover(&s3, &config, 0);
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            all.extend(all_bytes(&path));
        } else {
            all.extend(fs::read(&path).unwrap());
        }
    }
    all
}

/// A config with the S3 tier (encrypted) and the NAS tier at `nas`, in `dir`.
fn with_nas(s3: &S3Env, dir: &Path, prefix: &str, nas: &Path, encrypt: bool) -> std::path::PathBuf {
    fs::create_dir_all(dir).unwrap();
    let nas = nas.to_str().unwrap();
    s3.config(
        dir,
        prefix,
        &format!("{SMALL_PACKS}[tiers.nas]\npath = {nas:?}\nencrypt = {encrypt}\n"),
    )
}

/// Runs `fvfsd ARGS` on `store`; its exit code and everything it said.
fn said<const N: usize>(
    s3: &S3Env,
    store: &Fvfsd,
    config: &Path,
    args: [&str; N],
) -> (Option<i32>, String) {
    let out = s3.fvfsd(store, config, args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn an_encrypted_nas_shows_nothing_and_opens_only_under_its_key() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let hidden = |nas: &Path, secrets: &[Vec<u8>]| {
        let all = all_bytes(nas);
        let chunk = fvfs_cas::ChunkId::from_slice(&secrets[3]).unwrap();
        let shown: Vec<String> = [
            &secrets[0][..],
            &secrets[2],
            &secrets[3],
            chunk.to_hex().as_bytes(),
        ]
        .iter()
        .filter(|s| holds(&all, s))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
        shown
    };

    // A share, its bucket prefix, a config naming both, and a store filled through it.
    let filled = |what: &str, encrypt: bool| {
        let nas = work.path().join(what);
        fs::create_dir(&nas).unwrap();
        let prefix = prefix(work.path(), what);
        let config = with_nas(
            &s3,
            &work.path().join("a").join(what),
            &prefix,
            &nas,
            encrypt,
        );
        let store = Fvfsd::new();
        let secrets = fill_secret(&s3, &config, &store);
        (nas, prefix, config, store, secrets)
    };

    // Encrypted from the start: the daemon replicates sealed chunks to the share.
    let (nas, sealed_prefix, sealed, store, secrets) = filled("nas-sealed", true);
    let held: u64 = fs::read_dir(nas.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        held > 300_000,
        "the NAS holds the secret file: {held} bytes"
    );
    assert_eq!(hidden(&nas, &secrets), Vec::<String>::new());
    let (code, text) = said(&s3, &store, &sealed, ["fsck", "--all", "--read-data"]);
    assert_eq!(code, Some(0), "{text}");
    // The same share configured in the clear is refused, not misread.
    let clear = with_nas(&s3, &work.path().join("b"), &sealed_prefix, &nas, false);
    let (code, text) = said(&s3, &store, &clear, ["snapshot", "list"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("set encrypt = true"), "{text}");
    // The bucket and its passphrase open the NAS too: recovered into an empty data
    // directory, fsck reads every NAS copy (claiming them: recover knew only S3's).
    let fresh = recover(&s3, &sealed, 0);
    let (code, text) = said(
        &s3,
        &fresh,
        &sealed,
        ["fsck", "--all", "--read-data", "--repair"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("claimed now"), "{text}");
    let (code, text) = said(&s3, &fresh, &sealed, ["fsck", "--all", "--read-data"]);
    assert_eq!(code, Some(0), "{text}");

    // A NAS filled in the clear: the control shows the secrets, so the search works;
    // encrypt = true refuses it until convert-store seals it in place.
    let (nas, clear_prefix, _, store, secrets) = filled("nas-clear", false);
    // (Ids are kept as bytes, never as hex, in a clear store.)
    assert_eq!(hidden(&nas, &secrets).len(), 3, "control");
    let sealed = with_nas(&s3, &work.path().join("d"), &clear_prefix, &nas, true);
    let (code, text) = said(&s3, &store, &sealed, ["snapshot", "list"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("fvfsd convert-store"), "{text}");
    let (code, text) = said(&s3, &store, &sealed, ["convert-store"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("chunks encrypted"), "{text}");
    assert_eq!(hidden(&nas, &secrets), Vec::<String>::new());
    let (code, text) = said(&s3, &store, &sealed, ["fsck", "--all", "--read-data"]);
    assert_eq!(code, Some(0), "{text}");
    let out = work.path().join("out");
    check(&export(&s3, &store, &sealed, "HEAD", "/", &out), 0);
    assert_eq!(
        fs::read(out.join("photos/secret-name-4711.jpg")).unwrap(),
        tree::bytes(4711, 300_000, false)
    );
}

#[test]
fn passphrases_are_added_changed_and_removed_but_never_the_last() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix(work.path(), "keys");
    let config = s3.config(work.path(), &prefix, "");
    let key = |store: &Fvfsd, pass: &str, new: Option<&str>, args: &[&str]| {
        let mut cmd = s3.fvfsd(store, &config, ["key"]);
        cmd.args(args).env("FVFS_PASSPHRASE", pass);
        if let Some(n) = new {
            cmd.env("FVFS_NEW_PASSPHRASE", n);
        }
        cmd.output().unwrap()
    };
    let ids = |out: &Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    // The first use of an empty bucket makes the master key and its first key object.
    let a = Fvfsd::new();
    let first = key(&a, "first passphrase", None, &["list"]);
    check(&first, 0);
    assert_eq!(ids(&first).len(), 1);
    let added = key(&a, "unused", Some("second passphrase"), &["add"]);
    check(&added, 0);
    let listed = key(&a, "unused", None, &["list"]);
    assert_eq!(ids(&listed).len(), 2);
    // Each passphrase opens the bucket from a data directory that knows nothing.
    for pass in ["first passphrase", "second passphrase"] {
        check(&key(&Fvfsd::new(), pass, None, &["list"]), 0);
    }
    let wrong = key(&Fvfsd::new(), "third passphrase", None, &["list"]);
    check(&wrong, 2);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));
    // passwd replaces the key the current passphrase opens.
    check(
        &key(
            &a,
            "first passphrase",
            Some("third passphrase"),
            &["passwd"],
        ),
        0,
    );
    check(&key(&Fvfsd::new(), "third passphrase", None, &["list"]), 0);
    check(&key(&Fvfsd::new(), "first passphrase", None, &["list"]), 2);
    // Removing: any but the last.
    let now = ids(&key(&a, "unused", None, &["list"]));
    assert_eq!(now.len(), 2);
    check(&key(&a, "unused", None, &["remove", &now[0]]), 0);
    let last = key(&a, "unused", None, &["remove", &now[1]]);
    check(&last, 2);
    assert!(
        String::from_utf8_lossy(&last.stderr).contains("last"),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    // Too short a passphrase is refused.
    check(&key(&a, "unused", Some("short"), &["add"]), 2);
}

/// A store with an encrypted tier cuts chunks with a seed of its own (derived from its
/// master key, recorded with the store): the same file is cut otherwise in two such
/// stores than fastcdc's public cut points, so the sizes of sealed frames do not betray
/// a known file; within a store what fvfsc cuts and what the daemon cuts are the same
/// chunks (dedup unchanged), and a restart keeps the seed; a clear store keeps the
/// public cut points.
#[test]
fn encrypted_stores_cut_their_own_way_and_still_deduplicate() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    // Small enough that its chunks are listed inline in its entry.
    let content = tree::bytes(99, 500_000, false);
    let public = fvfs_cas::chunker::cut_lengths(&content, 0);
    let local = work.path().join("f");
    fs::write(&local, &content).unwrap();
    let lens = |d: &fvfs_tests::daemon::Daemon, path: &str| -> Vec<u64> {
        let (status, body) = d.raw(&request("GET", &format!("/v1/meta{path}"), &[], b""));
        assert_eq!(status, 200, "{body}");
        let meta: serde_json::Value = serde_json::from_str(&body).unwrap();
        let chunks = meta["content"]["chunks"].as_array().expect("inline chunks");
        chunks.iter().map(|c| c["len"].as_u64().unwrap()).collect()
    };
    let mut cut = Vec::new();
    for (name, extra) in [("a", ""), ("b", ""), ("clear", "encrypt = false\n")] {
        let dir = work.path().join(name);
        fs::create_dir(&dir).unwrap();
        let config = s3.config(&dir, &prefix(&dir, name), &format!("{extra}{SMALL_PACKS}"));
        let store = Fvfsd::new();
        let d = s3.serve(&store, &config);
        let by_put = request("PUT", "/v1/files/by-daemon", &[], &content);
        assert_eq!(d.raw(&by_put).0, 201);
        let mut put = d.fvfsc(["put", "/by-client", "--from", local.to_str().unwrap()]);
        check(&put.output().unwrap(), 0);
        let by_daemon = lens(&d, "/by-daemon");
        assert_eq!(
            by_daemon,
            lens(&d, "/by-client"),
            "{name}: client and daemon cut alike"
        );
        assert_eq!(by_daemon.iter().sum::<u64>(), content.len() as u64);
        let seed = d.cut_seed();
        drop(d);
        let d = s3.serve(&store, &config);
        assert_eq!(d.cut_seed(), seed, "{name}: the seed is the store's");
        cut.push((by_daemon, seed));
    }
    let public: Vec<u64> = public.into_iter().map(|l| l as u64).collect();
    let [(a, sa), (b, sb), (clear, sc)] = <[_; 3]>::try_from(cut).unwrap();
    assert_eq!((clear, sc), (public.clone(), 0));
    assert!(sa != 0 && sb != 0 && sa != sb);
    assert!(
        a != public && b != public && a != b,
        "{a:?} {b:?} {public:?}"
    );
}
