//! The maintenance jobs running on a store, listed with their progress (status shows
//! them) while they run, and how the last of each kind ended, kept in a small file
//! ([`crate::MAINTENANCE`]) so that a restart does not forget when the store was last
//! checked.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fvfs_api::reports::{TaskOutcome, TaskProgress};
use fvfs_fsck::Progress;

/// The maintenance jobs running on a store, and how the last of each kind ended.
#[derive(Default)]
pub struct Maintenance {
    running: Mutex<Vec<Arc<Progress>>>,
    last: Mutex<Vec<TaskOutcome>>,
    /// Where `last` is kept (none: in memory only).
    record: Option<PathBuf>,
}

/// One running task; it leaves the list when dropped.
pub(crate) struct Task<'a> {
    running: &'a Maintenance,
    pub progress: Arc<Progress>,
}

impl Maintenance {
    /// Remembers outcomes in `record` (a JSON list), reading what it holds; a file that
    /// cannot be read only costs the past outcomes.
    pub(crate) fn recorded_in(record: PathBuf) -> Self {
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
    pub(crate) fn finished(&self, task: &str, ok: bool, summary: String) {
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

    pub(crate) fn start(&self, task: &'static str) -> Task<'_> {
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
        let running = Maintenance::default();
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
        let running = Maintenance::recorded_in(path.clone());
        running.finished("fsck", false, "2 problems".into());
        running.finished("gc", true, "freed 3 chunks".into());
        running.finished("fsck", true, "clean".into());
        let again = Maintenance::recorded_in(path.clone());
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
        assert!(Maintenance::recorded_in(path).outcomes().is_empty());
    }
}
