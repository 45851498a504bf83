//! Compaction: segments whose live share fell below `compact_below` are rewritten.
//!
//! Crash-safe by order, one segment at a time, with `sync_lock` held (no sync, delete
//! or other compaction meanwhile; puts go on in other segments):
//! 1. every live record (its location still names it) is appended to an open segment;
//! 2. that segment is fdatasynced (and the folder);
//! 3. one index update switches the locations, adds the new segment's length and
//!    forgets the old segment, flushed durably;
//! 4. the old file is removed and the folder synced.
//!
//! A crash before 3 leaves the old locations (the copies are cut at open, past the
//! synced length); after 3, the old file is one the index does not know, which
//! `open` removes. Failpoints (`FVFS_FAILPOINT=compact-N`) abort the process after
//! step N, for the test that kills a daemon at every step.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use super::index::{self, Loc};
use super::scan::{self, Found};
use super::{lock, Inner, UPDATING};
use crate::block;
use crate::kv::Batch;
use crate::{failpoint, platform, ChunkId, Compacted, StoreError};

pub(super) fn compact(inner: &Inner) -> Result<Compacted, StoreError> {
    let _one_at_a_time = lock(&inner.sync_lock);
    inner.sync_locked()?;
    if retire_sparse_writers(inner) {
        // What a put appended to them since is indexed before they are read.
        inner.sync_locked()?;
    }
    let active: HashSet<u32> = lock(&inner.active).clone();
    let mut sparse: Vec<(u32, u64)> = lock(&inner.state)
        .stats
        .iter()
        .filter(|(seg, s)| !active.contains(seg) && is_sparse(inner, s))
        .map(|(seg, s)| (*seg, s.synced_len))
        .collect();
    sparse.sort_unstable();
    let mut done = Compacted::default();
    for (seg, len) in sparse {
        done.moved_bytes += rewrite(inner, seg)?;
        done.segments += 1;
        done.freed_bytes += len;
    }
    Ok(done)
}

/// Whether a segment's live share fell below `compact_below`.
fn is_sparse(inner: &Inner, s: &super::index::SegStat) -> bool {
    s.synced_len > 0 && (s.live_bytes as f64) < inner.opts.compact_below * s.synced_len as f64
}

/// Segments open for appending that no put holds now and that are sparse stop taking
/// puts, so that compaction rewrites them too: every segment short of
/// `segment_bytes` is reopened for appending at open, and a small store's records
/// that a crash left unfreed (locations removed, freed ranges not yet recorded:
/// `persist` leaks rather than risk punching named bytes) would otherwise stay in
/// them for good. Returns whether any was retired.
fn retire_sparse_writers(inner: &Inner) -> bool {
    let stats = lock(&inner.state).stats.clone();
    let retired: Vec<u32> = {
        let mut pool = lock(&inner.pool);
        let (retire, keep): (Vec<_>, Vec<_>) = pool
            .drain(..)
            .partition(|w| stats.get(&w.seg).is_some_and(|s| is_sparse(inner, s)));
        *pool = keep;
        retire.iter().map(|w| w.seg).collect()
    };
    let mut active = lock(&inner.active);
    for seg in &retired {
        active.remove(seg);
    }
    !retired.is_empty()
}

/// Moves the live records of `seg` elsewhere and removes it; returns the bytes moved.
fn rewrite(inner: &Inner, seg: u32) -> Result<u64, StoreError> {
    let path = inner.segment_path(seg);
    let file = File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
    let len = lock(&inner.state)
        .stats
        .get(&seg)
        .map_or(0, |s| s.synced_len);
    let mut moved: Vec<(ChunkId, Loc)> = Vec::new();
    let mut writer = None;
    let copied = scan::scan(&file, &path, len, |found| -> scan::Visited {
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
        let live = live_at(inner, &header.id, here, frame)?;
        if !live.is_empty() {
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(inner.checkout()?),
            };
            let copy = inner.append(w, &header.id, frame)?;
            moved.extend(live.into_iter().map(|(id, at)| {
                (
                    id,
                    Loc {
                        member: at.member,
                        ..copy
                    },
                )
            }));
        }
        scan::MORE
    });
    let target = writer.as_ref().map(|w| (w.seg, w.file.clone()));
    if let Some(w) = writer {
        inner.checkin(w);
    }
    copied?;
    failpoint::hit("compact-1");
    if let Some((tseg, tfile)) = &target {
        platform::sync_data(tfile)
            .map_err(|e| StoreError::io("sync", inner.segment_path(*tseg), e))?;
    }
    platform::sync_dir(&inner.segments).map_err(|e| StoreError::io("sync", &inner.segments, e))?;
    failpoint::hit("compact-2");

    let to = target.map(|(tseg, _)| Target {
        seg: tseg,
        synced_len: None,
        dense: false,
    });
    let switch = Switch {
        seg,
        path: &path,
        file,
        to,
        moved: &moved,
        totals: None,
    };
    switch.apply(inner, ["compact-3", "compact-4"])?;
    Ok(moved.iter().map(|(_, l)| l.live_len()).sum())
}

/// The chunks the index still names in the record at `here` (holding `frame`), with
/// their locations: the record's own chunk, or the block's members still named there.
pub(super) fn live_at(
    inner: &Inner,
    id: &ChunkId,
    here: Loc,
    frame: &[u8],
) -> Result<Vec<(ChunkId, Loc)>, StoreError> {
    let named = |id: &ChunkId| -> Result<Option<Loc>, StoreError> {
        Ok(inner
            .kv
            .get(&index::loc_key(id))
            .map_err(|e| inner.kv_err(e))?
            .and_then(|b| Loc::decode(&b))
            .filter(|l| l.seg == here.seg && l.offset == here.offset))
    };
    if !block::is_block(frame) {
        return Ok(named(id)?
            .filter(|l| l.member.is_none())
            .map(|l| (*id, l))
            .into_iter()
            .collect());
    }
    let mut live = Vec::new();
    for (i, (member, ..)) in block::table(frame)
        .map_or_else(Vec::new, |t| t.members)
        .iter()
        .enumerate()
    {
        if let Some(l) = named(member)?.filter(|l| l.member.is_some_and(|m| m.index == i as u32)) {
            live.push((*member, l));
        }
    }
    Ok(live)
}

/// Where a rewrite's copies went: a segment, its synced length when it reaches past
/// the copies, and whether to mark it dense.
pub(super) struct Target {
    pub seg: u32,
    pub synced_len: Option<u64>,
    pub dense: bool,
}

/// The end of a rewrite of segment `seg` (compaction, recompression), with `sync_lock`
/// held and the copies synced: one index update switches the locations of `moved` to
/// their copies in `to`, counts them there and forgets `seg`, flushed durably; then
/// the old file is removed and the folder synced. The new segment is named first and
/// the old one's removal last, so a crash between batches leaves every location inside
/// a segment the index knows.
pub(super) struct Switch<'a> {
    pub seg: u32,
    pub path: &'a Path,
    pub file: File,
    pub to: Option<Target>,
    pub moved: &'a [(ChunkId, Loc)],
    /// The store's totals after the switch, when it changes them.
    pub totals: Option<(u64, u64)>,
}

impl Switch<'_> {
    /// Applies the switch; `failpoints` are hit after the index update and after the
    /// removal.
    pub(super) fn apply(self, inner: &Inner, failpoints: [&str; 2]) -> Result<(), StoreError> {
        let seg = self.seg;
        let mut stats = lock(&inner.state).stats.clone();
        let mut batch = Batch::default();
        batch.insert(UPDATING, Vec::new());
        if let Some(to) = &self.to {
            let t = stats.entry(to.seg).or_default();
            for (_, loc) in self.moved {
                t.add(loc);
            }
            if let Some(len) = to.synced_len {
                t.synced_len = len;
            }
            batch.insert(index::seg_key(to.seg), t.encode().to_vec());
            if to.dense {
                batch.insert(index::dense_key(to.seg), index::BLOCKED.to_vec());
            }
        }
        let mut members: HashMap<(u32, u64), u32> = HashMap::new();
        for (id, loc) in self.moved {
            batch.insert(index::loc_key(id).to_vec(), loc.encode());
            if loc.member.is_some() {
                *members.entry((loc.seg, loc.offset)).or_default() += 1;
            }
            inner.apply_if_full(&mut batch)?;
        }
        for ((bseg, offset), n) in members {
            batch.insert(
                index::block_key(bseg, offset).to_vec(),
                n.to_le_bytes().to_vec(),
            );
            inner.apply_if_full(&mut batch)?;
        }
        for pair in inner.kv.scan_prefix(&index::blocks_of(seg), false) {
            let (k, _) = pair.map_err(|e| inner.kv_err(e))?;
            batch.remove(k);
            inner.apply_if_full(&mut batch)?;
        }
        stats.remove(&seg);
        batch.remove(index::seg_key(seg).to_vec());
        batch.remove(index::dense_key(seg).to_vec());
        if let Some((records, bytes)) = self.totals {
            batch.insert(index::TOTALS, index::encode_totals(records, bytes).to_vec());
        }
        batch.remove(UPDATING);
        inner.kv.apply(batch).map_err(|e| inner.kv_err(e))?;
        inner.kv.flush_durable().map_err(|e| inner.kv_err(e))?;
        {
            let mut st = lock(&inner.state);
            st.stats = stats;
            if let Some(totals) = self.totals {
                st.totals = totals;
            }
        }
        failpoint::hit(failpoints[0]);

        lock(&inner.readers).remove(&seg);
        drop(self.file);
        std::fs::remove_file(self.path).map_err(|e| StoreError::io("delete", self.path, e))?;
        platform::sync_dir(&inner.segments)
            .map_err(|e| StoreError::io("sync", &inner.segments, e))?;
        failpoint::hit(failpoints[1]);
        Ok(())
    }
}
