//! Content-addressed routes: chunks by id (GET, HEAD, PUT), the batch question "which
//! of these ids are missing", and tree nodes by id.
//!
//! A PUT is hashed and refused unless the body hashes to the id in the URL, and a node
//! must decode; uploaded chunks are staged and become durable with the next commit
//! (or `POST /v1/admin/flush`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use fvfs_api::queries::{self, Kind};
use fvfs_api::reports::{BatchStored, ChunkStored, Ids, Missing, MAX_MISSING_IDS, MAX_READ_IDS};
use fvfs_api::routes::{call, Call};
use fvfs_api::ErrorCode;
use fvfs_cas::{ChunkId, Packed};
use fvfs_manifest::{node, upload, ChunkKind};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::de::DeserializeOwned;

use super::http::{full, ApiError, Body};
use super::State;

/// Bytes of frames a batch upload stores at once.
const PUT_GROUP_BYTES: usize = 1 << 20;

fn parse_id(s: &str) -> Result<ChunkId, ApiError> {
    s.parse()
        .map_err(|e: fvfs_cas::ParseIdError| ApiError::bad_request(e.to_string()))
}

fn bytes_response(data: Bytes, content_type: &str) -> Response<Body> {
    Response::builder()
        .header("content-type", content_type)
        .header("content-length", data.len())
        .body(full(data))
        .expect("valid response")
}

/// Reads a whole request body of at most `limit` bytes; 413 beyond.
pub async fn body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let idle = super::limits::idle_of(&req);
    let mut body = req.into_body();
    let mut whole = bytes::BytesMut::new();
    while let Some(frame) = super::limits::frame(&mut body, idle).await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("body interrupted: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if whole.len() + data.len() > limit {
                return Err(ApiError::new(
                    ErrorCode::TooLarge,
                    format!("body over {limit} bytes"),
                ));
            }
            whole.extend_from_slice(&data);
        }
    }
    Ok(whole.freeze())
}

/// Route `C`'s JSON request body, of at most `limit` bytes; `shape` says what was
/// expected.
pub async fn json_body<C: Call>(
    req: Request<Incoming>,
    limit: usize,
    shape: &str,
) -> Result<C::Request, ApiError>
where
    C::Request: DeserializeOwned,
{
    let raw = body(req, limit).await?;
    serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("expected {shape}: {e}")))
}

pub async fn get(state: &Arc<State>, id: &str) -> Result<Response<Body>, ApiError> {
    let id = parse_id(id)?;
    let data = state.repo.store().get(&id).await?.data;
    state
        .metrics
        .bytes_out
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok(bytes_response(data, "application/octet-stream"))
}

pub fn head(state: &Arc<State>, id: &str) -> Result<Response<Body>, ApiError> {
    let id = parse_id(id)?;
    match state.repo.chunk_record(&id)? {
        Some(r) => Ok(Response::builder()
            .header("content-length", r.raw_len)
            .body(full(Bytes::new()))
            .expect("valid response")),
        None if state.repo.knows(&state.staged, &id)? => Ok(Response::new(full(Bytes::new()))),
        None => Err(ApiError::not_found(format!("chunk {id} not found"))),
    }
}

pub async fn put(
    state: &Arc<State>,
    id: &str,
    q: queries::ChunkPut,
    req: Request<Incoming>,
) -> Result<ChunkStored, ApiError> {
    let id = parse_id(id)?;
    let kind = match q.kind.unwrap_or(Kind::Data) {
        Kind::Data => ChunkKind::Data,
        Kind::Node => ChunkKind::Node,
    };
    let data = body(req, upload::max_raw(kind)).await?;
    state
        .metrics
        .bytes_in
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    let actual = ChunkId::of(&data);
    if actual != id {
        return Err(ApiError::new(
            ErrorCode::HashMismatch,
            format!("body hashes to {actual}, not {id}"),
        ));
    }
    if kind == ChunkKind::Node {
        // Off the async workers, within the budget all decoding shares.
        let budget = upload::reserve(upload::cost(kind, data.len())).await;
        let raw = data.clone();
        tokio::task::spawn_blocking(move || upload::client_node(&id, &raw))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map_err(|e| ApiError::new(ErrorCode::BadNode, e.to_string()))?;
        drop(budget);
    }
    state.repo.promise(&[id]);
    let known = state.repo.knows(&state.staged, &id)?;
    state.repo.put_chunk(&state.staged, &data, kind).await?;
    Ok(ChunkStored { id, stored: !known })
}

/// The ids of route `C`'s `{"ids": [...]}` body, of at most `max` ids (413 beyond).
async fn id_list<C: Call<Request = Ids>>(
    req: Request<Incoming>,
    max: usize,
) -> Result<Vec<ChunkId>, ApiError> {
    let q = json_body::<C>(req, 80 * max + 1024, "{\"ids\": [...]}").await?;
    if q.ids.len() > max {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("{} ids; at most {max} per request", q.ids.len()),
        ));
    }
    Ok(q.ids)
}

/// Which of up to 10,000 ids the store lacks: the client uploads only those.
pub async fn missing(state: &Arc<State>, req: Request<Incoming>) -> Result<Missing, ApiError> {
    let ids = id_list::<call::ChunksMissing>(req, MAX_MISSING_IDS).await?;
    // Before the lookup: what is answered "there" stays until the commit naming it.
    // What is not there is not promised (asking is a reader's right: its promises are
    // bounded by what the store holds).
    let promise = state.repo.promise(&ids);
    let mut missing = Vec::new();
    for id in ids {
        if !state.repo.knows(&state.staged, &id)? {
            missing.push(id);
        }
    }
    state.repo.unpromise(promise, missing.iter());
    Ok(Missing { missing })
}

/// Frame bytes one answer carries at most; chunks past it are left out.
const MAX_READ_BYTES: usize = 64 << 20;

/// Many chunks in one answer, in the batch format of uploads (each record: kind, id,
/// frame), read from the store with `get_many` (a cold tier answers by pack); with
/// `?blocks=true`, as kept (`get_packed`): a block holding several of them comes once,
/// whole, and the reader decodes it. Chunks that cannot be read, or do not fit, are
/// left out: the client reads those one by one and gets their errors then. For
/// readers that know what they will read next (the mount, on the first read in a
/// folder).
pub async fn read_many(
    state: &Arc<State>,
    read_as: queries::ReadAs,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let ids = id_list::<call::ChunksRead>(req, MAX_READ_IDS).await?;
    let mut out = Vec::new();
    let store = state.repo.store();
    let mut answers = match read_as.blocks {
        true => store.get_packed(ids),
        false => store
            .get_many(ids)
            .map(|(id, r)| (id, r.map(|l| Packed::Frame(l.frame))))
            .boxed(),
    };
    let fits = |out: &Vec<u8>, frame: &Bytes| out.len() + frame.len() <= MAX_READ_BYTES;
    while let Some((id, answer)) = answers.next().await {
        match answer {
            Ok(Packed::Frame(f)) if fits(&out, &f) => {
                fvfs_api::batch::push(&mut out, ChunkKind::Data, &id, &f);
            }
            Ok(Packed::Block(b)) if fits(&out, &b) => {
                fvfs_api::batch::push_block(&mut out, &id, &b);
            }
            _ => {}
        }
    }
    state
        .metrics
        .bytes_out
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    Ok(bytes_response(Bytes::from(out), "application/octet-stream"))
}

/// A tree node's canonical CBOR; clients verify it against the id and decode it.
pub async fn node(state: &Arc<State>, id: &str) -> Result<Response<Body>, ApiError> {
    let id = parse_id(id)?;
    let data = state.repo.store().get(&id).await?.data;
    node::decode(&data).map_err(|e| {
        ApiError::new(
            ErrorCode::NotANode,
            format!("chunk {id} is not a tree node: {e}"),
        )
    })?;
    Ok(bytes_response(data, "application/cbor"))
}

/// Many client-framed chunks in one streamed request (`fvfs_api::batch`):
/// each frame must decode to its id, and nodes must decode as nodes; stored chunks are
/// staged like single PUTs, a group of about [`PUT_GROUP_BYTES`] at a time. Memory:
/// one group.
pub async fn put_batch(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<BatchStored, ApiError> {
    use fvfs_api::batch::Parser;
    let mut parser = Parser::default();
    let (mut stored, mut present) = (0u64, 0u64);
    let (mut group, mut group_bytes) = (Vec::new(), 0);
    let idle = super::limits::idle_of(&req);
    let mut body = req.into_body();
    loop {
        let next = super::limits::frame(&mut body, idle).await;
        let ended = next.is_none();
        if let Some(frame) = next {
            let frame =
                frame.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            state
                .metrics
                .bytes_in
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            for record in parser
                .push(&data)
                .map_err(|e| ApiError::new(ErrorCode::BadBatch, e))?
            {
                group_bytes += record.2.len();
                group.push(record);
            }
        }
        if ended || group_bytes >= PUT_GROUP_BYTES {
            let count = group.len() as u64;
            // Kept for the commit that names them, whatever the grace period.
            let ids: Vec<ChunkId> = group.iter().map(|(_, id, _)| *id).collect();
            state.repo.promise(&ids);
            let new = state
                .repo
                .put_frames(&state.staged, std::mem::take(&mut group))
                .await?;
            (stored, present) = (stored + new, present + count - new);
            group_bytes = 0;
        }
        if ended {
            break;
        }
    }
    if !parser.finished() {
        return Err(ApiError::new(
            ErrorCode::BadBatch,
            "the body ends inside a record",
        ));
    }
    Ok(BatchStored { stored, present })
}
