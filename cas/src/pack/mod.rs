//! The pack store: the local tier, and the NAS tier on a mounted path. Frames are
//! appended as self-describing records to a few open segment files; each chunk's
//! location lives in a small database beside them.
//!
//! ```text
//! ROOT/FVFS-PACKS            marker: this directory is a pack store (format 2)
//! ROOT/segments/00000001.seg records, appended; at most `segment_mb` each
//! ROOT/index/                locations and segment statistics (see `index`)
//! ```
//!
//! # Invariants
//! - **A location in the index names durable bytes.** `put` appends to a segment and
//!   remembers the location in memory (*pending*); `sync` fdatasyncs every segment
//!   written since the last sync (and the folder when a segment was created), then
//!   writes the pending locations with each segment's new *synced length* in the
//!   index and flushes it durably. Nothing else writes locations, so the database,
//!   whenever it reaches the disk, never names bytes that were not synced first.
//! - **Nothing past a segment's synced length is trusted.** `open` cuts every segment
//!   back to its synced length (what a crash left after it was never acknowledged)
//!   and removes segments the index does not know (created, never synced; or
//!   emptied by a compaction that crashed before removing them).
//! - **Space is freed only after the index forgot it.** `delete` hides the chunk at
//!   once; the next `sync` removes its location durably (noting the freed range in
//!   the same batch) and only then punches the record's hole, so a crash never leaves
//!   a location naming zeros; a range noted and not yet punched when a crash came is
//!   punched at the next open (or before an index rebuild, so it never comes back).
//! - **One writer per open segment.** A put checks a segment out of the pool, appends
//!   and returns it: concurrent puts never wait on each other's writes.
//! - `sync`, `delete` and compaction run one at a time (`sync_lock`), so each sync
//!   sees every chunk in exactly one state: pending, indexed, or being deleted.

mod append;
mod bulk;
mod compact;
mod convert;
pub mod index;
mod open;
mod packed;
mod recompress;
pub mod record;
pub mod scan;
pub mod sealing;
mod sync;
mod whole;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::block;
use crate::kv::Kv;
use crate::store::verify;
use crate::{
    platform, ChunkId, ChunkStore, Compacted, IdFilter, Loaded, Recompressed, StoreCheck,
    StoreError, StoreFault, Usage,
};
use append::Writer;
use index::{Loc, SegStat};

pub use convert::{convert_legacy, is_legacy, Converted};
pub use sealing::{check_mode, seal_in_place, Sealed, Sealing};

const MARKER: &str = "FVFS-PACKS";
const MARKER_TEXT: &str = "fvfs pack store, format 2\n";
/// Written with the first part of a sync's index update, removed with the last: if
/// a crash split the update, `open` recounts the statistics.
const UPDATING: &[u8] = b"x";
/// Written with the first batch of an index rebuild, removed with its last: if a crash
/// cut the rebuild short, `open` rebuilds again (the segments the partial index does
/// not know yet are not deleted as strays).
const REBUILDING: &[u8] = b"r";
/// Operations per index batch: an engine holds a batch whole while it applies it (on
/// sled, the engine then, a sync deleting 200,000 of 2 million records grew the
/// process by 1.3 GB in one batch, 860 MB in batches of 4096 and 190 MB in batches of
/// 512, in the same time).
const BATCH_OPS: usize = 512;
/// Read handles kept open (segments are many on a large store).
const READERS: usize = 256;

/// How a pack store is laid out and maintained.
#[derive(Clone, Copy, Debug)]
pub struct PackOptions {
    /// A segment stops taking records once it is this long.
    pub segment_bytes: u64,
    /// Segments whose live share fell below this are compacted.
    pub compact_below: f64,
    /// Segments open for appending at once (one per concurrent writer).
    pub max_open: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            compact_below: 0.5,
            max_open: 8,
        }
    }
}

/// A [`ChunkStore`] of append-only segment files in a local or mounted directory.
///
/// Opened with a [`Sealing`], it keeps every chunk under a name and sealed (see
/// [`sealing`]); its `ChunkStore` methods take and answer ids all the same.
#[derive(Clone)]
pub struct PackStore {
    inner: Arc<Inner>,
    seal: Option<Arc<dyn Sealing>>,
}

#[derive(Default)]
struct State {
    /// Put since the last sync: not in the index yet.
    pending: HashMap<ChunkId, Loc>,
    /// Deleted since the last sync: still in the index, hidden from readers.
    deleting: HashMap<ChunkId, Loc>,
    /// Records nothing names (a lost race between two puts of one id, a pending
    /// chunk deleted): punched after the next sync.
    dead: Vec<Loc>,
    /// Ranges noted as freed in the index and not punched yet (see `sync`).
    unpunched: bool,
    /// Segments appended to since the last sync.
    unsynced: HashMap<u32, Arc<File>>,
    /// A segment file was created since the last sync: its folder needs a sync.
    created: bool,
    /// Per segment, as of the last sync.
    stats: HashMap<u32, SegStat>,
    /// Live records and bytes, as of the last sync.
    totals: (u64, u64),
}

struct Inner {
    root: PathBuf,
    segments: PathBuf,
    kv: Kv,
    opts: PackOptions,
    state: Mutex<State>,
    pool: Mutex<Vec<Writer>>,
    /// Segments open for appending, idle or checked out: compaction leaves them be.
    active: Mutex<HashSet<u32>>,
    next_seg: AtomicU32,
    readers: Mutex<HashMap<u32, Arc<File>>>,
    sync_lock: Mutex<()>,
    /// One recompression at a time (it holds `sync_lock` only to switch locations).
    recompress_lock: Mutex<()>,
    /// Blocks decoded lately, for reads of their other members.
    blocks: block::Cache,
}

/// What a read of a chunk's location finds, checked against the record's header.
pub(super) enum Kept {
    /// The chunk's own record: its frame (sealed when the store is), not decoded.
    Record(Bytes),
    /// A member of a block: its raw bytes, not yet hashed.
    Member(Bytes),
}

impl Kept {
    /// The frame to copy elsewhere: a record's as kept, a member's raw bytes framed
    /// at the fast level once they hash to `id`.
    pub(super) fn into_frame(self, id: &ChunkId) -> Result<Bytes, StoreError> {
        match self {
            Kept::Record(frame) => Ok(frame),
            Kept::Member(raw) => Ok(Bytes::from(crate::frame::encode(&checked(id, raw)?))),
        }
    }
}

/// A member's raw bytes, once they hash to `id`.
fn checked(id: &ChunkId, raw: Bytes) -> Result<Bytes, StoreError> {
    let actual = ChunkId::of(&raw);
    if actual != *id {
        return Err(StoreError::Corrupt {
            id: *id,
            reason: format!("its block holds bytes that hash to {actual}"),
        });
    }
    Ok(raw)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PackStore {
    /// Opens the pack store at `root`, creating it if the directory is missing or
    /// empty, and recovering from a crash (see the module's invariants). Refuses a
    /// non-empty directory that is not a pack store, and a store in the chunk-file
    /// layout of earlier versions (naming the command that converts it).
    ///
    /// Only one process may open a store at a time (its index refuses a second).
    pub fn open(root: impl Into<PathBuf>, opts: PackOptions) -> Result<Self, StoreError> {
        Self::open_with(root, opts, None)
    }

    /// [`PackStore::open`], sealed by `seal` when given (a new store is made sealed;
    /// an existing one must have been made with the same key, see [`sealing`]).
    pub fn open_with(
        root: impl Into<PathBuf>,
        opts: PackOptions,
        seal: Option<Arc<dyn Sealing>>,
    ) -> Result<Self, StoreError> {
        let root = root.into();
        if is_legacy(&root) {
            return Err(StoreError::Unavailable(format!(
                "{} is a chunk store in the one-file-per-chunk layout of earlier fvfs versions; \
                 convert it with `fvfsd convert-store` (while no daemon runs)",
                root.display()
            )));
        }
        sealing::prepare(&root, seal.as_deref())?;
        open::open(root, opts).map(|inner| Self {
            inner: Arc::new(inner),
            seal,
        })
    }

    /// The folder of the pack store at `root` that holds its index (a [`crate::kv::Kv`]).
    pub fn index_dir(root: &Path) -> PathBuf {
        root.join("index")
    }

    /// Whether `root` holds a pack store (its marker file is there). A network mount
    /// that went away leaves an empty mountpoint, which does not.
    pub fn exists_at(root: &Path) -> bool {
        root.join(MARKER).is_file()
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The segment file and offset of `id`'s record, if it is stored: for tests and
    /// tools that damage or inspect the medium.
    pub fn locate(&self, id: &ChunkId) -> Result<Option<(PathBuf, u64)>, StoreError> {
        Ok(self
            .inner
            .lookup(&self.name(id))
            .map_err(|e| self.unname_error(e))?
            .map(|loc| (self.inner.segment_path(loc.seg), loc.offset)))
    }

    /// [`ChunkStore::list`], as a stream that owns its handle on the store: a bounded
    /// page of the index in memory at a time, whatever the store's size.
    pub fn list_owned(&self) -> BoxStream<'static, Result<ChunkId, StoreError>> {
        let seal = self.seal.clone();
        self.names()
            .map(move |r| match &seal {
                Some(s) => r.map(|name| s.id_of(&name)),
                None => r,
            })
            .boxed()
    }

    /// What `id` is kept under.
    fn name(&self, id: &ChunkId) -> ChunkId {
        self.seal.as_ref().map_or(*id, |s| s.name(id))
    }

    /// Every name kept, as [`PackStore::list_owned`] lists ids.
    fn names(&self) -> BoxStream<'static, Result<ChunkId, StoreError>> {
        let pending: Vec<ChunkId> = lock(&self.inner.state).pending.keys().copied().collect();
        let this = self.clone();
        let indexed = stream::unfold(Some(Vec::new()), move |after| {
            let this = this.clone();
            async move {
                let after = after?;
                let page: Vec<Result<ChunkId, StoreError>> = match this.inner.index_page(&after) {
                    Ok(ids) if ids.is_empty() => return None,
                    Ok(ids) => ids.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(StoreError::Unavailable(e.to_string()))],
                };
                let next = match page.last() {
                    Some(Ok(id)) => Some(index::loc_key(id).to_vec()),
                    _ => None,
                };
                Some((stream::iter(page), next))
            }
        })
        .flatten();
        let hidden = self.clone();
        stream::iter(pending.into_iter().map(Ok))
            .chain(indexed.filter(move |r| {
                let keep = match r {
                    Ok(id) => !lock(&hidden.inner.state).deleting.contains_key(id),
                    Err(_) => true,
                };
                std::future::ready(keep)
            }))
            .boxed()
    }
}

impl PackStore {
    /// What a read of `id` answers: the kept record opened (when sealed) and verified;
    /// a block's member checked against its id, in a frame of its raw bytes (it is
    /// served as it is: compressing it again would cost every reader of cold data).
    fn loaded(&self, id: &ChunkId, kept: Result<Kept, StoreError>) -> Result<Loaded, StoreError> {
        match kept {
            Ok(Kept::Member(raw)) => {
                let raw = checked(id, raw)?;
                Ok(Loaded {
                    frame: Bytes::from(crate::frame::encode_raw(&raw)),
                    data: raw,
                })
            }
            other => verify(id, self.opened(id, other)?),
        }
    }

    /// The frame of `id` from its kept record: opened when sealed, not decoded; a
    /// block's member framed at the fast level (for a copy to another tier).
    fn opened(&self, id: &ChunkId, kept: Result<Kept, StoreError>) -> Result<Bytes, StoreError> {
        let kept = match kept.map_err(|e| self.unname_error(e))? {
            Kept::Record(frame) => frame,
            // The rewrite into blocks never runs on a sealed store.
            member if self.seal.is_none() => return member.into_frame(id),
            Kept::Member(_) => {
                return Err(StoreError::Corrupt {
                    id: *id,
                    reason: "it is in a block, which a sealed store never holds".into(),
                })
            }
        };
        Ok(match &self.seal {
            Some(s) => Bytes::from(s.open(id, &kept).ok_or_else(|| {
                StoreError::Corrupt {
                    id: *id,
                    reason: "its sealed frame does not open (authentication failed): changed, \
                         moved, or sealed under another key"
                        .into(),
                }
            })?),
            None => kept,
        })
    }

    /// [`ChunkStore::get_many`], as a stream that owns what it needs (a wrapper
    /// holding this store in a lock can hand it on).
    pub fn get_many_owned(&self, ids: Vec<ChunkId>) -> crate::ChunkStream<'static> {
        bulk::read_many(self.clone(), ids, |store, id, kept| store.loaded(id, kept))
    }

    /// [`ChunkStore::copy_frames`]: each record checked against its header's checksum
    /// (and opened when sealed), not decoded.
    pub fn copy_frames_owned(&self, ids: Vec<ChunkId>) -> crate::FrameStream<'static> {
        bulk::read_many(self.clone(), ids, |store, id, kept| store.opened(id, kept))
    }

    /// An error about a name, told about its id.
    fn unname_error(&self, e: StoreError) -> StoreError {
        let Some(s) = &self.seal else { return e };
        match e {
            StoreError::Corrupt { id, reason } => {
                let real = s.id_of(&id);
                StoreError::Corrupt {
                    id: real,
                    reason: reason.replace(&id.to_hex(), &real.to_hex()),
                }
            }
            other => other,
        }
    }

    /// A fault about a name, told about its id.
    fn unname_fault(&self, f: StoreFault) -> StoreFault {
        match (&self.seal, f.chunk) {
            (Some(s), Some(name)) => {
                let id = s.id_of(&name);
                StoreFault::of(id, f.what.replace(&name.to_hex(), &id.to_hex()))
            }
            _ => f,
        }
    }
}

impl Inner {
    fn segment_path(&self, seg: u32) -> PathBuf {
        segment_path(&self.segments, seg)
    }

    fn kv_err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("index of {}: {e}", self.root.display()))
    }

    /// Where `id` is, if this store holds it (pending, or indexed and not deleted).
    fn lookup(&self, id: &ChunkId) -> Result<Option<Loc>, StoreError> {
        {
            let st = lock(&self.state);
            if let Some(loc) = st.pending.get(id) {
                return Ok(Some(*loc));
            }
            if st.deleting.contains_key(id) {
                return Ok(None);
            }
        }
        let Some(bytes) = self
            .kv
            .get(&index::loc_key(id))
            .map_err(|e| self.kv_err(e))?
        else {
            // A sync may have moved it from pending to the index between our looks.
            return Ok(lock(&self.state).pending.get(id).copied());
        };
        Loc::decode(&bytes)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                id: *id,
                reason: "its index entry is malformed".into(),
            })
    }

    /// What is kept under `name` (the chunk `id`), wherever the index says now.
    fn read_named(&self, id: &ChunkId, name: &ChunkId) -> Result<Kept, StoreError> {
        match self.lookup(name)? {
            Some(loc) => self.read(name, loc),
            None => Err(StoreError::NotFound(*id)),
        }
    }

    /// Up to a page of indexed ids after key `after` (from the start if empty).
    fn index_page(&self, after: &[u8]) -> Result<Vec<ChunkId>, crate::kv::KvError> {
        let prefix = [index::LOC_PREFIX];
        let after = (!after.is_empty()).then_some(after);
        self.kv
            .scan_after(&prefix, after)
            .take(4096)
            .map(|r| r.map(|(k, _)| ChunkId::from_slice(&k[1..]).expect("32-byte key")))
            .collect()
    }

    fn reader(&self, seg: u32) -> Result<Arc<File>, StoreError> {
        if let Some(f) = lock(&self.readers).get(&seg) {
            return Ok(f.clone());
        }
        let path = self.segment_path(seg);
        // Read and write: the same handle punches holes.
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        let file = Arc::new(file);
        let mut readers = lock(&self.readers);
        if readers.len() >= READERS {
            readers.clear();
        }
        readers.insert(seg, file.clone());
        Ok(file)
    }

    /// What `loc` holds for `id`, checked against its record header (not yet
    /// verified); a block is decoded once for all the readers of its members.
    fn read(&self, id: &ChunkId, loc: Loc) -> Result<Kept, StoreError> {
        if loc.member.is_some() {
            return self.member(id, loc, || self.read_record(id, loc));
        }
        self.read_record(id, loc)
            .and_then(|buf| self.check_record(id, loc, buf))
            .map(Kept::Record)
    }

    /// The member `id` at `loc`, from the cache of decoded blocks or decoded from the
    /// record `record` reads.
    fn member(
        &self,
        id: &ChunkId,
        loc: Loc,
        record: impl FnOnce() -> Result<Bytes, StoreError>,
    ) -> Result<Kept, StoreError> {
        let index = loc.member.map_or(0, |m| m.index);
        let damaged = |what: &str| StoreError::Corrupt {
            id: *id,
            reason: format!("its block in segment {} at {} {what}", loc.seg, loc.offset),
        };
        let load = || {
            let buf = record()?;
            let frame = self
                .check_frame(loc, &buf)
                .ok_or_else(|| damaged("is damaged"))?;
            Ok(buf.slice_ref(frame))
        };
        self.blocks
            .member((loc.seg, loc.offset), index, id, load)
            .map(Kept::Member)
            .map_err(|e| match e {
                block::MemberError::Load(e) => e,
                block::MemberError::Damaged => damaged("does not decode"),
                block::MemberError::NotListed => {
                    damaged(&format!("does not hold it at entry {index}"))
                }
            })
    }

    /// The bytes of the whole record at `loc`.
    fn read_record(&self, id: &ChunkId, loc: Loc) -> Result<Bytes, StoreError> {
        let file = self.reader(loc.seg)?;
        let buf =
            platform::read_exact_at(&file, loc.offset, loc.record_len() as usize).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    StoreError::Corrupt {
                        id: *id,
                        reason: format!("its record in segment {} is cut short", loc.seg),
                    }
                } else {
                    StoreError::io("read", self.segment_path(loc.seg), e)
                }
            })?;
        Ok(Bytes::from(buf))
    }

    /// The frame of record `buf`, read from a member's `loc`, if its header is whole
    /// and its frame matches the checksum (the header names the block, not a chunk).
    fn check_frame<'b>(&self, loc: Loc, buf: &'b [u8]) -> Option<&'b [u8]> {
        let h = record::decode_header(buf)?;
        let frame = buf.get(record::HEADER_LEN..)?;
        (h.frame_len == loc.frame_len && record::frame_matches(&h, frame)).then_some(frame)
    }

    /// The frame of record `buf`, read from `loc`, once its header names `id` and its
    /// checksum matches.
    fn check_record(&self, id: &ChunkId, loc: Loc, buf: Bytes) -> Result<Bytes, StoreError> {
        match record::decode_header(&buf) {
            Some(h) if h.id == *id && h.frame_len == loc.frame_len => {
                if !record::frame_matches(&h, &buf[record::HEADER_LEN..]) {
                    return Err(StoreError::Corrupt {
                        id: *id,
                        reason: format!(
                            "its frame in segment {} at {} is damaged",
                            loc.seg, loc.offset
                        ),
                    });
                }
            }
            _ => {
                return Err(StoreError::Corrupt {
                    id: *id,
                    reason: format!(
                        "its record header in segment {} at {} is damaged",
                        loc.seg, loc.offset
                    ),
                })
            }
        }
        Ok(buf.slice(record::HEADER_LEN..))
    }

    fn usage(&self) -> Usage {
        let st = lock(&self.state);
        let pending: u64 = st.pending.values().map(Loc::live_len).sum();
        let deleting: u64 = st.deleting.values().map(Loc::live_len).sum();
        Usage {
            chunks: (st.totals.0 + st.pending.len() as u64)
                .saturating_sub(st.deleting.len() as u64),
            bytes: (st.totals.1 + pending).saturating_sub(deleting),
        }
    }
}

fn segment_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("{seg:08}.seg"))
}

#[async_trait]
impl ChunkStore for PackStore {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        let answer = self.put_many(vec![(id, frame)]).await.pop();
        answer.unwrap_or(Ok(()))
    }

    async fn put_many(&self, frames: Vec<(ChunkId, Bytes)>) -> Vec<Result<(), StoreError>> {
        let kept: Vec<(ChunkId, Bytes)> = match &self.seal {
            Some(s) => frames
                .into_iter()
                .map(|(id, frame)| (s.name(&id), Bytes::from(s.seal(&id, &frame))))
                .collect(),
            None => frames,
        };
        // Each frame is answered in the list: the call itself cannot fail.
        let Ok(answers) = blocking(&self.inner, move |s| Ok(s.put_many(&kept))).await else {
            unreachable!("put_many answers each frame itself")
        };
        answers
            .into_iter()
            .map(|r| r.map_err(|e| self.unname_error(e)))
            .collect()
    }

    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        let (id, name) = (*id, self.name(id));
        let kept = blocking(&self.inner, move |s| s.read_named(&id, &name)).await;
        self.loaded(&id, kept)
    }

    fn get_many(&self, ids: Vec<ChunkId>) -> crate::ChunkStream<'_> {
        self.get_many_owned(ids)
    }

    fn copy_frames(&self, ids: Vec<ChunkId>) -> crate::FrameStream<'_> {
        self.copy_frames_owned(ids)
    }

    fn get_packed(&self, ids: Vec<ChunkId>) -> crate::PackedStream<'_> {
        self.get_packed_owned(ids)
    }

    async fn blocks_after(
        &self,
        after: Option<crate::BlockPlace>,
        limit: usize,
    ) -> Result<Vec<crate::BlockPlace>, StoreError> {
        self.places_after(after, limit).await
    }

    async fn block_at(
        &self,
        place: crate::BlockPlace,
    ) -> Result<Option<crate::BlockCopy>, StoreError> {
        self.block_copy(place).await
    }

    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        let names: Vec<ChunkId> = ids.iter().map(|id| self.name(id)).collect();
        blocking(&self.inner, move |s| {
            names.iter().map(|n| Ok(s.lookup(n)?.is_some())).collect()
        })
        .await
        .map_err(|e| self.unname_error(e))
    }

    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        let name = self.name(id);
        blocking(&self.inner, move |s| s.delete(&name))
            .await
            .map_err(|e| self.unname_error(e))
    }

    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>> {
        self.list_owned()
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        Ok(self.inner.usage())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        blocking(&self.inner, |s| s.sync()).await
    }

    fn read_order(&self, id: &ChunkId) -> u64 {
        self.inner
            .lookup(&self.name(id))
            .ok()
            .flatten()
            .map_or(u64::MAX, |l| l.order_key())
    }

    async fn check_store(&self, check: StoreCheck) -> Result<Vec<StoreFault>, StoreError> {
        let read_by_caller = check.read_by_caller.filter(|_| !check.repair);
        let seal = self.seal.clone();
        let faults = blocking(&self.inner, move |s| {
            // The index names chunks by their names: the caller knows their ids.
            let read_elsewhere = |name: &ChunkId| {
                read_by_caller
                    .as_ref()
                    .is_some_and(|read| read(&seal.as_ref().map_or(*name, |s| s.id_of(name))))
            };
            open::check(s, check.repair, &read_elsewhere)
        })
        .await?;
        Ok(faults.into_iter().map(|f| self.unname_fault(f)).collect())
    }

    async fn compact(&self) -> Result<Compacted, StoreError> {
        blocking(&self.inner, compact::compact).await
    }

    async fn recompress(
        &self,
        limit: u64,
        threads: usize,
        newest: Option<&IdFilter>,
    ) -> Result<Recompressed, StoreError> {
        // A sealed store keeps sealed frames: nothing to compress again.
        if self.seal.is_some() {
            return Ok(Recompressed::default());
        }
        // Minutes of CPU on a large store: never on an executor thread.
        let inner = self.inner.clone();
        let newest = newest.cloned();
        on_pool(move || recompress::recompress(&inner, limit, threads, newest.as_ref())).await
    }
}

/// Runs blocking file I/O off the async executor: in place on a multi-threaded
/// runtime (other tasks move to another worker; far cheaper than a thread hop per
/// small chunk), on the blocking pool otherwise.
async fn blocking<I: Send + Sync + 'static, T: Send + 'static>(
    inner: &std::sync::Arc<I>,
    f: impl FnOnce(&I) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let inner = std::sync::Arc::clone(inner);
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        return tokio::task::block_in_place(move || f(&inner));
    }
    on_pool(move || f(&inner)).await
}

/// `f` on the blocking pool (its panic resumed here).
async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests;
