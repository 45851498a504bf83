//! Restores from the S3 bucket alone, against a real Garage: `recover --from-s3` into an
//! empty data directory, then `export`. Reads go by pack (the number of GETs is bounded
//! by the packs, not the chunks); a pack lost in the middle of a restore fails only the
//! files using it, named with their version; an S3 server that stops mid-restore
//! stops it with one line, and a second run finishes it. Encrypted, neither the bucket
//! nor an encrypted NAS tier shows a name, a byte of content or a chunk id.

use std::fs;
use std::path::Path;
use std::process::Output;

use fvfs_tests::daemon::{request, Daemon};
use fvfs_tests::garage::{Garage, S3Env};
use fvfs_tests::{check, tree, Fvfsd};

mod from_s3;
mod sealed;

/// Small packs, so that even a test's data spans several.
const SMALL_PACKS: &str = "[upload]\nflush_size_mb = 1\nflush_interval_secs = 1\n";

fn prefix(work: &Path, what: &str) -> String {
    format!("{what}-{}", work.file_name().unwrap().to_string_lossy())
}

/// Migrates `src` through a daemon with `config`, and waits until S3 holds all of it.
fn store_in_s3(s3: &S3Env, config: &Path, src: &Path) {
    let store = Fvfsd::new();
    let d = s3.serve(&store, config);
    check(
        &s3.fvfsd(
            &store,
            config,
            ["migrate", "--local-src", src.to_str().unwrap()],
        )
        .output()
        .unwrap(),
        0,
    );
    flush(&d);
}

fn flush(d: &Daemon) {
    let (status, body) = d.raw(&request("POST", "/v1/admin/flush", &[], b""));
    assert_eq!(status, 200, "{body}");
}

/// `recover --from-s3` into a fresh store; returns it.
fn recover(s3: &S3Env, config: &Path, code: i32) -> Fvfsd {
    recover_saying(s3, config, code).0
}

/// [`recover`], and what it said on stdout.
fn recover_saying(s3: &S3Env, config: &Path, code: i32) -> (Fvfsd, String) {
    let fresh = Fvfsd::new();
    let out = s3
        .fvfsd(&fresh, config, ["recover", "--from-s3"])
        .output()
        .unwrap();
    check(&out, code);
    (fresh, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `fvfsd export --version VERSION PATH DIR` on `store`, reading through `config`'s S3.
fn export(
    s3: &S3Env,
    store: &Fvfsd,
    config: &Path,
    version: &str,
    path: &str,
    dir: &Path,
) -> Output {
    s3.fvfsd(
        store,
        config,
        ["export", "--version", version, path, dir.to_str().unwrap()],
    )
    .output()
    .unwrap()
}

/// The N in "S3: N GETs (X MiB)" of a summary.
fn gets(summary: &str) -> u64 {
    s3_figure(summary, "S3: ")
}

/// The X in "S3: N GETs (X MiB)" of a summary.
fn mib(summary: &str) -> f64 {
    s3_figure(summary, " GETs (")
}

/// The number right after `marker` in a summary's S3 figures.
fn s3_figure<T: std::str::FromStr>(summary: &str, marker: &str) -> T {
    let at = summary
        .find(marker)
        .unwrap_or_else(|| panic!("no S3 figures: {summary}"));
    summary[at + marker.len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {marker:?}: {summary}"))
}

/// Runs `fvfsd ARGS` on `store`; its exit code and everything it said.
fn said<const N: usize>(
    s3: &S3Env,
    store: &Fvfsd,
    config: &Path,
    args: [&str; N],
) -> (Option<i32>, String) {
    let out = s3.fvfsd(store, config, args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
