//! Hard links in a tree edit: the names of one file, kept in agreement.
//!
//! A file with several names is an entry per name, all with the same [`Link`] id (see
//! `fvfs_node::Link`). An edit notes every file whose names it adds or removes, or
//! whose entry it sets through one of its names; before sealing, [`Links::settle`]
//! finds all the names of those files (descending only into directories that hold
//! linked names, by their `links` counts) and makes them agree: the entry last set
//! through a name, and the number of names. A file left with one name becomes an
//! ordinary entry again.
//!
//! # Invariants (after `settle`)
//! - The names sharing a link id have equal entries but for the name, and each
//!   counts them all (`nlink` >= 2).
//! - A directory tree put from elsewhere (a copy) never joins files outside it: its
//!   link ids are replaced by fresh ones, the same for the names of one file, so that
//!   links within the copy stay links (as `cp -a` keeps them).

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use fvfs_cas::ChunkId;

use super::{MDir, Slot};
use crate::error::Result;
use crate::node::{Entry, EntryKind, Link};
use crate::repo::Repo;

/// What happened to a file with several names in this edit.
#[derive(Clone)]
enum Change {
    /// Names were added or removed: each remaining name is counted again, and its
    /// status change time moves to this one (the latest given).
    Names(i64),
    /// Its entry was set through one name: every name takes it.
    Entry(Entry),
}

/// The files with several names that an edit changed, by link id.
#[derive(Default)]
pub(super) struct Links {
    touched: BTreeMap<u64, Change>,
}

impl Links {
    /// A name of file `id` was added or removed, its status changed at `ctime_ns`.
    pub fn names_changed(&mut self, id: u64, ctime_ns: i64) {
        match self.touched.entry(id).or_insert(Change::Names(ctime_ns)) {
            Change::Names(at) => *at = (*at).max(ctime_ns),
            Change::Entry(_) => {}
        }
    }

    /// `entry` (a name of a file with several) was set: every name takes it.
    pub fn entry_set(&mut self, entry: &Entry) {
        if let Some(l) = entry.link {
            self.touched.insert(l.id, Change::Entry(entry.clone()));
        }
    }

    /// `slot` left the tree (removed, or replaced): the files it named, or held names
    /// of, lose names.
    pub async fn left(&mut self, repo: &Repo, slot: Slot) -> Result<()> {
        let mut ids = Vec::new();
        let mut note = |e: &mut Entry| {
            ids.extend(e.link.map(|l| l.id));
            false
        };
        match slot {
            Slot::Stored(mut e) if e.kind != EntryKind::Dir => {
                note(&mut e);
            }
            Slot::Stored(e) => {
                if let (true, Some(id)) = (e.links > 0, e.id) {
                    visit(&mut MDir::load(repo, id).await?, repo, &mut note).await?;
                }
            }
            Slot::Open(_, mut sub) => visit(&mut sub, repo, &mut note).await?,
        }
        let now = now_ns();
        for id in ids {
            self.names_changed(id, now);
        }
        Ok(())
    }

    /// The directory tree just put at `slot` came from elsewhere: its files with
    /// several names get fresh ids, one per file.
    pub async fn relink(&mut self, repo: &Repo, slot: &mut Slot) -> Result<()> {
        if let Slot::Stored(e) = slot {
            match (e.kind, e.id) {
                (EntryKind::Dir, Some(id)) if e.links > 0 => {
                    *slot = Slot::Open(e.clone(), MDir::load(repo, id).await?);
                }
                _ => return Ok(()),
            }
        }
        let Slot::Open(_, sub) = slot else {
            return Ok(());
        };
        let mut fresh: HashMap<u64, u64> = HashMap::new();
        let mut remap = |e: &mut Entry| match &mut e.link {
            Some(l) => {
                l.id = *fresh.entry(l.id).or_insert_with(new_id);
                true
            }
            None => false,
        };
        visit(sub, repo, &mut remap).await?;
        let now = now_ns();
        for id in fresh.into_values() {
            self.names_changed(id, now);
        }
        Ok(())
    }

    /// Makes the names of every file this edit touched agree (see the module's
    /// invariants), loading what holds them.
    pub async fn settle(&mut self, repo: &Repo, root: &mut MDir) -> Result<()> {
        if self.touched.is_empty() {
            return Ok(());
        }
        let touched = std::mem::take(&mut self.touched);
        let mut names: HashMap<u64, u32> = HashMap::new();
        let mut count = |e: &mut Entry| {
            if let Some(l) = e.link.filter(|l| touched.contains_key(&l.id)) {
                *names.entry(l.id).or_default() += 1;
            }
            false
        };
        visit(root, repo, &mut count).await?;
        let mut agree = |e: &mut Entry| {
            let Some(id) = e.link.map(|l| l.id) else {
                return false;
            };
            let Some(change) = touched.get(&id) else {
                return false;
            };
            let mut new = match change {
                Change::Entry(t) => Entry {
                    name: e.name.clone(),
                    ..t.clone()
                },
                Change::Names(at) => {
                    let mut new = e.clone();
                    if let Some(m) = &mut new.meta {
                        m.ctime_ns = *at;
                    }
                    new
                }
            };
            let nlink = names.get(&id).copied().unwrap_or(1);
            new.link = (nlink >= 2).then_some(Link { id, nlink });
            let changed = new != *e;
            *e = new;
            changed
        };
        visit(root, repo, &mut agree).await
    }
}

/// A link id for a new file with several names: random, so unique within a tree.
pub(super) fn new_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let mut seed = now_ns().to_le_bytes().to_vec();
    seed.extend(DRAWN.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    seed.extend(std::process::id().to_le_bytes());
    let h = ChunkId::of(&seed);
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

pub(super) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The function [`visit`] calls on each non-directory entry; returns whether it
/// changed the entry.
type Visitor<'v> = dyn FnMut(&mut Entry) -> bool + Send + 'v;

/// Calls `f` on every file, symlink and special entry below `dir` that can be a name
/// of a file with several: everything loaded, and what stored directories (or parts
/// of large ones) hold such names, loaded for it. Directories where `f` changed an
/// entry are marked changed.
fn visit<'a, 'v: 'a>(
    dir: &'a mut MDir,
    repo: &'a Repo,
    f: &'a mut Visitor<'v>,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        if let Some(parts) = &dir.parts {
            let linked: Vec<usize> = parts
                .iter()
                .enumerate()
                .filter(|(_, (p, loaded))| !loaded && p.links > 0)
                .map(|(i, _)| i)
                .collect();
            dir.load_parts(repo, &linked).await?;
        }
        let mut changed = false;
        for slot in dir.entries.values_mut() {
            if let Slot::Stored(e) = slot {
                if let (EntryKind::Dir, Some(id), true) = (e.kind, e.id, e.links > 0) {
                    *slot = Slot::Open(e.clone(), MDir::load(repo, id).await?);
                }
            }
            match slot {
                Slot::Stored(e) if e.kind == EntryKind::Dir => {}
                Slot::Stored(e) => changed |= f(e),
                Slot::Open(_, sub) => visit(sub, repo, f).await?,
            }
        }
        dir.changed |= changed;
        Ok(())
    })
}
