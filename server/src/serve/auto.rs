//! Automatic snapshots (`[snapshots]` in the config). Once per period of the policy's
//! most frequent rule (hour, day, week or month, UTC), when HEAD's tree differs from the
//! newest automatic snapshot's, the daemon takes `auto-YYYY-MM-DD-HHMM`
//! ([`fvfs_manifest::autosnap`]). Then it deletes the automatic snapshots the policy no
//! longer keeps (never one a person named) and, when it deleted some, runs a garbage
//! collection with `[gc]`'s retention, so that versions only they held can go. A round
//! with something to take or prune does it as an [`AutoSnapshot`] job (listed, its
//! outcome recorded, like every job of the store); one with nothing to do is only
//! counted by the `snapshots` worker.
//!
//! Time comes from a [`Clock`]: the system's, checked every [`SYSTEM_TICK`], or for
//! tests a file holding Unix seconds (`fvfsd serve --clock-file`), checked every few
//! milliseconds; a test moves time by writing the file and learns that the daemon
//! acted on it from `status` (`auto_snapshots.round`), never by sleeping.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use fvfs_api::reports::AutoSnapshots;
use fvfs_cas::ChunkId;
use fvfs_engine::jobs::{Gc, Job, Jobs};
use fvfs_fsck::retention::{Period, SnapshotPolicy};
use fvfs_fsck::Progress;
use fvfs_manifest::{autosnap, Repo};

use super::State;

/// How often the system clock is checked: a snapshot is at most this late.
const SYSTEM_TICK: Duration = Duration::from_secs(30);
/// How often a clock file is read.
const FILE_TICK: Duration = Duration::from_millis(20);

/// Where automatic snapshots take the time from.
#[derive(Clone, Debug)]
pub enum Clock {
    System,
    /// A file holding the time in Unix seconds (tests).
    File(PathBuf),
}

impl Clock {
    /// The time now, if the clock can tell.
    fn now(&self) -> Option<i64> {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok()),
            Clock::File(path) => std::fs::read_to_string(path).ok()?.trim().parse().ok(),
        }
    }

    fn tick(&self) -> Duration {
        match self {
            Clock::System => SYSTEM_TICK,
            Clock::File(_) => FILE_TICK,
        }
    }
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Week => "week",
        Period::Month => "month",
    }
}

/// The status of automatic snapshots before the first round, if the policy asks for any.
pub fn status(policy: &SnapshotPolicy) -> Option<Mutex<AutoSnapshots>> {
    policy.every().map(|every| {
        Mutex::new(AutoSnapshots {
            every: period_name(every).into(),
            ..AutoSnapshots::default()
        })
    })
}

/// The daemon's automatic snapshots as a worker: every tick of `clock`, a round if the
/// clock shows a time not acted on yet.
pub fn start(state: &Arc<State>, policy: SnapshotPolicy, every: Period, clock: Clock) {
    let (me, mut last) = (state.clone(), None);
    state.workers.every("snapshots", clock.tick(), move || {
        let now = clock.now().filter(|now| Some(*now) != last);
        last = now.or(last);
        let state = me.clone();
        async move {
            match now {
                Some(now) => act(&state, &policy, every, now).await,
                None => Ok(()),
            }
        }
    });
}

/// A round at time `now`, recorded in the status of automatic snapshots: an
/// [`AutoSnapshot`] job when there is something to take or prune, else nothing.
async fn act(
    state: &State,
    policy: &SnapshotPolicy,
    every: Period,
    now: i64,
) -> Result<(), String> {
    let result = round(state, policy, every, now).await;
    let Some(status) = &state.auto_snapshots else {
        return result.map(drop).map_err(|e| format!("{e:#}"));
    };
    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
    s.round = Some(now);
    match result {
        Ok(done) => {
            if done.taken.is_some() {
                s.taken = done.taken;
            }
            if !done.pruned.is_empty() {
                s.pruned = done.pruned;
                s.versions_dropped = done.versions_dropped;
            }
            s.last_error = None;
            Ok(())
        }
        Err(e) => {
            s.last_error = Some(format!("{e:#}"));
            Err(format!("automatic snapshots: {e:#}"))
        }
    }
}

async fn round(
    state: &State,
    policy: &SnapshotPolicy,
    every: Period,
    now: i64,
) -> anyhow::Result<Done> {
    let head = state.repo.head()?.map(|v| v.root);
    let wanted = plan(&state.repo, head, policy, every, now)?;
    if !wanted.take && wanted.prune.is_empty() {
        return Ok(Done::default());
    }
    let job = AutoSnapshot {
        policy: *policy,
        every,
        now,
        gc: state.gc.options(&fvfs_api::args::GcArgs::default(), false),
    };
    let done = state.jobs.run(job).await;
    done.context("the daemon is stopping: no automatic snapshot")?
}

/// What one round did.
#[derive(Default)]
pub struct Done {
    taken: Option<String>,
    pruned: Vec<String>,
    versions_dropped: usize,
}

/// What a round at `now` would do, HEAD's tree being `head`.
struct Plan {
    /// Take a snapshot: one is due this period and HEAD's tree differs from the
    /// newest automatic snapshot's.
    take: bool,
    /// The automatic snapshots the policy no longer keeps (counting the one taken).
    prune: Vec<String>,
}

fn plan(
    repo: &Repo,
    head: Option<ChunkId>,
    policy: &SnapshotPolicy,
    every: Period,
    now: i64,
) -> anyhow::Result<Plan> {
    let mut taken: Vec<(String, i64)> = repo
        .snapshots()?
        .into_iter()
        .filter_map(|(name, _)| autosnap::time_of(&name).map(|t| (name, t)))
        .collect();
    let newest = taken.iter().max_by_key(|(n, t)| (*t, n)).cloned();
    // A clock behind the newest snapshot (set back, or a test) takes nothing.
    let due = newest
        .as_ref()
        .is_none_or(|(_, t)| every.of(*t) < every.of(now));
    let take = match (due, head, &newest) {
        (false, _, _) | (_, None, _) => false,
        (true, Some(_), None) => true,
        (true, Some(root), Some((name, _))) => repo.resolve(name)?.root != root,
    };
    if take {
        taken.push((autosnap::name(now), now));
    }
    let keep = policy.keep(&taken);
    let prune = taken
        .iter()
        .filter(|(n, _)| !keep.contains(n.as_str()))
        .map(|(n, _)| n.clone())
        .collect();
    Ok(Plan { take, prune })
}

/// One round's work: takes a snapshot if one is due and something changed (decided
/// again under the repository's lock), prunes what the policy no longer keeps, and
/// collects with `[gc]`'s retention when it pruned.
pub struct AutoSnapshot {
    policy: SnapshotPolicy,
    every: Period,
    now: i64,
    gc: fvfs_fsck::gc::Options,
}

impl Job for AutoSnapshot {
    const KIND: &'static str = "auto-snapshot";
    type Report = Done;
    type Error = anyhow::Error;

    async fn run(&self, store: &Jobs, progress: &Arc<Progress>) -> anyhow::Result<Done> {
        let repo = store.repo();
        let mut done = Done::default();
        progress.phase("taking", 0);
        let lock = repo.lock().await;
        let head = lock.head()?;
        let wanted = plan(
            repo,
            head.as_ref().map(|v| v.root),
            &self.policy,
            self.every,
            self.now,
        )?;
        if wanted.take {
            let v = lock.snapshot_auto(self.now).await?;
            let name = autosnap::name(self.now);
            tracing::info!(version = v.number, "automatic snapshot {name}");
            done.taken = Some(name);
        }
        drop(lock);
        progress.phase("pruning", wanted.prune.len() as u64);
        for name in wanted.prune {
            repo.lock().await.snapshot_delete(&name)?;
            tracing::info!("automatic snapshot {name} pruned");
            progress.add(1, 0);
            done.pruned.push(name);
        }
        if !done.pruned.is_empty() {
            let collected = store.run(Gc(self.gc)).await;
            let report = collected.context("the daemon is stopping: no collection")??;
            done.versions_dropped = report.versions_dropped.len();
        }
        Ok(done)
    }

    fn outcome(&self, done: &Done) -> (bool, String) {
        let mut said = Vec::new();
        if let Some(name) = &done.taken {
            said.push(format!("took {name}"));
        }
        if !done.pruned.is_empty() {
            said.push(format!(
                "pruned {}, {} versions dropped",
                done.pruned.len(),
                done.versions_dropped
            ));
        }
        if said.is_empty() {
            said.push("nothing changed".to_owned());
        }
        (true, said.join("; "))
    }
}
