//! Committing write-backs: at once (fsync, a rename of the file) or queued for the
//! next batch ([`super::batch`]), and the conflict rule both keep.
//!
//! # Invariants
//! - A write-back replaces only what its file held when it was opened here (or was
//!   last committed from here): the commit carries that as its `expect`, which the
//!   daemon checks as it applies the commit. When someone else changed the file
//!   meanwhile, both versions are kept: theirs at the path, this mount's beside it as
//!   `NAME (conflict from DEVICE, TIME).EXT` (UTC), and the mount logs it.
//! - A write-back whose commit failed (the daemon down, say) is kept and retried by
//!   the batches under the same rule until it is committed; the mount's state file
//!   ([`super::super::waiting`]) names it for `fvfsc status`.
//! - Lock order as in [`super::namespace`]: a write-back's lock, then the namespace
//!   lock, then the inode table; the write-back map's lock is never taken while a
//!   write-back's is held; the overlay's is a leaf (nothing is taken under it).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use fvfs_api::client::Failure;
use fvfs_api::commit::{CommitOp, Expect};
use fvfs_api::views::VersionInfo;
use fvfs_api::ErrorCode;
use fvfs_cas::ChunkId;
use fvfs_node::path as fpath;
use rustix::io::Errno;

use super::batch::Wake;
use super::follow::LiveRoot;
use super::inodes::{Inodes, View};
use super::writeback::{Closed, Queued, WriteBack, Writing};
use super::{block_on, lock};
use crate::mount::journal::{self, Record};
use crate::mount::overlay::Overlay;
use crate::mount::remote::{errno, Head, Remote};
use crate::put::{put_file, Attrs, Staged};

/// Link ops giving the file at `path`, committed with `attrs`, the names `names` as
/// well. Its change time is the one the mount showed since the last link (the daemon's
/// clock at the commit would move it under a reader, as a change: tar complains).
pub(super) fn link_ops(names: &[Vec<u8>], path: &[u8], attrs: &Attrs) -> Vec<CommitOp> {
    let from = fvfs_api::path::encode_path(path);
    let ctime_ns = attrs.meta.as_ref().map(|m| m.ctime_ns);
    (names.iter())
        .map(|to| CommitOp::Link {
            from: from.clone(),
            to: fvfs_api::path::encode_path(to),
            replace: false,
            ctime_ns,
        })
        .collect()
}

/// Conflict copies tried under other names before giving up (then retried later).
const CONFLICT_NAMES: u32 = 20;

/// Commits write-backs where their inodes are; shared by the FUSE side and the
/// background retry.
#[derive(Clone)]
pub struct Committer {
    pub(super) rt: tokio::runtime::Handle,
    pub(super) remote: Remote,
    pub(super) inodes: Arc<Mutex<Inodes>>,
    /// Held exclusively by operations that move or remove names (see `namespace`).
    pub(super) names: Arc<RwLock<()>>,
    pub(super) live: Arc<LiveRoot>,
    pub(super) writing: Arc<Writing>,
    /// This machine's name, in conflict copies' names.
    device: Arc<str>,
    /// Told of each write-back queued.
    pub(super) wake: Arc<Wake>,
    /// Held by the batch in progress: one at a time.
    pub(super) batching: Arc<Mutex<()>>,
    /// Changes to folders and attributes waiting for a batch (a leaf lock).
    pub(super) overlay: Arc<Mutex<Overlay>>,
    pub(super) staging: PathBuf,
}

/// Whether the daemon refused a write whose `expect` did not hold.
pub(super) fn refused_as_conflict(f: &Failure) -> bool {
    matches!(f, Failure::Refused { error, .. } if *error == ErrorCode::Conflict)
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Failure>().is_some_and(refused_as_conflict)
}

fn errno_of(e: &anyhow::Error) -> Errno {
    e.downcast_ref::<Failure>().map_or(Errno::IO, errno)
}

/// The name of the conflict copy of `name` made by `device` at `time`; `n` > 1 tells
/// copies of one second apart. The stem is shortened (at a character boundary) to
/// keep the name within 255 bytes.
pub fn conflict_name(name: &[u8], device: &str, time: SystemTime, n: u32) -> Vec<u8> {
    let dot = name.iter().rposition(|&b| b == b'.').filter(|&p| p > 0);
    let (stem, ext) = name.split_at(dot.unwrap_or(name.len()));
    // 2026-12-02T09:30:15Z -> 2026-12-02 093015
    let stamp = humantime::format_rfc3339_seconds(time).to_string();
    let stamp = format!("{} {}", &stamp[..10], stamp[11..19].replace(':', ""));
    let count = if n > 1 {
        format!(", {n}")
    } else {
        String::new()
    };
    let tag = format!(" (conflict from {device}, {stamp}{count})");
    let room = super::NAME_MAX.saturating_sub(tag.len() + ext.len());
    let mut stem = stem.to_vec();
    if stem.len() > room {
        stem.truncate(room);
        while stem.last().is_some_and(|b| b & 0xC0 == 0x80) {
            stem.pop();
        }
        if stem.last().is_some_and(|&b| b >= 0xC0) {
            stem.pop();
        }
    }
    [stem.as_slice(), tag.as_bytes(), ext].concat()
}

fn device_name() -> Arc<str> {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .replace('/', "_");
    if name.is_empty() {
        "this device".into()
    } else {
        name.into()
    }
}

impl Committer {
    pub fn new(
        rt: tokio::runtime::Handle,
        remote: Remote,
        inodes: Arc<Mutex<Inodes>>,
        live: Arc<LiveRoot>,
        staging: PathBuf,
    ) -> Self {
        Self {
            rt,
            remote,
            inodes,
            names: Arc::default(),
            live,
            writing: Arc::new(Writing::new(staging.clone())),
            device: device_name(),
            wake: Arc::default(),
            batching: Arc::default(),
            overlay: Arc::new(Mutex::new(Overlay::new(&staging))),
            staging,
        }
    }

    /// Queues inode `ino`'s closed write-back for the next batch: its journal record
    /// written (so a crash before the batch loses nothing closed), the batcher woken.
    /// Nothing to do if it is clean, queued as it is, or no path any more.
    pub fn queue(&self, ino: u64, w: &mut WriteBack) -> Result<(), Errno> {
        if !w.dirty || w.queued.is_some_and(|q| q.gen == w.gen) {
            return Ok(());
        }
        let Some((View::Live, path)) = lock(&self.inodes).locate(ino) else {
            // No name any more: nothing to commit.
            w.committed(w.gen);
            return Ok(());
        };
        w.settle_base(&self.rt);
        let (len, hash) = w.content_hash().map_err(|_| Errno::IO)?;
        let since = w.queued.map_or_else(SystemTime::now, |q| q.since);
        let staged = w.staged().map_err(|_| Errno::IO)?;
        // The other names given here to a file made here, linked after it.
        let also = match w.made_here {
            true => lock(&self.inodes).alias_paths(ino),
            false => Vec::new(),
        };
        let record = Record {
            path: fvfs_api::path::encode_path(&path),
            attrs: staged.attrs,
            base: staged.expect,
            len,
            blake3: hash.to_hex().to_string(),
            since: crate::mount::waiting::unix_secs(since),
            also: also
                .iter()
                .map(|p| fvfs_api::path::encode_path(p))
                .collect(),
        };
        journal::write(w.local(), &record).map_err(|e| {
            tracing::warn!("cannot journal {}: {e}", fpath::show(&path));
            if e.kind() == std::io::ErrorKind::StorageFull {
                Errno::NOSPC
            } else {
                Errno::IO
            }
        })?;
        w.queued = Some(Queued { gen: w.gen, since });
        self.wake.queued(len);
        Ok(())
    }

    /// Uploads a changed write-back and commits it where inode `ino` is now, if the
    /// file there still holds what this write-back started from (else beside it, as
    /// a conflict copy). One whose inode is no path any more (unlinked, replaced) has
    /// nothing to commit. A failure is noted in the write-back for the retry.
    pub fn write_back(&self, ino: u64, w: &mut WriteBack) -> Result<(), Errno> {
        if !w.dirty {
            return Ok(());
        }
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let Some((View::Live, path)) = lock(&self.inodes).locate(ino) else {
            w.committed(w.gen);
            return Ok(());
        };
        let result = self.commit(ino, w, &path);
        if let Err(e) = &result {
            w.fail(&path, e);
        }
        result.map_err(|e| errno_of(&e))
    }

    fn commit(&self, ino: u64, w: &mut WriteBack, path: &[u8]) -> anyhow::Result<()> {
        w.settle_base(&self.rt);
        let (version, touched, key) = self.put_here(&w.staged()?, path)?;
        if let Some(key) = key {
            w.base = Some(Expect::Content(key.to_hex()));
        }
        self.settled(&version, touched)?;
        if w.made_here && key.is_some() {
            self.link_names(ino, path, &w.attrs)?;
        }
        w.committed(w.gen);
        // The next open must not trust what the kernel cached of the old content.
        lock(&self.inodes).content_unknown(ino);
        Ok(())
    }

    /// The other names inode `ino` was given here (link(2) of a file made here) as
    /// links of `path`, where it was committed: one version, after the file's.
    pub(super) fn link_names(&self, ino: u64, path: &[u8], attrs: &Attrs) -> anyhow::Result<()> {
        let ops = link_ops(&lock(&self.inodes).alias_paths(ino), path, attrs);
        if ops.is_empty() {
            return Ok(());
        }
        match self.commit_ops(format!("link {}", fpath::show(path)), &ops, |_| {}) {
            true => Ok(()),
            false => anyhow::bail!("linking the names of {}: no answer", fpath::show(path)),
        }
    }

    /// Commits `staged` at `path`, or beside it as a conflict copy if the path holds
    /// other than it expects: the version, the paths touched, and the content key if
    /// it went to `path`.
    pub(super) fn put_here(
        &self,
        staged: &Staged,
        path: &[u8],
    ) -> anyhow::Result<(VersionInfo, Vec<Vec<u8>>, Option<ChunkId>)> {
        let api = &self.remote.api;
        let put = put_file(
            api,
            &staged.local,
            path,
            &staged.attrs,
            staged.expect.as_ref(),
        );
        match block_on(&self.rt, put) {
            Ok((version, key)) => Ok((version, vec![path.to_vec()], Some(key))),
            Err(e) if is_conflict(&e) => {
                let (version, copy) = self.keep_beside(staged, path)?;
                tracing::warn!(
                    "{}: changed elsewhere since it was opened here; this device's version is kept as {}",
                    fpath::show(path),
                    fpath::show(&copy)
                );
                Ok((version, vec![copy, path.to_vec()], None))
            }
            Err(e) => Err(e),
        }
    }

    /// Follows this mount's own commit: the live tree moves to it at once.
    pub(super) fn settled(
        &self,
        version: &VersionInfo,
        touched: Vec<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let head = Head::of(version).map_err(|e| anyhow::anyhow!("bad version answer: {e:?}"))?;
        self.live.committed(head, touched);
        Ok(())
    }

    /// Commits `staged` as a new file beside `path`, under the first free conflict
    /// name; returns the version and that path.
    fn keep_beside(&self, staged: &Staged, path: &[u8]) -> anyhow::Result<(VersionInfo, Vec<u8>)> {
        let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
        let (dir, name) = (&path[..cut.max(1)], &path[cut + 1..]);
        let attrs = Attrs {
            link: None,
            ..staged.attrs.clone()
        };
        let now = SystemTime::now();
        for n in 1..=CONFLICT_NAMES {
            let copy = fpath::join(dir, &conflict_name(name, &self.device, now, n));
            let put = put_file(
                &self.remote.api,
                &staged.local,
                &copy,
                &attrs,
                Some(&Expect::Absent),
            );
            match block_on(&self.rt, put) {
                Ok((version, _)) => return Ok((version, copy)),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        anyhow::bail!("no free name for a conflict copy of {}", fpath::show(path))
    }

    /// Drops `ino`'s write-back if nobody uses it and nothing is left to commit (then
    /// its inode goes).
    pub(super) fn drop_if_done(&self, ino: u64, wb: &Arc<Mutex<WriteBack>>) {
        if self.writing.drop_idle(ino, wb) == Closed::Dropped {
            lock(&self.inodes).release(ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn conflict_copies_keep_the_extension_and_fit_in_a_name() {
        // 2026-12-02T09:30:15Z
        let t = UNIX_EPOCH + Duration::from_secs(1_796_203_815);
        assert_eq!(
            conflict_name(b"budget.xlsx", "laptop", t, 1),
            b"budget (conflict from laptop, 2026-12-02 093015).xlsx"
        );
        assert_eq!(
            conflict_name(b"notes", "laptop", t, 2),
            b"notes (conflict from laptop, 2026-12-02 093015, 2)"
        );
        assert_eq!(
            conflict_name(b".bashrc", "pc", t, 1),
            b".bashrc (conflict from pc, 2026-12-02 093015)"
        );
        let long = "é".repeat(127) + ".txt";
        let name = conflict_name(long.as_bytes(), "pc", t, 1);
        assert!(name.len() <= 255);
        let name = String::from_utf8(name).expect("cut at a character boundary");
        assert!(name.ends_with("093015).txt"), "{name}");
    }
}
