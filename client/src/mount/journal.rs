//! The journal of write-backs closed on the mount and not committed yet. Beside each
//! staging file `<pid>-<n>` (its content) lies a record `<pid>-<n>.rec` (JSON): where
//! it goes, what it is committed with, what it may replace, and its content's length
//! and BLAKE3 hash. A mount that was killed, or a machine that lost power, leaves them
//! behind; the next mount that uses the cache adopts them ([`leftovers`]): a record
//! whose file still holds that content is committed (beside its path as a conflict
//! copy, where the path changed meanwhile); one whose content is not whole (a power
//! cut took pages never synced) is never committed, only moved to `damaged/` and
//! named by `fvfsc status`.
//!
//! # Invariants
//! - A record is written whole under a temporary name and renamed into place, after
//!   the content it describes; it is removed once that content is committed, or its
//!   inode unlinked, before the staging file goes.
//! - Records are not synced: a write never fsynced may be lost with a power cut, as on
//!   any disk (fsync commits to the daemon), but the hash keeps half a file from ever
//!   being committed.
//! - Files of a live process (another mount using the cache) are never touched.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fvfs_api::commit::Expect;
use serde::{Deserialize, Serialize};

use super::waiting::{another_runs, Waiting};
use crate::put::{Attrs, Staged};

/// A write-back closed and not committed yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Where it is committed (percent-encoded).
    pub path: String,
    pub attrs: Attrs,
    /// What its path may hold for the commit to replace it.
    pub base: Option<Expect>,
    pub len: u64,
    pub blake3: String,
    /// When it was first queued (Unix seconds).
    pub since: i64,
    /// Its other names (percent-encoded): a file made here and linked before it was
    /// committed, linked after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

impl PartialEq for Attrs {
    fn eq(&self, o: &Self) -> bool {
        (self.mode, self.mtime_ns, &self.meta, self.link) == (o.mode, o.mtime_ns, &o.meta, o.link)
    }
}
impl Eq for Attrs {}

fn record_of(local: &Path) -> PathBuf {
    local.with_extension("rec")
}

/// Records `rec` for the staging file `local`, replacing its last record in place (one
/// file per staging file, reused: a file system that makes and frees an inode per
/// record slows down as it frees them, ext4 by seconds per thousand files). The record
/// is written over the old one, then the file cut to it: a reader takes the first JSON
/// value, so what a kill between the two leaves reads as the new record.
pub fn write(local: &Path, rec: &Record) -> io::Result<()> {
    let raw = serde_json::to_vec(rec)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(record_of(local))?;
    file.write_all_at(&raw, 0)?;
    file.set_len(raw.len() as u64)
}

/// Empties the record of `local` (nothing to adopt), keeping its file for the next use.
pub fn clear(local: &Path) {
    let cleared = std::fs::OpenOptions::new()
        .write(true)
        .open(record_of(local))
        .and_then(|f| f.set_len(0));
    match cleared {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(
                "cannot clear the journal record of {}: {e}",
                local.display()
            );
        }
        _ => {}
    }
}

/// Removes the record of `local`, if any.
pub fn remove(local: &Path) {
    match std::fs::remove_file(record_of(local)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(
                "cannot remove the journal record of {}: {e}",
                local.display()
            );
        }
        _ => {}
    }
}

/// The record in `raw`: its first JSON value (`None`: an empty record, nothing closed).
fn parse(raw: &[u8]) -> Result<Option<Record>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut values = serde_json::Deserializer::from_slice(raw).into_iter::<Record>();
    match values.next() {
        Some(Ok(rec)) => Ok(Some(rec)),
        Some(Err(e)) => Err(format!("record: {e}")),
        None => Ok(None),
    }
}

/// A write-back a mount left, whole, to commit.
#[derive(Debug)]
pub struct Leftover {
    pub staged: Staged,
    pub path: Vec<u8>,
    /// Its other names, to link once it is committed.
    pub also: Vec<Vec<u8>>,
    pub since: i64,
}

/// Where write-backs that were not whole after a crash are kept.
fn damaged_dir(staging: &Path) -> PathBuf {
    staging.join("damaged")
}

/// The write-backs left in `staging` by mounts no longer running, whole ones to
/// commit (in the order they were queued); those not whole are moved to `damaged/`,
/// and staging files never closed (no record) are removed.
pub fn leftovers(staging: &Path) -> io::Result<Vec<Leftover>> {
    let mut found = Vec::new();
    for f in std::fs::read_dir(staging)? {
        let path = f?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if super::overlay::is_journal(name) {
            continue;
        }
        if another_runs(pid) {
            continue;
        }
        if name.contains('.') {
            // A record without its file, or a temporary one: nothing to adopt.
            if !path.with_extension("").exists() || name.ends_with(".next") {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        match adopt(&path) {
            Ok(Some(left)) => found.push(left),
            Ok(None) => {
                remove(&path);
                let _ = std::fs::remove_file(&path);
            }
            Err(why) => {
                tracing::warn!(
                    "{} was not committed before its mount ended and is not whole ({why}): kept in {}",
                    path.display(),
                    damaged_dir(staging).display()
                );
                std::fs::create_dir_all(damaged_dir(staging))?;
                let aside = damaged_dir(staging).join(name);
                std::fs::rename(record_of(&path), aside.with_extension("rec"))?;
                std::fs::rename(&path, aside)?;
            }
        }
    }
    found.sort_by_key(|l| l.since);
    Ok(found)
}

/// The leftover of staging file `local`: none if it was never closed (no record),
/// else whole or why not.
fn adopt(local: &Path) -> Result<Option<Leftover>, String> {
    let raw = match std::fs::read(record_of(local)) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let Some(rec) = parse(&raw)? else {
        return Ok(None);
    };
    let file = std::fs::File::open(local).map_err(|e| e.to_string())?;
    let (len, hash) = hash_of(&file).map_err(|e| e.to_string())?;
    if len != rec.len || hash.finalize().to_hex().as_str() != rec.blake3 {
        return Err(format!("{len} bytes where {} were closed", rec.len));
    }
    let path = fvfs_api::path::decode_path(&rec.path);
    Ok(Some(Leftover {
        staged: Staged {
            local: local.to_owned(),
            attrs: rec.attrs,
            expect: rec.base,
        },
        path,
        also: rec
            .also
            .iter()
            .map(|p| fvfs_api::path::decode_path(p))
            .collect(),
        since: rec.since,
    }))
}

/// The length of `file` and its content's hash state, read with positioned reads.
pub fn hash_of(file: &std::fs::File) -> io::Result<(u64, blake3::Hasher)> {
    let (mut h, mut buf, mut at) = (blake3::Hasher::new(), vec![0; 256 << 10], 0u64);
    loop {
        match file.read_at(&mut buf, at)? {
            0 => return Ok((at, h)),
            n => {
                h.update(&buf[..n]);
                at += n as u64;
            }
        }
    }
}

/// The write-backs kept aside as not whole, for `fvfsc status`.
pub fn damaged(staging: &Path) -> Vec<Waiting> {
    let Ok(files) = std::fs::read_dir(damaged_dir(staging)) else {
        return Vec::new();
    };
    let mut out: Vec<Waiting> = files
        .filter_map(|f| {
            let local = f.ok()?.path();
            let rec = parse(&std::fs::read(record_of(&local)).ok()?).ok()??;
            (local.extension().is_none()).then(|| Waiting {
                path: String::from_utf8_lossy(&fvfs_api::path::decode_path(&rec.path)).into_owned(),
                since: rec.since,
                error: "not committed: its content was not whole after a crash (delete the kept file when done)".into(),
                local,
            })
        })
        .collect();
    out.sort_by(|a, b| a.local.cmp(&b.local));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stages `content` as staging file `name`, recorded with `recorded` (its hash and
    /// length are what the record says was closed).
    fn stage(staging: &Path, name: &str, content: &[u8], recorded: Option<&[u8]>) -> PathBuf {
        let local = staging.join(name);
        std::fs::write(&local, content).unwrap();
        if let Some(closed) = recorded {
            let rec = Record {
                path: format!("/docs/{name}"),
                attrs: Attrs {
                    mode: 0o640,
                    ..Attrs::default()
                },
                base: Some(Expect::Absent),
                len: closed.len() as u64,
                blake3: blake3::hash(closed).to_hex().to_string(),
                since: 1_796_000_000,
                also: Vec::new(),
            };
            write(&local, &rec).unwrap();
        }
        local
    }

    #[test]
    fn whole_write_backs_are_adopted_torn_ones_kept_aside_live_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path();
        let me = std::process::id();
        let whole = stage(
            staging,
            &format!("{me}-1"),
            b"closed whole",
            Some(b"closed whole"),
        );
        // A power cut kept the record but not all of the content.
        let torn = stage(staging, &format!("{me}-2"), b"clos", Some(b"closed whole"));
        // Never closed: no record, nothing to adopt.
        let open = stage(staging, &format!("{me}-3"), b"half", None);
        // A running process's (pid 1 always runs).
        let live = stage(staging, "1-7", b"in use", Some(b"in use"));

        let left = leftovers(staging).unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].path, format!("/docs/{me}-1").into_bytes());
        assert_eq!(left[0].staged.local, whole);
        assert_eq!(left[0].staged.attrs.mode, 0o640);
        assert_eq!(left[0].staged.expect, Some(Expect::Absent));
        assert!(!torn.exists() && !open.exists());
        assert!(live.exists() && live.with_extension("rec").exists());
        let damaged = damaged(staging);
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].path, format!("/docs/{me}-2"));
        assert_eq!(std::fs::read(&damaged[0].local).unwrap(), b"clos");

        // A record written again in place over a longer one reads as the new one.
        let mut rec = parse(&std::fs::read(whole.with_extension("rec")).unwrap())
            .unwrap()
            .unwrap();
        rec.path = "/s".into();
        write(&whole, &rec).unwrap();
        assert_eq!(leftovers(staging).unwrap()[0].path, b"/s");
        // Emptied for reuse: nothing to adopt, and a dead mount's leftovers go.
        clear(&whole);
        assert!(leftovers(staging).unwrap().is_empty());
        assert!(!whole.exists() && !whole.with_extension("rec").exists());
        let whole = stage(staging, &format!("{me}-9"), b"closed", Some(b"closed"));
        // Committed: the record goes first, then the file; nothing is adopted twice.
        remove(&whole);
        std::fs::remove_file(&whole).unwrap();
        assert!(leftovers(staging).unwrap().is_empty());
    }
}
