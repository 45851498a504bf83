//! The `ChunkStore` trait: the one interface every tier (memory, local disk, NAS, S3)
//! implements, and the conveniences built on it.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::{frame, ChunkId, IdFilter, StoreError};

/// Chunks answered by [`ChunkStore::get_many`], each with its id.
pub type ChunkStream<'a> = BoxStream<'a, (ChunkId, Result<Loaded, StoreError>)>;
/// Frames answered by [`ChunkStore::copy_frames`], each with its id.
pub type FrameStream<'a> = BoxStream<'a, (ChunkId, Result<Bytes, StoreError>)>;
/// Chunks as kept, answered by [`ChunkStore::get_packed`], each with its id.
pub type PackedStream<'a> = BoxStream<'a, (ChunkId, Result<Packed, StoreError>)>;

/// A chunk as [`ChunkStore::get_packed`] answers it: as the store keeps it, for a
/// reader that decodes and verifies what it is given itself.
#[derive(Clone, Debug)]
pub enum Packed {
    /// The chunk's own frame, verified as [`ChunkStore::get_many`] verifies it.
    Frame(Bytes),
    /// The whole block holding the chunk (`block` format), checked against the
    /// store's checksum and not decoded: its table names the chunk, and every other
    /// member the block holds (some perhaps deleted since it was written).
    Block(Bytes),
    /// In the block an earlier answer of the same stream gave.
    InBlock,
}

/// A frame read back from a store, already verified against its id.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The frame as stored (compressed), for copying to another tier as is.
    pub frame: Bytes,
    /// The chunk's raw bytes; `ChunkId::of(&data)` is the id that was asked for.
    pub data: Bytes,
}

/// Where a store keeps a block (chunks compressed together): for a pack store, the
/// segment and offset of its record.
pub type BlockPlace = (u32, u64);

/// A block as a store keeps it, for a colder tier that stores it whole.
#[derive(Clone, Debug)]
pub struct BlockCopy {
    pub place: BlockPlace,
    /// The block's frame (`block` format), checked against the store's checksum.
    pub frame: Bytes,
    /// Its members still live in the store: id, index in the block's table, raw length.
    pub live: Vec<(ChunkId, u32, u32)>,
}

/// How much a store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub chunks: u64,
    /// Bytes of frames, as stored.
    pub bytes: u64,
}

/// A place that keeps chunk frames by id.
///
/// # Contract
///
/// - **put** is create-only and idempotent: putting an id that is already present
///   succeeds and leaves the existing frame alone (ids are content hashes, so both
///   frames hold the same bytes). The caller provides a frame that decodes to `id`; a
///   store need not check it on put, because every get does.
/// - **put is atomic**: once `put` returns, `get` and `has` see the whole frame, and no
///   reader ever sees a partial one. It is **durable only after the next `sync` returns**:
///   stores batch the expensive flush so that thousands of small chunks cost one, not
///   thousands. A crash before `sync` may lose the chunk, never half of it.
/// - **get** returns the frame and its decoded bytes only if they hash to `id`; a frame
///   that does not is reported as [`StoreError::Corrupt`], a missing one as
///   [`StoreError::NotFound`].
/// - **has** answers for many ids in one call, in order, and counts unsynced puts.
/// - **delete** removes a chunk; deleting a missing id succeeds. Durable after `sync`.
/// - **list** streams every id present, in no particular order; chunks put or deleted
///   while the stream runs may or may not appear.
/// - **usage** reports chunks and stored bytes; it may walk the store.
/// - **sync** makes every put and delete that returned before it durable (data and
///   directory entries on disk, objects acknowledged by the server) when it returns.
/// - **get_many** answers each id it is given exactly once, in whatever order is
///   cheapest for the store: the chunk where `get` would return it, otherwise an
///   error (a store with several places may name the last place it looked).
#[async_trait]
pub trait ChunkStore: Send + Sync {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError>;
    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError>;
    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError>;
    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError>;
    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>>;
    async fn usage(&self) -> Result<Usage, StoreError>;
    async fn sync(&self) -> Result<(), StoreError>;

    /// Stores a tree node's frame, as [`ChunkStore::put`] does. A store that packs
    /// chunks into shared objects (S3) keeps nodes in packs of their own, so that a
    /// walk of the trees (a recovery, a folder's restore, a cold listing) reads the
    /// nodes and not the files around them; other stores store it as `put` does.
    async fn put_node(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.put(id, frame).await
    }

    /// Stores many frames, each as [`ChunkStore::put`] would, answering each in the
    /// order given: this default puts them one by one; the pack store appends them
    /// with one write per segment they go to. For copies of many chunks at once
    /// (promotion from a colder tier).
    async fn put_many(&self, frames: Vec<(ChunkId, Bytes)>) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::with_capacity(frames.len());
        for (id, frame) in frames {
            out.push(self.put(id, frame).await);
        }
        out
    }

    /// Which of `ids`, put earlier, are durable already, without waiting for a `sync`,
    /// answered in order: a store whose puts become durable on their own (the S3 store
    /// uploads each pack once it is full) says so, and a copier confirms them as they
    /// land instead of at its next sync. This default answers none.
    async fn durable(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        Ok(vec![false; ids.len()])
    }

    /// A key by which to sort ids before reading many of them: ids with close keys
    /// are close on the medium. Stores without a layout to follow answer 0.
    fn read_order(&self, _id: &ChunkId) -> u64 {
        0
    }

    /// Reads many chunks, each answered once, in whatever order is cheapest: this
    /// default follows [`ChunkStore::read_order`] with [`READ_AHEAD`] reads in flight;
    /// the S3 store fetches neighbouring frames of a pack in one request. Bulk readers
    /// (export, recover, streaming a large file) ask for many at once so that a cold
    /// tier is not one round trip per chunk. Ids should be distinct.
    fn get_many(&self, ids: Vec<ChunkId>) -> ChunkStream<'_> {
        let mut ids = ids;
        ids.sort_by_cached_key(|id| self.read_order(id));
        stream::iter(ids)
            .map(move |id| async move { (id, self.get(&id).await) })
            .buffer_unordered(READ_AHEAD)
            .boxed()
    }

    /// [`ChunkStore::get_many`] for a read that passes through and leaves no trace: a
    /// store that keeps what it reads nearer (the tiered store promotes chunks from
    /// colder tiers and counts reads for eviction) does neither. For bulk copies out
    /// of the store (an export), which would otherwise write every chunk they read a
    /// second time and push the working set out. Other stores read as `get_many`.
    fn get_many_passing(&self, ids: Vec<ChunkId>) -> ChunkStream<'_> {
        self.get_many(ids)
    }

    /// The frames of many chunks, for copying them as they are into another store
    /// (replication), answered as [`ChunkStore::get_many_passing`] answers. A store
    /// that keeps its own checksum of every frame (the pack store: each record's
    /// header names the chunk and sums its frame) checks that instead of decoding:
    /// what the disk damaged is caught all the same, the copy is stored as it is, and
    /// every read of it decodes it. This default decodes and verifies.
    fn copy_frames(&self, ids: Vec<ChunkId>) -> FrameStream<'_> {
        self.get_many_passing(ids)
            .map(|(id, r)| (id, r.map(|l| l.frame)))
            .boxed()
    }

    /// The chunks as the store keeps them, answered as [`ChunkStore::get_many`]
    /// answers (reads counted, promoted from colder tiers), for a reader that decodes
    /// them itself and keeps what it is given (a mount's read-ahead): a block holding
    /// any of them is given whole and compressed, once for all of them, where
    /// `get_many` would decode it and answer each member raw. This default answers
    /// frames.
    fn get_packed(&self, ids: Vec<ChunkId>) -> PackedStream<'_> {
        self.get_many(ids)
            .map(|(id, r)| (id, r.map(|l| Packed::Frame(l.frame))))
            .boxed()
    }

    /// Up to `limit` places of the blocks the store keeps after `after` (from the
    /// first if `None`), in the store's order; stores that keep no blocks have none.
    async fn blocks_after(
        &self,
        _after: Option<BlockPlace>,
        _limit: usize,
    ) -> Result<Vec<BlockPlace>, StoreError> {
        Ok(Vec::new())
    }

    /// The block at `place` with its live members, `None` if it is gone.
    async fn block_at(&self, _place: BlockPlace) -> Result<Option<BlockCopy>, StoreError> {
        Ok(None)
    }

    /// Checks the store's own bookkeeping (for a pack store: that every location
    /// names a record of that chunk) and, with `check.repair`, rebuilds it from the
    /// data itself. Returns the problems found; stores with no bookkeeping of their
    /// own find none.
    async fn check_store(&self, _check: StoreCheck) -> Result<Vec<StoreFault>, StoreError> {
        Ok(Vec::new())
    }

    /// Gives back the space of freed chunks that is still held (for a pack store:
    /// rewrites sparse segments). Durable when it returns; stores that free space
    /// at once do nothing.
    async fn compact(&self) -> Result<Compacted, StoreError> {
        Ok(Compacted::default())
    }

    /// Rewrites frames kept at ingest's fast compression level at
    /// [`crate::frame::DENSE_LEVEL`], a file at a time, until about `limit` bytes of
    /// kept frames were read (at least one file when any is left), on `threads`
    /// threads. CPU-heavy: for a machine that is idle. Durable when it returns; stores
    /// that cannot (sealed or remote ones) do nothing. With `newest` (the chunks the
    /// newest version reads, approximately), those are packed apart from the others,
    /// so that reading that version decodes few bytes it does not want.
    async fn recompress(
        &self,
        _limit: u64,
        _threads: usize,
        _newest: Option<&IdFilter>,
    ) -> Result<Recompressed, StoreError> {
        Ok(Recompressed::default())
    }
}

/// Whether the caller reads a chunk's copies whole itself (see [`StoreCheck`]).
pub type ReadByCaller = Arc<dyn Fn(&ChunkId) -> bool + Send + Sync>;

/// What [`ChunkStore::check_store`] is asked to do.
#[derive(Clone, Default)]
pub struct StoreCheck {
    /// Rebuild the bookkeeping from the data itself where it is wrong.
    pub repair: bool,
    /// Says which chunks the caller reads whole and verifies meanwhile (fsck with
    /// `--read-data`): a pack store does not read their records' headers a second
    /// time (the caller's read checks the header, the frame's checksum and its
    /// content). A predicate, so that a caller holding millions of ids lends its own
    /// set instead of copying it. Ignored with `repair`, which rebuilds from every
    /// record, and by stores whose reads may be answered by another store.
    pub read_by_caller: Option<ReadByCaller>,
}

impl StoreCheck {
    /// A check that repairs (or not) and reads every record it checks.
    pub fn new(repair: bool) -> Self {
        Self {
            repair,
            read_by_caller: None,
        }
    }
}

/// One problem [`ChunkStore::check_store`] found in a store's own bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFault {
    /// The chunk concerned, when the problem is about one (so a report can name the
    /// files using it).
    pub chunk: Option<ChunkId>,
    /// What is wrong, in one line.
    pub what: String,
}

impl StoreFault {
    pub fn of(chunk: ChunkId, what: String) -> Self {
        Self {
            chunk: Some(chunk),
            what,
        }
    }

    pub fn other(what: String) -> Self {
        Self { chunk: None, what }
    }
}

/// What a [`ChunkStore::compact`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compacted {
    /// Files rewritten and removed.
    pub segments: u64,
    /// Bytes of live chunks copied.
    pub moved_bytes: u64,
    /// Bytes the removed files held.
    pub freed_bytes: u64,
}

/// What a [`ChunkStore::recompress`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recompressed {
    /// Files whose frames were rewritten denser (and removed).
    pub rewritten: u64,
    /// Files whose frames would not shrink: marked, left as they are.
    pub kept: u64,
    /// Files still to visit after this call.
    pub remaining: u64,
    /// Bytes of the rewritten files' live records before, and after.
    pub before_bytes: u64,
    pub after_bytes: u64,
}

impl Recompressed {
    /// Adds what another call did; `remaining` is the later call's.
    pub fn add(&mut self, later: Recompressed) {
        self.rewritten += later.rewritten;
        self.kept += later.kept;
        self.remaining = later.remaining;
        self.before_bytes += later.before_bytes;
        self.after_bytes += later.after_bytes;
    }
}

/// Conveniences over any [`ChunkStore`]: work with raw bytes instead of frames.
#[async_trait]
pub trait ChunkStoreExt: ChunkStore {
    /// Hashes, frames and puts `data`; returns its id. Durable after `sync`.
    async fn put_data(&self, data: &[u8]) -> Result<ChunkId, StoreError> {
        let id = ChunkId::of(data);
        self.put(id, Bytes::from(frame::encode(data))).await?;
        Ok(id)
    }

    /// The verified raw bytes of chunk `id`.
    async fn get_data(&self, id: &ChunkId) -> Result<Bytes, StoreError> {
        Ok(self.get(id).await?.data)
    }
}

impl<S: ChunkStore + ?Sized> ChunkStoreExt for S {}

/// Decodes a frame fetched for `id`, turning a bad frame into [`StoreError::Corrupt`].
/// Stores call this on every get.
pub fn verify(id: &ChunkId, frame: Bytes) -> Result<Loaded, StoreError> {
    match frame::decode(id, &frame) {
        Ok(raw) => Ok(Loaded {
            frame,
            data: Bytes::from(raw),
        }),
        Err(e) => Err(StoreError::Corrupt {
            id: *id,
            reason: e.to_string(),
        }),
    }
}

/// Chunks a reader fetches ahead of itself when streaming content: a cold tier
/// answers each request with one round trip, so reading them one after another would
/// cost the sum of the round trips.
pub const READ_AHEAD: usize = 16;

/// Chunks asked for together by [`read_ahead`]: neighbours in a pack then come in one
/// request. About 2 MiB of raw chunks (8 MiB at most).
const WINDOW: usize = 32;
/// Windows in flight: enough to keep a cold tier's link busy, few enough that a
/// daemon streaming many files stays small.
const WINDOWS: usize = 4;

/// The verified raw bytes of `ids`, in order. They are fetched a window of
/// [`WINDOW`] chunks at a time with [`ChunkStore::get_many`] (so a cold tier reads a
/// large file's neighbouring chunks in one request), [`WINDOWS`] windows in flight.
pub fn read_ahead(
    store: std::sync::Arc<dyn ChunkStore>,
    ids: Vec<ChunkId>,
) -> impl futures::Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    let windows: Vec<Vec<ChunkId>> = ids.chunks(WINDOW).map(<[ChunkId]>::to_vec).collect();
    stream::iter(windows)
        .map(move |window| {
            let store = store.clone();
            async move { in_order(&*store, window).await }
        })
        .buffered(WINDOWS)
        .flat_map(stream::iter)
}

/// `ids` read with one `get_many`, answered in the order asked; after the first
/// failure nothing more is answered.
async fn in_order(store: &dyn ChunkStore, ids: Vec<ChunkId>) -> Vec<Result<Bytes, StoreError>> {
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    let mut got = std::collections::HashMap::with_capacity(unique.len());
    let mut answers = store.get_many(unique);
    while let Some((id, r)) = answers.next().await {
        got.insert(id, r.map(|l| l.data));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in &ids {
        match got.get(id) {
            Some(Ok(data)) => out.push(Ok(data.clone())),
            Some(Err(_)) => {
                let e = got.remove(id).and_then(Result::err).expect("an error");
                out.push(Err(e));
                break;
            }
            None => {
                out.push(Err(StoreError::NotFound(*id)));
                break;
            }
        }
    }
    out
}
