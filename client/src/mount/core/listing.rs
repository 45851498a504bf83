//! Directory listings: built once per open directory (at its first read, or a rewind)
//! and served from there, as names (readdir) or names with attributes (readdirplus).
//!
//! # Invariants
//! - The inodes a listing names are in the table without a lookup counted: a readdir
//!   only names them, and `releasedir` lets go of those the kernel never looked up. A
//!   readdirplus counts one lookup for each entry it links (the kernel links them as
//!   if looked up, and forgets them the same way); past the inode budget it links
//!   only what the kernel holds already (`Inodes::hand_out`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use fvfs_cas::ChunkId;
use fvfs_node::{DirNode, Entry, EntryKind};
use rustix::io::Errno;

use super::inodes::{Handed, View, ROOT, SNAPSHOTS, SNAPSHOTS_NAME};
use super::view::Attr;
use super::{dir_entry, lock, stale, Core};
use crate::mount::remote::Remote;
use crate::mount::FastMap;

/// Items handed out per call at most (a reply buffer holds fewer).
const WINDOW: usize = 256;

pub struct Listing {
    dir: u64,
    view: View,
    /// The live root's generation when listed.
    since: u64,
    /// The directory's node, whose entries give the items' attributes.
    node: Option<Arc<DirNode>>,
    items: Vec<Item>,
    /// Items before this one were in answers the kernel has read.
    confirmed: usize,
    /// The small files of its first read-ahead window, pushed into the kernel's cache
    /// once the listing is read to its end (see [`super::push`]).
    ahead: Vec<Entry>,
}

/// Items of a listing handed out in one call.
pub struct Window {
    pub items: Vec<(Item, Option<Attr>)>,
    /// How long the kernel may trust the attributes.
    pub ttl: Duration,
}

#[derive(Clone)]
pub struct Item {
    pub name: Vec<u8>,
    pub kind: EntryKind,
    /// The link id of a file with several names.
    pub link: Option<u64>,
    pub ino: u64,
    /// Its entry's index in the directory's node (`None`: `.`, `..`, a file being
    /// written here, `/.snapshots`, a snapshot).
    at: Option<usize>,
}

impl Item {
    pub fn name(&self) -> &OsStr {
        OsStr::from_bytes(&self.name)
    }

    /// `.` or `..`, which the kernel does not link (nor count as looked up).
    pub fn is_dot(&self) -> bool {
        self.name == b"." || self.name == b".."
    }
}

impl Core {
    /// The listing of directory `ino` as it is now.
    fn list(&self, ino: u64) -> Result<Listing, Errno> {
        let since = self.live.generation();
        let (view, path) = self.locate(ino)?;
        // Name, kind, link id, index in the node.
        type Named = (Vec<u8>, EntryKind, Option<u64>, Option<usize>);
        let mut names: Vec<Named> = Vec::new();
        let mut node = None;
        let mut ahead = Vec::new();
        if view == View::SnapshotList {
            for s in self.block(self.remote.snapshots())? {
                names.push((s.name.into_bytes(), EntryKind::Dir, None, None));
            }
        } else {
            let entry = self.entry(&view, &path).map_err(stale)?;
            if entry.kind != EntryKind::Dir {
                return Err(Errno::NOTDIR);
            }
            if let Some(id) = entry.id {
                let dir = self.block(self.remote.dir(id))?;
                let reads = self.remote.listing_reads();
                if let Some(first) = Remote::first_small_file(&dir).filter(|_| reads) {
                    ahead = self.fill_ahead(ino, id, first, true);
                }
                let after = reads.then(|| self.parent_node(&view, &path)).flatten();
                if let Some(walk) = self.remote.walk_ahead(dir.clone(), after, reads) {
                    self.rt.spawn(walk);
                }
                let entries = dir.entries.iter().enumerate();
                // A name no local file system holds (stored before names were limited)
                // cannot be listed: the kernel fails the whole listing with EIO.
                let (fit, over): (Vec<_>, Vec<_>) =
                    entries.partition(|(_, e)| e.name.len() <= super::NAME_MAX);
                for (_, e) in over {
                    tracing::warn!(
                        "not listed: {:?}... in inode {ino} has a name of {} bytes (at most {})",
                        String::from_utf8_lossy(&e.name[..40]),
                        e.name.len(),
                        super::NAME_MAX
                    );
                }
                names.extend(
                    fit.into_iter()
                        .map(|(i, e)| (e.name.clone(), e.kind, e.link.map(|l| l.id), Some(i))),
                );
                node = Some(dir);
            }
        }
        // Entries staged here (new ones, or new attributes of listed ones) and files
        // created here and not committed yet are listed too; those removed here are not.
        if view == View::Live {
            let mut staged: FastMap<Vec<u8>, Option<Entry>> = (lock(&self.commits.overlay)
                .children(&path))
            .into_iter()
            .collect();
            names.retain_mut(
                |(name, kind, link, at)| match staged.remove(name.as_slice()) {
                    Some(Some(e)) => {
                        (*kind, *link, *at) = (e.kind, e.link.map(|l| l.id), None);
                        true
                    }
                    Some(None) => false,
                    None => true,
                },
            );
            let mut new: Vec<Entry> = staged.into_values().flatten().collect();
            new.sort_by(|a, b| a.name.cmp(&b.name));
            names.extend(
                new.into_iter()
                    .map(|e| (e.name, e.kind, e.link.map(|l| l.id), None)),
            );
        }
        let staged = self.writing.inodes();
        let dot = |name: &[u8], ino| Item {
            name: name.to_vec(),
            kind: EntryKind::Dir,
            link: None,
            ino,
            at: None,
        };
        let mut items = vec![dot(b".", ino), dot(b"..", ROOT)];
        let mut inodes = lock(&self.inodes);
        for (name, kind, link, at) in names {
            let child = inodes.child(ino, &name, kind, link, false);
            items.push(Item {
                name,
                kind,
                link,
                ino: child,
                at,
            });
        }
        for staged in staged {
            // Every name of it here (a file made here may have been linked here).
            for (parent, name) in inodes.edges(staged) {
                if parent == ino && !items.iter().any(|it| it.name == name) {
                    let (name, kind) = (name.to_vec(), EntryKind::File);
                    items.push(Item {
                        name,
                        kind,
                        link: None,
                        ino: staged,
                        at: None,
                    });
                }
            }
        }
        if ino == ROOT {
            items.push(dot(SNAPSHOTS_NAME, SNAPSHOTS));
        }
        Ok(Listing {
            dir: ino,
            view,
            since,
            node,
            items,
            confirmed: 0,
            ahead,
        })
    }

    /// The node of the folder holding `path` in `view`, and `path`'s name in it (none
    /// for the root, or a folder staged here and not committed).
    fn parent_node(&self, view: &View, path: &[u8]) -> Option<(ChunkId, Vec<u8>)> {
        let slash = path.iter().rposition(|b| *b == b'/')?;
        let name = path.get(slash + 1..).filter(|n| !n.is_empty())?;
        let parent = self.entry(view, &path[..slash.max(1)]).ok()?;
        Some((parent.id?, name.to_vec()))
    }

    /// Up to [`WINDOW`] items of open directory `fh` (directory `ino`) from `offset`,
    /// with their attributes (`Some` exactly when `plus`), and how long the kernel may trust those; a
    /// first read or a rewind lists it afresh.
    pub fn listed(&self, fh: u64, ino: u64, offset: u64, plus: bool) -> Result<Window, Errno> {
        let listed = lock(&self.listings)
            .get(&fh)
            .is_some_and(|l| offset > 0 && !l.items.is_empty());
        if !listed {
            let fresh = self.list(ino)?;
            let old = lock(&self.listings).insert(fh, fresh);
            if let Some(old) = old {
                self.sweep(&old);
            }
        }
        let (window, view, since, node, confirmed, ahead) = {
            let mut listings = lock(&self.listings);
            let l = listings.get_mut(&fh).ok_or(Errno::BADF)?;
            let start = (offset as usize).min(l.items.len());
            let end = (start + WINDOW).min(l.items.len());
            let items = l.items[start..end].to_vec();
            // Asked for more: the kernel has read (and made the inodes of) what came
            // before, and it reads to the end before a walk opens the files.
            let mut confirmed = Vec::new();
            let mut ahead = Vec::new();
            if plus {
                confirmed = l.items[l.confirmed.min(start)..start]
                    .iter()
                    .map(|it| it.ino)
                    .collect();
                l.confirmed = l.confirmed.max(start);
                if start == l.items.len() {
                    ahead = std::mem::take(&mut l.ahead);
                }
            }
            (
                items,
                l.view.clone(),
                l.since,
                l.node.clone(),
                confirmed,
                ahead,
            )
        };
        if !confirmed.is_empty() {
            let mut inodes = lock(&self.inodes);
            for ino in confirmed {
                inodes.in_kernel(ino);
            }
        }
        if !ahead.is_empty() {
            self.push_listed(ino, ahead);
        }
        let items = window
            .into_iter()
            .map(|item| {
                let attr = plus.then(|| self.item_attr(&item, &view, node.as_deref()));
                (item, attr)
            })
            .collect();
        Ok(Window {
            items,
            ttl: self.ttl(&view, since),
        })
    }

    /// The attributes readdirplus gives for `item` (the kernel ignores those of `.`
    /// and `..`).
    fn item_attr(&self, item: &Item, view: &View, node: Option<&DirNode>) -> Attr {
        match (item.at, node) {
            (Some(at), Some(node)) => self.attr(item.ino, view, &node.entries[at]),
            _ if item.ino == SNAPSHOTS => {
                self.attr(SNAPSHOTS, &View::SnapshotList, &dir_entry(0o555))
            }
            _ if *view == View::SnapshotList => {
                let name = String::from_utf8_lossy(&item.name).into_owned();
                self.attr(item.ino, &View::Snapshot(name), &dir_entry(0o755))
            }
            // A file being written here (its write-back's attributes).
            _ if !item.is_dot() => match self.stat(item.ino) {
                Ok(attr) => attr,
                Err(_) => self.attr(
                    item.ino,
                    view,
                    &Entry {
                        kind: EntryKind::File,
                        ..dir_entry(0o644)
                    },
                ),
            },
            _ => self.attr(item.ino, view, &dir_entry(0o755)),
        }
    }

    /// How `item` of directory `dir` goes to the kernel with its attributes
    /// (readdirplus counts a lookup of what it links); `None` when it is no name any
    /// more.
    pub fn hand_out(&self, dir: u64, item: &Item) -> Option<Handed> {
        match item.is_dot() {
            true => Some(Handed::Linked(item.ino)),
            false => lock(&self.inodes).hand_out(item.ino, dir, &item.name, item.kind, item.link),
        }
    }

    /// Open directory `fh` is closed.
    pub fn close_listing(&self, fh: u64) {
        let listing = lock(&self.listings).remove(&fh);
        if let Some(listing) = listing {
            self.sweep(&listing);
        }
    }

    /// Lets go of the inodes a listing named that the kernel never looked up.
    fn sweep(&self, listing: &Listing) {
        let named: Vec<u64> = listing
            .items
            .iter()
            .map(|it| it.ino)
            .filter(|ino| *ino != listing.dir)
            .collect();
        lock(&self.inodes).sweep(&named);
    }
}
