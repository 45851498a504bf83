//! The NAS tier: a pack store on a mounted share, which refuses to work while the
//! share is not mounted.
//!
//! # Invariant: never write to a bare mountpoint
//! When an SMB or NFS mount goes away, its path stays as an empty directory on the
//! local disk. A plain [`PackStore`] there would create a fresh store and quietly fill
//! the local disk with "NAS" copies. So a `NasStore` is created once, explicitly
//! ([`NasStore::init`], when the tier is first configured), and afterwards every
//! operation first checks that the store's marker is present; without it the tier is
//! [`StoreError::Unavailable`] and callers keep the work queued until it returns.
//!
//! With `[tiers.nas] encrypt = true` the store is sealed ([`crate::seal::NasSeal`],
//! under the S3 tier's master key): whoever reads the share sees neither content nor
//! chunk ids, and a store made one way is never opened the other.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use fvfs_cas::pack::Sealing;
use fvfs_cas::{
    ChunkId, ChunkStore, Compacted, IdFilter, Loaded, PackOptions, PackStore, Recompressed,
    StoreCheck, StoreError, StoreFault, Usage,
};

use crate::records::Replication;

pub struct NasStore {
    root: PathBuf,
    opts: PackOptions,
    /// Present when the tier is encrypted.
    seal: Option<Arc<dyn Sealing>>,
    /// Opened on first use once the share is there; reopened after it came back.
    open: Mutex<Option<PackStore>>,
}

impl NasStore {
    /// The NAS store at `root`, sealed by `seal` when the tier is encrypted; nothing
    /// is touched until it is used.
    pub fn new(
        root: impl Into<PathBuf>,
        opts: PackOptions,
        seal: Option<Arc<dyn Sealing>>,
    ) -> Self {
        Self {
            root: root.into(),
            opts,
            seal,
            open: Mutex::new(None),
        }
    }

    /// Creates the store at its root (an existing, mounted, empty or
    /// already-initialised directory). Only for the first configuration of the tier.
    pub fn init(&self) -> Result<(), StoreError> {
        if !self.root.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "{} does not exist: is the NAS mounted?",
                self.root.display()
            )));
        }
        let store = PackStore::open_with(&self.root, self.opts, self.seal.clone())?;
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
        Ok(())
    }

    /// Whether the store, if it is there, is made as configured (clear, or sealed
    /// under this key): a mismatch is [`StoreError::Unavailable`] naming what to do,
    /// which a daemon should stop on rather than keep retrying. Opens nothing.
    pub fn check(&self) -> Result<(), StoreError> {
        fvfs_cas::pack::check_mode(&self.root, self.seal.as_deref())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The underlying store, if the share is mounted now.
    fn store(&self) -> Result<PackStore, StoreError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // A store in the old layout opens to an error naming the command converting it.
        if !PackStore::exists_at(&self.root) && !fvfs_cas::pack::is_legacy(&self.root) {
            *open = None;
            return Err(StoreError::Unavailable(format!(
                "NAS store {} is not there (share not mounted, or never initialised)",
                self.root.display()
            )));
        }
        if open.is_none() {
            *open = Some(PackStore::open_with(
                &self.root,
                self.opts,
                self.seal.clone(),
            )?);
        }
        Ok(open.clone().expect("just opened"))
    }
}

#[async_trait]
impl ChunkStore for NasStore {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.store()?.put(id, frame).await
    }

    async fn put_many(&self, frames: Vec<(ChunkId, Bytes)>) -> Vec<Result<(), StoreError>> {
        match self.store() {
            Ok(store) => store.put_many(frames).await,
            Err(e) => frames.iter().map(|_| Err(e.copy())).collect(),
        }
    }

    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        self.store()?.get(id).await
    }

    fn get_many(&self, ids: Vec<ChunkId>) -> fvfs_cas::ChunkStream<'_> {
        match self.store() {
            Ok(store) => store.get_many_owned(ids),
            Err(e) => stream::iter(ids.into_iter().map(move |id| (id, Err(e.copy())))).boxed(),
        }
    }

    fn copy_frames(&self, ids: Vec<ChunkId>) -> fvfs_cas::FrameStream<'_> {
        match self.store() {
            Ok(store) => store.copy_frames_owned(ids),
            Err(e) => stream::iter(ids.into_iter().map(move |id| (id, Err(e.copy())))).boxed(),
        }
    }

    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        self.store()?.has(ids).await
    }

    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        self.store()?.delete(id).await
    }

    fn list(&self) -> BoxStream<'_, Result<ChunkId, StoreError>> {
        match self.store() {
            Ok(store) => store.list_owned(),
            Err(e) => stream::iter([Err(e)]).boxed(),
        }
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        self.store()?.usage().await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.store()?.sync().await
    }

    fn read_order(&self, id: &ChunkId) -> u64 {
        self.store().map_or(0, |s| s.read_order(id))
    }

    async fn check_store(&self, check: StoreCheck) -> Result<Vec<StoreFault>, StoreError> {
        self.store()?.check_store(check).await
    }

    async fn compact(&self) -> Result<Compacted, StoreError> {
        self.store()?.compact().await
    }

    async fn recompress(
        &self,
        limit: u64,
        threads: usize,
        newest: Option<&IdFilter>,
    ) -> Result<Recompressed, StoreError> {
        self.store()?.recompress(limit, threads, newest).await
    }
}

/// Gets the NAS tier `nas` ready for `repo`: creates the store there the first time
/// the tier is configured, and never again (see the module's invariant). Returns why
/// the tier is unavailable now, if it is; replication retries until it is back.
pub async fn prepare(
    repo: &fvfs_manifest::Repo,
    nas: &NasStore,
) -> Result<Option<String>, fvfs_manifest::ManifestError> {
    use fvfs_manifest::meta::TIER_NAS;
    let root = nas.root();
    if PackStore::exists_at(root) || fvfs_cas::pack::is_legacy(root) {
        if !repo.tier_initialised(TIER_NAS)? {
            repo.mark_tier_initialised(TIER_NAS).await?;
        }
        return Ok(None);
    }
    if repo.tier_initialised(TIER_NAS)? {
        return Ok(Some(format!(
            "NAS store {} is missing: is the share mounted?",
            root.display()
        )));
    }
    match nas.init() {
        Ok(()) => {
            repo.mark_tier_initialised(TIER_NAS).await?;
            Ok(None)
        }
        Err(e) => Ok(Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{MasterKey, NasSeal};
    use fvfs_cas::ChunkStoreExt;

    fn clear(root: &Path) -> NasStore {
        NasStore::new(root, PackOptions::default(), None)
    }

    fn sealed(root: &Path, key: &MasterKey) -> NasStore {
        NasStore::new(
            root,
            PackOptions::default(),
            Some(Arc::new(NasSeal::new(key))),
        )
    }

    #[tokio::test]
    async fn passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let nas = clear(dir.path());
        nas.init().unwrap();
        fvfs_cas::conformance::run(&nas).await;
    }

    #[tokio::test]
    async fn passes_conformance_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let nas = sealed(dir.path(), &MasterKey::generate());
        nas.init().unwrap();
        fvfs_cas::conformance::run(&nas).await;
    }

    /// Every byte of every file under `root`.
    fn everything(root: &Path) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in walk(root) {
            all.extend(std::fs::read(entry).unwrap());
        }
        all
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    fn holds(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// A clear share's segments are recompressed; a sealed one's frames are sealed
    /// below the pack store, which leaves them be.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_clear_share_is_recompressed() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let opts = PackOptions {
            segment_bytes: 256 << 10,
            ..PackOptions::default()
        };
        let text = |i: usize| -> Vec<u8> {
            let lines = include_str!("nas.rs").lines().cycle().skip(i * 7).take(600);
            let mut out = format!("{i}\n").into_bytes();
            lines.for_each(|l| out.extend_from_slice(format!("{l}\n").as_bytes()));
            out
        };
        let seals: [(&str, Option<Arc<dyn Sealing>>); 2] = [
            ("clear", None),
            ("sealed", Some(Arc::new(NasSeal::new(&key)))),
        ];
        for (name, seal) in seals {
            let nas = NasStore::new(dir.path().join(name), opts, seal);
            std::fs::create_dir(nas.root()).unwrap();
            nas.init().unwrap();
            let mut ids = Vec::new();
            for i in 0..40 {
                ids.push(nas.put_data(&text(i)).await.unwrap());
            }
            nas.sync().await.unwrap();
            let done = nas.recompress(u64::MAX, 2, None).await.unwrap();
            assert_eq!(done.rewritten > 0, name == "clear", "{name}: {done:?}");
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(nas.get_data(id).await.unwrap(), text(i), "{name}");
            }
        }
    }

    #[tokio::test]
    async fn a_sealed_share_shows_neither_content_nor_ids_and_lists_ids() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        // Text compresses, so the control must find it in the clear store's frames:
        // incompressible bytes are kept as they are.
        let secret: Vec<u8> = (0..40_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let id = ChunkId::of(&secret);
        for (name, nas) in [
            ("clear", clear(&dir.path().join("c"))),
            ("sealed", sealed(&dir.path().join("s"), &key)),
        ] {
            std::fs::create_dir(nas.root()).unwrap();
            nas.init().unwrap();
            assert_eq!(nas.put_data(&secret).await.unwrap(), id);
            nas.sync().await.unwrap();
            let all = everything(nas.root());
            let shows = holds(&all, &secret[1000..1064]) || holds(&all, id.as_bytes());
            assert_eq!(shows, name == "clear", "{name}");
            assert_eq!(&nas.get_data(&id).await.unwrap()[..], &secret[..], "{name}");
            let listed: Vec<ChunkId> = nas.list().map(Result::unwrap).collect().await;
            assert_eq!(listed, vec![id], "{name}");
        }
    }

    #[tokio::test]
    async fn a_store_opens_only_as_it_was_made() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let sealed_root = dir.path().join("sealed");
        let clear_root = dir.path().join("clear");
        for root in [&sealed_root, &clear_root] {
            std::fs::create_dir(root).unwrap();
        }
        sealed(&sealed_root, &key).init().unwrap();
        clear(&clear_root).init().unwrap();
        let refused = |r: Result<(), StoreError>, says: &str| match r {
            Err(StoreError::Unavailable(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{other:?}"),
        };
        refused(clear(&sealed_root).check(), "set encrypt = true");
        refused(
            sealed(&sealed_root, &MasterKey::generate()).check(),
            "another fvfs store",
        );
        refused(sealed(&clear_root, &key).check(), "fvfsd convert-store");
        sealed(&sealed_root, &key).check().unwrap();
        clear(&clear_root).check().unwrap();
    }

    #[tokio::test]
    async fn a_changed_or_moved_sealed_record_is_corrupt_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let seal = NasSeal::new(&key);
        let nas = sealed(dir.path(), &key);
        nas.init().unwrap();
        let a = nas.put_data(b"chunk A, sealed").await.unwrap();
        let b = nas.put_data(b"chunk B, sealed").await.unwrap();
        nas.sync().await.unwrap();
        // b's sealed bytes, stored under a's name (a valid record: the store's own
        // checksums pass), do not open as a.
        let inner = nas.store().unwrap();
        let (path_b, off_b) = inner.locate(&b).unwrap().unwrap();
        let (path_a, off_a) = inner.locate(&a).unwrap().unwrap();
        drop((inner, nas));
        let rec_b = std::fs::read(&path_b).unwrap();
        let hb = fvfs_cas::pack::record::decode_header(&rec_b[off_b as usize..]).unwrap();
        let sealed_b =
            &rec_b[off_b as usize + fvfs_cas::pack::record::HEADER_LEN..][..hb.frame_len as usize];
        assert!(seal.open(&b, sealed_b).is_some());
        assert!(
            seal.open(&a, sealed_b).is_none(),
            "moved to another id: refused"
        );
        // b's sealed frame in a record under a's name, with intact checksums: the store
        // reads it, the seal refuses it.
        let mut seg = std::fs::read(&path_a).unwrap();
        let name_a = fvfs_cas::pack::record::decode_header(&seg[off_a as usize..])
            .unwrap()
            .id;
        let forged = fvfs_cas::pack::record::encode(&name_a, sealed_b);
        seg[off_a as usize..][..forged.len()].copy_from_slice(&forged);
        std::fs::write(&path_a, &seg).unwrap();
        let nas = sealed(dir.path(), &key);
        nas.init().unwrap();
        let got = nas.get(&a).await;
        assert!(
            matches!(&got, Err(StoreError::Corrupt { id, reason }) if *id == a && reason.contains("authentication")),
            "{got:?}"
        );
        assert_eq!(&nas.get_data(&b).await.unwrap()[..], b"chunk B, sealed");
        // One flipped byte: the record's checksum catches it first.
        seg[off_a as usize + fvfs_cas::pack::record::HEADER_LEN + 30] ^= 1;
        std::fs::write(&path_a, &seg).unwrap();
        let got = nas.get(&a).await;
        assert!(
            matches!(&got, Err(StoreError::Corrupt { id, reason }) if *id == a && reason.contains("damaged")),
            "{got:?}"
        );
        let faults = nas.check_store(StoreCheck::new(false)).await.unwrap();
        assert!(faults.is_empty(), "headers are intact: {faults:?}");
        // A damaged header: the index check names chunk a (not its sealed name),
        // unless the caller reads a whole itself, which the store asks by id.
        seg[off_a as usize + 50] ^= 1;
        std::fs::write(&path_a, &seg).unwrap();
        let faults = nas.check_store(StoreCheck::new(false)).await.unwrap();
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!(faults[0].chunk, Some(a));
        let leaving = |id: ChunkId| StoreCheck {
            repair: false,
            read_by_caller: Some(std::sync::Arc::new(move |asked: &ChunkId| *asked == id)),
        };
        let faults = nas.check_store(leaving(b)).await.unwrap();
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert!(nas.check_store(leaving(a)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_clear_store_is_sealed_in_place_resumably() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let store = clear(dir.path());
        store.init().unwrap();
        let mut ids = Vec::new();
        // More than one batch, so a run can stop between two.
        for i in 0..5000u32 {
            ids.push(
                store
                    .put_data(format!("chunk {i} of a clear store").as_bytes())
                    .await
                    .unwrap(),
            );
        }
        store.sync().await.unwrap();
        drop(store);
        assert!(
            holds(&everything(dir.path()), b"of a clear store"),
            "control"
        );
        let segments = |root: &Path| -> Vec<PathBuf> { walk(&root.join("segments")) };
        let old = segments(dir.path());
        // Compaction off: the old segments must go whatever it would do.
        let opts = PackOptions {
            compact_below: 0.0,
            ..PackOptions::default()
        };
        let seal = NasSeal::new(&key);
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fvfs_cas::pack::seal_in_place(dir.path(), opts, &seal, |n, _| {
                assert!(n < 4096, "stopped after the first batch")
            })
        }));
        assert!(stopped.is_err());
        match sealed(dir.path(), &key).check() {
            Err(StoreError::Unavailable(m)) => {
                assert!(m.contains("run `fvfsd convert-store` again"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let done = fvfs_cas::pack::seal_in_place(dir.path(), opts, &seal, |_, _| {}).unwrap();
        assert_eq!((done.chunks, done.damaged.len()), (5000 - 4096, 0));
        let now = segments(dir.path());
        assert!(
            old.iter().all(|s| !now.contains(s)),
            "every old segment removed whole: {old:?} {now:?}"
        );
        // A second run finds nothing to do.
        let again =
            fvfs_cas::pack::seal_in_place(dir.path(), PackOptions::default(), &seal, |_, _| {})
                .unwrap();
        assert_eq!(again.chunks, 0);
        let nas = sealed(dir.path(), &key);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                nas.get_data(id).await.unwrap(),
                format!("chunk {i} of a clear store").as_bytes()
            );
        }
        let all = everything(dir.path());
        assert!(!holds(&all, b"of a clear store"));
        assert!(ids.iter().all(|id| !holds(&all, id.as_bytes())));
        let mut listed: Vec<ChunkId> = nas.list().map(Result::unwrap).collect().await;
        listed.sort();
        ids.sort();
        assert_eq!(listed, ids);
    }

    #[tokio::test]
    async fn a_vanished_mount_is_unavailable_and_never_written_to() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&share).unwrap();
        clear(&share).init().unwrap();
        // "Mount" the share, store a chunk, then "unmount": an empty directory remains.
        std::fs::rename(&share, &mountpoint).unwrap();
        let nas = clear(&mountpoint);
        let id = nas.put_data(b"photo").await.unwrap();
        nas.sync().await.unwrap();
        std::fs::rename(&mountpoint, &share).unwrap();
        std::fs::create_dir(&mountpoint).unwrap();
        assert!(matches!(
            nas.put_data(b"another").await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            nas.get(&id).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            nas.list().next().await,
            Some(Err(StoreError::Unavailable(_)))
        ));
        assert_eq!(
            std::fs::read_dir(&mountpoint).unwrap().count(),
            0,
            "nothing written to the bare mountpoint"
        );
        // The share comes back: the chunk is there again.
        std::fs::remove_dir(&mountpoint).unwrap();
        std::fs::rename(&share, &mountpoint).unwrap();
        assert_eq!(&nas.get_data(&id).await.unwrap()[..], b"photo");
    }

    #[test]
    fn init_refuses_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            clear(&dir.path().join("nope")).init(),
            Err(StoreError::Unavailable(_))
        ));
    }
}
