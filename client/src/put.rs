//! Uploads: one stream to `PUT /v1/files` (stdin, a file), or a whole tree chunked here
//! on the client, so only chunks the daemon lacks cross the network, then committed as
//! one version.
//!
//! Memory stays bounded: chunks wait in a buffer of at most [`BUFFER_BYTES`], which is
//! flushed (ask which ids are missing, upload those) whenever it fills, whatever the
//! size of the files.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use fvfs_cas::{chunker, ChunkId};
use fvfs_manifest::api::{encode_path, CommitOp, CommitRequest, VersionInfo};
use fvfs_manifest::node::{file_layout, FileLayout};
use fvfs_manifest::ChunkRef;
use hyper::Method;
use serde::Deserialize;
use serde_json::json;

use fvfs_manifest::client::{full, Api, Body};

/// Chunks held before asking the daemon which it lacks.
const BUFFER_BYTES: usize = 32 << 20;
/// Chunk uploads in flight at once.
const UPLOADS: usize = 8;

/// Streams `reader` to the file at `dest` (encoded path); returns the daemon's answer.
pub async fn put_stream(
    api: &Api,
    dest: &str,
    mode: Option<u32>,
    reader: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> Result<serde_json::Value> {
    let stream = futures::stream::unfold(reader, |mut r| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    });
    let body: Body = http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream));
    let query = mode.map(|m| format!("?mode={m:o}")).unwrap_or_default();
    let raw = api
        .bytes(
            Method::PUT,
            &format!("/v1/files{dest}{query}"),
            body,
            Some("application/octet-stream"),
        )
        .await?;
    Ok(serde_json::from_slice(&raw)?)
}

#[derive(Deserialize)]
struct Missing {
    missing: Vec<String>,
}

/// Chunks waiting to be offered to the daemon.
struct Uploader<'a> {
    api: &'a Api,
    buffer: Vec<(ChunkId, Bytes, &'static str)>,
    bytes: usize,
    /// Ids already offered in this run.
    offered: HashSet<ChunkId>,
    sent_bytes: u64,
}

impl<'a> Uploader<'a> {
    async fn add(&mut self, id: ChunkId, data: Bytes, kind: &'static str) -> Result<()> {
        if self.offered.insert(id) {
            self.bytes += data.len();
            self.buffer.push((id, data, kind));
            if self.bytes >= BUFFER_BYTES || self.buffer.len() >= 10_000 {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.buffer);
        self.bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = batch.iter().map(|(id, _, _)| id.to_hex()).collect();
        let answer: Missing = self
            .api
            .json(
                Method::POST,
                "/v1/chunks/missing",
                Some(&json!({ "ids": ids })),
            )
            .await?;
        let missing: HashSet<String> = answer.missing.into_iter().collect();
        let api = self.api;
        let uploads = batch
            .into_iter()
            .filter(|(id, _, _)| missing.contains(&id.to_hex()))
            .map(|(id, data, kind)| async move {
                let len = data.len() as u64;
                api.bytes(
                    Method::PUT,
                    &format!("/v1/chunks/{id}?kind={kind}"),
                    full(data),
                    Some("application/octet-stream"),
                )
                .await?;
                Ok::<u64, anyhow::Error>(len)
            });
        let sent: Vec<u64> = futures::stream::iter(uploads)
            .buffer_unordered(UPLOADS)
            .try_collect()
            .await?;
        self.sent_bytes += sent.iter().sum::<u64>();
        Ok(())
    }
}

/// What a tree upload did.
pub struct Summary {
    pub files: u64,
    pub bytes: u64,
    pub sent_bytes: u64,
    pub skipped: Vec<(PathBuf, String)>,
    pub version: VersionInfo,
}

enum Item {
    Dir(Vec<u8>, fs::Metadata),
    File(PathBuf, Vec<u8>, fs::Metadata),
    Symlink(Vec<u8>, Vec<u8>, fs::Metadata),
}

fn mtime_ns(m: &fs::Metadata) -> i64 {
    m.mtime() * 1_000_000_000 + m.mtime_nsec()
}

/// Lists `src` below `dest`; special and unreadable entries go to `skipped`.
fn list(src: &Path, dest: &[u8], skipped: &mut Vec<(PathBuf, String)>) -> Vec<Item> {
    let mut out = Vec::new();
    let mut stack = vec![(src.to_path_buf(), dest.to_vec())];
    while let Some((dir, at)) = stack.pop() {
        let mut names: Vec<OsString> = match fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
            Err(e) => {
                skipped.push((dir, format!("cannot list directory: {e}")));
                continue;
            }
        };
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let mut child = at.clone();
            if child.last() != Some(&b'/') {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    skipped.push((path, format!("cannot stat: {e}")));
                    continue;
                }
            };
            let t = meta.file_type();
            if t.is_dir() {
                out.push(Item::Dir(child.clone(), meta));
                stack.push((path, child));
            } else if t.is_file() {
                out.push(Item::File(path, child, meta));
            } else if t.is_symlink() {
                match fs::read_link(&path) {
                    Ok(target) => out.push(Item::Symlink(
                        child,
                        target.as_os_str().as_bytes().to_vec(),
                        meta,
                    )),
                    Err(e) => skipped.push((path, format!("cannot read symlink: {e}"))),
                }
            } else {
                let kind = if t.is_socket() {
                    "socket"
                } else if t.is_fifo() {
                    "named pipe"
                } else {
                    "device"
                };
                skipped.push((path, format!("special file ({kind}) is not uploaded")));
            }
        }
    }
    out
}

/// Chunks a local file, feeding the uploader; returns its chunk list.
async fn chunk_file(up: &mut Uploader<'_>, path: &Path) -> std::io::Result<Vec<ChunkRef>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(8);
    let path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => return drop(tx.blocking_send(Err(e))),
        };
        for chunk in chunker::chunks(file) {
            if tx.blocking_send(chunk).is_err() {
                return;
            }
        }
    });
    let mut refs = Vec::new();
    while let Some(chunk) = rx.recv().await {
        let data = chunk?;
        let id = ChunkId::of(&data);
        refs.push(ChunkRef {
            id,
            len: data.len() as u64,
        });
        up.add(id, Bytes::from(data), "data")
            .await
            .map_err(std::io::Error::other)?;
    }
    reader.await.map_err(std::io::Error::other)?;
    Ok(refs)
}

/// Uploads the tree `src` to `dest` and commits it as one version.
pub async fn put_tree(api: &Api, src: &Path, dest: &[u8]) -> Result<Summary> {
    let meta = fs::metadata(src).with_context(|| format!("{}", src.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (use --from FILE for one file)",
            src.display()
        );
    }
    let mut skipped = Vec::new();
    let items = list(src, dest, &mut skipped);
    let mut up = Uploader {
        api,
        buffer: Vec::new(),
        bytes: 0,
        offered: HashSet::new(),
        sent_bytes: 0,
    };
    let mut ops = Vec::new();
    if dest != b"/" {
        ops.push(CommitOp::Mkdir {
            path: encode_path(dest),
            mode: meta.mode() & 0o7777,
            mtime_ns: mtime_ns(&meta),
        });
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    for item in items {
        match item {
            Item::Dir(at, m) => ops.push(CommitOp::Mkdir {
                path: encode_path(&at),
                mode: m.mode() & 0o7777,
                mtime_ns: mtime_ns(&m),
            }),
            Item::Symlink(at, target, m) => ops.push(CommitOp::Symlink {
                path: encode_path(&at),
                target: encode_path(&target),
                mode: m.mode() & 0o7777,
                mtime_ns: mtime_ns(&m),
            }),
            Item::File(path, at, m) => {
                let refs = match chunk_file(&mut up, &path).await {
                    Ok(r) => r,
                    Err(e) => {
                        skipped.push((path, format!("cannot read: {e}")));
                        continue;
                    }
                };
                let size: u64 = refs.iter().map(|r| r.len).sum();
                let (node, chunks) = match file_layout(refs) {
                    FileLayout::Inline(chunks) => (
                        None,
                        chunks.iter().map(|c| (c.id.to_hex(), c.len)).collect(),
                    ),
                    FileLayout::Nodes { file, lists } => {
                        for n in lists.iter().chain(std::iter::once(&file)) {
                            let raw = n.encode();
                            up.add(ChunkId::of(&raw), Bytes::from(raw), "node").await?;
                        }
                        (Some(ChunkId::of(&file.encode()).to_hex()), Vec::new())
                    }
                };
                ops.push(CommitOp::File {
                    path: encode_path(&at),
                    mode: m.mode() & 0o7777,
                    mtime_ns: mtime_ns(&m),
                    size,
                    node,
                    chunks,
                });
                files += 1;
                bytes += size;
            }
        }
    }
    up.flush().await?;
    if ops.is_empty() {
        bail!("{} is empty: nothing to upload", src.display());
    }
    let request = CommitRequest {
        message: format!(
            "put -r {} -> {}",
            src.display(),
            String::from_utf8_lossy(dest)
        ),
        ops,
    };
    let version: VersionInfo = api
        .json(
            Method::POST,
            "/v1/commit",
            Some(&serde_json::to_value(&request)?),
        )
        .await?;
    Ok(Summary {
        files,
        bytes,
        sent_bytes: up.sent_bytes,
        skipped,
        version,
    })
}
