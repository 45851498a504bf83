//! Appending records: a writer checks a segment out of the pool, places its records
//! after what the segment holds and writes them in one call, then checks it back in.
//! Locations stay *pending* (in memory) until the next sync makes them durable.
//!
//! # Invariants
//! - One writer per open segment: concurrent puts never share a segment's tail.
//! - A failed write cuts the segment back to where it was, so the next record starts
//!   clean; nothing past a segment's synced length is trusted anyway.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::index::Loc;
use super::{lock, record, Inner};
use crate::{ChunkId, StoreError};

/// A segment open for appending, checked out by one writer at a time.
pub(super) struct Writer {
    pub(super) seg: u32,
    pub(super) file: Arc<File>,
    pub(super) len: u64,
}

impl Inner {
    /// A segment to append to: an idle one, or a new one.
    pub(super) fn checkout(&self) -> Result<Writer, StoreError> {
        if let Some(w) = lock(&self.pool).pop() {
            return Ok(w);
        }
        let seg = self.next_seg.fetch_add(1, Ordering::Relaxed);
        let path = self.segment_path(seg);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("create", &path, e))?;
        lock(&self.active).insert(seg);
        lock(&self.state).created = true;
        Ok(Writer {
            seg,
            file: Arc::new(file),
            len: 0,
        })
    }

    /// Puts `w` back in the pool, or retires it once it is full.
    pub(super) fn checkin(&self, w: Writer) {
        if w.len >= self.opts.segment_bytes {
            lock(&self.active).remove(&w.seg);
        } else {
            lock(&self.pool).push(w);
        }
    }

    /// Appends the record of `frame` to `w`; returns its location.
    pub(super) fn append(
        &self,
        w: &mut Writer,
        id: &ChunkId,
        frame: &[u8],
    ) -> Result<Loc, StoreError> {
        let mut records = Vec::new();
        let loc = self.place(w, &mut records, id, frame);
        self.write_out(w, &records)?;
        Ok(loc)
    }

    /// Adds the record of `frame` to `records`, to be written after what `w` holds by
    /// [`Inner::write_out`]; returns where it will be.
    pub(super) fn place(
        &self,
        w: &Writer,
        records: &mut Vec<u8>,
        id: &ChunkId,
        frame: &[u8],
    ) -> Loc {
        let loc = Loc::record(w.seg, w.len + records.len() as u64, frame.len() as u32);
        record::encode_into(records, id, frame);
        loc
    }

    /// Writes `records` (placed by [`Inner::place`]) at the end of `w`, in one write.
    pub(super) fn write_out(&self, w: &mut Writer, records: &[u8]) -> Result<(), StoreError> {
        if let Err(e) = w.file.write_all_at(records, w.len) {
            // Cut what a partial write left, so the next record starts clean.
            let _ = w.file.set_len(w.len);
            return Err(StoreError::io("write", self.segment_path(w.seg), e));
        }
        w.len += records.len() as u64;
        lock(&self.state).unsynced.insert(w.seg, w.file.clone());
        Ok(())
    }

    pub(super) fn put(&self, id: ChunkId, frame: &[u8]) -> Result<(), StoreError> {
        self.put_many(&[(id, frame)]).pop().unwrap_or(Ok(()))
    }

    /// Stores the frames not stored yet, their records appended with one write per
    /// segment they go to (a segment stops taking records once it is full, as with
    /// single puts); answers each in order.
    pub(super) fn put_many(
        &self,
        frames: &[(ChunkId, impl AsRef<[u8]>)],
    ) -> Vec<Result<(), StoreError>> {
        let (mut out, mut todo) = (Vec::with_capacity(frames.len()), Vec::new());
        for (i, (id, _)) in frames.iter().enumerate() {
            let stored = self.lookup(id);
            if matches!(stored, Ok(None)) {
                todo.push(i);
            }
            out.push(stored.map(drop));
        }
        let mut todo = todo.into_iter().peekable();
        while todo.peek().is_some() {
            let mut w = match self.checkout() {
                Ok(w) => w,
                Err(e) => {
                    fail_all(&mut out, todo, e);
                    break;
                }
            };
            let (mut records, mut placed) = (Vec::new(), Vec::new());
            while let Some(i) = todo.next_if(|_| {
                records.is_empty() || w.len + (records.len() as u64) < self.opts.segment_bytes
            }) {
                let (id, frame) = &frames[i];
                placed.push((i, self.place(&w, &mut records, id, frame.as_ref())));
            }
            let written = self.write_out(&mut w, &records);
            self.checkin(w);
            if let Err(e) = written {
                fail_all(&mut out, placed.into_iter().map(|(i, _)| i).chain(todo), e);
                break;
            }
            let mut st = lock(&self.state);
            for (i, loc) in placed {
                match st.pending.entry(frames[i].0) {
                    // Another put of the same id won the race: its record holds the
                    // same bytes.
                    std::collections::hash_map::Entry::Occupied(_) => st.dead.push(loc),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(loc);
                    }
                }
            }
        }
        out
    }
}

/// Answers every one of `failed` with `e`: the first with `e` itself, the others
/// with copies.
fn fail_all(
    out: &mut [Result<(), StoreError>],
    failed: impl Iterator<Item = usize>,
    e: StoreError,
) {
    let mut failed = failed.peekable();
    let Some(first) = failed.next() else { return };
    for i in failed {
        out[i] = Err(e.copy());
    }
    out[first] = Err(e);
}
