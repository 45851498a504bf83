//! The mount answers as a local directory does: the same calls run on both, their answers compared.

use super::*;

/// One POSIX behaviour: does things in `dir` and says what it saw.
type Case = fn(&Path) -> Vec<String>;

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
