//! `fvfs-powerloss`: a FUSE file system that behaves like a disk losing its unsynced
//! writes on a power cut, for crash tests of programs that must use fsync right.
//!
//! The binary mounts an empty, in-memory file system and serves it in the foreground.
//! It prints `ready` once mounted, then reads commands on stdin, one per line: `cut`
//! (a power cut; answers `ok`) and `stats` (one line of JSON). EOF on stdin, SIGTERM or
//! SIGINT unmount it and exit 0. Tests drive it through [`Harness`].
//!
//! # What it models ([`model`])
//! Strictly what POSIX promises, and no more:
//! - a regular file's content and size become durable by `fsync` or `fdatasync` on it;
//!   `write`, truncation and `fallocate` (plain, `KEEP_SIZE`, `PUNCH_HOLE | KEEP_SIZE`,
//!   `ZERO_RANGE`) change only the current state;
//! - a directory's entry list (name -> inode) becomes durable by `fsyncdir` on it, each
//!   directory separately: a file created and fsynced in a directory never fsynced
//!   disappears at a cut; a rename not followed by an fsync of both directories is
//!   undone in each directory that was not synced;
//! - a cut restores every durable state and frees what no durable entry reaches;
//! - a write through a descriptor opened `O_SYNC` or `O_DSYNC` is durable when it
//!   returns (it syncs its whole file, like an fdatasync right after it);
//! - `sync_file_range` never reaches a FUSE file system, so it makes nothing durable
//!   (right: it syncs neither metadata nor the disk's cache).
//!
//! Files open across a cut keep working on their inode if it survived, and fail with
//! ESTALE if it did not. A change that was in flight from a process killed before the
//! cut is refused (EIO) rather than applied after it.
//!
//! # What it does not model
//! - Partial survival: *all* unsynced state is dropped at a cut, never some of it (no
//!   reordered or torn writes, no "the rename happened to reach the disk"). This is the
//!   worst case for a missing fsync, and deterministic.
//! - Metadata durability: mode, owner and times are not rolled back at a cut (they
//!   stay as they were just before it); only contents, sizes and entries are.
//! - Extended attributes, POSIX and flock locks (the kernel handles locks locally, which
//!   works for a single machine), `mmap` of files (direct I/O: shared mappings are
//!   refused), readdirplus, copy_file_range (the kernel falls back to read/write).
//! - A directory durably named in two places (a directory rename synced in the new
//!   parent only) keeps only its first name in breadth-first order after a cut.
//!
//! `stats` counts bytes in whole pages of [`model::PAGE`] bytes.

pub mod control;
pub mod fs;
mod harness;
pub mod model;

pub use harness::{Harness, REPLY_TIMEOUT, STOP_TIMEOUT};
