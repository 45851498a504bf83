//! Helpers for the end-to-end tests: finding the real binaries, running them on a
//! private data directory, generating source trees with the edge cases users have,
//! and comparing trees byte for byte.

pub mod daemon;
pub mod garage;
pub mod mount;
pub mod mounts;
pub mod packs;
pub mod tree;
pub mod webdriver;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small deterministic generator (xorshift), so a seed replays the same workload.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The directory holding the workspace's binaries: tests run from `target/<profile>/deps`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The resident memory of process `pid`, in bytes (0 once it is gone).
pub fn rss(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// The most resident memory process `pid` had so far, in bytes (0 once it is gone).
pub fn peak_rss(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// A size in kB of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

/// Polls `cond` until it holds (a daemon's metrics are the usual signal); fails after
/// a minute.
pub fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{what} did not happen within a minute");
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Path of a workspace binary, which must have been built (`cargo build --bins`).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A private fvfs data directory and the `fvfsd` binary to run on it.
/// The passphrase of the S3 tiers tests set up.
pub const PASSPHRASE: &str = "correct horse battery staple";

pub struct Fvfsd {
    pub home: tempfile::TempDir,
}

impl Default for Fvfsd {
    fn default() -> Self {
        Self::new()
    }
}

impl Fvfsd {
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A command for `fvfsd ARGS` on this data directory (an encrypted S3 tier is set up
    /// with [`PASSPHRASE`]).
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(bin("fvfsd"));
        c.env("FVFS_HOME", self.home.path())
            // Notices for local clients stay with the test's store, not in /run.
            .env("FVFS_RUNTIME_DIR", self.home.path().join("run"))
            .env("FVFS_PASSPHRASE", PASSPHRASE)
            .env_remove("FVFS_NEW_PASSPHRASE")
            .env_remove("RUST_LOG")
            .args(args);
        c
    }

    /// Runs `fvfsd ARGS`, expecting exit code `code`; returns stdout.
    pub fn run_code<I, S>(&self, code: i32, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.cmd(args).output().expect("run fvfsd");
        check(&out, code);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `fvfsd ARGS`, expecting success; returns stdout.
    pub fn run<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_code(0, args)
    }
}

/// Asserts the exit code of a finished command, showing its output if it differs.
pub fn check(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A NAS directory in `work` (empty, as a freshly mounted share) and a config file
/// naming it as the NAS tier; returns both paths.
pub fn nas_config(work: &Path) -> (PathBuf, PathBuf) {
    let nas = work.join("nas");
    std::fs::create_dir(&nas).expect("create the NAS dir");
    let config = work.join("fvfsd.toml");
    std::fs::write(
        &config,
        format!("[tiers.nas]\npath = {:?}\n", nas.to_str().expect("utf-8")),
    )
    .expect("write config");
    (nas, config)
}

/// Runs `cmd` to its end under a wrapper that asks the kernel for the peak resident
/// memory of the process (`getrusage` of its waited child, python3's `resource`):
/// its output, and that peak in MiB.
pub fn with_peak_rss(cmd: &Command) -> (Output, u64) {
    const WRAPPER: &str = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[1:])\n\
        sys.stderr.write('\\npeak_kib=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
        sys.exit(r.returncode)\n";
    let mut wrapped = Command::new("python3");
    wrapped.arg("-c").arg(WRAPPER).arg(cmd.get_program());
    wrapped.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let out = wrapped.output().expect("run python3");
    let err = String::from_utf8_lossy(&out.stderr);
    let kib: u64 = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak_kib="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak from the wrapper: {err}"));
    (out, kib / 1024)
}
