//! Group commit: every change to the tree that the daemon accepts goes through one
//! writer task, which applies whatever requests are waiting to HEAD together and makes
//! them one version with one store sync and one durable database flush.
//!
//! # Invariants
//! - A request is answered only after the version holding it is durable.
//! - A request's operations apply all together or not at all: if one fails (a path that
//!   is a directory, say), the batch is rebuilt without that request, which alone gets
//!   the error.
//! - Chunks uploaded on their own (`PUT /v1/chunks/{id}`, `POST /v1/chunks`) wait in
//!   `staged` and become durable and recorded at the next commit or background
//!   checkpoint (every 2 s), whichever comes first.

use std::sync::Arc;

use fvfs_api::commit::Expect;
use fvfs_manifest::{Entry, ManifestError, Origin, Pending, Repo, TreeEdit, Version, VersionKind};
use tokio::sync::{mpsc, oneshot};

/// One change to the tree.
#[derive(Debug, Clone)]
pub enum Op {
    /// Put a file or symlink entry (or a whole directory tree by id) at a path.
    Put {
        path: Vec<u8>,
        entry: Entry,
        /// What the path must hold for the put to apply.
        expect: Option<Expect>,
    },
    Remove {
        path: Vec<u8>,
        recursive: bool,
    },
    Mkdir {
        path: Vec<u8>,
        mode: u32,
        mtime_ns: i64,
        meta: Option<Box<fvfs_manifest::node::Meta>>,
    },
    /// `ctime_ns`: the status change time of what moves (see `CommitOp::Rename`).
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
        ctime_ns: Option<i64>,
    },
    Link {
        from: Vec<u8>,
        to: Vec<u8>,
        replace: bool,
        ctime_ns: Option<i64>,
    },
}

struct Request {
    ops: Vec<Op>,
    pending: Pending,
    message: String,
    reply: oneshot::Sender<Result<Version, ManifestError>>,
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

/// Most requests folded into one version.
const MAX_GROUP: usize = 512;

impl Writer {
    pub fn spawn(repo: Arc<Repo>, staged: Arc<Pending>) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(repo, staged, rx));
        Self { tx }
    }

    /// Applies `ops` (whose new chunks are in `pending`) and returns the durable version.
    pub async fn submit(
        &self,
        ops: Vec<Op>,
        pending: Pending,
        message: String,
    ) -> Result<Version, ManifestError> {
        let (reply, rx) = oneshot::channel();
        let gone = || {
            ManifestError::Store(fvfs_cas::StoreError::Unavailable(
                "the daemon is shutting down".into(),
            ))
        };
        self.tx
            .send(Request {
                ops,
                pending,
                message,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn run(repo: Arc<Repo>, staged: Arc<Pending>, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        commit_group(&repo, &staged, group).await;
    }
}

async fn commit_group(repo: &Repo, staged: &Pending, group: Vec<Request>) {
    let started = std::time::Instant::now();
    let lock = repo.lock().await;
    let all = Pending::default();
    let mut failed: Vec<Option<ManifestError>> = group.iter().map(|_| None).collect();
    let result = async {
        // Chunks uploaded on their own become durable and recorded first: this commit
        // may name them. They stay visible to other requests' checks meanwhile.
        repo.checkpoint(staged).await?;
        let head = lock.head()?;
        // Rebuild the edit without a failing request until every remaining one applies.
        let edit = 'attempt: loop {
            let mut edit = TreeEdit::open(repo, head.as_ref().map(|v| v.root)).await?;
            for (i, req) in group.iter().enumerate() {
                if failed[i].is_some() {
                    continue;
                }
                for op in &req.ops {
                    if let Err(e) = apply(repo, &mut edit, &req.pending, op).await {
                        failed[i] = Some(e);
                        continue 'attempt;
                    }
                }
            }
            break edit;
        };
        for req in &group {
            all.absorb(&req.pending);
        }
        let (root, logical) = edit.seal(repo, &all).await?;
        let messages: Vec<&str> = group
            .iter()
            .zip(&failed)
            .filter(|(_, f)| f.is_none())
            .map(|(r, _)| r.message.as_str())
            .collect();
        let message = match messages.len() {
            0 | 1 => messages.first().copied().unwrap_or("").to_owned(),
            n => format!("{} (and {} more writes)", messages[0], n - 1),
        };
        match head {
            Some(h) if h.root == root => {
                repo.checkpoint(&all).await?;
                Ok(h)
            }
            _ => {
                lock.commit(&all, root, logical, VersionKind::Write, &message)
                    .await
            }
        }
    }
    .await;
    let ops: usize = group.iter().map(|r| r.ops.len()).sum();
    let ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(v) => tracing::info!(
            requests = group.len(),
            ops,
            ms,
            version = v.number,
            "committed"
        ),
        Err(e) => tracing::warn!(requests = group.len(), ops, ms, "commit failed: {e}"),
    }
    for (req, fail) in group.into_iter().zip(failed) {
        let answer = match (fail, &result) {
            (Some(e), _) => Err(e),
            (None, Ok(v)) => Ok(v.clone()),
            (None, Err(e)) => Err(clone_error(e)),
        };
        let _ = req.reply.send(answer);
    }
}

async fn apply(
    repo: &Repo,
    edit: &mut TreeEdit,
    pending: &Pending,
    op: &Op,
) -> Result<(), ManifestError> {
    match op {
        Op::Put {
            path,
            entry,
            expect,
        } => {
            if let Some(expect) = expect {
                let found = edit.get(repo, path).await?;
                let then = match expect {
                    Expect::Unchanged { since, path } => {
                        entry_in(repo, *since, &fvfs_api::path::decode_path(path)).await?
                    }
                    _ => None,
                };
                if !expect.holds(found.as_ref(), then.as_ref()) {
                    return Err(ManifestError::Conflict(fvfs_manifest::path::show(path)));
                }
            }
            let origin = Origin::Client;
            edit.insert(repo, pending, path, entry.clone(), entry.mtime_ns, origin)
                .await
        }
        Op::Remove { path, recursive } => edit.remove(repo, path, *recursive).await.map(drop),
        Op::Mkdir {
            path,
            mode,
            mtime_ns,
            meta,
        } => edit.mkdir(repo, path, *mode, *mtime_ns, meta.clone()).await,
        Op::Rename { from, to, ctime_ns } => edit.rename(repo, from, to, *ctime_ns).await,
        Op::Link {
            from,
            to,
            replace,
            ctime_ns,
        } => edit.link(repo, from, to, *replace, *ctime_ns).await,
    }
}

/// What `path` held in version `n`; a version collected since counts as a conflict
/// (nobody can tell what it held).
async fn entry_in(repo: &Repo, n: u64, path: &[u8]) -> Result<Option<Entry>, ManifestError> {
    let show = || fvfs_manifest::path::show(path);
    let root = match repo.version(n) {
        Ok(v) => v.root,
        Err(ManifestError::UnknownVersion(_)) => return Err(ManifestError::Conflict(show())),
        Err(e) => return Err(e),
    };
    match fvfs_manifest::lookup(repo, root, path).await {
        Ok(e) => Ok(Some(e)),
        Err(ManifestError::NotFound(_) | ManifestError::NotADirectory(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The same failure for every request of a group whose commit failed.
fn clone_error(e: &ManifestError) -> ManifestError {
    match e {
        ManifestError::Store(fvfs_cas::StoreError::NoSpace { path }) => {
            ManifestError::Store(fvfs_cas::StoreError::NoSpace { path: path.clone() })
        }
        other => ManifestError::Store(fvfs_cas::StoreError::Unavailable(format!(
            "commit failed: {other}"
        ))),
    }
}
