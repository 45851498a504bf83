//! Reads of many chunks at once (`get_many` and `copy_frames` of the pack store, and
//! the frames of `get_packed`), for the bulk readers: replication, export, fsck, a
//! mount's read-ahead.
//!
//! The chunks are looked up once, put in the order they lie on disk and cut into
//! pieces of a few MiB; each piece is read and verified on the blocking pool, several
//! pieces at a time (a read of fewer pieces goes a chunk at a time, as gets), so decompressing and hashing use every core while the caller
//! consumes what came. Within a piece, neighbouring records of one segment (a gap of
//! at most [`GAP`] between them) come in one positioned read.
//!
//! # Invariants
//! - Every id asked for is answered exactly once, in no particular order.
//! - A frame is answered only after its record header names the chunk, the record's
//!   checksum matches and (sealed) it opens; `get_many` also decodes it and checks the
//!   content hashes to the id, as a single `get` does.
//! - The lookups may be older than the reads (a caller consumes the stream at its own
//!   pace): a run that cannot be read as a whole (its segment compacted away, a record
//!   cut short) or a record that fails its checks (deleted and its hole punched, or
//!   damaged) is read again alone, looked up afresh, so it answers what a single
//!   `get` would then.
//! - Memory stays bounded: at most [`IN_FLIGHT`] pieces of at most [`PIECE_CHUNKS`]
//!   chunks (decompressed) and about [`PIECE_BYTES`] of records.

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::index::Loc;
use super::{blocking, on_pool, Inner, Kept, PackStore};
use crate::{platform, ChunkId, StoreError};

/// Bytes of records per piece: the unit of work handed to the blocking pool.
const PIECE_BYTES: u64 = 4 << 20;
/// Records per piece at most: with chunks of up to 256 KiB, 16 MiB decompressed.
const PIECE_CHUNKS: usize = 64;
/// Pieces read and verified at once.
pub(super) const IN_FLIGHT: usize = 4;
/// Unused bytes between two records read through rather than split into two reads
/// (a record deleted or written by another writer in between).
const GAP: u64 = 64 << 10;
/// One read spans at most this much, gaps included.
const MAX_RUN: u64 = 256 << 10;

/// A chunk to read: its id, the name it is kept under, and where.
pub(super) type Item = (ChunkId, ChunkId, Loc);
/// What becomes of a kept record read for a chunk (on the blocking pool).
pub(super) type Finish<T> =
    fn(&PackStore, &ChunkId, Result<Kept, StoreError>) -> Result<T, StoreError>;

/// `ids` read as described above, each record finished by `finish`.
pub(super) fn read_many<T: Send + 'static>(
    store: PackStore,
    ids: Vec<ChunkId>,
    finish: Finish<T>,
) -> BoxStream<'static, (ChunkId, Result<T, StoreError>)> {
    stream::once(async move {
        let (found, missed) = look_up(&store, ids).await;
        let answered = missed.into_iter().map(|(id, e)| (id, Err(e))).collect();
        read_found(store, found, answered, finish)
    })
    .flatten()
    .boxed()
}

/// Where each of `ids` is, looked up at once on the blocking pool; those the store
/// lacks (or whose lookup failed) apart, with their errors.
pub(super) async fn look_up(
    store: &PackStore,
    ids: Vec<ChunkId>,
) -> (Vec<Item>, Vec<(ChunkId, StoreError)>) {
    let named: Vec<(ChunkId, ChunkId)> = ids.into_iter().map(|id| (id, store.name(&id))).collect();
    let Ok(looked) = blocking(&store.inner, move |s| {
        Ok(named
            .into_iter()
            .map(|(id, name)| (id, name, s.lookup(&name)))
            .collect::<Vec<_>>())
    })
    .await
    else {
        unreachable!("each lookup is answered in the list")
    };
    let mut found: Vec<Item> = Vec::with_capacity(looked.len());
    let mut missed = Vec::new();
    for (id, name, loc) in looked {
        match loc {
            Ok(Some(loc)) => found.push((id, name, loc)),
            Ok(None) => missed.push((id, StoreError::NotFound(id))),
            Err(e) => missed.push((id, store.unname_error(e))),
        }
    }
    (found, missed)
}

/// The chunks `found` (looked up) read in disk order as described above, each record
/// finished by `finish`, after the answers `answered` already has.
pub(super) fn read_found<T: Send + 'static>(
    store: PackStore,
    mut found: Vec<Item>,
    answered: Vec<(ChunkId, Result<T, StoreError>)>,
    finish: Finish<T>,
) -> BoxStream<'static, (ChunkId, Result<T, StoreError>)> {
    found.sort_unstable_by_key(|(_, _, loc)| (loc.seg, loc.offset));
    let pieces = pieces(found);
    if pieces.len() < IN_FLIGHT {
        // A small read (a window of a streamed file, a batch of fsck) goes a chunk at a
        // time on this thread, as gets would, each answer passed on as it comes:
        // holding a piece's frames and contents together costs memory on a daemon
        // streaming many files, and gains nothing at this size.
        let one = move |(id, name, _): Item| {
            let store = store.clone();
            async move {
                let kept = blocking(&store.inner, move |s| s.read_named(&id, &name)).await;
                (id, finish(&store, &id, kept))
            }
        };
        let each = stream::iter(pieces.into_iter().flatten()).map(one);
        return stream::iter(answered)
            .chain(each.buffer_unordered(crate::READ_AHEAD))
            .boxed();
    }
    let pieces = stream::iter(pieces).map(move |piece| {
        let store = store.clone();
        on_pool(move || read_piece(&store, piece, finish))
    });
    stream::iter(answered)
        .chain(pieces.buffer_unordered(IN_FLIGHT).flat_map(stream::iter))
        .boxed()
}

/// `found`, in disk order, cut into pieces of about [`PIECE_BYTES`].
fn pieces(found: Vec<Item>) -> Vec<Vec<Item>> {
    let mut out = Vec::new();
    let (mut piece, mut bytes) = (Vec::new(), 0u64);
    for item in found {
        bytes += item.2.live_len();
        piece.push(item);
        if bytes >= PIECE_BYTES || piece.len() >= PIECE_CHUNKS {
            out.push(std::mem::take(&mut piece));
            bytes = 0;
        }
    }
    if !piece.is_empty() {
        out.push(piece);
    }
    out
}

/// Reads and finishes one piece (in disk order), a run of neighbours at a time.
fn read_piece<T>(
    store: &PackStore,
    piece: Vec<Item>,
    finish: Finish<T>,
) -> Vec<(ChunkId, Result<T, StoreError>)> {
    let inner: &Inner = &store.inner;
    let mut out = Vec::with_capacity(piece.len());
    let mut rest = &piece[..];
    while let Some(&(id, name, first)) = rest.first() {
        if first.member.is_some() {
            // A block is read and decoded once for its members (the cache of
            // decoded blocks), not once per run.
            let kept = inner
                .read(&name, first)
                .or_else(|_| inner.read_named(&id, &name));
            out.push((id, finish(store, &id, kept)));
            rest = &rest[1..];
            continue;
        }
        let mut end = first.end();
        let n = rest
            .iter()
            .take_while(|(_, _, loc)| {
                let near = loc.member.is_none()
                    && loc.seg == first.seg
                    && loc.offset <= end + GAP
                    && loc.end().max(end) - first.offset <= MAX_RUN;
                if near {
                    end = end.max(loc.end());
                }
                near
            })
            .count()
            .max(1);
        end = end.max(first.end());
        let (run, after) = rest.split_at(n);
        rest = after;
        let read = inner.reader(first.seg).ok().and_then(|file| {
            platform::read_exact_at(&file, first.offset, (end - first.offset) as usize)
                .ok()
                .map(Bytes::from)
        });
        for &(id, name, loc) in run {
            let kept = read
                .as_ref()
                .and_then(|buf| {
                    let at = (loc.offset - first.offset) as usize;
                    let record = buf.slice(at..at + loc.record_len() as usize);
                    inner
                        .check_record(&name, loc, record)
                        .ok()
                        .map(Kept::Record)
                })
                .map_or_else(|| inner.read_named(&id, &name), Ok);
            out.push((id, finish(store, &id, kept)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkStore, ChunkStoreExt};

    fn item(seg: u32, offset: u64, frame_len: u32) -> Item {
        let id = ChunkId::of(&offset.to_le_bytes());
        (id, id, Loc::record(seg, offset, frame_len))
    }

    #[test]
    fn pieces_keep_disk_order_and_stay_near_their_size() {
        let found: Vec<Item> = (0..3000u64).map(|i| item(1, i * 5000, 4000)).collect();
        let cut = pieces(found.clone());
        assert!(cut.iter().all(|p| p.len() <= PIECE_CHUNKS));
        assert!(cut
            .iter()
            .all(|p| p.iter().map(|i| i.2.record_len()).sum::<u64>() < PIECE_BYTES + 5000));
        let flat: Vec<Item> = cut.into_iter().flatten().collect();
        assert_eq!(flat, found);
        assert!(pieces(Vec::new()).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_whose_records_moved_is_read_again_from_where_they_are_now() {
        let dir = tempfile::tempdir().unwrap();
        let opts = super::super::PackOptions {
            segment_bytes: 64 << 10,
            ..Default::default()
        };
        let store = PackStore::open(dir.path().join("s"), opts).unwrap();
        let data: Vec<Vec<u8>> = (0..60u32)
            .map(|i| {
                let mut noise = vec![0u8; 8000];
                blake3::Hasher::new()
                    .update(&i.to_le_bytes())
                    .finalize_xof()
                    .fill(&mut noise);
                noise
            })
            .collect();
        let mut ids = Vec::new();
        for d in &data {
            ids.push(store.put_data(d).await.unwrap());
        }
        store.sync().await.unwrap();
        let before: Vec<Item> = ids
            .iter()
            .map(|id| (*id, *id, store.inner.lookup(id).unwrap().unwrap()))
            .collect();
        // Most chunks deleted, so compaction moves the rest and removes their segments.
        for (_, id) in ids.iter().enumerate().filter(|(i, _)| i % 4 != 0) {
            store.delete(id).await.unwrap();
        }
        store.sync().await.unwrap();
        assert!(store.compact().await.unwrap().segments > 0);
        let kept: Vec<Item> = before
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == 0)
            .map(|(_, item)| item)
            .collect();
        let moved = kept
            .iter()
            .filter(|(id, _, loc)| store.inner.lookup(id).unwrap() != Some(*loc))
            .count();
        assert!(moved > 0, "compaction moved some records");
        let answers = read_piece(&store, kept.clone(), |s, id, k| s.loaded(id, k));
        assert_eq!(answers.len(), kept.len());
        for ((id, answer), (asked, _, _)) in answers.into_iter().zip(&kept) {
            assert_eq!(id, *asked);
            let i = ids.iter().position(|x| *x == id).unwrap();
            assert_eq!(answer.expect("read where it is now").data[..], data[i][..]);
        }
        // A chunk deleted after the lookup, its hole punched: missing, not damaged.
        let now: Vec<Item> = kept
            .iter()
            .map(|(id, _, _)| (*id, *id, store.inner.lookup(id).unwrap().unwrap()))
            .collect();
        let gone = now[now.len() / 2].0;
        store.delete(&gone).await.unwrap();
        store.sync().await.unwrap();
        for (id, answer) in read_piece(&store, now, |s, id, k| s.loaded(id, k)) {
            if id == gone {
                assert!(matches!(answer, Err(StoreError::NotFound(_))), "{answer:?}");
            } else {
                assert!(answer.is_ok(), "{id}: {answer:?}");
            }
        }
    }
}
