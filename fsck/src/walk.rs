//! The walk of everything reachable from a set of versions, shared by fsck (which
//! reports what it finds) and gc (which marks it).
//!
//! Each tree node is offered to the visitor before it is read; a node the visitor has
//! seen already is not read again, so shared subtrees cost one visit in all. A node
//! that cannot be read or is not what its parent says is reported as [`Found::Broken`]
//! and the walk goes on with the rest.

use std::future::Future;

use fvfs_cas::ChunkId;
use fvfs_manifest::node::Node;
use fvfs_manifest::{path, EntryKind, ManifestError};

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

/// Walks every chunk reachable from `roots`, reading nodes with `read`.
pub async fn reachable<R, Fut>(
    roots: impl IntoIterator<Item = ChunkId>,
    read: R,
    mut visit: impl FnMut(Found<'_>) -> bool,
) where
    R: Fn(ChunkId) -> Fut,
    Fut: Future<Output = Result<Node, ManifestError>>,
{
    let mut dirs: Vec<(Vec<u8>, ChunkId)> = roots.into_iter().map(|r| (b"/".to_vec(), r)).collect();
    while let Some((at, id)) = dirs.pop() {
        if !visit(Found::Node(id, &at)) {
            continue;
        }
        let dir = match read(id).await {
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
                    if let Err((id, what)) =
                        walk_file(file, e.size, &read, &child, &mut visit).await
                    {
                        visit(Found::Broken(id, what, &child));
                    }
                }
                _ => {}
            }
        }
    }
}

/// The list nodes and data chunks below file node `file` of a `size`-byte file.
async fn walk_file<R, Fut>(
    file: ChunkId,
    size: u64,
    read: &R,
    at: &[u8],
    visit: &mut impl FnMut(Found<'_>) -> bool,
) -> Result<(), (ChunkId, String)>
where
    R: Fn(ChunkId) -> Fut,
    Fut: Future<Output = Result<Node, ManifestError>>,
{
    let node = match read(file).await {
        Ok(Node::File(f)) => f,
        Ok(_) => return Err((file, "expected a file node".into())),
        Err(e) => return Err((file, e.to_string())),
    };
    let mut chunks = node.chunks;
    for list in &node.lists {
        visit(Found::Node(list.id, at));
        match read(list.id).await {
            Ok(Node::List(l)) => chunks.extend(l.chunks),
            Ok(_) => return Err((list.id, "expected a list node".into())),
            Err(e) => return Err((list.id, e.to_string())),
        }
    }
    for c in &chunks {
        visit(Found::Data(c.id, at));
    }
    if chunks.iter().map(|c| c.len).sum::<u64>() != size {
        return Err((file, "chunk lengths do not add up to the file size".into()));
    }
    Ok(())
}
