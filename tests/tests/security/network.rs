//! The network: slow connections from many addresses, and a man in the middle altering content.

use super::*;

/// Connects from `source` (any 127.x address is this machine's loopback).
fn connect_from(source: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::from((source, 0)))?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// A daemon with `config` as its `[daemon]` section.
fn daemon_with(store: &Fvfsd, config: &str) -> Daemon {
    let path = store.home.path().join("fvfsd.toml");
    std::fs::write(&path, format!("[daemon]\n{config}")).unwrap();
    Daemon::start_with(
        store,
        &["--config", path.to_str().unwrap()],
        "127.0.0.1:0",
        &["--no-mdns"],
    )
}

/// Opens `n` connections from `sources` addresses 127.0.1.2 on (`n / sources` each),
/// each having sent an unfinished request head.
fn slow_connections(to: SocketAddr, n: u32, sources: u32) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let source = std::net::Ipv4Addr::new(127, 0, 1, 2 + (i % sources) as u8);
            let mut s = connect_from(source, to).unwrap();
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            s
        })
        .collect()
}

#[test]
fn slowloris_from_many_addresses_leaves_a_normal_client_served() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // 2,000 sockets need more than the usual soft limit of 1,024 files.
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).unwrap();
    let store = Fvfsd::new();
    // A long idle timeout: the 2,000 stay open for as long as this part takes.
    let d = daemon_with(
        &store,
        "max_connections_per_peer = 100\nidle_timeout_secs = 3600\n",
    );
    let to: SocketAddr = d.addr.parse().unwrap();
    let slow = slow_connections(to, 2000, 20);
    fvfs_tests::until("2,000 slow connections held", || {
        d.gauge("fvfs_connections_open") >= 2000.0
    });
    // One more from a peer at its cap is closed at once, without an answer.
    let mut extra = connect_from(std::net::Ipv4Addr::new(127, 0, 1, 2), to).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        extra.read(&mut buf).unwrap_or(0),
        0,
        "closed without an answer"
    );
    assert!(d.gauge("fvfs_connections_refused") >= 1.0);
    // Meanwhile a normal client is served, writes and reads back.
    for i in 0..20 {
        let path = format!("/v1/files/normal/{i}.txt");
        let body = format!("file {i}");
        assert_eq!(d.raw(&request("PUT", &path, &[], body.as_bytes())).0, 201);
        assert_eq!(d.raw(&request("GET", &path, &[], b"")), (200, body));
    }
    assert!(
        d.gauge("fvfs_connections_open") >= 2000.0,
        "the slow ones were held throughout"
    );
    drop(slow);
    drop(d);

    // Slow heads are cut off after the idle timeout, however steadily they trickle.
    let d = daemon_with(&store, "idle_timeout_secs = 2\n");
    let slow = slow_connections(d.addr.parse().unwrap(), 50, 5);
    fvfs_tests::until("50 slow connections held", || {
        d.gauge("fvfs_connections_open") >= 50.0
    });
    let trickle = std::thread::spawn(move || {
        let mut open = slow;
        let mut closed = 0;
        while !open.is_empty() {
            open.retain_mut(|s| {
                let alive = s.write_all(b"X-A: b\r\n").is_ok();
                closed += usize::from(!alive);
                alive
            });
            std::thread::sleep(Duration::from_millis(200));
        }
        closed
    });
    fvfs_tests::until("the slow connections closed", || {
        d.gauge("fvfs_connections_open") <= 1.0
    });
    assert_eq!(trickle.join().unwrap(), 50);
    assert_eq!(
        d.raw(&request("GET", "/v1/files/normal/0.txt", &[], b"")),
        (200, "file 0".into())
    );
}

/// Forwards connections on `listen` to `to`, replacing `from` by `to_bytes` (same
/// length) in everything the daemon sends back; counts the replacements.
fn tampering_proxy(
    to: SocketAddr,
    from: &'static [u8],
    into: &'static [u8],
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    assert_eq!(from.len(), into.len());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tampered = std::sync::Arc::new(AtomicUsize::new(0));
    let count = tampered.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { break };
            let mut daemon = TcpStream::connect(to).unwrap();
            let (mut c2, mut d2) = (client.try_clone().unwrap(), daemon.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut d2);
                let _ = d2.shutdown(std::net::Shutdown::Write);
            });
            let count = count.clone();
            std::thread::spawn(move || {
                // Holds back only a tail that could start a match with the next read.
                let mut pending = Vec::new();
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = daemon.read(&mut buf) {
                    pending.extend_from_slice(&buf[..n]);
                    let mut i = 0;
                    while let Some(at) = pending[i..].windows(from.len()).position(|w| w == from) {
                        pending[i + at..i + at + from.len()].copy_from_slice(into);
                        count.fetch_add(1, Ordering::SeqCst);
                        i += at + from.len();
                    }
                    let keep = (1..from.len())
                        .rev()
                        .find(|&k| pending.ends_with(&from[..k]))
                        .unwrap_or(0);
                    let send: Vec<u8> = pending.drain(..pending.len() - keep).collect();
                    if client.write_all(&send).is_err() {
                        return;
                    }
                }
                let _ = client.write_all(&pending);
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, tampered)
}

#[test]
fn cat_writes_nothing_that_does_not_match_its_hashes() {
    let store = Fvfsd::new();
    let d = Daemon::start(&store, "127.0.0.1:0", &["--no-mdns"]);
    // Random bytes (kept raw in their frames, so the marker travels as is) with a
    // marker inside.
    let mut rng = fvfs_tests::Rng(17);
    // 12 MB: about 180 chunks, so cat's first batch (64 chunks) is verified and
    // written before the altered one arrives in a later batch.
    let mut content: Vec<u8> = (0..12_000_000).map(|_| rng.next_u64() as u8).collect();
    content[10_000_000..10_000_016].copy_from_slice(b"MARKER-012345678");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &content).unwrap();
    let put = d
        .fvfsc(["put", "/photo.bin", "--from"])
        .arg(file.path())
        .output()
        .unwrap();
    fvfs_tests::check(&put, 0);
    let direct = d.fvfsc(["cat", "/photo.bin"]).output().unwrap();
    fvfs_tests::check(&direct, 0);
    assert!(direct.stdout == content, "cat gives the file back as put");

    let (proxy, tampered) = tampering_proxy(
        d.addr.parse().unwrap(),
        b"MARKER-012345678",
        b"TAMPERED-0000000",
    );
    let out = d
        .fvfsc(["cat", "/photo.bin"])
        .env("FVFS_URL", format!("http://{proxy}"))
        .output()
        .unwrap();
    assert!(
        tampered.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the proxy changed nothing"
    );
    fvfs_tests::check(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("as the daemon sent it"), "{err}");
    assert!(
        !out.stdout.windows(8).any(|w| w == b"TAMPERED"),
        "altered bytes reached stdout"
    );
    assert!(
        !out.stdout.is_empty() && content.starts_with(&out.stdout),
        "what was written ({} bytes) is a verified start of the file",
        out.stdout.len()
    );
}
