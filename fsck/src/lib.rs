//! Integrity checking of an fvfs repository.
//!
//! [`check`] walks the trees of the chosen versions and verifies that every reachable
//! tree node is present, hashes to its id and decodes; that every file's chunk list
//! adds up; that every referenced chunk is present in the store and has a chunk
//! record; and, with `read_data`, that every data chunk decodes to its id. Shared
//! subtrees are checked once, so checking all versions costs about as much as
//! checking the union of their distinct nodes. Each problem names the paths it affects.

use std::collections::HashSet;

use fvfs_cas::{ChunkId, StoreError};
use fvfs_manifest::{path, EntryKind, ManifestError, Repo, Version};

/// What is wrong with one chunk, and where it is used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub id: ChunkId,
    pub what: String,
    /// The first path found that uses the chunk.
    pub path: String,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub versions: usize,
    pub nodes: u64,
    pub data_chunks: u64,
    pub data_bytes_read: u64,
    pub problems: Vec<Problem>,
    /// Every tree node reached (recovery marks them as nodes); not part of the report.
    #[serde(skip)]
    pub node_ids: Vec<ChunkId>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems, one line each, then the summary line.
    pub fn render(&self) -> String {
        let mut out: String = self
            .problems
            .iter()
            .map(|p| format!("problem: {} (chunk {}, used by {})\n", p.what, p.id, p.path))
            .collect();
        let read = if self.data_bytes_read > 0 {
            format!(
                " ({} read and verified)",
                fvfs_manifest::api::show::bytes(self.data_bytes_read)
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "checked {} versions: {} tree nodes, {} data chunks{read}; {} problems\n",
            self.versions,
            self.nodes,
            self.data_chunks,
            self.problems.len()
        ));
        out
    }
}

/// The versions fsck looks at: every one with `all`, else HEAD and the snapshots.
pub fn versions_to_check(repo: &Repo, all: bool) -> Result<Vec<Version>, ManifestError> {
    if all {
        return repo.log().collect();
    }
    let mut versions: Vec<Version> = repo.head()?.into_iter().collect();
    for (_, n) in repo.snapshots()? {
        versions.push(repo.version(n)?);
    }
    Ok(versions)
}

/// Checks the trees of `versions`; reads every data chunk back when `read_data`.
/// Fails only when the check itself cannot run (the metadata database is unreadable).
pub async fn check(
    repo: &Repo,
    versions: &[Version],
    read_data: bool,
) -> Result<Report, ManifestError> {
    let mut report = Report {
        versions: versions.len(),
        ..Report::default()
    };
    let mut seen_nodes = HashSet::new();
    let mut seen_data = HashSet::new();
    let mut dirs: Vec<(Vec<u8>, ChunkId)> =
        versions.iter().map(|v| (b"/".to_vec(), v.root)).collect();
    while let Some((at, id)) = dirs.pop() {
        if !seen_nodes.insert(id) {
            continue;
        }
        report.nodes += 1;
        if let Some(what) = unrecorded(repo, &id)? {
            report.problems.push(Problem {
                id,
                what,
                path: path::show(&at),
            });
        }
        let dir = match repo.dir(&id).await {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(Problem {
                    id,
                    what: e.to_string(),
                    path: path::show(&at),
                });
                continue;
            }
        };
        for e in dir.entries {
            let child = path::join(&at, &e.name);
            match (e.kind, e.id) {
                (EntryKind::Dir, Some(id)) => dirs.push((child, id)),
                (EntryKind::File, node) => {
                    if let Some(node) = node {
                        if !seen_nodes.insert(node) {
                            continue;
                        }
                        report.nodes += 1;
                        if let Some(what) = unrecorded(repo, &node)? {
                            report.problems.push(Problem {
                                id: node,
                                what,
                                path: path::show(&child),
                            });
                        }
                    }
                    let chunks = match repo.file_chunks(&e).await {
                        Ok(c) => c,
                        Err(err) => {
                            let id = node.unwrap_or(id);
                            report.problems.push(Problem {
                                id,
                                what: err.to_string(),
                                path: path::show(&child),
                            });
                            continue;
                        }
                    };
                    for c in chunks {
                        if seen_data.insert(c.id) {
                            report.data_chunks += 1;
                            if let Some(what) =
                                check_data(repo, &c.id, read_data, &mut report.data_bytes_read)
                                    .await?
                            {
                                report.problems.push(Problem {
                                    id: c.id,
                                    what,
                                    path: path::show(&child),
                                });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    report.node_ids = seen_nodes.into_iter().collect();
    Ok(report)
}

/// Every stored tree node has a chunk record (its tiers, sizes, access times).
fn unrecorded(repo: &Repo, id: &ChunkId) -> Result<Option<String>, ManifestError> {
    Ok(repo
        .chunk_record(id)?
        .is_none()
        .then(|| "tree node has no chunk record".into()))
}

async fn check_data(
    repo: &Repo,
    id: &ChunkId,
    read_data: bool,
    bytes: &mut u64,
) -> Result<Option<String>, ManifestError> {
    if repo.chunk_record(id)?.is_none() {
        return Ok(Some("data chunk has no chunk record".into()));
    }
    if read_data {
        return Ok(match repo.store().get(id).await {
            Ok(loaded) => {
                *bytes += loaded.data.len() as u64;
                None
            }
            Err(e) => Some(e.to_string()),
        });
    }
    Ok(match repo.store().has(&[*id]).await {
        Ok(present) if present == [true] => None,
        Ok(_) => Some(StoreError::NotFound(*id).to_string()),
        Err(e) => Some(e.to_string()),
    })
}
