//! Source trees for tests, and a byte-for-byte comparison of two trees.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Deterministic pseudo-random bytes (xorshift64*); `text` makes them compressible.
pub fn bytes(seed: u64, len: usize, text: bool) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
            if text {
                b"etaoin shrdlu\n"[(b % 14) as usize]
            } else {
                b
            }
        })
        .collect()
}

/// Deterministic text like source code (lines of fvfs's own sources, in an order
/// `seed` picks at random, so two seeds share no chunk): what a denser compression
/// level shrinks, unlike [`bytes`].
pub fn code(seed: u64, len: usize) -> Vec<u8> {
    const SOURCES: [&str; 3] = [
        include_str!("../../cas/src/pack/mod.rs"),
        include_str!("../../cas/src/store.rs"),
        include_str!("daemon.rs"),
    ];
    let lines: Vec<&str> = SOURCES.iter().flat_map(|s| s.lines()).collect();
    let mut out = format!("// {seed}\n").into_bytes();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let i = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % lines.len();
        out.extend_from_slice(lines[i].as_bytes());
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// Writes `len` pseudo-random bytes to `path` without holding them all in memory.
pub fn write_big(path: &Path, seed: u64, len: usize) {
    let mut f = fs::File::create(path).unwrap();
    let block = 8 << 20;
    let mut left = len;
    let mut i = 0;
    while left > 0 {
        let n = left.min(block);
        // Half text, half noise: realistic compression, and chunks differ everywhere.
        f.write_all(&bytes(seed + i, n, i % 2 == 0)).unwrap();
        left -= n;
        i += 1;
    }
}

fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// `dirs` folders `dNN` below `root` of `files` tiny files `fNN` each, every one with
/// content of its own ("NN/NN"): as many distinct small chunks as files.
pub fn tiny_files(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            fs::write(dir.join(format!("f{f:02}")), format!("{d}/{f}")).unwrap();
        }
    }
}

/// A tree of at least `files` regular files with the cases that break file tools:
/// empty files, a large file of `big` bytes, deep paths, 255-byte names, symlinks
/// (dangling ones too), names that are not UTF-8, hard links, odd modes and mtimes,
/// duplicate content across files.
pub fn generate(root: &Path, files: usize, big: usize) {
    fs::create_dir_all(root).unwrap();
    let per_dir = 200;
    for i in 0..files {
        let dir = root
            .join(format!("d{:03}", i / per_dir))
            .join(format!("s{}", i % 7));
        fs::create_dir_all(&dir).unwrap();
        let len = match i % 10 {
            0 => 0,
            1..=6 => 100 + (i * 37) % 4000,
            7 | 8 => 20_000 + (i * 101) % 90_000,
            _ => 1000,
        };
        // Every tenth-ish file repeats content seen elsewhere: dedup must not mix them up.
        let seed = if i % 9 == 0 { 9 } else { i as u64 };
        let path = dir.join(format!("f{i}.txt"));
        fs::write(&path, bytes(seed, len, i % 3 != 0)).unwrap();
        if i % 13 == 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        if i % 17 == 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        set_mtime(
            &path,
            1_600_000_000 + i as i64,
            (i as i64 * 7919) % 1_000_000_000,
        );
    }
    let odd = root.join("odd");
    fs::create_dir_all(&odd).unwrap();
    write_big(&odd.join("big.bin"), 77, big);
    fs::write(odd.join("empty"), b"").unwrap();
    fs::write(odd.join("n".repeat(255)), b"long name").unwrap();
    fs::write(
        odd.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")),
        b"not utf-8",
    )
    .unwrap();
    fs::write(odd.join("sp ace & $ymbols 'q' \"dq\" \\ \u{1f600}"), b"odd").unwrap();
    std::os::unix::fs::symlink("empty", odd.join("link-to-empty")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", odd.join("dangling")).unwrap();
    std::os::unix::fs::symlink(
        OsStr::from_bytes(b"latin1-\xe9t\xe9"),
        odd.join("link-non-utf8"),
    )
    .unwrap();
    fs::hard_link(odd.join("empty"), odd.join("hardlink-of-empty")).unwrap();
    fs::write(odd.join("hard-a"), b"hard linked content").unwrap();
    fs::hard_link(odd.join("hard-a"), odd.join("hard-b")).unwrap();
    let mut deep = odd.join("deep");
    for i in 0..60 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom.txt"), b"at the bottom").unwrap();
    fs::create_dir(odd.join("empty-dir")).unwrap();
    let ro = odd.join("read-only-dir");
    fs::create_dir(&ro).unwrap();
    fs::write(ro.join("inside"), b"inside a 0555 directory").unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    set_mtime(&odd.join("empty-dir"), 1_234_567_890, 5);
    set_mtime(&odd.join("dangling"), 1_111_111_111, 0);
}

/// What a tree holds, path by path: kind, mode, mtime, and content or target.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    File {
        mode: u32,
        mtime_ns: i64,
        content_hash: [u8; 32],
        len: u64,
    },
    Dir {
        mode: u32,
        mtime_ns: i64,
    },
    Symlink {
        target: Vec<u8>,
        mtime_ns: i64,
    },
}

/// Reads a whole tree (not following symlinks; special files are left out).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mtime_ns = m.mtime() * 1_000_000_000 + m.mtime_nsec();
            let mode = m.mode() & 0o7777;
            let node = if m.file_type().is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&path)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                    mtime_ns,
                }
            } else if m.is_dir() {
                stack.push(path.clone());
                Node::Dir { mode, mtime_ns }
            } else if m.is_file() {
                let content_hash = *blake3_file(&path).as_bytes();
                Node::File {
                    mode,
                    mtime_ns,
                    content_hash,
                    len: m.len(),
                }
            } else {
                continue;
            };
            out.insert(rel, node);
        }
    }
    out
}

fn blake3_file(path: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(path).unwrap()).unwrap();
    h.finalize()
}

/// Asserts that two trees are identical, naming the first paths that differ.
pub fn assert_same(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    let only_a: Vec<_> = sa.keys().filter(|k| !sb.contains_key(*k)).take(5).collect();
    let only_b: Vec<_> = sb.keys().filter(|k| !sa.contains_key(*k)).take(5).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only in {}: {only_a:?}; only in {}: {only_b:?}",
        a.display(),
        b.display()
    );
    let differ: Vec<_> = sa
        .iter()
        .filter(|(k, v)| sb[*k] != **v)
        .map(|(k, v)| (k, v, &sb[k]))
        .take(5)
        .collect();
    assert!(differ.is_empty(), "entries differ: {differ:#?}");
    assert!(!sa.is_empty(), "compared empty trees");
}
