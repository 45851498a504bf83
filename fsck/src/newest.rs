//! The chunks of the newest version, for the idle rewrite's order (issue 47): the
//! local and NAS tiers pack them into blocks apart from older versions' chunks, so a
//! restore or a mount's read of HEAD decodes few bytes it does not want.

use std::collections::HashSet;

use fvfs_cas::{ChunkId, IdFilter};
use fvfs_manifest::{ManifestError, Repo};

use crate::walk::{self, Found};

/// A filter of every chunk HEAD reaches (tree nodes and data), sized for the
/// repository's chunk count (about ten bits each); `None` without a HEAD, or (logged)
/// when the repository's records cannot be read. A node that cannot be read is
/// skipped with what is below it: the filter is a hint, and fsck reports the node.
pub async fn newest_chunks(repo: &Repo) -> Option<IdFilter> {
    match filter_of_head(repo).await {
        Ok(filter) => filter,
        Err(e) => {
            tracing::warn!("HEAD's chunks not listed for the rewrite: {e}");
            None
        }
    }
}

async fn filter_of_head(repo: &Repo) -> Result<Option<IdFilter>, ManifestError> {
    let Some(head) = repo.head()? else {
        return Ok(None);
    };
    let mut filter = IdFilter::for_ids(repo.totals()?.chunks);
    // Nodes seen, so a subtree shared within the tree is walked once.
    let mut nodes: HashSet<ChunkId> = HashSet::new();
    let stores = std::slice::from_ref(repo.store());
    walk::reachable(
        [head.root],
        |batch| walk::read_nodes(stores, batch),
        |found| match found {
            Found::Node(id, _) => {
                filter.insert(&id);
                nodes.insert(id)
            }
            Found::Data(id, _) => {
                filter.insert(&id);
                true
            }
            Found::Broken(..) => true,
        },
    )
    .await;
    Ok(Some(filter))
}
