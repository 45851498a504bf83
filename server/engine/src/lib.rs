//! The engine of fvfsd: the store opened once ([`Engine::open`]: the tiers, the
//! repository over them, the data directory's lock), the S3 tier's key ([`keys`]),
//! and the jobs run on it ([`jobs`]: one [`jobs::Job`] trait; fsck and gc here, evict,
//! flush, migrate, export, the idle recompression's rounds and the automatic
//! snapshots beside their work in the server; listed while they run
//! and their outcomes recorded, [`Maintenance`]), each on a task of the store's
//! [`Workers`], on which the daemon also runs its loops. The daemon (its HTTP API,
//! WebDAV, the web page) and the one-shot `fvfsd` commands all open the store here and
//! start each job the one way it has.
//!
//! Not here (issue 48): the daemon's loops themselves (checkpoints, eviction,
//! recompression, samples, automatic snapshots), the replicators and the writer are
//! built by the server's `serve` on these workers.

mod dir;
mod engine;
pub mod jobs;
pub mod keys;
mod maintenance;
mod tty;
mod workers;

pub use dir::{create_dir, lock, Busy, DAEMON_INFO, MAINTENANCE};
pub use engine::{Engine, NasTier};
pub use maintenance::Maintenance;
pub use workers::Workers;
