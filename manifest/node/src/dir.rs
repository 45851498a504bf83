//! Large directories as a tree of nodes, so a commit into a directory of a million
//! entries writes a few small nodes instead of the whole listing.
//!
//! A directory of at most [`DIR_NODE_MAX`] entries is one [`DirNode`], exactly as
//! before splitting existed, so the ids of such directories never change. A larger
//! one is cut into parts (each a `DirNode` holding a run of about 512 of the sorted
//! entries) listed by a [`DirIndex`]; past [`INDEX_MAX`] parts, the index is cut the
//! same way into index nodes of about 64 parts, level after level, so one edit
//! rewrites a part and one small index node per level: O(log n) bytes.
//!
//! # Invariants
//! - **Canonical.** Where a part ends depends only on the names (after a name whose
//!   keyed hash is 0 modulo the level's target, or at the most a node holds), never on
//!   the order of the edits that made the directory: equal directories have equal ids,
//!   and dedup across versions and stores keeps working.
//! - **Local.** Changing, adding or removing one entry changes the part holding it
//!   (and, rarely, its neighbour) and the index nodes above it: O(log n) bytes written.
//! - **Bounded.** No node holds more than [`DIR_NODE_MAX`] entries or [`INDEX_MAX`]
//!   parts, far under the frame limit.
//! - **Checked on the way back.** [`assemble`] refuses parts that are not the kind the
//!   index says, whose first name is not the one the index lists, or whose entries are
//!   not sorted and unique across parts.

use std::future::Future;

use fvfs_cas::ChunkId;
use serde::{Deserialize, Serialize};

use crate::{DamagedNode, DirNode, Entry, Node};

/// Entries a directory keeps in one node; a larger directory is split. Also the most
/// entries a part holds (a run of unlucky hashes is cut there).
pub const DIR_NODE_MAX: usize = 4096;
/// Parts one index node lists; more are cut into a level of index nodes. Also the
/// most parts an index node of a lower level holds.
pub const INDEX_MAX: usize = 256;

/// How a level is cut: a run ends after a name whose hash is 0 modulo `target` (runs
/// average `target` items), or at `max` items whatever the names.
struct Cut {
    target: u64,
    max: usize,
}

/// Level 0 cuts entries into parts; the levels above cut parts into index nodes.
fn cut_of(level: u8) -> Cut {
    if level == 0 {
        Cut {
            target: 512,
            max: DIR_NODE_MAX,
        }
    } else {
        Cut {
            target: 64,
            max: INDEX_MAX,
        }
    }
}

/// The parts of a large directory, or of a level of its index, in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirIndex {
    /// 1: the parts are directory nodes (runs of entries); n: index nodes of depth n-1.
    pub depth: u8,
    pub parts: Vec<DirPart>,
}

/// One part: the name of its first entry, the node holding the run, and how many
/// entries and logical bytes are below it (so an edit can size and count the whole
/// directory without reading the parts it leaves alone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirPart {
    #[serde(with = "serde_bytes")]
    pub first: Vec<u8>,
    pub id: ChunkId,
    pub entries: u64,
    pub bytes: u64,
    /// Names of files with several names in the part (see [`Entry::links`]).
    #[serde(default, skip_serializing_if = "crate::is_zero")]
    pub links: u64,
}

/// Says where the runs of one level end, fed the names of its items in order from a
/// cut point (the start of the directory, or the end of an unchanged part).
pub struct Cutter {
    level: u8,
    cut: Cut,
    run: usize,
}

impl Cutter {
    /// A cutter of parts (level 0: entries into parts).
    pub fn parts() -> Self {
        Self::new(0)
    }

    fn new(level: u8) -> Self {
        Self {
            level,
            cut: cut_of(level),
            run: 0,
        }
    }

    /// Whether a run ends after the item named `name`.
    pub fn ends_after(&mut self, name: &[u8]) -> bool {
        self.run += 1;
        let end = self.run == self.cut.max || ends_after(self.level, name, self.cut.target);
        if end {
            self.run = 0;
        }
        end
    }

    /// Whether the items fed so far ended on a cut (or none were fed).
    pub fn at_cut(&self) -> bool {
        self.run == 0
    }
}

/// Whether a run of level `level` ends after the item named `name`.
fn ends_after(level: u8, name: &[u8], target: u64) -> bool {
    let mut h = blake3::Hasher::new();
    h.update(b"fvfs dir part");
    h.update(&[level]);
    h.update(name);
    let word = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    word % target == 0
}

/// Cuts `items` (sorted by `name`) into runs where a [`Cutter`] of `level` says.
fn cut<T>(items: Vec<T>, level: u8, name: impl Fn(&T) -> &[u8]) -> Vec<Vec<T>> {
    let mut cutter = Cutter::new(level);
    let mut runs = vec![Vec::new()];
    for item in items {
        let end = cutter.ends_after(name(&item));
        runs.last_mut().expect("never empty").push(item);
        if end {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// Encodes `node` into `out`; returns its id.
fn put(node: Node, out: &mut Vec<Vec<u8>>) -> ChunkId {
    let bytes = node.encode();
    let id = ChunkId::of(&bytes);
    out.push(bytes);
    id
}

/// Encodes a directory of `entries` (sorted, unique): its nodes go to `out`, children
/// first; returns the id of its top node.
pub fn encode_dir(entries: Vec<Entry>, out: &mut Vec<Vec<u8>>) -> ChunkId {
    if entries.len() <= DIR_NODE_MAX {
        return put(Node::Dir(DirNode { entries }), out);
    }
    let parts = encode_parts(entries, out);
    encode_index(parts, out)
}

/// Cuts `entries` (sorted, unique, starting at a cut point) into parts and encodes
/// each into `out`.
pub fn encode_parts(entries: Vec<Entry>, out: &mut Vec<Vec<u8>>) -> Vec<DirPart> {
    cut(entries, 0, |e| &e.name)
        .into_iter()
        .map(|run| DirPart {
            first: run[0].name.clone(),
            entries: run.len() as u64,
            bytes: run.iter().map(|e| e.size).sum(),
            links: run.iter().map(Entry::links_held).sum(),
            id: put(Node::Dir(DirNode { entries: run }), out),
        })
        .collect()
}

/// Encodes the index over a large directory's `parts` (all of them, in order): one
/// index node, or levels of them past [`INDEX_MAX`] parts; returns the top's id.
pub fn encode_index(mut parts: Vec<DirPart>, out: &mut Vec<Vec<u8>>) -> ChunkId {
    let mut depth = 1;
    while parts.len() > INDEX_MAX {
        parts = cut(parts, depth, |p| &p.first)
            .into_iter()
            .map(|run| DirPart {
                first: run[0].first.clone(),
                entries: run.iter().map(|p| p.entries).sum(),
                bytes: run.iter().map(|p| p.bytes).sum(),
                links: run.iter().map(|p| p.links).sum(),
                id: put(Node::DirIndex(DirIndex { depth, parts: run }), out),
            })
            .collect();
        depth += 1;
    }
    put(Node::DirIndex(DirIndex { depth, parts }), out)
}

/// The parts (runs of entries) of the large directory whose top index is `top` (read as
/// `id`), reading only its index nodes, a level at a time with `fetch_many`.
pub async fn leaf_parts<E, F, Fut>(
    id: ChunkId,
    top: DirIndex,
    fetch_many: F,
) -> Result<Vec<DirPart>, E>
where
    F: Fn(Vec<ChunkId>) -> Fut,
    Fut: Future<Output = Result<Vec<Node>, E>>,
    E: From<DamagedNode>,
{
    let (mut depth, mut parts) = (top.depth, top.parts);
    while depth > 1 {
        let nodes = fetch_many(parts.iter().map(|p| p.id).collect()).await?;
        parts = next_level(id, depth, &parts, nodes)?;
        depth -= 1;
    }
    Ok(parts)
}

/// The parts listed by the index nodes `nodes` (of depth `depth - 1`) that `parts`
/// name, checked against what `parts` say of them.
fn next_level(
    id: ChunkId,
    depth: u8,
    parts: &[DirPart],
    nodes: Vec<Node>,
) -> Result<Vec<DirPart>, DamagedNode> {
    let bad = |id: ChunkId, reason: &'static str| DamagedNode { id, reason };
    if nodes.len() != parts.len() {
        return Err(bad(id, "a part of the directory is missing"));
    }
    let mut next: Vec<DirPart> = Vec::new();
    for (part, node) in parts.iter().zip(nodes) {
        let Node::DirIndex(ix) = node else {
            return Err(bad(part.id, "expected an index node of the directory"));
        };
        if ix.depth + 1 != depth || ix.parts.first().map(|p| &p.first) != Some(&part.first) {
            return Err(bad(part.id, "the part does not start where its index says"));
        }
        if next.last().map(|p| &p.first) >= Some(&part.first) {
            return Err(bad(part.id, "the parts overlap or are out of order"));
        }
        next.extend(ix.parts);
    }
    Ok(next)
}

/// The whole directory whose top node is `top` (read as `id`): itself if it is a
/// directory node, else its parts, level by level, fetched with `fetch_many` (which
/// answers the nodes of the ids it is given, in their order).
pub async fn assemble<E, F, Fut>(id: ChunkId, top: Node, fetch_many: F) -> Result<DirNode, E>
where
    F: Fn(Vec<ChunkId>) -> Fut,
    Fut: Future<Output = Result<Vec<Node>, E>>,
    E: From<DamagedNode>,
{
    let top = match top {
        Node::Dir(d) => return Ok(d),
        Node::DirIndex(ix) => ix,
        _ => {
            return Err(E::from(DamagedNode {
                id,
                reason: "expected a directory node",
            }))
        }
    };
    let parts = leaf_parts(id, top, &fetch_many).await?;
    let nodes = fetch_many(parts.iter().map(|p| p.id).collect()).await?;
    Ok(join_parts(id, &parts, nodes)?)
}

/// The entries of the directory nodes `nodes` that `parts` name, in order, checked
/// against what `parts` say of them.
pub fn join_parts(
    id: ChunkId,
    parts: &[DirPart],
    nodes: Vec<Node>,
) -> Result<DirNode, DamagedNode> {
    let bad = |id: ChunkId, reason: &'static str| DamagedNode { id, reason };
    if nodes.len() != parts.len() {
        return Err(bad(id, "a part of the directory is missing"));
    }
    let mut entries: Vec<Entry> = Vec::new();
    for (part, node) in parts.iter().zip(nodes) {
        let Node::Dir(d) = node else {
            return Err(bad(part.id, "expected a part of the directory"));
        };
        if d.entries.first().map(|e| &e.name) != Some(&part.first) {
            return Err(bad(part.id, "the part does not start where its index says"));
        }
        if d.entries.len() as u64 != part.entries {
            return Err(bad(part.id, "the part does not hold what its index says"));
        }
        if entries.last().map(|e| &e.name) >= Some(&part.first) {
            return Err(bad(part.id, "the parts overlap or are out of order"));
        }
        entries.extend(d.entries);
    }
    Ok(DirNode { entries })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{decode, EntryKind};

    fn entry(name: String) -> Entry {
        Entry {
            name: name.into_bytes(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            mtime_ns: 0,
            size: 0,
            id: None,
            chunks: Vec::new(),
            target: b"t".to_vec(),
            meta: None,
            links: 0,
            link: None,
        }
    }

    fn entries(n: usize) -> Vec<Entry> {
        (0..n).map(|i| entry(format!("f{i:07}"))).collect()
    }

    /// Encodes, then reads back through `assemble` from the nodes written.
    fn round_trip(list: Vec<Entry>) -> (ChunkId, HashMap<ChunkId, Vec<u8>>, DirNode) {
        let mut out = Vec::new();
        let top = encode_dir(list, &mut out);
        let store: HashMap<ChunkId, Vec<u8>> =
            out.into_iter().map(|b| (ChunkId::of(&b), b)).collect();
        let fetch = |ids: Vec<ChunkId>| {
            let nodes = ids.iter().map(|id| decode(&store[id]).unwrap()).collect();
            async move { Ok::<_, DamagedNode>(nodes) }
        };
        let top_node = decode(&store[&top]).unwrap();
        let dir = futures_lite(assemble(top, top_node, fetch)).unwrap();
        (top, store, dir)
    }

    /// Runs a future that never waits (every fetch above is ready at once).
    fn futures_lite<F: Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!("no fetch waits"),
        }
    }

    #[test]
    fn small_directories_stay_one_node_and_large_ones_round_trip() {
        let (_, store, dir) = round_trip(entries(DIR_NODE_MAX));
        assert_eq!(store.len(), 1, "a directory at the limit is one node");
        assert_eq!(dir.entries, entries(DIR_NODE_MAX));

        let (top, store, dir) = round_trip(entries(100_000));
        assert_eq!(dir.entries, entries(100_000));
        assert!(matches!(decode(&store[&top]).unwrap(), Node::DirIndex(_)));
        let parts = store.len() - 1;
        assert!((100..400).contains(&parts), "{parts} parts");
        assert!(store.values().all(|b| b.len() < 1 << 20));
        // Pinned: the cut points are part of the format (dedup across stores).
        assert_eq!(
            top.to_hex(),
            "ca5953524a7d1455fa100366a9b53ceeb7dfb37ddb3fae857251ad4ba4342cf4"
        );
    }

    #[test]
    fn one_change_rewrites_one_part_and_the_index_whatever_the_history() {
        let (before, old, _) = round_trip(entries(100_000));
        let mut changed = entries(100_000);
        changed.insert(50_000, entry("f0049999x".into()));
        let (after, new, _) = round_trip(changed.clone());
        assert_ne!(before, after);
        let written = new.keys().filter(|id| !old.contains_key(id)).count();
        assert!(written <= 3, "{written} nodes written for one new entry");

        // The same set reached another way has the same id.
        let mut again = entries(100_001);
        again.remove(100_000);
        again.insert(50_000, entry("f0049999x".into()));
        assert_eq!(round_trip(again).0, after);
    }

    #[test]
    fn a_million_entries_get_two_index_levels_and_one_edit_stays_small() {
        let (top, store, dir) = round_trip(entries(1_000_000));
        assert_eq!(dir.entries.len(), 1_000_000);
        let Node::DirIndex(ix) = decode(&store[&top]).unwrap() else {
            panic!("split expected");
        };
        assert!(ix.parts.len() <= INDEX_MAX);
        assert!(matches!(
            decode(&store[&ix.parts[0].id]).unwrap(),
            Node::DirIndex(_)
        ));
        let mut changed = entries(1_000_000);
        changed[777_777].mode = 0o600;
        let (_, new, _) = round_trip(changed);
        let written: usize = new
            .iter()
            .filter(|(id, _)| !store.contains_key(id))
            .map(|(_, b)| b.len())
            .sum();
        assert!(
            written < 100_000,
            "{written} bytes of nodes for one changed entry"
        );
    }

    #[test]
    fn unlucky_names_are_cut_at_the_most_a_node_holds() {
        let forced = cut((0..DIR_NODE_MAX * 2 + 1).collect::<Vec<usize>>(), 0, |_| {
            b"same"
        });
        let lens: Vec<usize> = forced.iter().map(Vec::len).collect();
        assert_eq!(lens, [DIR_NODE_MAX, DIR_NODE_MAX, 1]);
        let forced = cut((0..INDEX_MAX + 1).collect::<Vec<usize>>(), 1, |_| b"same");
        assert_eq!(forced.len(), 2);
    }

    #[test]
    fn damaged_splits_are_refused() {
        let (top, store, _) = round_trip(entries(20_000));
        let Node::DirIndex(mut ix) = decode(&store[&top]).unwrap() else {
            panic!("split expected");
        };
        ix.parts.swap(0, 1);
        let fetch = |ids: Vec<ChunkId>| {
            let nodes = ids.iter().map(|id| decode(&store[id]).unwrap()).collect();
            async move { Ok::<_, DamagedNode>(nodes) }
        };
        let err = futures_lite(assemble(top, Node::DirIndex(ix), fetch)).unwrap_err();
        assert!(err.reason.contains("out of order"), "{err}");
    }
}
