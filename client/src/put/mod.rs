//! Uploads: one stream to `PUT /v1/files` (stdin, a file), or files chunked here on
//! the client, so only chunks the daemon lacks cross the network, then committed
//! (a whole tree: [`tree`]).
//!
//! Chunks the daemon lacks are framed (compressed) here, which spares the daemon the
//! work and the LAN the bytes; the daemon still checks every frame against its id.
//! Chunks it has are never compressed nor sent. Memory stays bounded: chunks wait in
//! buffers of at most [`upload::BUFFER_BYTES`] (two at a time), each offered (which ids are
//! missing? send those in batches) when it fills, whatever the size of the files.
//! Files are read a batch at a time on each blocking thread, and their new chunks
//! handed over a megabyte at a time: a task and a wake-up per small file, and one per
//! chunk, cost the client a fifth of its CPU on a tree of small files.
//!
//! # Invariants
//! - A commit names only chunks the daemon has: the uploader answers a
//!   [`Upload::Barrier`] once every chunk handed to it before the barrier is stored.

mod tree;
mod upload;

pub use tree::{put_tree, Summary};
use upload::{uploader, Outgoing, ToUploader, Upload};

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use bytes::Bytes;
use std::sync::{Arc, Mutex};

use fvfs_api::commit::{CommitOp, CommitRequest, Expect};
use fvfs_api::path::encode_path;
use fvfs_api::queries::FileAttrs;
use fvfs_api::reports::Written;
use fvfs_api::routes::{call, Call};
use fvfs_api::views::VersionInfo;
use fvfs_api::ErrorCode;
use fvfs_cas::{chunker, ChunkId};
use fvfs_node::{content_key, file_layout, ChunkKind, ChunkRef, FileLayout, Link, Meta};
use fvfs_walk::ToRead;

use fvfs_api::client::{Api, Body, Failure};

/// Streams `reader` to the file at `dest` (encoded path); returns the daemon's answer.
pub async fn put_stream(
    api: &Api,
    dest: &str,
    mode: Option<u32>,
    reader: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> Result<Written> {
    let stream = futures::stream::unfold(reader, |mut r| async move {
        use tokio::io::AsyncReadExt;
        // Read into memory not zeroed first (`read_buf` fills spare capacity).
        let mut buf = bytes::BytesMut::with_capacity(256 << 10);
        match r.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(hyper::body::Frame::data(buf.freeze())), r)),
            Err(e) => Some((Err(e), r)),
        }
    });
    let body: Body = http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream));
    let attrs = FileAttrs {
        mode,
        mtime_ns: None,
    };
    let to = call::FilePut::at(dest).with(&attrs);
    Ok(api.ask_raw(to, body, "application/octet-stream").await?)
}

/// The seed of the daemon's chunk cut points (`GET /v1/whoami`), asked once per
/// process: a store's seed never changes (it is recorded with it), and chunks cut
/// otherwise would not deduplicate with what the daemon cuts itself.
async fn cut_seed(api: &Api) -> Result<u64> {
    static SEED: tokio::sync::OnceCell<u64> = tokio::sync::OnceCell::const_new();
    let seed = SEED.get_or_try_init(|| async {
        let me = api.ask(call::Whoami::plain()).await?;
        Ok::<_, Failure>(me.cut_seed)
    });
    Ok(*seed.await?)
}

/// Files read per blocking task, at most: a task, and the wake-ups around it, for each
/// small file cost more than reading the file.
const READ_BATCH_FILES: usize = 64;
/// Bytes of files per blocking task, at most (a larger file goes alone).
const READ_BATCH_BYTES: u64 = 8 << 20;
/// New chunks handed to the uploader at once, at most: so many bytes, so many chunks.
const HAND_BYTES: usize = 1 << 20;
const HAND_CHUNKS: usize = 256;

/// Chunk ids one generation of [`Seen`] keeps.
const SEEN_PER_GENERATION: usize = 100_000;

/// The chunk ids a run handed to the uploader lately, so that a chunk repeated within
/// the last 100,000-200,000 (about 1-2 GB of files) is not handed again: two
/// generations, the older dropped when the newer fills. A set of the whole run took
/// about 150 MB of `put -r` of 3,000,000 files (benches/README.md); a chunk seen
/// before that is handed again, and the uploader's question finds it on the daemon.
#[derive(Default)]
struct Seen {
    newer: crate::mount::FastSet<ChunkId>,
    older: crate::mount::FastSet<ChunkId>,
}

impl Seen {
    /// Whether `id` was not seen lately (it is now).
    fn first_time(&mut self, id: ChunkId) -> bool {
        if self.older.contains(&id) || !self.newer.insert(id) {
            return false;
        }
        if self.newer.len() >= SEEN_PER_GENERATION {
            self.older = std::mem::take(&mut self.newer);
        }
        true
    }
}

/// Reads, chunks and hashes local files on one blocking thread, sending each chunk not
/// [`Seen`] lately to the uploader; returns each file's chunk list, in order.
async fn chunk_files(
    paths: Vec<ToRead>,
    (seen, seed): (Arc<Mutex<Seen>>, u64),
    tx: ToUploader,
) -> Vec<std::io::Result<Vec<ChunkRef>>> {
    let count = paths.len();
    let read = tokio::task::spawn_blocking(move || {
        let mut hand = Vec::new();
        let mut results: Vec<_> = paths
            .iter()
            .map(|path| chunk_one(path, (&seen, seed), &tx, &mut hand))
            .collect();
        if !hand.is_empty() && tx.blocking_send(Upload::Chunks(hand)).is_err() {
            // What the last files found new never left: none of them is read.
            results = (0..results.len()).map(|_| Err(stopped())).collect();
        }
        results
    })
    .await;
    read.unwrap_or_else(|e| {
        (0..count)
            .map(|_| Err(std::io::Error::other(e.to_string())))
            .collect()
    })
}

fn stopped() -> std::io::Error {
    std::io::Error::other("upload stopped")
}

/// [`chunk_files`] of one file: its new chunks join `hand`, which goes to the uploader
/// when it holds [`HAND_BYTES`] or [`HAND_CHUNKS`].
fn chunk_one(
    source: &ToRead,
    (seen, seed): (&Mutex<Seen>, u64),
    tx: &ToUploader,
    hand: &mut Vec<Outgoing>,
) -> std::io::Result<Vec<ChunkRef>> {
    let mut refs = Vec::new();
    let (file, meta) = source.open()?;
    let size = meta.len();
    for chunk in chunker::chunks_sized(file, size, seed) {
        let data = chunk?;
        let id = ChunkId::of(&data);
        refs.push(ChunkRef {
            id,
            len: data.len() as u64,
        });
        if seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_time(id)
        {
            hand.push((id, Bytes::from(data), ChunkKind::Data));
            let bytes: usize = hand.iter().map(|(_, raw, _)| raw.len()).sum();
            if bytes >= HAND_BYTES || hand.len() >= HAND_CHUNKS {
                tx.blocking_send(Upload::Chunks(std::mem::take(hand)))
                    .map_err(|_| stopped())?;
            }
        }
    }
    Ok(refs)
}

/// Files grouped for [`chunk_files`] as they come: at most [`READ_BATCH_FILES`] and
/// about [`READ_BATCH_BYTES`] each (a larger file alone), in order.
struct ReadBatch<T> {
    items: Vec<T>,
    bytes: u64,
}

impl<T> Default for ReadBatch<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            bytes: 0,
        }
    }
}

impl<T> ReadBatch<T> {
    /// Adds `item` of `len` bytes; returns the batch it closed, if it did not fit.
    fn add(&mut self, item: T, len: u64) -> Option<Vec<T>> {
        let fits = self.items.len() < READ_BATCH_FILES && self.bytes + len <= READ_BATCH_BYTES;
        let closed = match fits || self.items.is_empty() {
            true => None,
            false => self.take(),
        };
        self.bytes += len;
        self.items.push(item);
        closed
    }

    /// The batch so far, if it holds anything.
    fn take(&mut self) -> Option<Vec<T>> {
        self.bytes = 0;
        (!self.items.is_empty()).then(|| std::mem::take(&mut self.items))
    }
}

/// `files` in groups for [`chunk_files`] ([`ReadBatch`]).
fn read_batches<T>(files: Vec<T>, size: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let mut batch = ReadBatch::default();
    let mut batches: Vec<Vec<T>> = Vec::new();
    for file in files {
        let len = size(&file);
        batches.extend(batch.add(file, len));
    }
    batches.extend(batch.take());
    batches
}

/// What a file is committed with besides its content.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Attrs {
    pub mode: u32,
    pub mtime_ns: i64,
    pub meta: Option<Meta>,
    /// The file's other names, if it has some (a file being written through a mount).
    pub link: Option<Link>,
}

/// The commit op of a file (applied only where `expect` holds, if given), sending its
/// file and list nodes when it has them; and the file's content key.
async fn file_op(
    at: &[u8],
    attrs: &Attrs,
    refs: Vec<ChunkRef>,
    expect: Option<Expect>,
    tx: &ToUploader,
) -> Result<(CommitOp, ChunkId)> {
    let size: u64 = refs.iter().map(|r| r.len).sum();
    let (node, chunks, key) = match file_layout(refs) {
        FileLayout::Inline(chunks) => (
            None,
            chunks.iter().map(|c| (c.id.to_hex(), c.len)).collect(),
            content_key(None, &chunks),
        ),
        FileLayout::Nodes { file, lists } => {
            let mut file_id = ChunkId::of(&[]);
            for n in lists.iter().chain(std::iter::once(&file)) {
                let raw = n.encode();
                file_id = ChunkId::of(&raw);
                tx.send(Upload::Chunks(vec![(
                    file_id,
                    Bytes::from(raw),
                    ChunkKind::Node,
                )]))
                .await
                .map_err(|_| anyhow::anyhow!("upload stopped"))?;
            }
            (Some(file_id.to_hex()), Vec::new(), file_id)
        }
    };
    let op = CommitOp::File {
        path: encode_path(at),
        mode: attrs.mode,
        mtime_ns: attrs.mtime_ns,
        size,
        node,
        chunks,
        meta: attrs.meta.clone(),
        link: attrs.link,
        expect,
    };
    Ok((op, key))
}

/// Commits `ops` as one version; returns once the daemon made it durable.
pub async fn commit(
    api: &Api,
    message: String,
    ops: Vec<CommitOp>,
) -> Result<VersionInfo, fvfs_api::client::Failure> {
    let request = CommitRequest { message, ops };
    api.ask_with(call::Commit::plain(), &request).await
}

/// Uploads the local file `local` (chunked here, only chunks the daemon lacks sent)
/// and commits it at `dest` with `attrs`, only if `dest` holds what `expect` says
/// (else the daemon refuses with `conflict`). Returns the version and the content key
/// of what was committed.
pub async fn put_file(
    api: &Api,
    local: &Path,
    dest: &[u8],
    attrs: &Attrs,
    expect: Option<&Expect>,
) -> Result<(VersionInfo, ChunkId)> {
    resend_if_collected(|| put_file_once(api, local, dest, attrs, expect.cloned())).await
}

/// Rounds of a write whose commit the daemon refused because a collection freed a
/// chunk it named (`missing_chunks`): the daemon said it had the chunk, then a
/// collection took it (unreachable and older than the grace) before the commit. Each
/// round asks again which chunks the daemon lacks and sends those, after a pause that
/// doubles from [`FIRST_PAUSE`]: rounds in quick succession all fell inside one
/// collection (a file written with the content of one just removed, while collections
/// ran back to back), and the next one must land after it.
const ROUNDS_AFTER_COLLECTION: usize = 8;
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

async fn resend_if_collected<T, F>(attempt: impl Fn() -> F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut round = 1;
    loop {
        match attempt().await {
            Err(e) if round < ROUNDS_AFTER_COLLECTION && collected(&e) => {
                tracing::info!("a collection freed content this write named; sending again");
                tokio::time::sleep(FIRST_PAUSE * (1 << (round - 1))).await;
                round += 1;
            }
            result => return result,
        }
    }
}

/// Whether the daemon refused a commit for chunks it no longer has.
fn collected(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<Failure>(),
        Some(Failure::Refused { error, .. }) if *error == ErrorCode::MissingChunks
    )
}

async fn put_file_once(
    api: &Api,
    local: &Path,
    dest: &[u8],
    attrs: &Attrs,
    expect: Option<Expect>,
) -> Result<(VersionInfo, ChunkId)> {
    let staged = Staged {
        local: local.to_owned(),
        attrs: attrs.clone(),
        expect,
    };
    let (mut op, key) = upload_files(api, vec![staged]).await?.remove(0)?;
    place(&mut op, dest);
    let message = format!("write {}", String::from_utf8_lossy(dest));
    match commit(api, message.clone(), vec![op.clone()]).await {
        // What the path holds changed, maybe into this very content (a commit whose
        // answer was lost, then tried again): then it is done, nothing to keep beside.
        Err(e) if matches!(&e, Failure::Refused { error, .. } if *error == ErrorCode::Conflict) => {
            let same = Expect::Content(key.to_hex());
            match &mut op {
                CommitOp::File { expect, .. } if expect.as_ref() != Some(&same) => {
                    *expect = Some(same)
                }
                _ => return Err(e.into()),
            }
            Ok((commit(api, message, vec![op]).await?, key))
        }
        answer => Ok((answer?, key)),
    }
}

/// A local file to upload, with what its commit carries besides its content.
#[derive(Clone, Debug)]
pub struct Staged {
    pub local: PathBuf,
    pub attrs: Attrs,
    /// What its path must hold for the commit to apply.
    pub expect: Option<Expect>,
}

/// Uploads `files` (chunked here, only what the daemon lacks sent, all in one stream of
/// batches); returns for each its commit op, whose path is left for the caller to set
/// ([`place`]), and its content key, or why it could not be read.
pub async fn upload_files(
    api: &Api,
    files: Vec<Staged>,
) -> Result<Vec<std::io::Result<(CommitOp, ChunkId)>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let upload = uploader(api, rx);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seed = cut_seed(api).await?;
    let chunk = async move {
        let mut done = Vec::with_capacity(files.len());
        for batch in read_batches(files, |f| file_len(&f.local)) {
            let paths = batch
                .iter()
                .map(|f| ToRead::new(f.local.clone(), None))
                .collect();
            let read = chunk_files(paths, (seen.clone(), seed), tx.clone()).await;
            for (refs, f) in read.into_iter().zip(batch) {
                done.push(match refs {
                    Ok(refs) => Ok(file_op(b"/", &f.attrs, refs, f.expect, &tx).await?),
                    Err(e) => Err(e),
                });
            }
        }
        drop(tx);
        Ok::<_, anyhow::Error>(done)
    };
    let (done, _) = futures::try_join!(chunk, upload)?;
    Ok(done)
}

/// Sets the path of a file op made by [`upload_files`].
pub fn place(op: &mut CommitOp, at: &[u8]) {
    if let CommitOp::File { path, .. } = op {
        *path = encode_path(at);
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn refusal(error: ErrorCode) -> anyhow::Error {
        Failure::Refused {
            status: StatusCode::CONFLICT,
            error,
            detail: String::new(),
        }
        .into()
    }

    #[test]
    fn chunks_seen_lately_are_handed_once_and_the_memory_of_them_is_bounded() {
        let id = |n: usize| ChunkId::of(&n.to_le_bytes());
        let mut seen = Seen::default();
        assert!(seen.first_time(id(0)));
        assert!(!seen.first_time(id(0)));
        for n in 1..SEEN_PER_GENERATION {
            assert!(seen.first_time(id(n)));
        }
        // The first generation is full and became the older: still remembered.
        assert!(seen.newer.is_empty());
        assert!(!seen.first_time(id(0)));
        for n in SEEN_PER_GENERATION..2 * SEEN_PER_GENERATION {
            assert!(seen.first_time(id(n)));
        }
        // Two generations later, the first is forgotten: handed again (the daemon,
        // asked, says whether it has it).
        assert!(seen.first_time(id(0)));
        assert!(!seen.first_time(id(2 * SEEN_PER_GENERATION - 1)));
        assert!(seen.newer.len() + seen.older.len() <= 2 * SEEN_PER_GENERATION);
    }

    #[test]
    fn files_are_read_in_batches_of_bounded_count_and_bytes_in_order() {
        let sizes: Vec<u64> =
            [vec![10; 130], vec![READ_BATCH_BYTES + 1], vec![3 << 20; 5]].concat();
        let batches = read_batches(sizes.iter().copied().enumerate().collect(), |(_, s)| *s);
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(lens, [64, 64, 2, 1, 2, 2, 1]);
        let order: Vec<usize> = batches.iter().flatten().map(|(i, _)| *i).collect();
        assert_eq!(order, (0..sizes.len()).collect::<Vec<_>>());
    }

    /// What `put -r` reads: a file the walk listed but swapped since for a symlink or a
    /// FIFO is refused, not followed or waited on; the others are read.
    #[tokio::test]
    async fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        fs::write(at("file"), "content").unwrap();
        std::os::unix::fs::symlink(at("file"), at("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            at("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from(0o600),
            0,
        )
        .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let paths = Vec::from(["link", "fifo", "file"].map(|n| ToRead::new(at(n), None)));
        let read = chunk_files(paths, (Default::default(), 0), tx).await;
        let sent = match rx.recv().await {
            Some(Upload::Chunks(chunks)) => chunks.len(),
            _ => panic!("the file's chunk was not handed on"),
        };
        assert!(read[0].is_err() && read[1].is_err(), "{read:?}");
        assert_eq!(read[2].as_ref().unwrap()[0].len, 7);
        assert_eq!(sent, 1);
    }

    #[tokio::test]
    async fn a_write_whose_content_was_collected_is_sent_again() {
        let tries = AtomicUsize::new(0);
        let got = resend_if_collected(|| async {
            match tries.fetch_add(1, Ordering::Relaxed) {
                0 | 1 => Err(refusal(ErrorCode::MissingChunks)),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(got.unwrap(), 2);
    }

    #[tokio::test]
    async fn other_refusals_and_endless_collections_are_reported() {
        let tries = AtomicUsize::new(0);
        let got: Result<()> = resend_if_collected(|| async {
            tries.fetch_add(1, Ordering::Relaxed);
            Err(refusal(ErrorCode::Busy))
        })
        .await;
        assert!(got.is_err());
        assert_eq!(tries.load(Ordering::Relaxed), 1);
        tries.store(0, Ordering::Relaxed);
        let got: Result<()> = resend_if_collected(|| async {
            tries.fetch_add(1, Ordering::Relaxed);
            Err(refusal(ErrorCode::MissingChunks))
        })
        .await;
        assert!(collected(&got.unwrap_err()));
        assert_eq!(tries.load(Ordering::Relaxed), ROUNDS_AFTER_COLLECTION);
    }
}
