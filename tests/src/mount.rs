//! A real `fvfsc mount` for tests: started against a daemon, ready once the kernel lists
//! the mount, and unmounted (explicitly, also when stale) on drop. Its log (warnings
//! and up, unless `RUST_LOG` says otherwise) goes to a file beside its cache, shown
//! when the test fails while the mount is up.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bin;
use crate::daemon::Daemon;

/// `fvfsc umount DIR --cache-dir CACHE` (also of a stale mount): its exit status.
pub fn umount(dir: &Path, cache: &Path) -> std::process::ExitStatus {
    Command::new(bin("fvfsc"))
        .arg("umount")
        .arg(dir)
        .arg("--cache-dir")
        .arg(cache)
        .status()
        .expect("run fvfsc umount")
}

/// Whether the kernel lists a mount at `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap_or("")))
}

pub struct Mount {
    child: Option<Child>,
    pub dir: PathBuf,
    pub cache: PathBuf,
    log: PathBuf,
}

/// Lines of a mount's log shown when a test fails.
const LOG_TAIL: usize = 60;

impl Mount {
    /// Mounts `daemon`'s tree at `dir` with its chunk cache in `cache`, plus `extra`
    /// arguments; returns once the mount is listed by the kernel.
    pub fn start(daemon: &Daemon, dir: &Path, cache: &Path, extra: &[&str]) -> Self {
        let mut fvfsc = Command::new(bin("fvfsc"));
        fvfsc.env("FVFS_URL", &daemon.url).env_remove("FVFS_TOKEN");
        Self::start_with(fvfsc, dir, cache, extra)
    }

    /// Like [`Mount::start`], with `fvfsc` prepared to reach the daemon (its URL,
    /// token, home: over HTTPS, say).
    pub fn start_with(mut fvfsc: Command, dir: &Path, cache: &Path, extra: &[&str]) -> Self {
        fs::create_dir_all(dir).unwrap();
        let log = cache.with_extension("fvfsc.log");
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the mount's log");
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = fvfsc
            .env("RUST_LOG", level)
            .stderr(log_file)
            .arg("mount")
            .arg(dir)
            .arg("--cache-dir")
            .arg(cache)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("start fvfsc mount");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(dir) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("fvfsc mount exited with {status}");
            }
            assert!(Instant::now() < deadline, "mount never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child: Some(child),
            dir: dir.to_owned(),
            cache: cache.to_owned(),
            log,
        }
    }

    /// The mount process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// fsync of the mount's root: every file closed on the mount is committed on
    /// return, so the daemon and other devices see it (close alone queues it for a
    /// batch).
    pub fn sync(&self) {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .expect("fsync of the mount's root");
    }

    /// Waits until this mount (started with cache folder `cache`) retried what it
    /// could not commit: a retry pass that began after this call left nothing
    /// waiting, as its state file says.
    pub fn retries_settled(&self, cache: &Path) {
        let pid = self.pid().expect("the mount runs");
        let file = cache.join("mounts").join(format!("{pid}.json"));
        let read = || -> Option<(u64, usize)> {
            let v: serde_json::Value = serde_json::from_slice(&fs::read(&file).ok()?).ok()?;
            Some((v["passes"].as_u64()?, v["waiting"].as_array()?.len()))
        };
        let start = read().map_or(0, |(passes, _)| passes);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match read() {
                Some((passes, 0)) if passes >= start + 2 => return,
                state => assert!(
                    Instant::now() < deadline,
                    "the mount's retries never settled: {state:?} in {}",
                    file.display()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `fvfsc umount`, then waits for the mount process to exit; returns its status.
    pub fn unmount(&mut self) -> Option<i32> {
        assert!(
            umount(&self.dir, &self.cache).success(),
            "fvfsc umount failed"
        );
        let code = self
            .child
            .take()
            .map(|mut c| c.wait().expect("wait for fvfsc mount").code());
        assert!(!is_mounted(&self.dir), "still mounted after umount");
        code.flatten()
    }

    /// Kills the mount process, leaving a stale mount behind.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "the mount's log ({}), last {} lines:\n{}",
                self.log.display(),
                tail.len(),
                tail.join("\n")
            );
        }
        if self.child.is_some() || is_mounted(&self.dir) {
            let _ = umount(&self.dir, &self.cache);
            if let Some(mut c) = self.child.take() {
                // A mount that does not exit once unmounted is stuck: killed, so a
                // failing test ends instead of hanging the run.
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
