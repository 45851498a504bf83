//! Typed answers of the API routes that are more than a view of the tree: the daemon's
//! status and its tiers, replication backlog, eviction, flush, disk usage, devices,
//! writes, fsck and gc reports, the progress of running tasks, and the outcome of
//! migrate and export. The daemon serialises these; fvfsc and fvfsd read them back
//! as the same types, never by key.

use std::net::IpAddr;

use fvfs_cas::{ChunkId, Compacted, Recompressed};
use serde::{Deserialize, Serialize};

use crate::views::{EntryInfo, StatusInfo};

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub daemon: DaemonInfo,
    pub store: StatusInfo,
    pub tiers: Vec<TierStatus>,
    /// Maintenance tasks running now (fsck, gc).
    pub maintenance: Vec<TaskProgress>,
    /// Automatic snapshots, when `[snapshots]` asks for some.
    #[serde(default)]
    pub auto_snapshots: Option<AutoSnapshots>,
    /// How the last fsck and the last gc ended (kept across restarts).
    #[serde(default)]
    pub last_tasks: Vec<TaskOutcome>,
    /// The daemon's background workers (checkpoints, eviction, samples, automatic
    /// snapshots).
    #[serde(default)]
    pub workers: Vec<WorkerStatus>,
}

/// A background worker of the daemon: a round every `every_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    pub every_ms: u64,
    /// Rounds run since the daemon started, and how many of them failed.
    pub rounds: u64,
    pub failures: u64,
    /// Whether a round is running now.
    pub busy: bool,
    /// When the last round ended (Unix seconds), and why it failed if it did.
    pub last_round: Option<i64>,
    pub last_error: Option<String>,
}

/// How a maintenance task (fsck, gc) ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub task: String,
    /// When it ended (Unix seconds).
    pub finished: i64,
    /// Whether it ended without finding or leaving a problem.
    pub ok: bool,
    /// One line for people: what it found or why it failed.
    pub summary: String,
}

/// `GET /v1/status/history`: the tiers' usage and backlog over time, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageHistory {
    /// Seconds between two samples.
    pub interval_secs: u64,
    pub samples: Vec<UsageSample>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSample {
    /// Unix seconds.
    pub time: i64,
    pub tiers: Vec<TierUsage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierUsage {
    pub name: String,
    pub chunks: u64,
    pub bytes: u64,
    /// Chunks waiting to be copied to this tier.
    pub queue_depth: u64,
}

/// `GET /v1/whoami`: what the caller's token lets it do, so a client shows only that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// "read", "write" or "admin".
    pub role: String,
    /// Whether this daemon asks for tokens (false: open on loopback).
    pub auth: bool,
    /// The seed of the store's chunk cut points, which a client chunks with so that
    /// what it sends deduplicates (`fvfs_cas::chunker`; 0 before stores had one).
    #[serde(default)]
    pub cut_seed: u64,
}

/// `POST /v1/download-links/PATH`: a link that downloads the file once, without a
/// token (the page's downloads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadLink {
    /// `/v1/download/LINK`, on this daemon.
    pub url: String,
    /// How long it can wait for its download.
    pub expires_in_secs: u64,
}

/// What the daemon's automatic snapshots did last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoSnapshots {
    /// How often one is taken (when something changed): "hour", "day", "week", "month".
    pub every: String,
    /// The time (Unix seconds, the daemon's clock) of the last round finished.
    pub round: Option<i64>,
    /// The newest automatic snapshot this daemon took.
    pub taken: Option<String>,
    /// The automatic snapshots the last pruning deleted.
    pub pruned: Vec<String>,
    /// Versions the last collection after a pruning dropped.
    pub versions_dropped: usize,
    /// Why the last round failed, if it did (the next one tries again).
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub node_id: String,
    pub listen: String,
    /// The TLS certificate's fingerprint (HTTPS on the same port).
    #[serde(default)]
    pub fingerprint: String,
    /// Whether requests need a token.
    pub auth: bool,
    pub uptime_secs: u64,
}

/// One tier as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStatus {
    pub name: String,
    pub bit: u8,
    pub chunks: u64,
    /// What its chunks took when first stored (what watermarks are compared with).
    pub bytes: u64,
    /// What the tier's own files hold now (records and their headers, as the store
    /// counts them): local and NAS only, smaller than `bytes` once their segments were
    /// recompressed.
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    pub high_watermark_bytes: Option<u64>,
    pub low_watermark_bytes: Option<u64>,
    pub available: bool,
    /// Chunks waiting to be copied to this tier.
    pub queue_depth: u64,
    #[serde(default)]
    pub oldest_age_secs: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// What a task is doing now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    pub task: String,
    pub phase: String,
    /// Items done in this phase, out of `total` (0: not known in advance).
    pub done: u64,
    pub total: u64,
    /// Bytes read and verified so far, over all phases.
    pub bytes: u64,
}

/// `GET /v1/wal`: replication work waiting per colder tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub tiers: Vec<TierStatus>,
    /// Chunks waiting, over all tiers.
    pub pending: u64,
}

/// `POST /v1/admin/flush`: the tiers that now hold everything accepted before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flushed {
    pub flushed: bool,
    pub tiers: Vec<String>,
}

/// `POST /v1/admin/evict`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eviction {
    pub evicted_chunks: u64,
    pub evicted_bytes: u64,
    pub tiers: Vec<Evicted>,
    /// Why nothing could be evicted, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What one eviction run freed on one tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evicted {
    pub tier: String,
    pub chunks: u64,
    pub bytes: u64,
    /// Bytes the tier held before and after.
    pub before: u64,
    pub after: u64,
}

/// `GET /v1/du/PATH`: logical bytes below a path, unique bytes after dedup, and
/// stored bytes per tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub version: u64,
    pub path: String,
    pub files: u64,
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub tiers: TierBytes,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierBytes {
    pub local: u64,
    pub nas: u64,
    pub s3: u64,
}

/// `GET /v1/devices`: daemons seen over mDNS and clients seen over HTTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devices {
    pub daemons: Vec<DaemonSeen>,
    pub clients: Vec<ClientSeen>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSeen {
    pub name: String,
    pub host: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    pub version: Option<String>,
    pub node_id: Option<String>,
    /// The TLS certificate fingerprint announced (anyone can announce anything: a
    /// client trusts it only for a daemon it has not pinned otherwise).
    #[serde(default)]
    pub fingerprint: Option<String>,
    pub last_seen: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSeen {
    pub address: IpAddr,
    pub agent: String,
    pub last_seen: u64,
}

/// The answer to a write: the version it made, and the file's size for an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// `GET /v1/meta/PATH`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub version: u64,
    pub entry: EntryInfo,
    /// A file's content by id, for clients that verify what they read: its file node
    /// (a large file) or its chunks listed inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
}

/// What a file holds, as its entry records it ([`fvfs_node::file_chunks`] lists it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    pub id: Option<fvfs_cas::ChunkId>,
    pub chunks: Vec<fvfs_node::ChunkRef>,
}

/// `GET /v1/ls/PATH`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub version: u64,
    pub path: String,
    pub entries: Vec<EntryInfo>,
}

/// The body of `POST /v1/snapshots`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCreate {
    pub name: String,
}

/// The body of `POST /v1/rollback`: a version number, snapshot name or `HEAD~N`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub to: String,
}

/// `DELETE /v1/snapshots/NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDeleted {
    pub deleted: String,
    /// The version it named, which stays in the log.
    pub version: u64,
}

/// `PUT /v1/chunks/ID`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkStored {
    pub id: ChunkId,
    /// False when the daemon held it already.
    pub stored: bool,
}

/// Chunks one `POST /v1/chunks/read` may ask for (a longer list is refused).
pub const MAX_READ_IDS: usize = 1024;

/// Ids one `POST /v1/chunks/missing` may ask about (a longer list is refused).
pub const MAX_MISSING_IDS: usize = 10_000;

/// A list of chunk ids: the body of `POST /v1/chunks/missing` and `/read`, and the
/// answer of `/missing` (`{"missing": [...]}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    pub ids: Vec<ChunkId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub missing: Vec<ChunkId>,
}

/// `POST /v1/chunks`: records stored, and those the daemon held already.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStored {
    pub stored: u64,
    pub present: u64,
}

/// What a bulk command (migrate, export) did: its summary line, and each path it
/// could not do, with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub summary: String,
    pub skipped: Vec<String>,
    /// What was done differently from what was stored, by path, when asked (export's
    /// `-v`: privileged metadata left out). Not a failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The version made (migrate) or read (export).
    pub version: Option<u64>,
}

/// What fsck found wrong with one chunk, and where it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub id: ChunkId,
    pub what: String,
    /// The first path found that uses the chunk.
    pub path: String,
    /// The tier concerned, if the problem is a tier's copy.
    #[serde(default)]
    pub tier: Option<String>,
    /// Whether `repair` fixed it.
    #[serde(default)]
    pub repaired: bool,
}

/// What is wrong with a tier's own bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreProblem {
    pub tier: String,
    pub what: String,
    /// The first path found that uses the chunk concerned, if the problem is one
    /// chunk's and a checked version reaches it.
    #[serde(default)]
    pub path: Option<String>,
    /// Whether `repair` rebuilt the bookkeeping from the data.
    pub repaired: bool,
}

/// `POST /v1/admin/fsck`.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReport {
    pub versions: usize,
    pub nodes: u64,
    pub data_chunks: u64,
    pub data_bytes_read: u64,
    pub problems: Vec<Problem>,
    /// Problems with a tier's own bookkeeping (a pack store's index), one line each.
    #[serde(default)]
    pub stores: Vec<StoreProblem>,
    /// Copies a tier holds durably though the chunk's bitmask does not claim them (a
    /// crash between a copy and its bit, or between a bit cleared and the copy's
    /// deletion): harmless, so not problems; with `repair` they are claimed.
    #[serde(default)]
    pub unclaimed: u64,
    /// Of those, claimed by `repair` (bit set, queue entry gone).
    #[serde(default)]
    pub claimed: u64,
}

impl FsckReport {
    /// No problem left unrepaired.
    pub fn is_clean(&self) -> bool {
        self.problems.iter().all(|p| p.repaired) && self.stores.iter().all(|p| p.repaired)
    }
}

/// Chunks and bytes a collection freed on one tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freed {
    pub tier: String,
    pub chunks: u64,
    pub bytes: u64,
}

/// What S3 compaction did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// Packs in the bucket before.
    pub packs: u64,
    /// Their bytes.
    pub pack_bytes: u64,
    /// Packs deleted because nothing in them was live.
    pub packs_deleted: u64,
    /// Packs rewritten because their live share was low, then deleted.
    pub packs_rewritten: u64,
    /// Bytes of the packs deleted or rewritten.
    pub bytes_freed: u64,
    /// Live frame bytes uploaded again by the rewrite.
    pub bytes_moved: u64,
}

/// What the S3 tier's follow of the local blocks did (issue 47): local blocks whose
/// members S3 held as frames, uploaded whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followed {
    /// Local blocks looked at.
    pub looked: u64,
    /// Blocks uploaded, with their live members and their bytes (as stored).
    pub blocks: u64,
    pub chunks: u64,
    pub bytes: u64,
    /// Blocks left because S3 does not hold all their members yet (replication has
    /// them queued): a later pass looks at them again.
    pub waiting: u64,
}

impl Followed {
    pub fn add(&mut self, other: &Followed) {
        self.looked += other.looked;
        self.blocks += other.blocks;
        self.chunks += other.chunks;
        self.bytes += other.bytes;
        self.waiting += other.waiting;
    }
}

/// `POST /v1/admin/gc`.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub versions_kept: usize,
    /// Numbers of the versions dropped (or, dry, that would be).
    pub versions_dropped: Vec<u64>,
    /// Chunks reachable from the kept versions.
    pub reachable: u64,
    /// Chunks whose records were removed (or would be).
    pub chunks_freed: u64,
    /// Per tier: copies deleted and their stored bytes (for S3, locations forgotten;
    /// the space comes back with `compaction`).
    pub tiers: Vec<Freed>,
    /// Unreachable chunks kept because a writer used them or they are recent.
    pub kept_recent: u64,
    /// Chunks an interrupted collection had condemned, finished now.
    pub resumed: u64,
    /// Copies that no record named, deleted (offline runs only).
    pub orphans: u64,
    /// Copies that could not be deleted (their tombstones stay for the next run).
    pub failed: Vec<String>,
    pub compaction: Option<Compaction>,
    /// Per local or NAS tier: sparse segment files rewritten and the space given back.
    #[serde(default)]
    pub segments: Vec<(String, Compacted)>,
    /// Per local or NAS tier, with `--recompress`: segments rewritten denser.
    #[serde(default)]
    pub recompressed: Vec<(String, Recompressed)>,
    /// With `--recompress` and an S3 tier: the bucket following the local blocks.
    #[serde(default)]
    pub followed: Option<Followed>,
    /// Why the S3 step did not run, if it did not.
    pub s3_skipped: Option<String>,
}

impl GcReport {
    /// Whether everything condemned was deleted and the S3 step ran (when there is S3).
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.s3_skipped.is_none()
    }
}
