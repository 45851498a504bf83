//! `fvfsc cat`: a file's content, verified before it is written out. The file's chunk
//! list comes from its entry (`GET /v1/meta`) and file node (fetched by id, checked
//! against it); the chunks come in batches (`POST /v1/chunks/read`, a few in flight),
//! each frame decoded and its content checked against its BLAKE3 id on the blocking
//! pool. No chunk that differs from its id reaches stdout (a corrupt copy, a flipped
//! bit, a tampering proxy on plain HTTP): a mismatch stops the copy with an error and
//! exit 2. That the list itself is the daemon's comes from TLS and the pinned
//! certificate.

use std::io::Write;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use fvfs_api::batch;
use fvfs_api::client::{Api, Failure};
use fvfs_api::reports::Ids;
use fvfs_api::routes::{call, Call};
use fvfs_api::ErrorCode;
use fvfs_cas::{frame, ChunkId};
use fvfs_node::{self as node, ChunkRef, Entry, EntryKind, Node};
use hyper::StatusCode;

/// Chunks asked for in one request, and requests in flight (each answer at most 16
/// MiB of frames, 4 MiB at the average chunk size; a cold S3 tier behind the daemon
/// reads a request's chunks by pack block in one go: 32 chunks a request read a 200
/// MB file at 165 MB/s here, 64 at 200).
const BATCH_CHUNKS: usize = 64;
const IN_FLIGHT: usize = 4;

/// Writes the file at `path` (an encoded fvfs path) to `out`.
pub async fn cat(api: &Api, path: &str, out: &mut impl Write) -> Result<()> {
    let meta = api.ask(call::Meta::at(path)).await?;
    let Some(content) = meta.content else {
        let error = match meta.entry.kind.as_str() {
            "dir" => ErrorCode::IsADirectory,
            "symlink" => ErrorCode::IsASymlink,
            _ => ErrorCode::NotAFile,
        };
        return Err(Failure::Refused {
            status: StatusCode::BAD_REQUEST,
            error,
            detail: format!(
                "{} is a {}: it has no content to read",
                meta.entry.name, meta.entry.kind
            ),
        }
        .into());
    };
    let entry = Entry {
        kind: EntryKind::File,
        size: meta.entry.size,
        id: content.id,
        chunks: content.chunks,
        ..Entry::dir(0, 0)
    };
    let chunks = node::file_chunks(&entry, |id| async move { fetch_node(api, id).await }).await?;
    // (file_chunks checks a file node's list; an inline one is checked here.)
    if chunks.iter().map(|c| c.len).sum::<u64>() != entry.size {
        bail!("the daemon's chunk list does not add up to the file's size");
    }
    let mut batches = futures::stream::iter(chunks.chunks(BATCH_CHUNKS).map(<[ChunkRef]>::to_vec))
        .map(|refs| read_batch(api, refs))
        .buffered(IN_FLIGHT);
    while let Some(pieces) = batches.try_next().await? {
        for piece in pieces {
            out.write_all(&piece)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A tree node by id, checked against it.
async fn fetch_node(api: &Api, id: ChunkId) -> Result<Node> {
    let raw = api.fetch(call::ChunkGet::named(&id.to_hex())).await?;
    if ChunkId::of(&raw) != id {
        bail!("the daemon sent a node that does not match its id {id}");
    }
    node::decode(&raw).with_context(|| format!("tree node {id}"))
}

/// The content of `refs`, in order, each chunk verified.
async fn read_batch(api: &Api, refs: Vec<ChunkRef>) -> Result<Vec<Bytes>> {
    let mut ids: Vec<ChunkId> = refs.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let answer = api
        .fetch_with(call::ChunksRead::plain(), &Ids { ids })
        .await?;
    tokio::task::spawn_blocking(move || {
        let mut parser = batch::Parser::default();
        let records = parser.push(&answer).map_err(anyhow::Error::msg)?;
        if !parser.finished() {
            bail!("the daemon's batch of chunks ended early");
        }
        let mut got = std::collections::HashMap::with_capacity(records.len());
        for (_, id, framed) in records {
            let raw = frame::decode(&id, &framed)
                .with_context(|| format!("chunk {id} as the daemon sent it"))?;
            got.insert(id, Bytes::from(raw));
        }
        refs.iter()
            .map(|r| match got.get(&r.id) {
                Some(data) if data.len() as u64 == r.len => Ok(data.clone()),
                Some(_) => bail!("chunk {} is not the length its file lists", r.id),
                None => bail!("the daemon did not send chunk {}", r.id),
            })
            .collect()
    })
    .await?
}
