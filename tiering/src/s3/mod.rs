//! The S3 tier: the source of truth, from which the whole filesystem can be rebuilt.
//!
//! Frames are appended to an open pack in memory and uploaded as one object
//! ([`pack`] format, named by its hash) when it reaches [`PACK_MAX`] or at `sync`; the
//! replicator calls `sync` when `flush_size_mb` waits or `flush_interval_secs` passed,
//! so packs are large (at least 16 MiB under steady writes) and a GiB costs a few dozen
//! PUTs. Where each chunk sits (pack, offset, length) is kept in [`Locations`] (the
//! metadata database in the daemon), so one chunk read is one ranged GET.
//!
//! # Invariants
//! - A location is recorded only after its pack was acknowledged by the server, so a
//!   recorded location never names a missing pack; `has` and `get` answer for frames
//!   still in memory, which are durable only after `sync` (the store contract).
//! - A failed upload puts its frames back into the open pack, so the next `sync`
//!   retries them: nothing `put` accepted is dropped.
//! - `sync` waits for every upload in flight before it uploads the rest, so when it
//!   returns, every frame of every `put` that returned before it is in S3.
//! - Objects are never overwritten: a pack's name is the hash of its bytes.

mod bucket;
mod compact;
pub mod log;
pub mod pack;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use fvfs_cas::{ChunkId, ChunkStore, Loaded, StoreError, Usage};
use fvfs_manifest::{PackLoc, PackLocs, Recovered};

pub use bucket::{Bucket, S3Settings};
pub use compact::Compaction;

/// An open pack is uploaded by `put` itself once it holds this much.
pub const PACK_MAX: usize = 32 << 20;
/// Pack uploads in flight at once (memory: this many packs, plus the open one).
const UPLOADS: u32 = 2;

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

/// Frames not yet in a recorded pack: the open one, and those being uploaded.
#[derive(Default)]
struct InMemory {
    open: pack::Builder,
    /// Live entries of the open pack (a delete removes the entry, not the bytes).
    live: HashMap<ChunkId, pack::Entry>,
    /// Frames of packs being uploaded, readable until their locations are recorded.
    uploading: HashMap<ChunkId, Bytes>,
}

impl InMemory {
    fn frame(&self, id: &ChunkId) -> Option<Bytes> {
        if let Some(e) = self.live.get(id) {
            return Some(Bytes::copy_from_slice(self.open.frame(e)));
        }
        self.uploading.get(id).cloned()
    }

    fn holds(&self, id: &ChunkId) -> bool {
        self.live.contains_key(id) || self.uploading.contains_key(id)
    }
}

pub struct S3Store {
    bucket: Bucket,
    locs: Arc<dyn Locations>,
    mem: Mutex<InMemory>,
    /// Bounds the uploads in flight; `sync` takes every permit, so it returns only
    /// once every upload that took frames of earlier puts has finished.
    uploads: tokio::sync::Semaphore,
}

fn pack_key(name: &[u8; 32]) -> String {
    format!("packs/{}", hex::encode(name))
}

impl S3Store {
    pub fn new(bucket: Bucket, locs: Arc<dyn Locations>) -> Self {
        Self {
            bucket,
            locs,
            mem: Mutex::new(InMemory::default()),
            uploads: tokio::sync::Semaphore::new(UPLOADS as usize),
        }
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// PUT and GET requests sent to the bucket (for metrics and benchmarks).
    pub fn requests(&self) -> (u64, u64) {
        self.bucket.requests()
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, InMemory> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uploads the open pack, if any, and records where its frames are. With `all`,
    /// first waits for every upload in flight (what `sync` needs).
    async fn seal(&self, all: bool) -> Result<(), StoreError> {
        let _permits = self
            .uploads
            .acquire_many(if all { UPLOADS } else { 1 })
            .await
            .map_err(|_| StoreError::Unavailable("S3 store closed".into()))?;
        let (builder, live) = {
            let mut mem = self.mem();
            if mem.live.is_empty() {
                mem.open = pack::Builder::default();
                return Ok(());
            }
            let builder = std::mem::take(&mut mem.open);
            let live = std::mem::take(&mut mem.live);
            for (id, e) in &live {
                let frame = Bytes::copy_from_slice(builder.frame(e));
                mem.uploading.insert(*id, frame);
            }
            (builder, live)
        };
        let (object, name, _) = builder.finish();
        let object = Bytes::from(object);
        let stored = self.bucket.put(&pack_key(&name), object.clone()).await;
        let recorded = stored.and_then(|()| {
            let locs: Vec<(ChunkId, PackLoc)> = live
                .iter()
                .map(|(id, e)| {
                    let loc = PackLoc {
                        pack: name,
                        offset: e.offset,
                        len: e.len,
                    };
                    (*id, loc)
                })
                .collect();
            self.locs.record(&locs)
        });
        let mut mem = self.mem();
        for id in live.keys() {
            mem.uploading.remove(id);
        }
        if let Err(e) = recorded {
            // Back into the open pack: the next sync retries them.
            for (id, entry) in &live {
                if !mem.live.contains_key(id) {
                    let frame = &object
                        [entry.offset as usize..(entry.offset + u64::from(entry.len)) as usize];
                    let new = mem.open.push(*id, frame);
                    mem.live.insert(*id, new);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Every chunk in the bucket's packs, read from the pack indexes alone (recovery).
    pub async fn scan_packs(&self) -> Result<Vec<Recovered>, StoreError> {
        let listed = self.bucket.list("packs/").await?;
        let mut found = Vec::new();
        for obj in listed {
            let Some(name) = compact::pack_name(&obj.key) else {
                tracing::warn!(key = obj.key, "not a pack name; skipped");
                continue;
            };
            let entries = match self.pack_index(&obj.key, obj.size).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(key = obj.key, "unreadable pack index, skipped: {e}");
                    continue;
                }
            };
            found.extend(entries.into_iter().map(|e| Recovered {
                id: e.id,
                loc: PackLoc {
                    pack: name,
                    offset: e.offset,
                    len: e.len,
                },
                raw_len: e.raw_len,
            }));
        }
        Ok(found)
    }

    async fn pack_index(&self, key: &str, size: u64) -> Result<Vec<pack::Entry>, StoreError> {
        let mut want = pack::TAIL_GUESS.min(size);
        loop {
            let tail = self
                .bucket
                .get_range(key, Some(format!("bytes=-{want}")))
                .await?
                .ok_or_else(|| StoreError::Unavailable(format!("{key} vanished")))?;
            match pack::parse_tail(&tail, size) {
                Err(pack::PackError::NeedTail(n)) if n > want => want = n,
                other => {
                    return other.map_err(|e| StoreError::Unavailable(format!("pack {key}: {e}")))
                }
            }
        }
    }
}

#[async_trait]
impl ChunkStore for S3Store {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        if self.locs.get(&id)?.is_some() {
            return Ok(());
        }
        let full = {
            let mut mem = self.mem();
            if !mem.holds(&id) {
                let e = mem.open.push(id, &frame);
                mem.live.insert(id, e);
            }
            mem.open.len() >= PACK_MAX
        };
        if full {
            self.seal(false).await?;
        }
        Ok(())
    }

    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        if let Some(frame) = self.mem().frame(id) {
            return fvfs_cas::verify(id, frame);
        }
        let loc = self.locs.get(id)?.ok_or(StoreError::NotFound(*id))?;
        let range = format!(
            "bytes={}-{}",
            loc.offset,
            loc.offset + u64::from(loc.len).max(1) - 1
        );
        let frame = self
            .bucket
            .get_range(&pack_key(&loc.pack), Some(range))
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                id: *id,
                reason: format!("its pack {} is missing from S3", hex::encode(loc.pack)),
            })?;
        fvfs_cas::verify(id, frame)
    }

    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        ids.iter()
            .map(|id| Ok(self.mem().holds(id) || self.locs.get(id)?.is_some()))
            .collect()
    }

    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        self.mem().live.remove(id);
        self.locs.forget(id)
    }

    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>> {
        let mut ids: Vec<ChunkId> = {
            let mem = self.mem();
            mem.live
                .keys()
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
            u.bytes += u64::from(loc.len);
        }
        Ok(u)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.seal(true).await
    }
}
