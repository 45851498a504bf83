//! Reading trees: lookup of one path (or of many, near each other: [`Lookups`]), depth-first walks, diff between two versions, and
//! bulk fetching of whole trees.
//!
//! Walks keep an explicit stack, so a deep tree cannot overflow the thread's stack, and
//! load each directory node once. Diff compares directory ids before descending: equal
//! subtrees are skipped whole, so diffing two versions costs in proportion to what
//! changed between them, not to the size of the tree.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use fvfs_cas::ChunkId;

use crate::error::{ManifestError, Result};
use crate::node::{self, Change, ChangeKind, Entry, EntryKind, Node};
use crate::path::{components, join, show};
use crate::repo::Repo;

/// The entry at `path` in the tree rooted at `root`; the root itself is a directory
/// entry with an empty name.
pub async fn lookup(repo: &Repo, root: ChunkId, path: &[u8]) -> Result<Entry> {
    Lookups::new(repo, root, 0).entry(path).await
}

/// The entry named `name` in the directory whose top node is `id`; in a large
/// directory, read down through the one index node and part that can hold it.
pub(crate) async fn entry_in(repo: &Repo, id: ChunkId, name: &[u8]) -> Result<Option<Entry>> {
    Lookups::new(repo, id, 0).entry_in(id, name).await
}

/// Lookups of many paths of one tree, each near the one before (in a walk's order):
/// the last nodes read are kept, so the files of one folder read its node once.
/// Memory follows how many nodes are kept, not the tree.
pub struct Lookups<'a> {
    repo: &'a Repo,
    root: ChunkId,
    keep: usize,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// Folders' top nodes, by their components joined by `/`.
    dirs: HashMap<Vec<u8>, ChunkId>,
    nodes: HashMap<ChunkId, Arc<Node>>,
    /// Their ids, oldest first.
    order: VecDeque<ChunkId>,
}

impl<'a> Lookups<'a> {
    /// Lookups in the tree rooted at `root`, keeping the last `keep` nodes read.
    pub fn new(repo: &'a Repo, root: ChunkId, keep: usize) -> Self {
        Self {
            repo,
            root,
            keep,
            kept: Mutex::default(),
        }
    }

    /// The entry at `path`; the root itself is a directory entry with an empty name.
    pub async fn entry(&self, path: &[u8]) -> Result<Entry> {
        let comps = components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(Entry {
                name: Vec::new(),
                kind: EntryKind::Dir,
                mode: 0o755,
                mtime_ns: 0,
                size: 0,
                id: Some(self.root),
                chunks: Vec::new(),
                target: Vec::new(),
                meta: None,
                links: 0,
                link: None,
            });
        };
        let parent = parents.join(&b'/');
        let kept = self.lock().dirs.get(&parent).copied();
        let dir = match kept {
            Some(dir) => dir,
            None => {
                let mut dir = self.root;
                for comp in parents {
                    dir = match self.entry_in(dir, comp).await? {
                        Some(Entry {
                            kind: EntryKind::Dir,
                            id: Some(id),
                            ..
                        }) => id,
                        Some(_) => return Err(ManifestError::NotADirectory(show(path))),
                        None => return Err(ManifestError::NotFound(show(path))),
                    };
                }
                if self.keep > 0 {
                    let mut kept = self.lock();
                    if kept.dirs.len() >= self.keep {
                        kept.dirs.clear();
                    }
                    kept.dirs.insert(parent, dir);
                }
                dir
            }
        };
        match self.entry_in(dir, name).await? {
            Some(entry) => Ok(entry),
            None => Err(ManifestError::NotFound(show(path))),
        }
    }

    async fn entry_in(&self, id: ChunkId, name: &[u8]) -> Result<Option<Entry>> {
        let mut node_id = id;
        loop {
            match &*self.node(node_id).await? {
                Node::Dir(d) => {
                    let found = d.entries.binary_search_by(|e| e.name.as_slice().cmp(name));
                    return Ok(found.ok().map(|i| d.entries[i].clone()));
                }
                Node::DirIndex(ix) => {
                    let i = ix.parts.partition_point(|p| p.first.as_slice() <= name);
                    let Some(part) = i.checked_sub(1).map(|i| &ix.parts[i]) else {
                        return Ok(None);
                    };
                    node_id = part.id;
                }
                _ => {
                    return Err(ManifestError::BadNode {
                        id: node_id,
                        reason: "expected a directory node".into(),
                    })
                }
            }
        }
    }

    async fn node(&self, id: ChunkId) -> Result<Arc<Node>> {
        if let Some(node) = self.lock().nodes.get(&id) {
            return Ok(node.clone());
        }
        let node = Arc::new(self.repo.node(&id).await?);
        if self.keep > 0 {
            let mut kept = self.lock();
            if kept.nodes.insert(id, node.clone()).is_none() {
                kept.order.push_back(id);
            }
            while kept.order.len() > self.keep {
                let old = kept.order.pop_front().expect("more than kept");
                kept.nodes.remove(&old);
            }
        }
        Ok(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Calls `visit(path, entry)` for every entry below directory node `dir`, parents
/// before their children; `base` is the directory's own path.
pub async fn walk(
    repo: &Repo,
    base: &[u8],
    dir: ChunkId,
    visit: &mut (dyn FnMut(&[u8], &Entry) -> Result<()> + Send),
) -> Result<()> {
    let mut stack = vec![(base.to_vec(), dir)];
    while let Some((path, id)) = stack.pop() {
        let node = repo.dir(&id).await?;
        for entry in node.entries.iter().rev() {
            let child = join(&path, &entry.name);
            visit(&child, entry)?;
            if let (EntryKind::Dir, Some(id)) = (entry.kind, entry.id) {
                stack.push((child, id));
            }
        }
    }
    Ok(())
}

/// Paths added, removed and modified from tree `a` to tree `b`, sorted by path.
pub async fn diff(repo: &Repo, a: ChunkId, b: ChunkId) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let mut stack = vec![(b"/".to_vec(), a, b)];
    while let Some((path, a, b)) = stack.pop() {
        if a == b {
            continue;
        }
        let (da, db) = (repo.dir(&a).await?, repo.dir(&b).await?);
        for pair in node::pair_by_name(&da.entries, &db.entries) {
            let (x, y) = match pair {
                node::Pair::A(x) => {
                    whole(repo, &path, x, ChangeKind::Removed, &mut out).await?;
                    continue;
                }
                node::Pair::B(y) => {
                    whole(repo, &path, y, ChangeKind::Added, &mut out).await?;
                    continue;
                }
                node::Pair::Both(x, y) => (x, y),
            };
            let child = join(&path, &x.name);
            if x.kind != y.kind {
                whole(repo, &path, x, ChangeKind::Removed, &mut out).await?;
                whole(repo, &path, y, ChangeKind::Added, &mut out).await?;
            } else if x.kind == EntryKind::Dir {
                if x.mode != y.mode {
                    out.push(Change {
                        kind: ChangeKind::Modified,
                        path: child.clone(),
                        entry: x.kind,
                    });
                }
                if let (Some(ia), Some(ib)) = (x.id, y.id) {
                    stack.push((child, ia, ib));
                }
            } else if (x.id, &x.chunks, &x.target, x.mode) != (y.id, &y.chunks, &y.target, y.mode) {
                out.push(Change {
                    kind: ChangeKind::Modified,
                    path: child,
                    entry: x.kind,
                });
            }
        }
    }
    out.sort_by(|x, y| {
        x.path
            .cmp(&y.path)
            .then((x.kind as u8).cmp(&(y.kind as u8)))
    });
    Ok(out)
}

/// Reports `entry` (in directory `parent`) and, for a directory, everything below it.
async fn whole(
    repo: &Repo,
    parent: &[u8],
    entry: &Entry,
    kind: ChangeKind,
    out: &mut Vec<Change>,
) -> Result<()> {
    let path = join(parent, &entry.name);
    out.push(Change {
        kind,
        path: path.clone(),
        entry: entry.kind,
    });
    if let (EntryKind::Dir, Some(id)) = (entry.kind, entry.id) {
        walk(repo, &path, id, &mut |p, e| {
            out.push(Change {
                kind,
                path: p.to_vec(),
                entry: e.kind,
            });
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// Reads every tree node reachable from `roots` (directory, file and list nodes),
/// level by level: each level's nodes are asked of the store in one `get_many`, so a
/// cold tier serves them by pack with many in flight, and a node shared by several
/// trees is read once. The tiered store keeps what it read in the local tier, so
/// walks that follow read locally. Nodes that cannot be read are skipped: the walk
/// that follows reports them. `done` is told of each node read and its bytes;
/// returns the number of nodes read.
pub async fn fetch_trees(
    repo: &Repo,
    roots: impl IntoIterator<Item = ChunkId>,
    done: impl Fn(u64),
) -> u64 {
    let mut seen = HashSet::new();
    let mut level: Vec<ChunkId> = roots.into_iter().filter(|r| seen.insert(*r)).collect();
    let mut read = 0;
    while !level.is_empty() {
        let mut next = Vec::new();
        let mut answers = repo.store().get_many(std::mem::take(&mut level));
        while let Some((_, answer)) = answers.next().await {
            let Ok(loaded) = answer else { continue };
            read += 1;
            done(loaded.frame.len() as u64);
            let children: Vec<ChunkId> = match node::decode(&loaded.data) {
                Ok(Node::Dir(d)) => d.entries.iter().filter_map(|e| e.id).collect(),
                Ok(Node::File(f)) => f.lists.iter().map(|l| l.id).collect(),
                Ok(Node::DirIndex(ix)) => ix.parts.iter().map(|p| p.id).collect(),
                Ok(Node::List(_)) | Err(_) => Vec::new(),
            };
            next.extend(children.into_iter().filter(|c| seen.insert(*c)));
        }
        level = next;
    }
    read
}
