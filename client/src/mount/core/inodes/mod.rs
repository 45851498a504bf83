//! The mount's inode table: which name in which directory each inode number stands for.
//!
//! # Invariants
//! - Inode [`ROOT`] is the live tree's root and [`SNAPSHOTS`] is `/.snapshots`; both
//!   live as long as the mount. Below `/.snapshots`, each name is a snapshot's root.
//! - Every other inode is one name in its parent directory (an edge), or detached:
//!   unlinked or replaced, still valid for what has it open, never a path again. A
//!   path is computed from the edges when needed, so a rename moves one edge and
//!   everything below follows, with no scan.
//! - An inode is dropped once the kernel has forgotten every lookup of it and nothing
//!   here holds it (a write-back, or a child still in the table): the table holds what
//!   the kernel caches plus what is being written, whatever the number of lookups.
//! - An inode keeps its kind: a name that now holds another kind gets a new inode.
//! - Each inode carries a use mark ([`Mark`]), set whenever a request names it and
//!   cleared by [`Inodes::idle_files`]: the files it offers were not used between two
//!   of its calls (what the mount's inode budget asks the kernel to forget,
//!   `super::trim`), and each is offered once until it is used again.
//! - The names of a file with several (hard links, `Entry::link`) are one inode: its
//!   edge is one of them, the others are its aliases; when its edge goes, an alias
//!   takes its place.
//! - Once the table holds its budget (`--max-inodes`), readdirplus hands the kernel no
//!   inode it does not hold already ([`Inodes::hand_out`]): the kernel links nothing
//!   for such an entry and looks the name up if it is used, so a walk that only lists
//!   (find) grows neither the kernel's inodes nor the table.

use std::cell::Cell;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use fvfs_node::{path as fpath, EntryKind};
use hashbrown::HashTable;

use crate::mount::FastMap;

pub const ROOT: u64 = 1;
pub const SNAPSHOTS: u64 = 2;
pub const SNAPSHOTS_NAME: &[u8] = b".snapshots";

/// The content record of an inode written here: equal to no content key.
const UNKNOWN: [u8; 32] = [0; 32];

/// Which tree an inode is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum View {
    /// The live tree (HEAD).
    Live,
    /// `/.snapshots` itself.
    SnapshotList,
    /// One snapshot, read-only.
    Snapshot(String),
}

/// One inode: about 60 bytes plus its name, so a million cost well under 100 MB.
struct Inode {
    /// Parent inode and name; `None` once detached.
    edge: Option<(u64, Box<[u8]>)>,
    kind: EntryKind,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
    /// Write-backs and children in the table.
    holds: u64,
    /// Whether the kernel surely made its inode: it asked something after it was
    /// handed out (see [`Inodes::in_kernel`]).
    in_kernel: bool,
    /// What [`Inodes::idle_files`] knows of its use (a `Cell`, so that
    /// [`Inodes::locate`], which most requests call, marks it through `&self`; it
    /// fits in the padding after `kind`).
    mark: Cell<Mark>,
}

/// An inode's use, as the inode budget sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Named by a request since [`Inodes::idle_files`] last looked.
    Used,
    /// Not since.
    Unused,
    /// Offered by [`Inodes::idle_files`] and not used since: the kernel was asked to
    /// forget it (it keeps a file open somewhere until it is closed).
    Offered,
}

impl Inode {
    fn new(edge: Option<(u64, Box<[u8]>)>, kind: EntryKind) -> Self {
        Self {
            edge,
            kind,
            lookups: 0,
            holds: 0,
            in_kernel: false,
            mark: Cell::new(Mark::Used),
        }
    }
}

pub struct Inodes {
    nodes: FastMap<u64, Inode>,
    /// The inodes that have an edge, found by it (each name is stored once, in its
    /// inode).
    names: HashTable<u64>,
    hasher: RandomState,
    /// The content each inode had when last opened for reading or pushed into the
    /// kernel's cache (see `Core::open`), or [`UNKNOWN`] once written here.
    content: FastMap<u64, [u8; 32]>,
    /// Keys the hash that numbers inodes (fixed for the mount's lifetime).
    numbering: RandomState,
    /// The inode of each file with several names, by view and link id; and the key
    /// of each such inode.
    by_link: FastMap<(View, u64), u64>,
    link_of: FastMap<u64, (View, u64)>,
    /// Names of files with several, other than their inode's edge.
    aliases: FastMap<(u64, Box<[u8]>), u64>,
    /// Inodes past which readdirplus links no new one (see [`Inodes::hand_out`]).
    budget: usize,
}

/// How a readdirplus entry goes to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    /// Linked to this inode, a lookup of it counted.
    Linked(u64),
    /// Only listed, with this inode number: the kernel links no inode to it (node id
    /// 0) and looks the name up when it is used.
    Listed(u64),
}

/// Whether inode `ino` of `nodes` is `name` in `parent`.
fn is_edge(nodes: &FastMap<u64, Inode>, ino: u64, parent: u64, name: &[u8]) -> bool {
    let edge = nodes.get(&ino).and_then(|n| n.edge.as_ref());
    edge.is_some_and(|(p, n)| *p == parent && **n == *name)
}

/// The hash an inode of `nodes` is filed under in `names`.
fn edge_hash(nodes: &FastMap<u64, Inode>, hasher: &RandomState, ino: u64) -> u64 {
    match nodes.get(&ino).and_then(|n| n.edge.as_ref()) {
        Some((parent, name)) => hasher.hash_one((parent, &**name)),
        None => 0,
    }
}

impl Inodes {
    pub fn new() -> Self {
        let root = |edge| Inode::new(edge, EntryKind::Dir);
        let mut nodes = FastMap::default();
        nodes.insert(ROOT, root(None));
        nodes.insert(SNAPSHOTS, root(Some((ROOT, SNAPSHOTS_NAME.into()))));
        Self {
            nodes,
            names: HashTable::new(),
            hasher: RandomState::default(),
            content: FastMap::default(),
            numbering: RandomState::default(),
            by_link: FastMap::default(),
            link_of: FastMap::default(),
            aliases: FastMap::default(),
            budget: usize::MAX,
        }
    }

    /// Past `budget` inodes, readdirplus hands out no new one ([`Inodes::hand_out`]).
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Inodes in the table (the two roots included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Up to `n` files (and symbolic links) the kernel may be asked to forget, with the
    /// name each stands for (its directory and name there): those the kernel holds
    /// (looked up), that nothing here holds (no write-back), that no request named
    /// since the last call and that were not offered since they were last used.
    /// Clears the marks of the used, so a file used since is spared once. Never a
    /// directory: a process may stand in it, and its name cannot be forgotten without
    /// cutting that process off (the follower's rule too).
    pub fn idle_files(&self, n: usize) -> Vec<(u64, u64, Box<[u8]>)> {
        let mut idle = Vec::new();
        for (ino, node) in &self.nodes {
            let mark = node.mark.get();
            if mark == Mark::Used {
                node.mark.set(Mark::Unused);
            }
            let idle_file = mark == Mark::Unused
                && node.kind != EntryKind::Dir
                && node.lookups > 0
                && node.holds == 0
                && idle.len() < n;
            if let (true, Some((parent, name))) = (idle_file, &node.edge) {
                node.mark.set(Mark::Offered);
                idle.push((*ino, *parent, name.clone()));
            }
        }
        idle
    }

    /// The view and path `ino` stands for now; `None` if it, or a directory above it,
    /// is detached or unknown. Marks `ino` used (the roots need no mark: folders are
    /// never offered to forget).
    pub fn locate(&self, ino: u64) -> Option<(View, Vec<u8>)> {
        let mut names: Vec<&[u8]> = Vec::new();
        let mut at = ino;
        let view = loop {
            match at {
                ROOT => break View::Live,
                SNAPSHOTS => match names.pop() {
                    None => break View::SnapshotList,
                    Some(name) => break View::Snapshot(String::from_utf8_lossy(name).into()),
                },
                _ => {
                    let node = self.nodes.get(&at)?;
                    if at == ino {
                        node.mark.set(Mark::Used);
                    }
                    let (parent, name) = node.edge.as_ref()?;
                    names.push(name);
                    at = *parent;
                }
            }
        };
        let mut path = b"/".to_vec();
        for name in names.iter().rev() {
            path = fpath::join(&path, name);
        }
        Some((view, path))
    }

    /// The inode named `name` in `parent`, if the table has one.
    pub fn known(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let hash = self.hasher.hash_one((parent, name));
        let found = self
            .names
            .find(hash, |ino| is_edge(&self.nodes, *ino, parent, name));
        found
            .copied()
            .or_else(|| self.aliases.get(&(parent, name.into())).copied())
    }

    /// The directory `ino` is in and its name there, unless it is detached.
    pub fn edge(&self, ino: u64) -> Option<(u64, &[u8])> {
        let (parent, name) = self.nodes.get(&ino)?.edge.as_ref()?;
        Some((*parent, name))
    }

    /// Whether a name of inode `ino` that now holds `kind` is still that inode, as
    /// [`Inodes::child`] would find it.
    pub fn stands_for(&self, ino: u64, kind: EntryKind) -> bool {
        self.kind(ino) == Some(kind)
    }

    pub fn kind(&self, ino: u64) -> Option<EntryKind> {
        self.nodes.get(&ino).map(|n| n.kind)
    }

    /// The inode of `name` in `parent`, holding `kind` (a name of the file with
    /// several whose id is `link`, if given); a new one if the table has none or the
    /// one it has is of another kind (that one is detached). Counts a lookup when
    /// `looked_up` (the kernel is told of it in an entry reply); a readdir only names
    /// it, and [`Inodes::sweep`] drops it later if no lookup came.
    pub fn child(
        &mut self,
        parent: u64,
        name: &[u8],
        kind: EntryKind,
        link: Option<u64>,
        looked_up: bool,
    ) -> u64 {
        let ino = match self.known(parent, name) {
            Some(ino) if self.kind(ino) == Some(kind) => {
                // A file that got other names since its inode was made.
                if let (Some(id), false) = (link, self.link_of.contains_key(&ino)) {
                    if let Some((view, _)) = self.locate(parent) {
                        self.linked(ino, (view, id));
                    }
                }
                ino
            }
            found => {
                if found.is_some() {
                    self.detach(parent, name);
                }
                let key = link.and_then(|id| Some((self.locate(parent)?.0, id)));
                match key.as_ref().and_then(|k| self.by_link.get(k)).copied() {
                    Some(ino) if self.kind(ino) == Some(kind) => {
                        self.aliases.insert((parent, name.into()), ino);
                        self.hold(parent);
                        ino
                    }
                    _ => {
                        let ino = self.number(parent, name, link);
                        let node = Inode::new(Some((parent, name.into())), kind);
                        self.nodes.insert(ino, node);
                        self.file(ino);
                        self.hold(parent);
                        if let Some(key) = key {
                            self.linked(ino, key);
                        }
                        ino
                    }
                }
            }
        };
        if looked_up {
            self.looked_up(ino);
        }
        ino
    }

    /// `ino`, `name` in `parent` (holding `kind`, a name of the file `link` if
    /// given), is handed to the kernel with its attributes (readdirplus), which counts
    /// a lookup of it: so does the table. A forget of its last incarnation in the
    /// kernel may have dropped it since the listing named it; then it is filed again
    /// (under the same number: it is a hash of the place). `None` if that number now
    /// stands for another inode (skip the name).
    ///
    /// Once the table holds its budget (the names of open listings included), an
    /// inode the kernel does not hold (no lookup counted) is only listed, filed again
    /// without a lookup if it was dropped: the listing that named it lets it go when
    /// closed.
    pub fn hand_out(
        &mut self,
        ino: u64,
        parent: u64,
        name: &[u8],
        kind: EntryKind,
        link: Option<u64>,
    ) -> Option<Handed> {
        let full = self.nodes.len() >= self.budget;
        match self.nodes.get(&ino) {
            Some(node) if full && node.lookups == 0 => return Some(Handed::Listed(ino)),
            Some(_) => {
                self.looked_up(ino);
                return Some(Handed::Linked(ino));
            }
            None => {}
        }
        let again = self.child(parent, name, kind, link, !full);
        match (again == ino, full) {
            (true, false) => Some(Handed::Linked(ino)),
            // Filed again with no lookup: the listing that named it lets it go.
            (true, true) => Some(Handed::Listed(ino)),
            (false, false) => {
                self.forget(again, 1);
                None
            }
            (false, true) => {
                self.drop_unused(again);
                None
            }
        }
    }

    /// The kernel was told of `ino` once more.
    pub fn looked_up(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups += 1;
            n.mark.set(Mark::Used);
        }
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            node.in_kernel &= node.lookups > 0;
        }
        self.drop_unused(ino);
    }

    /// Drops those of `inos` nobody looked up or holds (names a readdir handed out).
    pub fn sweep(&mut self, inos: &[u64]) {
        for ino in inos {
            self.drop_unused(*ino);
        }
    }

    pub fn hold(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.holds += 1;
        }
    }

    pub fn release(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.holds = node.holds.saturating_sub(1);
        }
        self.drop_unused(ino);
    }

    /// `ino` is (now) a name of the file with several keyed `key`: the names of that
    /// file found later are aliases of it.
    fn linked(&mut self, ino: u64, key: (View, u64)) {
        self.by_link.insert(key.clone(), ino);
        self.link_of.insert(ino, key);
    }

    /// `name` in `parent` is a new name of `ino`, which became a file with several
    /// names whose id is `link` (a link(2) made here).
    pub fn add_name(&mut self, ino: u64, parent: u64, name: &[u8], link: u64) {
        if let Some((view, _)) = self.locate(parent) {
            self.linked(ino, (view, link));
        }
        self.detach(parent, name);
        self.aliases.insert((parent, name.into()), ino);
        self.hold(parent);
        self.looked_up(ino);
    }

    /// `name` in `parent` is gone (removed, or replaced by a rename): its inode stays
    /// for those who have it, but is no path any more (unless it has other names).
    pub fn detach(&mut self, parent: u64, name: &[u8]) {
        let Some(ino) = self.known(parent, name) else {
            return;
        };
        if self.aliases.remove(&(parent, Box::from(name))).is_none() {
            self.unfile(ino);
            let heir = self.alias_of(ino);
            if let Some(edge) = &heir {
                self.aliases.remove(edge);
            }
            let promoted = heir.is_some();
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.edge = heir;
            }
            if promoted {
                self.file(ino);
            }
        }
        self.release(parent);
        self.drop_unused(ino);
    }

    /// Every name of `ino`: its edge, then its aliases (in no order).
    pub fn edges(&self, ino: u64) -> Vec<(u64, &[u8])> {
        let aliases = (self.aliases.iter())
            .filter(|(_, i)| **i == ino)
            .map(|((parent, name), _)| (*parent, &name[..]));
        self.edge(ino).into_iter().chain(aliases).collect()
    }

    /// The live paths of `ino`'s other names (besides the one [`Self::locate`] gives).
    pub fn alias_paths(&self, ino: u64) -> Vec<Vec<u8>> {
        (self.aliases.iter())
            .filter(|(_, i)| **i == ino)
            .filter_map(|((parent, name), _)| match self.locate(*parent)? {
                (View::Live, dir) => Some(fpath::join(&dir, name)),
                _ => None,
            })
            .collect()
    }

    /// One of the aliases of `ino`, if it has any.
    fn alias_of(&self, ino: u64) -> Option<(u64, Box<[u8]>)> {
        if !self.link_of.contains_key(&ino) {
            return None;
        }
        let found = self.aliases.iter().find(|(_, i)| **i == ino);
        found.map(|(edge, _)| edge.clone())
    }

    /// `from_name` in `from` is now `to_name` in `to` (whatever was there is detached).
    pub fn rename(&mut self, from: u64, from_name: &[u8], to: u64, to_name: &[u8]) {
        let Some(ino) = self.known(from, from_name) else {
            self.detach(to, to_name);
            return;
        };
        if (from, from_name) == (to, to_name) {
            return;
        }
        self.detach(to, to_name);
        if let Some(ino) = self.aliases.remove(&(from, Box::from(from_name))) {
            self.aliases.insert((to, to_name.into()), ino);
        } else {
            self.unfile(ino);
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.edge = Some((to, to_name.into()));
            }
            self.file(ino);
        }
        self.hold(to);
        self.release(from);
    }

    /// Records `key` as `ino`'s content; whether it was the content recorded before.
    pub fn same_content(&mut self, ino: u64, key: [u8; 32]) -> bool {
        if !self.nodes.contains_key(&ino) {
            return false;
        }
        self.content.insert(ino, key) == Some(key)
    }

    /// `ino` is being written here: what the kernel caches of it is of no content
    /// recorded (the next open does not keep it, and nothing is pushed into it).
    pub fn content_unknown(&mut self, ino: u64) {
        if self.nodes.contains_key(&ino) {
            self.content.insert(ino, UNKNOWN);
        }
    }

    /// The kernel has made its inode `ino` (handed out in a reply it has read, since
    /// it asked for more), so content pushed into it is kept.
    pub fn in_kernel(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.in_kernel = n.lookups > 0;
        }
    }

    /// Whether content may be pushed into `ino`: the kernel has the inode and was
    /// never given any content of it (see [`super::push`]).
    pub fn fresh(&self, ino: u64) -> bool {
        self.nodes.get(&ino).is_some_and(|n| n.in_kernel) && !self.content.contains_key(&ino)
    }

    /// Records `key` as `ino`'s content if it is [`Inodes::fresh`]: whether it was.
    pub fn first_content(&mut self, ino: u64, key: [u8; 32]) -> bool {
        if !self.fresh(ino) {
            return false;
        }
        self.content.insert(ino, key);
        true
    }

    /// The number of a new inode for `name` in `parent`: a hash of its view and path
    /// (or link id, for a file with several names), so that a name the kernel forgot
    /// and looks up again gets the number it had (tar checks that a file it made is
    /// still the same by its inode number); the next free number on the rare collision
    /// with an inode in use.
    fn number(&self, parent: u64, name: &[u8], link: Option<u64>) -> u64 {
        let place = self
            .locate(parent)
            .map(|(view, path)| (view, fpath::join(&path, name)));
        let hashed = match (&place, link) {
            (Some((view, _)), Some(id)) => self.numbering.hash_one((3u8, view, id)),
            (Some((View::Snapshot(s), path)), None) => {
                self.numbering.hash_one((1u8, s.as_str(), path))
            }
            (Some((_, path)), None) => self.numbering.hash_one((0u8, path)),
            // Below a detached directory: any free number.
            (None, _) => self.numbering.hash_one((2u8, parent, name)),
        };
        let mut ino = hashed;
        while ino <= SNAPSHOTS || self.nodes.contains_key(&ino) {
            ino = ino.wrapping_add(1);
        }
        ino
    }

    /// Files `ino` under its edge in `names`.
    fn file(&mut self, ino: u64) {
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        let hash = edge_hash(nodes, hasher, ino);
        self.names
            .insert_unique(hash, ino, |i| edge_hash(nodes, hasher, *i));
    }

    /// Takes `ino` out of `names` (before its edge changes or it goes).
    fn unfile(&mut self, ino: u64) {
        let hash = edge_hash(&self.nodes, &self.hasher, ino);
        if let Ok(found) = self.names.find_entry(hash, |i| *i == ino) {
            found.remove();
        }
    }

    /// Drops `ino` if unused, then each parent that this leaves unused.
    fn drop_unused(&mut self, mut ino: u64) {
        loop {
            let Some(node) = self.nodes.get(&ino) else {
                return;
            };
            if ino == ROOT || ino == SNAPSHOTS || node.lookups > 0 || node.holds > 0 {
                return;
            }
            self.unfile(ino);
            self.content.remove(&ino);
            if let Some(key) = self.link_of.remove(&ino) {
                self.by_link.remove(&key);
                let mut parents = Vec::new();
                self.aliases.retain(|(parent, _), i| {
                    let mine = *i == ino;
                    if mine {
                        parents.push(*parent);
                    }
                    !mine
                });
                for parent in parents {
                    self.release(parent);
                }
            }
            let node = self.nodes.remove(&ino).expect("just found");
            let Some((parent, _)) = node.edge else {
                return;
            };
            match self.nodes.get_mut(&parent) {
                Some(p) => p.holds = p.holds.saturating_sub(1),
                None => return,
            }
            ino = parent;
        }
    }
}

#[cfg(test)]
mod tests;
