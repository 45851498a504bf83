//! The mount's inode budget: once the inode table holds more than `--max-inodes`, the
//! kernel is asked to forget the names of files no request used lately, and the
//! FORGETs it then sends drop them from the table.
//!
//! The table mirrors what the kernel caches: a `find` over millions of files leaves
//! the kernel holding every one of them (about 1 KB of its own memory each) and the
//! table a record each (about 190 bytes: 738 MB for the mount of 3,000,000 files,
//! benches/README.md). The kernel gives them up only under memory pressure; this
//! bounds both by configuration.
//!
//! # Invariants
//! - Only the kernel drops an inode: the table asks it to forget a name
//!   (`Kernel::forget_name`, FUSE's entry invalidation), and the inode goes when
//!   the kernel's FORGET for it comes ([`super::inodes`]). A file open somewhere keeps
//!   its inode until it is closed; its name is looked up again on the next use, under
//!   the same inode number (a hash of its place).
//! - Never a directory, nor a file being written here ([`Inodes::idle_files`]).
//! - The kernel is told with no lock of the mount held (an invalidation waits for the
//!   kernel's requests in flight in that directory, whose answers may need those
//!   locks), and only of a name that still stands for the inode chosen.
//! - A round trims to nine tenths of the budget, so that a table at its budget is
//!   not trimmed by a few inodes every round.
//! - Past the budget, readdirplus links no new inode ([`Inodes::hand_out`]): a walk
//!   that only lists outruns no round; what grows the table then is what is looked up
//!   (a stat, an open), at the pace of those requests.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::inodes::Inodes;
use super::{lock, Kernel};

/// How often the table is measured against the budget. The budget is kept at the
/// kernel's pace of forgetting, not enforced on each lookup: when readdirplus still
/// linked every name, a `find` that made 90,000 inodes a second outran it (0.45-0.65
/// million held at the end of one over 1,000,000 files; benches/README.md).
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Keeps the table within the budget it holds (`Inodes::budget`).
pub struct Trimmer {
    inodes: Arc<Mutex<Inodes>>,
}

impl Trimmer {
    /// Also gives the table its budget, past which readdirplus links no new inode.
    pub(super) fn new(inodes: Arc<Mutex<Inodes>>, budget: usize) -> Self {
        lock(&inodes).set_budget(budget);
        Self { inodes }
    }

    /// Keeps the table within the budget, telling `held` the inodes it holds after
    /// each round, until `stop` is sent to or dropped.
    pub fn run(&self, kernel: &dyn Kernel, stop: &Receiver<()>, held: &dyn Fn(usize)) {
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(TRIM_EVERY) {
            self.round(kernel);
            held(lock(&self.inodes).len());
        }
    }

    /// Asks the kernel to forget files idle since the last round, as many as it
    /// takes to bring the table to nine tenths of the budget.
    fn round(&self, kernel: &dyn Kernel) {
        let idle = {
            let inodes = lock(&self.inodes);
            let budget = inodes.budget();
            if inodes.len() <= budget {
                return;
            }
            inodes.idle_files(inodes.len() - (budget - budget / 10))
        };
        for (ino, dir, name) in idle {
            // Renamed or removed since: that name is not the one to forget.
            if lock(&self.inodes).known(dir, &name) != Some(ino) {
                continue;
            }
            match kernel.forget_name(dir, &name) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::debug!("asking the kernel to forget inode {ino}: {e}");
                }
                _ => {}
            }
        }
    }
}
