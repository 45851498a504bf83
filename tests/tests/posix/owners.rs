//! Owners and other users: ids mapped between machines, the answers a local disk gives to other users, attributes set right after close.

use super::*;

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
