//! Routes of the version history: versions, snapshots, rollback, diff, and commits of
//! entries whose chunks the client already uploaded.

use fvfs_api::ErrorCode;
use std::sync::Arc;

use fvfs_api::commit::CommitOp;
use fvfs_api::path::decode_path;
use fvfs_api::queries::{Between, Limit};
use fvfs_api::reports::SnapshotDeleted;
use fvfs_api::routes::call;
use fvfs_api::views::{ChangeInfo, PathChange, SnapshotInfo, VersionInfo};
use fvfs_manifest::{EntryKind, Node, Pending};
use hyper::body::Incoming;
use hyper::Request;

use super::http::ApiError;
use super::store::json_body;
use super::writer::Op;
use super::State;

/// The newest versions first (`?limit=N` of them).
pub fn log(state: &Arc<State>, Limit { limit }: Limit) -> Result<Vec<VersionInfo>, ApiError> {
    Ok(state.repo.log_info(limit.unwrap_or(usize::MAX))?)
}

/// The version `spec` names (percent-encoded: a number, a snapshot name, HEAD~N).
pub fn version(state: &Arc<State>, spec: &str) -> Result<VersionInfo, ApiError> {
    let spec = percent_encoding::percent_decode_str(spec).decode_utf8_lossy();
    let v = state.repo.resolve(&spec)?;
    Ok(state.repo.version_info(&v)?)
}

pub fn snapshots(state: &Arc<State>) -> Result<Vec<SnapshotInfo>, ApiError> {
    Ok(state.repo.snapshot_infos()?)
}

pub async fn snapshot_create(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<VersionInfo, ApiError> {
    let b = json_body::<call::SnapshotCreate>(req, 4096, "{\"name\": ...}").await?;
    let v = state.repo.lock().await.snapshot_create(&b.name).await?;
    Ok(state.repo.version_info(&v)?)
}

pub async fn snapshot_delete(state: &Arc<State>, name: &str) -> Result<SnapshotDeleted, ApiError> {
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let n = state.repo.lock().await.snapshot_delete(&name)?;
    Ok(SnapshotDeleted {
        deleted: name.into_owned(),
        version: n,
    })
}

pub async fn rollback(state: &Arc<State>, req: Request<Incoming>) -> Result<VersionInfo, ApiError> {
    let b = json_body::<call::Rollback>(req, 4096, "{\"to\": VERSION}").await?;
    let target = state.repo.resolve(&b.to)?;
    let v = state.repo.lock().await.rollback(&target).await?;
    Ok(state.repo.version_info(&v)?)
}

pub async fn diff(
    state: &Arc<State>,
    Between { a, b }: Between,
) -> Result<Vec<ChangeInfo>, ApiError> {
    Ok(state.repo.diff_info(&a, &b).await?)
}

/// The versions in which `path` changed, newest first (`?limit=N` of them).
pub async fn history(
    state: &Arc<State>,
    path: Vec<u8>,
    Limit { limit }: Limit,
) -> Result<Vec<PathChange>, ApiError> {
    let limit = limit.unwrap_or(usize::MAX);
    Ok(state.repo.history(&path, limit).await?)
}

/// Applies entries whose content the client uploaded beforehand; refuses the whole
/// commit (409, listing ids) if any chunk or node it names is not in the store. A
/// node an entry names is looked up here (a file's is read, for its size and the
/// chunks it names); the chunks an entry lists are looked up once, where the writer
/// applies it, under the lock (a lookup here as well cost a put -r of small files
/// one more index search per chunk).
pub async fn commit(state: &Arc<State>, req: Request<Incoming>) -> Result<VersionInfo, ApiError> {
    // Chunks promised to the client before now are for this commit (or an earlier).
    let promised_before = state.repo.promise_mark();
    let limit = fvfs_api::commit::MAX_COMMIT_BODY;
    let c = json_body::<call::Commit>(req, limit, "{\"ops\": [...]}").await?;
    let mut ops = Vec::with_capacity(c.ops.len());
    let (mut missing, mut named) = (Vec::new(), Vec::new());
    for op in &c.ops {
        match op.to_entry().map_err(ApiError::bad_request)? {
            Some((path, entry)) => {
                if let Some(id) = &entry.id {
                    if !state.repo.knows(&state.staged, id)? {
                        missing.push(id.to_hex());
                    }
                }
                named.extend(entry.id.iter().chain(entry.chunks.iter().map(|c| &c.id)));
                if let (EntryKind::File, Some(id), true) =
                    (entry.kind, entry.id, missing.is_empty())
                {
                    match state.repo.node(&id).await? {
                        // (The chunks of its list nodes keep their promises until
                        // those expire.)
                        Node::File(f) if f.size == entry.size => {
                            named.extend(f.chunks.iter().chain(&f.lists).map(|c| c.id))
                        }
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "{id} is not a file node of {} bytes",
                                entry.size
                            )))
                        }
                    }
                }
                ops.push(Op::Put {
                    path,
                    entry,
                    expect: op.expect().cloned(),
                });
            }
            None => ops.push(entryless_op(state, op).await?),
        }
    }
    if !missing.is_empty() {
        missing.truncate(20);
        return Err(ApiError::new(
            ErrorCode::MissingChunks,
            format!("upload these first: {}", missing.join(" ")),
        ));
    }
    if ops.is_empty() {
        return Err(ApiError::bad_request("a commit needs at least one op"));
    }
    let message = if c.message.is_empty() {
        format!("commit of {} changes", ops.len())
    } else {
        c.message
    };
    let v = state
        .writer
        .submit(ops, Pending::default(), message)
        .await?;
    state.repo.promises_kept(promised_before, named.iter());
    Ok(state.repo.version_info(&v)?)
}

/// The tree operation of a commit op that carries no entry of its own (a folder made,
/// a removal, a rename, a link, a copy of what a version holds).
async fn entryless_op(state: &State, op: &CommitOp) -> Result<Op, ApiError> {
    Ok(match op {
        CommitOp::Mkdir {
            path,
            mode,
            mtime_ns,
            meta,
        } => Op::Mkdir {
            path: decode_path(path),
            mode: *mode & 0o7777,
            mtime_ns: *mtime_ns,
            meta: meta.clone().map(Box::new),
        },
        CommitOp::Remove { path, recursive } => Op::Remove {
            path: decode_path(path),
            recursive: *recursive,
        },
        CommitOp::Rename { from, to, ctime_ns } => Op::Rename {
            from: decode_path(from),
            to: decode_path(to),
            ctime_ns: *ctime_ns,
        },
        CommitOp::Link {
            from,
            to,
            replace,
            ctime_ns,
        } => Op::Link {
            from: decode_path(from),
            to: decode_path(to),
            replace: *replace,
            ctime_ns: *ctime_ns,
        },
        CommitOp::Copy { from, to, version } => {
            let v = state.repo.resolve(version.as_deref().unwrap_or("HEAD"))?;
            let entry = fvfs_manifest::lookup(&state.repo, v.root, &decode_path(from)).await?;
            Op::Put {
                path: decode_path(to),
                entry,
                expect: None,
            }
        }
        _ => unreachable!("put-like ops have entries"),
    })
}
