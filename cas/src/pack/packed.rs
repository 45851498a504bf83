//! Chunks read as they are kept (`get_packed`), for a reader that decodes and verifies
//! them itself and keeps every chunk it is given: a mount's read-ahead. A block is
//! given whole, compressed, once for all the chunks asked for that it holds; chunks
//! kept as frames are read as `get_many` reads them.
//!
//! Why: a mount reads a rewritten tree in path order, in read-ahead windows, and a
//! block's members are wanted in several of them (the small files of a folder ahead
//! of the large ones written beside them). Serving each member raw decoded the same
//! block once per window on the daemon (a cold `tar` of the stable and nightly
//! sysroots decoded 1.78 times the raw bytes it read, and sent them raw), where the
//! mount, given the block, decodes it once and keeps every member.
//!
//! # Invariants
//! - Every id asked for is answered exactly once: the first of a block's asked members
//!   with the block, the others with `InBlock`, in the same stream.
//! - A block is given only when its record's checksum matches, its table names each
//!   chunk it answers for at the index the store's location says, and every member
//!   it holds is live (its count in the index is the table's length, and none is
//!   being deleted): a block's bytes stay until its last member goes, and a reader
//!   must not be given what gc freed. A chunk whose block fails that (moved, damaged,
//!   gone since the lookup, or holding dead members) is answered as `get_many` would
//!   answer it now (a damaged block's error lets a tiered store read a colder copy
//!   and repair). A sealed store never holds blocks; its members would be refused.
//! - Memory: [`super::bulk::IN_FLIGHT`] blocks read at once, besides the frames'
//!   bounded reads.

use futures::stream::{self, StreamExt};

use super::bulk::{self, Item};
use super::index::{self, Loc};
use super::{lock, on_pool, Inner, PackStore};
use crate::{block, ChunkId, Packed, PackedStream, StoreError};

impl PackStore {
    /// [`crate::ChunkStore::get_packed`], as a stream that owns what it needs.
    pub fn get_packed_owned(&self, ids: Vec<ChunkId>) -> PackedStream<'static> {
        let store = self.clone();
        stream::once(async move {
            let (found, missed) = bulk::look_up(&store, ids).await;
            let (mut members, frames): (Vec<Item>, Vec<Item>) = found
                .into_iter()
                .partition(|(_, _, loc)| loc.member.is_some());
            let answered = missed.into_iter().map(|(id, e)| (id, Err(e))).collect();
            let frames = bulk::read_found(store.clone(), frames, answered, |store, id, kept| {
                store.loaded(id, kept).map(|l| Packed::Frame(l.frame))
            });
            members.sort_unstable_by_key(|(_, _, loc)| (loc.seg, loc.offset));
            let blocks = members
                .chunk_by(|a, b| (a.2.seg, a.2.offset) == (b.2.seg, b.2.offset))
                .map(<[Item]>::to_vec)
                .collect::<Vec<_>>();
            let blocks = stream::iter(blocks).map(move |held| {
                let store = store.clone();
                on_pool(move || given(&store, held))
            });
            stream::select(
                frames,
                blocks
                    .buffer_unordered(bulk::IN_FLIGHT)
                    .flat_map(stream::iter),
            )
        })
        .flatten()
        .boxed()
    }
}

/// The answers for `held`, members of one block (as looked up): the block read once.
fn given(store: &PackStore, held: Vec<Item>) -> Vec<(ChunkId, Result<Packed, StoreError>)> {
    let inner = &store.inner;
    let (_, first, loc) = held[0];
    // A sealed store never holds blocks: its members are refused as `get` refuses them.
    let frame = store
        .seal
        .is_none()
        .then(|| inner.read_record(&first, loc).ok())
        .flatten()
        .and_then(|buf| {
            let frame = inner.check_frame(loc, &buf)?;
            all_live(inner, loc, frame).then(|| buf.slice_ref(frame))
        });
    let mut sent = false;
    held.into_iter()
        .map(|(id, name, loc)| {
            let index = loc.member.map_or(0, |m| m.index);
            let answer = match &frame {
                Some(f) if block::entry(f, index) == Some(name) => Ok(if sent {
                    Packed::InBlock
                } else {
                    sent = true;
                    Packed::Block(f.clone())
                }),
                _ => store
                    .loaded(&id, inner.read_named(&id, &name))
                    .map(|l| Packed::Frame(l.frame)),
            };
            (id, answer)
        })
        .collect()
}

/// Whether every member of the block `frame` at `loc` is live: the index counts as
/// many as its table lists, and none of them is being deleted.
fn all_live(inner: &Inner, loc: Loc, frame: &[u8]) -> bool {
    let Some(table) = block::table(frame) else {
        return false;
    };
    let counted = inner
        .kv
        .get(&index::block_key(loc.seg, loc.offset))
        .ok()
        .flatten()
        .and_then(|b| index::decode_count(&b));
    if counted != Some(table.members.len() as u32) {
        return false;
    }
    let state = lock(&inner.state);
    !table
        .members
        .iter()
        .any(|(id, _, _)| state.deleting.contains_key(id))
}
