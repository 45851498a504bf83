//! Human-readable output, shared by `fvfsd` and `fvfsc`.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use crate::views::{ChangeInfo, EntryInfo, SnapshotInfo, StatusInfo, VersionInfo};

/// `1.5 GiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// RFC 3339 time, UTC, to the second.
pub fn time(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        .to_string()
}

pub fn status(s: &StatusInfo) -> String {
    let mut out = String::new();
    match &s.head {
        Some(h) => writeln!(
            out,
            "versions:    {} (head {} at {})",
            s.versions,
            h.number,
            time(h.time)
        ),
        None => writeln!(out, "versions:    0 (empty store)"),
    }
    .ok();
    writeln!(out, "snapshots:   {}", s.snapshots).ok();
    writeln!(
        out,
        "chunks:      {} ({} tree nodes)",
        s.chunks, s.node_chunks
    )
    .ok();
    writeln!(out, "logical:     {} at head", bytes(s.logical_bytes)).ok();
    writeln!(
        out,
        "unique:      {} in distinct chunks",
        bytes(s.unique_bytes)
    )
    .ok();
    writeln!(out, "stored:      {} compressed", bytes(s.stored_bytes)).ok();
    writeln!(
        out,
        "dedup ratio: {:.2}x (compression {:.2}x, overall {:.2}x)",
        s.dedup_ratio,
        s.compression_ratio,
        s.dedup_ratio * s.compression_ratio
    )
    .ok();
    out
}

pub fn log(versions: &[VersionInfo]) -> String {
    let mut out = String::new();
    for v in versions {
        let tags = if v.snapshots.is_empty() {
            String::new()
        } else {
            format!(" [{}]", v.snapshots.join(", "))
        };
        writeln!(
            out,
            "{:>6}  {}  {:<8}  {:>10}  {}{}",
            v.number,
            time(v.time),
            v.kind,
            bytes(v.logical_bytes),
            v.message,
            tags
        )
        .ok();
    }
    out
}

pub fn snapshots(list: &[SnapshotInfo]) -> String {
    list.iter()
        .map(|s| {
            format!(
                "{}\tversion {}\t{}\t{}\n",
                s.name,
                s.version,
                time(s.time),
                bytes(s.logical_bytes)
            )
        })
        .collect()
}

pub fn diff(changes: &[ChangeInfo]) -> String {
    changes
        .iter()
        .map(|c| format!("{} {}{}\n", c.change, c.path, if c.dir { "/" } else { "" }))
        .collect()
}

/// `ls -l`-style line of an entry.
pub fn entry_long(e: &EntryInfo) -> String {
    let kind = match e.kind.as_str() {
        "dir" => 'd',
        "symlink" => 'l',
        _ => '-',
    };
    let perms: String = (0..9)
        .map(|i| {
            if e.mode & (0o400 >> i) != 0 {
                ['r', 'w', 'x'][i % 3]
            } else {
                '-'
            }
        })
        .collect();
    let target = e
        .target
        .as_ref()
        .map(|t| format!(" -> {t}"))
        .unwrap_or_default();
    format!(
        "{kind}{perms} {:>10}  {}  {}{target}",
        bytes(e.size),
        time(e.mtime_ns.div_euclid(1_000_000_000)),
        e.name
    )
}
