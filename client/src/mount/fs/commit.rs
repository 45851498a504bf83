//! Committing write-backs, and retrying those that could not be committed.
//!
//! # Invariants
//! - A write-back replaces only what its file held when it was opened here (or was
//!   last committed from here): the commit carries that as its `expect`, which the
//!   daemon checks as it applies the commit. When someone else changed the file
//!   meanwhile, both versions are kept: theirs at the path, this mount's beside it as
//!   `NAME (conflict from DEVICE, TIME).EXT` (UTC), and the mount logs it.
//! - A write-back whose commit failed (the daemon down, say) is kept and retried in
//!   the background every [`RETRY`] under the same rule until it is committed; the
//!   mount's state file ([`super::super::waiting`]) names it for `fvfsc status`.
//! - Lock order as in [`super::namespace`]: a write-back's lock, then the namespace
//!   lock, then the inode table; the write-back map's lock is never taken while a
//!   write-back's is held.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use fuser::Errno;
use fvfs_api::client::Failure;
use fvfs_api::commit::Expect;
use fvfs_api::ErrorCode;
use fvfs_node::path as fpath;

use super::follow::LiveRoot;
use super::inodes::{Inodes, View};
use super::writeback::{Closed, Failed, WriteBack, Writing};
use super::{block_on, lock};
use crate::mount::remote::{errno, Head, Remote};
use crate::mount::waiting::{MountState, Waiting};
use crate::put::{put_file, Attrs};

/// How often write-backs that could not be committed are tried again.
pub const RETRY: Duration = Duration::from_secs(2);
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
}

/// Whether `e` is the daemon's refusal of a write whose `expect` did not hold.
fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<Failure>(),
        Some(Failure::Refused { error, .. }) if *error == ErrorCode::Conflict
    )
}

fn errno_of(e: &anyhow::Error) -> Errno {
    e.downcast_ref::<Failure>().map_or(Errno::EIO, errno)
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
            writing: Arc::new(Writing::new(staging)),
            device: device_name(),
        }
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
            w.dirty = false;
            w.failed = None;
            return Ok(());
        };
        let result = self.commit(ino, w, &path);
        if let Err(e) = &result {
            tracing::warn!("writing {}: {e:#}", fpath::show(&path));
            let since = w.failed.as_ref().map_or_else(SystemTime::now, |f| f.since);
            w.failed = Some(Failed {
                since,
                path: path.clone(),
                error: format!("{e:#}"),
            });
        }
        result.map_err(|e| errno_of(&e))
    }

    fn commit(&self, ino: u64, w: &mut WriteBack, path: &[u8]) -> anyhow::Result<()> {
        w.file.sync_data()?;
        let api = &self.remote.api;
        let put = put_file(api, w.local(), path, &w.attrs, w.base.as_ref());
        let (version, mut touched) = match block_on(&self.rt, put) {
            Ok((version, key)) => {
                w.base = Some(Expect::Content(key.to_hex()));
                (version, vec![path.to_vec()])
            }
            Err(e) if is_conflict(&e) => {
                let (version, copy) = self.keep_beside(w, path)?;
                tracing::warn!(
                    "{}: changed elsewhere since it was opened here; this device's version is kept as {}",
                    fpath::show(path),
                    fpath::show(&copy)
                );
                (version, vec![copy])
            }
            Err(e) => return Err(e),
        };
        touched.push(path.to_vec());
        let head = Head::of(&version).map_err(|e| anyhow::anyhow!("bad version answer: {e:?}"))?;
        self.live.committed(head, touched);
        w.dirty = false;
        w.failed = None;
        // The next open must not trust what the kernel cached of the old content.
        lock(&self.inodes).content_unknown(ino);
        Ok(())
    }

    /// Commits the write-back as a new file beside `path`, under the first free
    /// conflict name; returns the version and that path.
    fn keep_beside(
        &self,
        w: &WriteBack,
        path: &[u8],
    ) -> anyhow::Result<(fvfs_api::views::VersionInfo, Vec<u8>)> {
        let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
        let (dir, name) = (&path[..cut.max(1)], &path[cut + 1..]);
        let attrs = Attrs {
            link: None,
            ..w.attrs.clone()
        };
        let now = SystemTime::now();
        for n in 1..=CONFLICT_NAMES {
            let copy = fpath::join(dir, &conflict_name(name, &self.device, now, n));
            let put = put_file(
                &self.remote.api,
                w.local(),
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

    /// Commits what `ino`'s write-back, used by nobody now, has uncommitted; drops it
    /// (and lets its inode go) once nothing is left.
    pub fn commit_idle(&self, ino: u64, wb: &Arc<Mutex<WriteBack>>) -> Result<(), Errno> {
        let committed = self.write_back(ino, &mut lock(wb));
        if self.writing.drop_idle(ino, wb) == Closed::Dropped {
            lock(&self.inodes).release(ino);
        }
        committed
    }

    /// Tries every write-back nobody uses that is still uncommitted; returns those
    /// still waiting (failed, whether used or not).
    pub fn retry(&self) -> Vec<Waiting> {
        let mut waiting = Vec::new();
        for (ino, wb) in self.writing.all() {
            let idle = {
                let w = lock(&wb);
                w.failed.is_some() && w.is_idle()
            };
            if idle {
                let _ = self.commit_idle(ino, &wb);
            }
            let w = lock(&wb);
            if let Some(f) = &w.failed {
                waiting.push(Waiting::new(&f.path, f.since, &f.error, w.local()));
            }
        }
        waiting
    }

    /// Retries write-backs every [`RETRY`] until `stop` is dropped, recording each
    /// pass in the mount's state file; one last try at the end.
    pub fn run_retries(&self, state: &MountState, stop: &mpsc::Receiver<()>) {
        for passes in 1.. {
            let ended = !matches!(
                stop.recv_timeout(RETRY),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            let waiting = self.retry();
            if let Err(e) = state.write(&waiting, passes, ended) {
                tracing::warn!("cannot record the writes waiting: {e}");
            }
            if ended {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

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
