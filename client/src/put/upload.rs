//! The uploader: one task that collects the chunks the file readers hand it, asks the
//! daemon which it lacks and sends those framed (compressed here) in batches, several
//! in flight, and answers each [`Upload::Barrier`] once every chunk handed before it is
//! stored, so that a commit after a barrier names only chunks the daemon has.

use std::collections::{BTreeSet, HashSet};

use anyhow::Result;
use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use fvfs_api::batch;
use fvfs_api::client::{full, Api};
use fvfs_api::reports::{Ids, MAX_MISSING_IDS};
use fvfs_api::routes::{call, Call};
use fvfs_cas::ChunkId;
use fvfs_node::ChunkKind;

use super::HAND_CHUNKS;

/// Chunks held before asking the daemon which it lacks.
pub(super) const BUFFER_BYTES: usize = 16 << 20;
/// Batch requests in flight at once.
const UPLOADS: usize = 4;
/// Bytes of frames per batch request.
const BATCH_BYTES: usize = 4 << 20;

/// A chunk on its way to the daemon: raw bytes, framed only if the daemon lacks it.
pub(super) type Outgoing = (ChunkId, Bytes, ChunkKind);

/// What the uploader is handed, in order.
pub(super) enum Upload {
    /// New chunks.
    Chunks(Vec<Outgoing>),
    /// Answered once every chunk handed before it is stored on the daemon.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Where the uploader sends to.
pub(super) type ToUploader = tokio::sync::mpsc::Sender<Upload>;

/// Buffers being offered at once (one asking or sending while the next one fills).
const OFFERS: usize = 2;

/// Collects chunks from the file readers, asks the daemon which it lacks, and sends
/// those framed, in batches; answers barriers once what came before them is stored.
/// Returns the bytes of frames sent.
pub(super) async fn uploader(
    api: &Api,
    mut rx: tokio::sync::mpsc::Receiver<Upload>,
) -> Result<u64> {
    let (mut buffer, mut bytes, mut sent) = (Vec::new(), 0usize, 0u64);
    let mut offers = futures::stream::FuturesUnordered::new();
    // Offers are numbered; a barrier waits for every offer numbered below its own.
    let (mut started, mut running) = (0u64, BTreeSet::new());
    let (mut barrier, mut waiting) = (None, Vec::new());
    let mut open = true;
    while open || !buffer.is_empty() || !offers.is_empty() {
        // A hand may come next: the question must still fit the daemon's limit.
        let full = bytes >= BUFFER_BYTES
            || buffer.len() + HAND_CHUNKS > MAX_MISSING_IDS
            || ((!open || barrier.is_some()) && !buffer.is_empty());
        if full && offers.len() < OFFERS {
            let n = started;
            let offered = offer(api, std::mem::take(&mut buffer));
            offers.push(offered.map(move |result| (n, result)));
            running.insert(n);
            started += 1;
            bytes = 0;
            continue;
        }
        if buffer.is_empty() {
            waiting.extend(barrier.take().map(|b| (started, b)));
        }
        answer(&mut waiting, running.first().copied());
        tokio::select! {
            items = rx.recv(), if open && !full && barrier.is_none() => match items {
                Some(Upload::Chunks(items)) => {
                    bytes += items.iter().map(|(_, raw, _)| raw.len()).sum::<usize>();
                    buffer.extend(items);
                }
                Some(Upload::Barrier(b)) => barrier = Some(b),
                None => open = false,
            },
            Some((n, result)) = offers.next(), if !offers.is_empty() => {
                running.remove(&n);
                sent += result?;
            }
        }
    }
    answer(&mut waiting, None);
    Ok(sent)
}

/// Answers the barriers waiting for offers numbered below `oldest`, the oldest offer
/// still running (`None`: none is).
fn answer(waiting: &mut Vec<(u64, tokio::sync::oneshot::Sender<()>)>, oldest: Option<u64>) {
    let oldest = oldest.unwrap_or(u64::MAX);
    for (_, b) in waiting.extract_if(.., |(n, _)| *n <= oldest) {
        // A barrier nobody waits for any more is fine.
        let _ = b.send(());
    }
}

/// Sends whichever of `items` the daemon lacks: framed on the blocking pool, in
/// requests of about [`BATCH_BYTES`], several in flight.
async fn offer(api: &Api, items: Vec<Outgoing>) -> Result<u64> {
    let ids = Ids {
        ids: items.iter().map(|(id, _, _)| *id).collect(),
    };
    let answer = api.ask_with(call::ChunksMissing::plain(), &ids).await?;
    let missing: HashSet<ChunkId> = answer.missing.into_iter().collect();
    let mut groups: Vec<Vec<Outgoing>> = vec![Vec::new()];
    let mut group_bytes = 0;
    for item in items.into_iter().filter(|(id, _, _)| missing.contains(id)) {
        group_bytes += item.1.len();
        groups.last_mut().expect("one group").push(item);
        if group_bytes >= BATCH_BYTES {
            groups.push(Vec::new());
            group_bytes = 0;
        }
    }
    let requests = groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(|group| async move {
            let body = tokio::task::spawn_blocking(move || {
                // Sized once: a body grown by doubling was copied and faulted in
                // again for each batch.
                let most = group
                    .iter()
                    .map(|(_, raw, _)| batch::record_max_len(raw.len()));
                let mut body = Vec::with_capacity(most.sum());
                for (id, raw, kind) in &group {
                    batch::push_raw(&mut body, *kind, id, raw);
                }
                body
            })
            .await?;
            let len = body.len() as u64;
            let to = call::ChunksBatch::plain();
            api.ask_raw(to, full(body), "application/octet-stream")
                .await?;
            Ok::<u64, anyhow::Error>(len)
        });
    let sent: Vec<u64> = futures::stream::iter(requests)
        .buffer_unordered(UPLOADS)
        .try_collect()
        .await?;
    Ok(sent.iter().sum())
}
