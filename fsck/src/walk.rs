//! The walk of everything reachable from a set of versions, shared by fsck (which
//! reports what it finds) and gc (which marks it).
//!
//! Each tree node is offered to the visitor before it is read; a node the visitor has
//! seen already is not read again, so shared subtrees cost one visit in all. A node
//! that cannot be read or is not what its parent says is reported as [`Found::Broken`]
//! and the walk goes on with the rest.
//!
//! Nodes are read in batches ([`read_nodes`]: one bulk read of up to [`BATCH`] nodes
//! per store, which a pack store serves in file order on several threads): read one
//! at a time, a cold walk waited on the disk for each directory in turn.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use fvfs_cas::{ChunkId, ChunkStore, StoreError};
use fvfs_manifest::node::{self, ChunkRef, Node};
use fvfs_manifest::{path, EntryKind, ManifestError};

/// Nodes read at once, at most.
const BATCH: usize = 256;

/// What the walk came across, with the path it was reached by.
pub enum Found<'a> {
    /// A tree node (directory, file or list node). The visitor answers whether it is
    /// new: only new nodes are read and walked below.
    Node(ChunkId, &'a [u8]),
    /// A data chunk of a file.
    Data(ChunkId, &'a [u8]),
    /// A node that could not be read, or is not the kind of node its parent says.
    Broken(ChunkId, String, &'a [u8]),
}

/// Answers for nodes, by id.
pub type NodeAnswers = HashMap<ChunkId, Result<Node, ManifestError>>;

/// Reads and decodes nodes `ids` from the first of `stores` that has each whole (one
/// bulk read per store, for what the ones before it did not give).
pub async fn read_nodes(stores: &[Arc<dyn ChunkStore>], ids: Vec<ChunkId>) -> NodeAnswers {
    let mut answers = NodeAnswers::with_capacity(ids.len());
    let mut wanted = ids;
    for store in stores {
        if wanted.is_empty() {
            break;
        }
        let mut failed = Vec::new();
        let mut got = store.get_many(std::mem::take(&mut wanted));
        while let Some((id, answer)) = got.next().await {
            match answer {
                Ok(loaded) => {
                    let decoded = node::decode(&loaded.data).map_err(|e| ManifestError::BadNode {
                        id,
                        reason: e.to_string(),
                    });
                    answers.insert(id, decoded);
                }
                Err(e) => {
                    failed.push(id);
                    answers.insert(id, Err(e.into()));
                }
            }
        }
        wanted = failed;
    }
    for id in wanted {
        answers
            .entry(id)
            .or_insert(Err(StoreError::NotFound(id).into()));
    }
    answers
}

/// The node `id` from the first of `stores` that has it whole.
pub async fn read_node(stores: &[Arc<dyn ChunkStore>], id: ChunkId) -> Result<Node, ManifestError> {
    read_nodes(stores, vec![id])
        .await
        .remove(&id)
        .expect("every id is answered")
}

/// A file entry whose file node the walk reads.
struct FileAt {
    path: Vec<u8>,
    id: ChunkId,
    size: u64,
}

/// Walks every chunk reachable from `roots`, reading nodes in batches with `read`.
pub async fn reachable<R, Fut>(
    roots: impl IntoIterator<Item = ChunkId>,
    read: R,
    mut visit: impl FnMut(Found<'_>) -> bool,
) where
    R: Fn(Vec<ChunkId>) -> Fut,
    Fut: Future<Output = NodeAnswers>,
{
    let mut dirs: Vec<(Vec<u8>, ChunkId)> = roots.into_iter().map(|r| (b"/".to_vec(), r)).collect();
    while !dirs.is_empty() {
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            let Some((at, id)) = dirs.pop() else { break };
            if visit(Found::Node(id, &at)) {
                batch.push((at, id));
            }
        }
        let mut answers = read(batch.iter().map(|(_, id)| *id).collect()).await;
        let mut files = Vec::new();
        for (at, id) in batch {
            let answer = answers
                .remove(&id)
                .unwrap_or(Err(StoreError::NotFound(id).into()));
            let dir = match answer {
                Ok(Node::Dir(d)) => d,
                // A large directory: its parts are nodes of the same directory.
                Ok(Node::DirIndex(ix)) => {
                    dirs.extend(ix.parts.into_iter().map(|p| (at.clone(), p.id)));
                    continue;
                }
                Ok(_) => {
                    visit(Found::Broken(id, "not a directory node".into(), &at));
                    continue;
                }
                Err(e) => {
                    visit(Found::Broken(id, e.to_string(), &at));
                    continue;
                }
            };
            for e in dir.entries {
                let child = path::join(&at, &e.name);
                match (e.kind, e.id) {
                    (EntryKind::Dir, Some(id)) => dirs.push((child, id)),
                    (EntryKind::File, None) => {
                        for c in &e.chunks {
                            visit(Found::Data(c.id, &child));
                        }
                    }
                    (EntryKind::File, Some(file)) if visit(Found::Node(file, &child)) => {
                        files.push(FileAt {
                            path: child,
                            id: file,
                            size: e.size,
                        });
                    }
                    _ => {}
                }
            }
        }
        for part in files.chunks(BATCH) {
            walk_files(part, &read, &mut visit).await;
        }
    }
}

/// The list nodes and data chunks below the file nodes of `files`.
async fn walk_files<R, Fut>(files: &[FileAt], read: &R, visit: &mut impl FnMut(Found<'_>) -> bool)
where
    R: Fn(Vec<ChunkId>) -> Fut,
    Fut: Future<Output = NodeAnswers>,
{
    let mut answers = read(files.iter().map(|f| f.id).collect()).await;
    // Each file's chunks so far, and its list nodes still to read.
    let mut read_files = Vec::new();
    let mut lists = Vec::new();
    for f in files {
        match answers.remove(&f.id) {
            Some(Ok(Node::File(node))) => {
                // Every list is read, even one another file shares: its chunks are
                // this file's too.
                for list in &node.lists {
                    visit(Found::Node(list.id, &f.path));
                    lists.push(list.id);
                }
                read_files.push((f, node));
            }
            Some(Ok(_)) => {
                visit(Found::Broken(f.id, "expected a file node".into(), &f.path));
            }
            Some(Err(e)) => {
                visit(Found::Broken(f.id, e.to_string(), &f.path));
            }
            None => {
                let gone = StoreError::NotFound(f.id).to_string();
                visit(Found::Broken(f.id, gone, &f.path));
            }
        }
    }
    lists.sort_unstable();
    lists.dedup();
    let mut list_answers = NodeAnswers::new();
    for part in lists.chunks(BATCH) {
        list_answers.extend(read(part.to_vec()).await);
    }
    for (f, node) in read_files {
        if let Err((id, what)) = file_chunks(f, node, &list_answers, visit) {
            visit(Found::Broken(id, what, &f.path));
        }
    }
}

/// Visits the data chunks of file `f`, whose file node is `node` and whose list nodes
/// are in `lists`.
fn file_chunks(
    f: &FileAt,
    node: node::FileNode,
    lists: &NodeAnswers,
    visit: &mut impl FnMut(Found<'_>) -> bool,
) -> Result<(), (ChunkId, String)> {
    let mut chunks: Vec<ChunkRef> = node.chunks;
    for list in &node.lists {
        match lists.get(&list.id) {
            Some(Ok(Node::List(l))) => chunks.extend(l.chunks.iter().cloned()),
            Some(Ok(_)) => return Err((list.id, "expected a list node".into())),
            Some(Err(e)) => return Err((list.id, e.to_string())),
            None => return Err((list.id, StoreError::NotFound(list.id).to_string())),
        }
    }
    for c in &chunks {
        visit(Found::Data(c.id, &f.path));
    }
    if chunks.iter().map(|c| c.len).sum::<u64>() != f.size {
        return Err((f.id, "chunk lengths do not add up to the file size".into()));
    }
    Ok(())
}
