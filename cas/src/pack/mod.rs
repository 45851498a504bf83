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

mod bulk;
mod compact;
mod convert;
pub mod index;
mod open;
mod recompress;
pub mod record;
pub mod scan;
pub mod sealing;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::kv::{Batch, Kv};
use crate::store::verify;
use crate::{
    failpoint, platform, ChunkId, ChunkStore, Compacted, Loaded, Recompressed, StoreCheck,
    StoreError, StoreFault, Usage,
};
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
/// Operations per index batch: sled holds far more than the operations while it
/// applies a batch. A sync deleting 200,000 of 2 million records grew the process by
/// 1.3 GB in one batch, 860 MB in batches of 4096 and 190 MB in batches of 512, in
/// the same time.
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

/// A segment open for appending, checked out by one writer at a time.
struct Writer {
    seg: u32,
    file: Arc<File>,
    len: u64,
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
    /// What a read of `id` answers: the kept record opened (when sealed) and verified.
    fn loaded(&self, id: &ChunkId, kept: Result<Bytes, StoreError>) -> Result<Loaded, StoreError> {
        verify(id, self.opened(id, kept)?)
    }

    /// The frame of `id` from its kept record: opened when sealed, not decoded.
    fn opened(&self, id: &ChunkId, kept: Result<Bytes, StoreError>) -> Result<Bytes, StoreError> {
        let kept = kept.map_err(|e| self.unname_error(e))?;
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

    /// The frame kept under `name` (the chunk `id`), wherever the index says now.
    fn read_named(&self, id: &ChunkId, name: &ChunkId) -> Result<Bytes, StoreError> {
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

    /// The frame at `loc`, checked against its record header (not yet verified).
    fn read(&self, id: &ChunkId, loc: Loc) -> Result<Bytes, StoreError> {
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
        self.check_record(id, loc, Bytes::from(buf))
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

    /// A segment to append to: an idle one, or a new one.
    fn checkout(&self) -> Result<Writer, StoreError> {
        if let Some(w) = lock(&self.pool).pop() {
            return Ok(w);
        }
        let seg = self.next_seg.fetch_add(1, Ordering::Relaxed);
        let path = self.segment_path(seg);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("create", &path, e))?;
        lock(&self.active).insert(seg);
        lock(&self.state).created = true;
        Ok(Writer {
            seg,
            file: Arc::new(file),
            len: 0,
        })
    }

    /// Puts `w` back in the pool, or retires it once it is full.
    fn checkin(&self, w: Writer) {
        if w.len >= self.opts.segment_bytes {
            lock(&self.active).remove(&w.seg);
        } else {
            lock(&self.pool).push(w);
        }
    }

    /// Appends the record of `frame` to `w`; returns its location.
    fn append(&self, w: &mut Writer, id: &ChunkId, frame: &[u8]) -> Result<Loc, StoreError> {
        let mut records = Vec::new();
        let loc = self.place(w, &mut records, id, frame);
        self.write_out(w, &records)?;
        Ok(loc)
    }

    /// Adds the record of `frame` to `records`, to be written after what `w` holds by
    /// [`Inner::write_out`]; returns where it will be.
    fn place(&self, w: &Writer, records: &mut Vec<u8>, id: &ChunkId, frame: &[u8]) -> Loc {
        let loc = Loc {
            seg: w.seg,
            offset: w.len + records.len() as u64,
            frame_len: frame.len() as u32,
        };
        record::encode_into(records, id, frame);
        loc
    }

    /// Writes `records` (placed by [`Inner::place`]) at the end of `w`, in one write.
    fn write_out(&self, w: &mut Writer, records: &[u8]) -> Result<(), StoreError> {
        if let Err(e) = w.file.write_all_at(records, w.len) {
            // Cut what a partial write left, so the next record starts clean.
            let _ = w.file.set_len(w.len);
            return Err(StoreError::io("write", self.segment_path(w.seg), e));
        }
        w.len += records.len() as u64;
        lock(&self.state).unsynced.insert(w.seg, w.file.clone());
        Ok(())
    }

    fn put(&self, id: ChunkId, frame: &[u8]) -> Result<(), StoreError> {
        self.put_many(&[(id, frame)]).pop().unwrap_or(Ok(()))
    }

    /// Stores the frames not stored yet, their records appended with one write per
    /// segment they go to (a segment stops taking records once it is full, as with
    /// single puts); answers each in order.
    fn put_many(&self, frames: &[(ChunkId, impl AsRef<[u8]>)]) -> Vec<Result<(), StoreError>> {
        let (mut out, mut todo) = (Vec::with_capacity(frames.len()), Vec::new());
        for (i, (id, _)) in frames.iter().enumerate() {
            let stored = self.lookup(id);
            if matches!(stored, Ok(None)) {
                todo.push(i);
            }
            out.push(stored.map(drop));
        }
        let mut todo = todo.into_iter().peekable();
        while todo.peek().is_some() {
            let mut w = match self.checkout() {
                Ok(w) => w,
                Err(e) => {
                    fail_all(&mut out, todo, e);
                    break;
                }
            };
            let (mut records, mut placed) = (Vec::new(), Vec::new());
            while let Some(i) = todo.next_if(|_| {
                records.is_empty() || w.len + (records.len() as u64) < self.opts.segment_bytes
            }) {
                let (id, frame) = &frames[i];
                placed.push((i, self.place(&w, &mut records, id, frame.as_ref())));
            }
            let written = self.write_out(&mut w, &records);
            self.checkin(w);
            if let Err(e) = written {
                fail_all(&mut out, placed.into_iter().map(|(i, _)| i).chain(todo), e);
                break;
            }
            let mut st = lock(&self.state);
            for (i, loc) in placed {
                match st.pending.entry(frames[i].0) {
                    // Another put of the same id won the race: its record holds the
                    // same bytes.
                    std::collections::hash_map::Entry::Occupied(_) => st.dead.push(loc),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(loc);
                    }
                }
            }
        }
        out
    }

    fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.sync_lock);
        let mut st = lock(&self.state);
        if let Some(loc) = st.pending.remove(id) {
            st.dead.push(loc);
            return Ok(());
        }
        if st.deleting.contains_key(id) {
            return Ok(());
        }
        drop(st);
        let Some(bytes) = self
            .kv
            .get(&index::loc_key(id))
            .map_err(|e| self.kv_err(e))?
        else {
            return Ok(());
        };
        let loc = Loc::decode(&bytes).ok_or_else(|| StoreError::Corrupt {
            id: *id,
            reason: "its index entry is malformed".into(),
        })?;
        lock(&self.state).deleting.insert(*id, loc);
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.sync_lock);
        self.sync_locked()
    }

    /// [`ChunkStore::sync`], with `sync_lock` held by the caller.
    fn sync_locked(&self) -> Result<(), StoreError> {
        let (pending, deleting, dead, files, created) = {
            let mut st = lock(&self.state);
            if st.pending.is_empty()
                && st.deleting.is_empty()
                && st.dead.is_empty()
                && st.unsynced.is_empty()
            {
                return Ok(());
            }
            (
                st.pending.iter().map(|(i, l)| (*i, *l)).collect::<Vec<_>>(),
                st.deleting
                    .iter()
                    .map(|(i, l)| (*i, *l))
                    .collect::<Vec<_>>(),
                std::mem::take(&mut st.dead),
                std::mem::take(&mut st.unsynced),
                std::mem::take(&mut st.created),
            )
        };
        let restore = |st: &mut State| {
            st.unsynced
                .extend(files.iter().map(|(s, f)| (*s, f.clone())));
            st.created |= created;
            st.dead.extend(&dead);
        };
        // The index no longer names these records once persisted: their bytes go.
        let freed = free_ranges(
            dead.iter()
                .chain(deleting.iter().map(|(_, l)| l))
                .map(|l| (l.seg, l.offset, l.end())),
        );
        if let Err(e) = self.persist(&pending, &deleting, &freed, &files, created) {
            restore(&mut lock(&self.state));
            return Err(e);
        }
        let mut st = lock(&self.state);
        for (id, loc) in &pending {
            if st.pending.get(id) == Some(loc) {
                st.pending.remove(id);
            }
        }
        for (id, _) in &deleting {
            st.deleting.remove(id);
        }
        drop(st);
        self.punch_all(&freed);
        Ok(())
    }

    /// Punches `freed` (ranges noted in the index by `persist`), then forgets them.
    pub(super) fn punch_all(&self, freed: &[(u32, u64, u64)]) {
        if freed.is_empty() {
            return;
        }
        failpoint::hit("pack-punch");
        let mut done = Batch::default();
        for &(seg, start, end) in freed {
            self.punch(seg, start, end - start);
            done.remove(index::free_key(seg, start).to_vec());
            if let Err(e) = self.apply_if_full(&mut done) {
                warn_once(&e);
            }
        }
        // Not flushed: forgotten or not, punching again at the next open is harmless.
        if let Err(e) = self.kv.apply(done) {
            warn_once(&self.kv_err(e));
        }
    }

    /// Applies `batch` once it holds [`BATCH_OPS`] operations, leaving it empty for the
    /// next ones (a collection's million deletions in one batch held 7 GB).
    pub(super) fn apply_if_full(&self, batch: &mut Batch) -> Result<(), StoreError> {
        if batch.len() < BATCH_OPS {
            return Ok(());
        }
        self.kv
            .apply(std::mem::take(batch))
            .map_err(|e| self.kv_err(e))
    }

    /// Data first, then the index that names it (the module's first invariant).
    fn persist(
        &self,
        pending: &[(ChunkId, Loc)],
        deleting: &[(ChunkId, Loc)],
        freed: &[(u32, u64, u64)],
        files: &HashMap<u32, Arc<File>>,
        created: bool,
    ) -> Result<(), StoreError> {
        for (seg, file) in files {
            platform::sync_data(file)
                .map_err(|e| StoreError::io("sync", self.segment_path(*seg), e))?;
        }
        if created {
            platform::sync_dir(&self.segments)
                .map_err(|e| StoreError::io("sync", &self.segments, e))?;
        }
        let (mut stats, mut totals) = {
            let st = lock(&self.state);
            (st.stats.clone(), st.totals)
        };
        for (_, loc) in deleting {
            let s = stats.entry(loc.seg).or_default();
            s.live_bytes = s.live_bytes.saturating_sub(loc.record_len());
            s.live_records = s.live_records.saturating_sub(1);
            totals.0 = totals.0.saturating_sub(1);
            totals.1 = totals.1.saturating_sub(loc.record_len());
        }
        for (_, loc) in pending {
            stats.entry(loc.seg).or_default().add(loc);
            totals.0 += 1;
            totals.1 += loc.record_len();
        }
        // First batch: the marker and every segment's synced length, so that no
        // location applied in a later batch is ever past its segment's cut. The ranges
        // to free come after the locations that named them are gone: a crash between
        // two batches leaves at worst bytes unfreed until compaction, never a location
        // whose bytes the next open punches.
        let mut batch = Batch::default();
        batch.insert(UPDATING, Vec::new());
        for (seg, s) in &stats {
            batch.insert(index::seg_key(*seg), s.encode().to_vec());
        }
        for (id, _) in deleting {
            batch.remove(index::loc_key(id).to_vec());
            self.apply_if_full(&mut batch)?;
        }
        for (id, loc) in pending {
            batch.insert(index::loc_key(id).to_vec(), loc.encode().to_vec());
            self.apply_if_full(&mut batch)?;
        }
        for &(seg, start, end) in freed {
            batch.insert(
                index::free_key(seg, start).to_vec(),
                (end - start).to_le_bytes().to_vec(),
            );
            self.apply_if_full(&mut batch)?;
        }
        batch.insert(
            index::TOTALS,
            index::encode_totals(totals.0, totals.1).to_vec(),
        );
        batch.remove(UPDATING);
        self.kv.apply(batch).map_err(|e| self.kv_err(e))?;
        self.kv.flush_durable().map_err(|e| self.kv_err(e))?;
        let mut st = lock(&self.state);
        st.stats = stats;
        st.totals = totals;
        Ok(())
    }

    /// Frees a record nothing names any more. A file system that cannot punch holes
    /// leaves the bytes for compaction; a failure only costs space.
    fn punch(&self, seg: u32, offset: u64, len: u64) {
        let punched = self.reader(seg).and_then(|f| {
            platform::punch_hole(&f, offset, len)
                .map_err(|e| StoreError::io("punch", self.segment_path(seg), e))
        });
        if let Err(e) = punched {
            warn_once(&e);
        }
    }

    fn usage(&self) -> Usage {
        let st = lock(&self.state);
        let pending: u64 = st.pending.values().map(Loc::record_len).sum();
        let deleting: u64 = st.deleting.values().map(Loc::record_len).sum();
        Usage {
            chunks: (st.totals.0 + st.pending.len() as u64)
                .saturating_sub(st.deleting.len() as u64),
            bytes: (st.totals.1 + pending).saturating_sub(deleting),
        }
    }
}

/// Byte ranges (segment, start, end) merged where neighbours touch: a file system frees
/// only whole blocks, and records are often smaller than one.
fn free_ranges(freed: impl Iterator<Item = (u32, u64, u64)>) -> Vec<(u32, u64, u64)> {
    let mut freed: Vec<(u32, u64, u64)> = freed.collect();
    freed.sort_unstable();
    let mut ranges: Vec<(u32, u64, u64)> = Vec::new();
    for (seg, start, end) in freed {
        match ranges.last_mut() {
            Some(last) if last.0 == seg && last.2 == start => last.2 = end,
            _ => ranges.push((seg, start, end)),
        }
    }
    ranges
}

/// Answers every one of `failed` with `e`: the first with `e` itself, the others
/// with copies.
fn fail_all(
    out: &mut [Result<(), StoreError>],
    failed: impl Iterator<Item = usize>,
    e: StoreError,
) {
    let mut failed = failed.peekable();
    let Some(first) = failed.next() else { return };
    for i in failed {
        out[i] = Err(e.copy());
    }
    out[first] = Err(e);
}

/// cas has no logging of its own: a failed punch is reported on stderr once per
/// process, since it only delays reclaiming space.
fn warn_once(e: &StoreError) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("fvfs: cannot free space in a segment ({e}); compaction will"));
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

    async fn recompress(&self, limit: u64, threads: usize) -> Result<Recompressed, StoreError> {
        // A sealed store keeps sealed frames: nothing to compress again.
        if self.seal.is_some() {
            return Ok(Recompressed::default());
        }
        // Minutes of CPU on a large store: never on an executor thread.
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || recompress::recompress(&inner, limit, threads))
            .await
        {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
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
    match tokio::task::spawn_blocking(move || f(&inner)).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests;
