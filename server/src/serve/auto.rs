//! Automatic snapshots (`[snapshots]` in the config). Once per period of the policy's
//! most frequent rule (hour, day, week or month, UTC), when HEAD's tree differs from the
//! newest automatic snapshot's, the daemon takes `auto-YYYY-MM-DD-HHMM`
//! ([`fvfs_manifest::autosnap`]). Then it deletes the automatic snapshots the policy no
//! longer keeps (never one a person named) and, when it deleted some, runs a garbage
//! collection with `[gc]`'s retention, so that versions only they held can go.
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
use fvfs_engine::jobs::Gc;
use fvfs_fsck::retention::{Period, SnapshotPolicy};
use fvfs_manifest::autosnap;

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

/// A round at time `now`, recorded in the status of automatic snapshots.
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

/// What one round did.
#[derive(Default)]
struct Done {
    taken: Option<String>,
    pruned: Vec<String>,
    versions_dropped: usize,
}

/// Takes a snapshot if one is due and something changed, then prunes.
async fn round(
    state: &State,
    policy: &SnapshotPolicy,
    every: Period,
    now: i64,
) -> anyhow::Result<Done> {
    let repo = &state.repo;
    let mut taken: Vec<(String, i64)> = repo
        .snapshots()?
        .into_iter()
        .filter_map(|(name, _)| autosnap::time_of(&name).map(|t| (name, t)))
        .collect();
    let newest = taken.iter().max_by_key(|(n, t)| (*t, n)).cloned();
    let mut done = Done::default();
    // A clock behind the newest snapshot (set back, or a test) takes nothing.
    if newest
        .as_ref()
        .is_none_or(|(_, t)| every.of(*t) < every.of(now))
    {
        let lock = repo.lock().await;
        if let Some(head) = lock.head()? {
            let changed = match &newest {
                None => true,
                Some((name, _)) => repo.resolve(name)?.root != head.root,
            };
            if changed {
                let v = lock.snapshot_auto(now).await?;
                let name = autosnap::name(now);
                tracing::info!(version = v.number, "automatic snapshot {name}");
                taken.push((name.clone(), now));
                done.taken = Some(name);
            }
        }
    }
    let keep = policy.keep(&taken);
    let prune: Vec<String> = taken
        .iter()
        .filter(|(n, _)| !keep.contains(n.as_str()))
        .map(|(n, _)| n.clone())
        .collect();
    for name in &prune {
        repo.lock().await.snapshot_delete(name)?;
        tracing::info!("automatic snapshot {name} pruned");
        done.pruned.push(name.clone());
    }
    if !done.pruned.is_empty() {
        let opts = state.gc.options(&fvfs_api::args::GcArgs::default(), false);
        let collected = state.jobs.run(Gc(opts)).await;
        let report = collected.context("the daemon is stopping: no collection")??;
        done.versions_dropped = report.versions_dropped.len();
    }
    Ok(done)
}
