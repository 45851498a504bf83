//! A pack store at scale: fills one with N tiny synthetic chunks (default ten million),
//! then reports how long opening it takes (page cache dropped, as root) after a kill
//! and after a clean stop, and the process's RSS after the open, a
//! `has` of a sample, a collection-sized delete (10%) with its sync, the index check
//! fsck runs, and a compaction.
//!
//! Usage: `pack-scale DIR [N]`, twice: the first run fills DIR with a store of N, the
//! second measures it (and leaves it changed, so a third fills again).

use std::time::Instant;

use fvfs_cas::{ChunkId, ChunkStore, PackOptions, PackStore, StoreCheck};

fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Asks the kernel to drop clean cached pages (root only; otherwise the opens run warm).
fn drop_page_cache() {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    if !synced || std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
        eprintln!("pack-scale: page cache not dropped (needs root)");
    }
}

/// Chunk `i`: 24 bytes, unique.
fn chunk(i: u64) -> Vec<u8> {
    format!("synthetic chunk {i:08}").into_bytes()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // What the store logs, on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: pack-scale DIR [N]")?);
    let n: u64 = args.next().map_or(Ok(10_000_000), |s| s.parse())?;
    let opts = PackOptions::default();
    let marker = dir.join("filled");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(&n.to_string()) {
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let store = PackStore::open(&dir, opts)?;
        for i in 0..n {
            let data = chunk(i);
            let frame = bytes::Bytes::from(fvfs_cas::frame::encode(&data));
            store.put(ChunkId::of(&data), frame).await?;
            if i % 100_000 == 99_999 {
                store.sync().await?;
            }
        }
        store.sync().await?;
        println!("fill: {n} chunks in {:.1} s", t.elapsed().as_secs_f64());
        std::fs::write(&marker, n.to_string())?;
        // The measures below are of a fresh process, as a daemon's start is. The
        // store is not closed: the next open finds what a kill after the last sync
        // leaves.
        println!(
            "filled: run `pack-scale {} {n}` again to measure",
            dir.display()
        );
        std::process::exit(0);
    }
    // The first open after the fill replays the index's journal written since its
    // last table, as a daemon's start after it was killed would; the next open is
    // what a start after a clean stop costs.
    let mut store = None;
    for open in [
        "open after a kill (log replayed)",
        "open after a clean stop",
    ] {
        drop(store.take());
        drop_page_cache();
        let before = rss_mb();
        let t = Instant::now();
        store = Some(PackStore::open(&dir, opts)?);
        println!(
            "{open}: {:.2} s, RSS {} MB (before open {before} MB)",
            t.elapsed().as_secs_f64(),
            rss_mb()
        );
    }
    let store = store.expect("opened above");
    // Never a multiple of ten: those are deleted below (and stay so in a reused store).
    let sample: Vec<ChunkId> = (0..10_000)
        .map(|i| ChunkId::of(&chunk((i * (n / 10_000) + 1) % n)))
        .collect();
    let t = Instant::now();
    let found = store.has(&sample).await?;
    assert!(found.iter().all(|f| *f));
    println!(
        "has of 10,000: {:.3} s, RSS {} MB",
        t.elapsed().as_secs_f64(),
        rss_mb()
    );
    let t = Instant::now();
    for i in (0..n).step_by(10) {
        store.delete(&ChunkId::of(&chunk(i))).await?;
    }
    store.sync().await?;
    println!(
        "delete 10% + sync: {:.1} s, RSS {} MB",
        t.elapsed().as_secs_f64(),
        rss_mb()
    );
    let t = Instant::now();
    let problems = store.check_store(StoreCheck::new(false)).await?;
    println!(
        "index check (fsck): {:.1} s, {} problems, RSS {} MB",
        t.elapsed().as_secs_f64(),
        problems.len(),
        rss_mb()
    );
    let t = Instant::now();
    let c = store.compact().await?;
    println!("compact: {:.1} s, {c:?}", t.elapsed().as_secs_f64());
    println!("RSS at the end: {} MB", rss_mb());
    std::fs::remove_file(&marker)?;
    Ok(())
}
