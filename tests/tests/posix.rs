//! The mount behaves like a local file system: every case here runs on a local
//! directory and on a real `fvfsc mount`, and both must give the same transcript; and
//! what is written through an inode lands where that inode is, or nowhere once it is
//! unlinked (files used to come back from the dead).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use fvfs_tests::daemon::Daemon;
use fvfs_tests::mount::Mount;
use fvfs_tests::{run_ok, Fvfsd};

struct Fixture {
    work: tempfile::TempDir,
    d: Daemon,
    m: Mount,
    _store: Fvfsd,
}

impl Fixture {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let store = Fvfsd::new();
        let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
        let m = Mount::start(
            &d,
            &work.path().join("mnt"),
            &work.path().join("cache"),
            &[],
        );
        Self {
            work,
            d,
            m,
            _store: store,
        }
    }

    /// A second mount of the same daemon.
    fn another_mount(&self, name: &str) -> Mount {
        let dir = self.work.path().join(name);
        Mount::start(
            &self.d,
            &dir,
            &self.work.path().join(format!("{name}-cache")),
            &[],
        )
    }

    /// What the daemon has at `path` (its content), or `None`, once this fixture's
    /// mount committed every file closed on it (close alone queues it for a batch).
    fn daemon_has(&self, path: &str) -> Option<String> {
        self.m.sync();
        let out = self.d.fvfsc(["cat", path]).output().expect("run fvfsc cat");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn errno(r: std::io::Result<impl Sized>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => match e.raw_os_error() {
            Some(n) => format!("errno {n}"),
            None => e.to_string(),
        },
    }
}

fn read_all(f: &mut File) -> String {
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut s).unwrap();
    s
}

/// Waits until `cond` holds on a mount that learns of others' commits when its
/// follower polls HEAD (about a second; the kernel may keep what it was told of the
/// live tree for minutes, so a pass shows the kernel was told).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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

/// One POSIX behaviour: does things in `dir` and says what it saw.
type Case = fn(&Path) -> Vec<String>;

fn names_up_to_the_limit(dir: &Path) -> Vec<String> {
    let long = "n".repeat(256);
    let max = "m".repeat(255);
    vec![
        errno(File::create(dir.join(&long))),
        errno(fs::create_dir(dir.join(&long))),
        errno(fs::metadata(dir.join(&long))),
        errno(fs::write(dir.join(&max), "ok")),
        errno(fs::rename(dir.join(&max), dir.join(&long))),
        errno(fs::read_to_string(dir.join(&max))),
        errno(fs::hard_link(dir.join(&max), dir.join(&long))),
        errno(std::os::unix::fs::symlink("t", dir.join(&long))),
    ]
}

fn removing_the_wrong_kind(dir: &Path) -> Vec<String> {
    fs::create_dir(dir.join("d")).unwrap();
    fs::write(dir.join("d/f"), "x").unwrap();
    vec![
        errno(fs::remove_dir(dir.join("d"))),
        errno(fs::remove_file(dir.join("d"))),
        errno(fs::remove_dir(dir.join("d/f"))),
        errno(fs::create_dir(dir.join("d"))),
        errno(fs::remove_file(dir.join("nothing"))),
        errno(OpenOptions::new().write(true).open(dir.join("d"))),
        errno(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join("d/f")),
        ),
        errno(fs::metadata(dir.join("d/f/x"))),
    ]
}

fn renames(dir: &Path) -> Vec<String> {
    fs::write(dir.join("a"), "A").unwrap();
    fs::write(dir.join("b"), "B").unwrap();
    fs::create_dir(dir.join("d")).unwrap();
    let cwd = rustix::fs::CWD;
    let no_replace = rustix::fs::renameat_with(
        cwd,
        dir.join("a"),
        cwd,
        dir.join("b"),
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(std::io::Error::from);
    let mut seen = vec![
        errno(no_replace),
        errno(fs::rename(dir.join("a"), dir.join("b"))),
        errno(fs::read_to_string(dir.join("b"))),
        errno(fs::metadata(dir.join("a"))),
        errno(fs::rename(dir.join("b"), dir.join("d/b"))),
        errno(fs::rename(dir.join("d"), dir.join("e"))),
    ];
    seen.push(fs::read_to_string(dir.join("e/b")).unwrap());
    seen.push(errno(fs::rename(dir.join("missing"), dir.join("x"))));
    seen
}

fn unlinked_while_open(dir: &Path) -> Vec<String> {
    let p = dir.join("t");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all(b"abc").unwrap();
    fs::remove_file(&p).unwrap();
    f.write_all(b"def").unwrap();
    let meta = f.metadata().unwrap();
    let mut seen = vec![
        read_all(&mut f),
        meta.nlink().to_string(),
        meta.len().to_string(),
        errno(fs::metadata(&p)),
    ];
    f.set_len(2).unwrap();
    seen.push(read_all(&mut f));
    drop(f);
    seen.push(errno(fs::metadata(&p)));
    seen
}

fn listing_shows_files_being_written(dir: &Path) -> Vec<String> {
    let mut f = File::create(dir.join("new")).unwrap();
    f.write_all(b"x").unwrap();
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".snapshots")
        .collect();
    names.sort();
    names.push(fs::metadata(dir.join("new")).unwrap().len().to_string());
    names
}

fn truncation(dir: &Path) -> Vec<String> {
    let p = dir.join("f");
    fs::write(&p, "0123456789").unwrap();
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(4).unwrap();
    let shrunk = fs::read_to_string(&p).unwrap();
    f.set_len(6).unwrap();
    drop(f);
    let grown = fs::read(&p).unwrap();
    let g = File::open(&p).unwrap();
    vec![shrunk, format!("{grown:?}"), errno(g.set_len(1))]
}

/// A program running from the directory cannot be opened for writing nor truncated
/// (ETXTBSY), also by `O_RDONLY|O_TRUNC`, which the kernel checks only after the file
/// system opened the file (the mount used to truncate at open: the program died of
/// SIGBUS and the file was committed empty); once it ended, O_TRUNC truncates.
fn running_programs(dir: &Path) -> Vec<String> {
    let prog = dir.join("prog");
    // Written by another process: a write descriptor of this one, copied into a
    // child forked meanwhile by another test's thread, would make exec fail ETXTBSY.
    run_ok(
        std::process::Command::new("cp")
            .arg("/usr/bin/sleep")
            .arg(&prog),
    );
    let original = fs::read("/usr/bin/sleep").unwrap();
    let mut running = std::process::Command::new(&prog).arg("60").spawn().unwrap();
    let open = |flags| {
        let opened = rustix::fs::open(&prog, flags, rustix::fs::Mode::empty());
        errno(opened.map_err(std::io::Error::from))
    };
    use rustix::fs::OFlags;
    let mut seen = vec![
        format!("O_WRONLY: {}", open(OFlags::WRONLY)),
        format!("O_RDWR: {}", open(OFlags::RDWR)),
        format!("O_RDONLY|O_TRUNC: {}", open(OFlags::RDONLY | OFlags::TRUNC)),
        format!(
            "size kept: {}",
            fs::metadata(&prog).unwrap().len() == original.len() as u64
        ),
        format!("content kept: {}", fs::read(&prog).unwrap() == original),
    ];
    let again = std::process::Command::new(&prog).arg("0").status();
    let again = again.map_or_else(|e| e.to_string(), |s| s.to_string());
    seen.push(format!("runs again: {again}"));
    running.kill().unwrap();
    seen.push(format!("the first ended: {}", running.wait().unwrap()));
    seen.push(format!(
        "O_RDONLY|O_TRUNC: {}",
        open(OFlags::RDONLY | OFlags::TRUNC)
    ));
    seen.push(format!("size: {}", fs::metadata(&prog).unwrap().len()));
    seen
}

fn special_files(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let cwd = rustix::fs::CWD;
    let mode = rustix::fs::Mode::from_raw_mode(0o640);
    let fifo = dir.join("fifo");
    rustix::fs::mknodat(cwd, &fifo, rustix::fs::FileType::Fifo, mode, 0).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::write(fifo, b"through the pipe").unwrap())
    };
    let piped = fs::read_to_string(&fifo).unwrap();
    writer.join().unwrap();
    let sock = dir.join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut client = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    client.write_all(b"hello").unwrap();
    drop(client);
    let mut got = String::new();
    listener
        .accept()
        .unwrap()
        .0
        .read_to_string(&mut got)
        .unwrap();
    let null = dir.join("null");
    let dev = rustix::fs::makedev(1, 3);
    let kind = rustix::fs::FileType::CharacterDevice;
    rustix::fs::mknodat(cwd, &null, kind, mode, dev).unwrap();
    let m = |p: &Path| fs::symlink_metadata(p).unwrap();
    fs::rename(&fifo, dir.join("fifo2")).unwrap();
    vec![
        piped,
        got,
        m(&dir.join("fifo2")).file_type().is_fifo().to_string(),
        format!("{:o}", m(&dir.join("fifo2")).mode() & 0o7777),
        m(&sock).file_type().is_socket().to_string(),
        m(&null).file_type().is_char_device().to_string(),
        (m(&null).rdev() == dev).to_string(),
        errno(fs::remove_file(&sock)),
        errno(fs::remove_file(dir.join("fifo2"))),
    ]
}

fn extended_attributes(dir: &Path) -> Vec<String> {
    use rustix::fs::{lgetxattr, llistxattr, lremovexattr, lsetxattr, XattrFlags};
    let f = dir.join("f");
    fs::write(&f, "x").unwrap();
    fs::create_dir(dir.join("d")).unwrap();
    let get = |p: &Path, name: &str| {
        let mut buf = [0u8; 64];
        match lgetxattr(p, name, &mut buf[..]) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => format!("errno {}", e.raw_os_error()),
        }
    };
    let list = |p: &Path| {
        let mut buf = [0u8; 256];
        let n = llistxattr(p, &mut buf[..]).unwrap();
        let mut names: Vec<String> = buf[..n]
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n.starts_with("user."))
            .collect();
        names.sort();
        names.join(",")
    };
    let set = |p: &Path, name: &str, v: &[u8], flags| {
        errno(lsetxattr(p, name, v, flags).map_err(std::io::Error::from))
    };
    let mut seen = vec![
        set(&f, "user.b", b"2", XattrFlags::empty()),
        set(&f, "user.a", b"1", XattrFlags::CREATE),
        set(&f, "user.a", b"one", XattrFlags::CREATE),
        set(&f, "user.c", b"3", XattrFlags::REPLACE),
        set(&f, "user.a", b"one", XattrFlags::REPLACE),
        set(&dir.join("d"), "user.dir", b"yes", XattrFlags::empty()),
        get(&f, "user.a"),
        get(&f, "user.missing"),
        list(&f),
        get(&dir.join("d"), "user.dir"),
        errno(lremovexattr(&f, "user.b").map_err(std::io::Error::from)),
        errno(lremovexattr(&f, "user.b").map_err(std::io::Error::from)),
        list(&f),
    ];
    // Attributes stay with the file through a rename and a rewrite.
    fs::rename(&f, dir.join("g")).unwrap();
    fs::write(dir.join("g"), "rewritten").unwrap();
    seen.push(get(&dir.join("g"), "user.a"));
    seen
}

fn owners_and_status_changes(dir: &Path) -> Vec<String> {
    let f = dir.join("f");
    fs::write(&f, "x").unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(946_684_800);
    File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let ctime = |p: &Path| {
        let m = fs::symlink_metadata(p).unwrap();
        (m.ctime(), m.ctime_nsec())
    };
    let m = |p: &Path| fs::symlink_metadata(p).unwrap();
    let after_utimes = ctime(&f);
    let mut seen = vec![
        format!("{}:{}", m(&f).uid(), m(&f).gid()),
        (after_utimes.0 > m(&f).mtime()).to_string(),
    ];
    // A failing operation leaves the status change time alone.
    seen.push(errno(fs::remove_dir(&f)));
    seen.push(errno(fs::rename(dir.join("missing"), &f)));
    seen.push((ctime(&f) == after_utimes).to_string());
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    seen.push((ctime(&f) >= after_utimes).to_string());
    rustix::fs::chownat(
        rustix::fs::CWD,
        &f,
        Some(rustix::fs::Uid::from_raw(1234)),
        Some(rustix::fs::Gid::from_raw(5678)),
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    fs::rename(&f, dir.join("g")).unwrap();
    let g = m(&dir.join("g"));
    seen.push(format!(
        "{}:{} {:o} {}",
        g.uid(),
        g.gid(),
        g.mode() & 0o7777,
        g.mtime()
    ));
    fs::create_dir(dir.join("d")).unwrap();
    std::os::unix::fs::symlink("g", dir.join("l")).unwrap();
    seen.push(format!(
        "{}:{}",
        m(&dir.join("d")).uid(),
        m(&dir.join("l")).gid()
    ));
    seen
}

fn hard_links(dir: &Path) -> Vec<String> {
    use std::io::Write;
    let (a, b, c) = (dir.join("a"), dir.join("sub/b"), dir.join("c"));
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(&a, "one").unwrap();
    fs::hard_link(&a, &b).unwrap();
    let m = |p: &Path| fs::symlink_metadata(p).unwrap();
    let mut seen = vec![
        (m(&a).ino() == m(&b).ino()).to_string(),
        m(&a).nlink().to_string(),
        errno(fs::hard_link(&a, &b)),
        errno(fs::hard_link(dir.join("sub"), &c)),
        errno(fs::hard_link(dir.join("missing"), &c)),
    ];
    // A change through one name is the file's, whichever name shows it.
    fs::set_permissions(&b, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&b, "two, through b").unwrap();
    seen.push(format!(
        "{:o} {}",
        m(&a).mode() & 0o7777,
        fs::read_to_string(&a).unwrap()
    ));
    let mut f = File::options().append(true).open(&a).unwrap();
    f.write_all(b", then a").unwrap();
    drop(f);
    seen.push(fs::read_to_string(&b).unwrap());
    // A third name; renaming one name onto another of the same file does nothing.
    fs::hard_link(&b, &c).unwrap();
    seen.push(m(&a).nlink().to_string());
    fs::rename(&a, &c).unwrap();
    seen.push(format!("{} {}", a.exists(), m(&c).nlink()));
    // Another file renamed over a name takes that name from the file.
    fs::write(dir.join("other"), "other").unwrap();
    fs::rename(dir.join("other"), &c).unwrap();
    seen.push(format!(
        "{} {}",
        m(&a).nlink(),
        fs::read_to_string(&c).unwrap()
    ));
    fs::remove_file(&a).unwrap();
    seen.push(format!(
        "{} {}",
        m(&b).nlink(),
        fs::read_to_string(&b).unwrap()
    ));
    seen
}

const CASES: &[(&str, Case)] = &[
    ("names up to the limit", names_up_to_the_limit),
    ("removing the wrong kind", removing_the_wrong_kind),
    ("renames", renames),
    ("unlinked while open", unlinked_while_open),
    (
        "listing shows files being written",
        listing_shows_files_being_written,
    ),
    ("truncation", truncation),
    ("running programs", running_programs),
    ("special files", special_files),
    ("extended attributes", extended_attributes),
    ("owners and status changes", owners_and_status_changes),
    ("hard links", hard_links),
];

#[test]
fn the_mount_answers_as_a_local_directory_does() {
    let fx = Fixture::new();
    let local = tempfile::tempdir().unwrap();
    for (i, (name, case)) in CASES.iter().enumerate() {
        let here = local.path().join(i.to_string());
        let there = fx.m.path(&i.to_string());
        fs::create_dir(&here).unwrap();
        fs::create_dir(&there).unwrap();
        let want = case(&here);
        let got = case(&there);
        assert_eq!(
            got, want,
            "{name}: mount (left) and local directory (right) differ"
        );
    }
}

/// git (clone, checkout, rebase, gc) and sqlite in WAL mode on the mount.
#[test]
fn git_and_sqlite_in_wal_mode_work_on_the_mount() {
    let fx = Fixture::new();
    let git = |dir: &Path, args: &[&str]| {
        run_ok(
            std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
                .args(["-c", "init.defaultBranch=main", "-c", "gc.auto=0"])
                .args(args),
        )
    };
    // An origin on the local disk with some history and a branch.
    let origin = fx.work.path().join("origin");
    fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "-q"]);
    for i in 0..20 {
        fs::write(
            origin.join(format!("f{}.txt", i % 7)),
            format!("line {i}\n"),
        )
        .unwrap();
        git(&origin, &["add", "-A"]);
        git(&origin, &["commit", "-qm", &format!("c{i}")]);
    }
    git(&origin, &["checkout", "-qb", "topic", "HEAD~5"]);
    fs::write(origin.join("topic.txt"), "topic\n").unwrap();
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-qm", "topic"]);
    git(&origin, &["checkout", "-q", "main"]);
    let clone = fx.m.path("clone");
    run_ok(
        std::process::Command::new("git")
            .args(["clone", "-q"])
            .arg(&origin)
            .arg(&clone),
    );
    git(&clone, &["checkout", "-q", "topic"]);
    git(&clone, &["rebase", "-q", "main"]);
    assert_eq!(git(&clone, &["log", "--oneline"]).lines().count(), 21);
    git(&clone, &["checkout", "-q", "main"]);
    git(&clone, &["gc", "-q", "--aggressive", "--prune=now"]);
    git(&clone, &["fsck", "--no-progress", "--strict"]);
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    assert_eq!(
        fs::read_to_string(clone.join("f5.txt")).unwrap(),
        fs::read_to_string(origin.join("f5.txt")).unwrap()
    );

    let db = fx.m.path("wal.sqlite");
    let sql = |q: &str| run_ok(std::process::Command::new("sqlite3").arg(&db).arg(q));
    assert_eq!(sql("pragma journal_mode=wal;").trim(), "wal");
    sql("create table t(n integer);");
    for i in 0..50 {
        sql(&format!("begin; insert into t values({i}); commit;"));
    }
    sql("begin; insert into t values(1000); rollback;");
    sql("pragma wal_checkpoint(truncate);");
    assert_eq!(sql("select count(*), sum(n) from t;").trim(), "50|1225");
    assert_eq!(sql("pragma integrity_check;").trim(), "ok");
    // What the daemon has is a working database too.
    let copy = fx.work.path().join("copy.sqlite");
    let bytes = fx.d.fvfsc(["cat", "/wal.sqlite"]).output().unwrap().stdout;
    fs::write(&copy, bytes).unwrap();
    let out = run_ok(
        std::process::Command::new("sqlite3")
            .arg(&copy)
            .arg("select count(*) from t;"),
    );
    assert_eq!(out.trim(), "50");
}

/// rsync -aHAX and tar --xattrs carry FIFOs, devices, hard links, owners and attributes
/// into the mount and out again, identical.
#[test]
fn rsync_and_tar_keep_special_files_and_attributes_through_the_mount() {
    use std::os::unix::fs::FileTypeExt;
    let fx = Fixture::new();
    let src = fx.work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/f"), "content").unwrap();
    fs::hard_link(src.join("sub/f"), src.join("hard")).unwrap();
    let cwd = rustix::fs::CWD;
    let mode = rustix::fs::Mode::from_raw_mode(0o640);
    rustix::fs::mknodat(cwd, src.join("fifo"), rustix::fs::FileType::Fifo, mode, 0).unwrap();
    let dev = rustix::fs::makedev(1, 3);
    let kind = rustix::fs::FileType::CharacterDevice;
    rustix::fs::mknodat(cwd, src.join("null"), kind, mode, dev).unwrap();
    let flags = rustix::fs::XattrFlags::empty();
    rustix::fs::lsetxattr(src.join("sub/f"), "user.tag", b"red", flags).unwrap();
    let owner = |p: &Path, uid: u32| {
        let (u, g) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(uid + 1),
        );
        rustix::fs::chownat(
            cwd,
            p,
            Some(u),
            Some(g),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    owner(&src.join("sub/f"), 1234);
    owner(&src.join("sub"), 2000);
    let check = |dir: &Path| {
        let m = |p: &str| fs::symlink_metadata(dir.join(p)).unwrap();
        assert!(m("fifo").file_type().is_fifo(), "{}", dir.display());
        assert!(m("null").file_type().is_char_device());
        assert_eq!(m("null").rdev(), dev);
        assert_eq!((m("sub/f").uid(), m("sub/f").gid()), (1234, 1235));
        assert_eq!((m("sub").uid(), m("sub").gid()), (2000, 2001));
        let mut v = [0u8; 8];
        let n = rustix::fs::lgetxattr(dir.join("sub/f"), "user.tag", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"red");
        assert_eq!(fs::read_to_string(dir.join("sub/f")).unwrap(), "content");
        assert_eq!(
            m("sub/f").ino(),
            m("hard").ino(),
            "hard links in {}",
            dir.display()
        );
        assert_eq!(m("hard").nlink(), 2);
    };
    let slash = |p: &Path| format!("{}/", p.display());
    run_ok(
        std::process::Command::new("rsync")
            .args(["-aHAX"])
            .arg(slash(&src))
            .arg(fx.m.path("rsync")),
    );
    check(&fx.m.path("rsync"));
    let back = fx.work.path().join("back");
    run_ok(
        std::process::Command::new("rsync")
            .args(["-aHAX"])
            .arg(slash(&fx.m.path("rsync")))
            .arg(&back),
    );
    check(&back);
    // tar with attributes, into the mount and out of it.
    let archive = fx.work.path().join("a.tar");
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("."),
    );
    fs::create_dir(fx.m.path("tar")).unwrap();
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "--same-owner", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(fx.m.path("tar")),
    );
    check(&fx.m.path("tar"));
    let out = fx.work.path().join("out.tar");
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "-cf"])
            .arg(&out)
            .arg("-C")
            .arg(fx.m.path("tar"))
            .arg("."),
    );
    let unpacked = fx.work.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    run_ok(
        std::process::Command::new("tar")
            .args(["--xattrs", "--same-owner", "-xpf"])
            .arg(&out)
            .arg("-C")
            .arg(&unpacked),
    );
    check(&unpacked);
}

/// A client whose ids differ from the server's maps them: what it creates is stored
/// under the mapped ids, and stored ids show as its own.
#[test]
fn owners_are_mapped_for_clients_numbered_differently() {
    let fx = Fixture::new();
    let dir = fx.work.path().join("mapped");
    let args = ["--map-uid", "4321:0", "--map-gid", "4322:0"];
    let m = Mount::start(&fx.d, &dir, &fx.work.path().join("mapped-cache"), &args);
    fs::write(m.path("mine"), "x").unwrap(); // created by root (0:0 here)
    m.sync();
    let stored = |name: &str| {
        let out = fx.d.fvfsc(["ls", "/", "--json"]).output().unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let entries = list.as_array().cloned().unwrap_or_default();
        let e = entries.into_iter().find(|e| e["name"] == name).unwrap();
        (e["uid"].as_u64().unwrap(), e["gid"].as_u64().unwrap())
    };
    assert_eq!(stored("mine"), (4321, 4322));
    let meta = fs::metadata(m.path("mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    // An unmapped id passes both ways.
    let (u, g) = (
        rustix::fs::Uid::from_raw(1234),
        rustix::fs::Gid::from_raw(1235),
    );
    let flags = rustix::fs::AtFlags::empty();
    rustix::fs::chownat(rustix::fs::CWD, m.path("mine"), Some(u), Some(g), flags).unwrap();
    m.sync();
    assert_eq!(stored("mine"), (1234, 1235));
    // The unmapped mount shows the stored ids as they are.
    fs::write(m.path("again"), "y").unwrap();
    let plain = fx.m.path("again");
    eventually("the other mount sees the file", || plain.exists());
    let meta = fs::metadata(&plain).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4321, 4322));
}

/// What nobody (uid 65534) may do, on the mount (`--allow-other`) as on a local
/// directory: the kernel checks the owners and modes fvfs keeps.
#[test]
fn other_users_get_the_answers_a_local_disk_gives() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let open = fs::Permissions::from_mode(0o755);
    fs::set_permissions(fx.work.path(), open.clone()).unwrap();
    let shared = fx.work.path().join("shared");
    let m = Mount::start(
        &fx.d,
        &shared,
        &fx.work.path().join("shared-cache"),
        &["--allow-other"],
    );
    let local = fx.work.path().join("local");
    fs::create_dir(&local).unwrap();
    let script = r#"
        check() { "$@" 2>/dev/null; echo "$?"; }
        check cat secret
        check cat public
        check sh -c 'echo x > locked/new'
        check sh -c 'echo x > open/new'
        stat -c '%u:%g' open/new
        check chmod 0777 public
        check chown 65534 public
        check rm sticky/roots
        check rm open/new
        check ls locked
        check ls private
    "#;
    let prepare = |dir: &Path| {
        fs::set_permissions(dir, open.clone()).unwrap();
        fs::write(dir.join("secret"), "s").unwrap();
        fs::set_permissions(dir.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(dir.join("public"), "p").unwrap();
        fs::set_permissions(dir.join("public"), fs::Permissions::from_mode(0o644)).unwrap();
        for (d, mode) in [
            ("locked", 0o755),
            ("open", 0o777),
            ("sticky", 0o1777),
            ("private", 0o700),
        ] {
            fs::create_dir(dir.join(d)).unwrap();
            fs::set_permissions(dir.join(d), fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::write(dir.join("sticky/roots"), "r").unwrap();
    };
    let as_nobody = |dir: &Path| {
        run_ok(
            std::process::Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "sh",
                    "-c",
                    script,
                ])
                .current_dir(dir),
        )
    };
    prepare(&local);
    prepare(&m.path(""));
    let want = as_nobody(&local);
    assert!(want.contains("65534:65534"), "{want}");
    assert_eq!(
        as_nobody(&m.path("")),
        want,
        "mount (left) and local directory (right)"
    );
}

/// Times and modes set right after a close (what tar and cp -p do) are kept, however
/// the kernel's release of the file and the change race: the last user of a write-back
/// commits what another changed after its own commit (tar into the mount once lost an
/// mtime this way).
#[test]
fn attributes_set_right_after_close_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    fs::create_dir(fx.m.path("d")).unwrap();
    for i in 0..300u64 {
        let p = fx.m.path(&format!("d/f{i:03}"));
        let mut f = File::create(&p).unwrap();
        f.write_all(format!("file {i}").as_bytes()).unwrap();
        drop(f);
        // By path, as tar does: no handle of its own to commit at a close.
        let t = rustix::fs::Timespec {
            tv_sec: 1_000_000_000 + i as i64,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(rustix::fs::CWD, &p, &times, rustix::fs::AtFlags::empty()).unwrap();
        fs::set_permissions(
            &p,
            fs::Permissions::from_mode(0o600 + (i as u32 % 2) * 0o40),
        )
        .unwrap();
    }
    fx.m.sync();
    let out = fx.d.fvfsc(["ls", "/d", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 300);
    for (i, e) in entries.iter().enumerate() {
        let want = (1_000_000_000 + i as i64) * 1_000_000_000;
        assert_eq!(e["mtime_ns"].as_i64(), Some(want), "{e}");
        assert_eq!(
            e["mode"].as_u64(),
            Some(0o600 + (i as u64 % 2) * 0o40),
            "{e}"
        );
    }
}

/// The names in the folder at `dir`, sorted (without the mount's `.snapshots`).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".snapshots")
        .collect();
    v.sort();
    v
}

/// Two mounts writing one file: in turn, each replaces what it saw; at the same time,
/// the one that commits second keeps its version beside the first one's, as a
/// conflict copy. Neither version is lost.
#[test]
fn two_mounts_writing_one_file_lose_neither_version() {
    let fx = Fixture::new();
    let other = fx.another_mount("other");
    let sees =
        |m: &Mount, text: &str| fs::read_to_string(m.path("doc.txt")).is_ok_and(|s| s == text);

    // In turn.
    fs::write(fx.m.path("doc.txt"), "first").unwrap();
    eventually("the other mount sees the first version", || {
        sees(&other, "first")
    });
    fs::write(other.path("doc.txt"), "second").unwrap();
    eventually("this mount sees the second version", || {
        sees(&fx.m, "second")
    });
    fs::write(fx.m.path("doc.txt"), "third").unwrap();
    assert_eq!(fx.daemon_has("/doc.txt").as_deref(), Some("third"));
    assert_eq!(names(&fx.m.path("")), ["doc.txt"]);

    // At the same time: both open what they see (the third version) for writing.
    eventually("the other mount sees the third version", || {
        sees(&other, "third")
    });
    let open = |m: &Mount| {
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.path("doc.txt"))
            .unwrap()
    };
    let (mut mine, mut theirs) = (open(&fx.m), open(&other));
    mine.write_all(b"mine").unwrap();
    theirs
        .write_all(b"theirs, written at the same time")
        .unwrap();
    mine.sync_all().unwrap();
    drop(mine);
    // Its commit finds the file changed since it was opened: kept beside it.
    theirs.sync_all().unwrap();
    drop(theirs);
    assert_eq!(fx.daemon_has("/doc.txt").as_deref(), Some("mine"));
    let listed = run_ok(&mut fx.d.fvfsc(["ls", "/"]));
    let copies: Vec<&str> = listed
        .lines()
        .filter(|n| n.starts_with("doc (conflict from ") && n.ends_with(").txt"))
        .collect();
    assert_eq!(copies.len(), 1, "{listed}");
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_eq!(
        fx.daemon_has(&format!("/{}", copies[0])).as_deref(),
        Some("theirs, written at the same time")
    );
    // Both mounts show both files.
    eventually("this mount sees the conflict copy", || {
        names(&fx.m.path("")).len() == 2
    });
    eventually("the other mount shows the first commit at the name", || {
        sees(&other, "mine")
    });
    assert_eq!(
        fs::read_to_string(other.path(copies[0])).unwrap(),
        "theirs, written at the same time"
    );
}

/// A write made while the daemon is down is kept by the mount, shown by
/// `fvfsc status` on this device, and committed by itself when the daemon is back.
#[test]
fn a_write_held_while_the_daemon_is_down_is_committed_when_it_returns() {
    let mut fx = Fixture::new();
    fs::write(fx.m.path("doc.txt"), "before").unwrap();
    // Read here once: what a device was using stays usable offline from its cache.
    assert_eq!(fs::read_to_string(fx.m.path("doc.txt")).unwrap(), "before");
    let addr = fx.d.addr.clone();
    fx.d.stop();

    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(fx.m.path("doc.txt"))
        .unwrap();
    f.write_all(b"written while the daemon was down").unwrap();
    assert!(f.sync_all().is_err(), "fsync cannot succeed with no daemon");
    drop(f);
    let cache = fx.work.path().join("cache");
    let status = |d: &Daemon, code| {
        let out = d
            .fvfsc(["status", "--json", "--cache-dir", cache.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["mounts"][0]["waiting"].clone()
    };
    // The retry records what waits at its next pass (every 2 s).
    eventually("fvfsc status shows the held write", || {
        status(&fx.d, 2)[0]["path"] == "/doc.txt"
    });
    let waiting = status(&fx.d, 2);
    assert!(
        Path::new(waiting[0]["local"].as_str().unwrap()).exists(),
        "{waiting}"
    );

    // The same address again: the mount's retry commits the write by itself.
    fx.d = Daemon::start(&fx._store, &addr, &["--no-mdns"]);
    eventually("the held write reaches the daemon", || {
        fx.daemon_has("/doc.txt").as_deref() == Some("written while the daemon was down")
    });
    eventually("nothing waits any more", || {
        status(&fx.d, 0) == serde_json::json!([])
    });
}
