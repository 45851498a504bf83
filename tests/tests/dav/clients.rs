//! Real WebDAV clients: the litmus suites, a davfs2 mount doing what people do with files, a file over 4 GiB whole and by range.

use super::*;

#[test]
fn litmus_passes_every_suite_it_runs() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // litmus writes its logs into its working directory.
    let logs = tempfile::tempdir().unwrap();
    let out = Command::new("litmus")
        .current_dir(logs.path())
        .arg(format!("{}/dav/", d.url))
        .env("TESTS", "basic copymove props locks http")
        .output()
        .expect("litmus (apt install litmus; scripts/install-deps.sh does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let suites = summaries(&text);
    println!("litmus: {suites:?}");
    assert_eq!(
        suites.keys().map(String::as_str).collect::<Vec<_>>(),
        ["basic", "copymove", "http", "locks", "props"],
        "{text}"
    );
    for (suite, (passed, failed)) in &suites {
        assert!(
            *passed > 0 && *failed == 0,
            "{suite}: {failed} failed\n{text}"
        );
    }
}

/// `(passed, failed)` of each suite litmus ran, from its summary lines
/// ("<- summary for `basic': of 16 tests run: 16 passed, 0 failed. 100.0%").
fn summaries(out: &str) -> BTreeMap<String, (u32, u32)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.split("summary for `").nth(1)?;
            let (suite, rest) = rest.split_once('\'')?;
            let numbers: Vec<u32> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            // of N tests run: P passed, F failed.
            Some((suite.to_owned(), (*numbers.get(1)?, *numbers.get(2)?)))
        })
        .collect()
}

/// Every directory and file below `root` with its content's hash (WebDAV keeps names
/// and content; modes, owners and links it has no words for).
fn content(root: &std::path::Path) -> BTreeMap<std::path::PathBuf, Option<fvfs_cas::ChunkId>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if path.is_dir() {
                out.insert(rel, None);
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, Some(fvfs_cas::ChunkId::of(&bytes)));
            }
        }
    }
    out
}

/// Files people keep: small and empty ones, names with spaces and accents, folders
/// inside folders, one large file.
fn documents(root: &std::path::Path, big: usize) {
    for d in 0..3 {
        let dir = root.join(format!("album {d}/été"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..40 {
            let len = [0, 10, 4096, 100_000][i % 4] + i;
            std::fs::write(
                dir.join(format!("photo {i}.txt")),
                tree::bytes((d * 100 + i) as u64, len, i % 3 == 0),
            )
            .unwrap();
        }
    }
    tree::write_big(&root.join("film.bin"), 42, big);
}

#[test]
fn a_davfs2_mount_takes_what_people_do_with_files() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    documents(&src, 48 << 20);
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let mut m = Davfs::mount(
        &format!("{}/dav/", d.url),
        &work.path().join("mnt"),
        work.path(),
    );

    run_ok(Command::new("cp").arg("-r").arg(&src).arg(m.path("cp")));
    std::fs::create_dir(m.path("tar")).unwrap();
    let archive = work.path().join("in.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("."),
    );
    run_ok(
        Command::new("tar")
            .args(["--no-same-owner", "--no-same-permissions", "-m", "-xf"])
            .arg(&archive)
            .arg("-C")
            .arg(m.path("tar")),
    );
    run_ok(
        Command::new("rsync")
            .arg("-r")
            .arg(format!("{}/", src.display()))
            .arg(m.path("rsync")),
    );
    // A folder renamed with its files in it.
    std::fs::rename(m.path("rsync"), m.path("renamed")).unwrap();
    // davfs2 uploads in the background: unmounting waits for every upload, and a new
    // mount reads what the daemon holds.
    m.unmount();
    let mut m = Davfs::mount(
        &format!("{}/dav/", d.url),
        &work.path().join("mnt"),
        work.path(),
    );
    assert_eq!(
        content(&m.path("cp")),
        content(&src),
        "cp -r through davfs2"
    );
    // (davfs2 changes a folder's stat when it first lists it, and tar would say "file
    // changed as we read it": listed once here, the folders are settled.)
    assert_eq!(content(&m.path("tar")), content(&src), "tar into davfs2");
    let back = work.path().join("back.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&back)
            .arg("-C")
            .arg(m.path("tar"))
            .arg("."),
    );
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&back)
            .arg("-C")
            .arg(&out),
    );
    assert_eq!(content(&out), content(&src), "tar out of davfs2");
    m.unmount();

    // What the daemon holds, read back without WebDAV.
    let exported = work.path().join("export");
    store.run_code(0, ["export", "/", exported.to_str().unwrap()]);
    for dir in ["cp", "tar", "renamed"] {
        assert_eq!(
            content(&exported.join(dir)),
            content(&src),
            "{dir} as exported"
        );
    }
    assert!(
        !exported.join("rsync").exists(),
        "the rename left nothing behind"
    );
    let cat = d.fvfsc(["cat", "/cp/film.bin"]).output().unwrap();
    assert!(cat.stdout == std::fs::read(src.join("film.bin")).unwrap());
}

/// Sends a request's head to `addr` and reads the answer's status and headers
/// (lowercased names); the stream is left at the start of the body.
fn head_of(
    addr: &str,
    head: &str,
    body: impl FnOnce(&mut std::net::TcpStream),
) -> (
    u16,
    BTreeMap<String, String>,
    std::io::BufReader<std::net::TcpStream>,
) {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    body(&mut s);
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let Some((k, v)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.insert(k.to_ascii_lowercase(), v.trim().to_owned());
    }
    (status, headers, r)
}

#[test]
fn a_file_over_4_gib_goes_in_and_out_whole_and_by_range() {
    use std::io::Read;
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    let big = Big::new((4 << 30) + 12_345);
    let mut sent = None;
    let (status, _, _) = head_of(
        &d.addr,
        &format!(
            "PUT /dav/big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n",
            big.len
        ),
        |s| sent = Some(big.write_to(s)),
    );
    assert_eq!(status, 201);
    let sent = sent.unwrap();

    // Its size, as WebDAV and the API tell it.
    let (status, listing) = dav(&d.addr, "PROPFIND", "/dav/big.bin", &["Depth: 0"], b"");
    assert_eq!(status, 207, "{listing}");
    let size = format!("<D:getcontentlength>{}</D:getcontentlength>", big.len);
    assert!(listing.contains(&size), "{listing}");

    // A range across the 4 GiB line.
    let from = (1u64 << 32) - 10;
    let (status, headers, mut r) = head_of(
        &d.addr,
        &format!(
            "GET /dav/big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Range: bytes={from}-{}\r\n\r\n",
            from + 20
        ),
        |_| {},
    );
    assert_eq!(status, 206);
    assert_eq!(
        headers["content-range"],
        format!("bytes {from}-{}/{}", from + 20, big.len)
    );
    let mut part = Vec::new();
    r.read_to_end(&mut part).unwrap();
    let expected: Vec<u8> = (from..=from + 20).map(|o| big.at(o)).collect();
    assert_eq!(part, expected);

    // The whole file, streamed back.
    let (status, headers, r) = head_of(
        &d.addr,
        "GET /dav/big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        |_| {},
    );
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], big.len.to_string());
    let mut hasher = blake3::Hasher::new();
    let copied = std::io::copy(&mut r.take(big.len + 1), &mut hasher).unwrap();
    assert_eq!(copied, big.len);
    assert_eq!(hasher.finalize(), sent);
}
