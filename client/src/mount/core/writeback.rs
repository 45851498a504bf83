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
//!   changes are not committed. Closed changes are queued (their journal record written,
//!   [`crate::mount::journal`]) and committed by the next batch ([`super::batch`]);
//!   fsync commits at once ([`super::commit`]).
//! - `gen` counts changes: a batch commits what it uploaded only if `gen` did not move
//!   meanwhile, so nothing written after the upload is marked committed.
//! - The content a write-back was opened over is fetched at its first use (a read, a
//!   write, a resize other than to nothing, a commit), never at open: a file opened
//!   only to be truncated (O_TRUNC, which the kernel sends as a resize after the open)
//!   is never downloaded. Nothing reads or writes its local file before that.
//! - It is dropped once, by whoever removes it from the map (then its inode is let go);
//!   its local file and journal record are emptied and reused after a rest ([`REST`]),
//!   never made and freed per write.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fvfs_api::commit::Expect;
use rustix::io::Errno;

use super::lock;
use crate::put::{Attrs, Staged};

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
    file: File,
    local: PathBuf,
    /// Mode, mtime and meta it is committed with.
    pub attrs: Attrs,
    /// What its path held when it was opened or last committed from here: what a
    /// commit may replace (`None`: whatever is there).
    pub base: Option<Expect>,
    /// `base` of a file made here, being asked of the daemon.
    pub asked: Option<tokio::task::JoinHandle<Expect>>,
    /// Made here and never committed: the daemon does not have it.
    pub made_here: bool,
    /// Changed since the last commit.
    pub dirty: bool,
    /// Its last commit failed: retried in the background.
    pub failed: Option<Failed>,
    /// Changes so far (content or attributes).
    pub gen: u64,
    /// Closed since its last change, journaled, waiting for the next batch.
    pub queued: Option<Queued>,
    /// The hash of its content while written from the start, in order, and how far.
    hash: Option<(blake3::Hasher, u64)>,
    /// Set up by its first opener (attributes, base; others wait).
    loaded: bool,
    /// The content it was opened over, not fetched yet.
    unfilled: Option<Unfilled>,
    /// Open handles (and setattr calls in progress) using it.
    users: u64,
    /// Dropped: nothing left to commit, its staging file emptied for reuse. Whoever
    /// found it a moment before (a stat waiting while its batch committed it) reads
    /// the tree instead, which holds what it committed.
    pub dropped: bool,
}

/// Fetches the content a write-back was opened over, in order, into the sink it is
/// given; called again after a failure.
pub type Fill =
    Box<dyn Fn(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> + Send>;

/// Content a write-back holds but has not fetched: its length, and how to fetch it.
struct Unfilled {
    len: u64,
    fill: Fill,
}

/// A write-back closed and journaled as of change `gen`.
#[derive(Clone, Copy, Debug)]
pub struct Queued {
    pub gen: u64,
    /// When it was first queued (kept while it waits, through later closes).
    pub since: SystemTime,
}

/// The write-backs of a mount, by inode.
pub struct Writing {
    staging: PathBuf,
    next: AtomicU64,
    files: Mutex<HashMap<u64, Arc<Mutex<WriteBack>>>>,
    /// Staging files (and their records) emptied for reuse: making and freeing a file
    /// per write slows a file system such as ext4 down as it frees them.
    free: Mutex<VecDeque<(Instant, PathBuf)>>,
}

/// Staging files kept for reuse, at most.
const FREE_FILES: usize = 4096;
/// How long a staging file rests before reuse: whoever still holds its old write-back
/// (a stat that found it a moment before it was dropped) is long done with it by then.
const REST: Duration = Duration::from_secs(2);

impl Writing {
    pub fn new(staging: PathBuf) -> Self {
        Self {
            staging,
            next: AtomicU64::new(0),
            files: Mutex::default(),
            free: Mutex::default(),
        }
    }

    /// `ino`'s write-back, if it has one.
    pub fn get(&self, ino: u64) -> Option<Arc<Mutex<WriteBack>>> {
        lock(&self.files).get(&ino).cloned()
    }

    /// `ino`'s write-back, with one more user; created empty (`attrs`) if missing, and
    /// set up by `load` if nobody has set it up yet. `created` runs once, when a new
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
                    let (local, file) = self.staging_file().map_err(|_| Errno::IO)?;
                    let wb = Arc::new(Mutex::new(WriteBack {
                        file,
                        local,
                        attrs,
                        base: None,
                        asked: None,
                        made_here: false,
                        dirty: false,
                        failed: None,
                        gen: 0,
                        queued: None,
                        hash: Some((blake3::Hasher::new(), 0)),
                        loaded: false,
                        unfilled: None,
                        users: 0,
                        dropped: false,
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

    /// An empty staging file: one emptied for reuse, or a new one.
    fn staging_file(&self) -> std::io::Result<(PathBuf, File)> {
        let reuse = {
            let mut free = lock(&self.free);
            match free.front() {
                Some((at, _)) if at.elapsed() >= REST => free.pop_front().map(|(_, p)| p),
                _ => None,
            }
        };
        if let Some(local) = reuse {
            let open = OpenOptions::new().read(true).write(true).open(&local);
            if let Ok(file) = open {
                return Ok((local, file));
            }
        }
        let local = self.staging.join(format!(
            "{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&local)?;
        Ok((local, file))
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
        let closed = settle(&mut files, &w, ino, wb);
        self.release(&closed, &mut w);
        closed
    }

    /// A write-back just dropped: its staging file and record emptied, kept for reuse.
    fn release(&self, closed: &Closed, w: &mut WriteBack) {
        if *closed != Closed::Dropped {
            return;
        }
        w.dropped = true;
        crate::mount::journal::clear(&w.local);
        let mut free = lock(&self.free);
        if free.len() < FREE_FILES && w.file.set_len(0).is_ok() {
            free.push_back((Instant::now(), w.local.clone()));
        } else {
            crate::mount::journal::remove(&w.local);
            let _ = std::fs::remove_file(&w.local);
        }
    }

    /// Drops `ino`'s write-back if nobody uses it and nothing is left to commit.
    pub fn drop_idle(&self, ino: u64, wb: &Arc<Mutex<WriteBack>>) -> Closed {
        let mut files = lock(&self.files);
        let mut w = lock(wb);
        let closed = settle(&mut files, &w, ino, wb);
        self.release(&closed, &mut w);
        closed
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
    Closed::Dropped
}

impl WriteBack {
    pub fn local(&self) -> &Path {
        &self.local
    }

    /// It holds `len` bytes that `fill` fetches at their first use.
    pub fn fill_later(&mut self, len: u64, fill: Fill) {
        self.unfilled = Some(Unfilled { len, fill });
    }

    /// The content it was opened over is not fetched yet.
    pub fn unfilled(&self) -> bool {
        self.unfilled.is_some()
    }

    /// Fetches the content it was opened over, if not done yet (into its local file,
    /// still empty: nothing touches the file before this).
    fn fill(&mut self) -> std::io::Result<()> {
        let Some(unfilled) = &self.unfilled else {
            return Ok(());
        };
        let (file, mut at, mut h) = (&self.file, 0u64, blake3::Hasher::new());
        let fetched = (unfilled.fill)(&mut |data| {
            std::os::unix::fs::FileExt::write_all_at(file, data, at)?;
            h.update(data);
            at += data.len() as u64;
            Ok(())
        });
        if let Err(e) = fetched {
            // Left empty, to be fetched again by the next use.
            self.file.set_len(0)?;
            return Err(e);
        }
        self.hash = Some((h, at));
        self.unfilled = None;
        Ok(())
    }

    /// Its content's length (fetched or not).
    pub fn size(&self) -> std::io::Result<u64> {
        match &self.unfilled {
            Some(unfilled) => Ok(unfilled.len),
            None => Ok(self.file.metadata()?.len()),
        }
    }

    /// Reads into `buf` at `offset`: the bytes read.
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.fill()?;
        std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
    }

    /// Writes `data` at `offset` (a change only the caller marks).
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.fill()?;
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)?;
        self.hash = match self.hash.take() {
            Some((mut h, at)) if at == offset => {
                h.update(data);
                Some((h, at + data.len() as u64))
            }
            _ => None,
        };
        self.gen += 1;
        Ok(())
    }

    /// Cuts or extends the content to `size` bytes (cut to nothing, what it was
    /// opened over is never fetched).
    pub fn set_len(&mut self, size: u64) -> std::io::Result<()> {
        match size {
            0 => self.unfilled = None,
            _ => self.fill()?,
        }
        self.file.set_len(size)?;
        self.hash = (size == 0).then(|| (blake3::Hasher::new(), 0));
        self.touch();
        Ok(())
    }

    /// `base` settled: the daemon's answer awaited if it was asked.
    pub fn settle_base(&mut self, rt: &tokio::runtime::Handle) {
        if let Some(asked) = self.asked.take() {
            // Unknown: a commit that replaces nothing, so nothing is lost.
            self.base = Some(super::block_on(rt, asked).unwrap_or(Expect::Absent));
        }
    }

    /// Others than the caller use it (open handles).
    pub fn shared(&self) -> bool {
        self.users > 1
    }

    /// What a commit of it sends: its file, its attributes (without the link of names
    /// given here to a file the daemon has not seen: those are committed as links
    /// after it, [`super::commit::Committer::link_names`]) and what it replaces; its
    /// content fetched first if need be.
    pub fn staged(&mut self) -> std::io::Result<Staged> {
        self.fill()?;
        let mut attrs = self.attrs.clone();
        if self.made_here {
            attrs.link = None;
        }
        Ok(Staged {
            local: self.local.clone(),
            attrs,
            expect: self.base.clone(),
        })
    }

    /// Marks a change (content or attributes) to commit.
    pub fn touch(&mut self) {
        self.dirty = true;
        self.gen += 1;
    }

    /// The content's length and BLAKE3 hash: kept up as it is written in order, read
    /// back from the local file otherwise.
    pub fn content_hash(&mut self) -> std::io::Result<(u64, blake3::Hash)> {
        self.fill()?;
        let len = self.file.metadata()?.len();
        if let Some((h, at)) = &self.hash {
            if *at == len {
                return Ok((len, h.finalize()));
            }
        }
        let (at, h) = crate::mount::journal::hash_of(&self.file)?;
        let digest = h.finalize();
        self.hash = Some((h, at));
        Ok((len, digest))
    }

    /// Its commit to `path` failed: kept for the next batch, and named by status.
    pub fn fail(&mut self, path: &[u8], error: &anyhow::Error) {
        tracing::warn!("writing {}: {error:#}", fvfs_node::path::show(path));
        let since = self
            .failed
            .as_ref()
            .map_or_else(SystemTime::now, |f| f.since);
        self.failed = Some(Failed {
            since,
            path: path.to_vec(),
            error: format!("{error:#}"),
        });
    }

    /// Committed as of change `gen`: clean if nothing changed since.
    pub fn committed(&mut self, gen: u64) {
        if self.made_here {
            // Names given here are links on the daemon now, with an id of its own.
            self.attrs.link = None;
        }
        self.made_here = false;
        if self.gen == gen {
            self.dirty = false;
            self.queued = None;
            crate::mount::journal::clear(&self.local);
        }
        self.failed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write-back its batch committed and dropped while a stat held it: the holder
    /// sees it dropped (its file is already emptied for reuse, so its size would be 0).
    #[test]
    fn a_write_back_dropped_while_held_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let writing = Writing::new(dir.path().to_path_buf());
        let wb = writing
            .open(7, Attrs::default(), || {}, |_| Ok(()))
            .unwrap();
        {
            let mut w = lock(&wb);
            w.write_at(&[1; 100], 0).unwrap();
            w.touch();
        }
        assert_eq!(writing.close(7, &wb), Closed::Uncommitted);
        let held = writing.get(7).unwrap();
        assert!(!lock(&held).dropped);
        let gen = lock(&wb).gen;
        lock(&wb).committed(gen);
        assert_eq!(writing.drop_idle(7, &wb), Closed::Dropped);
        let w = lock(&held);
        assert!(w.dropped);
        assert_eq!(w.size().unwrap(), 0, "its file emptied for reuse");
        assert!(writing.get(7).is_none());
    }
}
