//! Showing fsck, gc and recover while they run: a bar on the terminal (hidden when
//! stderr is not one), drawn from a task's progress, from the engine's list of running
//! jobs ([`Maintenance`]) or from a daemon's status.

use std::future::Future;
use std::time::Duration;

use fvfs_api::reports::TaskProgress;
use fvfs_engine::Maintenance;
use fvfs_fsck::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Runs `work`, drawing `progress` on stderr meanwhile.
pub async fn with_bar<T>(progress: &Progress, work: impl Future<Output = T>) -> T {
    with_bar_from(|| async { Some(progress.snapshot()) }, work).await
}

/// Runs `work`, a job listed in `maintenance`, drawing its progress on stderr meanwhile.
pub async fn with_bar_of<T>(maintenance: &Maintenance, work: impl Future<Output = T>) -> T {
    with_bar_from(|| async { maintenance.snapshots().pop() }, work).await
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
