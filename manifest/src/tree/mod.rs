//! Path-copy updates of the Merkle tree, grouped into one commit.
//!
//! A [`TreeEdit`] starts from a version's root and loads only the directories on the
//! paths it changes. Changing a path at depth d marks the d directories above it dirty;
//! [`TreeEdit::seal`] writes each dirty directory once, bottom-up, so one change writes
//! d + 1 nodes (the new file node included) and a thousand changes in the same folder
//! still write that folder once. Untouched subtrees keep their ids and cost nothing.
//!
//! A large directory (an index of parts, see `fvfs_node::dir`) is loaded a part at a
//! time: only the parts holding names the edit touches are read, and sealing re-cuts
//! only the runs of parts that were loaded (reading a neighbour when a cut moved past
//! the run's end), so one change in a directory of a million entries reads and writes
//! a part and its index, not the listing.

use fvfs_cas::ChunkId;

use crate::error::{ManifestError, Result};

mod links;
mod mdir;

use mdir::{seal_dir, MDir, Slot};

use crate::node::{ChunkKind, Entry, EntryKind, Link, Meta, Node};
use crate::path::{components, new_components, show};
use crate::repo::{CollectionsHeld, Pending, Repo};

/// Mode and mtime given to directories created implicitly as parents.
const DEFAULT_DIR_MODE: u32 = 0o755;

/// What [`TreeEdit::place`] puts: an entry that may name content (checked against
/// `pending`), from the daemon or a client; an entry of the daemon's own import whose
/// content the caller found stored while holding collections off (not checked again);
/// or a directory's own entry.
#[derive(Clone, Copy)]
enum Place<'a> {
    Content(&'a Pending, Origin),
    Held,
    Dir,
}

/// Who gives an entry to [`TreeEdit::insert`], which decides what its link is taken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The daemon's own import: link ids as given.
    Daemon,
    /// A client: a link only where the path is a name of that file.
    Client,
}

/// Pending changes to a tree, applied to a new root by [`TreeEdit::seal`].
pub struct TreeEdit {
    root: MDir,
    links: links::Links,
}

fn dir_entry(name: &[u8], mode: u32, mtime_ns: i64) -> Entry {
    Entry {
        name: name.to_vec(),
        ..Entry::dir(mode, mtime_ns)
    }
}

impl TreeEdit {
    /// Starts editing the tree whose root directory node is `root` (`None`: empty tree).
    pub async fn open(repo: &Repo, root: Option<ChunkId>) -> Result<Self> {
        let root = match root {
            Some(id) => MDir::load(repo, id).await?,
            None => MDir::default(),
        };
        Ok(Self {
            root,
            links: links::Links::default(),
        })
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
    ///
    /// The entry's link (hard links) is taken as given from the daemon's own imports
    /// (migrate numbers the files with several names it finds). From a client, a
    /// file's link is kept only if `path` is one of its names (then every name takes
    /// the entry), and the files with several names in a directory tree put from
    /// elsewhere (a copy) get ids of their own (see `links.rs`).
    pub async fn insert(
        &mut self,
        repo: &Repo,
        pending: &Pending,
        path: &[u8],
        entry: Entry,
        parents_mtime_ns: i64,
        origin: Origin,
    ) -> Result<()> {
        let place = Place::Content(pending, origin);
        self.place(repo, place, path, entry, parents_mtime_ns).await
    }

    /// [`TreeEdit::insert`] of many entries, sorted by path: each directory is looked
    /// up once for all the entries it takes (a migration applies tens of thousands at
    /// once). Returns the entries that could not be put, each with why; the others are.
    pub async fn insert_sorted(
        &mut self,
        repo: &Repo,
        pending: &Pending,
        entries: Vec<(Vec<u8>, Entry)>,
        parents_mtime_ns: i64,
        origin: Origin,
    ) -> Vec<(Vec<u8>, ManifestError)> {
        let how = Place::Content(pending, origin);
        self.place_sorted(repo, how, entries, parents_mtime_ns)
            .await
    }

    /// [`TreeEdit::insert_sorted`] of the daemon's own import, without looking up the
    /// content each entry names: the caller found it stored or pending (through
    /// [`Repo::knows`], [`Repo::knows_file`], or a record of having done so under
    /// the records epoch in force) while holding collections off, and holds them
    /// until the tree is committed, so nothing it names can be collected meanwhile.
    pub async fn insert_sorted_held(
        &mut self,
        repo: &Repo,
        held: &CollectionsHeld,
        entries: Vec<(Vec<u8>, Entry)>,
        parents_mtime_ns: i64,
    ) -> Vec<(Vec<u8>, ManifestError)> {
        assert!(held.holds(repo), "collections held on another store");
        self.place_sorted(repo, Place::Held, entries, parents_mtime_ns)
            .await
    }

    async fn place_sorted(
        &mut self,
        repo: &Repo,
        how: Place<'_>,
        entries: Vec<(Vec<u8>, Entry)>,
        parents_mtime_ns: i64,
    ) -> Vec<(Vec<u8>, ManifestError)> {
        let mut failed = Vec::new();
        // Where each path's last name is (none for a path without one): entries whose
        // paths agree up to its start go to the same directory.
        let name_at = |path: &[u8]| -> Option<(usize, usize)> {
            let comps = new_components(path).ok()?;
            let last = comps.last()?;
            let start = last.as_ptr() as usize - path.as_ptr() as usize;
            Some((start, start + last.len()))
        };
        let mut entries = entries
            .into_iter()
            .map(|(path, entry)| (name_at(&path), path, entry))
            .peekable();
        while let Some(first) = entries.next() {
            let mut group = vec![first];
            if let Some((at, _)) = group[0].0 {
                while let Some((Some((next_at, _)), next, _)) = entries.peek() {
                    if next[..*next_at] != group[0].1[..at] {
                        break;
                    }
                    group.push(entries.next().expect("peeked"));
                }
                let path = &group[0].1;
                let parents = components(&path[..at]).unwrap_or_default();
                if let Ok(dir) = self
                    .root
                    .open_dir(repo, path, &parents, Some(parents_mtime_ns))
                    .await
                {
                    for (at, path, entry) in group {
                        let (start, end) = at.expect("grouped by it");
                        let name = path[start..end].to_vec();
                        let put = put_entry(repo, &mut self.links, dir, how, &path, &name, entry);
                        if let Err(e) = put.await {
                            failed.push((path, e));
                        }
                    }
                    continue;
                }
            }
            // Each one on its own, to tell why.
            for (_, path, entry) in group {
                if let Err(e) = self.place(repo, how, &path, entry, parents_mtime_ns).await {
                    failed.push((path, e));
                }
            }
        }
        failed
    }

    /// [`TreeEdit::insert`], or a directory's own entry.
    async fn place(
        &mut self,
        repo: &Repo,
        how: Place<'_>,
        path: &[u8],
        entry: Entry,
        parents_mtime_ns: i64,
    ) -> Result<()> {
        let comps = new_components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(ManifestError::IsADirectory("/".into()));
        };
        let dir = self
            .root
            .open_dir(repo, path, parents, Some(parents_mtime_ns))
            .await?;
        put_entry(repo, &mut self.links, dir, how, path, name, entry).await
    }

    /// Creates directory `path` (and its parents) or updates its mode and mtime, and
    /// its meta when `meta` is given.
    pub async fn mkdir(
        &mut self,
        repo: &Repo,
        path: &[u8],
        mode: u32,
        mtime_ns: i64,
        meta: Option<Box<Meta>>,
    ) -> Result<()> {
        if components(path)?.is_empty() {
            return Ok(());
        }
        let entry = Entry {
            meta,
            ..dir_entry(b"", mode, mtime_ns)
        };
        self.place(repo, Place::Dir, path, entry, mtime_ns).await
    }

    /// The entry at `path` with the changes so far, if there is one.
    pub async fn get(&mut self, repo: &Repo, path: &[u8]) -> Result<Option<Entry>> {
        let comps = components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(None);
        };
        let dir = match self.root.open_dir(repo, path, parents, None).await {
            Ok(dir) => dir,
            Err(ManifestError::NotFound(_) | ManifestError::NotADirectory(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        dir.holding(repo, name).await?;
        Ok(dir.entries.get(*name).map(|slot| slot.entry().clone()))
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
        let dir = self.root.open_dir(repo, path, parents, None).await?;
        dir.holding(repo, name).await?;
        let non_empty = match dir.entries.get(*name) {
            None => return Err(ManifestError::NotFound(show(path))),
            Some(Slot::Open(_, d)) => !d.is_empty(),
            Some(Slot::Stored(e)) => is_nonempty_dir(repo, e).await?,
        };
        if non_empty && !recursive {
            return Err(ManifestError::NotEmpty(show(path)));
        }
        dir.changed = true;
        let slot = dir.entries.remove(*name).expect("checked");
        let entry = slot.entry().clone();
        self.links.left(repo, slot).await?;
        Ok(entry)
    }

    /// Gives the file (symlink, special file) at `from` the new name `to`, which must
    /// not exist (as link(2)) unless `replace` (then a non-directory there is
    /// replaced): from then on the two names are one file, whose status changed at
    /// `ctime_ns` (now if not given).
    pub async fn link(
        &mut self,
        repo: &Repo,
        from: &[u8],
        to: &[u8],
        replace: bool,
        ctime_ns: Option<i64>,
    ) -> Result<()> {
        let (fc, tc) = (components(from)?, new_components(to)?);
        let (Some((fname, fparents)), Some((tname, tparents))) = (fc.split_last(), tc.split_last())
        else {
            return Err(ManifestError::InvalidPath(
                show(to),
                "the root has one name",
            ));
        };
        let src = self.root.open_dir(repo, from, fparents, None).await?;
        src.holding(repo, fname).await?;
        let entry = match src.entries.get_mut(*fname) {
            None => return Err(ManifestError::NotFound(show(from))),
            Some(Slot::Stored(e)) if e.kind != EntryKind::Dir => e,
            Some(_) => {
                return Err(ManifestError::InvalidPath(
                    show(from),
                    "a directory has one name",
                ))
            }
        };
        if entry.link.is_none() {
            entry.link = Some(Link {
                id: links::new_id(),
                nlink: 2,
            });
            src.changed = true;
        }
        let linked = Entry {
            name: tname.to_vec(),
            ..entry.clone()
        };
        let dest = self.root.open_dir(repo, to, tparents, None).await?;
        dest.holding(repo, tname).await?;
        match dest.entries.get(*tname).map(|s| s.entry().kind) {
            None => {}
            Some(EntryKind::Dir) if replace => return Err(ManifestError::IsADirectory(show(to))),
            Some(_) if replace => {}
            Some(_) => return Err(ManifestError::Exists(show(to))),
        }
        let at = ctime_ns.unwrap_or_else(links::now_ns);
        self.links
            .names_changed(linked.link.expect("set above").id, at);
        put_slot(repo, &mut self.links, dest, tname, Slot::Stored(linked)).await
    }

    /// Moves `from` to `to`, which may replace a file or symlink, or an empty directory
    /// by a directory (as rename(2)). Moves the subtree as it stands in this edit,
    /// changes made to it earlier in the same edit included. What moves (and a file's
    /// other names) changed status at `ctime_ns` (now if not given).
    pub async fn rename(
        &mut self,
        repo: &Repo,
        from: &[u8],
        to: &[u8],
        ctime_ns: Option<i64>,
    ) -> Result<()> {
        let (fc, tc) = (components(from)?, new_components(to)?);
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
        let src = self.root.open_dir(repo, from, fparents, None).await?;
        src.holding(repo, fname).await?;
        let slot = src
            .entries
            .remove(*fname)
            .ok_or_else(|| ManifestError::NotFound(show(from)))?;
        src.changed = true;
        let moving_dir = slot.entry().kind == EntryKind::Dir;
        let moving_link = slot.entry().link.map(|l| l.id);
        let dest = self.root.open_dir(repo, to, tparents, None).await?;
        dest.holding(repo, tname).await?;
        if let Some(existing) = dest.entries.get(*tname) {
            if moving_link.is_some() && existing.entry().link.map(|l| l.id) == moving_link {
                // Two names of one file: rename(2) does nothing.
                let src = self.root.open_dir(repo, from, fparents, None).await?;
                src.entries.insert(fname.to_vec(), slot);
                return Ok(());
            }
            let (old, non_empty) = match existing {
                Slot::Open(e, d) => (e.clone(), !d.is_empty()),
                Slot::Stored(e) => (e.clone(), is_nonempty_dir(repo, e).await?),
            };
            match (old.kind == EntryKind::Dir, moving_dir) {
                (true, false) => return Err(ManifestError::IsADirectory(show(to))),
                (false, true) => return Err(ManifestError::NotADirectory(show(to))),
                (true, true) if non_empty => return Err(ManifestError::NotEmpty(show(to))),
                _ => {}
            }
        }
        let dest = self.root.open_dir(repo, to, tparents, None).await?;
        // A move changes the entry's status (as on Linux); a file's other names too.
        let at = ctime_ns.unwrap_or_else(links::now_ns);
        let moved = |mut e: Entry| {
            e.name = tname.to_vec();
            if let Some(m) = &mut e.meta {
                m.ctime_ns = at;
            }
            e
        };
        let slot = match slot {
            Slot::Stored(e) => Slot::Stored(moved(e)),
            Slot::Open(e, d) => Slot::Open(moved(e), d),
        };
        if let Some(id) = moving_link {
            self.links.names_changed(id, at);
        }
        put_slot(repo, &mut self.links, dest, tname, slot).await
    }

    /// Writes every changed directory, bottom-up; returns the new root and its logical size.
    pub async fn seal(mut self, repo: &Repo, pending: &Pending) -> Result<(ChunkId, u64)> {
        self.links.settle(repo, &mut self.root).await?;
        self.root.prepare(repo).await?;
        let mut nodes = Vec::new();
        let (root, size, _) = seal_dir(self.root, &mut nodes);
        for bytes in &nodes {
            repo.put_chunk(pending, bytes, ChunkKind::Node).await?;
        }
        Ok((root, size))
    }
}

/// Puts `slot` under `name` in `dir` (marked changed); the files whatever it replaces
/// named lose those names (see `links.rs`).
/// Puts `entry` as `name` into `dir` (the directory of `path`): the step of
/// [`TreeEdit::place`] once the directory is found.
async fn put_entry(
    repo: &Repo,
    links: &mut links::Links,
    dir: &mut MDir,
    how: Place<'_>,
    path: &[u8],
    name: &[u8],
    mut entry: Entry,
) -> Result<()> {
    dir.holding(repo, name).await?;
    entry.name = name.to_vec();
    let old_link = dir.entries.get(name).and_then(|s| s.entry().link);
    let given = matches!(how, Place::Content(_, Origin::Daemon) | Place::Held);
    if entry.kind == EntryKind::Dir
        || !(given || entry.link.map(|l| l.id) == old_link.map(|l| l.id))
    {
        entry.link = None;
    }
    let is_dir_update = entry.kind == EntryKind::Dir && entry.id.is_none();
    let existing = dir.entries.get_mut(name).map(|slot| match slot {
        Slot::Stored(e) | Slot::Open(e, _) => e,
    });
    match existing {
        Some(old) if old.kind == EntryKind::Dir && is_dir_update => {
            // Without meta, an update keeps the directory's own.
            let meta = entry.meta.or_else(|| old.meta.clone());
            if (old.mode, old.mtime_ns, &old.meta) == (entry.mode, entry.mtime_ns, &meta) {
                return Ok(());
            }
            (old.mode, old.mtime_ns, old.meta) = (entry.mode, entry.mtime_ns, meta);
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
            let missing = match how {
                Place::Content(p, _) => repo.entry_missing(p, &entry).await?,
                Place::Held | Place::Dir => Vec::new(),
            };
            if !missing.is_empty() {
                return Err(ManifestError::ContentGone {
                    path: show(path),
                    missing,
                });
            }
            links.entry_set(&entry);
            put_slot(repo, links, dir, name, Slot::Stored(entry)).await?;
            if !given {
                let slot = dir.entries.get_mut(name).expect("just put");
                links.relink(repo, slot).await?;
            }
        }
    }
    dir.changed = true;
    Ok(())
}

async fn put_slot(
    repo: &Repo,
    links: &mut links::Links,
    dir: &mut MDir,
    name: &[u8],
    slot: Slot,
) -> Result<()> {
    dir.changed = true;
    match dir.entries.insert(name.to_vec(), slot) {
        Some(old) => links.left(repo, old).await,
        None => Ok(()),
    }
}

async fn is_nonempty_dir(repo: &Repo, e: &Entry) -> Result<bool> {
    match (e.kind, e.id) {
        (EntryKind::Dir, Some(id)) => Ok(match repo.node(&id).await? {
            Node::Dir(d) => !d.entries.is_empty(),
            _ => true,
        }),
        _ => Ok(false),
    }
}
