//! Reads from S3 by pack span. A pack is read in aligned [`SPAN`]s: what a read
//! needs is rounded out to whole spans, the consecutive spans of a pack that one read
//! needs are fetched in one ranged GET (several GETs in flight, each on a task of its
//! own, so it progresses while the reader decodes another), and the last [`KEPT`]
//! bytes of spans are kept for the reads that follow: whoever reads a few chunks cold
//! (a mount walking a tree, a daemon serving file after file, a read-ahead) mostly
//! reads their neighbours next, and packs keep the order in which chunks were written.
//! A span already being fetched is waited for, not fetched again. Frames, and members
//! of blocks (chunks compressed together: `open`), are opened and verified on the
//! blocking pool as their bytes arrive. A read passing through (an export's) takes
//! what is kept but keeps nothing its own GETs bring. (A span is a unit of reading;
//! a block is a unit of compression, at most a few MiB, read whole within its spans.)
//!
//! # Invariants
//! - Every id given is answered exactly once: a GET that fails answers each frame that
//!   needed it with the failure (the pack's name in it), never silently drops one.
//! - Memory is bounded whatever the number of ids of one read: at most [`IN_FLIGHT`]
//!   groups of frames wait on GETs of at most [`MAX_SPANS`] spans each (a whole
//!   pack), plus the [`KEPT`] bytes (a GET's body is cut into spans as it arrives,
//!   each its own allocation, so none keeps a whole body alive, and its bytes are
//!   copied once); a planned GET that nobody waits for any more
//!   is forgotten. A read that waits for another read's GETs holds their bodies until
//!   it takes its frames from them: readers of the daemon ask for at most
//!   `MAX_READ_IDS` chunks at a time, and export reads alone in its process.
//! - Packs are immutable (named by the hash of their bytes), so a kept span is never
//!   stale; every frame is verified when it is opened anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::records::PackLoc;
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use futures::stream::{self, StreamExt};
use fvfs_cas::{ChunkId, ChunkStream, Loaded, StoreError};

use super::open::Opener;
use super::{lock, pack_key, S3Store};

/// The unit a pack is read in: a GET of a few bytes costs a round trip and the
/// server's own span reads, so nearly as much as this many bytes.
pub const SPAN: u64 = 4 << 20;
/// Most spans fetched in one GET: a whole pack with its index.
pub const MAX_SPANS: u64 = (super::PACK_MAX as u64 + (4 << 20)).div_ceil(SPAN);
/// Bytes of spans kept for the reads that follow, least recently used dropped first.
/// A walk of a tree reads several packs at once (they interleave what the ingest
/// workers wrote side by side): a cold mount's `tar` of the Rust sysroot fetched 1.9x
/// the bucket's bytes with 64 MiB kept, 1.5x with 128 MiB, each byte once with this.
pub const KEPT: u64 = 256 << 20;
/// Groups of frames whose GETs are in flight at once.
pub const IN_FLIGHT: usize = 6;
/// Frames decoded per task on the blocking pool.
const BATCH: usize = 16;
/// Planned GETs remembered before those nobody waits for are swept out.
const PENDING_SWEEP: usize = 4096;

/// A span: a pack's name and the span's number in it.
type Key = ([u8; 32], u64);

/// What one GET brought: spans `first..` of a pack (the last may be short, where the
/// pack ends), or why not.
enum Got {
    /// Spans from the first one's number on, each its own allocation.
    Spans(u64, Vec<Bytes>),
    Missing,
    Failed(String),
}

impl Got {
    /// Span `n`, if this GET brought any of it.
    fn span(&self, n: u64) -> Option<Bytes> {
        let Got::Spans(first, spans) = self else {
            return None;
        };
        let span = spans.get(usize::try_from(n.checked_sub(*first)?).ok()?)?;
        (!span.is_empty()).then(|| span.clone())
    }
}

/// A GET, started when first awaited, shared by every read that needs its spans.
type Fetch = Shared<Getting>;
type Getting = BoxFuture<'static, Arc<Got>>;

/// Spans kept and GETs planned, shared by the reads of one store.
#[derive(Default)]
pub struct Spans {
    /// Newest last.
    kept: VecDeque<(Key, Bytes)>,
    bytes: u64,
    /// The GET bringing each span, by its number; weak, so a GET whose reads all went
    /// away is not kept alive by this map.
    pending: HashMap<Key, (u64, WeakShared<Getting>)>,
    next: u64,
}

impl Spans {
    fn kept(&mut self, key: &Key) -> Option<Bytes> {
        let i = self.kept.iter().position(|(k, _)| k == key)?;
        let entry = self.kept.remove(i)?;
        let bytes = entry.1.clone();
        self.kept.push_back(entry);
        Some(bytes)
    }

    fn keep(&mut self, key: Key, bytes: Bytes) {
        if self.kept.iter().any(|(k, _)| *k == key) {
            return;
        }
        self.bytes += bytes.len() as u64;
        self.kept.push_back((key, bytes));
        while self.bytes > KEPT {
            let Some((_, old)) = self.kept.pop_front() else {
                break;
            };
            self.bytes -= old.len() as u64;
        }
    }

    fn pending(&self, key: &Key) -> Option<(u64, Fetch)> {
        let (no, weak) = self.pending.get(key)?;
        Some((*no, weak.upgrade()?))
    }
}

/// The spans frame `loc` lies in.
fn spans_of(loc: &PackLoc) -> std::ops::RangeInclusive<u64> {
    let last = loc.offset + u64::from(loc.len).max(1) - 1;
    loc.offset / SPAN..=last / SPAN
}

/// The GETs that fetch `missing` spans (sorted): runs of consecutive spans of one
/// pack, each at most [`MAX_SPANS`] long, as (pack, first, last).
pub fn runs(missing: &[Key]) -> Vec<([u8; 32], u64, u64)> {
    let mut runs: Vec<([u8; 32], u64, u64)> = Vec::new();
    for &(pack, n) in missing {
        match runs.last_mut() {
            Some((p, first, last)) if *p == pack && n == *last + 1 && n - *first < MAX_SPANS => {
                *last = n;
            }
            _ => runs.push((pack, n, n)),
        }
    }
    runs
}

/// Frames answered together: those needing the same GETs.
struct Group {
    /// Spans the frames need that were kept when the read was planned.
    kept: Vec<(Key, Bytes)>,
    /// The GETs bringing the others, as (pack, first span, last span).
    waits: Vec<([u8; 32], u64, u64, Fetch)>,
    frames: Vec<(ChunkId, PackLoc)>,
}

impl Group {
    /// Awaits the GETs, then cuts each frame out of its spans (batches for decoding).
    async fn resolve(self) -> Vec<Vec<Fetched>> {
        let got: Vec<_> = futures::future::join_all(
            self.waits
                .into_iter()
                .map(|(pack, first, last, fetch)| fetch.map(move |g| (pack, first, last, g))),
        )
        .await;
        let span = |pack: [u8; 32], n: u64| -> Result<Bytes, Lack> {
            if let Some((_, b)) = self.kept.iter().find(|(k, _)| *k == (pack, n)) {
                return Ok(b.clone());
            }
            let (.., g) = got
                .iter()
                .find(|(p, first, last, _)| *p == pack && (*first..=*last).contains(&n))
                .ok_or(Lack::Short)?;
            match &**g {
                Got::Spans(..) => g.span(n).ok_or(Lack::Short),
                Got::Missing => Err(Lack::Pack),
                Got::Failed(e) => Err(Lack::Failed(e.clone())),
            }
        };
        let fetched: Vec<Fetched> = self
            .frames
            .into_iter()
            .map(|(id, loc)| {
                let pack = hex::encode(loc.pack);
                let reason = match cut(loc, |n| span(loc.pack, n)) {
                    Ok(frame) => return Fetched::Frame(id, frame, loc),
                    Err(Lack::Failed(e)) => return Fetched::Failed(id, StoreError::Unavailable(e)),
                    Err(Lack::Short) => format!("pack {pack} is shorter than its index says"),
                    Err(Lack::Pack) => format!("its pack {pack} is missing from S3"),
                };
                Fetched::Failed(id, StoreError::Corrupt { id, reason })
            })
            .collect();
        let mut batches = Vec::with_capacity(fetched.len().div_ceil(BATCH));
        let mut fetched = fetched.into_iter().peekable();
        while fetched.peek().is_some() {
            batches.push(fetched.by_ref().take(BATCH).collect());
        }
        batches
    }
}

/// Why a frame's bytes are not there.
#[derive(Debug, PartialEq)]
enum Lack {
    /// The pack ends before the frame does.
    Short,
    /// The pack is not in the bucket.
    Pack,
    /// The GET failed (S3's words).
    Failed(String),
}

/// Frame `loc` cut out of its spans (`span(n)` gives span `n`): without a copy when
/// it lies in one span.
fn cut(loc: PackLoc, span: impl Fn(u64) -> Result<Bytes, Lack>) -> Result<Bytes, Lack> {
    let (start, end) = (loc.offset, loc.offset + u64::from(loc.len));
    let mut parts = Vec::new();
    for n in spans_of(&loc) {
        let b = span(n)?;
        let from = start.saturating_sub(n * SPAN) as usize;
        let to = (end - n * SPAN).min(SPAN) as usize;
        parts.push(
            b.get(from..to)
                .map(|_| b.slice(from..to))
                .ok_or(Lack::Short)?,
        );
    }
    Ok(match parts.len() {
        1 => parts.pop().unwrap_or_default(),
        _ => Bytes::from(parts.concat()),
    })
}

impl S3Store {
    /// Answers `ids` by pack span (see the module doc); frames still in memory and
    /// ids with no location are answered first.
    /// With `keep` false (a read passing through, such as an export's), the spans its
    /// own GETs bring are not kept for later reads: it neither grows this process by
    /// [`KEPT`] nor pushes out what the daemon's other readers keep.
    pub(super) fn fetch_many(&self, ids: Vec<ChunkId>, keep: bool) -> ChunkStream<'_> {
        let mut ready = Vec::new();
        let mut wanted = Vec::new();
        for id in ids {
            if let Some((stored, member)) = self.mem().frame(&id) {
                let member = member.map(|index| (index, None));
                ready.push((id, self.opener.open(&id, stored, member)));
                continue;
            }
            match self.locs.get(&id) {
                // Far from any real pack size; the span arithmetic stays in range.
                Ok(Some(loc)) if loc.offset < u64::MAX / 2 => wanted.push((id, loc)),
                Ok(Some(_)) => {
                    let reason = "its S3 location is out of range".into();
                    ready.push((id, Err(StoreError::Corrupt { id, reason })));
                }
                Ok(None) => ready.push((id, Err(StoreError::NotFound(id)))),
                Err(e) => ready.push((id, Err(e))),
            }
        }
        let opener = self.opener.clone();
        let fetched = stream::iter(self.plan(wanted, keep))
            .map(Group::resolve)
            .buffer_unordered(IN_FLIGHT)
            .flat_map(move |batches| {
                let opener = opener.clone();
                stream::iter(batches)
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

    /// The frames of `wanted` in groups needing the same GETs, in pack order: spans
    /// kept are taken, spans being fetched are waited for, and the others get GETs of
    /// their own (planned here, started when a group first awaits them).
    fn plan(&self, mut wanted: Vec<(ChunkId, PackLoc)>, keep: bool) -> Vec<Group> {
        wanted.sort_unstable_by_key(|(_, l)| (l.pack, l.offset));
        let mut spans = lock(&self.spans);
        if spans.pending.len() > PENDING_SWEEP {
            spans.pending.retain(|_, (_, w)| w.upgrade().is_some());
        }
        let mut kept: HashMap<Key, Bytes> = HashMap::new();
        let mut waits: HashMap<Key, u64> = HashMap::new();
        let mut fetches: HashMap<u64, ([u8; 32], u64, u64, Fetch)> = HashMap::new();
        let mut missing = Vec::new();
        for (_, loc) in &wanted {
            for n in spans_of(loc) {
                let key = (loc.pack, n);
                if kept.contains_key(&key)
                    || waits.contains_key(&key)
                    || missing.last() == Some(&key)
                {
                    continue;
                }
                if let Some(b) = spans.kept(&key) {
                    kept.insert(key, b);
                } else if let Some((no, fetch)) = spans.pending(&key) {
                    waits.insert(key, no);
                    // Of another read's GET, the extent of the spans this read needs
                    // is all it uses (to find them).
                    let f = fetches.entry(no).or_insert((loc.pack, n, n, fetch));
                    f.1 = f.1.min(n);
                    f.2 = f.2.max(n);
                } else {
                    missing.push(key);
                }
            }
        }
        // Sorted already, but for an id asked twice.
        missing.sort_unstable();
        missing.dedup();
        for (pack, first, last) in runs(&missing) {
            let no = spans.next;
            spans.next += 1;
            let fetch = self.fetch(pack, first, last, no, keep);
            for n in first..=last {
                if let Some(weak) = fetch.downgrade() {
                    spans.pending.insert((pack, n), (no, weak));
                }
                waits.insert((pack, n), no);
            }
            fetches.insert(no, (pack, first, last, fetch));
        }
        drop(spans);

        let mut groups: Vec<Group> = Vec::new();
        let mut by_waits: HashMap<Vec<u64>, usize> = HashMap::new();
        for (id, loc) in wanted {
            let mut nos: Vec<u64> = spans_of(&loc)
                .filter_map(|n| waits.get(&(loc.pack, n)).copied())
                .collect();
            nos.sort_unstable();
            nos.dedup();
            let g = *by_waits.entry(nos.clone()).or_insert_with(|| {
                groups.push(Group {
                    kept: Vec::new(),
                    waits: nos.iter().map(|no| fetches[no].clone()).collect(),
                    frames: Vec::new(),
                });
                groups.len() - 1
            });
            let group = &mut groups[g];
            for n in spans_of(&loc) {
                if let Some(b) = kept.get(&(loc.pack, n)) {
                    if !group.kept.iter().any(|(k, _)| *k == (loc.pack, n)) {
                        group.kept.push(((loc.pack, n), b.clone()));
                    }
                }
            }
            group.frames.push((id, loc));
        }
        groups
    }

    /// The GET of spans `first..=last` of `pack`, on a task of its own once awaited;
    /// what it brings is kept for later reads if `keep`.
    fn fetch(&self, pack: [u8; 32], first: u64, last: u64, no: u64, keep: bool) -> Fetch {
        let bucket = self.bucket.clone();
        let spans = Arc::clone(&self.spans);
        async move {
            let task = tokio::spawn(async move {
                let range = format!("bytes={}-{}", first * SPAN, (last + 1) * SPAN - 1);
                let got = match bucket
                    .get_pieces(&pack_key(&pack), Some(range), SPAN as usize)
                    .await
                {
                    Ok(Some(spans)) => Got::Spans(first, spans),
                    Ok(None) => Got::Missing,
                    Err(StoreError::Unavailable(why)) => Got::Failed(why),
                    Err(e) => Got::Failed(e.to_string()),
                };
                let mut spans = lock(&spans);
                for n in first..=last {
                    if spans.pending.get(&(pack, n)).is_some_and(|(k, _)| *k == no) {
                        spans.pending.remove(&(pack, n));
                    }
                    if let Some(b) = got.span(n).filter(|_| keep) {
                        spans.keep((pack, n), b);
                    }
                }
                Arc::new(got)
            });
            task.await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        }
        .boxed()
        .shared()
    }
}

/// The bytes fetched for a chunk (its frame or its span, at its location), or why
/// they were not.
enum Fetched {
    Frame(ChunkId, Bytes, PackLoc),
    Failed(ChunkId, StoreError),
}

fn decode(opener: &Opener, batch: Vec<Fetched>) -> Vec<(ChunkId, Result<Loaded, StoreError>)> {
    batch
        .into_iter()
        .map(|f| match f {
            Fetched::Frame(id, stored, loc) => {
                let member = loc.member.map(|m| (m.index, Some((loc.pack, loc.offset))));
                let r = opener.open(&id, stored, member).map_err(|e| match e {
                    StoreError::Corrupt { id, reason } => StoreError::Corrupt {
                        id,
                        reason: format!(
                            "{reason} (in pack {} at {})",
                            hex::encode(loc.pack),
                            loc.offset
                        ),
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
        PackLoc::frame([pack; 32], offset, len)
    }

    #[test]
    fn consecutive_spans_of_a_pack_share_a_get_and_far_blocks_or_other_packs_do_not() {
        let missing = [
            ([1; 32], 0),
            ([1; 32], 1),
            ([1; 32], 3),
            ([2; 32], 4),
            ([2; 32], 5),
        ];
        assert_eq!(
            runs(&missing),
            vec![([1; 32], 0, 1), ([1; 32], 3, 3), ([2; 32], 4, 5)]
        );
    }

    #[test]
    fn a_get_never_exceeds_the_cap() {
        let missing: Vec<Key> = (0..3 * MAX_SPANS + 1).map(|n| ([7; 32], n)).collect();
        let runs = runs(&missing);
        assert_eq!(runs.len(), 4);
        assert!(runs.iter().all(|(_, first, last)| last - first < MAX_SPANS));
        assert_eq!(
            runs.iter().map(|(_, f, l)| l - f + 1).sum::<u64>(),
            3 * MAX_SPANS + 1
        );
    }

    #[test]
    fn a_frame_is_cut_from_one_block_or_joined_across_two_and_a_short_pack_is_named() {
        let pack: Vec<u8> = (0..2 * SPAN + 100).map(|i| (i % 251) as u8).collect();
        let span = |n: u64| -> Result<Bytes, Lack> {
            let at = (n * SPAN) as usize;
            let end = pack.len().min(at + SPAN as usize);
            pack.get(at..end)
                .map(Bytes::copy_from_slice)
                .ok_or(Lack::Short)
        };
        let within = loc(1, 10, 1000);
        assert_eq!(&cut(within, span).unwrap()[..], &pack[10..1010]);
        let across = loc(1, SPAN - 300, 1000);
        let at = (SPAN - 300) as usize;
        assert_eq!(&cut(across, span).unwrap()[..], &pack[at..at + 1000]);
        assert_eq!(spans_of(&across), 0..=1);
        let past_the_end = loc(1, 2 * SPAN + 50, 100);
        assert_eq!(cut(past_the_end, span), Err(Lack::Short));
        assert_eq!(cut(within, |_| Err(Lack::Pack)), Err(Lack::Pack));
    }

    #[test]
    fn kept_blocks_are_bounded_and_the_least_recently_used_goes_first() {
        let mut spans = Spans::default();
        let full = Bytes::from(vec![0u8; SPAN as usize]);
        let count = KEPT / SPAN;
        for n in 0..count {
            spans.keep(([1; 32], n), full.clone());
        }
        assert!(spans.kept(&([1; 32], 0)).is_some(), "span 0 used again");
        spans.keep(([1; 32], count), full.clone());
        assert!(spans.bytes <= KEPT);
        assert!(spans.kept(&([1; 32], 0)).is_some(), "recently used: kept");
        assert!(
            spans.kept(&([1; 32], 1)).is_none(),
            "least recently used: dropped"
        );
        assert!(spans.kept(&([1; 32], count)).is_some());
    }
}
