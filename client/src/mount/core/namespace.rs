//! Changes to the live tree: write-backs committed where their inode is now, new
//! names and removals (renames and links are in [`super::moves`], attribute changes
//! in [`super::attrs`]).
//!
//! # Invariants
//! - Operations that move or remove names (rename, unlink, rmdir) hold the namespace
//!   lock exclusively from staging their op (or the daemon's commit of it) to the inode
//!   table's update; batches and commits at
//!   an inode's path hold it shared from finding the path to the commit. So no commit
//!   lands at a path its inode has just left (what brought removed files back).
//! - Lock order: a write-back's lock, then the namespace lock, then the inode table.
//!   Whoever holds the namespace lock takes no write-back's lock nor the write-back
//!   map's.

use std::sync::{Arc, Mutex};

use fvfs_api::commit::{CommitOp, Expect};
use fvfs_api::path::{decode_path, encode_path};
use fvfs_node::{path as fpath, Entry, EntryKind, Link, Meta};
use rustix::io::Errno;

use super::inodes::View;
use super::view::Attr;
use super::writeback::{Closed, WriteBack};
use super::{check_name, lock, now_ns, Core};
use crate::put::Attrs;

impl Core {
    pub(super) fn writable(&self, view: &View) -> Result<(), Errno> {
        if *view != View::Live || self.read_only {
            return Err(Errno::ROFS);
        }
        Ok(())
    }

    /// Stages `op` for the next batch ([`crate::mount::overlay`]): the mount shows what
    /// it makes of `path` at once (`old`: what `path` shows now, if anything).
    pub(super) fn stage(
        &self,
        op: CommitOp,
        path: &[u8],
        old: Option<&Entry>,
    ) -> Result<(), Errno> {
        let entry = match (&op, old) {
            (CommitOp::Remove { .. }, _) => None,
            // New attributes of a folder: its node (and so its content) stays.
            (
                CommitOp::Mkdir {
                    mode,
                    mtime_ns,
                    meta,
                    ..
                },
                Some(old),
            ) if old.kind == EntryKind::Dir => Some(Entry {
                mode: *mode,
                mtime_ns: *mtime_ns,
                meta: meta.clone().map(Box::new),
                ..old.clone()
            }),
            (
                CommitOp::Mkdir {
                    mode,
                    mtime_ns,
                    meta,
                    ..
                },
                _,
            ) => Some(Entry {
                meta: meta.clone().map(Box::new),
                ..Entry::dir(*mode, *mtime_ns)
            }),
            (op, _) => Some(op.to_entry().ok().flatten().ok_or(Errno::IO)?.1),
        };
        lock(&self.commits.overlay)
            .stage(op, path, entry, old.is_none())
            .map_err(|e| {
                tracing::warn!("cannot journal a change of {}: {e}", fpath::show(path));
                Errno::IO
            })?;
        self.commits.wake.queued(0);
        Ok(())
    }

    /// Commits `ops` at once (callers commit what is staged and queued first, before
    /// they take the namespace lock: [`super::batch`] takes it too).
    pub(super) fn commit(&self, what: &str, ops: Vec<CommitOp>) -> Result<(), Errno> {
        let touched: Vec<Vec<u8>> = (ops.iter().flat_map(CommitOp::paths))
            .map(decode_path)
            .collect();
        let head = self.block(self.remote.commit(what.to_owned(), ops))?;
        self.live.committed(head, touched);
        Ok(())
    }

    /// Commits a changed write-back where inode `ino` is now (see [`super::commit`]).
    pub(super) fn write_back(&self, ino: u64, w: &mut WriteBack) -> Result<(), Errno> {
        self.commits.write_back(ino, w)
    }

    /// Inode `ino`'s write-back, with one more user: the one in progress, or a new one
    /// over the file's content (fetched at its first use, [`WriteBack::fill_later`]).
    pub(super) fn open_write(&self, ino: u64) -> Result<Arc<Mutex<WriteBack>>, Errno> {
        let located = lock(&self.inodes).locate(ino);
        let (view, path) = match located {
            Some(at) => at,
            // Unlinked while open: only its write-back, if any, is left.
            None if self.writing.get(ino).is_some() => (View::Live, Vec::new()),
            None => return Err(Errno::NOENT),
        };
        self.writable(&view)?;
        // Before the write-back map is locked: a store of this inode in progress is
        // never waited for under it.
        self.pusher.writing(ino);
        self.writing.open(
            ino,
            Attrs::default(),
            || lock(&self.inodes).hold(ino),
            |w| {
                let entry = self.entry(&view, &path)?;
                match entry.kind {
                    EntryKind::File => {}
                    EntryKind::Dir => return Err(Errno::ISDIR),
                    _ => return Err(Errno::INVAL),
                }
                w.attrs = attrs_of(&entry);
                // What this write changes (unless it replaces it whole first,
                // [`Self::replaced_whole`]).
                w.base = Some(Expect::Content(entry.content_key().to_hex()));
                let (remote, rt) = (self.remote.clone(), self.rt.clone());
                let size = entry.size;
                w.fill_later(
                    size,
                    Box::new(move |sink| {
                        let chunks = super::block_on(&rt, remote.file_chunks(&entry))?;
                        for (_, c) in chunks.iter() {
                            sink(&super::block_on(&rt, remote.chunk(c.id))?)?;
                        }
                        Ok(())
                    }),
                );
                Ok(())
            },
        )
    }

    /// Write-back `w` of `path` is being cut to nothing before any of its content was
    /// used: the file is replaced whole, over whatever the daemon holds now (or will,
    /// once what is staged there is committed), not over what it held at open.
    pub(super) fn replaced_whole(&self, w: &mut WriteBack, path: &[u8]) {
        let Some(Expect::Content(shown)) = w.base.clone() else {
            return;
        };
        w.base = Some(match self.staged_base(path) {
            Some(staged) => staged,
            None => self.block(self.remote.replacing(path.to_vec(), Expect::Content(shown))),
        });
    }

    /// What a file committed at `path` replaces when a change of `path` is staged
    /// (committed first, in the same batch): nothing if it removes the path (or the
    /// path is in a folder made here), else the file it shows there; `None` when
    /// nothing of `path` is staged (the daemon is asked).
    pub(super) fn staged_base(&self, path: &[u8]) -> Option<Expect> {
        match lock(&self.commits.overlay).get(path)? {
            None => Some(Expect::Absent),
            Some((e, _)) if e.kind == EntryKind::File => {
                Some(Expect::Content(e.content_key().to_hex()))
            }
            Some(_) => None,
        }
    }

    /// One user of `ino`'s write-back is done, with `so_far` the outcome of its own
    /// work (queued, when it changed something). A write-back gone lets its inode go.
    pub(super) fn close_write(
        &self,
        ino: u64,
        wb: &Arc<Mutex<WriteBack>>,
        so_far: Result<(), Errno>,
    ) -> Result<(), Errno> {
        if self.writing.close(ino, wb) == Closed::Dropped {
            lock(&self.inodes).release(ino);
        }
        so_far
    }

    /// A new file `name` in `parent`, being written here (committed at its first
    /// flush, fsync or close).
    pub(super) fn create_file(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        owner: (u32, u32),
    ) -> Result<(u64, Arc<Mutex<WriteBack>>), Errno> {
        check_name(name)?;
        let (view, dir) = self.locate(parent)?;
        self.writable(&view)?;
        // The parent must still exist (and the daemon answer) before anything is staged.
        if self.entry(&view, &dir)?.kind != EntryKind::Dir {
            return Err(Errno::NOTDIR);
        }
        let ino = lock(&self.inodes).child(parent, name, EntryKind::File, None, true);
        let now = now_ns();
        let attrs = Attrs {
            mode,
            mtime_ns: now,
            meta: Some(new_meta(owner, now)),
            link: None,
        };
        let path = fpath::join(&dir, name);
        let staged = self.staged_base(&path);
        self.pusher.writing(ino);
        let wb = self.writing.open(
            ino,
            attrs,
            || lock(&self.inodes).hold(ino),
            |w| {
                w.touch();
                w.made_here = true;
                if staged.is_some() {
                    w.base = staged;
                    return Ok(());
                }
                // What the daemon holds there when the file is made here is what it
                // replaces: asked now, answered while the file is written.
                let remote = self.remote.clone();
                let asked = async move { remote.replacing(path, Expect::Absent).await };
                w.asked = Some(self.rt.spawn(asked));
                Ok(())
            },
        );
        match wb {
            Ok(wb) => {
                self.touch_dir(&view, &dir);
                Ok((ino, wb))
            }
            Err(e) => {
                lock(&self.inodes).forget(ino, 1);
                Err(e)
            }
        }
    }

    /// Makes a new entry `name` in live directory `parent` by committing what `op`
    /// builds for its path (refused if the name exists); its inode and attributes.
    pub(super) fn make(
        &self,
        parent: u64,
        name: &[u8],
        what: &str,
        op: impl FnOnce(&[u8]) -> Result<CommitOp, Errno>,
    ) -> Result<Attr, Errno> {
        check_name(name)?;
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let (view, dir) = self.locate(parent)?;
        self.writable(&view)?;
        let path = fpath::join(&dir, name);
        if self.entry(&view, &path).is_ok() {
            return Err(Errno::EXIST);
        }
        tracing::debug!("{what} {}", fpath::show(&path));
        self.stage(op(&path)?, &path, None)?;
        self.touch_dir(&view, &dir);
        let entry = self.entry(&view, &path)?;
        let link = entry.link.map(|l| l.id);
        let ino = lock(&self.inodes).child(parent, name, entry.kind, link, true);
        Ok(self.attr(ino, &view, &entry))
    }

    /// Removes `name` from `parent` (an empty directory if `dir`, else anything else):
    /// shown at once, staged for the next batch.
    pub fn remove(&self, parent: u64, name: &[u8], dir: bool) -> Result<(), Errno> {
        check_name(name)?;
        let known = lock(&self.inodes).known(parent, name);
        let staged = known.and_then(|ino| Some((ino, self.writing.get(ino)?)));
        // One name of a hard link goes at once (after what is staged): the others show
        // the link count and change time the daemon gives them.
        let linked = (self.locate(parent).ok())
            .and_then(|(view, dir)| self.entry(&view, &fpath::join(&dir, name)).ok())
            .is_some_and(|e| e.link.is_some());
        if linked && !self.commits.commit_queued() {
            return Err(Errno::IO);
        }
        // Files being written here (taken before the namespace lock, as the lock order
        // wants): a folder holding one of them is not empty.
        let writing = if dir {
            self.writing.inodes()
        } else {
            Vec::new()
        };
        {
            let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
            let (view, parent_path) = self.locate(parent)?;
            self.writable(&view)?;
            let path = fpath::join(&parent_path, name);
            match self.entry(&view, &path) {
                Ok(entry) => {
                    match (dir, entry.kind == EntryKind::Dir) {
                        (true, false) => return Err(Errno::NOTDIR),
                        (false, true) => return Err(Errno::ISDIR),
                        (true, true) if !self.shows_nothing(&path, &entry, &writing)? => {
                            return Err(Errno::NOTEMPTY)
                        }
                        _ => {}
                    }
                    tracing::debug!("remove {}", fpath::show(&path));
                    let op = CommitOp::Remove {
                        path: encode_path(&path),
                        recursive: false,
                    };
                    match linked && entry.link.is_some() {
                        true => self.commit("remove", vec![op])?,
                        false => self.stage(op, &path, Some(&entry))?,
                    }
                }
                // A file created here and never committed: only here to remove.
                Err(Errno::NOENT) if staged.is_some() && !dir => {}
                Err(e) => return Err(e),
            }
            lock(&self.inodes).detach(parent, name);
            self.touch_dir(&view, &parent_path);
        }
        // A write-back left with no name is committed nowhere: its journal record goes
        // now, so that no later mount brings the file back.
        if let Some((ino, wb)) = staged {
            let mut w = lock(&wb);
            if lock(&self.inodes).locate(ino).is_none() {
                let gen = w.gen;
                w.committed(gen);
            } else if w.made_here {
                // One of the names given here: one link fewer, journaled under the
                // name left (it may have been the first).
                w.attrs.link = w.attrs.link.filter(|l| l.nlink > 2).map(|l| Link {
                    nlink: l.nlink - 1,
                    ..l
                });
                if let Some(meta) = &mut w.attrs.meta {
                    meta.ctime_ns = now_ns();
                }
                w.touch();
                if w.queued.take().is_some() {
                    self.commits.queue(ino, &mut w)?;
                }
            }
            drop(w);
            self.commits.drop_if_done(ino, &wb);
        }
        Ok(())
    }

    /// Whether folder `path` of the live tree (`entry`) shows nothing: no name of its
    /// node left (all removed here), none staged in it, none of the files being written
    /// here (`writing`) in it.
    fn shows_nothing(&self, path: &[u8], entry: &Entry, writing: &[u64]) -> Result<bool, Errno> {
        let names: Vec<Vec<u8>> = match entry.id {
            Some(id) => (self.block(self.remote.dir(id))?.entries.iter())
                .map(|e| fpath::join(path, &e.name))
                .collect(),
            None => Vec::new(),
        };
        {
            let overlay = lock(&self.commits.overlay);
            if names.iter().any(|n| !matches!(overlay.get(n), Some(None))) {
                return Ok(false);
            }
            if overlay.children(path).iter().any(|(_, e)| e.is_some()) {
                return Ok(false);
            }
        }
        let inodes = lock(&self.inodes);
        let in_it = |p: &[u8]| {
            let cut = p.iter().rposition(|b| *b == b'/').unwrap_or(0);
            &p[..cut.max(1)] == path
        };
        Ok(!writing
            .iter()
            .any(|ino| inodes.locate(*ino).is_some_and(|(_, p)| in_it(&p))))
    }

    /// Stages folder `dir`'s modification (and status change) time as now: a name in
    /// it was made, removed or moved (as a local file system moves them). Consecutive
    /// touches of one folder are one op; the root keeps no times.
    /// A folder whose times cannot be staged keeps them (logged): the change of a
    /// name in it stands.
    pub(super) fn touch_dir(&self, view: &View, dir: &[u8]) {
        if dir == b"/" {
            return;
        }
        let Ok(entry) = self.entry(view, dir) else {
            return;
        };
        let now = now_ns();
        let meta = entry.meta.as_deref().map(|m| Meta {
            ctime_ns: now,
            ..m.clone()
        });
        let op = CommitOp::Mkdir {
            path: encode_path(dir),
            mode: entry.mode,
            mtime_ns: now,
            meta,
        };
        if let Err(e) = self.stage(op, dir, Some(&entry)) {
            tracing::warn!("the times of {} stay: {e}", fpath::show(dir));
        }
    }
}

/// The meta of an entry made now by `owner` (uid, gid).
pub(super) fn new_meta(owner: (u32, u32), now: i64) -> Meta {
    Meta {
        uid: owner.0,
        gid: owner.1,
        ctime_ns: now,
        ..Meta::default()
    }
}

/// What `entry` is committed with besides its content.
pub(super) fn attrs_of(entry: &Entry) -> Attrs {
    Attrs {
        mode: entry.mode,
        mtime_ns: entry.mtime_ns,
        meta: entry.meta.as_deref().cloned(),
        link: entry.link,
    }
}
