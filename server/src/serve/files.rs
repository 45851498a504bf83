//! Routes by path: read, write and delete files; an entry's metadata; directory
//! listings; disk usage of a subtree.

use fvfs_api::ErrorCode;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use fvfs_api::queries::{AtVersion, FileAttrs, Removal};
use fvfs_api::reports::{Content, DiskUsage, Listing, Meta, TierBytes, Written};
use fvfs_api::views::EntryInfo;
use fvfs_cas::chunker::Incremental;
use fvfs_manifest::{
    lookup, path, walk, ChunkKind, ChunkRef, Entry, EntryKind, Pending, Repo, Version,
};
use fvfs_tiering::TierId;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

use super::http::{ApiError, Body};
use super::writer::Op;
use super::State;

/// The entry at `path` in the version a read names with `?version=` (number,
/// snapshot, HEAD~N), else HEAD.
pub(crate) async fn entry_at(
    state: &State,
    path: &[u8],
    at: &AtVersion,
) -> Result<(Version, Entry), ApiError> {
    let v = state
        .repo
        .resolve(at.version.as_deref().unwrap_or("HEAD"))?;
    let e = lookup(&state.repo, v.root, path).await?;
    Ok((v, e))
}

/// Streams a file's content (as it is in `?version=`, else HEAD), chunk by chunk, each
/// verified.
pub async fn get(
    state: &Arc<State>,
    path: Vec<u8>,
    at: &AtVersion,
) -> Result<Response<Body>, ApiError> {
    let (v, entry) = entry_at(state, &path, at).await?;
    send(state, &v, &path, entry).await
}

/// Why `entry` (at `path`) has no content to read, if it has none.
pub(crate) fn readable(entry: &Entry, path: &[u8]) -> Result<(), ApiError> {
    match entry.kind {
        EntryKind::Dir => {
            return Err(ApiError::new(
                ErrorCode::IsADirectory,
                format!("{} is a directory", path::show(path)),
            ))
        }
        EntryKind::Symlink => {
            let target = path::show(&entry.target);
            return Err(ApiError::new(
                ErrorCode::IsASymlink,
                format!("{} is a symlink to {target}", path::show(path)),
            ));
        }
        EntryKind::File => {}
        kind => {
            return Err(ApiError::new(
                ErrorCode::NotAFile,
                format!(
                    "{} is a {} (it has no content to read)",
                    path::show(path),
                    fvfs_api::views::kind_name(kind)
                ),
            ))
        }
    }
    Ok(())
}

/// `entry`, the file at `path` in version `v`, streamed chunk by chunk, each verified.
pub(crate) async fn send(
    state: &Arc<State>,
    v: &Version,
    path: &[u8],
    entry: Entry,
) -> Result<Response<Body>, ApiError> {
    readable(&entry, path)?;
    let ids = state
        .repo
        .file_chunks(&entry)
        .await?
        .iter()
        .map(|c| c.id)
        .collect();
    let mut chunks = fvfs_cas::read_ahead(state.repo.store().clone(), ids).boxed();
    // The first chunk is read before the answer starts: a file no tier can give now is
    // answered with why (503 when a tier does not answer), not cut off after a 200.
    let first = match chunks.next().await {
        Some(Err(e)) => return Err(e.into()),
        first => first,
    };
    let st = state.clone();
    let stream = futures::stream::iter(first).chain(chunks).map(move |data| {
        let data = data.map_err(|e| std::io::Error::other(e.to_string()))?;
        st.metrics
            .bytes_out
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(Frame::data(data))
    });
    Ok(Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", entry.size)
        .header("x-fvfs-version", v.number)
        .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
        .expect("valid response"))
}

fn now_ns() -> i64 {
    fvfs_manifest::node::time_ns(SystemTime::now())
}

/// Stores a streamed body as the file at `path`: chunked as it arrives, so memory
/// stays at a few chunks whatever the size. Nothing is committed unless the whole body
/// arrived; the answer comes once the new version is durable.
pub async fn put(
    state: &Arc<State>,
    path: Vec<u8>,
    attrs: FileAttrs,
    req: Request<Incoming>,
) -> Result<Written, ApiError> {
    if path::components(&path)?.is_empty() {
        return Err(ApiError::new(
            ErrorCode::IsADirectory,
            "cannot write the root directory",
        ));
    }
    let mode = attrs.mode.unwrap_or(0o644);
    let mtime_ns = attrs.mtime_ns.unwrap_or_else(now_ns);
    let pending = Pending::default();
    let mut refs = Vec::new();
    let mut chunker = Incremental::new(state.repo.cut_seed());
    let idle = super::limits::idle_of(&req);
    let mut body = req.into_body();
    while let Some(frame) = super::limits::frame(&mut body, idle).await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("upload of {} interrupted: {e}", path::show(&path)))
        })?;
        if let Ok(data) = frame.into_data() {
            state
                .metrics
                .bytes_in
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            for chunk in chunker.push(&data) {
                match store_chunk(&state.repo, &pending, &chunk).await {
                    Ok(r) => refs.push(r),
                    Err(e) => return Err(drain(body, idle, e).await),
                }
            }
        }
    }
    for chunk in chunker.finish() {
        refs.push(store_chunk(&state.repo, &pending, &chunk).await?);
    }
    let file = state.repo.put_file(&pending, refs).await?;
    let size = file.size;
    let message = format!("put {}", path::show(&path));
    let v = state
        .writer
        .submit(
            vec![Op::Put {
                path,
                entry: file.entry(mode, mtime_ns),
                expect: None,
            }],
            pending,
            message,
        )
        .await?;
    Ok(Written {
        version: v.number,
        size: Some(size),
    })
}

/// Most of a failed upload's remaining body read and discarded, so that the client,
/// still sending, gets the error answer instead of a reset connection.
const DRAIN_LIMIT: u64 = 64 << 20;

async fn drain(mut body: Incoming, idle: std::time::Duration, error: ApiError) -> ApiError {
    let mut left = DRAIN_LIMIT;
    while let Some(Ok(frame)) = super::limits::frame(&mut body, idle).await {
        let n = frame.data_ref().map_or(0, |d| d.len() as u64);
        if n >= left {
            break;
        }
        left -= n;
    }
    error
}

pub(super) async fn store_chunk(
    repo: &Repo,
    pending: &Pending,
    data: &[u8],
) -> Result<ChunkRef, ApiError> {
    let id = repo.put_chunk(pending, data, ChunkKind::Data).await?;
    Ok(ChunkRef {
        id,
        len: data.len() as u64,
    })
}

pub async fn delete(
    state: &Arc<State>,
    path: Vec<u8>,
    Removal { recursive }: Removal,
) -> Result<Written, ApiError> {
    let message = format!("rm {}", path::show(&path));
    let v = state
        .writer
        .submit(
            vec![Op::Remove { path, recursive }],
            Pending::default(),
            message,
        )
        .await?;
    Ok(Written {
        version: v.number,
        size: None,
    })
}

pub async fn meta(state: &Arc<State>, path: Vec<u8>, at: &AtVersion) -> Result<Meta, ApiError> {
    let (v, entry) = entry_at(state, &path, at).await?;
    let mut info = EntryInfo::of(&entry);
    if info.name.is_empty() {
        info.name = "/".into();
    }
    let content = (entry.kind == EntryKind::File).then(|| Content {
        id: entry.id,
        chunks: entry.chunks.clone(),
    });
    Ok(Meta {
        version: v.number,
        entry: info,
        content,
    })
}

pub async fn ls(state: &Arc<State>, path: Vec<u8>, at: &AtVersion) -> Result<Listing, ApiError> {
    let (v, entry) = entry_at(state, &path, at).await?;
    let entries: Vec<EntryInfo> = match (entry.kind, entry.id) {
        (EntryKind::Dir, Some(id)) => state
            .repo
            .dir(&id)
            .await?
            .entries
            .iter()
            .map(EntryInfo::of)
            .collect(),
        _ => vec![EntryInfo::of(&entry)],
    };
    Ok(Listing {
        version: v.number,
        path: path::show(&path),
        entries,
    })
}

/// Logical bytes below a path, unique bytes after dedup, and bytes per tier.
pub async fn du(state: &Arc<State>, path: Vec<u8>) -> Result<DiskUsage, ApiError> {
    let (v, top) = entry_at(state, &path, &AtVersion::default()).await?;
    let mut files = Vec::new();
    match (top.kind, top.id) {
        (EntryKind::Dir, Some(id)) => {
            walk(&state.repo, &path, id, &mut |_, e| {
                if e.kind == EntryKind::File {
                    files.push(e.clone());
                }
                Ok(())
            })
            .await?
        }
        (EntryKind::File, _) => files.push(top.clone()),
        _ => {}
    }
    let (mut seen, mut unique, mut logical) = (HashSet::new(), 0u64, 0u64);
    let mut tiers = [0u64; 3];
    for f in &files {
        logical += f.size;
        for c in state.repo.file_chunks(f).await? {
            if seen.insert(c.id) {
                unique += c.len;
                let mask = state.repo.chunk_record(&c.id)?.map_or(0, |r| r.tiers);
                for (i, tier) in TierId::ALL.into_iter().enumerate() {
                    if mask & tier.bit() != 0 {
                        tiers[i] += c.len;
                    }
                }
            }
        }
    }
    Ok(DiskUsage {
        version: v.number,
        path: path::show(&path),
        files: files.len() as u64,
        logical_bytes: logical,
        unique_bytes: unique,
        tiers: TierBytes {
            local: tiers[0],
            nas: tiers[1],
            s3: tiers[2],
        },
    })
}
