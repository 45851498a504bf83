//! The daemons this device trusts: each one's TLS certificate fingerprint, pinned by
//! `fvfsc pair` or at the first contact, with the node id and URLs it was met under.
//! Kept in `~/.config/fvfs/pinned.json` (0600, written whole or not at all).
//!
//! # Invariants
//! - A pin changes only through `fvfsc pair` (or by editing the file): a daemon that
//!   presents another certificate than its pin is refused, never re-pinned.
//! - Over mDNS, once this device has pinned any daemon, only daemons whose node id or
//!   announced fingerprint is pinned are used: anyone on the LAN can announce a daemon, and a new one must be
//!   paired on purpose.

use std::path::PathBuf;

use anyhow::{Context, Result};
use fvfs_api::tls::Fingerprint;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Pins {
    #[serde(default)]
    daemons: Vec<Pin>,
    /// Where they are kept.
    #[serde(skip)]
    file: Option<PathBuf>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Pin {
    fingerprint: String,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
}

impl Pin {
    fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint.parse().ok()
    }
}

impl Pins {
    pub fn load() -> Result<Self> {
        match crate::paths::pinned() {
            Some(path) => Self::load_from(path),
            None => Ok(Self::default()),
        }
    }

    fn load_from(path: PathBuf) -> Result<Self> {
        let mut pins: Self = match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw).with_context(|| {
                format!(
                    "{} is damaged: fix it or delete it (every daemon must then be paired again)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if let Some(bad) = pins.daemons.iter().find(|p| p.fingerprint().is_none()) {
            // Skipping it would meet that daemon as new and pin it again unasked.
            anyhow::bail!(
                "{} is damaged: {:?} is not a fingerprint; fix it or delete that entry",
                path.display(),
                bad.fingerprint
            );
        }
        pins.file = Some(path);
        Ok(pins)
    }

    pub fn is_empty(&self) -> bool {
        self.daemons.is_empty()
    }

    /// The daemons pinned: node ids and fingerprints.
    pub fn known(&self) -> (Vec<String>, Vec<Fingerprint>) {
        let nodes = self
            .daemons
            .iter()
            .filter_map(|p| p.node_id.clone())
            .collect();
        let prints = self.daemons.iter().filter_map(Pin::fingerprint).collect();
        (nodes, prints)
    }

    pub fn has(&self, fingerprint: Fingerprint) -> bool {
        self.daemons
            .iter()
            .any(|p| p.fingerprint() == Some(fingerprint))
    }

    pub fn for_node(&self, node_id: &str) -> Option<Fingerprint> {
        self.daemons
            .iter()
            .find(|p| p.node_id.as_deref() == Some(node_id))
            .and_then(Pin::fingerprint)
    }

    pub fn for_url(&self, url: &str) -> Option<Fingerprint> {
        let url = url.trim_end_matches('/');
        self.daemons
            .iter()
            .find(|p| p.urls.iter().any(|u| u == url))
            .and_then(Pin::fingerprint)
    }

    /// Pins `fingerprint` for the daemon met at `url` (and known as `node_id`): an
    /// earlier pin of that node or URL is replaced, so only `fvfsc pair` may call it
    /// for a daemon already pinned.
    pub fn pin(
        &mut self,
        fingerprint: Fingerprint,
        node_id: Option<&str>,
        url: &str,
    ) -> Result<()> {
        // Another fvfsc may pin at the same moment: change what the file holds now,
        // under a lock, so that neither pin is lost.
        let file = self
            .file
            .clone()
            .context("no home folder to keep pinned daemons in (set HOME)")?;
        let dir = file.parent().expect("a file in a folder");
        fvfs_cas::platform::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::File::options()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(dir.join("pinned.lock"))?
        };
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        *self = Self::load_from(file)?;
        let url = url.trim_end_matches('/').to_owned();
        let fingerprint = fingerprint.to_string();
        let same = |p: &Pin| {
            p.fingerprint == fingerprint
                || p.urls.contains(&url)
                || (node_id.is_some() && p.node_id.as_deref() == node_id)
        };
        let mut urls = vec![url.clone()];
        let mut node = node_id.map(str::to_owned);
        for old in self.daemons.iter().filter(|p| same(p)) {
            // The same daemon met elsewhere keeps its other addresses.
            if old.fingerprint == fingerprint {
                urls.extend(old.urls.iter().filter(|u| **u != url).cloned());
                node = node.or_else(|| old.node_id.clone());
            }
        }
        self.daemons.retain(|p| !same(p));
        self.daemons.push(Pin {
            fingerprint,
            node_id: node,
            urls,
        });
        let raw = serde_json::to_vec_pretty(self)?;
        let file = self.file.as_ref().expect("loaded from a file");
        fvfs_cas::platform::write_durably(file, &raw, 0o600)
            .with_context(|| format!("cannot write {}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_is_found_by_node_or_url_and_repinned_in_place() {
        let a = Fingerprint::of(b"a");
        let b = Fingerprint::of(b"b");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fvfs/pinned.json");
        let mut pins = Pins::load_from(file.clone()).unwrap();
        pins.pin(a, Some("n1"), "https://10.0.0.1:7734").unwrap();
        assert_eq!(pins.for_node("n1"), Some(a));
        assert_eq!(pins.for_url("https://10.0.0.1:7734/"), Some(a));
        assert_eq!(pins.for_node("n2"), None);
        pins.pin(a, None, "https://10.0.0.9:7734").unwrap();
        assert_eq!(
            pins.daemons.len(),
            1,
            "the same daemon met at a second address"
        );
        assert_eq!(pins.for_url("https://10.0.0.1:7734"), Some(a));
        assert_eq!(pins.for_url("https://10.0.0.9:7734"), Some(a));
        pins.pin(b, Some("n1"), "https://10.0.0.1:7734").unwrap();
        assert_eq!(pins.daemons.len(), 1, "re-paired: the old pin is gone");
        assert_eq!(pins.for_node("n1"), Some(b));
        let back = Pins::load_from(file.clone()).unwrap();
        assert_eq!(back.for_node("n1"), Some(b));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn two_devices_pinning_at_once_keep_both_pins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fvfs/pinned.json");
        // Both loaded before either saved, as two fvfsc processes would.
        let mut first = Pins::load_from(file.clone()).unwrap();
        let mut second = Pins::load_from(file.clone()).unwrap();
        let (a, b) = (Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        first.pin(a, None, "https://10.0.0.1:7734").unwrap();
        second.pin(b, None, "https://10.0.0.2:7734").unwrap();
        let back = Pins::load_from(file).unwrap();
        assert_eq!(back.for_url("https://10.0.0.1:7734"), Some(a));
        assert_eq!(back.for_url("https://10.0.0.2:7734"), Some(b));
    }
}
