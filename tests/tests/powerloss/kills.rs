//! Maintenance killed at every step (compaction, rebuild, gc, recompression) loses nothing.

use super::*;

/// A config in `work` with segments of 1 MiB, so that a small tree fills several.
fn small_segments(work: &Path) -> std::path::PathBuf {
    let config = work.join("fvfsd.toml");
    std::fs::write(&config, "[tiers.local]\nsegment_mb = 1\n").unwrap();
    config
}

/// Runs `cmd` with failpoint `point` armed, and checks that it died there.
fn killed_at(cmd: &mut std::process::Command, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = cmd.env("FVFS_FAILPOINT", point).output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the process should have died at failpoint {point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compaction killed after each of its steps (`FVFS_FAILPOINT=compact-N` aborts the
/// process there): the next process finds every kept file whole and fsck clean.
#[test]
fn a_compaction_killed_at_every_step_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    // Small segments, so the deleted tree fills segments of its own that retire.
    let config = small_segments(work.path());
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let kept = work.path().join("kept");
    tree::generate(&kept, 200, 2 << 20);
    // fvfsd with the NAS config, expecting success.
    let run = |args: &[&str]| store.run(global.iter().chain(args));
    let migrate = |src: &Path, dest: &str| {
        run(&[
            "migrate",
            "--local-src",
            src.to_str().unwrap(),
            "--dest",
            dest,
        ]);
    };
    migrate(&kept, "/kept");
    for step in 1..=4 {
        // Content of its own (tree::generate would repeat the kept tree's).
        let doomed = work.path().join(format!("doomed{step}"));
        small_tree(&doomed, 60, &mut Rng(step * 7919 + 1));
        migrate(&doomed, "/doomed");
        {
            let d = Daemon::start_with(&store, &global, "127.0.0.1:0", &[]);
            let (status, body) = d.raw(&request(
                "DELETE",
                "/v1/files/doomed?recursive=true",
                &[],
                b"",
            ));
            assert_eq!(status, 200, "{body}");
        }
        killed_at(
            store
                .cmd(global)
                .args(["gc", "--keep-last", "1", "--grace-secs", "0"]),
            &format!("compact-{step}"),
        );
        run(&["fsck", "--read-data", "--all"]);
        let back = work.path().join(format!("back{step}"));
        run(&["export", "/kept", back.to_str().unwrap()]);
        tree::assert_same(&kept, &back);
    }
    // And a gc that runs to its end gives the space back.
    run(&["gc", "--keep-last", "1", "--grace-secs", "0"]);
    run(&["fsck", "--read-data", "--all"]);
}

/// A rebuild of a lost index killed after its first segment (`FVFS_FAILPOINT=
/// rebuild-segment`): the partial index must not pass for a whole one, whose unknown
/// segments the next open would delete as strays. The next process rebuilds again and
/// everything reads back whole.
#[test]
fn a_rebuild_killed_midway_loses_no_segment() {
    let work = tempfile::tempdir().unwrap();
    let config = small_segments(work.path());
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let kept = work.path().join("kept");
    tree::generate(&kept, 200, 4 << 20);
    store.run(global.iter().chain(&[
        "migrate",
        "--local-src",
        kept.to_str().unwrap(),
        "--dest",
        "/kept",
    ]));
    let chunks = store.home.path().join("chunks");
    let segments = || std::fs::read_dir(chunks.join("segments")).unwrap().count();
    let before = segments();
    assert!(
        before >= 3,
        "{before} segments: the rebuild must have several to do"
    );
    std::fs::remove_dir_all(chunks.join("index")).unwrap();
    killed_at(store.cmd(global).args(["fsck", "--all"]), "rebuild-segment");
    store.run(global.iter().chain(&["fsck", "--read-data", "--all"]));
    assert_eq!(segments(), before, "no segment deleted");
    let back = work.path().join("back");
    store.run(
        global
            .iter()
            .chain(&["export", "/kept", back.to_str().unwrap()]),
    );
    tree::assert_same(&kept, &back);
}

/// A collection killed after the index dropped its chunks and before their bytes were
/// freed (`FVFS_FAILPOINT=pack-punch`): the next process to open the store frees them,
/// and everything kept reads back whole.
#[test]
fn space_freed_by_a_killed_gc_is_given_back_at_the_next_open() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let kept = work.path().join("kept");
    tree::generate(&kept, 100, 1 << 20);
    let doomed = work.path().join("doomed");
    std::fs::create_dir_all(&doomed).unwrap();
    for i in 0..8u64 {
        std::fs::write(
            doomed.join(format!("d{i}")),
            tree::bytes(9000 + i, 1 << 20, false),
        )
        .unwrap();
    }
    store.run([
        "migrate",
        "--local-src",
        kept.to_str().unwrap(),
        "--dest",
        "/kept",
    ]);
    store.run([
        "migrate",
        "--local-src",
        doomed.to_str().unwrap(),
        "--dest",
        "/doomed",
    ]);
    store.run(["rollback", "1"]);
    let segments = store.home.path().join("chunks/segments");
    let blocks = || -> u64 {
        std::fs::read_dir(&segments)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
            .sum()
    };
    let before = blocks();
    killed_at(
        &mut store.cmd(["gc", "--keep-last", "1", "--grace-secs", "0"]),
        "pack-punch",
    );
    assert!(
        blocks() + (4 << 20) > before,
        "nothing was freed before the kill"
    );
    // The next process opens the store, and frees what the killed one could not.
    run_fsck_clean(&store);
    assert!(
        blocks() + (6 << 20) < before,
        "8 MiB of dropped content freed: {before} -> {} bytes",
        blocks()
    );
    let back = work.path().join("back");
    store.run(["export", "/kept", back.to_str().unwrap()]);
    tree::assert_same(&kept, &back);
}

fn run_fsck_clean(store: &Fvfsd) {
    let out = store.run(["fsck", "--read-data", "--all"]);
    assert!(out.contains(" 0 problems"), "{out}");
}

/// Recompression killed after each of its steps (`FVFS_FAILPOINT=recompress-N` aborts
/// the process there): the next process finds every file whole and fsck clean, and a
/// collection that runs to its end rewrites what was left.
#[test]
fn a_recompression_killed_at_every_step_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let config = small_segments(work.path());
    let global = ["--config", config.to_str().unwrap()];
    let store = Fvfsd::new();
    let run = |args: &[&str]| store.run(global.iter().chain(args));
    let mut trees = Vec::new();
    for step in 1..=3u64 {
        // Source-like text, new in each step, filling segments that retire.
        let src = work.path().join(format!("src{step}"));
        for i in 0..60 {
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(
                src.join(format!("f{i}.rs")),
                tree::code(step * 1000 + i, 200_000),
            )
            .unwrap();
        }
        let dest = format!("/t{step}");
        run(&[
            "migrate",
            "--local-src",
            src.to_str().unwrap(),
            "--dest",
            &dest,
        ]);
        trees.push((src, dest));
        killed_at(
            store.cmd(global).args(["gc", "--recompress"]),
            &format!("recompress-{step}"),
        );
        run(&["fsck", "--read-data", "--all"]);
        for (i, (src, dest)) in trees.iter().enumerate() {
            let back = work.path().join(format!("back{step}-{i}"));
            run(&["export", dest, back.to_str().unwrap()]);
            tree::assert_same(src, &back);
        }
    }
    let report = run(&["gc", "--recompress"]);
    let rewritten: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("local segments recompressed: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no recompression reported: {report}"));
    assert!(rewritten > 0, "{report}");
    // The rewrite packed the text into blocks, and every file still reads whole.
    let records = fvfs_tests::packs::records(&store.home.path().join("chunks"));
    assert!(records.iter().any(|r| r.members.len() > 1), "no block made");
    run(&["fsck", "--read-data", "--all"]);
    for (i, (src, dest)) in trees.iter().enumerate() {
        let back = work.path().join(format!("last-{i}"));
        run(&["export", dest, back.to_str().unwrap()]);
        tree::assert_same(src, &back);
    }
}
