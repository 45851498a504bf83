//! fsck on deliberately damaged stores: a flipped byte in a chunk file and a deleted
//! chunk are found, named by the paths that use them, with exit code 1.

use std::fs;
use std::path::PathBuf;

use fvfs_tests::{check, tree, Fvfsd};

/// Chunk files of the local store, largest first.
fn chunk_files(d: &Fvfsd) -> Vec<PathBuf> {
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    for shard in fs::read_dir(d.home.path().join("chunks")).unwrap() {
        let shard = shard.unwrap().path();
        if shard.is_dir() {
            for f in fs::read_dir(&shard).unwrap() {
                let f = f.unwrap();
                files.push((f.metadata().unwrap().len(), f.path()));
            }
        }
    }
    files.sort();
    files.into_iter().rev().map(|(_, p)| p).collect()
}

#[test]
fn damage_is_found_and_named() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("only.bin"), tree::bytes(1, 200_000, false)).unwrap();
    let d = Fvfsd::new();
    d.run(["migrate", "--local-src", src.to_str().unwrap()]);
    assert!(d.run(["fsck", "--read-data"]).contains("0 problems"));

    // The largest chunk files are data chunks of only.bin (incompressible, ~64 KiB).
    let files = chunk_files(&d);
    let flipped = &files[0];
    let mut bytes = fs::read(flipped).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(flipped, bytes).unwrap();
    // Without --read-data the chunk is present; reading it finds the flip.
    assert!(d.run(["fsck"]).contains("0 problems"));
    let out = d.cmd(["fsck", "--read-data"]).output().unwrap();
    check(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("is corrupt") && text.contains("used by /only.bin"),
        "{text}"
    );
    assert!(text.contains("1 problems"), "{text}");

    fs::remove_file(&files[1]).unwrap();
    let out = d.cmd(["fsck"]).output().unwrap();
    check(&out, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not found") && text.contains("used by /only.bin"),
        "{text}"
    );
    // Reading the damaged file fails loudly instead of returning wrong bytes.
    let out = d
        .cmd(["export", "/", work.path().join("out").to_str().unwrap()])
        .output()
        .unwrap();
    check(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("only.bin"));
}
