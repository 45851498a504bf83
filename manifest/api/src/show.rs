//! Human-readable output, shared by `fvfsd` and `fvfsc`.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use crate::reports::{Devices, DiskUsage, FsckReport, GcReport, Status};
use crate::views::{ChangeInfo, EntryInfo, PathChange, SnapshotInfo, StatusInfo, VersionInfo};

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

/// The versions in which one path changed, newest first.
pub fn history(changes: &[PathChange]) -> String {
    let mut out = String::new();
    for c in changes {
        let v = &c.version;
        writeln!(
            out,
            "{:>6}  {}  {}  {:<7}  {:>10}  {}",
            v.number,
            time(v.time),
            c.change,
            c.kind,
            bytes(c.size),
            v.message
        )
        .ok();
    }
    out
}

pub fn snapshots(list: &[SnapshotInfo]) -> String {
    list.iter()
        .map(|s| {
            format!(
                "{}\tversion {}\t{}\t{}{}\n",
                s.name,
                s.version,
                time(s.time),
                bytes(s.logical_bytes),
                if s.automatic { "\tautomatic" } else { "" }
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

/// An fsck report: the problems, one line each, then the summary line.
pub fn fsck(r: &FsckReport) -> String {
    let mut out: String = r
        .stores
        .iter()
        .map(|p| {
            let fixed = if p.repaired { "repaired" } else { "problem" };
            let used = p
                .path
                .as_deref()
                .map(|path| format!(" (used by {path})"))
                .unwrap_or_default();
            format!("{fixed}: {}: {}{used}\n", p.tier, p.what)
        })
        .collect();
    out += &r
        .problems
        .iter()
        .map(|p| {
            let tier = p
                .tier
                .as_deref()
                .map(|t| format!("{t}: "))
                .unwrap_or_default();
            let fixed = if p.repaired { "repaired" } else { "problem" };
            format!(
                "{fixed}: {tier}{} (chunk {}, used by {})\n",
                p.what, p.id, p.path
            )
        })
        .collect::<String>();
    let read = if r.data_bytes_read > 0 {
        format!(" ({} read and verified)", bytes(r.data_bytes_read))
    } else {
        String::new()
    };
    let repaired = r.problems.iter().filter(|p| p.repaired).count()
        + r.stores.iter().filter(|p| p.repaired).count();
    if r.unclaimed > 0 {
        out.push_str(&format!(
            "{} copies held by a tier whose bit did not claim them, {} claimed now\n",
            r.unclaimed, r.claimed
        ));
    }
    out.push_str(&format!(
        "checked {} versions: {} tree nodes, {} data chunks{read}; {} problems, {repaired} repaired\n",
        r.versions,
        r.nodes,
        r.data_chunks,
        r.problems.len() + r.stores.len() - repaired,
    ));
    out
}

/// What `rollback` prints, from the store or through a daemon, in fvfsd and fvfsc.
pub fn rolled_back(new: &VersionInfo, target: &VersionInfo) -> String {
    format!(
        "version {}: rolled back to version {}\n",
        new.number, target.number
    )
}

/// A gc report: versions, chunks and bytes freed per tier, compaction, what failed.
pub fn gc(r: &GcReport) -> String {
    let would = if r.dry_run { "would be " } else { "" };
    let mut out = format!(
        "versions: {} kept, {} {would}dropped{}\n",
        r.versions_kept,
        r.versions_dropped.len(),
        match (r.versions_dropped.first(), r.versions_dropped.last()) {
            (Some(a), Some(b)) if a != b => format!(" ({a}..{b})"),
            (Some(a), _) => format!(" ({a})"),
            _ => String::new(),
        }
    );
    out.push_str(&format!(
        "chunks: {} reachable, {} {would}freed, {} unreachable but kept (recent or in use)\n",
        r.reachable, r.chunks_freed, r.kept_recent
    ));
    for t in &r.tiers {
        out.push_str(&format!(
            "  {}: {} chunks, {} {would}freed\n",
            t.tier,
            t.chunks,
            bytes(t.bytes)
        ));
    }
    if r.resumed > 0 {
        out.push_str(&format!(
            "finished {} chunks of an interrupted collection\n",
            r.resumed
        ));
    }
    if r.orphans > 0 {
        out.push_str(&format!(
            "deleted {} stray copies no record named\n",
            r.orphans
        ));
    }
    if let Some(c) = &r.compaction {
        out.push_str(&format!(
            "s3 packs: {} ({}): {} {would}deleted, {} {would}rewritten ({} moved), {} {would}freed\n",
            c.packs,
            bytes(c.pack_bytes),
            c.packs_deleted,
            c.packs_rewritten,
            bytes(c.bytes_moved),
            bytes(c.bytes_freed)
        ));
    }
    for (tier, c) in r.segments.iter().filter(|(_, c)| c.segments > 0) {
        out.push_str(&format!(
            "{tier} segments: {} rewritten ({} moved), {} freed\n",
            c.segments,
            bytes(c.moved_bytes),
            bytes(c.freed_bytes)
        ));
    }
    for (tier, c) in &r.recompressed {
        out.push_str(&format!(
            "{tier} segments recompressed: {} rewritten ({} -> {}), {} left as they were\n",
            c.rewritten,
            bytes(c.before_bytes),
            bytes(c.after_bytes),
            c.kept
        ));
    }
    if let Some(f) = &r.followed {
        out.push_str(&format!(
            "s3 follows the local blocks: {} uploaded ({} chunks, {}), {} waiting for replication\n",
            f.blocks,
            f.chunks,
            bytes(f.bytes),
            f.waiting
        ));
    }
    if let Some(why) = &r.s3_skipped {
        out.push_str(&format!("s3 packs not compacted: {why}\n"));
    }
    for f in &r.failed {
        out.push_str(&format!("not deleted (next gc retries): {f}\n"));
    }
    out
}

/// The daemon's status: who serves, the store, each tier, running tasks.
pub fn daemon_status(base: &str, s: &Status) -> String {
    let d = &s.daemon;
    let mut out = format!(
        "daemon:      {base} (fvfsd {}, node {}, up {} s)\n",
        d.version, d.node_id, d.uptime_secs
    );
    if !d.fingerprint.is_empty() {
        out += &format!("certificate: {}\n", d.fingerprint);
    }
    out += &status(&s.store);
    for t in &s.tiers {
        let state = if t.available {
            "available"
        } else {
            "UNAVAILABLE"
        };
        let disk = t
            .disk_bytes
            .map_or(String::new(), |d| format!(" ({} on disk)", bytes(d)));
        writeln!(
            out,
            "tier {}:  {}{disk} in {} chunks, {state}, queue {}",
            t.name,
            bytes(t.bytes),
            t.chunks,
            t.queue_depth
        )
        .ok();
    }
    if let Some(a) = &s.auto_snapshots {
        let last = a.taken.as_deref().unwrap_or("none taken yet");
        writeln!(
            out,
            "automatic:   a snapshot every {} when changed; newest {last}",
            a.every
        )
        .ok();
        if let Some(e) = &a.last_error {
            writeln!(out, "automatic:   last round failed: {e}").ok();
        }
    }
    for w in s.workers.iter().filter(|w| w.last_error.is_some()) {
        let why = w.last_error.as_deref().unwrap_or_default();
        writeln!(out, "worker {}: last round failed: {why}", w.name).ok();
    }
    for m in &s.maintenance {
        let total = if m.total > 0 {
            format!("/{}", m.total)
        } else {
            String::new()
        };
        writeln!(
            out,
            "running:     {} {}: {}{total} ({} read)",
            m.task,
            m.phase,
            m.done,
            bytes(m.bytes)
        )
        .ok();
    }
    out
}

/// Disk usage below a path.
pub fn du(u: &DiskUsage) -> String {
    format!(
        "{}\t{} logical in {} files, {} unique after dedup\ntiers:\tlocal {}, nas {}, s3 {}\n",
        u.path,
        bytes(u.logical_bytes),
        u.files,
        bytes(u.unique_bytes),
        bytes(u.tiers.local),
        bytes(u.tiers.nas),
        bytes(u.tiers.s3)
    )
}

/// Daemons and clients seen.
pub fn devices(d: &Devices) -> String {
    let mut out = String::new();
    for daemon in &d.daemons {
        writeln!(
            out,
            "daemon  {}  port {}  {:?}",
            daemon.name, daemon.port, daemon.addresses
        )
        .ok();
    }
    for c in &d.clients {
        writeln!(out, "client  {}  {}", c.address, c.agent).ok();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::Compaction;

    #[test]
    fn the_gc_report_names_the_pack_count_once() {
        let report = GcReport {
            compaction: Some(Compaction {
                packs: 7,
                pack_bytes: 3 << 20,
                packs_deleted: 2,
                packs_rewritten: 1,
                bytes_freed: 1 << 20,
                bytes_moved: 1 << 10,
            }),
            ..GcReport::default()
        };
        let text = gc(&report);
        assert!(
            text.contains(
                "s3 packs: 7 (3.00 MiB): 2 deleted, 1 rewritten (1.00 KiB moved), 1.00 MiB freed\n"
            ),
            "{text}"
        );
    }
}
