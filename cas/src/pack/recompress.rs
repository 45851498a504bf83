//! Recompression, the idle rewrite: the frames of a segment, written at ingest's fast
//! zstd level, are packed into blocks (see `block`) at [`crate::frame::DENSE_LEVEL`] while
//! the machine is idle, one segment at a time: the chunks in the order they were
//! written (a file's chunks, then the next file's), about [`block::BLOCK_RAW`] raw
//! bytes per block. On the stable Rust sysroot that keeps 0.64 of the frames' bytes,
//! where recompressing each frame alone kept 0.89. When the caller names the chunks
//! of the newest version (an [`IdFilter`]), those are packed apart from the others,
//! so a restore of it decodes few bytes of older versions.
//!
//! The CPU-heavy part runs without `sync_lock`, so puts, syncs and deletes go on:
//! each live record of a segment that takes no puts is decoded, verified against its
//! id, packed and appended to a new file `NNNNNNNN.seg.new`, which nothing else lists
//! or reads. Then, with `sync_lock` held, as compaction does (see `compact`):
//! 1. the new file is fdatasynced, renamed to a segment, and the folder synced;
//! 2. one index update switches the locations that still name the old records (to
//!    members of the new blocks), counts each block's live members, marks the new
//!    segment dense, adjusts the totals and forgets the old segment, flushed durably;
//! 3. the old file is removed and the folder synced.
//!
//! A crash before 2 leaves a file the index does not know (removed at open, as is
//! any `.seg.new`); after 2, the old file is one. A chunk deleted or moved while it
//! was being rewritten is not counted in its block (a block left with no member, or
//! a frame copied for nothing, is punched after the next sync). A frame that the fast
//! level barely shrank (photos, archives) is copied as it was, and a lone chunk left
//! at the end is written as a dense frame; a segment that would shrink by less than
//! [`MIN_GAIN`] is only marked (photos, archives). Marked segments are not visited
//! again; segments marked by versions before blocks (their frames rewritten one by
//! one) are visited once more. Failpoints (`FVFS_FAILPOINT=recompress-N`) abort after
//! step N.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::compact::{self, Switch, Target};
use super::index::{self, Loc, Member};
use super::scan::{self, Found};
use super::{lock, record, Inner};
use crate::block;
use crate::kv::Batch;
use crate::{failpoint, platform, ChunkId, IdFilter, Recompressed, StoreError};

/// A segment is rewritten only when its live records shrink by at least this share.
const MIN_GAIN: f64 = 0.02;
/// A segment whose first records read shrank by less than a quarter of [`MIN_GAIN`] is
/// given up (only marked) after this many bytes of them: nothing of it was written,
/// and the rest is not read.
const GIVE_UP_AFTER: u64 = 16 << 20;
/// Records are written to the new file in pieces of about this size.
const WRITE_BYTES: usize = 1 << 20;
/// Frames encoded at once, split between the threads (about a second of one core).
const BATCH_BYTES: usize = 4 << 20;
const UNFINISHED: &str = ".seg.new";

pub(super) fn recompress(
    inner: &Inner,
    limit: u64,
    threads: usize,
    newest: Option<&IdFilter>,
) -> Result<Recompressed, StoreError> {
    let _one_at_a_time = lock(&inner.recompress_lock);
    let todo = candidates(inner)?;
    let mut done = Recompressed::default();
    let mut read = 0u64;
    for (i, (seg, len)) in todo.iter().enumerate() {
        if read >= limit && i > 0 {
            done.remaining = (todo.len() - i) as u64;
            break;
        }
        read += len;
        match rewrite(inner, *seg, threads, newest)? {
            Outcome::Rewritten { before, after } => {
                done.rewritten += 1;
                done.before_bytes += before;
                done.after_bytes += after;
            }
            Outcome::Kept => done.kept += 1,
            Outcome::Gone => {}
        }
    }
    Ok(done)
}

/// Removes the new files of recompressions a crash cut short (at open, before any
/// recompression can run).
pub(super) fn remove_unfinished(segments: &Path) -> Result<(), StoreError> {
    let mut removed = false;
    for entry in fs::read_dir(segments).map_err(|e| StoreError::io("list", segments, e))? {
        let entry = entry.map_err(|e| StoreError::io("list", segments, e))?;
        if entry.file_name().to_string_lossy().ends_with(UNFINISHED) {
            fs::remove_file(entry.path()).map_err(|e| StoreError::io("delete", entry.path(), e))?;
            removed = true;
        }
    }
    if removed {
        platform::sync_dir(segments).map_err(|e| StoreError::io("sync", segments, e))?;
    }
    Ok(())
}

/// The segments marked dense (by this version or one before blocks): they take no
/// puts again.
pub(super) fn dense(inner: &Inner) -> Result<HashSet<u32>, StoreError> {
    marked(inner, |_| true)
}

/// The segments the rewrite into blocks marked: it does not visit them again.
fn blocked(inner: &Inner) -> Result<HashSet<u32>, StoreError> {
    marked(inner, |mark| mark == index::BLOCKED)
}

/// The segments whose dense mark `keep` accepts.
fn marked(inner: &Inner, keep: fn(&[u8]) -> bool) -> Result<HashSet<u32>, StoreError> {
    let mut segs = HashSet::new();
    for pair in inner.kv.scan_prefix(&[index::DENSE_PREFIX], false) {
        let (k, mark) = pair.map_err(|e| inner.kv_err(e))?;
        if keep(&mark) {
            segs.extend(index::seg_of_key(&k));
        }
    }
    Ok(segs)
}

/// Segments to visit, oldest first, with their lengths: synced, holding live records,
/// taking no puts, not marked dense.
fn candidates(inner: &Inner) -> Result<Vec<(u32, u64)>, StoreError> {
    retire_idle_writers(inner)?;
    let dense = blocked(inner)?;
    let active = lock(&inner.active).clone();
    let mut todo: Vec<(u32, u64)> = lock(&inner.state)
        .stats
        .iter()
        .filter(|(seg, s)| s.live_records > 0 && !active.contains(seg) && !dense.contains(seg))
        .map(|(seg, s)| (*seg, s.synced_len))
        .collect();
    todo.sort_unstable();
    Ok(todo)
}

/// Segments open for appending that no put holds now and that are at least an eighth
/// full stop taking puts (the next puts open a new segment), so that an idle store's
/// last segments are recompressed too; then a sync indexes what was put in them, so
/// their synced lengths are final.
fn retire_idle_writers(inner: &Inner) -> Result<(), StoreError> {
    let min = inner.opts.segment_bytes / 8;
    let retired: Vec<u32> = {
        let mut pool = lock(&inner.pool);
        let (keep, retire): (Vec<_>, Vec<_>) = pool.drain(..).partition(|w| w.len < min);
        *pool = keep;
        retire.iter().map(|w| w.seg).collect()
    };
    if retired.is_empty() {
        return Ok(());
    }
    let mut active = lock(&inner.active);
    for seg in &retired {
        active.remove(seg);
    }
    drop(active);
    inner.sync()
}

enum Outcome {
    Rewritten {
        before: u64,
        after: u64,
    },
    Kept,
    /// Compaction removed the segment meanwhile (or it grew: a retired writer's
    /// record synced late; visited again next time).
    Gone,
}

/// A chunk copied: its id, where it was, where its copy is.
type Moved = (ChunkId, Loc, Loc);

/// The new file being written; removed on drop unless it became a segment.
///
/// Records wait in memory until the copy is smaller than what was read by
/// [`MIN_GAIN`], so a segment that does not shrink (photos) is never written again.
struct Unfinished {
    path: PathBuf,
    file: File,
    seg: u32,
    len: u64,
    buf: Vec<u8>,
    /// Bytes of the records copied, as they were.
    read: u64,
}

impl Unfinished {
    /// Appends a record of `frame` under `id`, in place of `read` bytes of records.
    fn append(&mut self, id: &ChunkId, frame: &[u8], read: u64) -> Result<Loc, StoreError> {
        let loc = Loc::record(self.seg, self.size(), frame.len() as u32);
        record::encode_into(&mut self.buf, id, frame);
        self.read += read;
        if self.buf.len() >= WRITE_BYTES && self.shrank_by(MIN_GAIN) {
            self.write_out()?;
        }
        Ok(loc)
    }

    /// Appends the block `frame` of `members` (their ids and where they were), noting
    /// where each member is now.
    fn append_block(
        &mut self,
        frame: &[u8],
        members: &[(ChunkId, Loc)],
        raw_lens: &[u32],
        moved: &mut Vec<Moved>,
    ) -> Result<(), StoreError> {
        let read = members.iter().map(|(_, old)| old.live_len()).sum();
        let rec = self.append(&ChunkId::of(frame), frame, read)?;
        let shares = block::shares(rec.record_len(), raw_lens);
        for (index, ((id, old), share)) in members.iter().zip(shares).enumerate() {
            let member = Member {
                index: index as u32,
                share,
            };
            moved.push((
                *id,
                *old,
                Loc {
                    member: Some(member),
                    ..rec
                },
            ));
        }
        Ok(())
    }

    /// Bytes of the copy so far.
    fn size(&self) -> u64 {
        self.len + self.buf.len() as u64
    }

    /// Whether the copy so far is smaller than what was read by at least `share`.
    fn shrank_by(&self, share: f64) -> bool {
        self.size() as f64 <= (1.0 - share) * self.read as f64
    }

    fn write_out(&mut self) -> Result<(), StoreError> {
        self.file
            .write_all_at(&self.buf, self.len)
            .map_err(|e| StoreError::io("write", &self.path, e))?;
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn is_live(inner: &Inner, id: &ChunkId, at: &Loc) -> Result<bool, StoreError> {
    Ok(inner
        .kv
        .get(&index::loc_key(id))
        .map_err(|e| inner.kv_err(e))?
        .and_then(|b| Loc::decode(&b))
        .is_some_and(|l| l.same_place(at)))
}

/// `f` applied to each of `items` on `threads` threads, answered in order.
fn on_threads<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let per = items.len().div_ceil(threads.max(1)).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Chunks waiting to be packed, with where they were and their raw bytes.
type Waiting = Vec<(ChunkId, Loc, Vec<u8>)>;

/// What waits to be packed, in two runs: the chunks of the newest version (all of
/// them when the caller named none), and the others. Each run is cut into blocks of
/// its own, in the order it was written, so that a read of the newest version
/// decodes few members it does not want (a restore of a HEAD that replaced an older
/// tree: 2.80 s against 2.87 s in write order, benches/README.md, thirty-third
/// session).
struct Queues<'f> {
    newest: Option<&'f IdFilter>,
    runs: [Waiting; 2],
}

impl Queues<'_> {
    fn push(&mut self, item: (ChunkId, Loc, Vec<u8>)) {
        let other = self.newest.is_some_and(|f| !f.may_hold(&item.0));
        self.runs[usize::from(other)].push(item);
    }

    /// The full blocks' worth of each run (with `last`, everything), taken out.
    fn take_groups(&mut self, last: bool) -> Vec<Waiting> {
        let mut groups: Vec<Waiting> = Vec::new();
        for waiting in &mut self.runs {
            let (mut group, mut bytes) = (Vec::new(), 0);
            for item in waiting.drain(..) {
                bytes += item.2.len();
                group.push(item);
                if bytes >= block::BLOCK_RAW {
                    groups.push(std::mem::take(&mut group));
                    bytes = 0;
                }
            }
            match last {
                true if !group.is_empty() => groups.push(group),
                _ => *waiting = group,
            }
        }
        groups
    }
}

/// The frames of `batch` (records read from the segment) decoded on `threads`
/// threads: those worth it join `waiting`, the others are copied to `out` as they
/// are; then every full block of `waiting` is compressed (on the threads) and
/// appended. With `last`, what waits is packed too (a lone chunk as a dense frame).
fn pack_batch(
    batch: &mut Vec<(ChunkId, Loc, Vec<u8>)>,
    waiting: &mut Queues,
    out: &mut Unfinished,
    moved: &mut Vec<Moved>,
    (threads, last): (usize, bool),
) -> Result<(), StoreError> {
    let raws = on_threads(batch, threads, |(id, _, f)| block::worth(id, f));
    for ((id, old, frame), raw) in batch.drain(..).zip(raws) {
        match raw {
            Some(raw) => waiting.push((id, old, raw)),
            None => {
                let new = out.append(&id, &frame, old.live_len())?;
                moved.push((id, old, new));
            }
        }
    }
    let groups = waiting.take_groups(last);
    let frames = on_threads(&groups, threads, |g| {
        let members: Vec<(ChunkId, &[u8])> = g.iter().map(|(id, _, r)| (*id, &r[..])).collect();
        block::dense(&members)
    });
    for (g, f) in groups.iter().zip(frames) {
        if let [(id, old, _)] = &g[..] {
            let new = out.append(id, &f, old.live_len())?;
            moved.push((*id, *old, new));
            continue;
        }
        let members: Vec<(ChunkId, Loc)> = g.iter().map(|(id, old, _)| (*id, *old)).collect();
        let lens: Vec<u32> = g.iter().map(|(_, _, r)| r.len() as u32).collect();
        out.append_block(&f, &members, &lens, moved)?;
    }
    Ok(())
}

fn rewrite(
    inner: &Inner,
    seg: u32,
    threads: usize,
    newest: Option<&IdFilter>,
) -> Result<Outcome, StoreError> {
    let path = inner.segment_path(seg);
    let Some(len) = lock(&inner.state).stats.get(&seg).map(|s| s.synced_len) else {
        return Ok(Outcome::Gone);
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Gone),
        Err(e) => return Err(StoreError::io("open", &path, e)),
    };
    let new_seg = inner.next_seg.fetch_add(1, Ordering::Relaxed);
    let new_path = inner.segments.join(format!("{new_seg:08}{UNFINISHED}"));
    let new_file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&new_path)
        .map_err(|e| StoreError::io("create", &new_path, e))?;
    let mut out = Unfinished {
        path: new_path,
        file: new_file,
        seg: new_seg,
        len: 0,
        buf: Vec::new(),
        read: 0,
    };
    let (mut moved, mut batch, mut batch_bytes) = (Vec::new(), Vec::new(), 0);
    let mut waiting = Queues {
        newest,
        runs: Default::default(),
    };
    let mut gave_up = false;
    scan::scan(&file, &path, len, |found| -> scan::Visited {
        let Found::Record {
            offset,
            header,
            frame,
            intact: true,
        } = found
        else {
            return scan::MORE;
        };
        let here = Loc::record(seg, offset, header.frame_len);
        let live = compact::live_at(inner, &header.id, here, frame)?;
        if live.is_empty() {
            return scan::MORE;
        }
        if block::is_block(frame) {
            // A block a compaction moved here: copied as it is.
            let rec = out.append(&header.id, frame, here.record_len())?;
            moved.extend(live.into_iter().map(|(id, old)| {
                (
                    id,
                    old,
                    Loc {
                        member: old.member,
                        ..rec
                    },
                )
            }));
            return scan::MORE;
        }
        batch.push((header.id, here, frame.to_vec()));
        batch_bytes += frame.len();
        if batch_bytes >= BATCH_BYTES {
            pack_batch(
                &mut batch,
                &mut waiting,
                &mut out,
                &mut moved,
                (threads, false),
            )?;
            batch_bytes = 0;
            gave_up = out.read >= GIVE_UP_AFTER && !out.shrank_by(MIN_GAIN / 4.0);
            if gave_up {
                return Ok(std::ops::ControlFlow::Break(()));
            }
        }
        scan::MORE
    })?;
    pack_batch(
        &mut batch,
        &mut waiting,
        &mut out,
        &mut moved,
        (threads, true),
    )?;
    if gave_up || !out.shrank_by(MIN_GAIN) {
        drop(out);
        mark_dense(inner, seg)?;
        return Ok(Outcome::Kept);
    }
    out.write_out()?;
    switch(inner, (seg, len), &path, file, out, &moved)
}

/// Marks `seg` dense, if it is still there.
fn mark_dense(inner: &Inner, seg: u32) -> Result<(), StoreError> {
    let _one_at_a_time = lock(&inner.sync_lock);
    if !lock(&inner.state).stats.contains_key(&seg) {
        return Ok(());
    }
    let mut batch = Batch::default();
    batch.insert(index::dense_key(seg), index::BLOCKED.to_vec());
    // Not flushed: a mark lost costs one more visit, nothing else.
    inner.kv.apply(batch).map_err(|e| inner.kv_err(e))
}

/// Steps 1-3 of the module's description: `out` becomes a segment holding the
/// records of `seg` that are still live, and `seg` goes.
fn switch(
    inner: &Inner,
    (seg, len): (u32, u64),
    path: &Path,
    file: File,
    mut out: Unfinished,
    moved: &[Moved],
) -> Result<Outcome, StoreError> {
    let _one_at_a_time = lock(&inner.sync_lock);
    // Deletions noted meanwhile reach the index first, so the liveness checks below
    // see them.
    inner.sync_locked()?;
    // Gone (compacted meanwhile), or grown past what was read: nothing may be lost.
    if lock(&inner.state).stats.get(&seg).map(|s| s.synced_len) != Some(len) {
        return Ok(Outcome::Gone);
    }
    platform::sync_data(&out.file).map_err(|e| StoreError::io("sync", &out.path, e))?;
    let final_path = inner.segment_path(out.seg);
    fs::rename(&out.path, &final_path).map_err(|e| StoreError::io("rename", &out.path, e))?;
    out.path = PathBuf::new();
    platform::sync_dir(&inner.segments).map_err(|e| StoreError::io("sync", &inner.segments, e))?;
    failpoint::hit("recompress-1");

    let (mut live, mut dead) = (Vec::new(), Vec::new());
    let mut blocks: HashMap<(u32, u64), (Loc, bool)> = HashMap::new();
    for m in moved {
        let alive = is_live(inner, &m.0, &m.1)?;
        if m.2.member.is_some() {
            let rec = Loc {
                member: None,
                ..m.2
            };
            blocks
                .entry((rec.seg, rec.offset))
                .or_insert((rec, false))
                .1 |= alive;
        } else if !alive {
            dead.push(m.2);
        }
        if alive {
            live.push(*m);
        }
    }
    // A block all of whose members were deleted meanwhile is dead as a whole.
    dead.extend(
        blocks
            .into_values()
            .filter(|(_, any)| !any)
            .map(|(rec, _)| rec),
    );
    let (before, after) = live.iter().fold((0, 0), |(b, a), (_, old, new)| {
        (b + old.live_len(), a + new.live_len())
    });
    let (records, bytes) = lock(&inner.state).totals;
    let copies: Vec<(ChunkId, Loc)> = live.iter().map(|(id, _, new)| (*id, *new)).collect();
    let switch = Switch {
        seg,
        path,
        file,
        to: Some(Target {
            seg: out.seg,
            synced_len: Some(out.len),
            dense: true,
        }),
        moved: &copies,
        totals: Some((records, (bytes + after).saturating_sub(before))),
    };
    switch.apply(inner, ["recompress-2", "recompress-3"])?;
    // Copies of records deleted meanwhile: punched after the next sync.
    lock(&inner.state).dead.extend(dead);
    Ok(Outcome::Rewritten { before, after })
}
