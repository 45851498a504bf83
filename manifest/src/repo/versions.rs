//! Versions and snapshots: reading HEAD and the log, naming versions, and the HEAD
//! lock through which every new version is made.
//!
//! # Invariants
//! - **One writer of HEAD.** A version is made only through [`HeadLock`], whose
//!   holder builds on the HEAD it reads; snapshots and rollbacks add versions.
//! - A version, its chunk records and HEAD are applied in one atomic batch, after
//!   the chunks they name were synced (the repository's first invariant).

use fvfs_cas::ChunkId;

use super::{now, Pending, Repo};
use crate::error::{ManifestError, Result};
use crate::kv::Batch;
use crate::meta::{self, Version, VersionKind};

impl Repo {
    pub fn head(&self) -> Result<Option<Version>> {
        // HEAD and its version are two reads: a commit can move HEAD on between them
        // and a collection drop the version it named (an automatic snapshot commits,
        // then prunes; `status` failed so in CI). Then HEAD is read again; a HEAD that
        // stays on a missing version is a damaged store, and reported.
        loop {
            let Some(n) = self.head_number()? else {
                return Ok(None);
            };
            match self.version(n) {
                Err(ManifestError::UnknownVersion(_)) if self.head_number()? != Some(n) => {}
                read => return read.map(Some),
            }
        }
    }

    /// HEAD's version number alone (one read, nothing decoded): what a reader that
    /// remembers HEAD's tree checks to know it is still current.
    pub fn head_number(&self) -> Result<Option<u64>> {
        let Some(n) = self.kv.get(meta::HEAD)? else {
            return Ok(None);
        };
        let n = n
            .as_slice()
            .try_into()
            .map_err(|_| ManifestError::BadRecord {
                key: "head".into(),
                reason: "not a version number".into(),
            })?;
        Ok(Some(u64::from_be_bytes(n)))
    }

    pub fn version(&self, n: u64) -> Result<Version> {
        self.record(&meta::version_key(n))?
            .ok_or_else(|| ManifestError::UnknownVersion(n.to_string()))
    }

    /// How many versions exist (garbage collection drops some), without decoding them.
    pub fn version_count(&self) -> Result<u64> {
        let mut n = 0;
        for item in self.kv.scan_prefix(&[meta::VERSION_PREFIX], false) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Every version, newest first.
    pub fn log(&self) -> impl Iterator<Item = Result<Version>> + '_ {
        self.kv.scan_prefix(&[meta::VERSION_PREFIX], true).map(|r| {
            let (_, v) = r?;
            meta::decode(&v).map_err(|e| ManifestError::BadRecord {
                key: "version".into(),
                reason: e.to_string(),
            })
        })
    }

    /// Snapshot names and their versions, sorted by name.
    pub fn snapshots(&self) -> Result<Vec<(String, u64)>> {
        self.kv
            .scan_prefix(&[meta::SNAPSHOT_PREFIX], false)
            .map(|r| {
                let (k, v) = r?;
                let n = v
                    .as_slice()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| ManifestError::BadRecord {
                        key: "snapshot".into(),
                        reason: "not a version number".into(),
                    })?;
                Ok((String::from_utf8_lossy(&k[1..]).into_owned(), n))
            })
            .collect()
    }

    /// Finds a version by number, `HEAD`, `HEAD~N` or snapshot name.
    pub fn resolve(&self, spec: &str) -> Result<Version> {
        let unknown = || ManifestError::UnknownVersion(spec.to_owned());
        if let Some(rest) = spec.strip_prefix("HEAD") {
            let back: u64 = match rest.strip_prefix('~') {
                None if rest.is_empty() => 0,
                Some(n) => n.parse().map_err(|_| unknown())?,
                None => return Err(unknown()),
            };
            let mut v = self.head()?.ok_or(ManifestError::Empty)?;
            for _ in 0..back {
                v = self.version(v.parent.ok_or_else(unknown)?)?;
            }
            return Ok(v);
        }
        if let Ok(n) = spec.trim_start_matches('v').parse::<u64>() {
            return self.version(n).map_err(|_| unknown());
        }
        let n = self
            .kv
            .get(&meta::key(meta::SNAPSHOT_PREFIX, spec.as_bytes()))?
            .ok_or_else(unknown)?;
        self.version(u64::from_be_bytes(
            n.as_slice().try_into().map_err(|_| unknown())?,
        ))
    }

    /// Takes the HEAD lock: the only way to make versions.
    pub async fn lock(&self) -> HeadLock<'_> {
        HeadLock {
            repo: self,
            _guard: self.head.lock().await,
        }
    }
}

/// Exclusive right to move HEAD. Reads through it see the HEAD that commits build on.
pub struct HeadLock<'a> {
    repo: &'a Repo,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl HeadLock<'_> {
    pub fn head(&self) -> Result<Option<Version>> {
        self.repo.head()
    }

    /// Makes `root` the new HEAD, recording everything in `pending` with it.
    pub async fn commit(
        &self,
        pending: &Pending,
        root: ChunkId,
        logical_bytes: u64,
        kind: VersionKind,
        message: &str,
    ) -> Result<Version> {
        self.commit_with(pending, root, logical_bytes, kind, message, |_, _| {})
            .await
    }

    /// [`HeadLock::commit`], adding to the same atomic batch what `extra` writes.
    async fn commit_with(
        &self,
        pending: &Pending,
        root: ChunkId,
        logical_bytes: u64,
        kind: VersionKind,
        message: &str,
        extra: impl FnOnce(&Version, &mut Batch),
    ) -> Result<Version> {
        let parent = self.head()?;
        // Records first (they name only synced chunks), then the version in one batch.
        self.repo.persist(pending).await?;
        let mut batch = Batch::default();
        let version = Version {
            number: parent.as_ref().map_or(1, |p| p.number + 1),
            root,
            parent: parent.map(|p| p.number),
            time: now(),
            kind,
            message: message.chars().take(1000).collect(),
            logical_bytes,
        };
        batch.insert(meta::version_key(version.number), meta::encode(&version));
        batch.insert(meta::HEAD, version.number.to_be_bytes().to_vec());
        extra(&version, &mut batch);
        self.repo.kv.apply(batch)?;
        self.repo.kv.flush_durable()?;
        Ok(version)
    }

    /// Binds `name` to a new snapshot version of HEAD's tree. O(1) in the tree's size.
    /// Names starting with `auto-` are kept for automatic snapshots.
    pub async fn snapshot_create(&self, name: &str) -> Result<Version> {
        validate_snapshot_name(name)?;
        if name.starts_with(crate::autosnap::PREFIX) {
            return Err(ManifestError::BadSnapshotName(name.to_owned()));
        }
        self.bind_snapshot(name).await
    }

    /// Takes the automatic snapshot of `time` (see [`crate::autosnap`]).
    pub async fn snapshot_auto(&self, time: i64) -> Result<Version> {
        self.bind_snapshot(&crate::autosnap::name(time)).await
    }

    async fn bind_snapshot(&self, name: &str) -> Result<Version> {
        let key = meta::key(meta::SNAPSHOT_PREFIX, name.as_bytes());
        if self.repo.kv.contains(&key)? {
            return Err(ManifestError::SnapshotExists(name.to_owned()));
        }
        let head = self.head()?.ok_or(ManifestError::Empty)?;
        let message = format!("snapshot {name}");
        self.commit_with(
            &Pending::default(),
            head.root,
            head.logical_bytes,
            VersionKind::Snapshot,
            &message,
            |v, batch| batch.insert(key, v.number.to_be_bytes().to_vec()),
        )
        .await
    }

    /// Removes the name `name`; the version it named stays in the log.
    pub fn snapshot_delete(&self, name: &str) -> Result<u64> {
        let key = meta::key(meta::SNAPSHOT_PREFIX, name.as_bytes());
        let n = self
            .repo
            .kv
            .get(&key)?
            .ok_or_else(|| ManifestError::UnknownVersion(name.to_owned()))?;
        let mut batch = Batch::default();
        batch.remove(key);
        self.repo.kv.apply(batch)?;
        self.repo.kv.flush_durable()?;
        Ok(n.as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .unwrap_or_default())
    }

    /// Makes `target`'s tree HEAD again, as a new version: O(1), and itself undoable.
    pub async fn rollback(&self, target: &Version) -> Result<Version> {
        let message = format!("rollback to version {}", target.number);
        self.commit(
            &Pending::default(),
            target.root,
            target.logical_bytes,
            VersionKind::Rollback,
            &message,
        )
        .await
    }
}

fn validate_snapshot_name(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with(['.', '-'])
        && !name.starts_with("HEAD")
        && !name
            .trim_start_matches('v')
            .bytes()
            .all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ManifestError::BadSnapshotName(name.to_owned()))
    }
}
