//! FUSE passthrough: a large file whose chunks are all cached is read by the kernel
//! from a whole backing file ([`crate::mount::backing`]), not through this process.
//!
//! # Invariants
//! - The kernel takes one backing file per inode: every passthrough open of an inode
//!   shares it while they are open, and only for the content it was made of (an open
//!   of another content of the same inode reads through FUSE).
//! - The map of backed inodes is a leaf lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fuser::{BackingId, ReplyOpen};
use fvfs_cas::ChunkId;

use crate::mount::backing::Backing;
use crate::mount::cache::ChunkCache;
use crate::mount::core::{content_key, ReadOpen};

/// An inode open through the kernel: the content key of its backing file, the
/// kernel's handle on it, and the opens sharing it.
struct Backed {
    key: ChunkId,
    id: Arc<BackingId>,
    opens: u64,
}

pub struct Passthrough {
    /// Whether the kernel takes backing files (Linux 6.9 and later).
    on: AtomicBool,
    backing: Backing,
    backed: Mutex<HashMap<u64, Backed>>,
}

impl Passthrough {
    pub fn new(backing: Backing) -> Self {
        Self {
            on: AtomicBool::new(false),
            backing,
            backed: Mutex::default(),
        }
    }

    /// Whether the kernel said it takes backing files.
    pub fn enable(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// The kernel's handle on the backing file of `file`'s inode with its content,
    /// made from the chunk cache if needed; `None` when reads must go through FUSE.
    pub fn open(
        &self,
        file: &ReadOpen,
        cache: &ChunkCache,
        reply: &ReplyOpen,
    ) -> Option<Arc<BackingId>> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        let key = ChunkId::from_bytes(content_key(&file.entry));
        let mut open = self.backed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = open.get_mut(&file.ino) {
            // Another content is open through the kernel: this one goes through FUSE.
            return (b.key == key).then(|| {
                b.opens += 1;
                b.id.clone()
            });
        }
        let backing = self
            .backing
            .get(key, file.entry.size, &file.chunks, cache)?;
        let id = match reply.open_backing(&backing) {
            Ok(id) => Arc::new(id),
            Err(e) => {
                tracing::debug!("passthrough refused: {e}");
                return None;
            }
        };
        let backed = Backed {
            key,
            id: id.clone(),
            opens: 1,
        };
        open.insert(file.ino, backed);
        Some(id)
    }

    /// A passthrough open of `ino` is closed.
    pub fn closed(&self, ino: u64) {
        let mut open = self.backed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = open.get_mut(&ino) {
            b.opens -= 1;
            if b.opens == 0 {
                open.remove(&ino);
            }
        }
    }
}
