//! `fvfsd recover --from-s3`: rebuilds a lost store from the S3 tier alone.
//!
//! Into an empty data directory: every pack index in the bucket gives the chunks and
//! where they are (one suffix-range GET per pack, many in flight; sorted by id in
//! memory up to `[gc] sort_memory_mb` and in temporary files beyond, so memory does not
//! grow with the bucket; the locations are recorded first, the chunks' records beside
//! the fetch of the trees), the version log and
//! snapshot names give the versions, every tree node of every version is fetched by
//! pack, level by level, each shared node once ([`fvfs_manifest::fetch_trees`]), and
//! kept in the local tier; a walk of every version's tree then proves each one whole
//! and tells tree nodes from data, reading locally. File content stays in S3 and is
//! fetched, verified and promoted when read, unless `--rehydrate` asks for all of it
//! back in the local tier now (read by pack, in pack order). A configured NAS tier is
//! queued to receive everything again.

use std::process::ExitCode;

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use fvfs_cas::{ChunkId, StoreError};
use fvfs_fsck::spill::{Record, Sorted};
use fvfs_manifest::{fetch_trees, Repo};
use fvfs_tiering::{PackLoc, Publishing, Recovered, Replication, TierId};

use crate::progress::with_bar;
use fvfs_engine::Engine;

pub async fn run(home: &Engine, rehydrate: bool) -> Result<ExitCode> {
    let s3 = home
        .s3()
        .context("recover --from-s3 needs the S3 tier: give a config with [tiers.s3]")?;
    let tiers = home.tiers().context("recover needs the tiered store")?;
    let repo = home.repo();
    if !repo.is_empty()? {
        bail!(
            "the store in {} already holds data; recover rebuilds into an empty data directory (move this one away first)",
            home.dir().display()
        );
    }
    let started = std::time::Instant::now();
    let progress = Arc::new(fvfs_fsck::Progress::new("recover"));
    progress.phase("pack indexes", 0);
    // Every chunk found, sorted by id in memory up to a budget and on disk beyond it
    // (a bucket holds millions): the records are written from it in order, each chunk
    // once, however many packs hold it.
    let (mut by_id, mut spilled) = (home.spill().sorter::<ById>(), Ok(()));
    let scan = s3.scan_packs(
        |bytes| progress.add(1, bytes),
        |pack| {
            for f in pack {
                if spilled.is_ok() {
                    spilled = by_id.push(Found(f));
                }
            }
        },
    );
    with_bar(&progress, scan).await?;
    spilled.context("sorting the chunks found")?;
    let found = Arc::new(by_id.finish().context("sorting the chunks found")?);
    let (versions, snapshots) = fvfs_tiering::s3::log::read(s3.bucket()).await?;
    if versions.is_empty() {
        bail!("no version log in S3 under this bucket and prefix: nothing to recover");
    }
    let chunks = each_batch(&found, |batch| Ok(repo.restore_locations(batch)?))?;
    // The chunks' records on a thread of their own while the tree nodes come (half of
    // a one-version recover's time each).
    let (arc, fsck_tiers) = (home.repo_arc(), home.fsck_tiers());
    let records = {
        let (repo, found, rt) = (
            arc.clone(),
            found.clone(),
            tokio::runtime::Handle::current(),
        );
        tokio::task::spawn_blocking(move || {
            each_batch(&found, |batch| Ok(rt.block_on(repo.restore_chunks(batch))?))
        })
    };
    progress.phase("tree nodes", 0);
    let roots = versions.iter().map(|v| v.root);
    let nodes = with_bar(&progress, fetch_trees(repo, roots, |b| progress.add(1, b))).await;
    records.await.context("recording the chunks found")??;
    let work = fvfs_fsck::check(
        &arc,
        &fsck_tiers,
        &versions,
        Default::default(),
        home.spill(),
        &progress,
    );
    let checked = with_bar(&progress, work).await?;
    repo.restore_mark_nodes(&checked.node_ids)?;
    let mut unreadable = 0;
    if rehydrate {
        progress.phase("rehydrating the local tier", chunks);
        let mut by_place = home.spill().sorter::<ByPlace>();
        each_batch(&found, |batch| {
            batch.iter().try_for_each(|f| by_place.push(Found(*f)))?;
            Ok(())
        })?;
        let by_place = by_place.finish()?;
        unreadable = with_bar(&progress, rehydrate_all(repo, &by_place, &progress)).await?;
    }
    repo.store().sync().await?;
    tiers.record_reads(repo).await?;
    repo.restore_versions_published(&versions, &snapshots)?;
    if home.tier_set().nas().is_some() {
        repo.mark_tier_initialised(TierId::Nas.bit()).await?;
    }
    let head = versions.last().map_or(0, |v| v.number);
    fvfs_api::outln!(
        "recovered {} versions (HEAD = version {head}), {} snapshots, {} chunks ({nodes} tree nodes{}) from S3 in {:.1} s; S3: {}",
        versions.len(),
        snapshots.len(),
        chunks,
        if rehydrate { ", all now local" } else { "" },
        started.elapsed().as_secs_f64(),
        s3.requests(),
    );
    if unreadable > 0 {
        fvfs_api::outln!("{unreadable} chunks could not be brought back (named above); fsck --read-data --all names the paths using them");
    }
    if checked.report.is_clean() {
        return Ok(if unreadable > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    fvfs_api::out!("{}", fvfs_api::show::fsck(&checked.report));
    fvfs_api::outln!("some versions are incomplete in S3; the paths above cannot be read");
    Ok(ExitCode::from(1))
}

/// Every chunk found back in the local tier, read by pack in bounded batches; returns
/// how many could not be read (each named on stderr).
async fn rehydrate_all(
    repo: &Repo,
    found: &Sorted<ByPlace>,
    progress: &fvfs_fsck::Progress,
) -> Result<u64> {
    let mut unreadable = 0;
    let mut places = found.iter().peekable();
    while places.peek().is_some() {
        let ids = places
            .by_ref()
            .take(BATCH)
            .map(|f| f.map(|f| f.0.id))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut answers = repo.store().get_many(ids);
        while let Some((id, answer)) = answers.next().await {
            match answer {
                Ok(loaded) => progress.add(1, loaded.frame.len() as u64),
                Err(StoreError::Unavailable(e)) => bail!("S3 stopped answering: {e}"),
                Err(e) => {
                    unreadable += 1;
                    eprintln!("fvfsd: chunk {id} not rehydrated: {e}");
                }
            }
        }
    }
    Ok(unreadable)
}

/// Chunks handled at once: written to the database, or read back from S3.
const BATCH: usize = 65_536;

/// Gives `write` the chunks of `found` a batch at a time, each chunk once (the first
/// place it is found, when several packs hold it); returns how many chunks.
fn each_batch(
    found: &Sorted<ById>,
    mut write: impl FnMut(&[Recovered]) -> Result<()>,
) -> Result<u64> {
    let (mut batch, mut last, mut chunks) = (Vec::with_capacity(BATCH), None, 0);
    for f in found.iter() {
        let f = f?.0;
        if last.replace(f.id) == Some(f.id) {
            continue;
        }
        chunks += 1;
        batch.push(f);
        if batch.len() == BATCH {
            write(&batch)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        write(&batch)?;
    }
    Ok(chunks)
}

/// A chunk found in S3 as a sorted set holds it: by id, or with `BY_PLACE` by pack
/// and offset (the order rehydration reads in); then by the rest, so that equal
/// records are one chunk in one place.
#[derive(Clone, Copy)]
struct Found<const BY_PLACE: bool>(Recovered);
type ById = Found<false>;
type ByPlace = Found<true>;

impl<const BY_PLACE: bool> Found<BY_PLACE> {
    /// By id, a frame of its own before a block's member (see `distinct` in
    /// `fvfs_tiering::records`: a repair puts a frame beside the damaged block it
    /// replaces).
    fn key(&self) -> ([u8; 32], bool, u64, [u8; 32], u32, u32) {
        let (f, id) = (&self.0, *self.0.id.as_bytes());
        let (first, member, then) = if BY_PLACE {
            (f.loc.pack, false, id)
        } else {
            (id, f.loc.member.is_some(), f.loc.pack)
        };
        (first, member, f.loc.offset, then, f.loc.len, f.raw_len)
    }
}

impl<const BY_PLACE: bool> PartialEq for Found<BY_PLACE> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<const BY_PLACE: bool> Eq for Found<BY_PLACE> {}

impl<const BY_PLACE: bool> PartialOrd for Found<BY_PLACE> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<const BY_PLACE: bool> Ord for Found<BY_PLACE> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl<const BY_PLACE: bool> Record for Found<BY_PLACE> {
    const LEN: usize = 32 + PackLoc::MEMBER_LEN + 4;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.id.as_bytes());
        out.extend_from_slice(&self.0.loc.encode_fixed());
        out.extend_from_slice(&self.0.raw_len.to_le_bytes());
    }

    fn get(bytes: &[u8]) -> Self {
        let (id, rest) = bytes.split_at(32);
        let (loc, raw_len) = rest.split_at(PackLoc::MEMBER_LEN);
        Self(Recovered {
            id: ChunkId::from_slice(id).expect("32 bytes"),
            loc: PackLoc::decode(loc).expect("a location's length"),
            raw_len: u32::from_le_bytes(raw_len.try_into().expect("4 bytes")),
        })
    }
}
