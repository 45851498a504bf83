//! What the bucket and an encrypted NAS show (nothing), passphrases, and encrypted stores cutting their own way.

use super::*;

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
