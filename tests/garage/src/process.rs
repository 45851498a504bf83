//! A `garage server` process: launched into its own process group (a terminal's Ctrl-C
//! or a test runner's signals to its group don't reach it) with its output appended to
//! the node's log, its pid in `DIR/garage.pid`; found again from that file by a later
//! command; stopped with SIGTERM, a bounded wait, then SIGKILL.
//!
//! A pid file is trusted only while its process is alive, not a zombie, and a garage
//! server of this folder's config: a stale file (a reused pid) is ignored.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, test_kill_process, Pid, Signal};

use crate::wait::Deadline;
use crate::Settings;

/// How long SIGKILL may take to end a process.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server {
    pid: u32,
    /// Set when this process launched it: it must be reaped, or it would linger as a
    /// zombie that signals still reach.
    child: Option<Child>,
}

impl Server {
    /// Launches `garage -c CONFIG server`, appending its output to `log`.
    pub fn launch(settings: &Settings, config: &Path, log: &Path, pid_file: &Path) -> Result<Self> {
        if !settings.bin.exists() {
            bail!(
                "no garage at {}: `fvfs-garage install` builds it",
                settings.bin.display()
            );
        }
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        writeln!(out, "\n===== fvfs-garage: starting garage =====")?;
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "garage=info".into());
        let child = settings
            .garage()
            .arg("-c")
            .arg(config)
            .arg("server")
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("run {}", settings.bin.display()))?;
        let mut server = Self {
            pid: child.id(),
            child: Some(child),
        };
        if let Err(e) = std::fs::write(pid_file, format!("{}\n", server.pid)) {
            let _ = server.kill();
            return Err(e).with_context(|| format!("write {}", pid_file.display()));
        }
        Ok(server)
    }

    /// The server `pid_file` names, if it runs with `config`.
    pub fn find(pid_file: &Path, config: &Path) -> Option<Self> {
        let pid: u32 = std::fs::read_to_string(pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let server = Self { pid, child: None };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let ours = args
            .windows(2)
            .any(|w| w[0] == b"-c" && w[1] == config.as_os_str().as_encoded_bytes())
            && args.contains(&&b"server"[..]);
        (ours && server.alive()).then_some(server)
    }

    /// Whether this process launched it (and must reap it).
    pub fn launched_here(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Running: signals reach it and it has not ended (a zombie has).
    pub fn alive(&self) -> bool {
        let Some(pid) = Pid::from_raw(self.pid as i32) else {
            return false;
        };
        test_kill_process(pid).is_ok() && !zombie(self.pid)
    }

    /// Sends `signal` (nothing if it already ended).
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.pid as i32) {
            let _ = kill_process(pid, signal);
        }
    }

    /// Whether it ended by `deadline` (reaped, when this process launched it).
    pub fn gone_by(&mut self, deadline: Deadline) -> bool {
        loop {
            if let Some(child) = &mut self.child {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return true;
                }
            } else if !self.alive() {
                return true;
            }
            if deadline.passed() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and the wait for the end.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(Signal::KILL);
        if !self.gone_by(Deadline::after(KILL_TIMEOUT)) {
            bail!("garage pid {} did not die after SIGKILL", self.pid);
        }
        Ok(())
    }
}

/// Stops every server of `servers` at once: SIGTERM, `timeout` for them all to end, then
/// SIGKILL for those still there.
pub fn stop_all(servers: &mut [&mut Server], timeout: Duration) -> Result<()> {
    for s in servers.iter() {
        s.signal(Signal::TERM);
    }
    let deadline = Deadline::after(timeout);
    for s in servers.iter_mut() {
        if !s.gone_by(deadline) {
            eprintln!(
                "fvfs-garage: garage pid {} still alive {timeout:?} after SIGTERM; sending SIGKILL",
                s.pid
            );
            s.kill()?;
        }
    }
    Ok(())
}

/// Whether `pid` is a zombie (ended, not yet reaped by its parent).
fn zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last ')'.
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}
