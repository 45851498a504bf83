//! Reads through the tiers: local first, then each colder tier in order.
//!
//! A chunk the local tier lacks, or holds corrupt, is read from the first colder tier
//! that has it whole (every store's get verifies the hash), then promoted: written back
//! to the local tier (durable at its next sync), replacing a corrupt copy, which is
//! reported and counted. Writes and everything else go to the local tier. Reads and
//! promotions are remembered for eviction ([`TieredStore::record_reads`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use fvfs_cas::{
    ChunkId, ChunkStore, ChunkStream, FrameStream, Loaded, Packed, PackedStream, StoreCheck,
    StoreError, StoreFault, Usage,
};
use fvfs_manifest::{ManifestError, Repo};

use crate::records::Eviction;

/// Chunks read from a colder tier written to the local tier in one call, at most.
const PROMOTE_AT_ONCE: usize = 64;

pub struct TieredStore {
    local: Arc<dyn ChunkStore>,
    /// Colder tiers, warmest first, each with its name for reports.
    colder: Vec<(&'static str, Arc<dyn ChunkStore>)>,
    /// Corrupt local copies found and replaced from a colder tier.
    repaired: AtomicU64,
    /// Chunks read from a colder tier and promoted.
    promoted: AtomicU64,
    /// Reads per chunk since the last [`TieredStore::take_reads`], and the chunks
    /// promoted since then.
    reads: Mutex<(HashMap<ChunkId, u32>, Vec<ChunkId>)>,
}

impl TieredStore {
    pub fn new(
        local: Arc<dyn ChunkStore>,
        colder: Vec<(&'static str, Arc<dyn ChunkStore>)>,
    ) -> Self {
        Self {
            local,
            colder,
            repaired: AtomicU64::new(0),
            promoted: AtomicU64::new(0),
            reads: Mutex::new(Default::default()),
        }
    }

    /// The local tier.
    pub fn local(&self) -> &Arc<dyn ChunkStore> {
        &self.local
    }

    /// Reads per chunk, and chunks promoted, since the last call.
    fn take_reads(&self) -> (Vec<(ChunkId, u32)>, Vec<ChunkId>) {
        let (reads, promoted) =
            std::mem::take(&mut *self.reads.lock().unwrap_or_else(|p| p.into_inner()));
        (reads.into_iter().collect(), promoted)
    }

    fn note_read(&self, id: &ChunkId, promoted: bool) {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        *reads.0.entry(*id).or_default() += 1;
        if promoted {
            reads.1.push(*id);
        }
    }

    /// Writes copies found on tier `name` back to the local tier in one call, each
    /// replacing a corrupt local copy (with what the local tier answered for it).
    async fn promote(&self, name: &str, found: &[(ChunkId, StoreError, Loaded)]) {
        let mut frames = Vec::with_capacity(found.len());
        for (id, first, loaded) in found {
            if !matches!(first, StoreError::NotFound(_)) {
                tracing::warn!(%id, tier = name, "local read failed ({first}); served from the {name} copy");
            }
            if matches!(first, StoreError::Corrupt { .. }) && self.local.delete(id).await.is_ok() {
                self.repaired.fetch_add(1, Ordering::Relaxed);
            }
            frames.push((*id, loaded.frame.clone()));
        }
        let written = self.local.put_many(frames).await;
        for ((id, ..), answer) in found.iter().zip(written) {
            match answer {
                Ok(()) => {
                    self.promoted.fetch_add(1, Ordering::Relaxed);
                    self.note_read(id, true);
                }
                Err(e) => tracing::warn!(%id, "cannot promote to the local tier: {e}"),
            }
        }
    }

    /// `pending` (each with the local tier's answer) asked of colder tier `i` and
    /// those after it; what none has is answered with the local tier's error, or the
    /// coldest tier's when the local one simply lacked it.
    /// With `keep` false, chunks the local tier lacked are only passed on.
    fn colder_many(
        &self,
        i: usize,
        pending: Vec<(ChunkId, StoreError)>,
        keep: bool,
    ) -> ChunkStream<'_> {
        let Some((name, tier)) = self.colder.get(i).filter(|_| !pending.is_empty()) else {
            return stream::iter(pending.into_iter().map(|(id, e)| (id, Err(e)))).boxed();
        };
        let mut first: HashMap<ChunkId, StoreError> = pending.into_iter().collect();
        let ids = first.keys().copied().collect();
        let last = i + 1 == self.colder.len();
        let read = match keep {
            true => tier.get_many(ids),
            false => tier.get_many_passing(ids),
        };
        let found = read
            .map(move |(id, r)| {
                let local_error = first.remove(&id).unwrap_or(StoreError::NotFound(id));
                (id, r, local_error)
            })
            // What has come so far is promoted together (one write to the local tier).
            .ready_chunks(PROMOTE_AT_ONCE)
            .then(move |answers| async move {
                let mut promote = Vec::new();
                let mut out = Vec::with_capacity(answers.len());
                for (id, r, local_error) in answers {
                    match r {
                        Ok(loaded) => {
                            out.push(Ok((id, loaded.clone())));
                            // A corrupt local copy is replaced even by a passing read.
                            if keep || !matches!(local_error, StoreError::NotFound(_)) {
                                promote.push((id, local_error, loaded));
                            }
                        }
                        Err(e) => out.push(Err(match local_error {
                            StoreError::NotFound(_) if last => (id, e),
                            local_error => (id, local_error),
                        })),
                    }
                }
                if !promote.is_empty() {
                    self.promote(name, &promote).await;
                }
                stream::iter(out)
            })
            .flatten();
        then_the_rest(found.boxed(), move |failed| {
            self.colder_many(i + 1, failed, keep)
        })
    }

    /// What the local tier holds, read in its own order; everything else (and local
    /// failures) asked of each colder tier in turn, in bulk; with `keep`, reads are
    /// counted and what colder tiers give is promoted.
    fn read_many(&self, ids: Vec<ChunkId>, keep: bool) -> ChunkStream<'_> {
        // What the local tier lacks comes back NotFound, and goes on like any failure.
        let found = self.local.get_many(ids).map(move |(id, r)| match r {
            Ok(loaded) => {
                if keep {
                    self.note_read(&id, false);
                }
                Ok((id, loaded))
            }
            Err(e) => Err((id, e)),
        });
        then_the_rest(found.boxed(), move |failed| {
            self.colder_many(0, failed, keep)
        })
    }

    /// Records in `repo` the reads and promotions since the last call: promoted chunks
    /// get their local bit once the local tier synced them (the daemon does this every
    /// eviction round; a command that read through the tiers, before it exits).
    pub async fn record_reads(&self, repo: &Repo) -> Result<(), ManifestError> {
        let (reads, promoted) = self.take_reads();
        if !promoted.is_empty() {
            self.local.sync().await?;
        }
        if reads.is_empty() && promoted.is_empty() {
            return Ok(());
        }
        repo.note_reads(&reads, &promoted).await
    }

    /// Corrupt local copies replaced so far.
    pub fn repaired(&self) -> u64 {
        self.repaired.load(Ordering::Relaxed)
    }

    /// Chunks promoted from a colder tier so far.
    pub fn promoted(&self) -> u64 {
        self.promoted.load(Ordering::Relaxed)
    }
}

/// Answers for many chunks, each with its id.
type Answers<'a, T> = BoxStream<'a, (ChunkId, Result<T, StoreError>)>;

/// The chunks `answers` found, passed on as they come; once it ends, what it did not
/// find (each with its error) handed to `next`, the next place to look.
fn then_the_rest<'a, T: Send + 'a>(
    answers: BoxStream<'a, Result<(ChunkId, T), (ChunkId, StoreError)>>,
    next: impl FnOnce(Vec<(ChunkId, StoreError)>) -> Answers<'a, T> + Send + 'a,
) -> Answers<'a, T> {
    let failed = Arc::new(Mutex::new(Vec::new()));
    let keep = failed.clone();
    let found = answers.filter_map(move |a| {
        std::future::ready(match a {
            Ok((id, loaded)) => Some((id, Ok(loaded))),
            Err(miss) => {
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(miss);
                None
            }
        })
    });
    let rest = stream::once(async move {
        next(std::mem::take(
            &mut *failed.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    })
    .flatten();
    found.chain(rest).boxed()
}

#[async_trait]
impl ChunkStore for TieredStore {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.local.put(id, frame).await
    }

    async fn put_many(&self, frames: Vec<(ChunkId, Bytes)>) -> Vec<Result<(), StoreError>> {
        self.local.put_many(frames).await
    }

    /// Local first; on any local failure (missing, corrupt, a dying disk) the colder
    /// tiers in order. A copy found there is returned even if promoting it fails.
    /// What none has is answered with the local tier's error, or the coldest tier's
    /// when the local one simply lacked it (as [`Self::get_many`] does): a chunk
    /// evicted to an S3 tier that does not answer now is unavailable, not missing.
    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        let first = match self.local.get(id).await {
            Ok(loaded) => {
                self.note_read(id, false);
                return Ok(loaded);
            }
            Err(e) => e,
        };
        let mut coldest = None;
        for (name, tier) in &self.colder {
            match tier.get(id).await {
                Ok(loaded) => {
                    let found = [(*id, first, loaded)];
                    self.promote(name, &found).await;
                    let [(_, _, loaded)] = found;
                    return Ok(loaded);
                }
                Err(e) => coldest = Some(e),
            }
        }
        Err(match (first, coldest) {
            (StoreError::NotFound(_), Some(e)) => e,
            (first, _) => first,
        })
    }

    /// [`Self::read_many`], counting reads and promoting.
    fn get_many(&self, ids: Vec<ChunkId>) -> ChunkStream<'_> {
        self.read_many(ids, true)
    }

    /// As [`Self::get_many`], counting nothing and promoting nothing (a corrupt local
    /// copy is still replaced).
    fn get_many_passing(&self, ids: Vec<ChunkId>) -> ChunkStream<'_> {
        self.read_many(ids, false)
    }

    /// The local tier's chunks as it keeps them (reads counted); what it lacks or
    /// fails from the colder tiers as [`Self::get_many`] reads them (promoted), as
    /// frames.
    fn get_packed(&self, ids: Vec<ChunkId>) -> PackedStream<'_> {
        let found = self.local.get_packed(ids).map(move |(id, r)| match r {
            Ok(packed) => {
                self.note_read(&id, false);
                Ok((id, packed))
            }
            Err(e) => Err((id, e)),
        });
        then_the_rest(found.boxed(), move |failed| {
            self.colder_many(0, failed, true)
                .map(|(id, r)| (id, r.map(|l| Packed::Frame(l.frame))))
                .boxed()
        })
    }

    /// The local tier's frames checked as it checks them; what it lacks or fails
    /// from the colder tiers, verified, as [`Self::get_many_passing`] reads them.
    fn copy_frames(&self, ids: Vec<ChunkId>) -> FrameStream<'_> {
        let found = self.local.copy_frames(ids).map(|(id, r)| match r {
            Ok(frame) => Ok((id, frame)),
            Err(e) => Err((id, e)),
        });
        then_the_rest(found.boxed(), move |failed| {
            self.colder_many(0, failed, false)
                .map(|(id, r)| (id, r.map(|l| l.frame)))
                .boxed()
        })
    }

    /// Present on any tier: a chunk evicted from the local tier is still readable.
    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        let mut found = self.local.has(ids).await?;
        for (_, tier) in &self.colder {
            let missing: Vec<ChunkId> = ids
                .iter()
                .zip(&found)
                .filter(|(_, f)| !**f)
                .map(|(id, _)| *id)
                .collect();
            if missing.is_empty() {
                break;
            }
            let Ok(there) = tier.has(&missing).await else {
                continue;
            };
            let mut there = there.into_iter();
            for f in found.iter_mut().filter(|f| !**f) {
                *f = there.next().unwrap_or(false);
            }
        }
        Ok(found)
    }

    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        self.local.delete(id).await
    }

    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>> {
        self.local.list()
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        self.local.usage().await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.local.sync().await
    }

    fn read_order(&self, id: &ChunkId) -> u64 {
        self.local.read_order(id)
    }

    async fn check_store(&self, check: StoreCheck) -> Result<Vec<StoreFault>, StoreError> {
        // Reads through this store fall back to colder tiers and replace a damaged
        // local copy: a caller reading here does not see the local records whole.
        let check = StoreCheck {
            read_by_caller: None,
            ..check
        };
        self.local.check_store(check).await
    }

    async fn compact(&self) -> Result<fvfs_cas::Compacted, StoreError> {
        self.local.compact().await
    }

    async fn recompress(
        &self,
        limit: u64,
        threads: usize,
        newest: Option<&fvfs_cas::IdFilter>,
    ) -> Result<fvfs_cas::Recompressed, StoreError> {
        self.local.recompress(limit, threads, newest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fvfs_cas::{frame, ChunkStoreExt, MemoryStore};

    #[tokio::test]
    async fn passes_conformance() {
        fvfs_cas::conformance::run(&TieredStore::new(Arc::new(MemoryStore::new()), vec![])).await;
    }

    #[tokio::test]
    async fn missing_and_corrupt_local_copies_come_from_the_colder_tier() {
        let (local, nas) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let t = TieredStore::new(
            local.clone(),
            vec![("nas", nas.clone() as Arc<dyn ChunkStore>)],
        );
        let only_nas = nas.put_data(b"only on the nas").await.unwrap();
        assert_eq!(
            &t.get_data(&only_nas).await.unwrap()[..],
            b"only on the nas"
        );
        assert!(local.has(&[only_nas]).await.unwrap()[0], "promoted");

        let data = b"precious".repeat(100);
        let id = nas.put_data(&data).await.unwrap();
        local
            .put(id, Bytes::from(frame::encode(b"something else")))
            .await
            .unwrap();
        assert_eq!(&t.get_data(&id).await.unwrap()[..], &data[..]);
        assert_eq!((t.repaired(), t.promoted()), (1, 2));
        assert_eq!(
            &local.get_data(&id).await.unwrap()[..],
            &data[..],
            "the bad copy was replaced"
        );

        let nowhere = ChunkId::of(b"nowhere");
        assert!(matches!(
            t.get(&nowhere).await,
            Err(StoreError::NotFound(_))
        ));
    }

    /// A local tier and a NAS: `here` only local, `away` only on the NAS, `bad` whole
    /// on the NAS and corrupt locally (its content is `data`).
    struct Three {
        t: TieredStore,
        local: Arc<MemoryStore>,
        here: ChunkId,
        away: ChunkId,
        bad: ChunkId,
        data: Vec<u8>,
    }

    async fn three_chunks() -> Three {
        let (local, nas) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let t = TieredStore::new(
            local.clone(),
            vec![("nas", nas.clone() as Arc<dyn ChunkStore>)],
        );
        let here = local.put_data(b"local").await.unwrap();
        let away = nas.put_data(b"away on the nas").await.unwrap();
        let data = b"precious".repeat(10);
        let bad = nas.put_data(&data).await.unwrap();
        local
            .put(bad, Bytes::from(frame::encode(b"rot")))
            .await
            .unwrap();
        Three {
            t,
            local,
            here,
            away,
            bad,
            data,
        }
    }

    #[tokio::test]
    async fn get_many_reads_local_then_colder_tiers_and_promotes() {
        let Three {
            t,
            local,
            here,
            away,
            bad,
            data,
        } = three_chunks().await;
        let nowhere = ChunkId::of(b"nowhere");
        let mut got: Vec<_> = t.get_many(vec![here, away, bad, nowhere]).collect().await;
        got.sort_by_key(|(id, _)| *id);
        let mut want = vec![here, away, bad, nowhere];
        want.sort_unstable();
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), want);
        for (id, r) in got {
            if id == nowhere {
                assert!(matches!(r, Err(StoreError::NotFound(_))));
            } else {
                assert_eq!(ChunkId::of(&r.unwrap().data), id);
            }
        }
        assert_eq!((t.promoted(), t.repaired()), (2, 1));
        assert_eq!(&local.get_data(&bad).await.unwrap()[..], &data[..]);
        assert!(local.has(&[away]).await.unwrap()[0]);
    }

    #[tokio::test]
    async fn a_passing_read_promotes_and_counts_nothing_but_still_replaces_a_corrupt_copy() {
        let x = three_chunks().await;
        let (t, local, bad) = (&x.t, &x.local, x.bad);
        let got: Vec<_> = t
            .get_many_passing(vec![x.here, x.away, bad])
            .collect()
            .await;
        assert_eq!(got.len(), 3);
        for (id, r) in got {
            assert_eq!(ChunkId::of(&r.unwrap().data), id);
        }
        assert!(!local.has(&[x.away]).await.unwrap()[0], "not promoted");
        assert_eq!(t.repaired(), 1);
        assert_eq!(&local.get_data(&bad).await.unwrap()[..], &x.data[..]);
        let (reads, promoted) = t.take_reads();
        assert_eq!(promoted, vec![bad], "only the repair is recorded");
        assert!(
            reads.iter().all(|(id, _)| *id == bad),
            "no read counted for eviction but the repair's: {reads:?}"
        );
    }

    #[tokio::test]
    async fn frames_for_a_copy_come_from_local_then_colder_tiers_verified() {
        let x = three_chunks().await;
        let got: HashMap<ChunkId, Result<Bytes, StoreError>> =
            x.t.copy_frames(vec![x.here, x.away, x.bad]).collect().await;
        assert_eq!(got.len(), 3);
        for (id, frame) in got {
            let frame = frame.unwrap();
            assert_eq!(ChunkId::of(&frame::decode(&id, &frame).unwrap()), id);
        }
        assert!(!x.local.has(&[x.away]).await.unwrap()[0], "not promoted");
        assert_eq!(&x.local.get_data(&x.bad).await.unwrap()[..], &x.data[..]);
    }
}
