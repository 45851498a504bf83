//! The FUSE side: every kernel request becomes one call on the shared [`Tree`] (behind a
//! mutex, so requests from several threads apply one at a time).
//!
//! # Invariants
//! - Nothing may be cached by the kernel where a cut could make it stale: entry and attr
//!   TTLs are zero and every open file is `FOPEN_DIRECT_IO` (no page cache, so every read
//!   and write reaches the tree). No writeback cache, readdirplus or symlink caching is
//!   requested (fuser asks for none of them by default).
//! - Every reply that hands the kernel an entry counts one lookup ([`Tree::hold`]),
//!   matched by the kernel's `forget`.
//! - A change requested by a process that no longer exists is refused (EIO): it was in
//!   flight when the process was killed, and may be picked up only after a cut that must
//!   not see it.

mod convert;
mod ops;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fuser::{
    Config, FileAttr, FileHandle, INodeNo, MountOption, ReplyDirectory, Request, SessionACL,
};

use crate::model::{Error, Listing, Meta, New, Tree};
use convert::{check_caller, entry, file_type};

/// Entries and attributes are never cached by the kernel.
const TTL: Duration = Duration::ZERO;

/// Mount options: `allow_other`, `default_permissions`, several serving threads.
pub fn config() -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("fvfs-powerloss".into()),
        MountOption::Subtype("powerloss".into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = SessionACL::All;
    config.n_threads = Some(4);
    config
}

/// Locks `m`; a panic in another handler does not stop the others.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The FUSE file system over a shared [`Tree`].
pub struct PowerLossFs {
    tree: Arc<Mutex<Tree>>,
    /// Directory listings by handle, taken when a listing starts at offset 0.
    listings: Mutex<HashMap<u64, Listing>>,
    next_fh: AtomicU64,
}

impl PowerLossFs {
    /// Serves `tree`, which the caller shares to cut it and read its stats.
    pub fn new(tree: Arc<Mutex<Tree>>) -> Self {
        Self {
            tree,
            listings: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    /// The tree, locked. Lock order: `listings` before the tree.
    fn tree(&self) -> MutexGuard<'_, Tree> {
        lock(&self.tree)
    }

    /// Creates `name` in `parent` on behalf of `req` and answers with the new entry.
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        what: New,
        meta: Meta,
    ) -> Result<FileAttr, Error> {
        let mut t = self.tree();
        check_caller(req, &mut t)?;
        let ino = t.make(parent.0, name.as_bytes(), what, meta)?;
        entry(&mut t, ino)
    }

    /// Fills `reply` from the listing of handle `fh` (taken afresh at offset 0); an
    /// entry's offset is its position plus one.
    fn readdir_into(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Result<(), Error> {
        let mut listings = lock(&self.listings);
        if offset == 0 || !listings.contains_key(&fh.0) {
            let list = self.tree().list(ino.0)?;
            listings.insert(fh.0, list);
        }
        let list = &listings[&fh.0];
        for (i, (name, child, kind)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(*child),
                i as u64 + 1,
                file_type(*kind),
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        Ok(())
    }

    /// Runs a change on behalf of `req`.
    fn change(
        &self,
        req: &Request,
        f: impl FnOnce(&mut Tree) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut t = self.tree();
        check_caller(req, &mut t)?;
        f(&mut t)
    }
}
