//! The S3 tier: the source of truth, from which the whole filesystem can be rebuilt.
//!
//! Frames are appended to an open pack in memory and uploaded as one object
//! ([`pack`] format, named by its hash) when it reaches [`PACK_MAX`] (in the
//! background, up to [`UPLOADS`] at once, while the writer fills the next) or at
//! `sync`; the replicator calls `sync` when `flush_size_mb` waits or
//! `flush_interval_secs` passed, so packs are large (at least 16 MiB under steady
//! writes) and a GiB costs a few dozen PUTs. Tree nodes (`put_node`) fill packs of
//! their own: a walk of the trees (a recovery, a folder's restore, a cold listing)
//! reads those and not the files written around them (the stable Rust sysroot's
//! recovery fetched 153 MiB to read its 1,503 nodes when they shared packs with file
//! content). Where each chunk sits (pack, offset,
//! length) is kept in [`Locations`] (the metadata database in the daemon). Reads
//! (`fetch`) take packs in aligned spans of a few MiB, the spans a read needs in one
//! ranged GET per pack, several in flight, and keep the last spans read for the reads
//! that follow.
//!
//! # Invariants
//! - A location is recorded only after its pack was acknowledged by the server, so a
//!   recorded location never names a missing pack; `has` and `get` answer for frames
//!   still in memory, which are durable only after `sync` (the store contract).
//! - A failed upload puts its frames back into the open pack, so the next `sync`
//!   retries them: nothing `put` accepted is dropped. A background upload's failure is
//!   reported by the next `put`.
//! - `sync` waits for every upload in flight before it uploads the rest, so when it
//!   returns, every frame of every `put` that returned before it is in S3.
//! - Objects are never overwritten: a pack's name is the hash of its bytes.
//! - An upload interrupted (daemon killed, S3 gone) resumes at pack granularity: the
//!   chunks of every pack whose location was recorded are not sent again.
//! - Uploads share one rate limit (`[upload] max_mbps`, see [`pace`]); packs take the
//!   tier's storage class.

mod bucket;
mod compact;
mod fetch;
mod follow;
pub mod keys;
pub mod log;
mod open;
mod pace;
pub mod pack;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::records::{PackLoc, PackLocs, Recovered};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use fvfs_cas::{ChunkId, ChunkStore, Loaded, StoreError, Usage};

pub use bucket::{Bucket, Requests, S3Settings};
pub use compact::{IsNode, Packs};
pub use follow::FOLLOW_BATCH;

/// An open pack is uploaded by `put` itself once it holds this much.
pub const PACK_MAX: usize = 32 << 20;
/// Pack uploads in flight at once (memory: this many packs, plus the open one).
const UPLOADS: u32 = 3;

/// Where the S3 tier's chunks are: the daemon keeps this in its metadata database.
pub trait Locations: Send + Sync {
    fn get(&self, id: &ChunkId) -> Result<Option<PackLoc>, StoreError>;
    /// Records durably.
    fn record(&self, locs: &[(ChunkId, PackLoc)]) -> Result<(), StoreError>;
    fn forget(&self, id: &ChunkId) -> Result<(), StoreError>;
    fn all(&self) -> Result<Vec<(ChunkId, PackLoc)>, StoreError>;
}

fn meta_err(e: fvfs_manifest::ManifestError) -> StoreError {
    StoreError::Unavailable(format!("metadata database: {e}"))
}

impl Locations for PackLocs {
    fn get(&self, id: &ChunkId) -> Result<Option<PackLoc>, StoreError> {
        PackLocs::get(self, id).map_err(meta_err)
    }
    fn record(&self, locs: &[(ChunkId, PackLoc)]) -> Result<(), StoreError> {
        PackLocs::record(self, locs).map_err(meta_err)
    }
    fn forget(&self, id: &ChunkId) -> Result<(), StoreError> {
        PackLocs::forget(self, id).map_err(meta_err)
    }
    fn all(&self) -> Result<Vec<(ChunkId, PackLoc)>, StoreError> {
        self.iter().collect::<Result<_, _>>().map_err(meta_err)
    }
}

/// Locations in memory, for a store used on its own (tests, tools).
#[derive(Default)]
pub struct MemoryLocations(Mutex<HashMap<ChunkId, PackLoc>>);

impl Locations for MemoryLocations {
    fn get(&self, id: &ChunkId) -> Result<Option<PackLoc>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied())
    }
    fn record(&self, locs: &[(ChunkId, PackLoc)]) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(locs.iter().copied());
        Ok(())
    }
    fn forget(&self, id: &ChunkId) -> Result<(), StoreError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        Ok(())
    }
    fn all(&self) -> Result<Vec<(ChunkId, PackLoc)>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(i, l)| (*i, *l))
            .collect())
    }
}

/// What a pack holds: file content, or tree nodes (kept apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holds {
    Data,
    Nodes,
}

impl Holds {
    const ALL: [Holds; 2] = [Holds::Data, Holds::Nodes];

    /// Where chunk `id` goes, as `is_node` tells.
    fn of(id: &ChunkId, is_node: &IsNode<'_>) -> Holds {
        match is_node(id) {
            true => Holds::Nodes,
            false => Holds::Data,
        }
    }
}

/// A pack being filled.
#[derive(Default)]
struct Open {
    pack: pack::Builder,
    /// Its live entries (a delete removes the entry, not the bytes).
    live: HashMap<ChunkId, pack::Entry>,
}

/// What is stored for a chunk: its frame, or the block holding it and its index in it.
type Stored = (Bytes, Option<u32>);

/// Frames not yet in a recorded pack: the open ones, and those being uploaded.
#[derive(Default)]
struct InMemory {
    /// The open pack of each [`Holds`], by its index.
    open: [Open; 2],
    /// Frames of packs being uploaded, readable until their locations are recorded.
    uploading: HashMap<ChunkId, Stored>,
}

impl InMemory {
    fn frame(&self, id: &ChunkId) -> Option<Stored> {
        for open in &self.open {
            if let Some(e) = open.live.get(id) {
                return Some((Bytes::copy_from_slice(open.pack.frame(e)), e.member));
            }
        }
        self.uploading.get(id).cloned()
    }

    fn holds(&self, id: &ChunkId) -> bool {
        self.open.iter().any(|o| o.live.contains_key(id)) || self.uploading.contains_key(id)
    }

    /// Adds a sealed frame to the open pack of `holds`, unless the chunk is in memory
    /// already (a location naming it elsewhere does not stop it: compaction moves
    /// frames so); returns whether that pack is full.
    fn push(&mut self, holds: Holds, id: ChunkId, stored: &[u8], raw_len: u32) -> bool {
        if !self.holds(&id) {
            let open = &mut self.open[holds as usize];
            let e = open.pack.push(id, stored, raw_len);
            open.live.insert(id, e);
        }
        self.open[holds as usize].pack.len() >= PACK_MAX
    }

    /// Adds a sealed block to the open pack of `holds`, with an entry for each of
    /// `members` (id, index in the block, raw length) not in memory already (none
    /// left: the block is not added); returns whether that pack is full.
    fn push_block(&mut self, holds: Holds, stored: &[u8], members: &[(ChunkId, u32, u32)]) -> bool {
        let members: Vec<_> = members
            .iter()
            .filter(|(id, ..)| !self.holds(id))
            .copied()
            .collect();
        let open = &mut self.open[holds as usize];
        if !members.is_empty() {
            for e in open.pack.push_block(stored, &members) {
                open.live.insert(e.id, e);
            }
        }
        open.pack.len() >= PACK_MAX
    }

    /// Puts back the `live` entries of a pack that failed to upload (`object`), each
    /// block once with its live members.
    fn push_back(&mut self, holds: Holds, object: &[u8], live: &HashMap<ChunkId, pack::Entry>) {
        let mut blocks: HashMap<u64, Vec<(ChunkId, u32, u32)>> = HashMap::new();
        for (id, e) in live {
            let stored = &object[e.offset as usize..(e.offset + u64::from(e.len)) as usize];
            match e.member {
                None => {
                    self.push(holds, *id, stored, e.raw_len);
                }
                Some(index) => blocks
                    .entry(e.offset)
                    .or_default()
                    .push((*id, index, e.raw_len)),
            }
        }
        for (offset, members) in blocks {
            let len = live[&members[0].0].len;
            let stored = &object[offset as usize..(offset + u64::from(len)) as usize];
            self.push_block(holds, stored, &members);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One pack upload: what it needs, so it can run in a task of its own.
struct Upload {
    bucket: Bucket,
    locs: Arc<dyn Locations>,
    mem: Arc<Mutex<InMemory>>,
    holds: Holds,
}

impl Upload {
    /// Takes the open pack of its kind if it holds at least `min` bytes, PUTs it and
    /// records where its frames are; on failure puts them back into the open pack, so
    /// the next sync retries them.
    async fn run(self, min: usize) -> Result<(), StoreError> {
        let taken = {
            let mut mem = lock(&self.mem);
            let open = &mut mem.open[self.holds as usize];
            if open.live.is_empty() {
                open.pack = pack::Builder::default();
                return Ok(());
            }
            if open.pack.len() < min {
                // Another upload took the pack that was full.
                return Ok(());
            }
            let Open { pack, live } = std::mem::take(open);
            let (object, name, entries) = pack.finish(self.bucket.sealer());
            let object = Bytes::from(object);
            for (id, e) in &live {
                let frame = object.slice(e.offset as usize..(e.offset + u64::from(e.len)) as usize);
                mem.uploading.insert(*id, (frame, e.member));
            }
            (object, name, live, entries)
        };
        let (object, name, live, entries) = taken;
        let stored = self.bucket.put_pack(&pack_key(&name), object.clone()).await;
        if stored.is_ok() {
            // Stored, not yet named by any location (tests kill the process here).
            fvfs_cas::failpoint::hit("s3-pack-stored");
        }
        let recorded = stored.and_then(|()| {
            let locs: Vec<(ChunkId, PackLoc)> = pack::locations(name, &entries)
                .into_iter()
                .filter(|(id, loc, _)| live.get(id).is_some_and(|e| e.offset == loc.offset))
                .map(|(id, loc, _)| (id, loc))
                .collect();
            self.locs.record(&locs)
        });
        let mut mem = lock(&self.mem);
        for id in live.keys() {
            mem.uploading.remove(id);
        }
        if let Err(e) = recorded {
            // Back into the open pack: the next sync retries them.
            mem.push_back(self.holds, &object, &live);
            return Err(e);
        }
        // What an interrupted upload resumes from: these chunks are not sent again.
        tracing::info!(
            pack = hex::encode(name),
            holds = ?self.holds,
            chunks = live.len(),
            bytes = object.len(),
            "pack stored, its chunks' locations recorded"
        );
        Ok(())
    }
}

pub struct S3Store {
    bucket: Bucket,
    locs: Arc<dyn Locations>,
    mem: Arc<Mutex<InMemory>>,
    /// Bounds the uploads in flight; `sync` takes every permit, so it returns only
    /// once every upload that took frames of earlier puts has finished.
    uploads: Arc<tokio::sync::Semaphore>,
    /// Why the last upload started by a `put` failed (its frames are back in the open
    /// pack); the next `put` reports it, so the replicator backs off.
    failed: Arc<Mutex<Option<String>>>,
    /// Pack spans kept for the reads that follow, and GETs in flight.
    spans: Arc<Mutex<fetch::Spans>>,
    /// Opens frames and members of blocks (with the blocks decoded last).
    opener: open::Opener,
    /// Held by whoever collects from the bucket (see `Packs::collecting`).
    collecting: Arc<tokio::sync::Mutex<()>>,
}

fn pack_key(name: &[u8; 32]) -> String {
    format!("packs/{}", hex::encode(name))
}

impl S3Store {
    pub fn new(bucket: Bucket, locs: Arc<dyn Locations>) -> Self {
        Self {
            opener: open::Opener::new(bucket.clone()),
            collecting: Arc::default(),
            bucket,
            locs,
            mem: Arc::default(),
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS as usize)),
            failed: Arc::default(),
            spans: Arc::default(),
        }
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Requests sent to the bucket (for metrics, summaries and benchmarks).
    pub fn requests(&self) -> Requests {
        self.bucket.requests()
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, InMemory> {
        lock(&self.mem)
    }

    fn upload(&self, holds: Holds) -> Upload {
        Upload {
            bucket: self.bucket.clone(),
            locs: self.locs.clone(),
            mem: self.mem.clone(),
            holds,
        }
    }

    /// Uploads the open packs, if any, and records where their frames are, once every
    /// upload in flight has finished (what `sync` needs).
    async fn seal_all(&self) -> Result<(), StoreError> {
        let _permits = self
            .uploads
            .acquire_many(UPLOADS)
            .await
            .map_err(|_| StoreError::Unavailable("S3 store closed".into()))?;
        // Whatever a background upload failed to store is back in the open pack.
        lock(&self.failed).take();
        for holds in Holds::ALL {
            self.upload(holds).run(0).await?;
        }
        Ok(())
    }

    /// Uploads the full open pack of `holds` in the background once an upload slot is
    /// free, so the writer goes on filling the next pack meanwhile.
    async fn seal(&self, holds: Holds) -> Result<(), StoreError> {
        let closed = |_| StoreError::Unavailable("S3 store closed".into());
        let upload = self.upload(holds);
        let permit = self.uploads.clone().acquire_owned().await.map_err(closed)?;
        let failed = self.failed.clone();
        tokio::spawn(async move {
            if let Err(e) = upload.run(PACK_MAX).await {
                tracing::warn!("pack upload failed, its frames wait for the next sync: {e}");
                *lock(&failed) = Some(e.to_string());
            }
            drop(permit);
        });
        Ok(())
    }

    /// [`Self::seal`] if a push found the open pack of `holds` `full`.
    async fn seal_if(&self, full: bool, holds: Holds) -> Result<(), StoreError> {
        match full {
            true => self.seal(holds).await,
            false => Ok(()),
        }
    }

    /// Adds a sealed frame to the open pack of `holds` (see `InMemory::push`), sealing
    /// the pack if that filled it.
    async fn push_frame(
        &self,
        holds: Holds,
        id: ChunkId,
        stored: &[u8],
        raw_len: u32,
    ) -> Result<(), StoreError> {
        let full = self.mem().push(holds, id, stored, raw_len);
        self.seal_if(full, holds).await
    }

    /// `put` into the open pack of `holds`.
    async fn store(&self, holds: Holds, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        if let Some(e) = lock(&self.failed).take() {
            return Err(StoreError::Unavailable(e));
        }
        if self.locs.get(&id)?.is_some() {
            return Ok(());
        }
        let raw_len = fvfs_cas::frame::raw_len(&frame).unwrap_or(0) as u32;
        let stored = self.bucket.seal_frame(&id, &frame);
        self.push_frame(holds, id, &stored, raw_len).await
    }

    /// Every chunk in the bucket's packs, read from the pack indexes alone (recovery),
    /// [`fetch::IN_FLIGHT`] packs at a time: `found` is given each pack's chunks as
    /// they come (a bucket of millions of chunks is not held here), `done` each pack's
    /// size.
    pub async fn scan_packs(
        &self,
        done: impl Fn(u64) + Sync,
        mut found: impl FnMut(Vec<Recovered>),
    ) -> Result<(), StoreError> {
        let listed = self.bucket.list("packs/").await?;
        let done = &done;
        let indexes = stream::iter(listed)
            .filter_map(|obj| async move {
                let name = compact::pack_name(&obj.key);
                if name.is_none() {
                    tracing::warn!(key = obj.key, "not a pack name; skipped");
                }
                name.map(|n| (n, obj))
            })
            .map(|(name, obj)| async move {
                let entries = self.pack_index(&obj.key, obj.size).await;
                done(obj.size);
                (name, obj.key, entries)
            })
            .buffer_unordered(fetch::IN_FLIGHT * 2);
        let mut indexes = std::pin::pin!(indexes);
        while let Some((name, key, entries)) = indexes.next().await {
            let entries = match entries? {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(key, "unreadable pack index, skipped: {e}");
                    continue;
                }
            };
            found(
                pack::locations(name, &entries)
                    .into_iter()
                    .map(|(id, loc, raw_len)| Recovered { id, loc, raw_len })
                    .collect(),
            );
        }
        Ok(())
    }

    /// The index of pack `key` of `size` bytes; the inner error says why the pack
    /// itself is unusable (damaged, vanished), the outer one that S3 did not answer.
    async fn pack_index(
        &self,
        key: &str,
        size: u64,
    ) -> Result<Result<Vec<pack::Entry>, String>, StoreError> {
        let mut want = pack::TAIL_GUESS.min(size);
        loop {
            let Some(tail) = self
                .bucket
                .get_range(key, Some(format!("bytes=-{want}")))
                .await?
            else {
                return Ok(Err(format!("{key} vanished")));
            };
            match pack::parse_tail(&tail, size, self.bucket.sealer()) {
                Err(pack::PackError::NeedTail(n)) if n > want => want = n,
                other => return Ok(other.map_err(|e| format!("pack {key}: {e}"))),
            }
        }
    }
}

#[async_trait]
impl ChunkStore for S3Store {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.store(Holds::Data, id, frame).await
    }

    async fn put_node(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.store(Holds::Nodes, id, frame).await
    }

    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        match self.fetch_many(vec![*id], true).next().await {
            Some((_, answer)) => answer,
            None => Err(StoreError::NotFound(*id)),
        }
    }

    fn get_many(&self, ids: Vec<ChunkId>) -> fvfs_cas::ChunkStream<'_> {
        self.fetch_many(ids, true)
    }

    fn get_many_passing(&self, ids: Vec<ChunkId>) -> fvfs_cas::ChunkStream<'_> {
        self.fetch_many(ids, false)
    }

    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        ids.iter()
            .map(|id| Ok(self.mem().holds(id) || self.locs.get(id)?.is_some()))
            .collect()
    }

    /// Chunks of packs already stored: their locations are recorded durably once the
    /// server acknowledged the pack.
    async fn durable(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        ids.iter()
            .map(|id| Ok(!self.mem().holds(id) && self.locs.get(id)?.is_some()))
            .collect()
    }

    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        for open in &mut self.mem().open {
            open.live.remove(id);
        }
        self.locs.forget(id)
    }

    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>> {
        let mut ids: Vec<ChunkId> = {
            let mem = self.mem();
            mem.open
                .iter()
                .flat_map(|o| o.live.keys())
                .chain(mem.uploading.keys())
                .copied()
                .collect()
        };
        match self.locs.all() {
            Ok(all) => {
                ids.extend(all.into_iter().map(|(id, _)| id));
                ids.sort_unstable();
                ids.dedup();
                stream::iter(ids.into_iter().map(Ok)).boxed()
            }
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        let mut u = Usage::default();
        for (_, loc) in self.locs.all()? {
            u.chunks += 1;
            u.bytes += u64::from(loc.live_len());
        }
        Ok(u)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.seal_all().await
    }
}
