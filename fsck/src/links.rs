//! Hard links: within one tree, the names of a file with several agree.
//!
//! Every name carrying link id L holds the same entry but for its name, there are as
//! many of them as L's `nlink` says, and every directory (and every part of a large
//! one) counts in its `links` exactly the linked names below it: the mount and
//! `TreeEdit` find a file's other names by those counts, so a wrong one hides a name.
//!
//! Each directory node is summed once (its linked names, grouped by link id, with
//! paths relative to it), bottom-up without recursion, and shared by every version
//! and every directory that holds it; each version's root summary is then checked as
//! a whole. A problem found inside a shared node is reported once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use fvfs_cas::ChunkId;
use fvfs_manifest::node::{Entry, EntryKind, Node};
use fvfs_manifest::{path, ManifestError};

/// A link-id group of names below one directory node.
#[derive(Clone)]
struct Group {
    /// The entry of the first name found, without its name.
    entry: Entry,
    /// That name's path, relative to the node summed.
    path: Vec<u8>,
    names: u64,
    /// A name whose entry differs from the first, if one does.
    differs: Option<Vec<u8>>,
}

#[derive(Default)]
struct Summary {
    groups: HashMap<u64, Group>,
    /// Linked names below the node (what its directory's `links` must say).
    names: u64,
}

impl Summary {
    /// Adds `entry`, a name of a file with several at relative path `at`.
    fn add(&mut self, link: u64, entry: &Entry, at: Vec<u8>) {
        let entry = Entry {
            name: Vec::new(),
            ..entry.clone()
        };
        self.merge_group(
            link,
            Group {
                entry,
                path: at,
                names: 1,
                differs: None,
            },
        );
        self.names += 1;
    }

    /// Adds what `below` summed, its paths under `prefix`.
    fn merge(&mut self, below: &Summary, prefix: &[u8]) {
        for (link, g) in &below.groups {
            let under = |p: &[u8]| join(prefix, p);
            let moved = Group {
                entry: g.entry.clone(),
                path: under(&g.path),
                names: g.names,
                differs: g.differs.as_deref().map(under),
            };
            self.merge_group(*link, moved);
        }
        self.names += below.names;
    }

    fn merge_group(&mut self, link: u64, g: Group) {
        match self.groups.get_mut(&link) {
            None => {
                self.groups.insert(link, g);
            }
            Some(mine) => {
                mine.names += g.names;
                if mine.differs.is_none() {
                    mine.differs = g
                        .differs
                        .or_else(|| (g.entry != mine.entry).then_some(g.path));
                }
            }
        }
    }
}

/// `rel` (relative, without a leading slash) under `prefix`.
fn join(prefix: &[u8], rel: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return rel.to_vec();
    }
    let mut p = prefix.to_vec();
    p.push(b'/');
    p.extend_from_slice(rel);
    p
}

/// Relative path `rel` shown from the root.
fn absolute(rel: &[u8]) -> String {
    path::show(&[b"/".as_slice(), rel].concat())
}

/// A problem: the node it was found in, what, and the absolute path.
pub type Found = (ChunkId, String, String);

/// Checks the hard links of the trees whose roots are `roots`, reading nodes with
/// `read`. Nodes that cannot be read are skipped (the walk reports them).
pub async fn check<R, Fut>(roots: &[ChunkId], read: R) -> Vec<Found>
where
    R: Fn(ChunkId) -> Fut,
    Fut: Future<Output = Result<Node, ManifestError>>,
{
    let mut sums: HashMap<ChunkId, Arc<Summary>> = HashMap::new();
    let mut found = Vec::new();
    let mut told = HashSet::new();
    for root in roots {
        sum(*root, &read, &mut sums, &mut found).await;
        let Some(s) = sums.get(root) else { continue };
        for (link, g) in &s.groups {
            let at = absolute(&g.path);
            let nlink = g.entry.link.map_or(0, |l| l.nlink);
            let mut report = |what: String| {
                if told.insert((*link, what.clone())) {
                    found.push((*root, what, at.clone()));
                }
            };
            if let Some(other) = &g.differs {
                report(format!(
                    "names of one file (link {link}) hold different entries: this one and {}",
                    absolute(other)
                ));
            }
            if u64::from(nlink) != g.names {
                report(format!(
                    "a file (link {link}) says it has {nlink} names; the tree has {}",
                    g.names
                ));
            }
        }
    }
    found
}

/// Sums directory node `top` and every node below it not summed yet, children first.
async fn sum<R, Fut>(
    top: ChunkId,
    read: &R,
    sums: &mut HashMap<ChunkId, Arc<Summary>>,
    found: &mut Vec<Found>,
) where
    R: Fn(ChunkId) -> Fut,
    Fut: Future<Output = Result<Node, ManifestError>>,
{
    // (node, its path in the first tree that reached it, the node once read).
    let mut stack: Vec<(ChunkId, Vec<u8>, Option<Node>)> = vec![(top, Vec::new(), None)];
    while let Some((id, at, node)) = stack.pop() {
        if sums.contains_key(&id) {
            continue;
        }
        let Some(node) = node else {
            let Ok(node) = read(id).await else {
                sums.insert(id, Arc::default());
                continue;
            };
            let below: Vec<(ChunkId, Vec<u8>)> = match &node {
                Node::Dir(d) => d
                    .entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Dir)
                    .filter_map(|e| Some((e.id?, join(&at, &e.name))))
                    .collect(),
                Node::DirIndex(ix) => ix.parts.iter().map(|p| (p.id, at.clone())).collect(),
                _ => Vec::new(),
            };
            stack.push((id, at, Some(node)));
            for (child, child_at) in below {
                if !sums.contains_key(&child) {
                    stack.push((child, child_at, None));
                }
            }
            continue;
        };
        let mut s = Summary::default();
        let mut wrong = |counted: u64, there: u64, place: &[u8]| {
            if counted != there {
                let what = format!(
                    "a directory counts {counted} names of files with several below it; {there} are there"
                );
                found.push((id, what, absolute(place)));
            }
        };
        match &node {
            Node::Dir(d) => {
                for e in &d.entries {
                    if let Some(link) = e.link {
                        s.add(link.id, e, e.name.clone());
                    }
                    if let (EntryKind::Dir, Some(child)) = (e.kind, e.id) {
                        let below = sums.get(&child).cloned().unwrap_or_default();
                        wrong(e.links, below.names, &join(&at, &e.name));
                        s.merge(&below, &e.name);
                    }
                }
            }
            Node::DirIndex(ix) => {
                for p in &ix.parts {
                    let below = sums.get(&p.id).cloned().unwrap_or_default();
                    wrong(p.links, below.names, &at);
                    s.merge(&below, b"");
                }
            }
            _ => {}
        }
        sums.insert(id, Arc::new(s));
    }
}
