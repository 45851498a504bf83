//! Durability of directories (`fsyncdir`), freeing nodes nothing holds, and the power
//! cut.
//!
//! # Invariants
//! - `durable_refs` of a node counts the durable lists naming it: `fsyncdir` adds the new
//!   list's references before it drops the old list's, so a node named by both is never
//!   freed in between.
//! - A cut leaves exactly the durable state: every file's durable content, every
//!   directory's durable list, and only the nodes reachable from the root through them.
//!   Per-directory durability can make a directory durably named twice (a rename synced
//!   in the new parent only); the cut keeps the first name in breadth-first order from the
//!   root, so the result is still a tree.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use super::{Body, FileKind, Ino, Result, Tree, ROOT};

/// What the last cut dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// File pages whose unsynced changes were dropped.
    pub dropped_pages: u64,
    /// Files whose size went back.
    pub resized_files: u64,
    /// Directories whose entry list went back.
    pub restored_dirs: u64,
    /// Nodes freed because no durable entry reached them.
    pub freed_inodes: u64,
    /// Durable names of a directory already named elsewhere, dropped.
    pub dropped_dir_aliases: u64,
}

impl Tree {
    /// `fsyncdir`: the directory's current entry list becomes durable.
    pub fn fsyncdir(&mut self, ino: Ino) -> Result<()> {
        let dir = self.dir(ino)?;
        let new = Arc::new(dir.entries.clone());
        let old = std::mem::replace(&mut self.dir_mut(ino)?.durable, new.clone());
        self.stats.fsyncdir += 1;
        for child in new.values() {
            if let Some(n) = self.nodes.get_mut(child) {
                n.durable_refs += 1;
            }
        }
        for child in old.values() {
            if let Some(n) = self.nodes.get_mut(child) {
                n.durable_refs = n.durable_refs.saturating_sub(1);
            }
            self.maybe_free(*child);
        }
        Ok(())
    }

    /// Frees `ino` if no current entry, durable entry or kernel reference holds it, then
    /// whatever only its lists held.
    pub(super) fn maybe_free(&mut self, ino: Ino) {
        let mut work = vec![ino];
        while let Some(ino) = work.pop() {
            let Some(n) = self.nodes.get(&ino) else {
                continue;
            };
            if ino == ROOT || n.links > 0 || n.durable_refs > 0 || n.lookups > 0 {
                continue;
            }
            let Some(node) = self.nodes.remove(&ino) else {
                continue;
            };
            if let Body::Dir(dir) = node.body {
                for child in dir.durable.values() {
                    if let Some(n) = self.nodes.get_mut(child) {
                        n.durable_refs = n.durable_refs.saturating_sub(1);
                        work.push(*child);
                    }
                }
                for child in dir.entries.values() {
                    if let Some(n) = self.nodes.get_mut(child) {
                        n.links = n.links.saturating_sub(1);
                        work.push(*child);
                    }
                }
            }
        }
    }

    /// A power cut: every unsynced change is dropped, and the nodes no durable entry
    /// reaches any more are freed (also those the kernel still holds: they become stale).
    pub fn cut(&mut self) -> CutReport {
        let mut report = CutReport::default();
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File(c) => {
                    let d = c.cut();
                    report.dropped_pages += d.pages;
                    report.resized_files += u64::from(d.size_changed);
                }
                Body::Dir(d) if d.entries != *d.durable => {
                    report.restored_dirs += 1;
                    d.entries = (*d.durable).clone();
                }
                _ => {}
            }
        }
        let reached = self.keep_tree(&mut report);
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| reached.contains(ino));
        report.freed_inodes = (before - self.nodes.len()) as u64;
        self.recount();
        self.stats.cuts += 1;
        self.stats.last_cut = report.clone();
        report
    }

    /// Walks the tree from the root breadth first, dropping names of directories already
    /// reached (and of missing nodes); every list becomes durable as it is. Returns the
    /// nodes reached.
    fn keep_tree(&mut self, report: &mut CutReport) -> HashSet<Ino> {
        let mut reached = HashSet::from([ROOT]);
        let mut queue = VecDeque::from([ROOT]);
        while let Some(dir_ino) = queue.pop_front() {
            let Ok(dir) = self.dir_mut(dir_ino) else {
                continue;
            };
            let mut entries = std::mem::take(&mut dir.entries);
            entries.retain(|_, child| {
                let Some(node) = self.nodes.get_mut(child) else {
                    return false;
                };
                if !reached.insert(*child) && node.kind == FileKind::Dir {
                    report.dropped_dir_aliases += 1;
                    return false;
                }
                if let Body::Dir(d) = &mut node.body {
                    d.parent = dir_ino;
                    queue.push_back(*child);
                }
                true
            });
            if let Ok(dir) = self.dir_mut(dir_ino) {
                if *dir.durable != entries {
                    dir.durable = Arc::new(entries.clone());
                }
                dir.entries = entries;
            }
        }
        reached
    }

    /// Recomputes `links`, `durable_refs` and `subdirs` from the entry lists (equal to
    /// the durable ones after a cut).
    fn recount(&mut self) {
        for (&ino, node) in self.nodes.iter_mut() {
            let base = u32::from(ino == ROOT);
            node.links = base;
            node.durable_refs = base;
            if let Body::Dir(d) = &mut node.body {
                d.subdirs = 0;
            }
        }
        let edges: Vec<(Ino, Ino)> = self
            .nodes
            .iter()
            .filter_map(|(&ino, n)| match &n.body {
                Body::Dir(d) => Some(d.entries.values().map(move |&c| (ino, c))),
                _ => None,
            })
            .flatten()
            .collect();
        for (parent, child) in edges {
            let Some(node) = self.nodes.get_mut(&child) else {
                continue;
            };
            node.links += 1;
            node.durable_refs += 1;
            if node.kind == FileKind::Dir {
                if let Ok(d) = self.dir_mut(parent) {
                    d.subdirs += 1;
                }
            }
        }
    }
}
