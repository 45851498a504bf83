//! Opening what a pack holds for one chunk: its own frame, or its place in a block
//! (chunks compressed together, issue 47). A block is opened and decompressed once
//! for all the members read from it in a row (a small cache of decoded blocks, keyed by
//! pack and offset), so a restore reading a block's members decodes it once.
//!
//! # Invariants
//! - A member is answered only when the block's table names its id at its index and
//!   its bytes hash to it; a block that does not open or decode fails every member read
//!   from it, each with the pack and offset named.
//! - Packs are immutable (named by the hash of their bytes): a decoded block is never
//!   stale.

use std::sync::Arc;

use bytes::Bytes;
use fvfs_cas::block;
use fvfs_cas::{frame, ChunkId, Loaded, StoreError};

use super::Bucket;

/// Where a block is: its pack's name and offset.
pub type Place = ([u8; 32], u64);

/// Opens chunks from the bytes stored for them.
#[derive(Clone)]
pub struct Opener {
    bucket: Bucket,
    decoded: Arc<block::Cache<Place>>,
}

impl Opener {
    pub fn new(bucket: Bucket) -> Self {
        Self {
            bucket,
            decoded: Arc::default(),
        }
    }

    /// Chunk `id` from `stored`: its frame, or with `member` (its index, and its block's
    /// place when the block is in a stored pack, for the cache) the block holding it.
    pub fn open(
        &self,
        id: &ChunkId,
        stored: Bytes,
        member: Option<(u32, Option<Place>)>,
    ) -> Result<Loaded, StoreError> {
        let Some((index, place)) = member else {
            return self.bucket.open_frame(id, stored);
        };
        let corrupt = |why: String| StoreError::Corrupt {
            id: *id,
            reason: why,
        };
        let load = || self.bucket.open_block(stored);
        let raw = match place {
            Some(p) => self.decoded.member(p, index, id, load),
            None => load()
                .map_err(block::MemberError::Load)
                .and_then(|frame| block::member_of(&frame, index, id)),
        }
        .map_err(|e| {
            corrupt(match e {
                block::MemberError::Load(why) => format!("its block {why}"),
                block::MemberError::Damaged => "its block does not decode".into(),
                block::MemberError::NotListed => {
                    format!("its block does not hold it at entry {index}")
                }
            })
        })?;
        let actual = ChunkId::of(&raw);
        if actual != *id {
            return Err(corrupt(format!(
                "its block holds bytes that hash to {actual}"
            )));
        }
        Ok(Loaded {
            frame: Bytes::from(frame::encode_raw(&raw)),
            data: raw,
        })
    }
}
