//! Blocks beside the S3 tier: a chunk of a block is evicted on its own once the
//! bucket holds it, and promoted back when read.

use super::*;
use fvfs_tests::packs;

/// Uploads only when flushed; small local segments (the rewrite visits them); a local
/// tier evicted down to 256 KiB once over 512 KiB, only when asked.
const CONFIG: &str = "[upload]\nflush_size_mb = 1024\nflush_interval_secs = 3600\n\
     [tiers.local]\nsegment_mb = 1\nhigh_watermark_gb = 0.00048828125\n\
     low_watermark_gb = 0.000244140625\n[eviction]\ninterval_secs = 3600\n";

#[test]
fn chunks_of_a_block_are_evicted_one_by_one_and_promoted_back() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = format!(
        "blocks-{}",
        work.path().file_name().unwrap().to_string_lossy()
    );
    let config = s3.config(work.path(), &prefix, CONFIG);
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let files: BTreeMap<String, Vec<u8>> = (0..80u64)
        .map(|i| (format!("f{i}.rs"), tree::code(500 + i, 40_000)))
        .collect();
    {
        let d = s3.serve(&store, &config);
        for (name, content) in &files {
            put(&d, name, content);
        }
        assert_eq!(flush(&d).0, 200);
    }
    // What the idle rewrite does to cold data, done now.
    let report = store.run(global.iter().chain(&["gc", "--recompress"]));
    let chunks = store.home.path().join("chunks");
    let blocks = || -> usize {
        packs::records(&chunks)
            .iter()
            .filter(|r| r.members.len() > 1)
            .count()
    };
    assert!(blocks() > 0, "no block made: {report}");

    let d = s3.serve(&store, &config);
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
    for (name, content) in &files {
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
