//! Showing fsck and gc while they run: a bar on the terminal (hidden when stderr is not
//! one), and the daemon's list of running maintenance tasks (shown in status).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fvfs_api::reports::TaskProgress;
use fvfs_fsck::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Runs `work`, drawing `progress` on stderr meanwhile.
pub async fn with_bar<T>(progress: &Progress, work: impl Future<Output = T>) -> T {
    with_bar_from(|| async { Some(progress.snapshot()) }, work).await
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

/// The maintenance tasks a daemon is running.
#[derive(Default)]
pub struct Running(Mutex<Vec<Arc<Progress>>>);

/// One running task; it leaves the list when dropped.
pub struct Task<'a> {
    running: &'a Running,
    pub progress: Arc<Progress>,
}

impl Running {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Progress>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
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
}
