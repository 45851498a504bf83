//! Mounts for tests, unmounted on drop: a small tmpfs to fill a disk, and a bind mount
//! that stands for a NAS share which can go away and come back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) at `dir`; `None` where
    /// mounting is refused (not root).
    pub fn mount(dir: &Path, size: &str) -> Option<Self> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Self(dir.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `src` bind-mounted at `dir`, as a network share is mounted at its mountpoint.
pub struct Bind {
    src: PathBuf,
    dir: PathBuf,
}

impl Bind {
    /// Mounts `src` at `dir` (both existing directories); `None` where mounting is
    /// refused (not root).
    pub fn mount(src: &Path, dir: &Path) -> Option<Self> {
        let bind = Self {
            src: src.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        bind.attach().then_some(bind)
    }

    fn attach(&self) -> bool {
        Command::new("mount")
            .arg("--bind")
            .arg(&self.src)
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The share goes away the way a dropped network mount does: the mountpoint is an
    /// empty directory again at once, while files held open stay usable
    /// (`umount --lazy`).
    pub fn detach(&self) {
        let ok = Command::new("umount")
            .arg("--lazy")
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// The share comes back.
    pub fn reattach(&self) {
        assert!(self.attach(), "mount --bind {}", self.src.display());
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.dir).status();
    }
}
