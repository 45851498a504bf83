//! [`Harness`]: the `fvfs-powerloss` binary run by a test, mounted on a directory and
//! driven through its stdin/stdout.
//!
//! # Invariants
//! - `start` returns only once the binary said `ready` (the mount serves requests);
//!   `cut` only once it said `ok` (the cut is complete). Every wait has a deadline, so a
//!   stuck harness fails the test instead of hanging it.
//! - Dropping a `Harness` closes its stdin (the binary unmounts and exits); if it has
//!   not exited within [`STOP_TIMEOUT`], the mount is detached (`fusermount3 -u -z`) and
//!   the process killed. Drop never panics.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long `start` waits for `ready` and a command for its answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dropping waits for the binary to exit before killing it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `fvfs-powerloss` mount.
pub struct Harness {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    mountpoint: PathBuf,
}

impl Harness {
    /// Runs the binary `bin` (`env!("CARGO_BIN_EXE_fvfs-powerloss")` in this crate's
    /// tests; `target/<profile>/fvfs-powerloss` elsewhere) mounted on `mountpoint`
    /// (created if missing), and waits until it serves. Panics if it cannot start.
    pub fn start(bin: &Path, mountpoint: &Path) -> Harness {
        std::fs::create_dir_all(mountpoint)
            .unwrap_or_else(|e| panic!("creating {}: {e}", mountpoint.display()));
        let mut child = Command::new(bin)
            .arg(mountpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut h = Harness {
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            mountpoint: mountpoint.to_owned(),
        };
        let first = h.next_line("ready");
        assert_eq!(first, "ready", "fvfs-powerloss did not start");
        h
    }

    /// The directory it is mounted on.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// `mountpoint/rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// The binary's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A power cut: every change not made durable is dropped. Kill the programs using
    /// the mount (and wait for them) first: their open files do not survive a real one.
    pub fn cut(&mut self) {
        let answer = self.command("cut");
        assert_eq!(answer, "ok", "cut failed");
    }

    /// The binary's counters, one line of JSON (fsync, fdatasync and fsyncdir calls, what
    /// the last cut dropped, files and bytes held).
    pub fn stats(&mut self) -> String {
        self.command("stats")
    }

    /// Unmounts and waits for the binary to exit; its exit status.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.shut_down()
    }

    fn command(&mut self, cmd: &str) -> String {
        let stdin = self.stdin.as_mut().expect("harness running");
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("sending {cmd:?} to fvfs-powerloss: {e}"));
        self.next_line(cmd)
    }

    fn next_line(&mut self, waiting_for: &str) -> String {
        match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("fvfs-powerloss did not answer {waiting_for:?} in {REPLY_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.as_mut().and_then(|c| c.wait().ok());
                panic!("fvfs-powerloss exited ({status:?}) before answering {waiting_for:?}")
            }
        }
    }

    /// EOF on stdin, then wait; past the deadline, detach the mount and kill.
    fn shut_down(&mut self) -> Option<ExitStatus> {
        drop(self.stdin.take());
        let mut child = self.child.take()?;
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(STOP_TIMEOUT) {
            Ok(status) => status.ok(),
            Err(_) => {
                eprintln!(
                    "fvfs-powerloss (pid {pid}) did not exit: detaching {} and killing it",
                    self.mountpoint.display()
                );
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(&self.mountpoint)
                    .status();
                // Not reaped yet (the waiting thread holds it), so the pid is still ours.
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                rx.recv_timeout(STOP_TIMEOUT).ok().and_then(Result::ok)
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shut_down();
    }
}
