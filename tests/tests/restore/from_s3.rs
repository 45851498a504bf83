//! Restores from the bucket alone: by pack, a pack lost or S3 stopping midway, and recover bringing back versions and snapshots.

use super::*;

#[test]
fn a_tree_restores_from_the_bucket_alone_by_pack_not_by_chunk() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 10_000, 3 << 20);
    for (i, size) in [(1u64, 9 << 20), (2, 5 << 20)] {
        tree::write_big(&src.join(format!("large{i}.bin")), i, size);
    }
    let prefix = prefix(work.path(), "restore");
    let config = s3.config(work.path(), &prefix, SMALL_PACKS);
    store_in_s3(&s3, &config, &src);
    let packs = s3.packs(&prefix).len() as u64;
    // Recover sorts the chunks it finds beyond 128 KiB on disk (10,000 chunks are
    // 800 KB of records): the path a bucket of millions takes.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[gc]\nsort_memory_mb = 0.125\n");
    std::fs::write(&config, text).unwrap();

    let fresh = recover(&s3, &config, 0);
    let out_dir = work.path().join("out");
    let out = export(&s3, &fresh, &config, "HEAD", "/", &out_dir);
    check(&out, 0);
    tree::assert_same(&src, &out_dir);
    let summary = String::from_utf8_lossy(&out.stdout);
    let used = gets(&summary);
    // Each pack is read in at most a couple of ranges; one GET per chunk would be
    // more than ten thousand.
    assert!(
        used <= 2 * packs + 2,
        "{used} GETs for {packs} packs: {summary}"
    );
    // An export passes through: nothing was promoted, so a second one reads the
    // bucket again, as economically.
    let again = work.path().join("again");
    let out = export(&s3, &fresh, &config, "HEAD", "/", &again);
    check(&out, 0);
    let summary = String::from_utf8_lossy(&out.stdout);
    let again_used = gets(&summary);
    assert!(
        again_used > 0 && again_used <= 2 * packs + 2,
        "{again_used} GETs for {packs} packs: {summary}"
    );
    tree::assert_same(&src, &again);
}

#[test]
fn a_pack_lost_mid_restore_fails_only_its_files_and_names_them() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix(work.path(), "lost");
    let config = s3.config(work.path(), &prefix, SMALL_PACKS);
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    let put = |name: &str, content: &[u8]| {
        let (status, body) = d.raw(&request("PUT", &format!("/v1/files/{name}"), &[], content));
        assert_eq!(status, 201, "{body}");
    };
    // Two flushes: the first pack of file content holds kept/*, the second doomed/*
    // (each flush also stores a pack of the versions' nodes).
    let kept: Vec<Vec<u8>> = (0..20u64)
        .map(|i| tree::bytes(i, 3000 + i as usize, true))
        .collect();
    for (i, c) in kept.iter().enumerate() {
        put(&format!("kept/{i}.txt"), c);
    }
    flush(&d);
    let first = s3.packs(&prefix);
    for i in 0..5u64 {
        put(
            &format!("doomed/{i}.bin"),
            &tree::bytes(100 + i, 50_000, false),
        );
    }
    flush(&d);
    drop(d);
    let (doomed_pack, _) = s3
        .packs(&prefix)
        .into_iter()
        .filter(|p| !first.contains(p))
        .max_by_key(|(_, size)| *size)
        .expect("the second flush stored packs");

    let fresh = recover(&s3, &config, 0);
    s3.request("DELETE", &format!("/{doomed_pack}"));
    let out_dir = work.path().join("out");
    let out = export(&s3, &fresh, &config, "HEAD", "/", &out_dir);
    check(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    for i in 0..5 {
        assert!(
            err.contains(&format!(
                "not exported {}",
                out_dir.join(format!("doomed/{i}.bin")).display()
            )),
            "{err}"
        );
    }
    let pack_name = doomed_pack.rsplit('/').next().unwrap();
    assert!(
        err.contains(&format!("its pack {pack_name} is missing from S3")),
        "{err}"
    );
    assert!(err.contains("(version "), "{err}");
    for (i, c) in kept.iter().enumerate() {
        assert_eq!(&fs::read(out_dir.join(format!("kept/{i}.txt"))).unwrap(), c);
    }
    assert_eq!(
        fs::read_dir(out_dir.join("doomed")).unwrap().count(),
        0,
        "nothing half-written is left"
    );
}

#[test]
fn s3_stopping_mid_restore_stops_it_in_one_line_and_a_second_run_finishes() {
    let mut garage = Garage::start().expect("start Garage");
    let s3 = S3Env::from(garage.s3());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree::generate(&src, 600, 1 << 20);
    let config = s3.config(work.path(), "stop", SMALL_PACKS);
    store_in_s3(&s3, &config, &src);
    let fresh = recover(&s3, &config, 0);
    // One folder read through a daemon now: reads promote, so its chunks come back to
    // the local tier (an export passes through and would leave them in S3).
    {
        let d = s3.serve(&fresh, &config);
        for e in fs::read_dir(src.join("d000/s0")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            check(
                &d.fvfsc(["cat", &format!("/d000/s0/{name}")])
                    .output()
                    .unwrap(),
                0,
            );
        }
    }
    let export = |path: &str, dir: &Path| export(&s3, &fresh, &config, "HEAD", path, dir);

    garage.stop().expect("stop Garage");
    let out_dir = work.path().join("out");
    let out = export("/", &out_dir);
    check(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("export stopped") && err.contains("run the same export again"),
        "{err}"
    );
    let written = walk_files(&out_dir);
    assert!(written > 0, "what was local is exported before the stop");
    assert!(
        !walk_names(&out_dir)
            .iter()
            .any(|n| n.starts_with(".fvfs-export-")),
        "no temporary file is left"
    );

    garage.restart().expect("restart Garage");
    let out = export("/", &out_dir);
    check(&out, 0);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("({written} files already there kept)")),
        "{summary}"
    );
    tree::assert_same(&src, &out_dir);
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_names(&e.path()));
        }
    }
    out
}

fn walk_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            n += walk_files(&e.path());
        } else if t.is_file() {
            n += 1;
        }
    }
    n
}

#[test]
fn recover_brings_back_fifty_versions_and_five_snapshots() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix(work.path(), "fifty");
    let config = s3.config(work.path(), &prefix, SMALL_PACKS);
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    for i in 0..50u64 {
        let (status, body) = d.raw(&request(
            "PUT",
            &format!("/v1/files/dir{}/f{i}", i % 4),
            &[],
            &tree::bytes(i, 1000 + i as usize * 37, true),
        ));
        assert_eq!(status, 201, "{body}");
        if i % 10 == 9 {
            check(
                &d.fvfsc(["snapshot", "create", &format!("s{i}")])
                    .output()
                    .unwrap(),
                0,
            );
        }
    }
    flush(&d);
    drop(d);

    let fresh = recover(&s3, &config, 0);
    let log = fresh.run(["log", "--json"]);
    let versions: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert!(versions.as_array().unwrap().len() >= 50, "{log}");
    let snaps = fresh.run(["snapshot", "list"]);
    for i in [9, 19, 29, 39, 49] {
        assert!(snaps.contains(&format!("s{i}")), "{snaps}");
        // Each snapshot holds exactly the files written before it.
        let dir = work.path().join(format!("s{i}"));
        let out = export(&s3, &fresh, &config, &format!("s{i}"), "/", &dir);
        check(&out, 0);
        for j in 0..50u64 {
            let got = fs::read(dir.join(format!("dir{}/f{j}", j % 4))).ok();
            let want = (j <= i).then(|| tree::bytes(j, 1000 + j as usize * 37, true));
            assert_eq!(got, want, "s{i}: dir{}/f{j}", j % 4);
        }
    }
    check(
        &s3.fvfsd(&fresh, &config, ["fsck", "--all", "--read-data"])
            .output()
            .unwrap(),
        0,
    );
}

#[test]
fn recover_reads_the_trees_not_the_files_written_between_them() {
    let s3 = S3Env::shared();
    let work = tempfile::tempdir().unwrap();
    let prefix = prefix(work.path(), "trees");
    let config = s3.config(work.path(), &prefix, "");
    let store = Fvfsd::new();
    let d = s3.serve(&store, &config);
    // A version per file: each one's nodes are written right after its content, so
    // packs filled in the order written would hold nodes every 3 MiB.
    for i in 0..12u64 {
        let (status, body) = d.raw(&request(
            "PUT",
            &format!("/v1/files/dir{i}/f"),
            &[],
            &tree::bytes(i, 3 << 20, false),
        ));
        assert_eq!(status, 201, "{body}");
    }
    flush(&d);
    drop(d);
    let bucket: u64 = s3.packs(&prefix).iter().map(|(_, size)| size).sum();

    let (fresh, summary) = recover_saying(&s3, &config, 0);
    let read = mib(&summary);
    // The pack indexes and the packs of nodes, not the 36 MiB of content around them.
    assert!(
        read * 4.0 < bucket as f64 / f64::from(1 << 20),
        "recover read {read} MiB of a {bucket}-byte bucket: {summary}"
    );
    let out_dir = work.path().join("out");
    check(&export(&s3, &fresh, &config, "HEAD", "/", &out_dir), 0);
    for i in 0..12u64 {
        let got = fs::read(out_dir.join(format!("dir{i}/f"))).unwrap();
        assert!(got == tree::bytes(i, 3 << 20, false), "dir{i}/f");
    }
}
