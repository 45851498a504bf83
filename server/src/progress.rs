//! Showing fsck and gc while they run: a bar on the terminal (hidden when stderr is not
//! one), and the daemon's list of running maintenance tasks (shown in status) with how
//! the last of each kind ended, kept in a small file so that a restart does not forget
//! when the store was last checked.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fvfs_api::reports::{TaskOutcome, TaskProgress};
use fvfs_fsck::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Runs `work`, drawing `progress` on stderr meanwhile.
pub async fn with_bar<T>(progress: &Progress, work: impl Future<Output = T>) -> T {
    with_bar_from(|| async { Some(progress.snapshot()) }, work).await
}

/// Runs `work`, a job listed in `running`, drawing its progress on stderr meanwhile.
pub async fn with_bar_of<T>(running: &Running, work: impl Future<Output = T>) -> T {
    with_bar_from(|| async { running.snapshots().pop() }, work).await
}

/// Runs `work`, drawing what `source` tells (polled every 200 ms; `None`: nothing new,
/// as when a daemon's status does not list the task yet).
pub async fn with_bar_from<T, F, Fut>(mut source: F, work: impl Future<Output = T>) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<TaskProgress>>,
{
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg} {pos}/{len}")
            .expect("static template"),
    );
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = tick.tick() => {
                let Some(s) = source().await else { continue };
                bar.set_message(format!("{} {} ({} read)", s.task, s.phase, HumanBytes(s.bytes)));
                bar.set_length(s.total.max(s.done));
                bar.set_position(s.done);
            }
        }
    };
    bar.finish_and_clear();
    out
}

/// The maintenance tasks a daemon is running, and how the last of each kind ended.
#[derive(Default)]
pub struct Running {
    running: Mutex<Vec<Arc<Progress>>>,
    last: Mutex<Vec<TaskOutcome>>,
    /// Where `last` is kept (none: in memory only).
    record: Option<PathBuf>,
}

/// One running task; it leaves the list when dropped.
pub struct Task<'a> {
    running: &'a Running,
    pub progress: Arc<Progress>,
}

impl Running {
    /// Remembers outcomes in `record` (a JSON list), reading what it holds; a file that
    /// cannot be read only costs the past outcomes.
    pub fn recorded_in(record: PathBuf) -> Self {
        let last = match std::fs::read(&record) {
            Ok(raw) => serde_json::from_slice(&raw).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: {e}; past fsck and gc outcomes forgotten",
                    record.display()
                );
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        Self {
            last: Mutex::new(last),
            record: Some(record),
            ..Self::default()
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Progress>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records how a task ended, replacing the previous outcome of its kind.
    pub fn finished(&self, task: &str, ok: bool, summary: String) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.retain(|o| o.task != task);
        last.push(TaskOutcome {
            task: task.to_owned(),
            finished: fvfs_manifest::now_secs(),
            ok,
            summary,
        });
        last.sort_by(|a, b| a.task.cmp(&b.task));
        if let Some(path) = &self.record {
            let raw = serde_json::to_vec_pretty(&*last).expect("outcomes serialise");
            if let Err(e) = fvfs_cas::platform::write_durably(path, &raw, 0o600) {
                tracing::warn!("{}: {e}", path.display());
            }
        }
    }

    /// How the last task of each kind ended.
    pub fn outcomes(&self) -> Vec<TaskOutcome> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn start(&self, task: &'static str) -> Task<'_> {
        let progress = Arc::new(Progress::new(task));
        self.list().push(progress.clone());
        Task {
            running: self,
            progress,
        }
    }

    pub fn snapshots(&self) -> Vec<TaskProgress> {
        self.list().iter().map(|p| p.snapshot()).collect()
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        self.running
            .list()
            .retain(|p| !Arc::ptr_eq(p, &self.progress));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_listed_while_it_runs() {
        let running = Running::default();
        assert!(running.snapshots().is_empty());
        let task = running.start("fsck");
        task.progress.phase("checking", 10);
        task.progress.add(3, 4096);
        let other = running.start("gc");
        let shown = running.snapshots();
        assert_eq!(shown.len(), 2);
        assert_eq!(
            (
                shown[0].task.as_str(),
                shown[0].phase.as_str(),
                shown[0].done,
                shown[0].total,
                shown[0].bytes
            ),
            ("fsck", "checking", 3, 10, 4096)
        );
        drop(task);
        assert_eq!(running.snapshots()[0].task, "gc");
        drop(other);
        assert!(running.snapshots().is_empty());
    }

    #[test]
    fn the_last_outcome_of_each_kind_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maintenance.json");
        let running = Running::recorded_in(path.clone());
        running.finished("fsck", false, "2 problems".into());
        running.finished("gc", true, "freed 3 chunks".into());
        running.finished("fsck", true, "clean".into());
        let again = Running::recorded_in(path.clone());
        let shown: Vec<_> = again
            .outcomes()
            .into_iter()
            .map(|o| (o.task, o.ok, o.summary))
            .collect();
        assert_eq!(
            shown,
            [
                ("fsck".to_owned(), true, "clean".to_owned()),
                ("gc".to_owned(), true, "freed 3 chunks".to_owned())
            ]
        );
        std::fs::write(&path, b"not json").unwrap();
        assert!(Running::recorded_in(path).outcomes().is_empty());
    }
}
