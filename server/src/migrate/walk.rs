//! Walking a source tree for migrate: what to import (with the owners, device numbers
//! and extended attributes of each path), and what to skip and why. The walk itself,
//! and its excludes, are `fvfs_walk`'s.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fvfs_manifest::node::{EntryKind, Meta};
use fvfs_walk::{Event, Found, Kind, Rules, ToRead};

use super::statcache::Cached;
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
    pub uid: u32,
    pub gid: u32,
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
            uid: m.uid(),
            gid: m.gid(),
        }
    }
}

/// A regular file to read. Its owner and extended attributes are read by the worker
/// that reads it, through the open file, or come from the stat cache when the file is
/// unchanged (setting either changes a file's ctime): not by the walk, which one
/// thread does for all files.
pub struct FileJob {
    pub src: ToRead,
    pub dest: Vec<u8>,
    pub stat: Stat,
    /// Its number in the walk's order (the stat cache writes what it met in it).
    pub seq: u64,
    /// What the stat cache had for it.
    pub cached: Option<Cached>,
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

/// Lists everything below `src` that `rules` keep, parents before children; returns
/// how many entries the rules left out.
pub fn walk(src: &Path, dest: &[u8], rules: &Rules, emit: &mut dyn FnMut(Item)) -> u64 {
    fvfs_walk::walk(src, dest, rules, &mut |event| {
        let found = match event {
            Event::Found(found) => *found,
            Event::Skipped { src, reason } => return emit(Item::Skipped { src, reason }),
        };
        let Found {
            src,
            folder,
            dest,
            meta,
            kind,
        } = found;
        let stat = Stat::of(&meta);
        let local = |src: &Path| Box::new(localmeta::read(src, &meta));
        emit(match kind {
            Kind::File => Item::File(FileJob {
                src: ToRead::new(src, folder),
                dest,
                stat,
                seq: 0,
                cached: None,
            }),
            Kind::Dir => Item::Dir {
                dest,
                stat,
                meta: local(&src),
            },
            Kind::Symlink(target) => Item::Symlink {
                dest,
                target,
                stat,
                meta: local(&src),
            },
            Kind::Special => match localmeta::special_kind(&meta) {
                Some(kind) => Item::Special {
                    dest,
                    kind,
                    stat,
                    meta: local(&src),
                },
                None => Item::Skipped {
                    src,
                    reason: "not a kind of file fvfs keeps".into(),
                },
            },
        })
    })
}
