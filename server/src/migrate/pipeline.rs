//! The parallel part of a migration: one walker thread, one worker per core, a
//! checkpointer ([`super::checkpoints`]) making what was read durable beside them, and
//! a collector that folds what finished into the migration's tree ([`super::tree`])
//! after each checkpoint and every [`FOLD_ENTRIES`] files.
//!
//! Work moves in batches (up to [`BATCH_FILES`] files or [`BATCH_BYTES`] of content per
//! message) because on a warm tree of small files a wake-up per file costs more than
//! reading the file. Every queue is bounded (the collector's too: workers wait while
//! it folds), so memory follows the queues, not the tree.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use fvfs_manifest::node::Meta;
use fvfs_manifest::{Entry, EntryKind, ManifestError};
use indicatif::ProgressBar;

use super::checkpoints::{Checkpoints, Told};
use super::ingest::{Failure, Ingest, Stow};
use super::statcache::StatCache;
use super::tree::{Dir, Folded, FOLD_ENTRIES};
use super::walk::{self, FileJob, Item, Stat};
use fvfs_walk::Rules;

const BATCH_FILES: usize = 64;
const BATCH_BYTES: u64 = 8 << 20;

/// What the collector receives.
enum Done {
    /// An entry, and its source's device and inode if the source has other names.
    Entry(Vec<u8>, Entry, Option<(u64, u64)>),
    Dir(Dir),
    Skipped(PathBuf, String),
    Fatal(ManifestError),
}

/// Everything the walk and the workers produced, but what was folded into the tree.
#[derive(Default)]
pub struct Collected {
    /// Files, symlinks and special files not folded yet, by destination path.
    entries: Vec<(Vec<u8>, Entry)>,
    dirs: Vec<Dir>,
    /// What was folded.
    pub folded: Folded,
    /// Those whose sources have several names (never folded: see `super::tree`).
    pub several: Vec<(Vec<u8>, Entry)>,
    /// Their destinations, and their sources' device and inode.
    pub linked: Vec<(Vec<u8>, (u64, u64))>,
    /// "path: reason" of each source path not imported.
    pub skipped: Vec<String>,
    /// Entries the exclude rules left out.
    pub excluded: u64,
    /// A store error that stopped the migration.
    pub fatal: Option<ManifestError>,
}

/// The device and inode of a source with several names (hard links).
fn same_file(stat: &Stat) -> Option<(u64, u64)> {
    (stat.nlink > 1).then_some((stat.dev, stat.ino))
}

/// An entry with `stat`'s mode and mtime and `meta`, holding nothing yet.
fn bare_entry(stat: &Stat, meta: Box<Meta>) -> Entry {
    Entry {
        name: Vec::new(),
        kind: EntryKind::File,
        mode: stat.mode,
        mtime_ns: stat.mtime_ns,
        size: 0,
        id: None,
        chunks: Vec::new(),
        target: Vec::new(),
        meta: Some(meta),
        links: 0,
        link: None,
    }
}

/// Walks `sources` into `dest` (leaving out what `rules` exclude), ingesting files on
/// `jobs` workers and folding them into a tree as it goes; checkpoints `every`.
pub fn run(
    sources: &[(PathBuf, std::fs::Metadata)],
    dest: &[u8],
    rules: &Rules,
    jobs: usize,
    ingest: &Ingest<'_>,
    bar: &ProgressBar,
    every: Duration,
) -> Collected {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Vec<Done>>(4 * jobs + 4);
    let (job_tx, job_rx) = mpsc::sync_channel::<Vec<FileJob>>(2 * jobs);
    let job_rx = Mutex::new(job_rx);
    let abort = AtomicBool::new(false);
    let checkpoints = Checkpoints::default();
    let mut out = Collected::default();

    std::thread::scope(|scope| {
        let handle = tokio::runtime::Handle::current();
        let (told_tx, mut told) = tokio::sync::mpsc::channel(1);
        let (checkpoints, abort_c) = (&checkpoints, &abort);
        scope.spawn(move || checkpoints.run(ingest, every, abort_c, &told_tx));
        let (walker_tx, abort_w, stats) = (done_tx.clone(), &abort, ingest.stats);
        let walking = scope.spawn(move || {
            let to = (&job_tx, &walker_tx);
            walker(sources, dest, rules, stats, to, abort_w, bar)
        });
        for _ in 0..jobs {
            let (tx, job_rx, abort) = (done_tx.clone(), &job_rx, &abort);
            let mut stow = Stow::default();
            scope.spawn(move || loop {
                let Ok(batch) = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv() else {
                    return;
                };
                let mut done: Vec<Done> = batch
                    .into_iter()
                    .filter(|_| !abort.load(Ordering::Relaxed))
                    .map(|job| match ingest.file(&job, &mut stow) {
                        Ok((file, meta)) => {
                            let mut entry = file.entry(job.stat.mode, job.stat.mtime_ns);
                            entry.meta = Some(meta);
                            Done::Entry(job.dest, entry, same_file(&job.stat))
                        }
                        Err(Failure::Source(why)) => Done::Skipped(job.src.path, why),
                        Err(Failure::Store(e)) => {
                            abort.store(true, Ordering::Relaxed);
                            Done::Fatal(e)
                        }
                    })
                    .collect();
                // The batch's entries go on only once their chunks are stored.
                if let Err(e) = ingest.stow(&mut stow) {
                    abort.store(true, Ordering::Relaxed);
                    done = vec![Done::Fatal(e)];
                }
                let _ = tx.blocking_send(done);
                checkpoints.hold(ingest, abort);
            });
        }
        drop(done_tx);

        // The collector runs on this thread, driving the runtime for its folds.
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                loop {
                    if out.entries.len() + out.dirs.len() >= FOLD_ENTRIES {
                        fold(&mut out, ingest, &abort).await;
                    }
                    tokio::select! {
                        batch = done_rx.recv() => match batch {
                            None => break,
                            Some(batch) => batch.into_iter().for_each(|d| collect(&mut out, d)),
                        },
                        Some(told) = told.recv() => {
                            checkpointed(&mut out, told, &abort);
                            fold(&mut out, ingest, &abort).await;
                            bar.set_message(super::message(ingest.counters));
                            bar.set_position(ingest.counters.bytes.load(Ordering::Relaxed));
                        }
                    }
                }
                checkpoints.stop();
                while let Some(last) = told.recv().await {
                    checkpointed(&mut out, last, &abort);
                }
                fold(&mut out, ingest, &abort).await;
            })
        });
        out.excluded = walking.join().expect("the walker does not panic");
    });
    out
}

/// Takes in the outcome of a checkpoint.
fn checkpointed(out: &mut Collected, (files, saved): Told, abort: &AtomicBool) {
    match saved {
        Ok(()) => tracing::info!(files, "checkpoint: finished files are durable"),
        Err(e) => {
            abort.store(true, Ordering::Relaxed);
            out.fatal.get_or_insert(e);
        }
    }
}

/// Folds what `out` holds into `folded`, unless the migration is stopping.
async fn fold(out: &mut Collected, ingest: &Ingest<'_>, abort: &AtomicBool) {
    if out.fatal.is_some() {
        // Nothing more is committed: what finished is in the stat cache.
        out.entries.clear();
        out.dirs.clear();
        return;
    }
    let (dirs, entries, skipped) = (&mut out.dirs, &mut out.entries, &mut out.skipped);
    if let Err(e) = out.folded.fold(ingest, dirs, entries, skipped).await {
        abort.store(true, Ordering::Relaxed);
        out.fatal = Some(e);
    }
}

fn collect(out: &mut Collected, done: Done) {
    match done {
        Done::Entry(dest, e, Some(same)) => {
            out.linked.push((dest.clone(), same));
            out.several.push((dest, e));
        }
        Done::Entry(dest, e, None) => out.entries.push((dest, e)),
        Done::Dir(dir) => out.dirs.push(dir),
        Done::Skipped(src, why) => out.skipped.push(format!("{}: {why}", src.display())),
        Done::Fatal(e) => {
            out.fatal.get_or_insert(e);
        }
    }
}

/// Lists the sources: files go to the workers in batches, with what the stat cache
/// had for them (asked here, in the walk's order), everything else straight to the
/// collector. Returns how many entries the rules left out.
fn walker(
    sources: &[(PathBuf, std::fs::Metadata)],
    dest: &[u8],
    rules: &Rules,
    stats: &StatCache,
    (job_tx, done_tx): (
        &mpsc::SyncSender<Vec<FileJob>>,
        &tokio::sync::mpsc::Sender<Vec<Done>>,
    ),
    abort: &AtomicBool,
    bar: &ProgressBar,
) -> u64 {
    let (mut files, mut bytes, mut other) = (Vec::new(), 0u64, Vec::new());
    let (mut excluded, mut seq) = (0, 0);
    for (src, meta) in sources {
        let local = Box::new(crate::localmeta::read(src, meta));
        other.push(Done::Dir((dest.to_vec(), Stat::of(meta), local)));
        excluded += walk::walk(src, dest, rules, &mut |item| {
            match item {
                Item::File(mut job) => {
                    (job.seq, job.cached) = (seq, stats.lookup(&job.src.path));
                    seq += 1;
                    bytes += job.stat.size;
                    bar.inc_length(job.stat.size);
                    files.push(job);
                }
                Item::Dir { dest, stat, meta } => other.push(Done::Dir((dest, stat, meta))),
                Item::Symlink {
                    dest,
                    target,
                    stat,
                    meta,
                } => {
                    let entry = Entry {
                        kind: EntryKind::Symlink,
                        target,
                        ..bare_entry(&stat, meta)
                    };
                    other.push(Done::Entry(dest, entry, same_file(&stat)))
                }
                Item::Special {
                    dest,
                    kind,
                    stat,
                    meta,
                } => other.push(Done::Entry(
                    dest,
                    Entry {
                        kind,
                        ..bare_entry(&stat, meta)
                    },
                    same_file(&stat),
                )),
                Item::Skipped { src, reason } => other.push(Done::Skipped(src, reason)),
            }
            if files.len() >= BATCH_FILES || bytes >= BATCH_BYTES {
                bytes = 0;
                if !abort.load(Ordering::Relaxed) {
                    let _ = job_tx.send(std::mem::take(&mut files));
                }
            }
            if other.len() >= BATCH_FILES {
                let _ = done_tx.blocking_send(std::mem::take(&mut other));
            }
        });
    }
    let _ = job_tx.send(files);
    let _ = done_tx.blocking_send(other);
    excluded
}
