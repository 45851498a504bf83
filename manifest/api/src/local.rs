//! The daemon's word to clients on its own machine (feature `client`): which port it
//! listens on and which certificate it presents, in a *notice* that only the daemon's
//! user (or root) can write. A local fvfsc that finds one talks HTTPS to loopback and
//! trusts exactly that certificate, so another local user who binds the port first
//! (while the daemon restarts, or before it started) is refused at the handshake and
//! receives no token.
//!
//! ```text
//! $FVFS_RUNTIME_DIR/<port>.json   when set (tests), for daemon and clients alike
//! /run/fvfs/<port>.json           a daemon run by root (folder 0755)
//! $XDG_RUNTIME_DIR/fvfs/...       a daemon run by a user (folder 0700)
//! ```
//!
//! # Invariants
//! - A notice is trusted only if it and its folder belong to root or to the client's
//!   own user and nobody else can write them.
//! - A notice stays after the daemon stops (until reboot clears the runtime folder):
//!   its absence is what a squatter would need.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tls::Fingerprint;

/// Overrides where notices are written and read.
pub const RUNTIME_ENV: &str = "FVFS_RUNTIME_DIR";

/// What a daemon says about itself to local clients.
#[derive(Debug, Serialize, Deserialize)]
pub struct Notice {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The certificate it presents.
    pub fingerprint: String,
    pub node_id: String,
}

fn overridden() -> Option<PathBuf> {
    std::env::var_os(RUNTIME_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

fn user_runtime() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("fvfs"))
}

/// Where this daemon writes its notice, if anywhere.
fn daemon_dir() -> Option<PathBuf> {
    overridden().or_else(|| match rustix::process::geteuid().is_root() {
        true => Some(PathBuf::from("/run/fvfs")),
        false => user_runtime(),
    })
}

/// Writes the notice of a daemon listening on loopback `port` (whole or not at all).
/// Returns where, or why not.
pub fn publish(port: u16, notice: &Notice) -> Result<PathBuf, String> {
    let dir = daemon_dir().ok_or("no runtime folder (XDG_RUNTIME_DIR is not set)")?;
    let root = rustix::process::geteuid().is_root() && overridden().is_none();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mode = if root { 0o755 } else { 0o700 };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
    let path = dir.join(format!("{port}.json"));
    let text = serde_json::to_vec_pretty(notice).expect("a notice serialises");
    fvfs_cas::platform::write_durably(&path, &text, 0o644)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Whether `path` belongs to root or to this user and no one else can write it.
fn owned_safely(path: &Path) -> bool {
    let me = rustix::process::geteuid().as_raw();
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| (m.uid() == 0 || m.uid() == me) && m.mode() & 0o022 == 0)
}

/// The notice of the daemon on loopback `port` this client can trust, with the
/// certificate it names: none when there is none, or when one is there but others
/// could have written it.
pub fn trusted(port: u16) -> Option<(Notice, Fingerprint)> {
    let dirs = match overridden() {
        Some(d) => vec![d],
        None => user_runtime()
            .into_iter()
            .chain([PathBuf::from("/run/fvfs")])
            .collect(),
    };
    dirs.into_iter().find_map(|dir| {
        let path = dir.join(format!("{port}.json"));
        if !(owned_safely(&dir) && owned_safely(&path)) {
            return None;
        }
        let notice: Notice = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        let fingerprint = notice.fingerprint.parse().ok()?;
        Some((notice, fingerprint))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_notice_of_root_or_this_user_that_no_one_else_can_write_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("mine");
        std::fs::create_dir(&ok).unwrap();
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = ok.join("7734.json");
        std::fs::write(&file, b"{}").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(owned_safely(&ok) && owned_safely(&file));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!owned_safely(&file), "writable by others");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        if rustix::process::geteuid().is_root() {
            // Another user's file (as root, the test can make one).
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
            assert!(!owned_safely(&file), "another user's");
        }
        assert!(!owned_safely(&ok.join("missing.json")));
    }
}
