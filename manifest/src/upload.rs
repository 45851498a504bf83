//! What a client's chunks may cost the daemon before they are trusted: the most raw
//! bytes a frame of each kind may declare, which tree nodes a client may send at all,
//! and the memory that decoding them may take at once, shared by every request.
//!
//! A frame declares its raw length, and a zstd payload of a few hundred bytes can
//! declare tens of megabytes: so the declared length is checked against what the kind
//! allows before anything is decompressed ([`check_declared`]), and decoding waits for
//! its share of [`BUDGET_BYTES`] ([`reserve`]) and runs on the blocking pool, so that
//! bombs sent in parallel queue behind each other instead of filling memory or
//! stalling the daemon's other requests.

use fvfs_cas::{chunker, frame, ChunkId};
use fvfs_node::{ChunkKind, Node};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{ManifestError, Result};

/// Memory that decoding clients' chunks may take at once, all requests together.
pub const BUDGET_BYTES: usize = 128 << 20;
/// Memory a decoded node may take per byte of its encoding (a directory of tiny
/// entries decodes to about ten times its CBOR).
const NODE_EXPANSION: usize = 16;
/// The budget's unit: permits are KiB.
const UNIT: usize = 1024;
static BUDGET: Semaphore = Semaphore::const_new(BUDGET_BYTES / UNIT);

/// The most raw bytes a chunk of `kind` from a client may hold.
pub fn max_raw(kind: ChunkKind) -> usize {
    match kind {
        ChunkKind::Data => chunker::MAX_SIZE,
        ChunkKind::Node => fvfs_node::MAX_UPLOAD_NODE,
    }
}

/// The raw length frame `framed` declares, if it is within what `kind` allows:
/// checked before anything is decompressed.
pub fn check_declared(kind: ChunkKind, id: &ChunkId, framed: &[u8]) -> Result<usize> {
    let bad = |reason: String| ManifestError::BadFrame { id: *id, reason };
    let declared = frame::raw_len(framed).map_err(|e| bad(e.to_string()))?;
    let most = max_raw(kind);
    if declared > most {
        let what = match kind {
            ChunkKind::Data => "a data chunk",
            ChunkKind::Node => "a file or list node",
        };
        return Err(bad(format!(
            "declares {declared} raw bytes, more than {what} may hold ({most})"
        )));
    }
    Ok(declared)
}

/// What decoding a chunk of `kind` and `raw` bytes may take in memory.
pub fn cost(kind: ChunkKind, raw: usize) -> usize {
    match kind {
        // The frame is held already: the decompressed copy.
        ChunkKind::Data => raw,
        ChunkKind::Node => raw * (1 + NODE_EXPANSION),
    }
}

/// Waits until `bytes` of the budget are free (at least one unit, at most all of it)
/// and holds them until the permit is dropped.
pub async fn reserve(bytes: usize) -> SemaphorePermit<'static> {
    let units = bytes.div_ceil(UNIT).clamp(1, BUDGET_BYTES / UNIT);
    BUDGET
        .acquire_many(units as u32)
        .await
        .expect("the budget is never closed")
}

/// Decodes `raw` as a node a client may send (a file or list node).
pub fn client_node(id: &ChunkId, raw: &[u8]) -> Result<Node> {
    let bad = |reason: String| ManifestError::BadFrame { id: *id, reason };
    match fvfs_node::decode(raw) {
        Ok(node @ (Node::File(_) | Node::List(_))) => Ok(node),
        Ok(_) => Err(bad("a client may send file and list nodes only".into())),
        Err(e) => Err(bad(format!("not a tree node: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_sizes_beyond_the_kind_are_refused_before_decoding() {
        let id = ChunkId::of(b"x");
        let mut bomb = frame::encode(&vec![0u8; 1 << 20]);
        assert!(
            bomb.len() < 1000,
            "a megabyte of zeros compresses to {}",
            bomb.len()
        );
        let e = check_declared(ChunkKind::Data, &id, &bomb).unwrap_err();
        assert!(
            e.to_string().contains("more than a data chunk may hold"),
            "{e}"
        );
        assert_eq!(
            check_declared(ChunkKind::Node, &id, &bomb).unwrap(),
            1 << 20
        );
        bomb[4..8].copy_from_slice(&(64u32 << 20).to_le_bytes());
        assert!(check_declared(ChunkKind::Node, &id, &bomb).is_err());
        let fine = frame::encode(&[7u8; 1000]);
        assert_eq!(check_declared(ChunkKind::Data, &id, &fine).unwrap(), 1000);
    }

    #[test]
    fn clients_send_file_and_list_nodes_only() {
        let dir = Node::Dir(fvfs_node::DirNode::default()).encode();
        let id = ChunkId::of(&dir);
        assert!(client_node(&id, &dir).is_err());
        let list = Node::List(fvfs_node::ListNode { chunks: Vec::new() }).encode();
        assert!(client_node(&ChunkId::of(&list), &list).is_ok());
    }

    #[tokio::test]
    async fn the_budget_queues_what_does_not_fit() {
        let all = reserve(usize::MAX).await;
        let waiting = tokio::spawn(reserve(1));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "reserved beyond the budget");
        drop(all);
        drop(waiting.await.unwrap());
    }
}
