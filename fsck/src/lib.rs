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
use fvfs_manifest::{path, EntryKind, ManifestError, Node, Repo, Version};

/// What is wrong with one chunk, and where it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub id: ChunkId,
    pub what: String,
    /// The first path found that uses the chunk.
    pub path: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub versions: usize,
    pub nodes: u64,
    pub data_chunks: u64,
    pub data_bytes_read: u64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
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
    // (path of the node, node id, is it a directory)
    let mut stack: Vec<(Vec<u8>, ChunkId, bool)> = versions
        .iter()
        .map(|v| (b"/".to_vec(), v.root, true))
        .collect();
    while let Some((at, id, is_dir)) = stack.pop() {
        if !seen_nodes.insert(id) {
            continue;
        }
        report.nodes += 1;
        let mut problem = |id: ChunkId, what: String| {
            report.problems.push(Problem {
                id,
                what,
                path: path::show(&at),
            });
        };
        if repo.chunk_record(&id)?.is_none() {
            problem(id, "tree node has no chunk record".into());
        }
        let node = match repo.node(&id).await {
            Ok(n) => n,
            Err(e) => {
                problem(id, e.to_string());
                continue;
            }
        };
        match node {
            Node::Dir(d) if is_dir => {
                for e in d.entries {
                    if let Some(child) = e.id {
                        stack.push((path::join(&at, &e.name), child, e.kind == EntryKind::Dir));
                    }
                }
            }
            Node::File(_) if !is_dir => {
                let chunks = match repo.file_chunks(&id).await {
                    Ok(c) => c,
                    Err(e) => {
                        problem(id, e.to_string());
                        continue;
                    }
                };
                for c in chunks {
                    if seen_data.insert(c.id) {
                        report.data_chunks += 1;
                        if let Some(what) =
                            check_data(repo, &c.id, read_data, &mut report.data_bytes_read).await?
                        {
                            report.problems.push(Problem {
                                id: c.id,
                                what,
                                path: path::show(&at),
                            });
                        }
                    }
                }
            }
            _ => problem(id, "node kind does not match its directory entry".into()),
        }
    }
    Ok(report)
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
