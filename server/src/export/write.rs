//! The export's writers: each chunk read is written wherever the window's files use
//! it, into each file's temporary copy, and the writer that brings a file's last chunk
//! completes it (size, owner, attributes, mode, mtime, then the rename into place).
//!
//! A temporary copy is created once, exclusively, by whichever of its chunks comes
//! first (under the file's `temp` lock, so two writers never both create it), and
//! reopened by the others only while it is still the inode created. A file of one
//! chunk (or none), written at once by one writer, is made without a name where the
//! target can ([`Target::create_unnamed`]) and linked into place complete: one change
//! of its folder instead of a create and a rename, and nothing left by a crash.

use std::collections::HashMap;
use std::fs::{File, Permissions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use fvfs_cas::{ChunkId, Loaded, StoreError};
use fvfs_manifest::node::Meta;

use super::keep::Keep;
use super::target::{self, Target};
use crate::localmeta::At;

/// Where a chunk goes: (index in [`Window::files`], offset in that file) for each use.
pub type Places = Vec<(usize, u64)>;

/// Files being written and the chunks they wait for.
#[derive(Default)]
pub struct Window {
    pub files: Vec<Pending>,
    /// Where each chunk goes.
    pub uses: HashMap<ChunkId, Places>,
    pub chunks: usize,
}

/// A file of the window, shared with the tasks writing its chunks.
pub struct Pending {
    /// Its folder, relative to the target, and its name there.
    pub dir: PathBuf,
    pub name: Vec<u8>,
    /// Its path as the user sees it, for messages.
    pub shown: PathBuf,
    /// Its temporary copy once created (never, for a file made unnamed).
    pub temp: Mutex<Option<Temp>>,
    /// Written at once: one chunk reference, or none.
    pub whole: bool,
    pub mode: u32,
    pub mtime_ns: i64,
    pub meta: Option<Box<Meta>>,
    pub size: u64,
    /// Chunk references not yet written: the writer that brings it to 0 completes it.
    pub left: AtomicUsize,
    /// Why it cannot be completed.
    pub failed: Mutex<Option<String>>,
}

/// A temporary copy: its name, and its inode (device, number).
pub type Temp = (Vec<u8>, (u64, u64));

/// What a writer task completed.
#[derive(Default)]
pub struct Written {
    pub files: u64,
    pub bytes: u64,
}

/// Why a window stopped: the store became unreachable, or writing failed.
pub enum Stop {
    Unavailable(String),
    Failed(anyhow::Error),
}

impl Pending {
    pub fn fail(&self, why: String) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
    }

    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Its copy in `dir` (its folder, open), open for writing: an unnamed file for a
    /// file written at once where the target has them, else its temporary copy
    /// (created if it is not there yet).
    pub fn open(&self, target: &Target, dir: &OwnedFd) -> std::io::Result<File> {
        let mut temp = self.temp.lock().unwrap_or_else(|p| p.into_inner());
        if self.whole {
            if let Some(file) = target.create_unnamed(dir)? {
                return Ok(file);
            }
        }
        match &*temp {
            Some((name, id)) => target::reopen_temp(dir, name, *id),
            None => {
                let (name, file) = target.create_temp(dir)?;
                *temp = Some((name, target::open_id(&file)?));
                Ok(file)
            }
        }
    }

    /// Removes its temporary copy, if it made one and did not complete it (a completed
    /// file's copy is its final name now).
    pub fn remove_temp(&self, target: &Target) {
        if self.left.load(Ordering::Acquire) == 0 {
            return;
        }
        let temp = self.temp.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some((name, _)), Ok(dir)) = (&*temp, target.dir(&self.dir)) {
            target::remove(&dir, name);
        }
    }

    /// Completes it once its bytes are all written (`file` is its copy from
    /// [`Self::open`], in folder `dir`): cut to its size (nothing longer can be there,
    /// but a short last write is extended), its owner and attributes as `keep`
    /// allows, its mode and mtime (a rename or link keeps them), then into place,
    /// never over a name. On failure its temporary copy is removed (an unnamed one
    /// goes with its descriptor).
    pub fn complete(&self, keep: &Keep, dir: &OwnedFd, file: File) -> Result<()> {
        let temp = self.temp.lock().unwrap_or_else(|p| p.into_inner());
        let cannot = || format!("cannot finish {}", self.shown.display());
        let mtime = || format!("cannot set mtime of {}", self.shown.display());
        let create = || format!("cannot create {}", self.shown.display());
        let settle = |file: &File| -> Result<()> {
            file.set_len(self.size).with_context(cannot)?;
            // Ownership first: a chown clears setuid and setgid bits.
            super::set_meta(
                keep,
                At::Open(file.as_fd()),
                &self.shown,
                self.meta.as_deref(),
            );
            file.set_permissions(Permissions::from_mode(self.mode))
                .with_context(cannot)
        };
        let Some((tmp, _)) = temp.as_ref() else {
            // Unnamed: made on a local file system (they alone have `O_TMPFILE`),
            // which moves no mtime at close, so it is set before the link.
            settle(&file)?;
            target::set_mtime(file.as_fd(), self.mtime_ns).with_context(mtime)?;
            return target::link_new(&file, dir, &self.name).with_context(create);
        };
        let finish = || -> Result<()> {
            settle(&file)?;
            // The mtime after the close: a file system that writes back on close would
            // otherwise move it. By name in the open folder, never followed.
            drop(file);
            target::set_mtime_at(dir, tmp, self.mtime_ns).with_context(mtime)?;
            target::rename_new(dir, tmp, &self.name).with_context(create)
        };
        finish().inspect_err(|_| target::remove(dir, tmp))
    }
}

/// Writes each chunk read wherever its places say; a chunk that could not be read
/// fails the files using it. Stops before the next chunk once `halt` is set, or when
/// the store is unreachable or writing fails; returns what it completed either way.
pub fn write_chunks(
    target: &Target,
    keep: &Keep,
    files: &[Pending],
    work: Vec<(Result<Loaded, StoreError>, Places)>,
    halt: &AtomicBool,
) -> (Written, Option<Stop>) {
    let mut done = Written::default();
    let mut w = Writer {
        target,
        keep,
        files,
        dir: None,
    };
    for (answer, places) in work {
        if halt.load(Ordering::Acquire) {
            break;
        }
        match answer {
            Ok(loaded) => {
                if let Err(e) = w.chunk(&loaded.data, &places, &mut done) {
                    return (done, Some(Stop::Failed(e)));
                }
            }
            Err(StoreError::Unavailable(why)) => return (done, Some(Stop::Unavailable(why))),
            Err(e) => {
                for (f, _) in places {
                    files[f].fail(e.to_string());
                }
            }
        }
    }
    (done, None)
}

/// What one writer task writes with.
struct Writer<'a> {
    target: &'a Target,
    keep: &'a Keep,
    files: &'a [Pending],
    /// The folder it wrote in last, open (chunks come in about the order files were
    /// stored, so mostly for files of the same folder).
    dir: Option<(&'a Path, OwnedFd)>,
}

impl<'a> Writer<'a> {
    /// Folder `rel` of the target, open.
    fn dir(&mut self, rel: &'a Path) -> std::io::Result<&OwnedFd> {
        if self.dir.as_ref().is_none_or(|(last, _)| *last != rel) {
            self.dir = Some((rel, self.target.dir(rel)?));
        }
        Ok(&self.dir.as_ref().expect("just opened").1)
    }

    /// Writes `data` wherever `places` say, completing each file it was the last chunk
    /// of (counted in `w`). A file whose folder or temporary copy is no longer what
    /// the export made fails alone; a failed write stops the export.
    fn chunk(&mut self, data: &[u8], places: &[(usize, u64)], w: &mut Written) -> Result<()> {
        let (target, keep, files) = (self.target, self.keep, self.files);
        for &(f, offset) in places {
            let p = &files[f];
            if p.failure().is_some() {
                continue;
            }
            let opened = self
                .dir(&p.dir)
                .and_then(|dir| Ok((p.open(target, dir)?, dir)));
            let (file, dir) = match opened {
                Ok(open) => open,
                Err(e) if super::entry_failure(&e) => {
                    p.fail(e.to_string());
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", p.shown.display()))
                }
            };
            file.write_all_at(data, offset)
                .with_context(|| format!("cannot write {}", p.shown.display()))?;
            if p.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                match p.complete(keep, dir, file) {
                    Ok(()) => {
                        w.files += 1;
                        w.bytes += p.size;
                    }
                    // Put back, so the window names it as not exported.
                    Err(e) => {
                        p.fail(format!("{e:#}"));
                        p.left.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        }
        Ok(())
    }
}
