//! Blocks read whole, for a colder tier that keeps them as they are (issue 47: the S3
//! tier following the local blocks, so it stores what the idle rewrite compressed with
//! context rather than a frame per chunk): which blocks the store holds, in segment
//! order from a cursor, and one block's frame with its members still live here.
//!
//! # Invariants
//! - A block is answered only when its record's header names the hash of its frame
//!   and the frame matches its checksum, as any read of it; a block freed, compacted
//!   away or punched meanwhile is answered as gone, not as damaged.
//! - Only the members whose location still names this block are offered: a member
//!   deleted (or moved by a compaction) since the block was written is not.

use bytes::Bytes;

use super::index::{self, Loc};
use super::{blocking, record, Inner, PackStore};
use crate::block;
use crate::{platform, BlockCopy, BlockPlace, ChunkId, StoreError};

impl PackStore {
    /// Up to `limit` places of blocks after `after` (from the first if `None`), in
    /// segment order.
    pub(super) async fn places_after(
        &self,
        after: Option<BlockPlace>,
        limit: usize,
    ) -> Result<Vec<BlockPlace>, StoreError> {
        blocking(&self.inner, move |inner| {
            let after = after.map(|(seg, offset)| index::block_key(seg, offset));
            inner
                .kv
                .scan_after(&[index::BLOCK_PREFIX], after.as_ref().map(|k| &k[..]))
                .take(limit)
                .map(|r| {
                    let (k, _) = r.map_err(|e| inner.kv_err(e))?;
                    index::decode_free_key(&k)
                        .ok_or_else(|| inner.kv_err("malformed block key in the index"))
                })
                .collect()
        })
        .await
    }

    /// The block at `place` with its live members; `None` if no block is there any
    /// more.
    pub(super) async fn block_copy(
        &self,
        place: BlockPlace,
    ) -> Result<Option<BlockCopy>, StoreError> {
        blocking(&self.inner, move |inner| read_block(inner, place)).await
    }
}

fn read_block(inner: &Inner, (seg, offset): BlockPlace) -> Result<Option<BlockCopy>, StoreError> {
    let gone = inner
        .kv
        .get(&index::block_key(seg, offset))
        .map_err(|e| inner.kv_err(e))?
        .is_none();
    if gone {
        return Ok(None);
    }
    let file = match inner.reader(seg) {
        Ok(f) => f,
        // Compacted away since the key was read.
        Err(_) if !inner.segment_path(seg).exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    let path = || inner.segment_path(seg);
    let Ok(head) = platform::read_exact_at(&file, offset, record::HEADER_LEN) else {
        return Ok(None);
    };
    let Some(header) = record::decode_header(&head) else {
        return Ok(None);
    };
    let len = record::HEADER_LEN + header.frame_len as usize;
    let buf = platform::read_exact_at(&file, offset, len)
        .map_err(|e| StoreError::io("read", path(), e))?;
    let frame = &buf[record::HEADER_LEN..];
    let damaged = |what: &str| StoreError::Corrupt {
        id: header.id,
        reason: format!("the block in segment {seg} at {offset} {what}"),
    };
    if !record::frame_matches(&header, frame) || ChunkId::of(frame) != header.id {
        return Err(damaged("does not match its record's checksum"));
    }
    let table = block::table(frame).ok_or_else(|| damaged("has no readable table"))?;
    let mut live = Vec::new();
    for (index, (id, _, raw_len)) in table.members.iter().enumerate() {
        let here = |l: Loc| l.seg == seg && l.offset == offset;
        let named = inner
            .lookup(id)?
            .is_some_and(|l| here(l) && l.member.is_some_and(|m| m.index == index as u32));
        if named {
            live.push((*id, index as u32, *raw_len));
        }
    }
    Ok(Some(BlockCopy {
        place: (seg, offset),
        frame: Bytes::copy_from_slice(frame),
        live,
    }))
}
