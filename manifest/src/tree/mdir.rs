//! A directory loaded for editing ([`MDir`]) and how an edited tree is sealed
//! ([`seal_dir`]): the in-memory half of a [`super::TreeEdit`].
//!
//! # Invariants
//! - A slot is `Stored` (as read, not loaded) or `Open` (loaded for editing); only
//!   open directories are written again, and only if they or a directory below them
//!   changed: an untouched subtree keeps its id.
//! - A large directory loads only the parts holding names the edit touches; sealing
//!   keeps the other parts as stored and re-cuts each run of loaded parts.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use fvfs_cas::ChunkId;

use super::{dir_entry, DEFAULT_DIR_MODE};
use crate::error::{ManifestError, Result};
use crate::node::dir::{self as dirs, Cutter, DirPart};
use crate::node::{DirNode, Entry, EntryKind, Node};
use crate::path::show;
use crate::repo::Repo;

pub(super) enum Slot {
    /// An entry as stored; a directory here has not been loaded.
    Stored(Entry),
    /// A directory loaded for editing, with its entry (mode, mtime) in the parent.
    Open(Entry, MDir),
}

impl Slot {
    pub(super) fn entry(&self) -> &Entry {
        match self {
            Slot::Stored(e) | Slot::Open(e, _) => e,
        }
    }
}

#[derive(Default)]
pub(super) struct MDir {
    /// The entries loaded: all of them, or those of the loaded parts of a large one.
    pub(super) entries: BTreeMap<Vec<u8>, Slot>,
    /// The stored node this was loaded from; `None` for a new directory.
    pub(super) base: Option<ChunkId>,
    /// Whether an entry of this directory itself was added, removed or changed.
    pub(super) changed: bool,
    /// A large directory: its parts as stored, and whether each is in `entries`.
    pub(super) parts: Option<Vec<(DirPart, bool)>>,
}

impl MDir {
    /// The directory whose top node is `id`: whole, or only its index when large.
    pub(super) async fn load(repo: &Repo, id: ChunkId) -> Result<Self> {
        let mut dir = Self {
            base: Some(id),
            ..Self::default()
        };
        match repo.node(&id).await? {
            Node::Dir(d) => dir.add(d),
            Node::DirIndex(ix) => {
                let parts = dirs::leaf_parts(id, ix, |ids| repo.nodes(ids)).await?;
                dir.parts = Some(parts.into_iter().map(|p| (p, false)).collect());
            }
            _ => {
                return Err(ManifestError::BadNode {
                    id,
                    reason: "expected a directory node".into(),
                })
            }
        }
        Ok(dir)
    }

    pub(super) fn add(&mut self, d: DirNode) {
        self.entries.extend(
            d.entries
                .into_iter()
                .map(|e| (e.name.clone(), Slot::Stored(e))),
        );
    }

    /// Loads the part of a large directory that holds (or would hold) `name`.
    pub(super) async fn holding(&mut self, repo: &Repo, name: &[u8]) -> Result<()> {
        let Some(parts) = &self.parts else {
            return Ok(());
        };
        let i = parts
            .partition_point(|(p, _)| p.first.as_slice() <= name)
            .max(1)
            - 1;
        self.load_parts(repo, &[i]).await
    }

    /// Loads parts `which` of a large directory (those not loaded yet).
    pub(super) async fn load_parts(&mut self, repo: &Repo, which: &[usize]) -> Result<()> {
        let Some(parts) = &mut self.parts else {
            return Ok(());
        };
        let which: Vec<usize> = which.iter().copied().filter(|&i| !parts[i].1).collect();
        if which.is_empty() {
            return Ok(());
        }
        let wanted: Vec<DirPart> = which.iter().map(|&i| parts[i].0.clone()).collect();
        let nodes = repo.nodes(wanted.iter().map(|p| p.id).collect()).await?;
        let id = self.base.expect("a large directory was loaded");
        let joined = dirs::join_parts(id, &wanted, nodes)?;
        for i in which {
            parts[i].1 = true;
        }
        self.add(joined);
        Ok(())
    }

    /// The directory at `comps` below this one, loaded for editing; missing ones are
    /// created when `create` gives their mtime.
    pub(super) async fn open_dir(
        &mut self,
        repo: &Repo,
        path: &[u8],
        comps: &[&[u8]],
        create: Option<i64>,
    ) -> Result<&mut MDir> {
        let mut cur = self;
        for comp in comps {
            cur.holding(repo, comp).await?;
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
                        let loaded = MDir::load(repo, id).await?;
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

    /// Whether the directory has no entry (parts of a large one not loaded count).
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self
                .parts
                .as_ref()
                .is_none_or(|p| p.iter().all(|(_, l)| *l))
    }

    /// Before sealing: loads what re-cutting the loaded runs of a large directory
    /// needs (every part if it shrank to one node's worth; else, where a run's new
    /// cut does not end at its end, the next part), in every open directory below.
    pub(super) fn prepare<'a>(&'a mut self, repo: &'a Repo) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for slot in self.entries.values_mut() {
                if let Slot::Open(_, sub) = slot {
                    sub.prepare(repo).await?;
                }
            }
            let Some(parts) = &self.parts else {
                return Ok(());
            };
            let unloaded: u64 = parts
                .iter()
                .filter(|(_, l)| !l)
                .map(|(p, _)| p.entries)
                .sum();
            if unloaded + self.entries.len() as u64 <= dirs::DIR_NODE_MAX as u64 {
                let all: Vec<usize> = (0..parts.len()).collect();
                return self.load_parts(repo, &all).await;
            }
            let mut i = 0;
            while let Some(parts) = &self.parts {
                if i >= parts.len() {
                    break;
                }
                if !parts[i].1 {
                    i += 1;
                    continue;
                }
                // A run of loaded parts from i: cut its entries from the cut point at
                // its start; while the cut does not end where the run does, take in
                // the next part.
                let mut end = i;
                while end < parts.len() && parts[end].1 {
                    end += 1;
                }
                let mut cutter = Cutter::parts();
                let upto = parts.get(end).map(|(p, _)| p.first.clone());
                let from = (i > 0).then(|| parts[i].0.first.clone());
                for name in names_between(&self.entries, from.as_deref(), upto.as_deref()) {
                    cutter.ends_after(name);
                }
                if cutter.at_cut() || end == parts.len() {
                    i = end;
                    continue;
                }
                self.load_parts(repo, &[end]).await?;
                // Look at the same run again, now one part longer.
            }
            Ok(())
        })
    }
}

/// Names in `entries` from `from` (or the first) up to, not including, `upto` (or the end).
fn names_between<'a>(
    entries: &'a BTreeMap<Vec<u8>, Slot>,
    from: Option<&[u8]>,
    upto: Option<&[u8]>,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    use std::ops::Bound;
    let lo = from.map_or(Bound::Unbounded, |f| Bound::Included(f.to_vec()));
    let hi = upto.map_or(Bound::Unbounded, |u| Bound::Excluded(u.to_vec()));
    entries.range((lo, hi)).map(|(k, _)| k.as_slice())
}

/// Encodes `dir` and its changed subdirectories into `out` (children first); returns
/// the directory's id, logical size and linked names (see `Entry::links`). A directory loaded but left unchanged, with no
/// changed directory below it, keeps its id and is not written again. A large
/// directory keeps the parts it did not load and re-cuts the runs it did (made ready
/// by [`MDir::prepare`]).
pub(super) fn seal_dir(dir: MDir, out: &mut Vec<Vec<u8>>) -> (ChunkId, u64, u64) {
    let mut changed = dir.changed;
    let entries: Vec<Entry> = dir
        .entries
        .into_values()
        .map(|slot| match slot {
            Slot::Stored(e) => e,
            Slot::Open(mut e, sub) => {
                let (id, size, links) = seal_dir(sub, out);
                changed |= (e.id, e.links) != (Some(id), links);
                (e.id, e.size, e.links) = (Some(id), size, links);
                e
            }
        })
        .collect();
    let kept: Vec<(DirPart, bool)> = dir.parts.unwrap_or_default();
    let unloaded = || kept.iter().filter(|(_, l)| !l).map(|(p, _)| p);
    let size =
        entries.iter().map(|e| e.size).sum::<u64>() + unloaded().map(|p| p.bytes).sum::<u64>();
    let links = entries.iter().map(Entry::links_held).sum::<u64>()
        + unloaded().map(|p| p.links).sum::<u64>();
    if let (false, Some(base)) = (changed, dir.base) {
        return (base, size, links);
    }
    if kept.iter().all(|(_, loaded)| *loaded) {
        return (dirs::encode_dir(entries, out), size, links);
    }
    // Unloaded parts as they are; each run of loaded parts cut again from its entries.
    let mut parts = Vec::new();
    let mut entries = entries.into_iter().peekable();
    let mut k = 0;
    while k < kept.len() {
        if !kept[k].1 {
            parts.push(kept[k].0.clone());
            k += 1;
            continue;
        }
        while k < kept.len() && kept[k].1 {
            k += 1;
        }
        let upto = kept.get(k).map(|(p, _)| p.first.as_slice());
        let mut run = Vec::new();
        while let Some(e) = entries.next_if(|e| upto.is_none_or(|u| e.name.as_slice() < u)) {
            run.push(e);
        }
        parts.extend(dirs::encode_parts(run, out));
    }
    (dirs::encode_index(parts, out), size, links)
}
