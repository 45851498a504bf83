//! What a write token stored, exported: links never followed, links in the target left alone, privileged metadata only when asked.

use super::*;

/// Links at every name an export writes (the old temporary names of each file, a
/// folder's place, pointing outside, up, and into DATA_DIR): exported as links, never
/// followed, nothing outside the target written.
#[test]
fn links_a_tree_holds_are_written_as_links_never_followed() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let v = Victims::new(work.path(), &store);
    put(&d, "/exp/foo", b"payload");
    put(&d, "/exp/sub/bar", b"more");
    d.commit(vec![
        symlink(&format!("/exp/{}", old_temp_name("foo")), &v.file),
        symlink(&format!("/exp/sub/{}", old_temp_name("bar")), &v.data_file),
        symlink("/exp/out", &v.dir),
        symlink("/exp/up", Path::new("../../..")),
        symlink("/exp/data", store.home.path()),
        mkdir("/exp/later"),
    ]);
    // Files below the links' names, as a second commit (the tree now holds both).
    put(&d, "/exp/later/f", b"later");
    let out = work.path().join("out");
    let (stdout, _) = export(&store, 0, &["/exp", out.to_str().unwrap()]);
    assert!(stdout.contains("3 files"), "{stdout}");
    v.assert_untouched();
    assert_eq!(fs::read(out.join("foo")).unwrap(), b"payload");
    assert_eq!(fs::read(out.join("sub/bar")).unwrap(), b"more");
    assert_eq!(fs::read(out.join("later/f")).unwrap(), b"later");
    for (name, target) in [
        (old_temp_name("foo"), v.file.clone()),
        (format!("sub/{}", old_temp_name("bar")), v.data_file.clone()),
        ("out".into(), v.dir.clone()),
        ("up".into(), "../../..".into()),
    ] {
        assert_eq!(fs::read_link(out.join(&name)).unwrap(), target, "{name}");
    }
    // No temporary file is left behind.
    let hidden: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".fvfs-export-") && n != &old_temp_name("foo"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

/// An export into a folder that already holds links where the tree has a folder or a
/// file (left by someone, or by a resumed run's tree): each is named and left alone,
/// nothing is written through it, and the rest is exported.
#[test]
fn links_already_in_the_target_are_named_and_left_alone() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let v = Victims::new(work.path(), &store);
    put(&d, "/exp/foo", b"payload");
    put(&d, "/exp/sub/bar", b"more");
    put(&d, "/exp/deep/er/f", b"deep");
    put(&d, "/exp/token", b"not the token");
    put(&d, "/exp/fine", b"fine");
    let out = work.path().join("out");
    fs::create_dir_all(out.join("deep")).unwrap();
    std::os::unix::fs::symlink(&v.file, out.join("foo")).unwrap();
    std::os::unix::fs::symlink(&v.dir, out.join("sub")).unwrap();
    std::os::unix::fs::symlink(&v.dir, out.join("deep/er")).unwrap();
    std::os::unix::fs::symlink(&v.data_file, out.join("token")).unwrap();
    let (stdout, stderr) = export(&store, 1, &["/exp", out.to_str().unwrap()]);
    v.assert_untouched();
    for name in ["foo", "sub", "deep/er", "token"] {
        let line = format!("{} (version", out.join(name).display());
        assert!(stderr.contains(&line), "{name} not named: {stderr}");
    }
    assert!(
        stderr.contains("a symlink is in its place, left alone"),
        "{stderr}"
    );
    assert_eq!(fs::read(out.join("fine")).unwrap(), b"fine");
    assert!(stdout.contains("1 files"), "{stdout}");
    // The links are still the user's.
    assert_eq!(fs::read_link(out.join("foo")).unwrap(), v.file);
}

/// A valid VFS capability (revision 2, effective) granting cap_setuid.
fn cap_setuid() -> Vec<u8> {
    let mut v = 0x0200_0001u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u32 << 7).to_le_bytes()); // permitted: CAP_SETUID
    v.extend_from_slice(&[0; 12]);
    v
}

fn xattr(name: &str, value: &[u8]) -> Value {
    json!({"name": name.as_bytes(), "value": value})
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// Device nodes, setuid/setgid, capabilities, security.* and trusted.* attributes and
/// foreign owners come back from an export by root only with `--keep-privileged`;
/// each one left out is counted, and named with `-v`.
#[test]
fn privileged_metadata_comes_back_only_when_asked() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root"
    );
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let dev = |major, minor| rustix::fs::makedev(major, minor);
    let foreign = |xattrs: Vec<Value>| json!({"uid": 1234, "gid": 5678, "xattrs": xattrs});
    d.commit(vec![
        json!({"op": "mkdir", "path": "/p", "mode": 0o755, "mtime_ns": 0,
               "meta": foreign(vec![xattr("trusted.dir", b"d")])}),
        json!({"op": "file", "path": "/p/tool", "mode": 0o6755, "mtime_ns": 0, "size": 0,
        "meta": foreign(vec![
            xattr("security.capability", &cap_setuid()),
            xattr("trusted.x", b"t"),
            xattr("user.colour", b"blue"),
        ])}),
        json!({"op": "special", "path": "/p/sda", "kind": "BlockDevice", "mode": 0o666,
               "mtime_ns": 0, "meta": {"rdev": dev(8, 0)}}),
        json!({"op": "special", "path": "/p/mem", "kind": "CharDevice", "mode": 0o666,
               "mtime_ns": 0, "meta": {"rdev": dev(1, 1)}}),
        json!({"op": "special", "path": "/p/pipe", "kind": "Fifo", "mode": 0o644, "mtime_ns": 0}),
    ]);
    // Exported from the root, so that /p's own owner and attributes are written too.
    let work = tempfile::tempdir().unwrap();
    let out = |name: &str| work.path().join(name);
    let (stdout, _) = export(&store, 0, &["/", out("plain").to_str().unwrap()]);
    for part in [
        "left out as privileged: 2 device nodes",
        "1 setuid/setgid bits",
        "1 file capabilities",
        "2 security/trusted attributes",
        "2 owners",
    ] {
        assert!(stdout.contains(part), "{part}: {stdout}");
    }
    let m = |p: &Path| fs::symlink_metadata(p).unwrap();
    let plain = out("plain").join("p");
    assert!(!plain.join("sda").exists() && !plain.join("mem").exists());
    assert!(m(&plain.join("pipe")).file_type().is_fifo());
    let tool = plain.join("tool");
    assert_eq!(m(&tool).mode() & 0o7777, 0o755);
    for p in [&plain, &tool] {
        assert_eq!((m(p).uid(), m(p).gid()), (0, 0), "{}", p.display());
    }
    assert_eq!(get_xattr(&tool, "security.capability"), None);
    assert_eq!(get_xattr(&tool, "trusted.x"), None);
    assert_eq!(get_xattr(&plain, "trusted.dir"), None);
    assert_eq!(
        get_xattr(&tool, "user.colour").as_deref(),
        Some(&b"blue"[..])
    );
    // -v names each.
    let (stdout, _) = export(&store, 0, &["-v", "/", out("named").to_str().unwrap()]);
    let named = out("named").join("p");
    for line in [
        format!("{}: device nodes not kept", named.join("sda").display()),
        format!(
            "{}: file capabilities not kept",
            named.join("tool").display()
        ),
        format!(
            "{}: setuid/setgid bits not kept (mode 6755)",
            named.join("tool").display()
        ),
        format!("{}: owners not kept (1234:5678)", named.display()),
        format!(
            "{}: security/trusted attributes not kept (trusted.dir)",
            named.display()
        ),
    ] {
        assert!(stdout.contains(&line), "{line}: {stdout}");
    }
    // Asked: all of it.
    let (stdout, _) = export(
        &store,
        0,
        &["--keep-privileged", "/", out("kept").to_str().unwrap()],
    );
    assert!(!stdout.contains("left out"), "{stdout}");
    let kept = out("kept").join("p");
    let sda = m(&kept.join("sda"));
    assert!(sda.file_type().is_block_device() && sda.rdev() == dev(8, 0));
    let mem = m(&kept.join("mem"));
    assert!(mem.file_type().is_char_device() && mem.rdev() == dev(1, 1));
    let tool = kept.join("tool");
    assert_eq!(m(&tool).mode() & 0o7777, 0o6755);
    for p in [&kept, &tool] {
        assert_eq!((m(p).uid(), m(p).gid()), (1234, 5678), "{}", p.display());
    }
    assert_eq!(get_xattr(&tool, "security.capability"), Some(cap_setuid()));
    assert_eq!(get_xattr(&tool, "trusted.x").as_deref(), Some(&b"t"[..]));
    assert_eq!(get_xattr(&kept, "trusted.dir").as_deref(), Some(&b"d"[..]));
}
