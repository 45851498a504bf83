//! WebDAV under `/dav/` against a real daemon: the litmus suite (Debian's `litmus`,
//! written by the authors of neon, which nobody here wrote) runs its basic, copymove,
//! props, locks and http suites. Changes made over WebDAV are versions the API reads;
//! snapshots are read-only under `/dav/.snapshots/`, and copying out of one restores;
//! beyond loopback the token goes as HTTP Basic's password.

use std::collections::BTreeMap;
use std::process::Command;

use fvfs_tests::daemon::{bare_request, raw, split_answer, whole_answer, Daemon};
use fvfs_tests::{check, run_ok, tree, Fvfsd};

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

/// How many versions the daemon at `addr` holds.
fn versions_now(addr: &str, token: &str) -> usize {
    let bearer = format!("Authorization: Bearer {token}");
    let (_, body) = dav(addr, "GET", "/v1/versions", &[&bearer], b"");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .map_or_else(|| v["versions"].as_array().unwrap().len(), Vec::len)
}

/// A WebDAV client's request (no content type, no fvfs header) with `auth`.
fn dav(addr: &str, method: &str, path: &str, extra: &[&str], body: &[u8]) -> (u16, String) {
    let mut headers = vec!["Host: localhost".to_owned()];
    headers.extend(extra.iter().map(|h| h.to_string()));
    raw(addr, &bare_request(method, path, &headers, body))
}

#[test]
fn webdav_changes_are_versions_and_snapshots_are_read_only() {
    let store = Fvfsd::new();
    // Listening beyond loopback: every request needs the token, even from here.
    let d = Daemon::start(&store, "0.0.0.0:0", &["--no-mdns"]);
    let addr = format!("127.0.0.1:{}", d.addr.rsplit(':').next().unwrap());
    let token = store.run(["token"]).trim().to_owned();
    let basic = format!(
        "Authorization: Basic {}",
        base64_encode(format!("anyone:{token}").as_bytes())
    );
    let auth = [basic.as_str()];
    let (status, body) = dav(&addr, "PROPFIND", "/dav/", &["Depth: 1"], b"");
    assert_eq!(status, 401, "{body}");
    let wrong = format!("Authorization: Basic {}", base64_encode(b"anyone:wrong"));
    assert_eq!(
        dav(&addr, "PROPFIND", "/dav/", &[&wrong, "Depth: 1"], b"").0,
        401
    );

    assert_eq!(dav(&addr, "MKCOL", "/dav/docs", &auth, b"").0, 201);
    assert_eq!(dav(&addr, "PUT", "/dav/docs/a.txt", &auth, b"first").0, 201);
    let (status, got) = dav(
        &addr,
        "GET",
        "/v1/files/docs/a.txt",
        &[&format!("Authorization: Bearer {token}")],
        b"",
    );
    assert_eq!(
        (status, got.as_str()),
        (200, "first"),
        "the API reads what WebDAV wrote"
    );
    let snap = d
        .fvfsc([
            "--url",
            &format!("http://{addr}"),
            "snapshot",
            "create",
            "before",
        ])
        .env("FVFS_TOKEN", &token)
        .output()
        .unwrap();
    check(&snap, 0);
    // A property set on the file survives its overwrite (as do its mode and xattrs).
    let patch = br#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:fvfs-test"><D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>"#;
    assert_eq!(
        dav(
            &addr,
            "PROPPATCH",
            "/dav/docs/a.txt",
            &[&basic, "Content-Type: application/xml"],
            patch
        )
        .0,
        207
    );
    assert_eq!(
        dav(&addr, "PUT", "/dav/docs/a.txt", &auth, b"second").0,
        204
    );
    let (status, got) = dav(&addr, "GET", "/dav/docs/a.txt", &auth, b"");
    assert_eq!((status, got.as_str()), (200, "second"));
    let (_, props) = dav(
        &addr,
        "PROPFIND",
        "/dav/docs/a.txt",
        &[&basic, "Depth: 0"],
        b"",
    );
    assert!(
        props.contains("colour") && props.contains("blue"),
        "{props}"
    );
    let old = "/dav/.snapshots/before/docs/a.txt";
    assert_eq!(
        dav(&addr, "GET", old, &auth, b""),
        (200, "first".to_owned())
    );
    // Whatever a stored file's name says, a browser never runs it as a page here.
    let whole = whole_answer(
        &addr,
        &bare_request("GET", old, &["Host: localhost", &basic], b""),
    );
    let lower = whole.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: sandbox")
            && lower.contains("x-content-type-options: nosniff"),
        "{whole}"
    );
    for (method, path) in [
        ("PUT", "/dav/.snapshots/before/docs/b.txt"),
        ("DELETE", old),
        ("MKCOL", "/dav/.snapshots/before/new"),
    ] {
        let body: &[u8] = if method == "PUT" { b"x" } else { b"" };
        let (status, body) = dav(&addr, method, path, &auth, body);
        assert!(
            status == 403 || status == 405,
            "{method} {path}: {status} {body}"
        );
    }
    // Copying out of a snapshot restores.
    let dest = format!("Destination: http://{addr}/dav/docs/restored.txt");
    assert_eq!(dav(&addr, "COPY", old, &[&basic, &dest], b"").0, 201);
    assert_eq!(
        dav(&addr, "GET", "/dav/docs/restored.txt", &auth, b"").1,
        "first"
    );
    let (status, listing) = dav(&addr, "PROPFIND", "/dav/docs/", &[&basic, "Depth: 1"], b"");
    assert_eq!(status, 207, "{listing}");
    for name in ["a.txt", "restored.txt", "getetag"] {
        assert!(listing.contains(name), "{listing}");
    }
    // Files clients write for themselves stay out of the tree and its history.
    let quiet = versions_now(&addr, &token);
    for name in [".DS_Store", "._a.txt", "Thumbs.db"] {
        let path = format!("/dav/docs/{name}");
        assert_eq!(
            dav(&addr, "PUT", &path, &auth, b"window positions").0,
            201,
            "{name}"
        );
        assert_eq!(dav(&addr, "GET", &path, &auth, b"").1, "window positions");
    }
    assert_eq!(versions_now(&addr, &token), quiet, "no version for them");
    let bearer = format!("Authorization: Bearer {token}");
    let (status, ls) = dav(&addr, "GET", "/v1/ls/docs", &[&bearer], b"");
    assert_eq!(status, 200, "{ls}");
    assert!(
        ls.contains("a.txt") && !ls.contains("DS_Store") && !ls.contains("._a"),
        "{ls}"
    );
    // One of those names in the tree (written another way) is the tree's file.
    let api_put = bare_request(
        "PUT",
        "/v1/files/docs/desktop.ini",
        &[
            "Host: localhost",
            &bearer,
            "Content-Type: application/octet-stream",
        ],
        b"[.ShellClassInfo]",
    );
    assert_eq!(raw(&addr, &api_put).0, 201);
    assert_eq!(
        dav(&addr, "GET", "/dav/docs/desktop.ini", &auth, b"").1,
        "[.ShellClassInfo]"
    );
    assert_eq!(
        dav(&addr, "DELETE", "/dav/docs/.DS_Store", &auth, b"").0,
        204
    );
    assert_eq!(dav(&addr, "GET", "/dav/docs/.DS_Store", &auth, b"").0, 404);

    // A folder copied and deleted whole: one version each, however many files.
    for i in 0..30 {
        let path = format!("/dav/docs/many-{i}.txt");
        assert_eq!(dav(&addr, "PUT", &path, &auth, b"x").0, 201);
    }
    let versions = || versions_now(&addr, &token);
    let before = versions();
    let dest = format!("Destination: http://{addr}/dav/copy-of-docs");
    assert_eq!(
        dav(&addr, "COPY", "/dav/docs", &[&basic, &dest], b"").0,
        201
    );
    assert_eq!(versions(), before + 1, "a folder copy is one version");
    let (_, copied) = dav(&addr, "GET", "/dav/copy-of-docs/many-29.txt", &auth, b"");
    assert_eq!(copied, "x");
    assert_eq!(dav(&addr, "DELETE", "/dav/copy-of-docs", &auth, b"").0, 204);
    assert_eq!(versions(), before + 2, "a folder delete is one version");
    assert_eq!(
        dav(&addr, "GET", "/dav/copy-of-docs/many-29.txt", &auth, b"").0,
        404
    );
    // An upload cut off before its announced length changes nothing.
    let cut_at = versions_now(&addr, &token);
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!(
            "PUT /dav/docs/cut.bin HTTP/1.1\r\nHost: localhost\r\n{basic}\r\nContent-Length: 100000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&[7u8; 1000]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }
    assert_eq!(dav(&addr, "GET", "/dav/docs/cut.bin", &auth, b"").0, 404);
    assert_eq!(versions_now(&addr, &token), cut_at, "nothing committed");
    let log = d
        .fvfsc(["--url", &format!("http://{addr}"), "log"])
        .env("FVFS_TOKEN", &token)
        .output()
        .unwrap();
    check(&log, 0);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("dav put /docs/a.txt") && log.contains("dav copy"),
        "{log}"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A davfs2 mount of a daemon's `/dav/`, unmounted (every upload finished) on drop.
struct Davfs {
    dir: std::path::PathBuf,
    mounted: bool,
}

impl Davfs {
    fn mount(url: &str, dir: &std::path::Path, work: &std::path::Path) -> Self {
        // davfs2 up to 1.7.1 lists nothing on kernels from 6.16 on unless its buffer is
        // at least 64 KiB; uploads at once, so a test need not wait for them.
        let conf = work.join("davfs2.conf");
        std::fs::write(&conf, "buf_size 64\ndelay_upload 0\nuse_locks 1\n").unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new("mount.davfs")
            .arg("-o")
            .arg(format!("conf={}", conf.display()))
            .arg(url)
            .arg(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("mount.davfs (apt install davfs2; scripts/install-deps.sh does)");
        // No user name, no password: the daemon listens on loopback.
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"\n\n").unwrap();
        assert!(child.wait().unwrap().success(), "mount.davfs failed");
        Self {
            dir: dir.to_owned(),
            mounted: true,
        }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.join(rel)
    }

    /// Unmounts, waiting for davfs2 to upload what it holds.
    fn unmount(&mut self) {
        if std::mem::take(&mut self.mounted) {
            run_ok(Command::new("umount").arg(&self.dir));
        }
    }
}

impl Drop for Davfs {
    fn drop(&mut self) {
        self.unmount();
    }
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

/// The bytes of a file larger than 4 GiB, made on the fly: a random block of an odd
/// length repeated (so the store keeps one block's chunks, not 4 GiB).
struct Big {
    block: Vec<u8>,
    len: u64,
}

impl Big {
    fn new(len: u64) -> Self {
        let mut block = vec![0u8; (1 << 20) + 4093];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for b in &mut block {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        Self { block, len }
    }

    fn at(&self, offset: u64) -> u8 {
        self.block[(offset % self.block.len() as u64) as usize]
    }

    /// Writes all of it to `w`, returning its hash.
    fn write_to(&self, w: &mut impl std::io::Write) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new();
        let mut done = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        while done < self.len {
            let n = buf.len().min((self.len - done) as usize);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = self.at(done + i as u64);
            }
            hasher.update(&buf[..n]);
            w.write_all(&buf[..n]).unwrap();
            done += n as u64;
        }
        hasher.finalize()
    }
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

/// A chunked PUT as macOS Finder sends it: no `Content-Length`, the size in
/// `X-Expected-Entity-Length`.
fn finder_put(addr: &str, path: &str, expected: usize, body: &[u8]) -> u16 {
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\nX-Expected-Entity-Length: {expected}\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    raw(addr, &request).0
}

#[test]
fn a_finder_upload_commits_only_when_it_brought_the_size_it_announced() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // Printable, since the test reads it back as text.
    let whole: Vec<u8> = (0..5_000u32).map(|i| (i % 95 + 32) as u8).collect();
    assert_eq!(
        finder_put(&d.addr, "/dav/photo.jpg", whole.len(), &whole),
        201
    );
    let (status, got) = d.raw(&fvfs_tests::daemon::request(
        "GET",
        "/v1/files/photo.jpg",
        &[],
        b"",
    ));
    assert_eq!((status, got.len()), (200, whole.len()));
    assert_eq!(blake3::hash(got.as_bytes()), blake3::hash(&whole));

    // Fewer bytes than announced (the Mac went to sleep): refused, nothing committed.
    let versions = || dav(&d.addr, "GET", "/v1/versions", &[], b"").1;
    let before = versions();
    let status = finder_put(&d.addr, "/dav/half.jpg", whole.len(), &whole[..2_000]);
    assert!(status >= 400, "a short upload answered {status}");
    assert_eq!(dav(&d.addr, "GET", "/dav/half.jpg", &[], b"").0, 404);
    assert_eq!(versions(), before, "nothing committed");
}

/// A PROPFIND's status, headers and body, asked over HTTP/1.0 so that the body comes
/// whole, not in chunks.
fn propfind(addr: &str, path: &str, depth: &str, body: &str) -> (u16, String, String) {
    let request = format!(
        "PROPFIND {path} HTTP/1.0\r\nHost: localhost\r\nDepth: {depth}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    split_answer(&whole_answer(addr, request.as_bytes()))
}

/// An XML answer as one string of what it means: names with their namespaces,
/// children and text in order (prefixes and namespace declarations left out).
fn meaning(xml: &str) -> String {
    fn walk(e: &xmltree::Element, out: &mut String) {
        out.push_str(&format!(
            "<{{{}}}{}>",
            e.namespace.as_deref().unwrap_or(""),
            e.name
        ));
        for c in &e.children {
            match c {
                xmltree::XMLNode::Element(k) => walk(k, out),
                xmltree::XMLNode::Text(t) => out.push_str(t),
                _ => {}
            }
        }
        out.push_str("</>");
    }
    let root = xmltree::Element::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let mut out = String::new();
    walk(&root, &mut out);
    out
}

/// PROPFINDs answered by [`propfind`] so far (the daemon counts them under their own
/// route).
fn direct_answers(addr: &str) -> u64 {
    let metrics = raw(
        addr,
        &bare_request("GET", "/metrics", &["Host: localhost"], b""),
    )
    .1;
    metrics
        .lines()
        .filter(|l| l.starts_with("fvfs_http_requests_total{route=\"dav_propfind\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn listings_answered_directly_say_what_dav_server_says() {
    // Names that need encoding or escaping, an executable, a file dated before 1970,
    // an empty file and folder, and a folder long enough to be sent in pieces.
    let src = tempfile::tempdir().unwrap();
    let docs = src.path().join("docs");
    std::fs::create_dir_all(docs.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(docs.join("empty")).unwrap();
    for (name, body) in [
        ("a b&c.txt", &b"words"[..]),
        ("\u{e9}t\u{e9}.html", b"<p>"),
        ("100%.md", b"# all"),
        ("<odd>.txt", b">"),
        (".hidden", b"h"),
        ("nothing", b""),
        ("archive.tar.gz", b"gz"),
        ("sub/inner.json", b"{}"),
    ] {
        std::fs::write(docs.join(name), body).unwrap();
    }
    let run = docs.join("run.sh");
    std::fs::write(&run, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(docs.join("old.txt"), "old").unwrap();
    run_ok(
        Command::new("touch")
            .args(["-d", "1960-01-01"])
            .arg(docs.join("old.txt")),
    );
    for i in 0..1200 {
        std::fs::write(docs.join(format!("sub/f{i:04}")), i.to_string()).unwrap();
    }
    let store = Fvfsd::new();
    store.run(["migrate", "--local-src", src.path().to_str().unwrap()]);
    store.run(["snapshot", "create", "then"]);
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);

    // What dav-server answers the same question: it takes every request that names a
    // property this daemon does not answer itself (dav-server leaves out properties it
    // has no value for, so the stranger changes nothing), or that includes one.
    let stranger = r#"<x:colour xmlns:x="urn:example"/>"#;
    let known = r#"<D:resourcetype/><D:getcontentlength/><D:getcontenttype/><D:getetag/>
        <D:getlastmodified/><D:lockdiscovery/><D:supportedlock/><D:creationdate/>
        <D:displayname/><D:getcontentlanguage/><D:quota-used-bytes/>
        <D:quota-available-bytes/><A:executable/>"#;
    let body = |inner: &str| {
        format!(
            r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:A="http://apache.org/dav/props/">{inner}</D:propfind>"#
        )
    };
    let questions = [
        (
            "allprop",
            body("<D:allprop/>"),
            body(&format!("<D:allprop/><D:include>{stranger}</D:include>")),
        ),
        (
            "empty body",
            String::new(),
            body(&format!("<D:allprop/><D:include>{stranger}</D:include>")),
        ),
        (
            "named",
            body(&format!("<D:prop>{known}</D:prop>")),
            body(&format!("<D:prop>{known}{stranger}</D:prop>")),
        ),
        (
            "two",
            body("<D:prop><D:getetag/><D:resourcetype/></D:prop>"),
            body(&format!(
                "<D:prop><D:getetag/>{stranger}<D:resourcetype/></D:prop>"
            )),
        ),
    ];
    let places = [
        ("/dav/docs/", "1"),
        ("/dav/docs", "1"),
        ("/dav/docs/sub/", "1"),
        ("/dav/docs/empty/", "1"),
        ("/dav/docs/", "0"),
        ("/dav/docs/run.sh", "0"),
        ("/dav/docs/run.sh", "1"),
        ("/dav/docs/%C3%A9t%C3%A9.html", "0"),
        ("/dav/.snapshots/then/docs/", "1"),
    ];
    for (path, depth) in places {
        for (what, fast, slow) in &questions {
            let before = direct_answers(&d.addr);
            let (status, head, answer) = propfind(&d.addr, path, depth, fast);
            assert_eq!(status, 207, "{path} {what}: {answer}");
            assert_eq!(
                direct_answers(&d.addr),
                before + 1,
                "{path} {what}: answered directly"
            );
            let (status, slow_head, expected) = propfind(&d.addr, path, depth, slow);
            assert_eq!(status, 207, "{path} {what}: {expected}");
            assert_eq!(
                direct_answers(&d.addr),
                before + 1,
                "{path} {what}: dav-server's answer"
            );
            assert_eq!(
                meaning(&answer),
                meaning(&expected),
                "{path} depth {depth}, {what}"
            );
            for h in ["content-type:", "content-location:", "cache-control:"] {
                let line = |head: &str| head.lines().find(|l| l.starts_with(h)).map(str::to_owned);
                assert_eq!(line(&head), line(&slow_head), "{path} {what}: {h}");
            }
        }
    }
    let (_, _, sub) = propfind(&d.addr, "/dav/docs/sub/", "1", "");
    assert_eq!(
        sub.matches("<D:response>").count(),
        1 + 1200 + 2,
        "the folder, its files and folder"
    );
    let (_, _, old) = propfind(&d.addr, "/dav/docs/old.txt", "0", "");
    assert!(
        old.contains("Thu, 01 Jan 1970 00:00:00 GMT"),
        "dated as early as HTTP can: {old}"
    );

    // A lock in the folder, or a property someone stored on a file in it, and the
    // listing is dav-server's again: it shows both.
    let by_dav_server = |path: &str, why: &str| {
        let before = direct_answers(&d.addr);
        let (_, _, listing) = propfind(&d.addr, path, "1", "");
        assert_eq!(direct_answers(&d.addr), before, "{why}: dav-server answers");
        listing
    };
    let lock = |path: &str, extra: &[&str]| {
        let body = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>"#;
        let (status, held) = dav(&d.addr, "LOCK", path, extra, body.as_bytes());
        assert_eq!(status, 200, "{held}");
        let token = held
            .split("<D:href>")
            .nth(1)
            .and_then(|s| s.split("</D:href>").next())
            .unwrap()
            .to_owned();
        format!("Lock-Token: <{token}>")
    };
    let held = lock("/dav/docs/run.sh", &["Timeout: Second-600"]);
    let listing = by_dav_server("/dav/docs/", "a lock under the folder");
    assert!(
        listing.contains("<D:activelock>") && listing.contains("tester"),
        "{listing}"
    );
    assert_eq!(
        dav(&d.addr, "UNLOCK", "/dav/docs/run.sh", &[&held], b"").0,
        204
    );
    // A lock on the folder above, even of depth 0, shows in the listing below it.
    let held = lock("/dav/docs/", &["Depth: 0", "Timeout: Second-600"]);
    let listing = by_dav_server("/dav/docs/sub/", "a lock above the folder");
    assert!(listing.contains("<D:activelock>"), "{listing}");
    assert_eq!(dav(&d.addr, "UNLOCK", "/dav/docs/", &[&held], b"").0, 204);
    let patch = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:example"><D:set><D:prop><x:colour>teal</x:colour></D:prop></D:set></D:propertyupdate>"#;
    assert_eq!(
        dav(
            &d.addr,
            "PROPPATCH",
            "/dav/docs/nothing",
            &[],
            patch.as_bytes()
        )
        .0,
        207
    );
    let listing = by_dav_server("/dav/docs/", "a stored property");
    assert!(listing.contains("teal"), "{listing}");
}
