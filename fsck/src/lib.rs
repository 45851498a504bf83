//! Integrity checking and repair of an fvfs repository, tier by tier.
//!
//! [`check`] walks the trees of the chosen versions, reading tree nodes from the first
//! tier that holds them whole (without promoting or healing anything, so damage is seen,
//! not hidden), and verifies that every reachable node decodes, that every file's chunk
//! list adds up, that the names of a file with several agree ([`links`]), and that
//! every referenced chunk has a chunk record. Then, for every
//! reachable chunk and every tier, it checks that a tier whose bit the record sets holds
//! the chunk (with `read_data`: that the stored frame decodes to its id). Chunks are
//! checked with bounded concurrency, in the local tier's storage order; the reachable
//! ids and that order are sorted sets ([`spill`]) held in memory up to a budget and on
//! disk beyond it, so memory does not grow with the store (the tree nodes' ids are
//! kept in memory: a walk reads each once).
//! Each tier's own bookkeeping (`check_store`) is checked beside the walk and the
//! reads, or before them when repairing (a rebuilt index may bring chunks back); with
//! `read_data` it starts after the walk and leaves the records the reads take whole
//! to them (each read checks its record's header and checksum, then the content).
//! fsck runs beside a live daemon, whose replication and eviction change the tiers
//! under it: a tier is reported lacking a chunk only if a fresh read, between two
//! reads of the record that both claim it, fails too ([`still_bad`]).
//!
//! With `repair`, a chunk missing or damaged on a tier its bitmask claims is copied
//! again from a tier that holds it whole; a chunk no tier holds whole is reported as
//! unrepairable, with the paths that need it. Shared subtrees are checked once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use fvfs_api::reports::{FsckReport, Problem, StoreProblem};
use fvfs_cas::{ChunkId, ChunkStore, StoreCheck, StoreError};
use fvfs_manifest::meta::TIER_S3;
use fvfs_manifest::{ChunkKind, CopyMark, ManifestError, Repo, Version};
use fvfs_tiering::s3::Packs;
use fvfs_tiering::{Publishing, Replication};

mod error;
pub mod gc;
mod links;
mod newest;
pub mod progress;
mod reach;
pub mod retention;
pub mod spill;
mod walk;

pub use error::FsckError;
pub use newest::newest_chunks;
pub use progress::Progress;
pub use spill::Spill;

use reach::{name_paths, walk_trees};
use spill::Sorted;

/// Checkers at once, each taking [`READ_BATCH`] chunks: enough reads in flight to keep
/// a disk's queue full and a cold tier's link busy.
const CONCURRENCY: usize = 8;
/// Chunks a checker takes at once; with `read_data` each tier reads them in one
/// `get_many`.
const READ_BATCH: usize = 16;

/// One tier as fsck sees it: its own store (not the read-through one).
#[derive(Clone)]
pub struct Tier {
    pub name: &'static str,
    pub bit: u8,
    pub store: Arc<dyn ChunkStore>,
    /// The same store's packs, when this is the S3 tier: fsck lists them, gc tells its
    /// log of dropped versions and compacts them.
    pub s3: Option<Arc<dyn Packs>>,
}

/// What to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Read and verify every stored copy, not only check it is there.
    pub read_data: bool,
    /// Copy missing or damaged chunks again from a healthy tier.
    pub repair: bool,
}

/// What [`check`] found, and every tree node it reached (recovery marks them as
/// nodes).
pub struct Checked {
    pub report: FsckReport,
    pub node_ids: Vec<ChunkId>,
}

/// The versions fsck looks at: `version` alone if given, every one with `all`, else
/// HEAD and the snapshots.
pub fn versions_to_check(
    repo: &Repo,
    all: bool,
    version: Option<&str>,
) -> Result<Vec<Version>, ManifestError> {
    if let Some(spec) = version {
        return Ok(vec![repo.resolve(spec)?]);
    }
    if all {
        return repo.log().collect();
    }
    let mut versions: Vec<Version> = repo.head()?.into_iter().collect();
    for (_, n) in repo.snapshots()? {
        versions.push(repo.version(n)?);
    }
    Ok(versions)
}

/// Checks `versions` on `tiers` (warmest first; the first must be the local tier),
/// with sorted sets beyond memory's budget in `spill`.
pub async fn check(
    repo: &Arc<Repo>,
    tiers: &[Tier],
    versions: &[Version],
    opts: Options,
    spill: &Spill,
    progress: &Arc<Progress>,
) -> Result<Checked, FsckError> {
    let mut report = FsckReport {
        versions: versions.len(),
        ..FsckReport::default()
    };
    // Without reading data, an S3 copy is there if its pack is: one listing tells.
    let mut listed = None;
    if !opts.read_data {
        if let Some(s3) = tiers.iter().find_map(|t| t.s3.as_ref()) {
            listed = Some(Arc::new(s3.pack_names().await?));
        }
    }
    // Each tier's own bookkeeping, on a task of its own: with `repair` one tier after
    // the other, first (a rebuilt index may bring chunks back); otherwise beside the
    // reads (checking an index reads every record's header, mostly waiting on the
    // disk), and awaited before any return. When the reads take every reachable
    // chunk's record whole, the check starts after the walk and leaves those to them.
    let index_check = |t: &Tier, check: StoreCheck| {
        let store = t.store.clone();
        tokio::spawn(async move { store.check_store(check).await })
    };
    let mut faulty: Vec<(ChunkId, usize)> = Vec::new();
    let mut index_checks = Vec::new();
    if opts.repair {
        progress.phase("checking the stores' indexes", 0);
        for t in tiers {
            let check = vec![index_check(t, StoreCheck::new(true))];
            store_faults(
                std::slice::from_ref(t),
                check,
                opts,
                &mut report,
                &mut faulty,
            )
            .await?;
        }
    } else if !opts.read_data {
        index_checks = tiers
            .iter()
            .map(|t| index_check(t, StoreCheck::new(false)))
            .collect();
    }
    let stores: Vec<_> = tiers.iter().map(|t| t.store.clone()).collect();
    let roots: Vec<ChunkId> = versions.iter().map(|v| v.root).collect();
    let walked = walk_trees(&roots, &stores, spill, progress, &mut report.problems).await;
    let (reached, nodes) = match walked {
        Ok(walked) => walked,
        Err(e) => {
            store_faults(tiers, index_checks, opts, &mut report, &mut faulty).await?;
            return Err(e.into());
        }
    };
    report.nodes = nodes.len() as u64;
    report.data_chunks = reached.len() - nodes.len() as u64;
    // Shared read-only from here on: the index checks ask it which chunks the reads
    // take whole (a record it cannot answer for is checked by its store).
    let reached = Arc::new(reached);
    if opts.read_data && !opts.repair {
        let reachable = reached.clone();
        let check = StoreCheck {
            repair: false,
            read_by_caller: Some(Arc::new(move |id: &ChunkId| {
                reachable.contains(id).unwrap_or(false)
            })),
        };
        index_checks = tiers
            .iter()
            .map(|t| index_check(t, check.clone()))
            .collect();
    }

    // Every chunk on every tier its record claims, in the local tier's storage order:
    // its segments are read front to back instead of at random.
    progress.phase("checking chunks on every tier", reached.len());
    let order = storage_order(&reached, &tiers[0], spill);
    // Copies found unclaimed are claimed only if no collection or eviction deleted them
    // meanwhile.
    let mark = repo.copy_mark();
    let checked = match order {
        Ok(order) => check_all(repo, tiers, order, opts, listed, progress).await,
        Err(e) => Err(e.into()),
    };
    store_faults(tiers, index_checks, opts, &mut report, &mut faulty).await?;
    let (bytes, checked) = checked?;
    report.data_bytes_read += bytes;
    drop(reached);
    take_results(repo, checked, &mark, opts.repair, &mut report).await?;
    if opts.repair {
        for t in tiers {
            t.store.sync().await?;
        }
    }
    name_paths(&roots, &stores, &mut report, faulty).await;
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Checked {
        report,
        node_ids: nodes.into_iter().collect(),
    })
}

/// Adds what the chunk checks found to `report`; with `repair`, claims the copies
/// found unclaimed, unless an eviction deleted them after they were read (it cleared
/// their bit first, which is why they looked unclaimed).
async fn take_results(
    repo: &Repo,
    checked: Vec<ChunkChecked>,
    mark: &CopyMark,
    repair: bool,
    report: &mut FsckReport,
) -> Result<(), FsckError> {
    for mut c in checked {
        report.problems.extend(c.problems);
        if mark.evicted_since(&c.id) {
            c.unclaimed.clear();
        }
        report.unclaimed += c.unclaimed.len() as u64;
        if repair {
            for bit in c.unclaimed {
                repo.claim_copy(bit, &c.id, mark).await?;
                report.claimed += 1;
            }
        }
    }
    Ok(())
}

/// The answers of each tier's index check (in `tiers`' order) noted in `report`, and
/// the chunks they name in `faulty` (with the report entry naming each).
async fn store_faults(
    tiers: &[Tier],
    checks: Vec<tokio::task::JoinHandle<Result<Vec<fvfs_cas::StoreFault>, StoreError>>>,
    opts: Options,
    report: &mut FsckReport,
    faulty: &mut Vec<(ChunkId, usize)>,
) -> Result<(), FsckError> {
    // Every task awaited, also after a failure: none is left running.
    let mut failed = None;
    for (t, check) in tiers.iter().zip(checks) {
        let faults = match check.await {
            Ok(Ok(faults)) => faults,
            Ok(Err(e)) => {
                failed.get_or_insert(FsckError::from(e));
                continue;
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                failed.get_or_insert(FsckError::Worker(e.to_string()));
                continue;
            }
        };
        for fault in faults {
            if let Some(id) = fault.chunk {
                faulty.push((id, report.stores.len()));
            }
            report.stores.push(StoreProblem {
                tier: t.name.to_owned(),
                what: fault.what,
                path: None,
                repaired: opts.repair,
            });
        }
    }
    failed.map_or(Ok(()), Err)
}

/// `reached` sorted by where `local` keeps each chunk (the ones it lacks last).
fn storage_order(
    reached: &Sorted<ChunkId>,
    local: &Tier,
    spill: &Spill,
) -> std::io::Result<Sorted<(u64, ChunkId)>> {
    let mut order = spill.sorter();
    for id in reached.iter() {
        let id = id?;
        order.push((local.store.read_order(&id), id))?;
    }
    order.finish()
}

/// Checks the chunks in `order` in [`CONCURRENCY`] tasks of their own: store reads
/// block their thread, so futures sharing one task would read one chunk at a time.
/// Returns the bytes read and the chunks with something to report or claim (the
/// others are counted, not kept: a store of millions of chunks).
async fn check_all(
    repo: &Arc<Repo>,
    tiers: &[Tier],
    order: Sorted<(u64, ChunkId)>,
    opts: Options,
    listed: Option<Arc<HashSet<[u8; 32]>>>,
    progress: &Arc<Progress>,
) -> Result<(u64, Vec<ChunkChecked>), FsckError> {
    let queue = Arc::new(std::sync::Mutex::new(order.iter()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (repo, tiers, queue) = (repo.clone(), tiers.to_vec(), queue.clone());
        let (listed, progress) = (listed.clone(), progress.clone());
        workers.spawn(async move {
            let (mut bytes, mut done) = (0, Vec::new());
            loop {
                let batch: Vec<ChunkId> = queue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .by_ref()
                    .take(READ_BATCH)
                    .map(|r| r.map(|(_, id)| id))
                    .collect::<std::io::Result<_>>()?;
                if batch.is_empty() {
                    return Ok::<_, FsckError>((bytes, done));
                }
                let mut read = read_ahead(&tiers, &batch, opts).await;
                for id in batch {
                    let c =
                        check_chunk(&repo, &tiers, id, opts, listed.as_deref(), &mut read).await?;
                    progress.add(1, c.bytes);
                    bytes += c.bytes;
                    if !(c.problems.is_empty() && c.unclaimed.is_empty()) {
                        done.push(c);
                    }
                }
            }
        });
    }
    let (mut bytes, mut checked) = (0, Vec::new());
    while let Some(result) = workers.join_next().await {
        match result {
            Ok(r) => {
                let (read, found) = r?;
                bytes += read;
                checked.extend(found);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(FsckError::Worker(e.to_string())),
        }
    }
    Ok((bytes, checked))
}

/// With `read_data`, every tier's copies of `batch` read in one `get_many` per tier (a
/// pack store in file order, S3 by pack: neighbouring frames in one GET), by tier.
async fn read_ahead(tiers: &[Tier], batch: &[ChunkId], opts: Options) -> Vec<Read> {
    let mut out = Vec::with_capacity(tiers.len());
    for t in tiers {
        let mut got = HashMap::new();
        if opts.read_data {
            let ids = batch.to_vec();
            let mut answers = t.store.get_many(ids);
            while let Some((id, answer)) = answers.next().await {
                got.insert(id, answer.map(Verified::from));
            }
        }
        out.push(got);
    }
    out
}

/// Chunks one tier was read for ahead of their checks.
type Read = HashMap<ChunkId, Result<Verified, StoreError>>;

/// What fsck keeps of a copy read and verified: its size, and its frame for repairs
/// (not the decompressed content, which a batch would hold for nothing).
struct Verified {
    len: u64,
    frame: bytes::Bytes,
}

impl From<fvfs_cas::Loaded> for Verified {
    fn from(loaded: fvfs_cas::Loaded) -> Self {
        Self {
            len: loaded.data.len() as u64,
            frame: loaded.frame,
        }
    }
}

/// What checking one chunk found.
struct ChunkChecked {
    id: ChunkId,
    problems: Vec<Problem>,
    bytes: u64,
    /// Bits of tiers holding an unclaimed durable copy.
    unclaimed: Vec<u8>,
}

/// Of the tiers found lacking `id` (or holding it damaged), those that still do. fsck
/// runs beside a live daemon, and a tier's read ahead may be older than the record
/// read after it: a copy replicated and confirmed in between was missing when read.
/// So each is read again, then the record again: a tier whose bit the first record
/// set, whose fresh read fails and whose bit the last record still sets lacks the
/// copy (a replication sets the bit only after the copy is durable, an eviction
/// clears it before deleting the copy). A pack found missing from S3's listing is not
/// read again: the S3 store answers reads from frames it still holds in memory, so a
/// read would hide a pack deleted from the bucket.
async fn still_bad<'t>(
    repo: &Repo,
    id: &ChunkId,
    bad: Vec<Lacking<'t>>,
    healthy: &mut Option<bytes::Bytes>,
) -> Result<Vec<Lacking<'t>>, ManifestError> {
    let mut still = Vec::with_capacity(bad.len());
    for (t, what, by_listing) in bad {
        if by_listing {
            still.push((t, what, by_listing));
            continue;
        }
        match t.store.get(id).await {
            Ok(loaded) => {
                healthy.get_or_insert(loaded.frame);
            }
            Err(_) => {
                if repo
                    .chunk_record(id)?
                    .is_some_and(|record| record.tiers & t.bit != 0)
                {
                    still.push((t, what, by_listing));
                }
            }
        }
    }
    Ok(still)
}

/// A tier found lacking a chunk its record claims (or holding it damaged): what was
/// found, and whether S3's pack listing (not a read) found it.
type Lacking<'t> = (&'t Tier, String, bool);

/// Checks (and repairs) one chunk on every tier.
async fn check_chunk(
    repo: &Repo,
    tiers: &[Tier],
    id: ChunkId,
    opts: Options,
    listed: Option<&HashSet<[u8; 32]>>,
    read: &mut [Read],
) -> Result<ChunkChecked, ManifestError> {
    let mut checked = ChunkChecked {
        id,
        problems: Vec::new(),
        bytes: 0,
        unclaimed: Vec::new(),
    };
    let Some(record) = repo.chunk_record(&id)? else {
        checked.problems.push(Problem {
            id,
            what: "no chunk record".into(),
            // Named by `name_paths`.
            path: String::new(),
            tier: None,
            repaired: false,
        });
        return Ok(checked);
    };
    let mut bytes = 0;
    let mut healthy: Option<bytes::Bytes> = None;
    let mut bad: Vec<Lacking> = Vec::new();
    for (t, read) in tiers.iter().zip(read.iter_mut()) {
        let claimed = record.tiers & t.bit != 0;
        let (state, by_listing) = if opts.read_data || (claimed && healthy.is_none() && opts.repair)
        {
            let got = match read.remove(&id) {
                Some(answer) => answer,
                None => t.store.get(&id).await.map(Verified::from),
            };
            let state = match got {
                Ok(copy) => {
                    bytes += copy.len;
                    healthy.get_or_insert(copy.frame);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            (state, false)
        } else {
            present(repo, t, &id, listed).await?
        };
        match (claimed, state) {
            (true, Err(what)) => bad.push((t, what, by_listing)),
            // An S3 frame still in memory is not a durable copy: only a location is.
            (false, Ok(())) if t.bit != TIER_S3 || repo.pack_locs().get(&id)?.is_some() => {
                checked.unclaimed.push(t.bit)
            }
            _ => {}
        }
    }
    let bad = still_bad(repo, &id, bad, &mut healthy).await?;
    for (t, what, _) in bad {
        let mut repaired = false;
        if opts.repair {
            if healthy.is_none() {
                // Look for a whole copy on any tier, claimed or not.
                for other in tiers {
                    if let Ok(l) = other.store.get(&id).await {
                        healthy = Some(l.frame);
                        break;
                    }
                }
            }
            if let Some(frame) = &healthy {
                repaired = t.store.delete(&id).await.is_ok()
                    && match record.kind {
                        ChunkKind::Node => t.store.put_node(id, frame.clone()).await,
                        ChunkKind::Data => t.store.put(id, frame.clone()).await,
                    }
                    .is_ok();
            }
        }
        checked.problems.push(Problem {
            id,
            what: if opts.repair && !repaired {
                format!("{what}; no tier holds a whole copy, cannot repair")
            } else {
                what
            },
            // Named by `name_paths`.
            path: String::new(),
            tier: Some(t.name.to_owned()),
            repaired,
        });
    }
    checked.bytes = bytes;
    Ok(checked)
}

/// Whether tier `t` holds `id`, asked without reading it (for S3, the pack its
/// location names must be in the bucket's `listed` packs); the second answer says
/// whether that listing found it missing.
async fn present(
    repo: &Repo,
    t: &Tier,
    id: &ChunkId,
    listed: Option<&HashSet<[u8; 32]>>,
) -> Result<(Result<(), String>, bool), ManifestError> {
    Ok(match t.store.has(&[*id]).await {
        Ok(h) if h == [true] => match (t.bit, listed) {
            (TIER_S3, Some(packs)) => match repo.pack_locs().get(id)? {
                Some(loc) if !packs.contains(&loc.pack) => (
                    Err(format!(
                        "its pack {} is missing from S3",
                        hex_name(&loc.pack)
                    )),
                    true,
                ),
                _ => (Ok(()), false),
            },
            _ => (Ok(()), false),
        },
        Ok(_) => (Err(StoreError::NotFound(*id).to_string()), false),
        Err(e) => (Err(e.to_string()), false),
    })
}

fn hex_name(pack: &[u8; 32]) -> String {
    pack.iter().map(|b| format!("{b:02x}")).collect()
}
