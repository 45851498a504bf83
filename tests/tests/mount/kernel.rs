//! What the kernel holds: a listed folder's files pushed before a walk reads them, warm large files read by the kernel itself, and nothing of it for another local user.

use super::*;

/// The files of a folder a walk lists are in the kernel's cache before the walk opens
/// them: fvfsc pushes them when the listing is read to its end (tar, cp and rsync
/// list a folder whole first), so reading them passes no data through fvfsc: each
/// costs an open, not an open, a read and the stat a read's atime change brings. Also
/// for a second folder identical to the first (the same node), walked after it. (A
/// walk that has read no file lately only lists: it gets no content.)
#[test]
fn a_listed_folders_files_are_in_the_kernel_before_a_walk_reads_them() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = small_files(&src, 60);
    fs::write(src.join("first.txt"), "read first").unwrap();
    let total: usize = files.iter().map(Vec::len).sum();
    let copy = Command::new("cp")
        .arg("-a")
        .arg(src.join("docs"))
        .arg(src.join("docs2"))
        .status()
        .unwrap();
    assert!(copy.success());
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    // A first mount fills the chunk cache; the second starts with a kernel that knows
    // nothing, over that cache.
    let mut m = mount_in(&d, work.path());
    for (i, c) in files.iter().enumerate() {
        assert!(&fs::read(m.path(&format!("docs/f{i:03}.html"))).unwrap() == c);
    }
    assert_eq!(m.unmount(), Some(0));
    let mut m = mount_in(&d, work.path());
    let pid = m.pid().unwrap();
    assert_eq!(fs::read(m.path("first.txt")).unwrap(), b"read first");
    for folder in ["docs", "docs2"] {
        assert_eq!(fs::read_dir(m.path(folder)).unwrap().count(), files.len());
        let before = wchar(pid);
        for (i, c) in files.iter().enumerate() {
            assert!(&fs::read(m.path(&format!("{folder}/f{i:03}.html"))).unwrap() == c);
        }
        let through = wchar(pid) - before;
        assert!(
            through < total as u64 / 20,
            "{folder}: {total} bytes read, {through} bytes of answers from fvfsc"
        );
    }
    assert_eq!(m.unmount(), Some(0));
}

/// Files pushed into the kernel's cache as they arrive never overwrite what is
/// written through the mount: on a cold mount, the files of a listed folder are
/// rewritten (shorter, longer, emptied), the last first (the last to be pushed),
/// while their content is being fetched and pushed, and read back as written, with
/// their new size, then and after a fresh mount.
#[test]
fn files_rewritten_while_their_folder_is_pushed_read_as_written() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = small_files(&src, 250);
    fs::write(src.join("first.txt"), "read first").unwrap();
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.to_str().unwrap()]);
    let d = serve(&store);
    let mut m = mount_in(&d, work.path());
    // A file read first: the listing after it is a reading walk's, whose files are
    // fetched and pushed.
    assert_eq!(fs::read(m.path("first.txt")).unwrap(), b"read first");
    assert_eq!(fs::read_dir(m.path("docs")).unwrap().count(), files.len());
    let mut written: Vec<(usize, Vec<u8>)> = files
        .iter()
        .enumerate()
        .rev()
        .map(|(i, c)| {
            let new = match i % 3 {
                0 => c[..c.len() / 2].to_vec(),
                1 => tree::bytes(1000 + i as u64, c.len() + 5000, true),
                _ => Vec::new(),
            };
            fs::write(m.path(&format!("docs/f{i:03}.html")), &new).unwrap();
            (i, new)
        })
        .collect();
    written.sort();
    let check = |m: &Mount, when: &str| {
        for (i, w) in &written {
            let path = m.path(&format!("docs/f{i:03}.html"));
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                w.len() as u64,
                "{when}: size of f{i:03}"
            );
            assert!(&fs::read(&path).unwrap() == w, "{when}: content of f{i:03}");
        }
    };
    check(&m, "as written");
    assert_eq!(m.unmount(), Some(0));
    let mut m = mount_in(&d, work.path());
    check(&m, "after a fresh mount");
    assert_eq!(m.unmount(), Some(0));
}

/// A large file whose chunks are all cached is read by the kernel from a backing file
/// (FUSE passthrough): its reads no longer pass through fvfsc, and what is read is
/// the file's current content.
#[test]
fn warm_large_files_are_read_by_the_kernel_itself() {
    let work = tempfile::tempdir().unwrap();
    let store = Fvfsd::new();
    let d = serve(&store);
    let big = work.path().join("big.bin");
    tree::write_big(&big, 11, 24 << 20);
    let want = fs::read(&big).unwrap();
    // Put before mounting: a mount sees another client's change only once it follows
    // HEAD (a poll a second), and this test is about reads, not following.
    run(&mut d.fvfsc(["put", "/big.bin", "--from", big.to_str().unwrap()]));
    let m = mount_in(&d, work.path());
    let pid = m.pid().unwrap();
    // Cold: through fvfsc, which fills the chunk cache; then the backing file is made.
    assert!(fs::read(m.path("big.bin")).unwrap() == want);
    assert!(fs::read(m.path("big.bin")).unwrap() == want);
    let before = wchar(pid);
    for _ in 0..3 {
        // From the disk each time, not from what the kernel cached of the last read.
        fs::write("/proc/sys/vm/drop_caches", "1").unwrap();
        assert!(fs::read(m.path("big.bin")).unwrap() == want);
    }
    let through = wchar(pid) - before;
    assert!(
        through < 4 << 20,
        "72 MiB read, {through} bytes of it through fvfsc"
    );
    // A new content is read as such (another backing file, or through FUSE).
    let mut changed = want.clone();
    changed[5 << 20] ^= 1;
    // Open and write apart: an open refused (the kernel's passthrough io mode) and a
    // write failed (the mount) are different bugs.
    let mut f = fs::File::create(m.path("big.bin")).expect("open for writing");
    f.write_all(&changed).expect("write through the mount");
    drop(f);
    assert!(fs::read(m.path("big.bin")).unwrap() == changed);
    assert!(fs::read(m.path("big.bin")).unwrap() == changed);
}

/// What a mount keeps on this machine (cached chunks, files being written, whole-file
/// copies, its state) is readable by its user only, whatever the umask and the
/// file's mode in fvfs; another local user reads none of it.
#[test]
fn another_local_user_reads_nothing_the_mount_keeps() {
    use std::os::unix::fs::PermissionsExt;
    let store = Fvfsd::new();
    let d = serve(&store);
    let work = tempfile::tempdir().unwrap();
    // A cache folder open to all, as a careless umask or a shared disk would leave it.
    let cache = work.path().join("cache");
    fs::create_dir_all(cache.join("chunks")).unwrap();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(cache.join("chunks"), fs::Permissions::from_mode(0o777)).unwrap();
    let m = mount_in(&d, work.path());
    let mut f = fs::File::create(m.path("secret.txt")).unwrap();
    f.write_all(b"for my eyes").unwrap();
    f.sync_all().unwrap();
    assert_eq!(
        fs::read_to_string(m.path("secret.txt")).unwrap(),
        "for my eyes"
    );
    for room in ["chunks", "staging", "files", "mounts"] {
        let dir = cache.join(room);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        let listed = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(!listed.status.success(), "nobody lists {}", dir.display());
    }
    drop(f);
}
