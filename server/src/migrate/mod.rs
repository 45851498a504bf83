//! `fvfsd migrate`: import existing directory trees into fvfs, in parallel, with dedup.
//!
//! A walker thread lists the sources; one worker per core reads, chunks, hashes and
//! compresses files ([`ingest`]); this task collects the results. Every few seconds a
//! checkpoint makes the chunks read so far durable and records each finished file in
//! the stat cache ([`statcache`]: size, mtime, ctime, inode -> content), so an
//! interrupted run resumes without reading finished files again, and a re-run on an
//! unchanged tree reads nothing. What finished is folded into a tree of its own as it
//! goes ([`tree`]), which lands on HEAD at the end in one commit: one version per
//! migration, and none at all if nothing changed. Collections wait while it runs.
//!
//! Migrate adds and updates; it never deletes what is already in fvfs.

mod checkpoints;
mod ingest;
mod pipeline;
mod statcache;
mod tree;
mod walk;

use fvfs_api::args::MigrateArgs;
use fvfs_api::reports::Outcome;
use fvfs_engine::jobs::{Job, Jobs};
use fvfs_fsck::Progress;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use fvfs_manifest::node::Link;
use fvfs_manifest::{path, Entry, Lookups, Pending, Repo, VersionKind};
use std::collections::HashMap;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use ingest::{Counters, Ingest};
use pipeline::Collected;
use statcache::StatCache;

/// HEAD's tree nodes kept while files found unchanged are looked up in it: those of
/// the folders the workers are in, and of the path to them.
const KEPT_NODES: usize = 64;

/// `fvfsd migrate` and `POST /v1/admin/migrate`: one import into the store, with the
/// stat caches kept in `caches`.
pub struct Migrate {
    pub args: MigrateArgs,
    pub caches: PathBuf,
}

impl Job for Migrate {
    const KIND: &'static str = "migrate";
    type Report = Outcome;
    type Error = anyhow::Error;

    async fn run(&self, store: &Jobs, progress: &Arc<Progress>) -> Result<Outcome> {
        progress.phase("importing", 0);
        run(store.repo(), &self.caches, self.args.clone()).await
    }

    fn outcome(&self, o: &Outcome) -> (bool, String) {
        (o.skipped.is_empty(), o.summary.clone())
    }
}

/// Makes the names of one source file (same device and inode) that this migration
/// imports one file with several names in fvfs. The link id is derived from the first
/// name and the source's identity, so that a re-run changes nothing. `entries` is
/// sorted by destination.
fn link_names(entries: &mut [(Vec<u8>, Entry)], linked: Vec<(Vec<u8>, (u64, u64))>) {
    let mut files: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for (dest, same) in linked {
        files.entry(same).or_default().push(dest);
    }
    let mut links: HashMap<Vec<u8>, Link> = HashMap::new();
    for ((dev, ino), mut names) in files {
        if names.len() < 2 {
            continue;
        }
        names.sort();
        let mut seed = names[0].clone();
        seed.extend(dev.to_le_bytes());
        seed.extend(ino.to_le_bytes());
        let hash = fvfs_cas::ChunkId::of(&seed);
        let link = Link {
            id: u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes")),
            nlink: u32::try_from(names.len()).unwrap_or(u32::MAX),
        };
        links.extend(names.into_iter().map(|n| (n, link)));
    }
    for (dest, e) in entries {
        e.link = links.get(dest.as_slice()).copied();
    }
}

/// The source folders of `args`, each made absolute, with its metadata; refuses a
/// source that is not a folder, and a migration without one.
fn sources(args: &MigrateArgs) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut sources = Vec::new();
    for src in args.local_src.iter().chain(&args.nas_src) {
        let meta = std::fs::metadata(src).with_context(|| format!("source {}", src.display()))?;
        if !meta.is_dir() {
            bail!("source {} is not a directory", src.display());
        }
        let abs = src
            .canonicalize()
            .with_context(|| format!("source {}", src.display()))?;
        sources.push((abs, meta));
    }
    if sources.is_empty() {
        bail!("nothing to migrate: give --local-src DIR or --nas-src DIR");
    }
    Ok(sources)
}

/// Runs the migration `args` into `repo`, with the stat caches kept in folder `caches`.
async fn run(repo: &Repo, caches: &Path, args: MigrateArgs) -> Result<Outcome> {
    let dest = args.dest.as_os_str().as_bytes().to_vec();
    path::components(&dest)?;
    let rules = args.excludes.rules()?;
    let sources = sources(&args)?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let pending = Pending::default();
    let counters = Counters::default();
    let bar = progress_bar();
    let started = Instant::now();
    let before = repo.totals()?;
    // The folded tree is named by no version until the commit, and the content its
    // entries name is looked up once, as it is met (or trusted by the stat cache
    // under this records epoch): nothing may be collected until the commit.
    let held = repo.hold_collections().await;
    let roots: Vec<PathBuf> = sources.iter().map(|(s, _)| s.clone()).collect();
    let stats = StatCache::load(caches, &roots, repo.records_epoch().await?);
    let head = repo.head()?.map(|v| Lookups::new(repo, v.root, KEPT_NODES));
    let ingest = Ingest::new(
        (repo, &pending, &held),
        tokio::runtime::Handle::current(),
        &counters,
        (&stats, head),
    );

    let every = Duration::from_secs_f64(args.checkpoint_secs.clamp(0.05, 3600.0));
    let Collected {
        folded,
        mut several,
        linked,
        mut skipped,
        excluded,
        fatal,
        ..
    } = pipeline::run(&sources, &dest, &rules, jobs, &ingest, &bar, every);
    bar.finish_and_clear();

    if let Some(e) = fatal {
        // Keep what finished: a re-run after freeing space resumes from here.
        let saved = ingest.checkpoint().await;
        let note = if saved.is_ok() {
            "files finished so far are saved; re-run to resume"
        } else {
            "re-run to resume"
        };
        return Err(anyhow::Error::new(e).context(format!("migration stopped ({note})")));
    }

    let lock = repo.lock().await;
    let head = lock.head()?;
    several.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    link_names(&mut several, linked);
    let head_root = head.as_ref().map(|v| v.root);
    let (root, logical) = folded
        .land(repo, &pending, head_root, &dest, several, &mut skipped)
        .await?;
    let message = format!(
        "migrate {} -> {}",
        sources
            .iter()
            .map(|(s, _)| s.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        path::show(&dest)
    );
    let version = if head.as_ref().map(|h| h.root) == Some(root) {
        repo.checkpoint(&pending).await?;
        None
    } else {
        Some(
            lock.commit(&pending, root, logical, VersionKind::Write, &message)
                .await?,
        )
    };
    // The sources were walked whole: the caches now hold exactly what they have.
    stats.save();
    repo.drop_legacy_stats()?;
    let stored = repo.totals()?;
    let new_bytes = stored.raw_bytes - before.raw_bytes;
    let new_stored = stored.stored_bytes - before.stored_bytes;
    let summary = summary(
        &counters,
        started.elapsed(),
        (new_bytes, new_stored),
        version.as_ref().map(|v| v.number),
        (skipped.len(), excluded),
    );
    Ok(Outcome {
        summary,
        skipped,
        notes: Vec::new(),
        version: version.map(|v| v.number),
    })
}

fn now_ns() -> i64 {
    fvfs_manifest::node::time_ns(SystemTime::now())
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .expect("static template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn message(c: &Counters) -> String {
    format!(
        "{} files, {} new, {} deduplicated",
        c.files.load(Ordering::Relaxed),
        HumanBytes(c.bytes_new.load(Ordering::Relaxed)),
        HumanBytes(c.bytes_dedup.load(Ordering::Relaxed))
    )
}

/// The final line. `excluded` counts what the exclude rules left out (a folder once).
/// `new` is (raw, stored) bytes of chunks this run added to the store:
/// exact, unlike the progress counters, which race between workers reading equal chunks.
fn summary(
    c: &Counters,
    took: Duration,
    new: (u64, u64),
    version: Option<u64>,
    (skipped, excluded): (usize, u64),
) -> String {
    let bytes = c.bytes.load(Ordering::Relaxed);
    let secs = took.as_secs_f64().max(1e-3);
    let outcome = match version {
        Some(n) => format!("committed version {n}"),
        None => "no changes, no new version".into(),
    };
    format!(
        "migrated {} files ({} unchanged), {} in {:.2}s ({}/s); new unique data {} ({} stored); {} skipped; {excluded} excluded; {outcome}",
        c.files.load(Ordering::Relaxed),
        c.files_unchanged.load(Ordering::Relaxed),
        HumanBytes(bytes),
        secs,
        HumanBytes((bytes as f64 / secs) as u64),
        HumanBytes(new.0),
        HumanBytes(new.1),
        skipped
    )
}
