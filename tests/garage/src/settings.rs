//! Where the garage binary is and how long to wait for it, from the environment:
//! `GARAGE_ROOT` (install root, default `~/.cache/fvfs/garage`), `GARAGE_BIN` (default
//! `$GARAGE_ROOT/bin/garage`), `GARAGE_VERSION` (to install, default 2.5.0),
//! `GARAGE_START_TIMEOUT` and `GARAGE_STOP_TIMEOUT` (seconds, default 60 and 15).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

/// The version `install` builds.
const DEFAULT_VERSION: &str = "2.5.0";

#[derive(Clone, Debug)]
pub struct Settings {
    pub root: PathBuf,
    pub bin: PathBuf,
    pub version: String,
    /// How long a start or restart may take, readiness included.
    pub start_timeout: Duration,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
}

impl Settings {
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let root = match var("GARAGE_ROOT") {
            Some(root) => PathBuf::from(root),
            None => PathBuf::from(var("HOME").ok_or_else(|| anyhow!("HOME is not set"))?)
                .join(".cache/fvfs/garage"),
        };
        let bin = var("GARAGE_BIN").map_or_else(|| root.join("bin/garage"), PathBuf::from);
        let version = std::env::var("GARAGE_VERSION")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_VERSION.to_owned());
        Ok(Self {
            root,
            bin,
            version,
            start_timeout: seconds("GARAGE_START_TIMEOUT", 60)?,
            stop_timeout: seconds("GARAGE_STOP_TIMEOUT", 15)?,
        })
    }

    /// `garage` with none of the caller's `GARAGE_*` variables (they would override the
    /// configuration file: secrets, tokens, the config path).
    pub fn garage(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GARAGE_") {
                cmd.env_remove(name);
            }
        }
        cmd
    }
}

fn seconds(name: &str, default: u64) -> Result<Duration> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map(Duration::from_secs)
            .with_context(|| format!("{name}={v:?} is not a number of seconds")),
        _ => Ok(Duration::from_secs(default)),
    }
}
