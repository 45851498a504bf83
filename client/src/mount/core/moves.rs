//! Names that move or are added to an existing file: rename(2) and link(2). A file,
//! symlink or special file moves in the overlay (staged for the next batch); a file
//! made here and never committed is renamed or linked here alone (its batch commits it
//! where it is, and links its other names); folders and hard links move at once, after
//! everything staged.
//!
//! # Invariants
//! - As in [`super::namespace`]: the namespace lock is held exclusively from staging
//!   (or committing) the move to the inode table's update, and taken after the moved
//!   file's write-back lock, never before.
//! - A write-back that moves is journaled again under its new name, so a killed mount
//!   replays the move before the file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fvfs_api::commit::{CommitOp, Expect};
use fvfs_api::path::encode_path;
use fvfs_node::{path as fpath, Entry, EntryKind, Link};
use rustix::io::Errno;

use super::view::Attr;
use super::writeback::WriteBack;
use super::{check_name, lock, now_ns, Core};

/// Link ids this mount gives names linked here before the daemon gives them one,
/// counted down from the top (the daemon draws its own at random).
static LOCAL_LINKS: AtomicU64 = AtomicU64::new(u64::MAX);

impl Core {
    /// A second name for `ino` (link(2)): the daemon makes the two names one file,
    /// and the inode is both names here.
    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> Result<Attr, Errno> {
        check_name(name)?;
        if let Some(wb) = self.writing.get(ino) {
            if self.link_local(ino, &wb, parent, name)? {
                return self.stat(ino);
            }
        }
        if !self.commits.commit_queued() {
            return Err(Errno::IO);
        }
        if let Some(wb) = self.writing.get(ino) {
            self.write_back(ino, &mut lock(&wb))?;
            self.commits.drop_if_done(ino, &wb);
        }
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let (view, path) = self.locate(ino)?;
        let (to_view, dir) = self.locate(parent)?;
        self.writable(&to_view)?;
        if view != to_view {
            return Err(Errno::XDEV);
        }
        if self.entry(&view, &path)?.kind == EntryKind::Dir {
            return Err(Errno::PERM);
        }
        let to = fpath::join(&dir, name);
        if self.entry(&view, &to).is_ok() {
            return Err(Errno::EXIST);
        }
        let op = CommitOp::Link {
            from: encode_path(&path),
            to: encode_path(&to),
            replace: false,
            ctime_ns: None,
        };
        self.commit("link", vec![op])?;
        let entry = self.entry(&view, &to)?;
        let id = entry.link.ok_or(Errno::IO)?.id;
        lock(&self.inodes).add_name(ino, parent, name, id);
        self.touch_dir(&view, &dir);
        Ok(self.attr(ino, &view, &entry))
    }

    /// A second name for file `ino`, made here and never committed (git writes each
    /// object so: a temporary file linked to its name, then unlinked), here alone: its
    /// batch commits the file at one name and links the others
    /// ([`super::commit::Committer::link_names`]). Whether it could (not once the file
    /// was committed).
    fn link_local(
        &self,
        ino: u64,
        wb: &Arc<Mutex<WriteBack>>,
        parent: u64,
        name: &[u8],
    ) -> Result<bool, Errno> {
        let mut w = lock(wb);
        if !w.made_here {
            return Ok(false);
        }
        {
            let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
            let (view, _) = self.locate(ino)?;
            let (to_view, dir) = self.locate(parent)?;
            self.writable(&to_view)?;
            if view != to_view {
                return Err(Errno::XDEV);
            }
            let to = fpath::join(&dir, name);
            if lock(&self.inodes).known(parent, name).is_some() || self.entry(&view, &to).is_ok() {
                return Err(Errno::EXIST);
            }
            // An id of this mount's own until the daemon gives the names one.
            let id = LOCAL_LINKS.fetch_sub(1, Ordering::Relaxed);
            let id = w.attrs.link.map_or(id, |l| l.id);
            lock(&self.inodes).add_name(ino, parent, name, id);
            let nlink = w.attrs.link.map_or(1, |l| l.nlink) + 1;
            w.attrs.link = Some(Link { id, nlink });
            self.touch_dir(&view, &dir);
        }
        // A new name changes the file's status.
        if let Some(meta) = &mut w.attrs.meta {
            meta.ctime_ns = now_ns();
        }
        w.touch();
        if w.queued.take().is_some() {
            self.commits.queue(ino, &mut w)?;
        }
        Ok(true)
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`, replacing what is
    /// there unless `no_replace`.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        no_replace: bool,
    ) -> Result<(), Errno> {
        check_name(name)?;
        check_name(new_name)?;
        let source = lock(&self.inodes).known(parent, name);
        if let Some(ino) = source {
            if self.rename_local(ino, (parent, name), (new_parent, new_name))? {
                return Ok(());
            }
        }
        let (from, to) = ((parent, name), (new_parent, new_name));
        if self.rename_staged(source, from, to, no_replace)? {
            return Ok(());
        }
        // Folders and hard links move at once. Files closed and not committed yet go
        // first, in the order things happened; a
        // file still being written here is committed too, so that it exists to be moved.
        if !self.commits.commit_queued() {
            return Err(Errno::IO);
        }
        let staged = source.and_then(|ino| Some((ino, self.writing.get(ino)?)));
        if let Some((ino, wb)) = staged {
            self.write_back(ino, &mut lock(&wb))?;
            self.commits.drop_if_done(ino, &wb);
        }
        let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
        let (view, from_dir) = self.locate(parent)?;
        let (to_view, to_dir) = self.locate(new_parent)?;
        self.writable(&view)?;
        self.writable(&to_view)?;
        let from = fpath::join(&from_dir, name);
        let to = fpath::join(&to_dir, new_name);
        let replaced = self.entry(&to_view, &to);
        if no_replace && replaced.is_ok() {
            return Err(Errno::EXIST);
        }
        // Two names of one file: rename(2) does nothing.
        let link_of = |e: Result<Entry, Errno>| e.ok().and_then(|e| e.link).map(|l| l.id);
        let moved = link_of(self.entry(&view, &from));
        if moved.is_some() && moved == link_of(replaced) {
            return Ok(());
        }
        let op = CommitOp::Rename {
            from: encode_path(&from),
            to: encode_path(&to),
            ctime_ns: None,
        };
        self.commit("rename", vec![op])?;
        lock(&self.inodes).rename(parent, name, new_parent, new_name);
        Ok(())
    }

    /// Renames file `ino`, made here and never committed, to a name nothing holds, here
    /// alone (rsync's temporary files): its batch commits it at its new name. Whether it
    /// could.
    fn rename_local(
        &self,
        ino: u64,
        (parent, name): (u64, &[u8]),
        (new_parent, new_name): (u64, &[u8]),
    ) -> Result<bool, Errno> {
        let Some(wb) = self.writing.get(ino) else {
            return Ok(false);
        };
        let mut w = lock(&wb);
        if !w.made_here {
            return Ok(false);
        }
        {
            let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
            let (view, to_dir) = self.locate(new_parent)?;
            self.writable(&view)?;
            let to = fpath::join(&to_dir, new_name);
            let taken = lock(&self.inodes).known(new_parent, new_name).is_some();
            if taken || self.entry(&view, &to) != Err(Errno::NOENT) {
                return Ok(false);
            }
            lock(&self.inodes).rename(parent, name, new_parent, new_name);
            // The folders changed, as the daemon's rename would have marked them.
            let (_, from_dir) = self.locate(parent)?;
            self.touch_dir(&view, &to_dir);
            if from_dir != to_dir {
                self.touch_dir(&view, &from_dir);
            }
            // What the daemon holds at the new name now (or once what is staged there
            // is committed) is what the file replaces.
            if let Some(staged) = self.staged_base(&to) {
                (w.asked, w.base) = (None, Some(staged));
            } else {
                let remote = self.remote.clone();
                let asked = async move { remote.replacing(to, Expect::Absent).await };
                w.asked = Some(self.rt.spawn(asked));
            }
        }
        // Journaled again, under its new name.
        if w.queued.take().is_some() {
            self.commits.queue(ino, &mut w)?;
        }
        Ok(true)
    }

    /// Renames a file, symlink or special file of the tree (not a hard link) in the
    /// overlay, staged for the next batch; the source inode's write-back, if any, goes
    /// with it (journaled again under its new name). Whether it could: a folder, a hard
    /// link, or a name taken by a file being written here move at once.
    fn rename_staged(
        &self,
        source: Option<u64>,
        (parent, name): (u64, &[u8]),
        (new_parent, new_name): (u64, &[u8]),
        no_replace: bool,
    ) -> Result<bool, Errno> {
        if lock(&self.inodes)
            .known(new_parent, new_name)
            .is_some_and(|t| self.writing.get(t).is_some())
        {
            return Ok(false);
        }
        let wb = source.and_then(|ino| Some((ino, self.writing.get(ino)?)));
        let mut w = wb.as_ref().map(|(_, wb)| lock(wb));
        // Made here and never committed: the daemon has nothing to move yet.
        if w.as_ref().is_some_and(|w| w.made_here) {
            return Ok(false);
        }
        {
            let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
            let (view, from_dir) = self.locate(parent)?;
            let (to_view, to_dir) = self.locate(new_parent)?;
            self.writable(&view)?;
            self.writable(&to_view)?;
            let (from, to) = (fpath::join(&from_dir, name), fpath::join(&to_dir, new_name));
            let mut moved = self.entry(&view, &from)?;
            if moved.kind == EntryKind::Dir || moved.link.is_some() || from == to {
                return Ok(false);
            }
            match self.entry(&to_view, &to) {
                Ok(_) if no_replace => return Err(Errno::EXIST),
                Ok(t) if t.kind == EntryKind::Dir => return Err(Errno::ISDIR),
                Ok(t) if t.link.is_some() => return Ok(false),
                Ok(_) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
            tracing::debug!("rename {} to {}", fpath::show(&from), fpath::show(&to));
            // A move changes the status (as on Linux): shown now, and committed as shown.
            let ctime_ns = moved.meta.as_mut().map(|m| {
                m.ctime_ns = now_ns();
                m.ctime_ns
            });
            let op = CommitOp::Rename {
                from: encode_path(&from),
                to: encode_path(&to),
                ctime_ns,
            };
            lock(&self.commits.overlay)
                .stage_move(op, &from, &to, moved)
                .map_err(|e| {
                    tracing::warn!("cannot journal a rename of {}: {e}", fpath::show(&from));
                    Errno::IO
                })?;
            lock(&self.inodes).rename(parent, name, new_parent, new_name);
            self.touch_dir(&view, &to_dir);
            if from_dir != to_dir {
                self.touch_dir(&view, &from_dir);
            }
        }
        self.commits.wake.queued(0);
        if let (Some((ino, _)), Some(w)) = (&wb, w.as_mut()) {
            if w.queued.take().is_some() {
                self.commits.queue(*ino, w)?;
            }
        }
        Ok(true)
    }
}
