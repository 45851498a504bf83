//! fsck's two walks of the trees: the first finds every reachable chunk once (and what
//! is broken on the way, hard links included) without keeping paths; the second runs
//! only when something was found wanting, and names the first path using each such
//! chunk.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;

use fvfs_api::reports::{FsckReport, Problem};
use fvfs_cas::{ChunkId, ChunkStore};
use fvfs_manifest::path;

use crate::spill::{Sorted, Spill};
use crate::walk::{self, Found};
use crate::{links, Progress};

/// Every chunk reachable from `roots` (all of them, sorted, each once, in memory up to
/// `spill`'s budget and on disk beyond; and the tree nodes among them), each visited
/// once, and the hard links checked; what is broken goes to `problems`. Paths are not
/// kept (a set of ids is a third of a map to paths): a second walk names the few
/// chunks found wanting ([`name_paths`]).
pub(crate) async fn walk_trees(
    roots: &[ChunkId],
    stores: &[Arc<dyn ChunkStore>],
    spill: &Spill,
    progress: &Progress,
    problems: &mut Vec<Problem>,
) -> io::Result<(Sorted<ChunkId>, HashSet<ChunkId>)> {
    progress.phase("walking the trees", 0);
    let reached = reachable_set(roots, stores, spill, progress, |id, what, at| {
        problems.push(Problem {
            id,
            what,
            path: path::show(at),
            tier: None,
            repaired: false,
        });
    })
    .await?;
    progress.phase("checking hard links", 0);
    for (id, what, path) in links::check(roots, |id| walk::read_node(stores, id)).await {
        problems.push(Problem {
            id,
            what,
            path,
            tier: None,
            repaired: false,
        });
    }
    Ok(reached)
}

/// Every chunk reachable from `roots`, read from the first of `stores` holding each
/// node, as a sorted set (in memory up to `spill`'s budget, on disk beyond), and the
/// tree nodes among them (kept in memory while the walk runs, so each is read once);
/// `broken` is told of each node that cannot be read, with its path.
pub(crate) async fn reachable_set(
    roots: &[ChunkId],
    stores: &[Arc<dyn ChunkStore>],
    spill: &Spill,
    progress: &Progress,
    mut broken: impl FnMut(ChunkId, String, &[u8]),
) -> io::Result<(Sorted<ChunkId>, HashSet<ChunkId>)> {
    let mut ids = spill.sorter();
    let mut failed = None;
    let mut nodes: HashSet<ChunkId> = HashSet::new();
    walk::reachable(
        roots.iter().copied(),
        |batch| walk::read_nodes(stores, batch),
        |found| match found {
            Found::Node(id, _) => {
                let new = nodes.insert(id);
                progress.add(u64::from(new), 0);
                new
            }
            Found::Data(id, _) => {
                if failed.is_none() {
                    failed = ids.push(id).err();
                }
                true
            }
            Found::Broken(id, what, at) => {
                broken(id, what, at);
                true
            }
        },
    )
    .await;
    if let Some(e) = failed {
        return Err(e);
    }
    for id in &nodes {
        ids.push(*id)?;
    }
    Ok((ids.finish()?, nodes))
}

/// Names the first path using each chunk a problem (or a store fault) is about: a
/// second walk, only when there are such chunks.
pub(crate) async fn name_paths(
    roots: &[ChunkId],
    stores: &[Arc<dyn ChunkStore>],
    report: &mut FsckReport,
    faulty: Vec<(ChunkId, usize)>,
) {
    let mut wanted: HashMap<ChunkId, Option<String>> = report
        .problems
        .iter()
        .filter(|p| p.path.is_empty())
        .map(|p| p.id)
        .chain(faulty.iter().map(|(id, _)| *id))
        .map(|id| (id, None))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let mut nodes = HashSet::new();
    walk::reachable(
        roots.iter().copied(),
        |ids| walk::read_nodes(stores, ids),
        |found| {
            let (id, at, node) = match found {
                Found::Node(id, at) => (id, at, true),
                Found::Data(id, at) => (id, at, false),
                Found::Broken(..) => return false,
            };
            if let Some(name @ None) = wanted.get_mut(&id) {
                *name = Some(path::show(at));
            }
            !node || nodes.insert(id)
        },
    )
    .await;
    for p in &mut report.problems {
        if p.path.is_empty() {
            p.path = wanted.get(&p.id).cloned().flatten().unwrap_or_default();
        }
    }
    for (id, at) in faulty {
        report.stores[at].path = wanted.get(&id).cloned().flatten();
    }
}
