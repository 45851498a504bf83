//! Power cuts: the daemon's data directory and its NAS tier live on `fvfs-powerloss`, a
//! FUSE file system that keeps every write in memory until its file is fsynced (and
//! every new name until its folder is), and drops all of it on command. A random
//! workload (HTTP PUT and DELETE, `fvfsc put -r`, migrations through the daemon,
//! snapshots, collections, some of them recompressing segments; the daemon's databases
//! writing their memtables out as tables every 64 KiB) runs until a SIGKILL at a random
//! moment; then the power is cut and the daemon restarted on what the "disk"
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

mod cuts;
mod kills;

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

/// A daemon whose databases write their memtables out as tables every 64 KiB instead
/// of every 8 MiB, so that cuts meet the writes of tables, the journals dropped after
/// them, and their compactions.
fn start_flushing(store: &Fvfsd, global: &[&str]) -> Daemon {
    let mut cmd = store.cmd(global);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("FVFS_KV_MEMTABLE_BYTES", "65536");
    Daemon::spawn(cmd)
}

/// The newest table of database folder `dir` (tables are numbered upward), if any.
fn newest_table(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir.join("partitions/kv/segments"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse().ok())
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
