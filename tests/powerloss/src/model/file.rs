//! Operations on regular files' content: read, write, truncate, fallocate, fsync. All
//! but fsync and synchronous writes change the current state only; see [`Content`] for
//! the page map.
//!
//! # Invariants
//! Every change sets the file's mtime and ctime to now; asking a directory for content
//! is `IsDir`, any other kind `Invalid`.

use std::time::SystemTime;

use super::{Body, Content, Error, Ino, Result, Tree};

impl Tree {
    fn content(&self, ino: Ino) -> Result<&Content> {
        match &self.node(ino)?.body {
            Body::File(c) => Ok(c),
            Body::Dir(_) => Err(Error::IsDir),
            _ => Err(Error::Invalid),
        }
    }

    /// The file's content, and its mtime and ctime set to now (it is about to change).
    fn content_mut(&mut self, ino: Ino) -> Result<&mut Content> {
        let node = self.node_mut(ino)?;
        let now = SystemTime::now();
        match &mut node.body {
            Body::File(c) => {
                node.meta.mtime = now;
                node.meta.ctime = now;
                Ok(c)
            }
            Body::Dir(_) => Err(Error::IsDir),
            _ => Err(Error::Invalid),
        }
    }

    /// Truncates or extends a regular file (current state only).
    pub fn set_size(&mut self, ino: Ino, size: u64) -> Result<()> {
        self.content_mut(ino)?.set_size(size);
        Ok(())
    }

    /// Reads up to `len` bytes at `offset` of a regular file.
    pub fn read(&self, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>> {
        Ok(self.content(ino)?.read(offset, len))
    }

    /// Writes at `offset` of a regular file (current state only).
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        self.content_mut(ino)?.write(offset, data);
        Ok(())
    }

    /// `fallocate` without flags or with `KEEP_SIZE`: holes read as zeros already, so
    /// only the size may change.
    pub fn allocate(&mut self, ino: Ino, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        self.content_mut(ino)?.allocate(offset, len, keep_size);
        Ok(())
    }

    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`: zeroes the range, the size is unchanged.
    pub fn punch_hole(&mut self, ino: Ino, offset: u64, len: u64) -> Result<()> {
        self.content_mut(ino)?.punch_hole(offset, len);
        Ok(())
    }

    /// `fallocate(ZERO_RANGE)`: zeroes the range, extending the file unless `keep_size`.
    pub fn zero_range(&mut self, ino: Ino, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        self.content_mut(ino)?.zero_range(offset, len, keep_size);
        Ok(())
    }

    /// A write through a descriptor opened `O_SYNC` or `O_DSYNC`: durable once done.
    /// The whole file is synced, as by an fdatasync after the write (a little more than
    /// POSIX promises if other descriptors left unsynced writes in the same file).
    pub fn write_sync(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        self.write(ino, offset, data)?;
        self.sync_content(ino)?;
        self.stats.sync_writes += 1;
        Ok(())
    }

    fn sync_content(&mut self, ino: Ino) -> Result<()> {
        let synced = match &mut self.node_mut(ino)?.body {
            Body::File(c) => c.sync(),
            _ => 0,
        };
        self.stats.synced_pages += synced;
        Ok(())
    }

    /// fsync or fdatasync of a file: its content and size become durable. On anything
    /// else it only counts (a directory's entries need `fsyncdir`).
    pub fn fsync(&mut self, ino: Ino, datasync: bool) -> Result<()> {
        self.sync_content(ino)?;
        if datasync {
            self.stats.fdatasync += 1;
        } else {
            self.stats.fsync += 1;
        }
        Ok(())
    }
}
