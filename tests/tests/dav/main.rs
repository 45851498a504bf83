//! WebDAV under `/dav/` against a real daemon: the litmus suite (Debian's `litmus`,
//! written by the authors of neon, which nobody here wrote) runs its basic, copymove,
//! props, locks and http suites. Changes made over WebDAV are versions the API reads;
//! snapshots are read-only under `/dav/.snapshots/`, and copying out of one restores;
//! beyond loopback the token goes as HTTP Basic's password.

use std::collections::BTreeMap;
use std::process::Command;

use fvfs_tests::daemon::{bare_request, raw, split_answer, whole_answer, Daemon};
use fvfs_tests::{check, run_ok, tree, Fvfsd};

mod changes;
mod clients;
mod listings;

/// How many versions the daemon at `addr` holds.
fn versions_now(addr: &str, token: &str) -> usize {
    let bearer = format!("Authorization: Bearer {token}");
    let (_, body) = dav(addr, "GET", "/v1/versions", &[&bearer], b"");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .map_or_else(|| v["versions"].as_array().unwrap().len(), Vec::len)
}

/// A WebDAV client's request (no content type, no fvfs header) with `auth`.
fn dav(addr: &str, method: &str, path: &str, extra: &[&str], body: &[u8]) -> (u16, String) {
    let mut headers = vec!["Host: localhost".to_owned()];
    headers.extend(extra.iter().map(|h| h.to_string()));
    raw(addr, &bare_request(method, path, &headers, body))
}

/// A davfs2 mount of a daemon's `/dav/`, unmounted (every upload finished) on drop.
struct Davfs {
    dir: std::path::PathBuf,
    mounted: bool,
}

impl Davfs {
    fn mount(url: &str, dir: &std::path::Path, work: &std::path::Path) -> Self {
        // davfs2 up to 1.7.1 lists nothing on kernels from 6.16 on unless its buffer is
        // at least 64 KiB; uploads at once, so a test need not wait for them.
        let conf = work.join("davfs2.conf");
        std::fs::write(&conf, "buf_size 64\ndelay_upload 0\nuse_locks 1\n").unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new("mount.davfs")
            .arg("-o")
            .arg(format!("conf={}", conf.display()))
            .arg(url)
            .arg(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("mount.davfs (apt install davfs2; scripts/install-deps.sh does)");
        // No user name, no password: the daemon listens on loopback.
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"\n\n").unwrap();
        assert!(child.wait().unwrap().success(), "mount.davfs failed");
        Self {
            dir: dir.to_owned(),
            mounted: true,
        }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.join(rel)
    }

    /// Unmounts, waiting for davfs2 to upload what it holds.
    fn unmount(&mut self) {
        if std::mem::take(&mut self.mounted) {
            run_ok(Command::new("umount").arg(&self.dir));
        }
    }
}

impl Drop for Davfs {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// The bytes of a file larger than 4 GiB, made on the fly: a random block of an odd
/// length repeated (so the store keeps one block's chunks, not 4 GiB).
struct Big {
    block: Vec<u8>,
    len: u64,
}

impl Big {
    fn new(len: u64) -> Self {
        let mut block = vec![0u8; (1 << 20) + 4093];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for b in &mut block {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        Self { block, len }
    }

    fn at(&self, offset: u64) -> u8 {
        self.block[(offset % self.block.len() as u64) as usize]
    }

    /// Writes all of it to `w`, returning its hash.
    fn write_to(&self, w: &mut impl std::io::Write) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new();
        let mut done = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        while done < self.len {
            let n = buf.len().min((self.len - done) as usize);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = self.at(done + i as u64);
            }
            hasher.update(&buf[..n]);
            w.write_all(&buf[..n]).unwrap();
            done += n as u64;
        }
        hasher.finalize()
    }
}
