//! What of an entry's stored metadata an export recreates. Any device with a write
//! token wrote the tree, and an export often runs as root, so by default nothing that
//! bears privilege comes back: no device node, no setuid or setgid bit, no file
//! capability or other `security.*` or `trusted.*` attribute, no owner other than the
//! exporter. `--keep-privileged` brings them all back (a restore of one's own backup).
//! Each thing left out is counted for the summary and, with `-v`, named.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use fvfs_manifest::node::{Meta, Xattr};

/// Kinds of privilege-bearing metadata left out, in the summary's order.
#[derive(Clone, Copy)]
enum Left {
    Device,
    SetId,
    Capability,
    Attribute,
    Owner,
}

const KINDS: [(Left, &str); 5] = [
    (Left::Device, "device nodes"),
    (Left::SetId, "setuid/setgid bits"),
    (Left::Capability, "file capabilities"),
    (Left::Attribute, "security/trusted attributes"),
    (Left::Owner, "owners"),
];

/// The policy of one export, shared by its writer tasks.
pub struct Keep {
    privileged: bool,
    /// The exporter's ids when it runs as root (only root can give files away).
    root: Option<(u32, u32)>,
    verbose: bool,
    left: [AtomicU64; 5],
    named: Mutex<Vec<String>>,
}

impl Keep {
    pub fn new(privileged: bool, verbose: bool) -> Self {
        let root = rustix::process::geteuid().is_root().then(|| {
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            )
        });
        Self {
            privileged,
            root,
            verbose,
            left: Default::default(),
            named: Mutex::new(Vec::new()),
        }
    }

    fn leave(&self, what: Left, shown: &Path, detail: &str) {
        self.left[what as usize].fetch_add(1, Ordering::Relaxed);
        if self.verbose {
            let kind = KINDS[what as usize].1;
            self.named
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("{}: {kind} not kept{detail}", shown.display()));
        }
    }

    /// The mode `shown` is written with: setuid and setgid dropped unless kept.
    pub fn mode(&self, shown: &Path, mode: u32) -> u32 {
        if self.privileged || mode & 0o6000 == 0 {
            return mode;
        }
        self.leave(Left::SetId, shown, &format!(" (mode {:o})", mode & 0o7777));
        mode & !0o6000
    }

    /// Whether device node `shown` is made.
    pub fn device(&self, shown: &Path) -> bool {
        if !self.privileged {
            self.leave(Left::Device, shown, "");
        }
        self.privileged
    }

    /// The owner to give `shown`, if any: the stored one when run as root and asked to
    /// keep it (a file of the exporter's own ids needs nothing).
    pub fn owner(&self, shown: &Path, meta: &Meta) -> Option<(u32, u32)> {
        let exporter = self.root?;
        let stored = (meta.uid, meta.gid);
        if stored == exporter {
            return None;
        }
        if !self.privileged {
            self.leave(Left::Owner, shown, &format!(" ({}:{})", stored.0, stored.1));
            return None;
        }
        Some(stored)
    }

    /// The attributes to write on `shown`.
    pub fn xattrs<'m>(&self, shown: &Path, meta: &'m Meta) -> Vec<&'m Xattr> {
        let mut out = Vec::with_capacity(meta.xattrs.len());
        for x in &meta.xattrs {
            let privileged = x.name.starts_with(b"security.") || x.name.starts_with(b"trusted.");
            if privileged && !self.privileged {
                let what = if x.name == b"security.capability" {
                    Left::Capability
                } else {
                    Left::Attribute
                };
                let name = String::from_utf8_lossy(&x.name);
                self.leave(what, shown, &format!(" ({name})"));
            } else {
                out.push(x);
            }
        }
        out
    }

    /// `; left out as privileged: 2 device nodes, 1 owners (--keep-privileged ...)`,
    /// or nothing.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = KINDS
            .iter()
            .filter_map(|(what, kind)| {
                let n = self.left[*what as usize].load(Ordering::Relaxed);
                (n > 0).then(|| format!("{n} {kind}"))
            })
            .collect();
        if parts.is_empty() {
            return String::new();
        }
        format!(
            "; left out as privileged: {} (--keep-privileged keeps them{})",
            parts.join(", "),
            if self.verbose { "" } else { ", -v names them" }
        )
    }

    /// What was left out, by name (with `-v`).
    pub fn named(&self) -> Vec<String> {
        std::mem::take(&mut *self.named.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(xattrs: &[&str]) -> Meta {
        Meta {
            uid: 1234,
            gid: 5678,
            xattrs: xattrs
                .iter()
                .map(|n| Xattr {
                    name: n.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                })
                .collect(),
            ..Meta::default()
        }
    }

    #[test]
    fn privileged_metadata_is_left_out_counted_and_named() {
        let keep = Keep::new(false, true);
        let p = Path::new("x");
        assert_eq!(keep.mode(p, 0o6755), 0o755);
        assert_eq!(keep.mode(p, 0o1644), 0o1644);
        assert!(!keep.device(p));
        let m = meta(&[
            "security.capability",
            "trusted.x",
            "user.colour",
            "security.selinux",
        ]);
        let kept: Vec<_> = keep.xattrs(p, &m).iter().map(|x| x.name.clone()).collect();
        assert_eq!(kept, vec![b"user.colour".to_vec()]);
        let summary = keep.summary();
        for part in [
            "1 device nodes",
            "1 setuid/setgid bits",
            "1 file capabilities",
            "2 security/trusted attributes",
        ] {
            assert!(summary.contains(part), "{part}: {summary}");
        }
        assert_eq!(keep.named().len(), 5);
    }

    #[test]
    fn kept_when_asked() {
        let keep = Keep::new(true, true);
        let p = Path::new("x");
        assert_eq!(keep.mode(p, 0o6755), 0o6755);
        assert!(keep.device(p));
        assert_eq!(keep.xattrs(p, &meta(&["security.capability"])).len(), 1);
        if keep.root.is_some() {
            assert_eq!(keep.owner(p, &meta(&[])), Some((1234, 5678)));
        }
        assert_eq!(keep.summary(), "");
        assert!(keep.named().is_empty());
    }
}
