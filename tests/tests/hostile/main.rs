//! Hostile trees: what a device with a write token stores cannot harm the server. The
//! trees are committed through the API as a LAN client would, then exported by root
//! (as the owner restoring a backup would) with the real `fvfsd export`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::{check, Fvfsd};
use serde_json::{json, Value};

mod export;
mod names;
mod requests;

/// The temporary name an export used to give `name`: predictable, so a tree could
/// hold a link there.
fn old_temp_name(name: &str) -> String {
    let tag = blake3::hash(name.as_bytes()).to_hex();
    format!(".fvfs-export-{}", &tag[..16])
}

fn put(d: &Daemon, path: &str, content: &[u8]) {
    let (status, body) = d.raw(&request("PUT", &format!("/v1/files{path}"), &[], content));
    assert_eq!(status, 201, "{path}: {body}");
}

fn symlink(path: &str, target: &Path) -> Value {
    let target = target.to_str().unwrap();
    json!({"op": "symlink", "path": path, "target": target, "mode": 0o777, "mtime_ns": 0})
}

fn mkdir(path: &str) -> Value {
    json!({"op": "mkdir", "path": path, "mode": 0o755, "mtime_ns": 0})
}

/// Runs `fvfsd export ARGS` (through the running daemon), expecting `code`; returns
/// stdout and stderr.
fn export(store: &Fvfsd, code: i32, args: &[&str]) -> (String, String) {
    let out = store.cmd(["export"]).args(args).output().unwrap();
    check(&out, code);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (text(&out.stdout), text(&out.stderr))
}

/// What must never change: a root-owned 0600 file outside the target, a folder
/// outside it, and a file of the daemon's data directory.
struct Victims {
    file: std::path::PathBuf,
    dir: std::path::PathBuf,
    data_file: std::path::PathBuf,
    data_before: Vec<u8>,
}

impl Victims {
    fn new(work: &Path, store: &Fvfsd) -> Self {
        let file = work.join("victim");
        fs::write(&file, b"secret").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let dir = work.join("outside");
        fs::create_dir(&dir).unwrap();
        let data_file = store.home.path().join("token");
        let data_before = fs::read(&data_file).unwrap();
        Self {
            file,
            dir,
            data_file,
            data_before,
        }
    }

    fn assert_untouched(&self) {
        assert_eq!(fs::read(&self.file).unwrap(), b"secret");
        let mode = fs::metadata(&self.file).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600, "the victim's mode changed");
        assert_eq!(
            fs::read_dir(&self.dir).unwrap().count(),
            0,
            "written outside"
        );
        assert_eq!(fs::read(&self.data_file).unwrap(), self.data_before);
    }
}
