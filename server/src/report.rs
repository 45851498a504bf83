//! Read-only commands and their output: status, log, snapshot list, diff, fsck.
//! Human-readable by default, JSON with `--json` for scripts.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Result;
use fvfs_manifest::{diff as tree_diff, ChangeKind, EntryKind, Repo, Version};
use indicatif::HumanBytes;
use serde_json::json;

use crate::home::Home;

fn when(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn version_json(v: &Version) -> serde_json::Value {
    json!({
        "number": v.number,
        "root": v.root.to_hex(),
        "parent": v.parent,
        "time": v.time,
        "kind": v.kind.as_str(),
        "message": v.message,
        "logical_bytes": v.logical_bytes,
    })
}

pub async fn status(home: &Home, json: bool) -> Result<()> {
    let repo = home.repo();
    let head = repo.head()?;
    let versions = head.as_ref().map_or(0, |v| v.number);
    let snapshots = repo.snapshots()?.len();
    let t = repo.totals()?;
    let logical = head.as_ref().map_or(0, |v| v.logical_bytes);
    let data_raw = t.raw_bytes;
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    if json {
        let v = json!({
            "data_dir": home.dir(),
            "versions": versions,
            "head": head.as_ref().map(version_json),
            "snapshots": snapshots,
            "chunks": t.chunks,
            "node_chunks": t.node_chunks,
            "logical_bytes": logical,
            "unique_bytes": data_raw,
            "stored_bytes": t.stored_bytes,
            "dedup_ratio": ratio(logical, data_raw),
            "compression_ratio": ratio(data_raw, t.stored_bytes),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("data dir:    {}", home.dir().display());
    match &head {
        Some(h) => println!(
            "versions:    {versions} (head {} at {})",
            h.number,
            when(h.time)
        ),
        None => println!("versions:    0 (empty store)"),
    }
    println!("snapshots:   {snapshots}");
    println!("chunks:      {} ({} tree nodes)", t.chunks, t.node_chunks);
    println!("logical:     {} at head", HumanBytes(logical));
    println!("unique:      {} in distinct chunks", HumanBytes(data_raw));
    println!("stored:      {} compressed", HumanBytes(t.stored_bytes));
    println!(
        "dedup ratio: {:.2}x (compression {:.2}x, overall {:.2}x)",
        ratio(logical, data_raw),
        ratio(data_raw, t.stored_bytes),
        ratio(logical, t.stored_bytes)
    );
    Ok(())
}

pub fn log(repo: &Repo, limit: Option<usize>, json: bool) -> Result<()> {
    let names = repo.snapshots()?;
    let mut out = Vec::new();
    for v in repo.log().take(limit.unwrap_or(usize::MAX)) {
        out.push(v?);
    }
    if json {
        let list: Vec<_> = out.iter().map(version_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for v in out {
        let tags: Vec<&str> = names
            .iter()
            .filter(|(_, n)| *n == v.number)
            .map(|(s, _)| s.as_str())
            .collect();
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", tags.join(", "))
        };
        println!(
            "{:>6}  {}  {:<8}  {:>10}  {}{}",
            v.number,
            when(v.time),
            v.kind.as_str(),
            HumanBytes(v.logical_bytes).to_string(),
            v.message,
            tags
        );
    }
    Ok(())
}

pub fn snapshots(repo: &Repo, json: bool) -> Result<()> {
    let list = repo.snapshots()?;
    if json {
        let list: Vec<_> = list
            .iter()
            .map(|(name, n)| json!({"name": name, "version": n}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for (name, n) in list {
        let v = repo.version(n)?;
        println!(
            "{name}\tversion {n}\t{}\t{}",
            when(v.time),
            HumanBytes(v.logical_bytes)
        );
    }
    Ok(())
}

pub async fn diff(repo: &Repo, a: &str, b: &str, json: bool) -> Result<()> {
    let (va, vb) = (repo.resolve(a)?, repo.resolve(b)?);
    let changes = tree_diff(repo, va.root, vb.root).await?;
    let letter = |k: ChangeKind| match k {
        ChangeKind::Added => "A",
        ChangeKind::Removed => "D",
        ChangeKind::Modified => "M",
    };
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<_> = changes
            .iter()
            .map(|c| json!({"change": letter(c.kind), "path": String::from_utf8_lossy(&c.path), "dir": c.entry == EntryKind::Dir}))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    // Paths are written as raw bytes: names need not be UTF-8.
    for c in &changes {
        out.write_all(letter(c.kind).as_bytes())?;
        out.write_all(b" ")?;
        out.write_all(&c.path)?;
        if c.entry == EntryKind::Dir {
            out.write_all(b"/")?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub async fn fsck(repo: &Repo, read_data: bool, all: bool) -> Result<ExitCode> {
    let mut versions = Vec::new();
    if all {
        for v in repo.log() {
            versions.push(v?);
        }
    } else {
        versions.extend(repo.head()?);
        for (_, n) in repo.snapshots()? {
            versions.push(repo.version(n)?);
        }
    }
    let report = fvfs_fsck::check(repo, &versions, read_data).await?;
    for p in &report.problems {
        println!("problem: {} (chunk {}, used by {})", p.what, p.id, p.path);
    }
    println!(
        "checked {} versions: {} tree nodes, {} data chunks{}; {} problems",
        report.versions,
        report.nodes,
        report.data_chunks,
        if read_data {
            format!(
                " ({} read and verified)",
                HumanBytes(report.data_bytes_read)
            )
        } else {
            String::new()
        },
        report.problems.len()
    );
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
