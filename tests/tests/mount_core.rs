//! The mount's core driven directly, as the FUSE adapter drives it, against a real
//! `fvfsd`: no `/dev/fuse`, no root. What the kernel would ask (lookups, creates,
//! writes, closes, renames, fsyncs, listings) is asked of the core, and what the
//! daemon then holds is read back with `fvfsc`.

use std::path::Path;

use fvfs_api::client::Api;
use fvfs_client::mount::core::{Core, Errno, Opened, SetAttr};
use fvfs_client::mount::{open_core, IdMap, Options};
use fvfs_node::EntryKind;
use fvfs_tests::daemon::Daemon;
use fvfs_tests::{run_ok, tree, Fvfsd};

/// The root's inode.
const ROOT: u64 = 1;

fn serve(store: &Fvfsd) -> Daemon {
    Daemon::start(store, "127.0.0.1:0", &["--no-mdns"])
}

/// The core of a mount of `d`'s tree with its cache in `cache`.
fn core_on(d: &Daemon, rt: &tokio::runtime::Runtime, cache: &Path) -> Core {
    let api = Api::new(d.url.clone(), None, "fvfs-tests", None);
    let opts = Options {
        cache_dir: cache.to_owned(),
        cache_bytes: 256 << 20,
        read_only: false,
        allow_other: false,
        ids: IdMap::default(),
        max_inodes: 200_000,
    };
    open_core(rt.handle().clone(), api, &opts).expect("open the mount's core")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn me() -> (u32, u32) {
    (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    )
}

/// Creates `name` in `parent`, writes `content` in two pieces and closes it.
fn write_file(core: &Core, parent: u64, name: &str, content: &[u8]) -> u64 {
    let (attr, fh) = core.create(parent, name.as_bytes(), 0o644, me()).unwrap();
    let half = content.len() / 2;
    assert_eq!(core.write(fh, 0, &content[..half]).unwrap() as usize, half);
    let rest = core.write(fh, half as u64, &content[half..]).unwrap();
    assert_eq!(rest as usize, content.len() - half);
    core.flush(fh).unwrap();
    core.release(fh).unwrap();
    attr.ino
}

/// Opens `ino` for writing as the kernel does it.
fn open_write(core: &Core, ino: u64) -> u64 {
    match core.open(ino, true).unwrap() {
        Opened::Write(fh) => fh,
        Opened::Read(_) => panic!("opened for writing"),
    }
}

/// Opens `ino` with O_TRUNC (the kernel's open, then its resize to nothing), writes
/// `content` and closes it.
fn rewrite(core: &Core, ino: u64, content: &[u8]) {
    let fh = open_write(core, ino);
    let cut = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(core.setattr(ino, cut).unwrap().size, 0);
    core.write(fh, 0, content).unwrap();
    core.flush(fh).unwrap();
    core.release(fh).unwrap();
}

/// The whole content of inode `ino` as an open for reading gives it.
fn read_all(core: &Core, ino: u64) -> Vec<u8> {
    let fh = match core.open(ino, false).unwrap() {
        Opened::Write(fh) => fh,
        Opened::Read(file) => core.keep_open(file, false),
    };
    let mut out = Vec::new();
    loop {
        let piece = core.read(fh, out.len() as u64, 128 << 10).unwrap();
        if piece.is_empty() {
            break;
        }
        out.extend_from_slice(&piece);
    }
    core.release(fh).unwrap();
    out
}

/// The names open directory `ino` lists (without `.` and `..`).
fn names(core: &Core, ino: u64) -> Vec<String> {
    let fh = core.opendir();
    let window = core.listed(fh, ino, 0, false).unwrap();
    core.close_listing(fh);
    let mut names: Vec<String> = window
        .items
        .iter()
        .filter(|(item, _)| !item.is_dot())
        .map(|(item, _)| item.name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn files_closed_together_are_shown_at_once_and_committed_as_one_version() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    let before = d.head();
    let docs = core.mkdir(ROOT, b"docs", 0o750, me()).unwrap();
    assert_eq!(docs.kind, EntryKind::Dir);
    let contents: Vec<Vec<u8>> = (0..50)
        .map(|i| tree::bytes(i, 1000 + 97 * i as usize, i % 2 == 0))
        .collect();
    for (i, content) in contents.iter().enumerate() {
        write_file(&core, docs.ino, &format!("f{i}.txt"), content);
    }
    // Closed, not committed: the core shows them, the daemon has nothing yet.
    let (attr, _) = core.lookup(docs.ino, b"f7.txt").unwrap();
    assert_eq!(attr.size, contents[7].len() as u64);
    assert_eq!(read_all(&core, attr.ino), contents[7]);
    assert_eq!(names(&core, docs.ino).len(), 50);
    assert_eq!(d.has("/docs/f7.txt"), None);
    assert_eq!(d.head(), before);

    core.sync_all().unwrap();
    assert_eq!(
        d.head(),
        before + 1,
        "the folder and its 50 files in one version"
    );
    for (i, content) in contents.iter().enumerate() {
        let path = format!("/docs/f{i}.txt");
        assert_eq!(d.has(&path).as_ref(), Some(content), "{path}");
    }
    let ls = run_ok(&mut d.fvfsc(["ls", "-l", "/"]));
    assert!(ls.contains("rwxr-x---"), "the folder's mode: {ls}");
}

#[test]
fn fsync_commits_at_once_and_close_waits_for_the_batch() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    let (attr, fh) = core.create(ROOT, b"log.txt", 0o644, me()).unwrap();
    core.write(fh, 0, b"first line\n").unwrap();
    core.fsync(fh).unwrap();
    assert_eq!(d.has("/log.txt").unwrap(), b"first line\n");
    core.write(fh, 11, b"second line\n").unwrap();
    core.flush(fh).unwrap();
    core.release(fh).unwrap();
    assert_eq!(d.has("/log.txt").unwrap(), b"first line\n");
    assert_eq!(core.getattr(attr.ino, None).unwrap().0.size, 23);
    core.sync_all().unwrap();
    assert_eq!(d.has("/log.txt").unwrap(), b"first line\nsecond line\n");
}

#[test]
fn renames_and_removals_follow_what_was_closed_before_them() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    let dir = core.mkdir(ROOT, b"d", 0o755, me()).unwrap();
    write_file(&core, dir.ino, "a", b"content of a");
    write_file(&core, dir.ino, "keep", b"kept");
    core.rename(dir.ino, b"a", ROOT, b"b", false).unwrap();
    core.sync_all().unwrap();
    assert_eq!(d.has("/b").unwrap(), b"content of a");
    assert_eq!(d.has("/d/a"), None);
    assert_eq!(d.has("/d/keep").unwrap(), b"kept");

    assert_eq!(core.remove(ROOT, b"d", true), Err(Errno::NOTEMPTY));
    assert_eq!(
        core.rename(ROOT, b"b", dir.ino, b"keep", true),
        Err(Errno::EXIST),
        "RENAME_NOREPLACE onto a name"
    );
    core.remove(dir.ino, b"keep", false).unwrap();
    core.remove(ROOT, b"d", true).unwrap();
    core.remove(ROOT, b"b", false).unwrap();
    core.sync_all().unwrap();
    assert_eq!(d.has("/b"), None);
    assert_eq!(names(&core, ROOT), [".snapshots"]);
    let ls = run_ok(&mut d.fvfsc(["ls", "/"]));
    assert!(ls.trim().is_empty(), "the daemon's root: {ls:?}");
}

#[test]
fn bad_names_and_read_only_views_are_refused_with_the_errno_a_disk_gives() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    core.mkdir(ROOT, b"x", 0o755, me()).unwrap();
    core.sync_all().unwrap();
    store.run(["snapshot", "create", "first"]);
    let long = vec![b'n'; 256];
    assert_eq!(
        core.mkdir(ROOT, &long, 0o755, me()).err(),
        Some(Errno::NAMETOOLONG)
    );
    assert_eq!(
        core.create(ROOT, b"a/b", 0o644, me()).err(),
        Some(Errno::INVAL)
    );
    assert_eq!(
        core.mkdir(ROOT, b"x", 0o755, me()).err(),
        Some(Errno::EXIST)
    );
    assert_eq!(core.lookup(ROOT, b"nothing").err(), Some(Errno::NOENT));
    assert_eq!(core.read(9999, 0, 10).err(), Some(Errno::BADF));
    let (snaps, _) = core.lookup(ROOT, b".snapshots").unwrap();
    let (first, _) = core.lookup(snaps.ino, b"first").unwrap();
    assert_eq!(names(&core, first.ino), ["x"]);
    let (x, _) = core.lookup(first.ino, b"x").unwrap();
    assert_eq!(x.perm & 0o222, 0, "a snapshot is shown read-only");
    assert_eq!(
        core.mkdir(x.ino, b"new", 0o755, me()).err(),
        Some(Errno::ROFS)
    );
    assert_eq!(
        core.create(first.ino, b"f", 0o644, me()).err(),
        Some(Errno::ROFS)
    );
}

#[test]
fn files_of_the_tree_read_whole_through_their_chunks() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.bin");
    tree::write_big(&big, 7, 5 << 20);
    run_ok(&mut d.fvfsc(["put", "/big.bin", "--from", big.to_str().unwrap()]));
    let core = core_on(&d, &rt, &work.path().join("cache"));
    let (attr, _) = core.lookup(ROOT, b"big.bin").unwrap();
    assert_eq!(attr.size, 5 << 20);
    assert_eq!(read_all(&core, attr.ino), std::fs::read(&big).unwrap());
    // A read far into the file, then at its end.
    let fh = match core.open(attr.ino, false).unwrap() {
        Opened::Read(file) => core.keep_open(file, false),
        Opened::Write(_) => panic!("not being written here"),
    };
    let at = 3 << 20;
    let piece = core.read(fh, at, 4096).unwrap();
    assert_eq!(piece, std::fs::read(&big).unwrap()[at as usize..][..4096]);
    assert!(core.read(fh, 5 << 20, 4096).unwrap().is_empty());
    core.release(fh).unwrap();
}

#[test]
fn a_truncating_rewrite_fetches_nothing_and_a_patch_keeps_the_rest() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.bin");
    tree::write_big(&big, 11, 4 << 20);
    run_ok(&mut d.fvfsc(["put", "/big.bin", "--from", big.to_str().unwrap()]));
    run_ok(&mut d.fvfsc(["put", "/patched.bin", "--from", big.to_str().unwrap()]));
    let core = core_on(&d, &rt, &work.path().join("cache"));

    // Opened for writing, then cut to nothing: the old content is never downloaded.
    let (attr, _) = core.lookup(ROOT, b"big.bin").unwrap();
    rewrite(&core, attr.ino, b"small now");
    assert!(
        core.cache().disk_bytes() < 1 << 20,
        "{} bytes fetched for a file replaced whole",
        core.cache().disk_bytes()
    );
    core.sync_all().unwrap();
    assert_eq!(d.has("/big.bin").unwrap(), b"small now");

    // Opened for writing and patched in the middle: the rest is fetched and kept.
    let (attr, _) = core.lookup(ROOT, b"patched.bin").unwrap();
    let fh = open_write(&core, attr.ino);
    assert_eq!(core.getattr(attr.ino, None).unwrap().0.size, 4 << 20);
    core.write(fh, 1 << 20, b"PATCH").unwrap();
    core.flush(fh).unwrap();
    core.release(fh).unwrap();
    core.sync_all().unwrap();
    let mut want = std::fs::read(&big).unwrap();
    want[1 << 20..][..5].copy_from_slice(b"PATCH");
    assert_eq!(d.has("/patched.bin").unwrap(), want);
}

#[test]
fn a_daemon_that_is_down_keeps_closed_files_waiting_until_it_is_back() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let mut d = serve(&store);
    let addr = d.addr.clone();
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    // The root is known before the daemon goes.
    assert_eq!(names(&core, ROOT), [".snapshots"]);
    d.stop();
    let ino = write_file(
        &core,
        ROOT,
        "offline.txt",
        b"written while the daemon was down",
    );
    assert_eq!(read_all(&core, ino), b"written while the daemon was down");
    assert_eq!(core.sync_all(), Err(Errno::IO));
    let d = Daemon::start(&store, &addr, &["--no-mdns"]);
    core.sync_all().unwrap();
    assert_eq!(
        d.has("/offline.txt").unwrap(),
        b"written while the daemon was down"
    );
}

#[test]
fn two_cores_writing_one_file_keep_both_versions() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let caches = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let cores: Vec<Core> = caches.iter().map(|c| core_on(&d, &rt, c.path())).collect();
    for (i, core) in cores.iter().enumerate() {
        write_file(core, ROOT, "same.txt", format!("from core {i}").as_bytes());
    }
    for core in &cores {
        core.sync_all().unwrap();
    }
    // The first to commit has the path; the other's copy is kept beside it.
    let ls = run_ok(&mut d.fvfsc(["ls", "--json", "/"]));
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "the file and a conflict copy: {names:?}");
    assert_eq!(d.has("/same.txt").unwrap(), b"from core 0");
    let copy = names.iter().find(|n| n.contains("conflict")).unwrap();
    assert!(copy.starts_with("same (conflict from ") && copy.ends_with(").txt"));
    assert_eq!(d.has(&format!("/{copy}")).unwrap(), b"from core 1");
}

#[test]
fn a_tree_removed_name_by_name_is_one_version_and_names_made_again_replace_nothing() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    let top = core.mkdir(ROOT, b"top", 0o755, me()).unwrap();
    let mut dirs = Vec::new();
    for i in 0..5 {
        let dir = core
            .mkdir(top.ino, format!("d{i}").as_bytes(), 0o755, me())
            .unwrap();
        for j in 0..40 {
            write_file(
                &core,
                dir.ino,
                &format!("f{j}"),
                format!("{i}/{j}").as_bytes(),
            );
        }
        dirs.push(dir);
    }
    write_file(&core, top.ino, "again.txt", b"old");
    core.sync_all().unwrap();
    let before = d.head();

    // As rm -rf does it: every file, then each folder once it is empty.
    assert_eq!(core.remove(top.ino, b"d0", true), Err(Errno::NOTEMPTY));
    for (i, dir) in dirs.iter().enumerate() {
        for j in 0..40 {
            core.remove(dir.ino, format!("f{j}").as_bytes(), false)
                .unwrap();
        }
        assert_eq!(names(&core, dir.ino), Vec::<String>::new());
        assert_eq!(core.lookup(dir.ino, b"f3").err(), Some(Errno::NOENT));
        core.remove(top.ino, format!("d{i}").as_bytes(), true)
            .unwrap();
    }
    core.remove(top.ino, b"again.txt", false).unwrap();
    // Names removed here made again: a folder and a file.
    let d0 = core.mkdir(top.ino, b"d0", 0o700, me()).unwrap();
    assert_eq!(
        names(&core, d0.ino),
        Vec::<String>::new(),
        "nothing of the old d0"
    );
    write_file(&core, top.ino, "again.txt", b"new");
    assert_eq!(names(&core, top.ino), ["again.txt", "d0"]);
    assert_eq!(d.head(), before, "nothing committed yet");

    core.sync_all().unwrap();
    assert_eq!(
        d.head(),
        before + 1,
        "205 removals and 2 new names in one version"
    );
    assert_eq!(d.has("/top/again.txt").unwrap(), b"new");
    assert_eq!(d.has("/top/d1/f1"), None);
    let ls = run_ok(&mut d.fvfsc(["ls", "/top"]));
    let listed: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(
        listed,
        ["again.txt", "d0/"],
        "no conflict copy, no old folder"
    );
}

#[test]
fn files_renamed_one_by_one_are_one_version_and_keep_what_was_written_to_them() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    let inbox = core.mkdir(ROOT, b"inbox", 0o755, me()).unwrap();
    for i in 0..30 {
        write_file(
            &core,
            inbox.ino,
            &format!("p{i}.jpg"),
            format!("photo {i}").as_bytes(),
        );
    }
    core.symlink(inbox.ino, b"latest", b"p29.jpg", me())
        .unwrap();
    core.sync_all().unwrap();
    let before = d.head();

    // Sorted into folders as a photo manager does; one file rewritten before its move
    // (closed, waiting for the batch), another after.
    let years = core.mkdir(ROOT, b"2026", 0o755, me()).unwrap();
    let (p3, _) = core.lookup(inbox.ino, b"p3.jpg").unwrap();
    rewrite(&core, p3.ino, b"edited photo 3");
    for i in 0..30 {
        let name = format!("p{i}.jpg");
        core.rename(
            inbox.ino,
            name.as_bytes(),
            years.ino,
            name.as_bytes(),
            false,
        )
        .unwrap();
    }
    core.rename(inbox.ino, b"latest", years.ino, b"latest", false)
        .unwrap();
    let (p4, _) = core.lookup(years.ino, b"p4.jpg").unwrap();
    rewrite(&core, p4.ino, b"photo 4, new");
    assert_eq!(
        core.rename(years.ino, b"p5.jpg", ROOT, b"2026", false)
            .err(),
        Some(Errno::ISDIR)
    );
    assert_eq!(
        core.rename(years.ino, b"p5.jpg", years.ino, b"p6.jpg", true)
            .err(),
        Some(Errno::EXIST)
    );
    assert_eq!(names(&core, inbox.ino), Vec::<String>::new());
    assert_eq!(names(&core, years.ino).len(), 31);
    let (moved, _) = core.lookup(years.ino, b"p7.jpg").unwrap();
    assert_eq!(read_all(&core, moved.ino), b"photo 7");
    assert_eq!(
        core.readlink(core.lookup(years.ino, b"latest").unwrap().0.ino)
            .unwrap(),
        b"p29.jpg"
    );
    assert_eq!(d.head(), before, "nothing committed yet");

    core.sync_all().unwrap();
    assert_eq!(
        d.head(),
        before + 1,
        "a folder, 31 renames and 2 rewrites in one version"
    );
    assert_eq!(d.has("/2026/p3.jpg").unwrap(), b"edited photo 3");
    assert_eq!(d.has("/2026/p4.jpg").unwrap(), b"photo 4, new");
    assert_eq!(d.has("/2026/p7.jpg").unwrap(), b"photo 7");
    assert_eq!(d.has("/inbox/p7.jpg"), None);
    let ls = run_ok(&mut d.fvfsc(["ls", "/2026"]));
    assert_eq!(ls.split_whitespace().count(), 31, "{ls}");
}

#[test]
fn files_linked_before_their_batch_are_committed_with_every_name_in_it() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    let objects = core.mkdir(ROOT, b"objects", 0o755, me()).unwrap();
    let before = d.head();
    // As git writes loose objects: a temporary file, linked to its name, unlinked.
    for i in 0..40 {
        let tmp = write_file(
            &core,
            objects.ino,
            "tmp_obj",
            format!("object {i}").as_bytes(),
        );
        let name = format!("obj{i:02}");
        let linked = core.link(tmp, objects.ino, name.as_bytes()).unwrap();
        assert_eq!((linked.ino, linked.nlink), (tmp, 2));
        assert_eq!(
            core.link(tmp, objects.ino, name.as_bytes()).err(),
            Some(Errno::EXIST)
        );
        core.remove(objects.ino, b"tmp_obj", false).unwrap();
        assert_eq!(core.getattr(tmp, None).unwrap().0.nlink, 1);
    }
    // A file that keeps both names.
    let kept = write_file(&core, ROOT, "a", b"two names");
    core.link(kept, ROOT, b"b").unwrap();
    assert_eq!(core.lookup(ROOT, b"b").unwrap().0.ino, kept);
    assert_eq!(names(&core, ROOT), [".snapshots", "a", "b", "objects"]);
    assert_eq!(names(&core, objects.ino).len(), 40);
    assert_eq!(d.head(), before, "nothing committed yet");

    core.sync_all().unwrap();
    assert_eq!(
        d.head(),
        before + 1,
        "40 objects and a linked file in one version"
    );
    for i in 0..40 {
        let got = d.has(&format!("/objects/obj{i:02}"));
        assert_eq!(got.unwrap(), format!("object {i}").as_bytes());
    }
    assert_eq!(d.has("/objects/tmp_obj"), None);
    assert_eq!(d.has("/a").unwrap(), b"two names");
    assert_eq!(d.has("/b").unwrap(), b"two names");
    // And they are one file: a fresh core shows one inode with two links.
    let fresh_cache = tempfile::tempdir().unwrap();
    let fresh = core_on(&d, &rt, fresh_cache.path());
    let (a, _) = fresh.lookup(ROOT, b"a").unwrap();
    let (b, _) = fresh.lookup(ROOT, b"b").unwrap();
    assert_eq!((a.ino, a.nlink), (b.ino, 2));
}

#[test]
fn a_link_or_a_move_shows_the_change_time_it_is_committed_with() {
    let (store, rt) = (Fvfsd::new(), runtime());
    let d = serve(&store);
    let cache = tempfile::tempdir().unwrap();
    let core = core_on(&d, &rt, cache.path());
    let ctime = |ino| core.getattr(ino, None).unwrap().0.ctime;
    // Made here and linked before its batch (as tar extracts a hard link).
    let a = write_file(&core, ROOT, "a", b"two names");
    core.link(a, ROOT, b"b").unwrap();
    let linked = ctime(a);
    // Committed, then moved in the overlay.
    let c = write_file(&core, ROOT, "c", b"moved");
    core.sync_all().unwrap();
    let before_move = ctime(c);
    core.rename(ROOT, b"c", ROOT, b"e", false).unwrap();
    let moved = ctime(c);
    assert!(
        moved > before_move,
        "a move changes the status, as on a disk"
    );
    let before = d.head();
    core.sync_all().unwrap();
    assert!(d.head() > before, "committed");
    // The daemon's clock at the commit would move them under a reader (tar: "file
    // changed as we read it"), and the names of a file must agree.
    assert_eq!(ctime(a), linked, "the linked file, committed");
    assert_eq!(ctime(core.lookup(ROOT, b"b").unwrap().0.ino), linked);
    assert_eq!(ctime(c), moved, "the moved file, committed");
    let fresh_cache = tempfile::tempdir().unwrap();
    let fresh = core_on(&d, &rt, fresh_cache.path());
    let seen = |name: &[u8]| fresh.lookup(ROOT, name).unwrap().0.ctime;
    assert_eq!(
        (seen(b"a"), seen(b"b"), seen(b"e")),
        (linked, linked, moved)
    );
}
