//! Files desktop clients write for themselves, not for their user: Finder's `.DS_Store`
//! and AppleDouble `._*` files, Windows' `desktop.ini` and `Thumbs.db`. Committed, each
//! folder a Mac opens would add versions to the history, and every device would see
//! another's window positions; so they live in the daemon's memory only: written,
//! read and deleted like files, never listed, never versioned, gone at restart (which
//! their writers expect of a network share).
//!
//! # Invariants
//! - At most [`MAX_FILES`] files of at most [`MAX_BYTES`] each are kept; beyond, the
//!   oldest written goes.

use std::collections::{HashMap, VecDeque};
use std::io::SeekFrom;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dav_server::fs::{DavFile, DavMetaData, FsError, FsFuture};
use futures::FutureExt;

use super::meta::Meta;
use crate::serve::State;

/// Files kept at most.
pub const MAX_FILES: usize = 4096;
/// Bytes one file may hold.
pub const MAX_BYTES: usize = 1 << 20;

/// Whether a file name is one of the clients' own.
pub fn is_scratch(path: &[u8]) -> bool {
    let name = path.rsplit(|b| *b == b'/').next().unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    name.starts_with(b"._")
        || matches!(
            lower.as_slice(),
            b".ds_store" | b"desktop.ini" | b"thumbs.db" | b".localized"
        )
}

/// The files by path, and their paths oldest first.
type Files = (HashMap<Vec<u8>, Bytes>, VecDeque<Vec<u8>>);

#[derive(Default)]
pub struct Scratch {
    inner: Mutex<Files>,
}

impl Scratch {
    pub fn get(&self, path: &[u8]) -> Option<Bytes> {
        self.lock().0.get(path).cloned()
    }

    /// Keeps `data` as the file at `path`; false if it is too large to keep.
    pub fn put(&self, path: &[u8], data: Bytes) -> bool {
        if data.len() > MAX_BYTES {
            return false;
        }
        let mut g = self.lock();
        let (files, order) = &mut *g;
        if files.insert(path.to_vec(), data).is_none() {
            order.push_back(path.to_vec());
        }
        while files.len() > MAX_FILES {
            match order.pop_front() {
                Some(oldest) => {
                    files.remove(&oldest);
                }
                None => break,
            }
        }
        true
    }

    pub fn remove(&self, path: &[u8]) -> bool {
        let mut g = self.lock();
        let (files, order) = &mut *g;
        order.retain(|p| p != path);
        files.remove(path).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A client file opened: read from memory, or written to memory when flushed.
pub struct MemFile {
    state: Arc<State>,
    path: Vec<u8>,
    data: Vec<u8>,
    pos: usize,
    write: bool,
}

impl std::fmt::Debug for MemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemFile({} bytes)", self.data.len())
    }
}

impl MemFile {
    pub fn new(state: Arc<State>, path: Vec<u8>, data: Vec<u8>, write: bool) -> Self {
        Self {
            state,
            path,
            data,
            pos: 0,
            write,
        }
    }
}

impl DavFile for MemFile {
    fn metadata(&'_ mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta::pending(self.data.len() as u64));
        async move { Ok(meta) }.boxed()
    }

    fn write_buf(&'_ mut self, mut buf: Box<dyn bytes::Buf + Send>) -> FsFuture<'_, ()> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        self.write_bytes(bytes)
    }

    fn write_bytes(&'_ mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move {
            if !self.write || self.data.len() + buf.len() > MAX_BYTES {
                return Err(FsError::TooLarge);
            }
            self.data.extend_from_slice(&buf);
            Ok(())
        }
        .boxed()
    }

    fn read_bytes(&'_ mut self, count: usize) -> FsFuture<'_, Bytes> {
        let end = self.data.len().min(self.pos.saturating_add(count));
        let out = Bytes::copy_from_slice(self.data.get(self.pos..end).unwrap_or_default());
        self.pos = end.max(self.pos);
        async move { Ok(out) }.boxed()
    }

    fn seek(&'_ mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => (self.data.len() as u64).checked_add_signed(d),
            SeekFrom::Current(d) => (self.pos as u64).checked_add_signed(d),
        };
        if let Some(to) = to {
            self.pos = to as usize;
        }
        async move { to.ok_or(FsError::GeneralFailure) }.boxed()
    }

    fn flush(&'_ mut self) -> FsFuture<'_, ()> {
        let kept = !self.write
            || self
                .state
                .dav
                .scratch
                .put(&self.path, Bytes::from(self.data.clone()));
        async move {
            if kept {
                Ok(())
            } else {
                Err(FsError::TooLarge)
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_files_are_recognised_and_kept_bounded() {
        for name in [
            "/a/.DS_Store",
            "/._photo.jpg",
            "/x/Desktop.ini",
            "/THUMBS.DB",
        ] {
            assert!(is_scratch(name.as_bytes()), "{name}");
        }
        for name in ["/a/DS_Store", "/photo._jpg", "/x/desktop.ini.txt", "/"] {
            assert!(!is_scratch(name.as_bytes()), "{name}");
        }
        let s = Scratch::default();
        assert!(!s.put(b"/big/.DS_Store", Bytes::from(vec![0; MAX_BYTES + 1])));
        for i in 0..MAX_FILES + 10 {
            assert!(s.put(
                format!("/d{i}/.DS_Store").as_bytes(),
                Bytes::from_static(b"x")
            ));
        }
        assert_eq!(s.get(b"/d0/.DS_Store"), None, "the oldest went");
        assert_eq!(
            s.get(format!("/d{}/.DS_Store", MAX_FILES + 9).as_bytes())
                .as_deref(),
            Some(&b"x"[..])
        );
        assert!(s.remove(format!("/d{}/.DS_Store", MAX_FILES + 9).as_bytes()));
        assert!(!s.remove(b"/d0/.DS_Store"));
    }
}
