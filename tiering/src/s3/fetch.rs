//! Reads from S3 by pack. In bulk: the chunks asked for are grouped by the pack
//! holding them, neighbouring frames are fetched in one ranged GET ([`plan`]), several
//! GETs are in flight, and frames are verified on the blocking pool as their bytes
//! arrive. One at a time: a read takes [`READ_AROUND`] bytes of the pack from the
//! frame on and keeps the last few such ranges ([`Around`]), because whoever reads one
//! chunk cold (a mount walking a tree, a daemon serving file after file) mostly reads
//! its neighbours next, and packs keep the order in which chunks were written.
//!
//! # Invariants
//! - Every id given is answered exactly once: a range that fails answers each of its
//!   frames with the failure (the pack's name in it), never silently drops one.
//! - Memory is bounded whatever the number of ids: at most [`IN_FLIGHT`] ranges of at
//!   most [`MAX_RANGE`] bytes are held, and frames are decoded [`BATCH`] at a time as
//!   the reader takes them.

use crate::records::PackLoc;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use fvfs_cas::{ChunkId, ChunkStream, Loaded, StoreError};

use super::{lock, pack_key, Bucket, S3Store};

/// Largest range fetched in one GET: a whole pack fits.
pub const MAX_RANGE: u64 = super::PACK_MAX as u64 + (4 << 20);
/// Unwanted bytes between two wanted frames that are still fetched rather than
/// starting a second request: a GET's round trip costs more than this much transfer.
pub const GAP: u64 = 1 << 20;
/// Ranged GETs in flight at once.
pub const IN_FLIGHT: usize = 6;
/// Frames decoded per task on the blocking pool.
const BATCH: usize = 16;
/// Bytes of a pack read from a single chunk's frame on.
pub const READ_AROUND: u64 = 1 << 20;
/// Ranges kept by [`Around`].
const AROUND_KEPT: usize = 32;

/// The last ranges read around single chunks, newest last.
#[derive(Default)]
pub struct Around(std::collections::VecDeque<([u8; 32], u64, Bytes)>);

impl Around {
    /// The frame at `loc`, if a kept range holds it whole.
    fn frame(&self, loc: &PackLoc) -> Option<Bytes> {
        self.0.iter().rev().find_map(|(pack, start, bytes)| {
            let at = loc.offset.checked_sub(*start)? as usize;
            (*pack == loc.pack && at + loc.len as usize <= bytes.len())
                .then(|| bytes.slice(at..at + loc.len as usize))
        })
    }

    fn keep(&mut self, pack: [u8; 32], start: u64, bytes: Bytes) {
        if self.0.len() == AROUND_KEPT {
            self.0.pop_front();
        }
        self.0.push_back((pack, start, bytes));
    }
}

/// One GET: bytes `start..end` of `pack`, holding the frames listed (offsets in the pack).
#[derive(Debug, PartialEq, Eq)]
pub struct Range {
    pub pack: [u8; 32],
    pub start: u64,
    pub end: u64,
    pub frames: Vec<(ChunkId, u64, u32)>,
}

/// The GETs that fetch `wanted`: per pack in offset order, neighbours closer than
/// [`GAP`] merged while a range stays under [`MAX_RANGE`].
pub fn plan(mut wanted: Vec<(ChunkId, PackLoc)>) -> Vec<Range> {
    wanted.sort_unstable_by_key(|(_, l)| (l.pack, l.offset));
    let mut ranges: Vec<Range> = Vec::new();
    for (id, loc) in wanted {
        let end = loc.offset + u64::from(loc.len);
        match ranges.last_mut() {
            Some(r)
                if r.pack == loc.pack
                    && loc.offset <= r.end + GAP
                    && end.max(r.end) - r.start <= MAX_RANGE =>
            {
                r.end = r.end.max(end);
                r.frames.push((id, loc.offset, loc.len));
            }
            _ => ranges.push(Range {
                pack: loc.pack,
                start: loc.offset,
                end,
                frames: vec![(id, loc.offset, loc.len)],
            }),
        }
    }
    ranges
}

impl S3Store {
    /// Chunk `id` at `loc`: from a range read before, or with a GET of
    /// [`READ_AROUND`] bytes from its frame on (S3 cuts a range at the pack's end).
    pub(super) async fn fetch_one(&self, id: &ChunkId, loc: PackLoc) -> Result<Loaded, StoreError> {
        let kept = lock(&self.around).frame(&loc);
        if let Some(frame) = kept {
            return self.bucket.open_frame(id, frame);
        }
        let pack = hex::encode(loc.pack);
        let want = u64::from(loc.len).max(READ_AROUND);
        let bytes = self
            .bucket
            .get_range(
                &pack_key(&loc.pack),
                Some(format!("bytes={}-{}", loc.offset, loc.offset + want - 1)),
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                id: *id,
                reason: format!("its pack {pack} is missing from S3"),
            })?;
        let Some(frame) = bytes
            .get(..loc.len as usize)
            .map(|_| bytes.slice(..loc.len as usize))
        else {
            return Err(StoreError::Corrupt {
                id: *id,
                reason: format!("pack {pack} is shorter than its index says"),
            });
        };
        lock(&self.around).keep(loc.pack, loc.offset, bytes);
        self.bucket.open_frame(id, frame)
    }

    /// Answers `ids` by pack (see the module doc); frames still in memory and ids with
    /// no location are answered first.
    pub(super) fn fetch_many(&self, ids: Vec<ChunkId>) -> ChunkStream<'_> {
        let mut ready = Vec::new();
        let mut wanted = Vec::new();
        for id in ids {
            if let Some(frame) = self.mem().frame(&id) {
                ready.push((id, self.bucket.open_frame(&id, frame)));
                continue;
            }
            match self.locs.get(&id) {
                Ok(Some(loc)) => wanted.push((id, loc)),
                Ok(None) => ready.push((id, Err(StoreError::NotFound(id)))),
                Err(e) => ready.push((id, Err(e))),
            }
        }
        let bucket = self.bucket.clone();
        let opener = self.bucket.clone();
        let fetched = stream::iter(plan(wanted))
            // Spawned, so that every GET in flight progresses while the reader is
            // busy with the frames of another.
            .map(move |range| {
                let task = tokio::spawn(fetch_range(bucket.clone(), range));
                async move {
                    task.await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .flat_map(move |frames| {
                let opener = opener.clone();
                stream::iter(frames)
                    .map(move |batch| {
                        let opener = opener.clone();
                        async move {
                            tokio::task::spawn_blocking(move || decode(&opener, batch))
                                .await
                                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                        }
                    })
                    .buffered(2)
                    .flat_map(stream::iter)
            });
        stream::iter(ready).chain(fetched).boxed()
    }
}

/// One GET; its frames in batches for decoding, or each answered with the failure.
async fn fetch_range(bucket: Bucket, r: Range) -> Vec<Vec<Fetched>> {
    let key = pack_key(&r.pack);
    let pack = hex::encode(r.pack);
    let got = bucket
        .get_range(
            &key,
            Some(format!("bytes={}-{}", r.start, r.end.max(r.start + 1) - 1)),
        )
        .await;
    let fetched: Vec<Fetched> = match got {
        Ok(Some(body)) => r
            .frames
            .into_iter()
            .map(|(id, offset, len)| {
                let at = (offset - r.start) as usize;
                match body.get(at..at + len as usize) {
                    Some(_) => Fetched::Frame(id, body.slice(at..at + len as usize), pack.clone()),
                    None => Fetched::Failed(
                        id,
                        StoreError::Corrupt {
                            id,
                            reason: format!("pack {pack} is shorter than its index says"),
                        },
                    ),
                }
            })
            .collect(),
        Ok(None) => r
            .frames
            .into_iter()
            .map(|(id, ..)| {
                let reason = format!("its pack {pack} is missing from S3");
                Fetched::Failed(id, StoreError::Corrupt { id, reason })
            })
            .collect(),
        Err(e) => {
            let e = e.to_string();
            r.frames
                .into_iter()
                .map(|(id, ..)| Fetched::Failed(id, StoreError::Unavailable(e.clone())))
                .collect()
        }
    };
    let mut batches = Vec::with_capacity(fetched.len().div_ceil(BATCH));
    let mut fetched = fetched.into_iter().peekable();
    while fetched.peek().is_some() {
        batches.push(fetched.by_ref().take(BATCH).collect());
    }
    batches
}

/// A frame fetched (with the name of its pack, for errors), or why it was not.
enum Fetched {
    Frame(ChunkId, Bytes, String),
    Failed(ChunkId, StoreError),
}

fn decode(bucket: &Bucket, batch: Vec<Fetched>) -> Vec<(ChunkId, Result<Loaded, StoreError>)> {
    batch
        .into_iter()
        .map(|f| match f {
            Fetched::Frame(id, frame, pack) => {
                let r = bucket.open_frame(&id, frame).map_err(|e| match e {
                    StoreError::Corrupt { id, reason } => StoreError::Corrupt {
                        id,
                        reason: format!("{reason} (in pack {pack})"),
                    },
                    other => other,
                });
                (id, r)
            }
            Fetched::Failed(id, e) => (id, Err(e)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(pack: u8, offset: u64, len: u32) -> PackLoc {
        PackLoc {
            pack: [pack; 32],
            offset,
            len,
        }
    }

    #[test]
    fn neighbours_share_a_get_and_far_frames_or_other_packs_do_not() {
        let id = |n: u8| ChunkId::of(&[n]);
        let ranges = plan(vec![
            (id(3), loc(1, 5000, 100)),
            (id(1), loc(1, 0, 1000)),
            (id(2), loc(1, 1000 + GAP, 500)),
            (id(4), loc(1, 10 * GAP, 10)),
            (id(5), loc(2, 0, 10)),
        ]);
        let shape: Vec<_> = ranges
            .iter()
            .map(|r| (r.pack[0], r.start, r.end, r.frames.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (1, 0, 1500 + GAP, 3),
                (1, 10 * GAP, 10 * GAP + 10, 1),
                (2, 0, 10, 1)
            ]
        );
    }

    #[test]
    fn a_range_never_exceeds_the_cap() {
        let step = 1 << 20;
        let wanted: Vec<_> = (0..100u64)
            .map(|i| (ChunkId::of(&i.to_le_bytes()), loc(7, i * step, step as u32)))
            .collect();
        let ranges = plan(wanted);
        assert!(ranges.iter().all(|r| r.end - r.start <= MAX_RANGE));
        assert_eq!(ranges.iter().map(|r| r.frames.len()).sum::<usize>(), 100);
        assert_eq!(ranges.len(), 100u64.div_ceil(MAX_RANGE / step) as usize);
    }
}
