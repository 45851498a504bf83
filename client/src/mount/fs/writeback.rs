//! Files being written through the mount: one local write-back file per inode.
//!
//! # Invariants
//! - There is at most one write-back per inode; getting or creating it is one atomic
//!   step, so two opens for writing share it.
//! - A write-back is keyed by inode, not path: it is committed wherever its inode is
//!   when the commit happens (after any rename of it or of a directory above it), and
//!   never once its inode is detached (unlinked or replaced) — it stays readable and
//!   writable through its handles.
//! - A write-back lives while handles have it open, and after the last close while its
//!   changes are not committed (a failed commit is retried in the background, see
//!   [`super::commit`]). Whoever closes it last commits what others changed after their
//!   own commit.
//! - It is dropped once, by whoever removes it from the map (then its inode is let go).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fuser::Errno;
use fvfs_api::commit::Expect;

use super::lock;
use crate::put::Attrs;

/// Why a write-back is not committed yet.
#[derive(Clone, Debug)]
pub struct Failed {
    /// When its first failed commit was.
    pub since: SystemTime,
    /// Where it was to be committed.
    pub path: Vec<u8>,
    pub error: String,
}

pub struct WriteBack {
    pub file: File,
    local: PathBuf,
    /// Mode, mtime and meta it is committed with.
    pub attrs: Attrs,
    /// What its path held when it was opened or last committed from here: what a
    /// commit may replace (`None`: whatever is there).
    pub base: Option<Expect>,
    /// Changed since the last commit.
    pub dirty: bool,
    /// Its last commit failed: retried in the background.
    pub failed: Option<Failed>,
    /// Filled with its initial content (the first opener does it; others wait).
    loaded: bool,
    /// Open handles (and setattr calls in progress) using it.
    users: u64,
}

/// The write-backs of a mount, by inode.
pub struct Writing {
    staging: PathBuf,
    next: AtomicU64,
    files: Mutex<HashMap<u64, Arc<Mutex<WriteBack>>>>,
}

impl Writing {
    pub fn new(staging: PathBuf) -> Self {
        Self {
            staging,
            next: AtomicU64::new(0),
            files: Mutex::default(),
        }
    }

    /// `ino`'s write-back, if it has one.
    pub fn get(&self, ino: u64) -> Option<Arc<Mutex<WriteBack>>> {
        lock(&self.files).get(&ino).cloned()
    }

    /// `ino`'s write-back, with one more user; created empty (`attrs`) if missing, and
    /// filled by `load` if nobody has filled it yet. `created` runs once, when a new
    /// write-back joins the map (the caller holds the inode for it).
    pub fn open(
        &self,
        ino: u64,
        attrs: Attrs,
        created: impl FnOnce(),
        load: impl FnOnce(&mut WriteBack) -> Result<(), Errno>,
    ) -> Result<Arc<Mutex<WriteBack>>, Errno> {
        let wb = {
            let mut files = lock(&self.files);
            let wb = match files.get(&ino) {
                Some(wb) => wb.clone(),
                None => {
                    let local = self.staging.join(format!(
                        "{}-{}",
                        std::process::id(),
                        self.next.fetch_add(1, Ordering::Relaxed)
                    ));
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&local)
                        .map_err(|_| Errno::EIO)?;
                    let wb = Arc::new(Mutex::new(WriteBack {
                        file,
                        local,
                        attrs,
                        base: None,
                        dirty: false,
                        failed: None,
                        loaded: false,
                        users: 0,
                    }));
                    files.insert(ino, wb.clone());
                    created();
                    wb
                }
            };
            lock(&wb).users += 1;
            wb
        };
        let mut w = lock(&wb);
        if !w.loaded {
            if let Err(e) = load(&mut w) {
                drop(w);
                self.close(ino, &wb);
                return Err(e);
            }
            w.loaded = true;
        }
        drop(w);
        Ok(wb)
    }

    /// The inodes being written.
    pub fn inodes(&self) -> Vec<u64> {
        lock(&self.files).keys().copied().collect()
    }

    /// Every write-back, with its inode.
    pub fn all(&self) -> Vec<(u64, Arc<Mutex<WriteBack>>)> {
        lock(&self.files)
            .iter()
            .map(|(ino, wb)| (*ino, wb.clone()))
            .collect()
    }

    /// One user of `ino`'s write-back is done; the write-back is dropped (with its
    /// local file) if it was the last and nothing is left to commit.
    pub fn close(&self, ino: u64, wb: &Arc<Mutex<WriteBack>>) -> Closed {
        let mut files = lock(&self.files);
        let mut w = lock(wb);
        w.users = w.users.saturating_sub(1);
        settle(&mut files, &w, ino, wb)
    }

    /// Drops `ino`'s write-back if nobody uses it and nothing is left to commit.
    pub fn drop_idle(&self, ino: u64, wb: &Arc<Mutex<WriteBack>>) -> Closed {
        let mut files = lock(&self.files);
        let w = lock(wb);
        settle(&mut files, &w, ino, wb)
    }
}

/// What closing a write-back left.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Others still use it.
    InUse,
    /// Nobody uses it, but it holds changes not committed yet.
    Uncommitted,
    /// Gone, local file and all, by this call: the inode may go.
    Dropped,
    /// Dropped before, by another call.
    Gone,
}

fn settle(
    files: &mut HashMap<u64, Arc<Mutex<WriteBack>>>,
    w: &WriteBack,
    ino: u64,
    wb: &Arc<Mutex<WriteBack>>,
) -> Closed {
    if w.users > 0 {
        return Closed::InUse;
    }
    if w.dirty && w.loaded {
        return Closed::Uncommitted;
    }
    if !files.get(&ino).is_some_and(|f| Arc::ptr_eq(f, wb)) {
        return Closed::Gone;
    }
    files.remove(&ino);
    let _ = std::fs::remove_file(&w.local);
    Closed::Dropped
}

impl WriteBack {
    pub fn local(&self) -> &Path {
        &self.local
    }

    /// Nobody uses it and it holds changes not committed yet: only the retry will
    /// commit them.
    pub fn is_idle(&self) -> bool {
        self.users == 0 && self.dirty && self.loaded
    }
}
