//! The store's workers: loops that run a round every period (the daemon's durable
//! checkpoints of uploads, eviction, usage samples, automatic snapshots) and jobs run
//! on request (fsck, gc, [`crate::jobs::Jobs`]), each with its name, how many rounds (runs) it made and how
//! the last one ended, which `/v1/status` and `/metrics` show, and one way to stop
//! them all at shutdown.
//!
//! # Invariants
//! - A stop never cuts a round or a job short: it waits for those in progress (up to
//!   a limit, after which they are abandoned and said so), and none starts after it.
//! - A job runs to its end on its own task: whoever asked for it may go away (an HTTP
//!   client that disconnects) without cutting a collection or a check in the middle.
//! - A round's failure is logged and recorded; the loop goes on.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fvfs_api::reports::WorkerStatus;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// One worker and what it did.
struct Worker {
    name: &'static str,
    every: Duration,
    rounds: AtomicU64,
    failures: AtomicU64,
    /// Rounds or jobs in progress (jobs of one name may overlap).
    busy: AtomicU64,
    /// When the last round ended, and its error if it failed.
    last: Mutex<(Option<i64>, Option<String>)>,
}

impl Worker {
    fn status(&self) -> WorkerStatus {
        let (last_round, last_error) = lock(&self.last).clone();
        WorkerStatus {
            name: self.name.into(),
            every_ms: u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX),
            rounds: self.rounds.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed) > 0,
            last_round,
            last_error,
        }
    }

    fn ended(&self, result: Result<(), String>) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        let error = result.err();
        if let Some(e) = &error {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("{}: {e}", self.name);
        }
        *lock(&self.last) = (Some(fvfs_manifest::now_secs()), error);
    }
}

/// The daemon's workers.
pub struct Workers {
    stop: watch::Sender<bool>,
    workers: Mutex<Vec<Arc<Worker>>>,
    tasks: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Default for Workers {
    fn default() -> Self {
        Self {
            stop: watch::Sender::new(false),
            workers: Mutex::default(),
            tasks: Mutex::default(),
        }
    }
}

impl Workers {
    /// Runs `round` now, then every `every` after the last one started (a late round
    /// delays the next instead of bunching them), until [`Workers::stop`].
    pub fn every<F, Fut>(&self, name: &'static str, every: Duration, mut round: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let worker = self.worker(name, every);
        let mut stop = self.stop.subscribe();
        let w = worker.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stopped| *stopped) => break,
                    _ = tick.tick() => {}
                }
                w.busy.fetch_add(1, Ordering::Relaxed);
                let result = round().await;
                w.busy.fetch_sub(1, Ordering::Relaxed);
                w.ended(result);
            }
        });
        lock(&self.tasks).push((name, task));
    }

    /// Runs `work` once as worker `name`, on a task of its own; the future answers
    /// its result, or `None` if the daemon is stopping (not started, or abandoned at
    /// the stop's limit). Dropping the future does not stop the job.
    pub fn job<T, E, W>(
        &self,
        name: &'static str,
        work: W,
    ) -> impl Future<Output = Option<Result<T, E>>> + use<T, E, W>
    where
        T: Send + 'static,
        E: Display + Send + 'static,
        W: Future<Output = Result<T, E>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        if !*self.stop.borrow() {
            let w = self.worker(name, Duration::ZERO);
            w.busy.fetch_add(1, Ordering::Relaxed);
            let task = tokio::spawn(async move {
                let result = work.await;
                w.busy.fetch_sub(1, Ordering::Relaxed);
                w.ended(result.as_ref().map(|_| ()).map_err(E::to_string));
                let _ = tx.send(result);
            });
            let mut tasks = lock(&self.tasks);
            tasks.retain(|(_, t)| !t.is_finished());
            tasks.push((name, task));
        }
        async move { rx.await.ok() }
    }

    /// The worker called `name`, made on first use.
    fn worker(&self, name: &'static str, every: Duration) -> Arc<Worker> {
        let mut workers = lock(&self.workers);
        if let Some(w) = workers.iter().find(|w| w.name == name) {
            return w.clone();
        }
        let worker = Arc::new(Worker {
            name,
            every,
            rounds: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            last: Mutex::default(),
        });
        workers.push(worker.clone());
        worker
    }

    /// Each worker's status, in the order they were started.
    pub fn status(&self) -> Vec<WorkerStatus> {
        lock(&self.workers).iter().map(|w| w.status()).collect()
    }

    /// Tells every worker to stop after its round in progress (no round or job starts
    /// from now on); the future waits for them and for the jobs running, `limit` at
    /// most in all.
    pub fn stop(&self, limit: Duration) -> impl Future<Output = ()> + use<> {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        async move {
            let deadline = Instant::now() + limit;
            for (name, task) in tasks {
                let left = deadline.saturating_duration_since(Instant::now());
                let abort = task.abort_handle();
                if tokio::time::timeout(left, task).await.is_err() {
                    tracing::warn!(
                        "{name}: still in a round after {} s; stopping anyway",
                        limit.as_secs()
                    );
                    abort.abort();
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::{mpsc, Notify};

    #[tokio::test]
    async fn rounds_and_failures_are_counted_and_a_failure_does_not_stop_the_loop() {
        let workers = Workers::default();
        let (done, mut rounds) = mpsc::unbounded_channel();
        let mut n = 0u64;
        workers.every("flaky", Duration::from_millis(1), move || {
            n += 1;
            let (done, n) = (done.clone(), n);
            async move {
                let _ = done.send(n);
                if n % 2 == 0 {
                    Err(format!("round {n} failed"))
                } else {
                    Ok(())
                }
            }
        });
        for want in 1..=5 {
            assert_eq!(rounds.recv().await, Some(want));
        }
        workers.stop(Duration::from_secs(10)).await;
        let s = &workers.status()[0];
        assert!(s.rounds >= 5 && s.failures >= 2 && !s.busy, "{s:?}");
        assert_eq!(s.failures, s.rounds / 2);
        // The task and its senders are gone: every round it started was counted.
        let mut last = 5;
        while let Some(n) = rounds.recv().await {
            last = n;
        }
        assert_eq!(last, s.rounds);
    }

    #[tokio::test]
    async fn status_shows_a_round_in_progress_and_the_last_error() {
        let workers = Workers::default();
        let (started, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let mut first = true;
        let (s2, g2) = (started.clone(), go.clone());
        workers.every("slow", Duration::from_millis(1), move || {
            let (started, go, fail) = (s2.clone(), g2.clone(), std::mem::take(&mut first));
            async move {
                started.notify_one();
                go.notified().await;
                if fail {
                    Err("the disk said no".into())
                } else {
                    Ok(())
                }
            }
        });
        started.notified().await;
        let s = workers.status();
        assert_eq!(
            (s[0].name.as_str(), s[0].busy, s[0].rounds),
            ("slow", true, 0)
        );
        go.notify_one();
        started.notified().await;
        let s = workers.status();
        assert_eq!((s[0].rounds, s[0].failures), (1, 1));
        assert_eq!(s[0].last_error.as_deref(), Some("the disk said no"));
        assert!(s[0].last_round.is_some());
        assert!(s[0].busy);
        // A stop lets the round in progress end, and starts none after it.
        let stopping = workers.stop(Duration::from_secs(10));
        go.notify_one();
        stopping.await;
        let s = &workers.status()[0];
        assert_eq!((s.rounds, s.failures, s.busy), (2, 1, false));
        assert_eq!(s.last_error, None);
    }

    #[tokio::test]
    async fn a_job_runs_to_its_end_when_its_caller_goes_away_and_a_stop_waits_for_it() {
        let workers = Workers::default();
        let (started, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (s2, g2) = (started.clone(), go.clone());
        let (done_tx, done) = oneshot::channel();
        let asked = workers.job("gc", async move {
            s2.notify_one();
            g2.notified().await;
            let _ = done_tx.send(());
            Ok::<_, String>(7)
        });
        started.notified().await;
        assert!(workers.status()[0].busy);
        // The caller goes away (an HTTP client that disconnected): the job goes on, and
        // a stop waits for it.
        drop(asked);
        let stopping = workers.stop(Duration::from_secs(10));
        go.notify_one();
        stopping.await;
        done.await.expect("the job ran to its end");
        let s = &workers.status()[0];
        assert_eq!((s.name.as_str(), s.rounds, s.busy), ("gc", 1, false));
        // No job starts once stopped.
        let late = workers.job("gc", async { Ok::<_, String>(8) });
        assert!(late.await.is_none());
    }

    #[tokio::test]
    async fn a_jobs_result_and_failure_are_answered_and_counted() {
        let workers = Workers::default();
        assert_eq!(
            workers.job("fsck", async { Ok::<_, String>(1) }).await,
            Some(Ok(1))
        );
        let failed = workers.job("fsck", async { Err::<u8, _>("no disk".to_owned()) });
        assert_eq!(failed.await, Some(Err("no disk".to_owned())));
        let s = &workers.status()[0];
        assert_eq!((s.rounds, s.failures), (2, 1));
        assert_eq!(s.last_error.as_deref(), Some("no disk"));
    }
}
