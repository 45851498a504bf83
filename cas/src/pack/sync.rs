//! Syncing and deleting: data made durable first, then the index that names it; space
//! freed only once the index forgot it (the pack store's first and third invariants).
//!
//! # Invariants
//! - `persist` fdatasyncs every segment written since the last sync (and the folder
//!   when a segment was created) before it writes a location, and flushes the index
//!   durably before the caller forgets the pending locations.
//! - Freed ranges are noted in the batch that drops their locations and punched only
//!   after it is durable; a crash in between punches them at the next open.
//! - A sync that a delete forces (at [`MAX_DELETING`]) punches nothing: every range
//!   noted is punched by the next sync asked for, from the index in (segment, offset)
//!   order with touching neighbours merged. A collection deletes in id order, scattered
//!   on disk: punched batch by batch, the ranges of 1.5 million deletions rarely touched
//!   and gc of 3,000,000 files took 230 s instead of 54.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use super::index::{self, Loc};
use super::{lock, Inner, State, BATCH_OPS, UPDATING};
use crate::kv::Batch;
use crate::{failpoint, platform, ChunkId, StoreError};

/// Deletions held in memory at most: the delete that reaches it syncs them all. A
/// collection deleting 1.5 million chunks of a 3,000,000-file store held them all
/// until its last sync, which copied them twice more: 470 MB at its peak.
pub(super) const MAX_DELETING: usize = 1 << 14;

impl Inner {
    /// Hides `id` from readers at once; the index forgets it, and its space is freed,
    /// at the next sync (the index forgets it at once when [`MAX_DELETING`] deletions
    /// are held; its space still waits for the next sync).
    pub(super) fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.sync_lock);
        let mut st = lock(&self.state);
        if let Some(loc) = st.pending.remove(id) {
            st.dead.push(loc);
            return Ok(());
        }
        if st.deleting.contains_key(id) {
            return Ok(());
        }
        drop(st);
        let Some(bytes) = self
            .kv
            .get(&index::loc_key(id))
            .map_err(|e| self.kv_err(e))?
        else {
            return Ok(());
        };
        let loc = Loc::decode(&bytes).ok_or_else(|| StoreError::Corrupt {
            id: *id,
            reason: "its index entry is malformed".into(),
        })?;
        let held = {
            let mut st = lock(&self.state);
            st.deleting.insert(*id, loc);
            st.deleting.len()
        };
        if held >= MAX_DELETING {
            self.write_index()?;
        }
        Ok(())
    }

    pub(super) fn sync(&self) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.sync_lock);
        self.sync_locked()
    }

    /// [`ChunkStore::sync`], with `sync_lock` held by the caller: what is held made
    /// durable, then every range noted as freed punched.
    pub(super) fn sync_locked(&self) -> Result<(), StoreError> {
        self.write_index()?;
        if lock(&self.state).unpunched {
            // Durable already: a failure here only delays freeing space.
            match self.punch_noted() {
                Ok(()) => lock(&self.state).unpunched = false,
                Err(e) => warn_once(&e),
            }
        }
        Ok(())
    }

    /// Makes the data written and the locations put and deleted since the last sync
    /// durable, and notes the ranges that frees in the index, to punch later.
    fn write_index(&self) -> Result<(), StoreError> {
        let (pending, deleting, dead, files, created) = {
            let mut st = lock(&self.state);
            if st.pending.is_empty()
                && st.deleting.is_empty()
                && st.dead.is_empty()
                && st.unsynced.is_empty()
            {
                return Ok(());
            }
            (
                st.pending.iter().map(|(i, l)| (*i, *l)).collect::<Vec<_>>(),
                st.deleting
                    .iter()
                    .map(|(i, l)| (*i, *l))
                    .collect::<Vec<_>>(),
                std::mem::take(&mut st.dead),
                std::mem::take(&mut st.unsynced),
                std::mem::take(&mut st.created),
            )
        };
        let restore = |st: &mut State| {
            st.unsynced
                .extend(files.iter().map(|(s, f)| (*s, f.clone())));
            st.created |= created;
            st.dead.extend(&dead);
        };
        // The index no longer names these records once persisted: their bytes go; a
        // block's once no member of it is left.
        let (blocks, emptied) = match self.members_left(&deleting) {
            Ok(counted) => counted,
            Err(e) => {
                restore(&mut lock(&self.state));
                return Err(e);
            }
        };
        let freed = free_ranges(
            dead.iter()
                .chain(
                    deleting
                        .iter()
                        .map(|(_, l)| l)
                        .filter(|l| l.member.is_none()),
                )
                .chain(&emptied)
                .map(|l| (l.seg, l.offset, l.end())),
        );
        let update = Update {
            pending: &pending,
            deleting: &deleting,
            blocks: &blocks,
            freed: &freed,
        };
        if let Err(e) = self.persist(&update, &files, created) {
            restore(&mut lock(&self.state));
            return Err(e);
        }
        let mut st = lock(&self.state);
        for (id, loc) in &pending {
            if st.pending.get(id) == Some(loc) {
                st.pending.remove(id);
            }
        }
        for (id, _) in &deleting {
            st.deleting.remove(id);
        }
        st.unpunched |= !freed.is_empty();
        Ok(())
    }

    /// Punches every range the index notes as freed, in (segment, offset) order with
    /// touching neighbours merged (a file system frees only whole blocks, and records
    /// are often smaller than one), then forgets them; ranges of segments compaction
    /// removed are only forgotten. Holds at most [`BATCH_OPS`] keys in memory.
    pub(super) fn punch_noted(&self) -> Result<(), StoreError> {
        let mut done = Batch::default();
        let mut run: Option<Run> = None;
        for pair in self.kv.scan_prefix(&[index::FREE_PREFIX], false) {
            let (k, v) = pair.map_err(|e| self.kv_err(e))?;
            let len = v.as_slice().try_into().map(u64::from_le_bytes).unwrap_or(0);
            let Some((seg, offset)) = index::decode_free_key(&k) else {
                continue;
            };
            match &mut run {
                Some(r) if r.seg == seg && r.end == offset && r.starts.len() < BATCH_OPS => {
                    r.end = offset + len;
                    r.starts.push(offset);
                }
                _ => {
                    let next = Run {
                        seg,
                        start: offset,
                        end: offset + len,
                        starts: vec![offset],
                    };
                    if let Some(r) = run.replace(next) {
                        self.punch_run(r, &mut done)?;
                    }
                }
            }
        }
        if let Some(r) = run {
            self.punch_run(r, &mut done)?;
        }
        // Not flushed: forgotten or not, punching again at the next open is harmless.
        self.kv.apply(done).map_err(|e| self.kv_err(e))
    }

    /// Punches `run` (unless its segment is gone), then forgets the keys that noted it.
    fn punch_run(&self, run: Run, done: &mut Batch) -> Result<(), StoreError> {
        if self.segment_path(run.seg).exists() {
            failpoint::hit("pack-punch");
            self.punch(run.seg, run.start, run.end - run.start);
        }
        for start in run.starts {
            done.remove(index::free_key(run.seg, start).to_vec());
            self.apply_if_full(done)?;
        }
        Ok(())
    }

    /// Applies `batch` once it holds [`BATCH_OPS`] operations, leaving it empty for the
    /// next ones (a collection's million deletions in one batch held 7 GB).
    pub(super) fn apply_if_full(&self, batch: &mut Batch) -> Result<(), StoreError> {
        if batch.len() < BATCH_OPS {
            return Ok(());
        }
        self.kv
            .apply(std::mem::take(batch))
            .map_err(|e| self.kv_err(e))
    }

    /// The live-member counts of the blocks `deleting` takes members from, after it
    /// (`None`: none left, the key goes), and those blocks' records that are left
    /// with none. A block whose count is missing (never, short of a damaged index) is
    /// not freed: its space waits for compaction.
    fn members_left(
        &self,
        deleting: &[(ChunkId, Loc)],
    ) -> Result<(BlockCounts, Vec<Loc>), StoreError> {
        let mut taken: HashMap<(u32, u64), (u32, Loc)> = HashMap::new();
        for (_, loc) in deleting.iter().filter(|(_, l)| l.member.is_some()) {
            taken.entry((loc.seg, loc.offset)).or_insert((0, *loc)).0 += 1;
        }
        let (mut counts, mut emptied) = (Vec::new(), Vec::new());
        for ((seg, offset), (n, loc)) in taken {
            let key = index::block_key(seg, offset);
            let Some(live) = self.kv.get(&key).map_err(|e| self.kv_err(e))? else {
                continue;
            };
            let left = index::decode_count(&live).unwrap_or(0).saturating_sub(n);
            if left == 0 {
                emptied.push(Loc {
                    member: None,
                    ..loc
                });
            }
            counts.push((key, (left > 0).then_some(left)));
        }
        Ok((counts, emptied))
    }

    /// Data first, then the index that names it (the module's first invariant).
    pub(super) fn persist(
        &self,
        update: &Update<'_>,
        files: &HashMap<u32, Arc<File>>,
        created: bool,
    ) -> Result<(), StoreError> {
        let Update {
            pending,
            deleting,
            blocks,
            freed,
        } = *update;
        for (seg, file) in files {
            platform::sync_data(file)
                .map_err(|e| StoreError::io("sync", self.segment_path(*seg), e))?;
        }
        if created {
            platform::sync_dir(&self.segments)
                .map_err(|e| StoreError::io("sync", &self.segments, e))?;
        }
        let (mut stats, mut totals) = {
            let st = lock(&self.state);
            (st.stats.clone(), st.totals)
        };
        for (_, loc) in deleting {
            let s = stats.entry(loc.seg).or_default();
            s.live_bytes = s.live_bytes.saturating_sub(loc.live_len());
            s.live_records = s.live_records.saturating_sub(1);
            totals.0 = totals.0.saturating_sub(1);
            totals.1 = totals.1.saturating_sub(loc.live_len());
        }
        for (_, loc) in pending {
            stats.entry(loc.seg).or_default().add(loc);
            totals.0 += 1;
            totals.1 += loc.live_len();
        }
        // First batch: the marker and every segment's synced length, so that no
        // location applied in a later batch is ever past its segment's cut. The ranges
        // to free come after the locations that named them are gone: a crash between
        // two batches leaves at worst bytes unfreed until compaction, never a location
        // whose bytes the next open punches.
        let mut batch = Batch::default();
        batch.insert(UPDATING, Vec::new());
        for (seg, s) in &stats {
            batch.insert(index::seg_key(*seg), s.encode().to_vec());
        }
        for (id, _) in deleting {
            batch.remove(index::loc_key(id).to_vec());
            self.apply_if_full(&mut batch)?;
        }
        for (id, loc) in pending {
            batch.insert(index::loc_key(id).to_vec(), loc.encode());
            self.apply_if_full(&mut batch)?;
        }
        for (key, left) in blocks {
            match left {
                Some(n) => batch.insert(key.to_vec(), n.to_le_bytes().to_vec()),
                None => batch.remove(key.to_vec()),
            }
            self.apply_if_full(&mut batch)?;
        }
        for &(seg, start, end) in freed {
            batch.insert(
                index::free_key(seg, start).to_vec(),
                (end - start).to_le_bytes().to_vec(),
            );
            self.apply_if_full(&mut batch)?;
        }
        batch.insert(
            index::TOTALS,
            index::encode_totals(totals.0, totals.1).to_vec(),
        );
        batch.remove(UPDATING);
        self.kv.apply(batch).map_err(|e| self.kv_err(e))?;
        self.kv.flush_durable().map_err(|e| self.kv_err(e))?;
        let mut st = lock(&self.state);
        st.stats = stats;
        st.totals = totals;
        Ok(())
    }

    /// Frees a record nothing names any more. A file system that cannot punch holes
    /// leaves the bytes for compaction; a failure only costs space.
    pub(super) fn punch(&self, seg: u32, offset: u64, len: u64) {
        let punched = self.reader(seg).and_then(|f| {
            platform::punch_hole(&f, offset, len)
                .map_err(|e| StoreError::io("punch", self.segment_path(seg), e))
        });
        if let Err(e) = punched {
            warn_once(&e);
        }
    }
}

/// Touching ranges noted as freed, punched as one: segment, bytes, and the offsets of
/// the keys that noted them.
struct Run {
    seg: u32,
    start: u64,
    end: u64,
    starts: Vec<u64>,
}

/// Block count keys and what they become (`None`: removed).
type BlockCounts = Vec<([u8; 13], Option<u32>)>;

/// What one sync writes in the index.
#[derive(Clone, Copy)]
pub(super) struct Update<'a> {
    /// Locations put since the last sync.
    pub pending: &'a [(ChunkId, Loc)],
    /// Locations deleted since.
    pub deleting: &'a [(ChunkId, Loc)],
    /// The live-member counts of blocks that lost members.
    pub blocks: &'a [([u8; 13], Option<u32>)],
    /// Byte ranges no location names any more, to punch once the index is durable.
    pub freed: &'a [(u32, u64, u64)],
}

/// Byte ranges (segment, start, end) merged where neighbours touch: a file system frees
/// only whole blocks, and records are often smaller than one.
fn free_ranges(freed: impl Iterator<Item = (u32, u64, u64)>) -> Vec<(u32, u64, u64)> {
    let mut freed: Vec<(u32, u64, u64)> = freed.collect();
    freed.sort_unstable();
    let mut ranges: Vec<(u32, u64, u64)> = Vec::new();
    for (seg, start, end) in freed {
        match ranges.last_mut() {
            Some(last) if last.0 == seg && last.2 == start => last.2 = end,
            _ => ranges.push((seg, start, end)),
        }
    }
    ranges
}

/// cas has no logging of its own: a failed punch is reported on stderr once per
/// process, since it only delays reclaiming space.
pub(super) fn warn_once(e: &StoreError) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("fvfs: cannot free space in a segment ({e}); compaction will"));
}
