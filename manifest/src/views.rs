//! The API views ([`fvfs_api::views`]) of a repository, built here once so the
//! daemon's answers and the local commands of `fvfsd` say the same thing.

use fvfs_api::views::{ratio, ChangeInfo, SnapshotInfo, StatusInfo, VersionInfo};

use crate::error::Result;
use crate::meta::Version;
use crate::Repo;

impl Repo {
    pub fn version_info(&self, v: &Version) -> Result<VersionInfo> {
        let names = self.snapshots()?;
        Ok(version_info(v, &names))
    }

    /// The newest `limit` versions, newest first.
    pub fn log_info(&self, limit: usize) -> Result<Vec<VersionInfo>> {
        let names = self.snapshots()?;
        self.log()
            .take(limit)
            .map(|v| Ok(version_info(&v?, &names)))
            .collect()
    }

    pub fn snapshot_infos(&self) -> Result<Vec<SnapshotInfo>> {
        self.snapshots()?
            .into_iter()
            .map(|(name, n)| {
                let v = self.version(n)?;
                Ok(SnapshotInfo {
                    name,
                    version: n,
                    time: v.time,
                    logical_bytes: v.logical_bytes,
                })
            })
            .collect()
    }

    pub fn status_info(&self) -> Result<StatusInfo> {
        let head = self.head()?;
        let t = self.totals()?;
        let logical = head.as_ref().map_or(0, |v| v.logical_bytes);
        Ok(StatusInfo {
            versions: self.version_count()?,
            head: head.as_ref().map(|v| self.version_info(v)).transpose()?,
            snapshots: self.snapshots()?.len(),
            chunks: t.chunks,
            node_chunks: t.node_chunks,
            logical_bytes: logical,
            unique_bytes: t.raw_bytes,
            stored_bytes: t.stored_bytes,
            dedup_ratio: ratio(logical, t.raw_bytes),
            compression_ratio: ratio(t.raw_bytes, t.stored_bytes),
        })
    }

    /// Changes from version `a` to version `b` (numbers, snapshot names, HEAD~N).
    pub async fn diff_info(&self, a: &str, b: &str) -> Result<Vec<ChangeInfo>> {
        let (va, vb) = (self.resolve(a)?, self.resolve(b)?);
        Ok(crate::diff(self, va.root, vb.root)
            .await?
            .iter()
            .map(ChangeInfo::of)
            .collect())
    }
}

fn version_info(v: &Version, names: &[(String, u64)]) -> VersionInfo {
    VersionInfo {
        number: v.number,
        root: v.root.to_hex(),
        parent: v.parent,
        time: v.time,
        kind: v.kind.as_str().to_owned(),
        message: v.message.clone(),
        logical_bytes: v.logical_bytes,
        snapshots: names
            .iter()
            .filter(|(_, n)| *n == v.number)
            .map(|(s, _)| s.clone())
            .collect(),
    }
}
