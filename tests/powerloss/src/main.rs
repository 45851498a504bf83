//! `fvfs-powerloss MOUNTPOINT`: mounts the power-loss file system and serves it in the
//! foreground, controlled through stdin/stdout (see the library's documentation).
//!
//! # Invariants
//! - `ready` is printed only once the mount is up and the signal handlers are in place.
//! - On EOF, SIGTERM, SIGINT or a closed stdout the mount is unmounted explicitly and
//!   the process exits 0. If the kernel refuses (a file still open in the mount), the
//!   mount is detached lazily (`fusermount3 -u -z`) and the process exits at once: files
//!   still open there then fail with ENOTCONN. fuser's auto-unmount is not used (it can
//!   hang).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fvfs_powerloss::control;
use fvfs_powerloss::fs::{config, PowerLossFs};
use fvfs_powerloss::model::Tree;

/// How long to wait for the serving threads after unmounting.
const END_TIMEOUT: Duration = Duration::from_secs(10);

enum Event {
    Line(String),
    /// EOF on stdin, or a signal.
    Stop,
    /// The session ended by itself (unmounted from outside).
    Ended(std::io::Result<()>),
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [mountpoint] = args.as_slice() else {
        eprintln!("usage: fvfs-powerloss MOUNTPOINT  (commands on stdin: cut, stats)");
        return ExitCode::from(2);
    };
    match run(mountpoint) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fvfs-powerloss: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mountpoint: &Path) -> Result<()> {
    if !mountpoint.is_dir() {
        bail!("{} is not a directory", mountpoint.display());
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let tree = Arc::new(Mutex::new(Tree::new(uid, gid)));
    let (tx, events) = mpsc::channel();
    watch_signals(tx.clone())?;

    let mut session = fuser::Session::new(PowerLossFs::new(tree.clone()), mountpoint, &config())
        .with_context(|| format!("cannot mount on {}", mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    let ended = tx.clone();
    std::thread::Builder::new()
        .name("session".into())
        .spawn(move || {
            let _ = ended.send(Event::Ended(session.run()));
        })?;
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(Event::Line(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Stop);
        })?;

    let mut out = std::io::stdout().lock();
    let mut say = |line: &str| writeln!(out, "{line}").and_then(|()| out.flush());
    let mut listening = say("ready");
    while listening.is_ok() {
        match events.recv() {
            Ok(Event::Line(line)) => {
                if let Some(answer) = control::answer(&tree, &line) {
                    listening = say(&answer);
                }
            }
            Ok(Event::Ended(r)) => return r.context("serving the mount"),
            Ok(Event::Stop) | Err(_) => break,
        }
    }
    if let Err(e) = listening {
        // Nobody reads the answers any more: stop as on EOF.
        eprintln!("fvfs-powerloss: writing to stdout: {e}");
    }
    if let Err(e) = unmounter.unmount() {
        // Busy (a file open, a working directory inside): detach it from the tree now.
        // The session would only end once the last user lets go, so do not wait for it:
        // those users get ENOTCONN once this process has exited.
        eprintln!("fvfs-powerloss: unmount: {e}; detaching lazily");
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(mountpoint)
            .status();
        return Ok(());
    }
    // The kernel has let go of the mount: the session ends promptly.
    loop {
        match events.recv_timeout(END_TIMEOUT) {
            Ok(Event::Ended(_)) => return Ok(()),
            Ok(_) => continue,
            Err(_) => {
                eprintln!("fvfs-powerloss: the session did not end; exiting anyway");
                return Ok(());
            }
        }
    }
}

/// Sends [`Event::Stop`] on SIGTERM or SIGINT; returns once the handlers are installed.
fn watch_signals(tx: Sender<Event>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut term, mut int) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            let _ = tx.send(Event::Stop);
        })?;
    Ok(())
}
