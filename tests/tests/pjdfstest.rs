//! pjdfstest, the POSIX file-system suite (its Rust rewrite, 0.2.2, installed by
//! `scripts/test.sh`), run on a real `fvfsc mount`: every case passes but those known
//! to fail, named below with why. A case that starts failing fails this test, and so
//! does a known one that starts passing (take it off the list).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use fvfs_tests::daemon::Daemon;
use fvfs_tests::mount::Mount;
use fvfs_tests::Fvfsd;

/// The cases that fail on the mount, and why.
const KNOWN: &[(&str, &str)] = &[(
    "rename::updates_link_parent",
    "every folder shows two links, not two plus its subfolders: counting them would read \
     the node of every folder listed",
)];

/// The pjdfstest binary: `$PJDFSTEST`, else where `scripts/test.sh` installs it.
fn pjdfstest() -> PathBuf {
    let path = std::env::var_os("PJDFSTEST").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME");
            PathBuf::from(home).join(".cache/fvfs/tools/bin/pjdfstest")
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh installs it (cargo install pjdfstest --version 0.2.2)",
        path.display()
    );
    path
}

#[test]
fn pjdfstest_passes_on_the_mount_but_for_the_known_cases() {
    let work = tempfile::tempdir().unwrap();
    // Its cases switch to other users, who must reach the mount.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let m = Mount::start(
        &d,
        &work.path().join("mnt"),
        &work.path().join("cache"),
        &["--allow-other"],
    );
    let config = work.path().join("pjdfstest.toml");
    fs::write(
        &config,
        "[features]\nposix_fallocate = {}\n\n[settings]\nnaptime = 0.001\nallow_remount = false\n\n\
         [dummy_auth]\nentries = [[\"nobody\", \"nogroup\"], [\"daemon\", \"daemon\"]]\n",
    )
    .unwrap();
    let dir = m.path("pjd");
    fs::create_dir(&dir).unwrap();
    let out = Command::new(pjdfstest())
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&dir)
        .current_dir(&dir)
        .output()
        .expect("run pjdfstest");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let failed: BTreeSet<&str> = (report.lines())
        .filter(|l| l.trim_end().ends_with("FAILED"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let summary = report.lines().find(|l| l.starts_with("Summary:"));
    assert!(
        summary.is_some(),
        "pjdfstest did not finish:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let known: BTreeSet<&str> = KNOWN.iter().map(|(case, _)| *case).collect();
    let new: Vec<_> = failed.difference(&known).collect();
    let fixed: Vec<_> = known.difference(&failed).collect();
    assert!(
        new.is_empty(),
        "pjdfstest cases fail on the mount: {new:?}\n{report}"
    );
    assert!(
        fixed.is_empty(),
        "known failures pass now, take them off KNOWN: {fixed:?}"
    );
    eprintln!("pjdfstest: {}", summary.unwrap_or_default());
}
