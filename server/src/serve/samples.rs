//! The tiers' usage and replication backlog over time, for the web page's plots: one
//! sample a minute, kept in memory and appended to `DATA/usage.jsonl` (one JSON
//! sample a line), so that a restart keeps the history.
//!
//! # Invariants
//! - Memory and the file stay bounded: at most [`KEEP`] samples (two weeks) in memory;
//!   the file is rewritten with those when it holds twice as many lines.
//! - The file is statistics, not data: it is not synced, and a line that does not parse
//!   (a torn tail after a power cut) is skipped when it is read back.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fvfs_api::reports::{TierUsage, UsageHistory, UsageSample};

use super::State;

/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(60);
/// Samples kept: two weeks at one a minute.
const KEEP: usize = 14 * 24 * 60;

pub struct Samples {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    kept: VecDeque<UsageSample>,
    /// Lines in the file now.
    lines: usize,
}

impl Samples {
    /// Reads back what `path` holds (nothing if it cannot be read).
    pub fn open(path: PathBuf) -> Self {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut kept = VecDeque::new();
        let mut lines = 0;
        for line in text.lines() {
            lines += 1;
            if let Ok(s) = serde_json::from_str::<UsageSample>(line) {
                if kept.len() == KEEP {
                    kept.pop_front();
                }
                kept.push_back(s);
            }
        }
        Self {
            path,
            inner: Mutex::new(Inner { kept, lines }),
        }
    }

    pub fn history(&self) -> UsageHistory {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        UsageHistory {
            interval_secs: EVERY.as_secs(),
            samples: inner.kept.iter().cloned().collect(),
        }
    }

    /// Keeps `sample`, and writes it to the file (rewritten whole when it has grown to
    /// twice what is kept).
    pub fn add(&self, sample: UsageSample) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.kept.len() == KEEP {
            inner.kept.pop_front();
        }
        let line = serde_json::to_string(&sample).expect("samples serialise") + "\n";
        inner.kept.push_back(sample);
        if inner.lines >= 2 * KEEP {
            let mut all = String::new();
            for s in &inner.kept {
                all += &serde_json::to_string(s).expect("samples serialise");
                all.push('\n');
            }
            let tmp = self.path.with_extension("jsonl.tmp");
            std::fs::write(&tmp, all)?;
            std::fs::rename(&tmp, &self.path)?;
            inner.lines = inner.kept.len();
            return Ok(());
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(line.as_bytes())?;
        inner.lines += 1;
        Ok(())
    }
}

/// Takes a sample now and then every [`EVERY`], for as long as the daemon serves.
pub fn start(state: &Arc<State>) {
    let me = state.clone();
    state.workers.every("samples", EVERY, move || {
        let state = me.clone();
        async move { take(&state) }
    });
}

/// Records the tiers' usage now.
fn take(state: &State) -> Result<(), String> {
    let tiers = super::admin::tiers(state).map_err(|e| format!("usage sample: {}", e.detail))?;
    let sample = UsageSample {
        time: fvfs_manifest::now_secs(),
        tiers: tiers
            .into_iter()
            .map(|t| TierUsage {
                name: t.name,
                chunks: t.chunks,
                bytes: t.bytes,
                queue_depth: t.queue_depth,
            })
            .collect(),
    };
    state
        .samples
        .add(sample)
        .map_err(|e| format!("{}: {e}", state.samples.path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(time: i64) -> UsageSample {
        UsageSample {
            time,
            tiers: vec![TierUsage {
                name: "local".into(),
                chunks: time as u64,
                bytes: 10 * time as u64,
                queue_depth: 0,
            }],
        }
    }

    #[test]
    fn samples_survive_a_restart_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        let s = Samples::open(path.clone());
        for t in 0..(2 * KEEP as i64 + 10) {
            s.add(sample(t)).unwrap();
        }
        let kept = s.history().samples;
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept.last().unwrap().time, 2 * KEEP as i64 + 9);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * KEEP, "{lines} lines");
        // A torn last line, as a power cut leaves it, is skipped.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"time\": 9").unwrap();
        let again = Samples::open(path).history().samples;
        assert_eq!(again, kept);
    }
}
