//! The store opened once for everything fvfsd does with it: the tiers (local, NAS,
//! S3) built from what the config names, the repository over them, the data
//! directory's lock held until [`Engine::close`], and the maintenance jobs' record.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use fvfs_cas::{ChunkStore, PackOptions, PackStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::Repo;
use fvfs_tiering::seal::NasSeal;
use fvfs_tiering::{NasStore, Running, S3Settings, S3Store, TierId, TierSet, TieredStore};

use crate::dir::{create_dir, lock, DAEMON_INFO, MAINTENANCE};

/// The NAS tier as configured (`[tiers.nas]`).
pub struct NasTier<'a> {
    pub path: &'a Path,
    pub packs: PackOptions,
    /// Sealed under the S3 tier's master key.
    pub encrypt: bool,
}

pub struct Engine {
    dir: PathBuf,
    repo: Arc<Repo>,
    /// The local tier, and the NAS and S3 tiers when configured (reads fall back to
    /// them, in that order).
    tiers: Arc<TierSet>,
    /// The maintenance jobs' list and record ([`MAINTENANCE`]), one per open store.
    maintenance: Arc<crate::Maintenance>,
    /// Its loops and jobs, stopped by whoever runs loops on them (the daemon).
    workers: Arc<crate::Workers>,
    /// Where fsck and gc sort what outgrows their memory budget.
    spill: fvfs_fsck::Spill,
    /// The data directory's lock, declared last so that it is dropped last: the
    /// databases are closed before another process can take the store.
    _lock: File,
}

impl Engine {
    /// Opens the store in `dir`, with the local tier's chunks in `chunks` and, when
    /// given, the NAS tier at `nas` and the S3 tier `s3` (reads fall back to them, in
    /// that order), each run as `running` says. Nothing is sent to S3 here once the S3
    /// tier's key is in the data directory, so a daemon starts while S3 is down; the
    /// first start with an encrypted S3 tier sets the key up there ([`crate::keys`]). A
    /// NAS store that is there but not as configured (clear, or sealed under another
    /// key) is refused.
    pub async fn open(
        dir: PathBuf,
        chunks: (&Path, PackOptions),
        nas: Option<NasTier<'_>>,
        s3: Option<(&S3Settings, crate::keys::Crypt)>,
        running: impl Fn(TierId) -> Running,
    ) -> Result<Self> {
        create_dir(&dir)?;
        let lock = lock(&dir)?;
        let local: Arc<dyn ChunkStore> = Arc::new(PackStore::open(chunks.0, chunks.1)?);
        let kv = Kv::open(&dir.join("meta"))?;
        let (s3, key) = match s3 {
            Some((settings, crypt)) => {
                let (bucket, key) = crate::keys::bucket(&dir, settings, &crypt).await?;
                let locs = Arc::new(fvfs_tiering::PackLocs::new(&kv));
                (Some(Arc::new(S3Store::new(bucket, locs))), key)
            }
            None => (None, None),
        };
        let nas = match nas {
            Some(t) => {
                let seal = match (t.encrypt, &key) {
                    (false, _) => None,
                    (true, Some(key)) => {
                        Some(Arc::new(NasSeal::new(key)) as Arc<dyn fvfs_cas::pack::Sealing>)
                    }
                    (true, None) => anyhow::bail!(
                        "[tiers.nas] encrypt = true needs the S3 tier's master key, and the S3 tier is not encrypted"
                    ),
                };
                let store = NasStore::new(t.path, t.packs, seal);
                // A store made otherwise than configured stops every command; a share
                // that answers badly only makes the tier unavailable for now.
                match store.check() {
                    Err(e @ fvfs_cas::StoreError::Unavailable(_)) => return Err(e.into()),
                    Err(e) => tracing::warn!("NAS tier: {e}"),
                    Ok(()) => {}
                }
                Some(Arc::new(store))
            }
            None => None,
        };
        let tiers = Arc::new(TierSet::new(
            (local, running(TierId::Local)),
            nas.map(|n| (n, running(TierId::Nas))),
            s3.map(|s| (s, running(TierId::S3))),
        ));
        // Every chunk recorded is queued for the colder tiers, whichever command records it.
        let index = Arc::new(fvfs_tiering::TierIndex::new(&kv, tiers.replicas()));
        let repo = Arc::new(Repo::new(tiers.store(), kv, index));
        // A store with an encrypted tier cuts chunks its own way (recorded at its
        // first open with the key), so that sealed frames' sizes reveal nothing.
        repo.adopt_cut_seed(key.as_ref().map(fvfs_tiering::seal::MasterKey::cut_seed))?;
        Ok(Self {
            maintenance: Arc::new(crate::Maintenance::recorded_in(dir.join(MAINTENANCE))),
            workers: Arc::default(),
            spill: fvfs_fsck::Spill::in_dir(&dir),
            dir,
            repo,
            tiers,
            _lock: lock,
        })
    }

    /// The tiers: their stores and how each is run.
    pub fn tier_set(&self) -> &Arc<TierSet> {
        &self.tiers
    }

    pub fn s3(&self) -> Option<Arc<S3Store>> {
        self.tiers.s3().cloned()
    }

    /// The store's maintenance jobs (fsck, gc): the one way each starts.
    pub fn jobs(&self) -> crate::jobs::Jobs {
        crate::jobs::Jobs {
            repo: self.repo.clone(),
            tiers: self.fsck_tiers().into(),
            reads: self.tiers(),
            maintenance: self.maintenance.clone(),
            workers: self.workers.clone(),
            spill: Arc::new(self.spill.clone()),
        }
    }

    /// Where fsck and gc put the sorted sets that outgrow their memory budget: the
    /// data directory, on the store's own disk.
    pub fn spill(&self) -> &fvfs_fsck::Spill {
        &self.spill
    }

    /// The same store, with fsck's and gc's sorts taking `bytes` of memory each
    /// before they go to disk (the configuration's `[gc] sort_memory_mb`).
    pub fn with_sort_memory(mut self, bytes: usize) -> Self {
        self.spill = self.spill.with_budget(bytes);
        self
    }

    /// The store's workers: the daemon's loops run on them, and every job.
    pub fn workers(&self) -> &Arc<crate::Workers> {
        &self.workers
    }

    /// Every tier's own store, warmest first, for fsck and gc.
    pub fn fsck_tiers(&self) -> Vec<fvfs_fsck::Tier> {
        self.tiers
            .all()
            .iter()
            .map(|t| fvfs_fsck::Tier {
                name: t.id.name(),
                bit: t.id.bit(),
                store: t.store.clone(),
                s3: self
                    .tiers
                    .s3()
                    .filter(|_| t.id == TierId::S3)
                    .map(|s| s.clone() as Arc<dyn fvfs_tiering::s3::Packs>),
            })
            .collect()
    }

    /// The read-through store, when there are colder tiers (for its counters).
    pub fn tiers(&self) -> Option<Arc<TieredStore>> {
        self.tiers.reads().cloned()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of migrate's stat caches.
    pub fn stat_caches(&self) -> PathBuf {
        self.dir.join("statcache")
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    pub fn repo_arc(&self) -> Arc<Repo> {
        self.repo.clone()
    }

    /// This store's stable identity, announced over mDNS (made at first use).
    pub fn node_id(&self) -> Result<String> {
        let path = self.dir.join("node-id");
        if let Ok(id) = fs::read_to_string(&path) {
            let id = id.trim();
            if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id.to_owned());
            }
        }
        let mut raw = [0u8; 16];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .context("reading /dev/urandom")?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        fvfs_cas::platform::write_durably(&path, format!("{id}\n").as_bytes(), 0o644)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(id)
    }

    /// Tells other fvfsd commands where the running daemon answers.
    pub fn write_daemon_info(&self, listen: std::net::SocketAddr) -> Result<()> {
        let path = self.dir.join(DAEMON_INFO);
        // fvfsd commands reach the daemon here: over HTTPS unless it listens on loopback
        // (or everywhere, where they reach it through loopback).
        let scheme = match fvfs_api::tls::is_local(&listen.ip().to_string()) {
            true => "http",
            false => "https",
        };
        fs::write(&path, format!("{scheme}://{listen}\n"))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn remove_daemon_info(&self) {
        let _ = fs::remove_file(self.dir.join(DAEMON_INFO));
    }
}
