//! Blocks beside the S3 tier: the bucket follows the local blocks (by `gc
//! --recompress`, and by itself when idle), a chunk of a block is evicted on its own
//! once the bucket holds it, and promoted back when read from the bucket's blocks.

use super::*;
use fvfs_tests::packs;

/// Uploads only when flushed; small local segments (the rewrite visits them); a local
/// tier evicted down to 256 KiB once over 512 KiB, only when asked.
const CONFIG: &str = "[upload]\nflush_size_mb = 1024\nflush_interval_secs = 3600\n\
     [tiers.local]\nsegment_mb = 1\nhigh_watermark_gb = 0.00048828125\n\
     low_watermark_gb = 0.000244140625\n[eviction]\ninterval_secs = 3600\n";

/// A store whose S3 tier (under a prefix named after `name`, [`CONFIG`]) holds `n`
/// files of source, each its own version, flushed; its work folder, config and files.
struct Replicated {
    _work: tempfile::TempDir,
    prefix: String,
    config: std::path::PathBuf,
    store: Fvfsd,
    files: BTreeMap<String, Vec<u8>>,
}

fn replicated(s3: &S3Env, name: &str, n: u64, seed: u64) -> Replicated {
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix_for(name, &work);
    let config = s3.config(work.path(), &prefix, CONFIG);
    let store = Fvfsd::new();
    let files: BTreeMap<String, Vec<u8>> = (0..n)
        .map(|i| (format!("{name}{i}.rs"), tree::code(seed + i, 40_000)))
        .collect();
    {
        let d = s3.serve(&store, &config);
        for (file, content) in &files {
            put(&d, file, content);
        }
        assert_eq!(flush(&d).0, 200);
    }
    Replicated {
        _work: work,
        prefix,
        config,
        store,
        files,
    }
}

impl Replicated {
    /// `gc --recompress`: what the idle loop does to cold data, done now (the local
    /// rewrite into blocks, the bucket following them); its report.
    fn recompress(&self) -> String {
        let config = self.config.to_str().unwrap();
        self.store.run(["--config", config, "gc", "--recompress"])
    }

    /// fsck of every version, reading every copy, finds nothing.
    fn assert_clean(&self) {
        let config = self.config.to_str().unwrap();
        let out = self
            .store
            .run(["--config", config, "fsck", "--all", "--read-data"]);
        assert!(out.contains(" 0 problems"), "{out}");
    }
}

/// How many blocks the follow uploaded, as gc's report says.
fn uploaded(report: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix("s3 follows the local blocks: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no follow in the report: {report}"))
}

#[test]
fn chunks_of_a_block_are_evicted_one_by_one_and_promoted_back() {
    let s3 = S3Env::shared();
    let r = replicated(&s3, "f", 80, 500);
    let report = &r.recompress();
    let (config, store, files) = (&r.config, &r.store, &r.files);
    let global = ["--config", config.to_str().unwrap()];
    let chunks = store.home.path().join("chunks");
    let blocks = || -> usize {
        packs::records(&chunks)
            .iter()
            .filter(|r| r.members.len() > 1)
            .count()
    };
    assert!(blocks() > 0, "no block made: {report}");
    // The bucket followed: what is evicted below comes back from S3's blocks.
    assert!(uploaded(report) > 0, "{report}");

    let d = s3.serve(store, config);
    let before = tier(&d, "local")["chunks"].as_u64().unwrap();
    let evicted = evict(&d);
    assert!(evicted["evicted_chunks"].as_u64().unwrap() > 0, "{evicted}");
    let after = tier(&d, "local")["chunks"].as_u64().unwrap();
    assert!(after < before, "{after} of {before}");
    // Blocks are still on disk holding members the local tier no longer counts:
    // chunks of a block were evicted while others of it stayed.
    assert!(blocks() > 0);
    assert!(
        packs::ids(&chunks).len() as u64 > after,
        "no block kept a member that was evicted"
    );
    // Every file reads whole: evicted members come back from the bucket, promoted.
    for (name, content) in files {
        let got = d.fvfsc(["cat", &format!("/{name}")]).output().unwrap();
        fvfs_tests::check(&got, 0);
        assert!(got.stdout == *content, "{name} reads back whole");
    }
    // Old versions' tree nodes were evicted too, and no `cat` reads them.
    let metrics = d.raw(&request("GET", "/metrics", &[], b"")).1;
    let promoted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fvfs_promoted_chunks "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no promotion count: {metrics}"));
    let evicted = evicted["evicted_chunks"].as_u64().unwrap();
    assert!(
        promoted > 0 && promoted <= evicted,
        "{promoted} of {evicted}"
    );
    let fsck = store.run(global.iter().chain(&["fsck", "--read-data"]));
    assert!(fsck.contains(" 0 problems"), "{fsck}");
}

/// Once the idle rewrite packed the local tier's cold chunks into blocks, the bucket
/// follows (issue 47): the blocks are uploaded whole, the same job gives back the
/// frames they superseded and says so in status, and the bucket alone gives every
/// file back (recover, export, `fsck --read-data` reading members of blocks).
#[test]
fn the_bucket_follows_the_local_blocks_and_alone_gives_everything_back() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix_for("follow", &work);
    let config = s3.config(
        work.path(),
        &prefix,
        "[upload]\nflush_size_mb = 1024\nflush_interval_secs = 3600\n\
         [tiers.local]\nsegment_mb = 1\n[gc]\nrecompress_idle_secs = 1\n",
    );
    let store = Fvfsd::new();
    let files: BTreeMap<String, Vec<u8>> = (0..80u64)
        .map(|i| (format!("f{i}.rs"), tree::code(700 + i, 40_000)))
        .collect();
    let d = s3.serve(&store, &config);
    for (name, content) in &files {
        put(&d, name, content);
    }
    assert_eq!(flush(&d).0, 200);
    assert_all_in_s3(&d);
    let bucket = || s3.packs(&prefix).iter().map(|(_, size)| size).sum::<u64>();
    let before = bucket();

    // The job's record is the signal: a round that uploaded blocks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let uploaded = |summary: &str| -> u64 {
        let (_, rest) = summary.split_once("looked at, ").unwrap_or(("", "0"));
        rest.split(' ').next().unwrap_or("0").parse().unwrap_or(0)
    };
    let summary = loop {
        if let Some((ok, summary)) = d.last_tasks().get("s3 follows local blocks") {
            assert!(*ok, "{summary}");
            if uploaded(summary) > 0 {
                break summary.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bucket did not follow the local blocks within 120 s: {:?}",
            d.last_tasks()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // The frames superseded are given back by the same job's compaction (the packs
    // it emptied deleted, those mostly superseded rewritten), not left for a gc.
    assert!(summary.contains("packs: "), "{summary}");
    let after = bucket();
    assert!(
        after * 10 < before * 9,
        "the bucket holds {after} bytes, {before} before ({summary})"
    );
    assert_all_in_s3(&d);
    drop(d);
    drop(store);
    recover_and_compare(&config, &s3, &BTreeMap::from([("HEAD", files)]));
}

/// A damaged byte in a block the bucket followed: `fsck --read-data` names the files
/// whose chunks it hides, `--repair` puts them back from the local tier, and the
/// bucket alone then gives every file back.
#[test]
fn a_damaged_block_in_the_bucket_is_named_and_repaired_from_the_local_tier() {
    let s3 = S3Env::shared();
    let r = replicated(&s3, "d", 40, 900);
    let report = r.recompress();
    let (prefix, config, store, files) = (&r.prefix, &r.config, &r.store, &r.files);
    assert!(uploaded(&report) > 0, "{report}");
    // The largest pack holds the blocks; one byte in its middle flipped.
    let packs = s3.packs(prefix);
    let (key, size) = packs.iter().max_by_key(|(_, size)| *size).unwrap();
    let mut object = s3.object(key);
    object[(*size / 2) as usize] ^= 0x10;
    s3.put_object(key, &object);

    let fsck = |extra: &[&str], code: i32| {
        let mut cmd = store.cmd(["--config", config.to_str().unwrap(), "fsck"]);
        cmd.args(["--all", "--read-data"]).args(extra);
        s3.apply(&mut cmd);
        let out = cmd.output().unwrap();
        fvfs_tests::check(&out, code);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let found = fsck(&[], 1);
    assert!(found.contains("problem: s3: "), "{found}");
    assert!(found.contains("block"), "the block named: {found}");
    assert!(
        files.keys().any(|f| found.contains(&format!("/{f}"))),
        "{found}"
    );
    let repaired = fsck(&["--repair"], 0);
    assert!(repaired.contains("0 problems,"), "{repaired}");
    assert!(fsck(&[], 0).contains(" 0 problems, 0 repaired"));
    recover_and_compare(config, &s3, &BTreeMap::from([("HEAD", files.clone())]));
}

/// `gc --recompress` killed as the bucket follows the local blocks: once a pack of
/// blocks is stored but before any location names it (`s3-pack-stored`), and once the
/// compaction after it has moved and located what it moved but not yet deleted the old
/// packs (`s3-compact-moved`). After each, fsck of every version reading every copy is
/// clean and the bucket alone gives every file back; a gc run to its end then leaves
/// the bucket smaller than the frames were.
#[test]
fn a_follow_killed_at_each_step_loses_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let s3 = S3Env::shared();
    let r = replicated(&s3, "k", 40, 1300);
    let (prefix, config, store, files) = (&r.prefix, &r.config, &r.store, &r.files);
    let global = ["--config", config.to_str().unwrap()];
    let bucket = || s3.packs(prefix).iter().map(|(_, size)| size).sum::<u64>();
    let frames = bucket();
    for point in ["s3-pack-stored", "s3-compact-moved"] {
        let mut cmd = store.cmd(global.iter().chain(&["gc", "--recompress"]));
        s3.apply(&mut cmd);
        let out = cmd.env("FVFS_FAILPOINT", point).output().unwrap();
        assert_eq!(
            out.status.signal(),
            Some(6),
            "gc should have died at {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        r.assert_clean();
        recover_and_compare(config, &s3, &BTreeMap::from([("HEAD", files.clone())]));
    }
    let report = r.recompress();
    r.assert_clean();
    let after = bucket();
    assert!(after * 10 < frames * 9, "{frames} -> {after}: {report}");
    recover_and_compare(config, &s3, &BTreeMap::from([("HEAD", files.clone())]));
}
