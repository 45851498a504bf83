//! What WebDAV shows of an entry: length, times, kind and an ETag from content hashes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dav_server::fs::{DavDirEntry, DavMetaData, FsFuture, FsResult};
use futures::FutureExt;
use fvfs_manifest::{Entry, EntryKind};

#[derive(Clone, Debug)]
pub struct Meta {
    len: u64,
    modified: SystemTime,
    dir: bool,
    etag: Option<String>,
    executable: bool,
}

/// An HTTP date cannot be before 1970 (the `httpdate` crate panics on one): a file
/// dated earlier shows as dated 1970.
fn time(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}

impl Meta {
    /// An entry of the tree. The ETag names the content: a directory's node, a large
    /// file's node, or a small file's chunk list (so equal content has equal tags,
    /// and any change changes it).
    pub fn of(e: &Entry) -> Self {
        let dir = e.kind == EntryKind::Dir;
        let etag = match (&e.id, dir) {
            (Some(id), true) => Some(id.to_hex()[..32].to_owned()),
            (None, true) => None,
            (_, false) => Some(e.content_key().to_hex()[..32].to_owned()),
        };
        Self {
            len: if dir { 0 } else { e.size },
            modified: time(e.mtime_ns),
            dir,
            etag,
            executable: e.mode & 0o111 != 0,
        }
    }

    /// A file being written, before its commit.
    pub fn pending(len: u64) -> Self {
        Self {
            len,
            modified: SystemTime::now(),
            dir: false,
            etag: None,
            executable: false,
        }
    }

    /// A folder that is not in the tree (`/.snapshots`, a snapshot's root).
    pub fn folder(modified: SystemTime) -> Self {
        Self {
            len: 0,
            modified,
            dir: true,
            etag: None,
            executable: false,
        }
    }
}

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.len
    }

    fn modified(&self) -> FsResult<SystemTime> {
        Ok(self.modified)
    }

    fn is_dir(&self) -> bool {
        self.dir
    }

    fn etag(&self) -> Option<String> {
        self.etag.clone()
    }

    fn executable(&self) -> FsResult<bool> {
        Ok(self.executable)
    }
}

/// One name of a directory listing.
pub struct DirEntry {
    pub name: Vec<u8>,
    pub meta: Meta,
    /// It holds dead properties (PROPPATCH).
    pub props: bool,
}

impl DavDirEntry for DirEntry {
    fn name(&self) -> Vec<u8> {
        self.name.clone()
    }

    fn metadata(&'_ self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(meta) }.boxed()
    }
}
