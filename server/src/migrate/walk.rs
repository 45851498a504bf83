//! Walking a source tree for migrate: what to import, and what to skip and why.
//!
//! Nothing here follows symlinks or opens files: it only lists directories and reads
//! `lstat`, so a FIFO or a device in the tree can never block or be read.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fvfs_manifest::node::{EntryKind, Meta};
use fvfs_manifest::path::join;

use crate::localmeta;

/// What `lstat` said of a source file; if it still says the same, the file is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    pub mode: u32,
}

impl Stat {
    pub fn of(m: &Metadata) -> Self {
        Self {
            size: m.len(),
            mtime_ns: fvfs_manifest::node::unix_ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: fvfs_manifest::node::unix_ns(m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
            mode: m.mode() & 0o7777,
        }
    }
}

/// A regular file to read.
pub struct FileJob {
    pub src: PathBuf,
    pub dest: Vec<u8>,
    pub stat: Stat,
    pub meta: Box<Meta>,
}

pub enum Item {
    Dir {
        dest: Vec<u8>,
        stat: Stat,
        meta: Box<Meta>,
    },
    Symlink {
        dest: Vec<u8>,
        target: Vec<u8>,
        stat: Stat,
        meta: Box<Meta>,
    },
    /// A FIFO, socket or device.
    Special {
        dest: Vec<u8>,
        kind: EntryKind,
        stat: Stat,
        meta: Box<Meta>,
    },
    File(FileJob),
    Skipped {
        src: PathBuf,
        reason: String,
    },
}

/// Lists everything below `src` (the directory itself included, as `dest`), parents
/// before children.
pub fn walk(src: &Path, dest: &[u8], emit: &mut dyn FnMut(Item)) {
    let mut stack = vec![(src.to_path_buf(), dest.to_vec())];
    while let Some((dir, dest)) = stack.pop() {
        let names = match read_names(&dir) {
            Ok(n) => n,
            Err(e) => {
                emit(Item::Skipped {
                    src: dir,
                    reason: format!("cannot list directory: {e}"),
                });
                continue;
            }
        };
        for name in names {
            let src = dir.join(&name);
            let dest = join(&dest, name.as_bytes());
            let meta = match fs::symlink_metadata(&src) {
                Ok(m) => m,
                Err(e) => {
                    emit(Item::Skipped {
                        src,
                        reason: format!("cannot stat: {e}"),
                    });
                    continue;
                }
            };
            let stat = Stat::of(&meta);
            let t = meta.file_type();
            let local = Box::new(localmeta::read(&src, &meta));
            if t.is_dir() {
                emit(Item::Dir {
                    dest: dest.clone(),
                    stat,
                    meta: local,
                });
                stack.push((src, dest));
            } else if t.is_file() {
                emit(Item::File(FileJob {
                    src,
                    dest,
                    stat,
                    meta: local,
                }));
            } else if t.is_symlink() {
                match fs::read_link(&src) {
                    Ok(target) => emit(Item::Symlink {
                        dest,
                        target: target.into_os_string().into_vec(),
                        stat,
                        meta: local,
                    }),
                    Err(e) => emit(Item::Skipped {
                        src,
                        reason: format!("cannot read symlink: {e}"),
                    }),
                }
            } else if let Some(kind) = localmeta::special_kind(&meta) {
                emit(Item::Special {
                    dest,
                    kind,
                    stat,
                    meta: local,
                });
            }
        }
    }
}

fn read_names(dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

use std::os::unix::ffi::OsStringExt;
