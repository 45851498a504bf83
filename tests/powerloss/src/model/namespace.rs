//! Changes to directory entries: link, unlink, rmdir, rename. All act on the current
//! entry lists only; `fsyncdir` (in [`super::cut`]) makes a list durable.
//!
//! # Invariants
//! Every change goes through [`Tree::add_entry`] and [`Tree::remove_entry`], which keep
//! `links`, `subdirs` and `parent` right; a node that lost its last entry is freed once
//! nothing else holds it ([`Tree::maybe_free`]).

use std::time::SystemTime;

use super::{Body, Error, FileKind, Ino, Result, Tree, ROOT};

/// The `renameat2` flavours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// Plain rename: replaces the target if there is one.
    Replace,
    /// `RENAME_NOREPLACE`: fails with `Exists` if the target exists.
    NoReplace,
    /// `RENAME_EXCHANGE`: swaps two existing entries.
    Exchange,
}

/// A valid single path component.
pub(super) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Error::Invalid);
    }
    if name.len() > 255 {
        return Err(Error::NameTooLong);
    }
    Ok(())
}

impl Tree {
    /// Adds `name -> child` to `parent`'s current entries (the name must be free).
    pub(super) fn add_entry(&mut self, parent: Ino, name: &[u8], child: Ino) -> Result<()> {
        let child_node = self.node_mut(child)?;
        child_node.links += 1;
        let is_dir = child_node.kind == FileKind::Dir;
        if let Body::Dir(d) = &mut child_node.body {
            d.parent = parent;
        }
        let now = SystemTime::now();
        child_node.meta.ctime = now;
        let pnode = self.node_mut(parent)?;
        pnode.meta.mtime = now;
        pnode.meta.ctime = now;
        let Body::Dir(dir) = &mut pnode.body else {
            return Err(Error::NotDir);
        };
        dir.entries.insert(name.to_vec(), child);
        dir.subdirs += u32::from(is_dir);
        Ok(())
    }

    /// Removes `name` from `parent`'s current entries; returns the node it named, which
    /// the caller must pass to [`Tree::maybe_free`] once done with it.
    pub(super) fn remove_entry(&mut self, parent: Ino, name: &[u8]) -> Result<Ino> {
        let now = SystemTime::now();
        let pnode = self.node_mut(parent)?;
        pnode.meta.mtime = now;
        pnode.meta.ctime = now;
        let Body::Dir(dir) = &mut pnode.body else {
            return Err(Error::NotDir);
        };
        let child = dir.entries.remove(name).ok_or(Error::NotFound)?;
        let child_node = self.node_mut(child)?;
        child_node.links = child_node.links.saturating_sub(1);
        child_node.meta.ctime = now;
        if child_node.kind == FileKind::Dir {
            let dir = self.dir_mut(parent)?;
            dir.subdirs = dir.subdirs.saturating_sub(1);
        }
        Ok(child)
    }

    /// `unlink`: removes a name of a non-directory.
    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let child = self.lookup(parent, name)?;
        if self.kind(child)? == FileKind::Dir {
            return Err(Error::IsDir);
        }
        self.remove_entry(parent, name)?;
        self.maybe_free(child);
        Ok(())
    }

    /// `rmdir`: removes an empty directory.
    pub fn rmdir(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let child = self.lookup(parent, name)?;
        if !self.dir(child)?.entries.is_empty() {
            return Err(Error::NotEmpty);
        }
        self.remove_entry(parent, name)?;
        self.maybe_free(child);
        Ok(())
    }

    /// `link`: a new name for an existing non-directory.
    pub fn link(&mut self, ino: Ino, parent: Ino, name: &[u8]) -> Result<()> {
        check_name(name)?;
        if self.kind(ino)? == FileKind::Dir {
            return Err(Error::NotPermitted);
        }
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Error::Exists);
        }
        self.add_entry(parent, name, ino)
    }

    /// Whether directory `ino` is `ancestor` or below it, in the current tree.
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.dir(ino) {
                Ok(d) if ino != ROOT && d.parent != ino => ino = d.parent,
                _ => return false,
            }
        }
    }

    /// `rename`/`renameat2` of `parent/name` to `new_parent/new_name`.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        check_name(new_name)?;
        let src = self.lookup(parent, name)?;
        let dst = self.dir(new_parent)?.entries.get(new_name).copied();
        let src_is_dir = self.kind(src)? == FileKind::Dir;
        // Neither may move into its own subtree.
        if src_is_dir && self.is_within(new_parent, src) {
            return Err(Error::Invalid);
        }
        if mode == RenameMode::Exchange {
            let dst = dst.ok_or(Error::NotFound)?;
            if self.kind(dst)? == FileKind::Dir && self.is_within(parent, dst) {
                return Err(Error::Invalid);
            }
            if src == dst {
                return Ok(());
            }
            self.remove_entry(parent, name)?;
            self.remove_entry(new_parent, new_name)?;
            self.add_entry(parent, name, dst)?;
            return self.add_entry(new_parent, new_name, src);
        }
        let mut replaced = None;
        if let Some(dst) = dst {
            if mode == RenameMode::NoReplace {
                return Err(Error::Exists);
            }
            if dst == src {
                // Two names of one file: POSIX says do nothing.
                return Ok(());
            }
            match (src_is_dir, self.kind(dst)? == FileKind::Dir) {
                (true, false) => return Err(Error::NotDir),
                (false, true) => return Err(Error::IsDir),
                (true, true) if !self.dir(dst)?.entries.is_empty() => return Err(Error::NotEmpty),
                _ => {}
            }
            replaced = Some(self.remove_entry(new_parent, new_name)?);
        }
        // Removed and added before any free: the moved node is never unreferenced.
        self.remove_entry(parent, name)?;
        self.add_entry(new_parent, new_name, src)?;
        if let Some(old) = replaced {
            self.maybe_free(old);
        }
        Ok(())
    }
}
