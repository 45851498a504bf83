//! Names too long: refused at every entry point, and a tree that holds some (stored before the limit) still lists, mounts and exports.

use super::*;

/// `(status, error code)` of an answer.
fn code_of(answer: &(u16, String)) -> (u16, String) {
    let v: Value = serde_json::from_str(&answer.1).unwrap_or(Value::Null);
    (answer.0, v["error"].as_str().unwrap_or_default().to_owned())
}

/// Names over 255 bytes and paths over 4,095 are refused at every entry point with
/// `name_too_long` (the API's writes, WebDAV, the mount) or named and passed (migrate,
/// `put -r`); nothing of them is stored.
#[test]
fn names_too_long_are_refused_at_every_entry_point() {
    use fvfs_tests::daemon::bare_request;
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    put(&d, "/ok/f", b"f");
    let long = format!("/ok/{}", "l".repeat(300));
    let huge = format!("/ok/{}", "h".repeat(4096));
    // Every name short, the path too long.
    let deep = format!("/ok{}", format!("/{}", "d".repeat(200)).repeat(21));
    let too_long = (400, "name_too_long".to_owned());
    for path in [&long, &huge, &deep] {
        let shown = &path[..40];
        let put = d.raw(&request("PUT", &format!("/v1/files{path}"), &[], b"x"));
        assert_eq!(code_of(&put), too_long, "PUT {shown}: {}", put.1);
        for op in [
            json!({"op": "file", "path": path, "mode": 0o644, "mtime_ns": 0, "size": 0}),
            mkdir(path),
            symlink(path, Path::new("t")),
            json!({"op": "special", "path": path, "kind": "Fifo", "mode": 0o644, "mtime_ns": 0}),
            json!({"op": "rename", "from": "/ok/f", "to": path}),
            json!({"op": "link", "from": "/ok/f", "to": path}),
            json!({"op": "copy", "from": "/ok/f", "to": path}),
        ] {
            let answer = d.try_commit(vec![op.clone()]);
            assert_eq!(
                code_of(&answer),
                too_long,
                "{} {shown}: {}",
                op["op"],
                answer.1
            );
        }
        for method in ["PUT", "MKCOL"] {
            let dav = format!("/dav{path}");
            let answer = d.raw(&bare_request(method, &dav, &["Host: localhost"], b"x"));
            assert!(
                (400..500).contains(&answer.0),
                "{method} {shown}: {answer:?}"
            );
        }
    }
    let listing = d.fvfsc(["ls", "/ok"]).output().unwrap();
    check(&listing, 0);
    assert_eq!(String::from_utf8_lossy(&listing.stdout).lines().count(), 1);

    // A local tree whose paths get too long below the destination: the rest goes in,
    // the too-long path is named.
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let level = |c: &str| format!("/{}", c.repeat(250)).repeat(8);
    let at = PathBuf::from(format!("{}{}", src.display(), level("d")));
    fs::create_dir_all(&at).unwrap();
    fs::write(at.join("kept"), b"k").unwrap();
    fs::create_dir(at.join("x".repeat(200))).unwrap();
    fs::write(at.join("x".repeat(200)).join("lost"), b"l").unwrap();
    let src_arg = src.to_str().unwrap();
    let up = format!("/up{}", level("p"));
    let out = d.fvfsc(["put", &up, "-r", src_arg]).output().unwrap();
    check(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("longer than 4,095 bytes"), "{stderr}");
    let deepest = format!("{up}{}", level("d"));
    let listed = d.fvfsc(["ls", &deepest]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("kept"));
    drop(d);
    let mig = format!("/mig{}", level("p"));
    let out = store
        .cmd(["migrate", "--local-src", src_arg, "--dest", &mig])
        .output()
        .unwrap();
    check(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("longer than 4,095 bytes"), "{stderr}");
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let deepest = format!("{mig}{}", level("d"));
    let listed = d.fvfsc(["ls", &deepest]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("kept"));
}

/// Through a mount, a name over 255 bytes is ENAMETOOLONG and nothing is made.
#[test]
fn the_mount_refuses_names_too_long() {
    use fvfs_tests::mount::Mount;
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let work = tempfile::tempdir().unwrap();
    let mut m = Mount::start(&d, &work.path().join("m"), &work.path().join("cache"), &[]);
    let name = "n".repeat(300);
    let e = fs::write(m.path(&name), b"x").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::NAMETOOLONG.raw_os_error())
    );
    let e = fs::create_dir(m.path(&name)).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::NAMETOOLONG.raw_os_error())
    );
    fs::write(m.path("fine"), b"x").unwrap();
    let names: Vec<_> = fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".snapshots")
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("fine")]);
    assert_eq!(m.unmount(), Some(0));
}

/// Writes into `store`'s data directory (no daemon running) a version whose folder
/// `/legacy` holds `fine` and files whose names no local file system holds (300 and
/// 4,096 bytes), as a tree stored before names were limited could; each file holds
/// "content".
fn store_legacy_tree(store: &Fvfsd) {
    use fvfs_manifest::node::{DirNode, Entry, Node};
    use fvfs_manifest::{ChunkKind, ChunkRef, FileRef, Pending, Repo, VersionKind};
    let home = store.home.path();
    let chunks = fvfs_cas::PackStore::open(home.join("chunks"), Default::default()).unwrap();
    let kv = fvfs_manifest::kv::Kv::open(&home.join("meta")).unwrap();
    let repo = Repo::new(
        std::sync::Arc::new(chunks),
        kv,
        std::sync::Arc::new(fvfs_manifest::Unindexed),
    );
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pending = Pending::default();
        let data = repo
            .put_chunk(&pending, b"content", ChunkKind::Data)
            .await
            .unwrap();
        let file = FileRef {
            size: 7,
            node: None,
            chunks: vec![ChunkRef { id: data, len: 7 }],
        };
        let names = [b"fine".to_vec(), vec![b'h'; 4096], vec![b'l'; 300]];
        let entries = names
            .into_iter()
            .map(|name| Entry {
                name,
                ..file.clone().entry(0o644, 0)
            })
            .collect();
        let legacy = repo
            .put_node(&pending, &Node::Dir(DirNode { entries }))
            .await
            .unwrap();
        let folder = Entry {
            name: b"legacy".to_vec(),
            id: Some(legacy),
            ..Entry::dir(0o755, 0)
        };
        let root = DirNode {
            entries: vec![folder],
        };
        let root = repo.put_node(&pending, &Node::Dir(root)).await.unwrap();
        let lock = repo.lock().await;
        lock.commit(&pending, root, 21, VersionKind::Write, "legacy")
            .await
            .unwrap();
    });
}

/// A tree that already holds names too long for a local file system lists through the
/// API, mounts (the folder lists without them, the rest reads) and exports past them,
/// naming each.
#[test]
fn a_tree_holding_names_too_long_lists_mounts_and_exports_past_them() {
    use fvfs_tests::mount::Mount;
    let store = Fvfsd::new();
    drop(Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]));
    store_legacy_tree(&store);
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let out = d.fvfsc(["ls", "/legacy"]).output().unwrap();
    check(&out, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let work = tempfile::tempdir().unwrap();
    let mut m = Mount::start(&d, &work.path().join("m"), &work.path().join("cache"), &[]);
    let names: Vec<_> = fs::read_dir(m.path("legacy"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("fine")]);
    assert_eq!(fs::read(m.path("legacy/fine")).unwrap(), b"content");
    assert_eq!(m.unmount(), Some(0));
    let dest = work.path().join("out");
    let (stdout, stderr) = export(&store, 1, &["/legacy", dest.to_str().unwrap()]);
    assert_eq!(fs::read(dest.join("fine")).unwrap(), b"content");
    assert!(stdout.contains("2 files not exported"), "{stdout}");
    for c in ["h", "l"] {
        assert!(stderr.contains(&format!("{c}{c}{c}{c}")), "{c}: {stderr}");
    }
    assert!(stderr.contains("File name too long"), "{stderr}");
}
