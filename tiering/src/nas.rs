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

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use fvfs_cas::{
    ChunkId, ChunkStore, Compacted, Loaded, PackOptions, PackStore, StoreError, StoreFault, Usage,
};

pub struct NasStore {
    root: PathBuf,
    opts: PackOptions,
    /// Opened on first use once the share is there; reopened after it came back.
    open: Mutex<Option<PackStore>>,
}

impl NasStore {
    /// Creates the store at `root` (an existing, mounted, empty or already-initialised
    /// directory). Only for the first configuration of the tier.
    pub fn init(root: &Path) -> Result<(), StoreError> {
        if !root.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "{} does not exist: is the NAS mounted?",
                root.display()
            )));
        }
        PackStore::open(root, PackOptions::default()).map(drop)
    }

    /// The NAS store at `root`; nothing is touched until it is used.
    pub fn new(root: impl Into<PathBuf>, opts: PackOptions) -> Self {
        Self {
            root: root.into(),
            opts,
            open: Mutex::new(None),
        }
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
            *open = Some(PackStore::open(&self.root, self.opts)?);
        }
        Ok(open.clone().expect("just opened"))
    }
}

#[async_trait]
impl ChunkStore for NasStore {
    async fn put(&self, id: ChunkId, frame: Bytes) -> Result<(), StoreError> {
        self.store()?.put(id, frame).await
    }

    async fn get(&self, id: &ChunkId) -> Result<Loaded, StoreError> {
        self.store()?.get(id).await
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

    async fn check_store(&self, repair: bool) -> Result<Vec<StoreFault>, StoreError> {
        self.store()?.check_store(repair).await
    }

    async fn compact(&self) -> Result<Compacted, StoreError> {
        self.store()?.compact().await
    }
}

/// Gets the NAS tier at `root` ready for `repo`: creates the store there the first
/// time the tier is configured, and never again (see the module's invariant). Returns
/// why the tier is unavailable now, if it is; replication retries until it is back.
pub async fn prepare(
    repo: &fvfs_manifest::Repo,
    root: &Path,
) -> Result<Option<String>, fvfs_manifest::ManifestError> {
    use fvfs_manifest::meta::TIER_NAS;
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
    match NasStore::init(root) {
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
    use fvfs_cas::ChunkStoreExt;

    #[tokio::test]
    async fn passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        NasStore::init(dir.path()).unwrap();
        fvfs_cas::conformance::run(&NasStore::new(dir.path(), PackOptions::default())).await;
    }

    #[tokio::test]
    async fn a_vanished_mount_is_unavailable_and_never_written_to() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&share).unwrap();
        NasStore::init(&share).unwrap();
        // "Mount" the share, store a chunk, then "unmount": an empty directory remains.
        std::fs::rename(&share, &mountpoint).unwrap();
        let nas = NasStore::new(&mountpoint, PackOptions::default());
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
            NasStore::init(&dir.path().join("nope")),
            Err(StoreError::Unavailable(_))
        ));
    }
}
