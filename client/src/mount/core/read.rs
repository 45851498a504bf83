//! The read path: opening a file of the tree for reading (with the folder's
//! read-ahead and the kernel's page cache kept when the content is unchanged) and
//! reading its chunks with read-ahead.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use fvfs_cas::ChunkId;
use fvfs_node::{ChunkRef, Entry, EntryKind};
use rustix::io::Errno;

use super::inodes::View;
use super::{lock, Core};

/// Chunks fetched ahead of a reader, in batches of at least half of them:
/// `READ_AHEAD` at first and after a seek, doubled by each read that continues the
/// last one, up to `MAX_READ_AHEAD` (a large file read through from a cold S3 tier
/// then comes in requests of several MiB; a random reader fetches little it does
/// not use).
const READ_AHEAD: usize = 32;
const MAX_READ_AHEAD: usize = 256;
/// Chunks of a window asked for in one request, at most.
const PER_REQUEST: usize = 64;
/// A read starting this close to where the last one ended continues it (the
/// kernel's own read-ahead may send neighbouring reads out of order).
const NEAR: u64 = 1 << 20;

/// How far ahead the reads of one open file are fetched.
#[derive(Default)]
pub struct Ahead {
    /// Where the last read ended.
    end: AtomicU64,
    window: AtomicUsize,
}

impl Ahead {
    /// The window for a read of `offset..end`: doubled if it continues the last read,
    /// back to [`READ_AHEAD`] if not. (A heuristic: concurrent reads of one handle
    /// may race on it, which only changes how far ahead is fetched.)
    fn window(&self, offset: u64, end: u64) -> usize {
        let last = self.end.swap(end, Ordering::Relaxed);
        let window = if offset > 0 && offset.abs_diff(last) <= NEAR {
            (self.window.load(Ordering::Relaxed) * 2).clamp(READ_AHEAD, MAX_READ_AHEAD)
        } else {
            READ_AHEAD
        };
        self.window.store(window, Ordering::Relaxed);
        window
    }
}

/// A file of the tree open for reading: its chunks and where each starts.
pub type Chunks = Arc<Vec<(u64, ChunkRef)>>;

impl Core {
    /// Opens inode `ino` of the tree for reading: its entry, its chunks, and whether
    /// the kernel may keep what it cached of it.
    pub(super) fn open_read(&self, ino: u64) -> Result<(Entry, Chunks, bool), Errno> {
        let (view, path) = self.locate(ino)?;
        let entry = self.entry(&view, &path)?;
        if entry.kind == EntryKind::Dir {
            return Err(Errno::ISDIR);
        }
        self.remote.file_opened();
        let slash = path.iter().rposition(|b| *b == b'/').unwrap_or(0);
        let parent = lock(&self.inodes).edge(ino).map(|(parent, _)| parent);
        let folder = self.entry(&view, &path[..slash.max(1)]);
        if let (Some(parent), Ok(Entry { id: Some(dir), .. })) = (parent, folder) {
            let name = &path[(slash + 1).min(path.len())..];
            self.fill_ahead(parent, dir, name, false);
        }
        let chunks = self.block(self.remote.file_chunks(&entry))?;
        // The kernel may keep what it cached of this inode if the content is the one it
        // cached or was given (snapshots never change; a live file is checked by its
        // content key).
        let unchanged = self.pusher.opened(ino, content_key(&entry));
        Ok((entry, chunks, view != View::Live || unchanged))
    }

    /// `size` bytes at `offset` of a file made of `chunks`; the chunks after them are
    /// fetched ahead in one batch, as far as `ahead` says.
    pub(super) fn read_chunks(
        &self,
        chunks: &[(u64, ChunkRef)],
        ahead: &Ahead,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
        let end = offset.saturating_add(u64::from(size));
        let first = chunks.partition_point(|(start, c)| start + c.len <= offset);
        let wanted: Vec<(u64, ChunkRef)> = chunks[first..]
            .iter()
            .take_while(|(start, _)| *start < end)
            .copied()
            .collect();
        let ahead: Vec<ChunkId> = chunks[first + wanted.len()..]
            .iter()
            .take(ahead.window(offset, end))
            .map(|(_, c)| c.id)
            .collect();
        // A wide window in requests of its own: each answer stays small (a slow link
        // still brings one within the mount's timeout), a reader waits only for the
        // piece holding its chunk, and the pieces come in parallel.
        for batch in self.remote.read_ahead_in(&ahead, PER_REQUEST) {
            self.rt.spawn(batch);
        }
        let fetched = self.block(futures::future::try_join_all(
            wanted.iter().map(|(_, c)| self.remote.chunk(c.id)),
        ))?;
        let mut out = Vec::with_capacity(size as usize);
        for ((start, _), data) in wanted.iter().zip(fetched) {
            let from = offset.saturating_sub(*start) as usize;
            let to = ((end - start) as usize).min(data.len());
            if from < to {
                out.extend_from_slice(&data[from..to]);
            }
        }
        Ok(out)
    }
}

/// What identifies a file's content: its file node, or the hash of its inline chunk ids.
pub fn content_key(entry: &Entry) -> [u8; 32] {
    if let Some(id) = entry.id {
        return *id.as_bytes();
    }
    let mut h = blake3::Hasher::new();
    for c in &entry.chunks {
        h.update(c.id.as_bytes());
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_with_a_sequential_reader_and_shrinks_at_a_seek() {
        let a = Ahead::default();
        let read = |offset: u64| a.window(offset, offset + (128 << 10));
        assert_eq!(read(0), READ_AHEAD);
        let grown: Vec<usize> = (1..6).map(|i| read(i * (128 << 10))).collect();
        assert_eq!(grown, [64, 128, 256, 256, 256]);
        assert_eq!(read(500 << 20), READ_AHEAD, "a seek far away");
        assert_eq!(read((500 << 20) + (128 << 10)), 2 * READ_AHEAD);
        // A read a little behind the last one (the kernel's reads out of order).
        assert_eq!(read(500 << 20), 4 * READ_AHEAD);
        assert_eq!(read(0), READ_AHEAD, "back to the start");
    }
}
