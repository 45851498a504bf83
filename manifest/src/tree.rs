//! Path-copy updates of the Merkle tree, grouped into one commit.
//!
//! A [`TreeEdit`] starts from a version's root and loads only the directories on the
//! paths it changes. Changing a path at depth d marks the d directories above it dirty;
//! [`TreeEdit::seal`] writes each dirty directory once, bottom-up, so one change writes
//! d + 1 nodes (the new file node included) and a thousand changes in the same folder
//! still write that folder once. Untouched subtrees keep their ids and cost nothing.

use std::collections::BTreeMap;

use fvfs_cas::ChunkId;

use crate::error::{ManifestError, Result};
use crate::node::ChunkKind;
use crate::node::{self, DirNode, Entry, EntryKind};
use crate::path::{components, show};
use crate::repo::{Pending, Repo};

/// Mode and mtime given to directories created implicitly as parents.
const DEFAULT_DIR_MODE: u32 = 0o755;

enum Slot {
    /// An entry as stored; a directory here has not been loaded.
    Stored(Entry),
    /// A directory loaded for editing, with its entry (mode, mtime) in the parent.
    Open(Entry, MDir),
}

#[derive(Default)]
struct MDir {
    entries: BTreeMap<Vec<u8>, Slot>,
    /// The stored node this was loaded from; `None` for a new directory.
    base: Option<ChunkId>,
    /// Whether an entry of this directory itself was added, removed or changed.
    changed: bool,
}

impl MDir {
    fn from_node(id: ChunkId, node: DirNode) -> Self {
        Self {
            base: Some(id),
            changed: false,
            entries: node
                .entries
                .into_iter()
                .map(|e| (e.name.clone(), Slot::Stored(e)))
                .collect(),
        }
    }
}

/// Pending changes to a tree, applied to a new root by [`TreeEdit::seal`].
pub struct TreeEdit {
    root: MDir,
}

fn dir_entry(name: &[u8], mode: u32, mtime_ns: i64) -> Entry {
    Entry {
        name: name.to_vec(),
        kind: EntryKind::Dir,
        mode,
        mtime_ns,
        size: 0,
        id: None,
        chunks: Vec::new(),
        target: Vec::new(),
    }
}

impl TreeEdit {
    /// Starts editing the tree whose root directory node is `root` (`None`: empty tree).
    pub async fn open(repo: &Repo, root: Option<ChunkId>) -> Result<Self> {
        let root = match root {
            Some(id) => MDir::from_node(id, repo.dir(&id).await?),
            None => MDir::default(),
        };
        Ok(Self { root })
    }

    /// The directory at `comps`, loaded for editing; missing ones are created when
    /// `create` gives their mtime.
    async fn open_dir(
        &mut self,
        repo: &Repo,
        path: &[u8],
        comps: &[&[u8]],
        create: Option<i64>,
    ) -> Result<&mut MDir> {
        let mut cur = &mut self.root;
        for comp in comps {
            if !cur.entries.contains_key(*comp) {
                let Some(mtime) = create else {
                    return Err(ManifestError::NotFound(show(path)));
                };
                cur.entries.insert(
                    comp.to_vec(),
                    Slot::Open(dir_entry(comp, DEFAULT_DIR_MODE, mtime), MDir::default()),
                );
            }
            let slot = cur.entries.get_mut(*comp).expect("present");
            if let Slot::Stored(e) = slot {
                match (e.kind, e.id) {
                    (EntryKind::Dir, Some(id)) => {
                        let loaded = MDir::from_node(id, repo.dir(&id).await?);
                        *slot = Slot::Open(e.clone(), loaded);
                    }
                    _ => return Err(ManifestError::NotADirectory(show(path))),
                }
            }
            let Slot::Open(_, dir) = slot else {
                unreachable!("just opened")
            };
            cur = dir;
        }
        Ok(cur)
    }

    /// Puts `entry` at `path` (its name is taken from the path), creating missing parent
    /// directories with mtime `parents_mtime_ns`.
    ///
    /// A directory entry without an id means "this directory": it is created, or its
    /// mode and mtime are updated. Any other entry replaces a file or symlink, and
    /// replaces a directory only with another directory tree.
    ///
    /// Content the entry names (its file node, list nodes and chunks) must be stored or
    /// in `pending`, else [`ManifestError::ContentGone`]: checked through [`Repo::knows`]
    /// so that a running garbage collection keeps it (see `repo/gc.rs`).
    pub async fn insert(
        &mut self,
        repo: &Repo,
        pending: &Pending,
        path: &[u8],
        entry: Entry,
        parents_mtime_ns: i64,
    ) -> Result<()> {
        self.place(repo, Some(pending), path, entry, parents_mtime_ns)
            .await
    }

    /// [`TreeEdit::insert`]; `pending` is `None` for entries that name no content.
    async fn place(
        &mut self,
        repo: &Repo,
        pending: Option<&Pending>,
        path: &[u8],
        mut entry: Entry,
        parents_mtime_ns: i64,
    ) -> Result<()> {
        let comps = components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(ManifestError::IsADirectory("/".into()));
        };
        let dir = self
            .open_dir(repo, path, parents, Some(parents_mtime_ns))
            .await?;
        entry.name = name.to_vec();
        let is_dir_update = entry.kind == EntryKind::Dir && entry.id.is_none();
        let existing = dir.entries.get_mut(*name).map(|slot| match slot {
            Slot::Stored(e) | Slot::Open(e, _) => e,
        });
        match existing {
            Some(old) if old.kind == EntryKind::Dir && is_dir_update => {
                if (old.mode, old.mtime_ns) == (entry.mode, entry.mtime_ns) {
                    return Ok(());
                }
                (old.mode, old.mtime_ns) = (entry.mode, entry.mtime_ns);
            }
            // Re-importing an unchanged file changes nothing, and writes nothing.
            Some(old) if *old == entry => return Ok(()),
            Some(_) if is_dir_update => return Err(ManifestError::NotADirectory(show(path))),
            Some(old) if old.kind == EntryKind::Dir && entry.kind != EntryKind::Dir => {
                return Err(ManifestError::IsADirectory(show(path)))
            }
            _ if is_dir_update => {
                dir.entries
                    .insert(name.to_vec(), Slot::Open(entry, MDir::default()));
            }
            _ => {
                let missing = match pending {
                    Some(p) => repo.entry_missing(p, &entry).await?,
                    None => Vec::new(),
                };
                if !missing.is_empty() {
                    return Err(ManifestError::ContentGone {
                        path: show(path),
                        missing,
                    });
                }
                dir.entries.insert(name.to_vec(), Slot::Stored(entry));
            }
        }
        dir.changed = true;
        Ok(())
    }

    /// Creates directory `path` (and its parents) or updates its mode and mtime.
    pub async fn mkdir(
        &mut self,
        repo: &Repo,
        path: &[u8],
        mode: u32,
        mtime_ns: i64,
    ) -> Result<()> {
        if components(path)?.is_empty() {
            return Ok(());
        }
        self.place(repo, None, path, dir_entry(b"", mode, mtime_ns), mtime_ns)
            .await
    }

    /// Removes `path`; a directory only if `recursive` or empty. Returns what was there.
    pub async fn remove(&mut self, repo: &Repo, path: &[u8], recursive: bool) -> Result<Entry> {
        let comps = components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(ManifestError::InvalidPath(
                show(path),
                "cannot remove the root",
            ));
        };
        let dir = self.open_dir(repo, path, parents, None).await?;
        let non_empty = match dir.entries.get(*name) {
            None => return Err(ManifestError::NotFound(show(path))),
            Some(Slot::Open(_, d)) => !d.entries.is_empty(),
            Some(Slot::Stored(e)) => is_nonempty_dir(repo, e).await?,
        };
        if non_empty && !recursive {
            return Err(ManifestError::NotEmpty(show(path)));
        }
        dir.changed = true;
        Ok(match dir.entries.remove(*name).expect("checked") {
            Slot::Stored(e) | Slot::Open(e, _) => e,
        })
    }

    /// Moves `from` to `to`, which may replace a file or symlink, or an empty directory
    /// by a directory (as rename(2)). Moves the subtree as it stands in this edit,
    /// changes made to it earlier in the same edit included.
    pub async fn rename(&mut self, repo: &Repo, from: &[u8], to: &[u8]) -> Result<()> {
        let (fc, tc) = (components(from)?, components(to)?);
        if fc == tc {
            return Ok(());
        }
        let (Some((fname, fparents)), Some((tname, tparents))) = (fc.split_last(), tc.split_last())
        else {
            return Err(ManifestError::InvalidPath(
                show(from),
                "cannot move the root",
            ));
        };
        if tc.len() > fc.len() && tc.starts_with(&fc) {
            return Err(ManifestError::InvalidPath(
                show(to),
                "cannot move a directory into itself",
            ));
        }
        let src = self.open_dir(repo, from, fparents, None).await?;
        let slot = src
            .entries
            .remove(*fname)
            .ok_or_else(|| ManifestError::NotFound(show(from)))?;
        src.changed = true;
        let moving_dir = match &slot {
            Slot::Stored(e) | Slot::Open(e, _) => e.kind == EntryKind::Dir,
        };
        let dest = self.open_dir(repo, to, tparents, None).await?;
        if let Some(existing) = dest.entries.get(*tname) {
            let (old, non_empty) = match existing {
                Slot::Open(e, d) => (e.clone(), !d.entries.is_empty()),
                Slot::Stored(e) => (e.clone(), is_nonempty_dir(repo, e).await?),
            };
            match (old.kind == EntryKind::Dir, moving_dir) {
                (true, false) => return Err(ManifestError::IsADirectory(show(to))),
                (false, true) => return Err(ManifestError::NotADirectory(show(to))),
                (true, true) if non_empty => return Err(ManifestError::NotEmpty(show(to))),
                _ => {}
            }
        }
        let dest = self.open_dir(repo, to, tparents, None).await?;
        let slot = match slot {
            Slot::Stored(mut e) => {
                e.name = tname.to_vec();
                Slot::Stored(e)
            }
            Slot::Open(mut e, d) => {
                e.name = tname.to_vec();
                Slot::Open(e, d)
            }
        };
        dest.entries.insert(tname.to_vec(), slot);
        dest.changed = true;
        Ok(())
    }

    /// Writes every changed directory, bottom-up; returns the new root and its logical size.
    pub async fn seal(self, repo: &Repo, pending: &Pending) -> Result<(ChunkId, u64)> {
        let mut nodes = Vec::new();
        let (root, size) = seal_dir(self.root, &mut nodes);
        for bytes in &nodes {
            repo.put_chunk(pending, bytes, ChunkKind::Node).await?;
        }
        Ok((root, size))
    }
}

async fn is_nonempty_dir(repo: &Repo, e: &Entry) -> Result<bool> {
    match (e.kind, e.id) {
        (EntryKind::Dir, Some(id)) => Ok(!repo.dir(&id).await?.entries.is_empty()),
        _ => Ok(false),
    }
}

/// Encodes `dir` and its changed subdirectories into `out` (children first); returns
/// the directory's id and logical size. A directory loaded but left unchanged, with no
/// changed directory below it, keeps its id and is not written again.
fn seal_dir(dir: MDir, out: &mut Vec<Vec<u8>>) -> (ChunkId, u64) {
    let mut changed = dir.changed;
    let entries: Vec<Entry> = dir
        .entries
        .into_values()
        .map(|slot| match slot {
            Slot::Stored(e) => e,
            Slot::Open(mut e, sub) => {
                let (id, size) = seal_dir(sub, out);
                changed |= e.id != Some(id);
                (e.id, e.size) = (Some(id), size);
                e
            }
        })
        .collect();
    let size = entries.iter().map(|e| e.size).sum();
    if let (false, Some(base)) = (changed, dir.base) {
        return (base, size);
    }
    (node::dir::encode_dir(entries, out), size)
}
