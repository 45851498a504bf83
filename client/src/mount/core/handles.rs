//! Open files: opening for reading or writing, reads and writes through a handle,
//! close (journaled for the next batch) and fsync (committed at once).
//!
//! # Invariants
//! - A handle is a number the kernel holds; the map of handles is a leaf lock: what a
//!   call needs of a handle is cloned out before anything else is locked.
//! - A file open for writing (or being written here when opened) is read and written
//!   through its inode's one write-back; a file of the tree open for reading is read
//!   from its chunks as they were when opened, or by the kernel from a backing file
//!   (the adapter's passthrough).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use fvfs_node::Entry;
use rustix::io::Errno;

use super::read::{Ahead, Chunks};
use super::view::Attr;
use super::writeback::WriteBack;
use super::{lock, now_ns, stale, Core};

/// An open file.
pub(super) enum Handle {
    /// Read-only: the file's entry as opened, its chunks and where each starts, and
    /// how far ahead its reads are fetched.
    Read(Arc<Entry>, Chunks, Arc<Ahead>),
    /// Read-only, read by the kernel from a backing file of inode `ino`.
    ByKernel { ino: u64, entry: Arc<Entry> },
    /// Read-write through inode `ino`'s write-back file.
    Write { ino: u64, wb: Arc<Mutex<WriteBack>> },
}

/// A file of the tree opened for reading, before it has a handle.
pub struct ReadOpen {
    pub ino: u64,
    pub entry: Arc<Entry>,
    pub chunks: Chunks,
    /// The kernel may keep what it cached of the inode (the content is the same).
    pub keep_cache: bool,
}

/// What an open made.
pub enum Opened {
    /// A handle reading and writing through the inode's write-back.
    Write(u64),
    /// A file of the tree to read: the caller gives it a handle ([`Core::keep_open`]).
    Read(ReadOpen),
}

/// What a closed handle leaves to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    Done,
    /// A file the kernel read from a backing file of this inode.
    ByKernel(u64),
}

impl Core {
    fn fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn handle(&self, h: Handle) -> u64 {
        let fh = self.fh();
        lock(&self.handles).insert(fh, h);
        fh
    }

    /// The entry a handle open for reading was opened with.
    pub(super) fn opened_entry(&self, fh: u64) -> Option<Arc<Entry>> {
        match lock(&self.handles).get(&fh) {
            Some(Handle::Read(entry, ..) | Handle::ByKernel { entry, .. }) => Some(entry.clone()),
            _ => None,
        }
    }

    /// A handle for an open directory.
    pub fn opendir(&self) -> u64 {
        self.fh()
    }

    /// Opens inode `ino`: for writing when `write`, or when it is being written here
    /// (a reader joins the write-back); else for reading. O_TRUNC is not for open: the
    /// kernel sends it as a resize once its own checks passed ([`Self::setattr`]).
    pub fn open(&self, ino: u64, write: bool) -> Result<Opened, Errno> {
        if write || self.writing.get(ino).is_some() {
            let wb = self.open_write(ino).map_err(stale)?;
            return Ok(Opened::Write(self.handle(Handle::Write { ino, wb })));
        }
        let (entry, chunks, keep_cache) = self.open_read(ino).map_err(stale)?;
        Ok(Opened::Read(ReadOpen {
            ino,
            entry: Arc::new(entry),
            chunks,
            keep_cache,
        }))
    }

    /// A handle for a file opened for reading: read through this mount, or by the
    /// kernel from a backing file (`by_kernel`).
    pub fn keep_open(&self, file: ReadOpen, by_kernel: bool) -> u64 {
        let handle = match by_kernel {
            true => Handle::ByKernel {
                ino: file.ino,
                entry: file.entry,
            },
            false => Handle::Read(file.entry, file.chunks, Arc::default()),
        };
        self.handle(handle)
    }

    /// A new file `name` in `parent` (mode without the umask), owned by `caller` (as
    /// this machine numbers users), open for writing: its attributes and handle.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: (u32, u32),
    ) -> Result<(Attr, u64), Errno> {
        let (ino, wb) = self.create_file(parent, name, mode, self.stored(caller))?;
        let attr = match self.stat(ino) {
            Ok(attr) => attr,
            Err(e) => {
                let failed = self.close_write(ino, &wb, Err(e));
                return Err(failed.err().unwrap_or(e));
            }
        };
        Ok((attr, self.handle(Handle::Write { ino, wb })))
    }

    /// At most `size` bytes of open file `fh` at `offset`.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let (chunks, staged) = match lock(&self.handles).get(&fh) {
            Some(Handle::Read(_, chunks, ahead)) => (Some((chunks.clone(), ahead.clone())), None),
            Some(Handle::Write { wb, .. }) => (None, Some(wb.clone())),
            // Files read by the kernel itself are not read here.
            Some(Handle::ByKernel { .. }) | None => return Err(Errno::BADF),
        };
        if let Some((chunks, ahead)) = chunks {
            return self.read_chunks(&chunks, &ahead, offset, size);
        }
        let wb = staged.ok_or(Errno::BADF)?;
        let mut w = lock(&wb);
        let mut buf = vec![0u8; size as usize];
        let n = w.read_at(&mut buf, offset).map_err(|_| Errno::IO)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Writes `data` at `offset` of open file `fh`; the bytes written.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let wb = match lock(&self.handles).get(&fh) {
            Some(Handle::Write { wb, .. }) => wb.clone(),
            _ => return Err(Errno::BADF),
        };
        let mut w = lock(&wb);
        w.write_at(data, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::StorageFull {
                Errno::NOSPC
            } else {
                Errno::IO
            }
        })?;
        let now = now_ns();
        w.touch();
        w.attrs.mtime_ns = now;
        if let Some(meta) = &mut w.attrs.meta {
            meta.ctime_ns = now;
        }
        Ok(data.len() as u32)
    }

    /// close(2) of a descriptor of `fh`: what it wrote is journaled and queued for the
    /// next batch.
    pub fn flush(&self, fh: u64) -> Result<(), Errno> {
        self.sync_handle(fh, false)
    }

    /// fsync(2): what `fh` wrote is committed now, after what it depends on (its
    /// folder made here, a file closed before it), and durable on the daemon.
    pub fn fsync(&self, fh: u64) -> Result<(), Errno> {
        self.sync_handle(fh, true)
    }

    fn sync_handle(&self, fh: u64, at_once: bool) -> Result<(), Errno> {
        let (ino, wb) = match lock(&self.handles).get(&fh) {
            Some(Handle::Write { ino, wb }) => (*ino, wb.clone()),
            Some(Handle::Read(..) | Handle::ByKernel { .. }) => return Ok(()),
            None => return Err(Errno::BADF),
        };
        self.commits.queue(ino, &mut lock(&wb))?;
        if !at_once {
            return Ok(());
        }
        // fsync: the file joins what waits, and all of it is committed now, in one
        // version (a removal staged before it and the file are one commit, so content
        // they share is never unreachable in between for a collection to take).
        if !self.commits.commit_queued() {
            return Err(Errno::IO);
        }
        // Whatever the batch left (changed since, or refused): at once, on its own.
        let mut w = lock(&wb);
        self.write_back(ino, &mut w)
    }

    /// The last descriptor of `fh` is closed: a write-back is queued (and let go by
    /// its last user once committed).
    pub fn release(&self, fh: u64) -> Result<Released, Errno> {
        let Some(handle) = lock(&self.handles).remove(&fh) else {
            return Ok(Released::Done);
        };
        match handle {
            Handle::Write { ino, wb } => {
                let result = self.commits.queue(ino, &mut lock(&wb));
                self.close_write(ino, &wb, result)?;
                Ok(Released::Done)
            }
            Handle::ByKernel { ino, .. } => Ok(Released::ByKernel(ino)),
            Handle::Read(..) => Ok(Released::Done),
        }
    }
}
