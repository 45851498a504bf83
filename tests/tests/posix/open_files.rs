//! Open files on the mount: kernel caches forgotten when another mount changes a file, files unlinked or moved while open, opens racing for one file.

use super::*;

/// The kernel keeps names, attributes and content of the live tree for minutes: when
/// another mount changes them, this one forgets exactly what changed. Also after this
/// mount's own rename is undone elsewhere (the kernel moved that name's cache itself).
#[test]
fn what_the_kernel_cached_is_forgotten_when_another_mount_changes_it() {
    let fx = Fixture::new();
    let other = fx.another_mount("other");
    fs::create_dir(fx.m.path("d")).unwrap();
    // A shell whose working directory is a folder made here: the folder's name must
    // stay in the kernel's cache after this mount's follower saw the commit.
    let mut shell = std::process::Command::new("sh")
        .args(["-c", "read go; pwd -P"])
        .current_dir(fx.m.path("d"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for (name, text) in [
        ("f", "one"),
        ("gone", "x"),
        ("x", "moved"),
        ("same", "same"),
    ] {
        fs::write(fx.m.path(&format!("d/{name}")), text).unwrap();
    }
    let cached = |name: &str| other.path(&format!("d/{name}"));
    eventually("the other mount sees the files", || {
        fs::read_to_string(cached("x")).is_ok_and(|s| s == "moved")
    });
    assert_eq!(fs::read_to_string(cached("f")).unwrap(), "one");
    assert!(cached("gone").exists());
    let same_ino = fs::metadata(cached("same")).unwrap().ino();
    // This mount's follower has polled since it made d: it saw the other's change.
    fs::write(other.path("signal"), "").unwrap();
    eventually("this mount sees the other's file", || {
        fx.m.path("signal").exists()
    });
    writeln!(shell.stdin.take().unwrap(), "go").unwrap();
    let out = shell.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pwd in a folder made here: {stderr}");
    let d = fx.m.path("d").canonicalize().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        d.to_str().unwrap()
    );

    // Same inode, new content and size: cached pages and attributes must go.
    fs::write(fx.m.path("d/f"), "two, longer").unwrap();
    fs::remove_file(fx.m.path("d/gone")).unwrap();
    fs::rename(fx.m.path("d/x"), fx.m.path("d/y")).unwrap();
    fs::set_permissions(fx.m.path("d/same"), fs::Permissions::from_mode(0o600)).unwrap();
    eventually("the other mount sees the new content", || {
        fs::read_to_string(cached("f")).is_ok_and(|s| s == "two, longer")
    });
    eventually("the other mount sees gone go", || !cached("gone").exists());
    eventually("the other mount sees x go", || !cached("x").exists());
    eventually("the other mount sees y", || {
        fs::read_to_string(cached("y")).is_ok_and(|s| s == "moved")
    });
    eventually("the other mount sees the new mode", || {
        fs::metadata(cached("same")).unwrap().mode() & 0o777 == 0o600
    });
    assert_eq!(fs::metadata(cached("f")).unwrap().len(), 11);
    assert_eq!(fs::metadata(cached("same")).unwrap().ino(), same_ino);

    // The other mount renames y to z; this one renames z back to y.
    fs::rename(cached("y"), cached("z")).unwrap();
    eventually("this mount sees z", || fx.m.path("d/z").exists());
    fs::rename(fx.m.path("d/z"), fx.m.path("d/y")).unwrap();
    eventually("the other mount forgets z and sees y", || {
        !cached("z").exists() && fs::read_to_string(cached("y")).is_ok_and(|s| s == "moved")
    });
    let names = |dir: &Path| {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&cached("")), ["f", "same", "y"]);
    assert_eq!(names(&other.path("")), [".snapshots", "d", "signal"]);
    assert_eq!(names(&cached("")), names(&fx.m.path("d")));
}

#[test]
fn a_file_unlinked_while_open_stays_usable_and_never_comes_back() {
    let fx = Fixture::new();
    let mut other = fx.another_mount("other");
    for (sync_before, sync_after) in [(false, false), (true, false), (false, true), (true, true)] {
        let name = format!("tmp-{sync_before}-{sync_after}");
        let p = fx.m.path(&name);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .unwrap();
        f.write_all(b"first").unwrap();
        if sync_before {
            f.sync_all().unwrap();
            assert_eq!(fx.daemon_has(&format!("/{name}")).as_deref(), Some("first"));
        }
        fs::remove_file(&p).unwrap();
        assert_eq!(errno(fs::metadata(&p)), "errno 2");
        f.write_all(b" second").unwrap();
        if sync_after {
            f.sync_all().unwrap();
        }
        assert_eq!(
            read_all(&mut f),
            "first second",
            "{name}: the handle still works"
        );
        assert_eq!(f.metadata().unwrap().nlink(), 0, "{name}: no name left");
        drop(f);
        assert_eq!(errno(fs::metadata(&p)), "errno 2");
        assert_eq!(fx.daemon_has(&format!("/{name}")), None, "{name} came back");
        let seen = other.path(&name);
        eventually("the other mount forgets the file", || !seen.exists());
    }
    // A reader also keeps an unlinked file (its content as it was).
    let p = fx.m.path("kept");
    fs::write(&p, "kept content").unwrap();
    let mut r = File::open(&p).unwrap();
    fs::remove_file(&p).unwrap();
    assert_eq!(read_all(&mut r), "kept content");
    drop(r);
    // Nothing is committed late either: after the mount is gone, the tree is empty.
    assert_eq!(other.unmount(), Some(0));
    let mut m = fx.m;
    assert_eq!(m.unmount(), Some(0));
    let listing = fx.d.fvfsc(["ls", "/"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "",
        "tree left empty"
    );
}

#[test]
fn a_file_open_while_a_directory_above_is_renamed_lands_in_the_new_place() {
    let fx = Fixture::new();
    let other = fx.another_mount("other");
    // (the file existed before; fsync before the rename; the directory renamed, its new
    // name, and where the file is then)
    let cases = [
        (false, false, "a", "a-moved", "a-moved/b/f"),
        (true, false, "a", "a-moved", "a-moved/b/f"),
        (false, true, "a", "a-moved", "a-moved/b/f"),
        (false, false, "a/b", "b-moved", "b-moved/f"),
        (true, true, "a/b", "a/b-moved", "a/b-moved/f"),
    ];
    for (i, (existed, sync_before, from, to, moved)) in cases.into_iter().enumerate() {
        let root = format!("case{i}");
        fs::create_dir_all(fx.m.path(&format!("{root}/a/b"))).unwrap();
        let file = fx.m.path(&format!("{root}/a/b/f"));
        if existed {
            fs::write(&file, "old").unwrap();
        }
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&file)
            .unwrap();
        f.write_all(b"one ").unwrap();
        if sync_before {
            f.sync_all().unwrap();
        }
        let rel = |p: &str| format!("{root}/{p}");
        fs::rename(fx.m.path(&rel(from)), fx.m.path(&rel(to))).unwrap();
        f.write_all(b"two").unwrap();
        drop(f);
        let now = format!("/{}", rel(moved));
        assert_eq!(
            fx.daemon_has(&now).as_deref(),
            Some("one two"),
            "case {i}: {now}"
        );
        assert_eq!(fs::read_to_string(fx.m.path(&now[1..])).unwrap(), "one two");
        let gone = format!("/{}", rel(from));
        assert_eq!(fx.daemon_has(&format!("{gone}/b/f")), None, "case {i}");
        assert_eq!(fx.daemon_has(&format!("{gone}/f")), None, "case {i}");
        assert!(
            !fx.m.path(&gone[1..]).exists(),
            "case {i}: {gone} came back"
        );
        let seen = other.path(&now[1..]);
        eventually("the other mount sees the moved file", || {
            fs::read_to_string(&seen).is_ok_and(|s| s == "one two")
        });
        assert!(
            !other.path(&gone[1..]).exists(),
            "case {i}: {gone} in the other mount"
        );
    }
    // The open file itself renamed, then written: committed under its new name only.
    let mut f = File::create(fx.m.path("before")).unwrap();
    f.write_all(b"x").unwrap();
    fs::rename(fx.m.path("before"), fx.m.path("after")).unwrap();
    f.write_all(b"y").unwrap();
    drop(f);
    assert_eq!(fx.daemon_has("/after").as_deref(), Some("xy"));
    assert_eq!(fx.daemon_has("/before"), None);
}

#[test]
fn opens_racing_for_one_file_share_one_write_back() {
    let fx = Fixture::new();
    let p = fx.m.path("shared");
    fs::write(&p, vec![b'.'; 8 * 4096]).unwrap();
    for round in 0..5u8 {
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for i in 0..8u64 {
                let (p, barrier) = (&p, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let f = OpenOptions::new().write(true).open(p).unwrap();
                    f.write_all_at(&[b'a' + round + i as u8; 4096], i * 4096)
                        .unwrap();
                });
            }
        });
        let content = fs::read(&p).unwrap();
        let daemon = fx.daemon_has("/shared").unwrap().into_bytes();
        for i in 0..8u64 {
            let want = b'a' + round + i as u8;
            let block = (i * 4096) as usize..((i + 1) * 4096) as usize;
            assert!(
                content[block.clone()].iter().all(|b| *b == want),
                "round {round} block {i}"
            );
            assert!(
                daemon[block].iter().all(|b| *b == want),
                "round {round} block {i} (daemon)"
            );
        }
    }
}
