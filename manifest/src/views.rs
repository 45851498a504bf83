//! The API views ([`fvfs_api::views`]) of a repository, built here once so the
//! daemon's answers and the local commands of `fvfsd` say the same thing.

use fvfs_api::views::{
    kind_name, ratio, ChangeInfo, PathChange, SnapshotInfo, StatusInfo, VersionInfo,
};

use fvfs_cas::ChunkId;

use crate::error::Result;
use crate::meta::Version;
use crate::node::{Entry, EntryKind};
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
                    automatic: crate::autosnap::time_of(&name).is_some(),
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

impl Repo {
    /// The versions in which `path` (a file, a directory: anything below it) was
    /// added, modified or removed, newest first, at most `limit`: each version's
    /// entry at `path` against the one of the version before it. Where a directory
    /// on the way to `path` is the same node as in the version before, so is the
    /// entry: most versions cost a node or two, whatever the tree's size.
    pub async fn history(&self, path: &[u8], limit: usize) -> Result<Vec<PathChange>> {
        let names = self.snapshots()?;
        let comps = crate::path::components(path)?;
        let mut out = Vec::new();
        // The newer version, its entry at `path` and the directories on the way.
        let mut newer: Option<(Version, Option<Entry>, Vec<ChunkId>)> = None;
        // Read first: the log's iterator cannot be held across the awaits.
        let versions: Vec<Version> = self.log().collect::<Result<_>>()?;
        for v in versions {
            let (here, dirs) = match &newer {
                Some((_, e, dirs)) => self.entry_along(v.root, &comps, dirs, e).await?,
                None => self.entry_along(v.root, &comps, &[], &None).await?,
            };
            if let Some((nv, ne, _)) = newer.take() {
                if let Some(c) = path_change(&nv, ne.as_ref(), here.as_ref(), &names) {
                    out.push(c);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            newer = Some((v, here, dirs));
        }
        if let Some((v, e, _)) = newer {
            out.extend(path_change(&v, e.as_ref(), None, &names));
        }
        Ok(out)
    }

    /// The entry at `comps` below `root`, and the directory nodes on the way to it
    /// (the root first); `prev` and `prev_entry` are those of another tree, reused
    /// from the first directory both trees share.
    async fn entry_along(
        &self,
        root: ChunkId,
        comps: &[&[u8]],
        prev: &[ChunkId],
        prev_entry: &Option<Entry>,
    ) -> Result<(Option<Entry>, Vec<ChunkId>)> {
        let mut dirs = vec![root];
        for (depth, name) in comps.iter().enumerate() {
            if prev.get(depth) == Some(&dirs[depth]) {
                return Ok((prev_entry.clone(), prev.to_vec()));
            }
            let Some(e) = crate::walk::entry_in(self, dirs[depth], name).await? else {
                return Ok((None, dirs));
            };
            match (depth + 1 == comps.len(), e.kind, e.id) {
                (true, ..) => return Ok((Some(e), dirs)),
                (false, EntryKind::Dir, Some(id)) => dirs.push(id),
                (false, ..) => return Ok((None, dirs)),
            }
        }
        // The root itself.
        Ok((
            Some(Entry {
                id: Some(root),
                ..Entry::dir(0o755, 0)
            }),
            dirs,
        ))
    }
}

/// How `path` changed in version `v`, from `before` (in the version before it) to
/// `after`; `None` if it did not.
fn path_change(
    v: &Version,
    after: Option<&Entry>,
    before: Option<&Entry>,
    names: &[(String, u64)],
) -> Option<PathChange> {
    let (change, shown) = match (before, after) {
        (None, None) => return None,
        (Some(b), Some(a)) if a == b => return None,
        (None, Some(a)) => ("A", a),
        (Some(b), None) => ("D", b),
        (Some(_), Some(a)) => ("M", a),
    };
    Some(PathChange {
        version: version_info(v, names),
        change: change.into(),
        kind: kind_name(shown.kind).into(),
        size: if after.is_some() { shown.size } else { 0 },
    })
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
