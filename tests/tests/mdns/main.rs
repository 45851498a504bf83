//! mDNS discovery between two hosts: two network namespaces joined by a veth pair. The
//! daemon runs in one, announces itself, and fvfsc in the other finds it with no URL
//! given, over HTTPS, pinning its certificate; the daemon lists the client it saw. A
//! spoofed daemon announced on the same LAN (its own certificate, the real daemon's node
//! id, or plain HTTP) receives no request and no token; nor does a local user's
//! listener on the daemon's own port while the daemon is down (the daemon's notice
//! makes a local fvfsc insist on its certificate).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use fvfs_tests::daemon::Daemon;
use fvfs_tests::{bin, check, Fvfsd};

mod discovery;
mod spoofing;

/// Two namespaces `<name>-a` (10.77.0.1) and `<name>-b` (10.77.0.2), removed on drop.
struct Net {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

impl Net {
    fn new() -> Option<Self> {
        // Tests run side by side: each pair of namespaces has its own names.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("fv{}n{n}", std::process::id());
        let net = Net {
            a: format!("{tag}a"),
            b: format!("{tag}b"),
        };
        if !ip(&["netns", "add", &net.a]) {
            return None;
        }
        let (va, vb) = (format!("{tag}x"), format!("{tag}y"));
        let (a, b) = (net.a.as_str(), net.b.as_str());
        let ok = ip(&["netns", "add", b])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &va, "netns", a])
            && ip(&["link", "set", &vb, "netns", b])
            && ip(&["-n", a, "addr", "add", "10.77.0.1/24", "dev", &va])
            && ip(&["-n", b, "addr", "add", "10.77.0.2/24", "dev", &vb])
            && ip(&["-n", a, "link", "set", &va, "up"])
            && ip(&["-n", b, "link", "set", &vb, "up"])
            && ip(&["-n", a, "link", "set", "lo", "up"])
            && ip(&["-n", b, "link", "set", "lo", "up"]);
        assert!(ok, "namespaces were created but could not be wired");
        Some(net)
    }

    /// Moves the calling thread (and the threads it starts) into namespace `ns`.
    fn enter(ns: &str) {
        let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("open the netns");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
    }

    fn exec(&self, ns: &str, program: std::path::PathBuf) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// What a spoofed daemon saw: connections, and the bytes it could read from them
/// (decrypted, when it speaks TLS).
#[derive(Default)]
struct Seen {
    connections: usize,
    received: Vec<u8>,
}

/// A daemon that is not fvfsd, announced as `_fvfs._tcp` from namespace `ns`: with its
/// own TLS certificate (announced as its fingerprint), or speaking plain HTTP (no
/// fingerprint announced).
struct Spoof {
    name: String,
    /// `sha256:...` of its certificate, when it speaks TLS.
    fingerprint: Option<String>,
    seen: Arc<Mutex<Seen>>,
    mdns: mdns_sd::ServiceDaemon,
    fullname: String,
}

/// What a spoof presents.
#[derive(Clone)]
enum Cert {
    /// A certificate of its own.
    Own,
    /// A paired daemon's certificate (DER), copied, without its key.
    Stolen(Vec<u8>),
    /// No TLS: plain HTTP, no fingerprint announced.
    Plain,
}

/// Always presents one certificate and key, whether they belong together or not.
#[derive(Debug)]
struct Always(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Always {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl Spoof {
    fn start(ns: &str, listen: &str, name: &str, node_id: &str, cert: Cert) -> Self {
        let (ns, listen, name_, node_id) = (
            ns.to_owned(),
            listen.to_owned(),
            name.to_owned(),
            node_id.to_owned(),
        );
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen_ = seen.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            Net::enter(&ns);
            let listener = TcpListener::bind(&listen).unwrap();
            let addr: SocketAddr = listen.parse().unwrap();
            let identity = (!matches!(cert, Cert::Plain)).then(|| {
                let made = rcgen::generate_simple_self_signed(vec!["fvfsd".to_owned()]).unwrap();
                let der = match &cert {
                    Cert::Stolen(der) => rustls::pki_types::CertificateDer::from(der.clone()),
                    _ => made.cert.der().clone(),
                };
                let hex: String = <sha2::Sha256 as sha2::Digest>::digest(&der)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let key =
                    rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der())
                        .unwrap();
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let signer = provider.key_provider.load_private_key(key).unwrap();
                let presented = Arc::new(rustls::sign::CertifiedKey::new(vec![der], signer));
                let config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(Always(presented)));
                (Arc::new(config), format!("sha256:{hex}"))
            });
            let fingerprint = identity.as_ref().map(|(_, f)| f.clone());
            // Started from this thread, mDNS's own thread lives in this namespace too.
            let mdns = mdns_sd::ServiceDaemon::new().unwrap();
            let mut props = vec![
                ("version", "0.1.0"),
                ("node_id", node_id.as_str()),
                ("role", "daemon"),
            ];
            if let Some(f) = &fingerprint {
                props.push(("fp", f.as_str()));
            }
            let info = mdns_sd::ServiceInfo::new(
                "_fvfs._tcp.local.",
                &name_,
                "spoof.local.",
                addr.ip(),
                addr.port(),
                &props[..],
            )
            .unwrap();
            let fullname = info.get_fullname().to_owned();
            mdns.register(info).unwrap();
            tx.send((mdns, fullname, fingerprint)).unwrap();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let seen = seen_.clone();
                let config = identity.as_ref().map(|(c, _)| c.clone());
                std::thread::spawn(move || {
                    seen.lock().unwrap().connections += 1;
                    // What the client sends, readable: decrypted when the spoof speaks
                    // TLS. A request is answered (503), so a client fooled into sending
                    // one fails instead of waiting.
                    let mut conn: Box<dyn Conn> = match config {
                        Some(config) => Box::new(rustls::StreamOwned::new(
                            rustls::ServerConnection::new(config).unwrap(),
                            stream,
                        )),
                        None => Box::new(stream),
                    };
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = conn.read(&mut buf) {
                        let mut seen = seen.lock().unwrap();
                        seen.received.extend_from_slice(&buf[..n]);
                        if seen.received.windows(4).any(|w| w == b"\r\n\r\n") {
                            let _ = conn.write_all(
                                b"HTTP/1.1 503 Spoof\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            );
                            let _ = conn.flush();
                            break;
                        }
                    }
                });
            }
        });
        let (mdns, fullname, fingerprint) = rx.recv().expect("the spoof started");
        Spoof {
            name: name.to_owned(),
            fingerprint,
            seen,
            mdns,
            fullname,
        }
    }

    fn seen(&self) -> (usize, String) {
        let s = self.seen.lock().unwrap();
        (
            s.connections,
            String::from_utf8_lossy(&s.received).into_owned(),
        )
    }
}

impl Drop for Spoof {
    fn drop(&mut self) {
        if let Ok(done) = self.mdns.unregister(&self.fullname) {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
        let _ = self.mdns.shutdown();
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The real daemon on 10.77.0.1:7734 in namespace a, with its write token.
fn real_daemon(net: &Net, store: &Fvfsd) -> (Daemon, String) {
    let mut serve = net.exec(&net.a, bin("fvfsd"));
    serve
        .args(["serve", "--listen", "10.77.0.1:7734"])
        .env("FVFS_HOME", store.home.path())
        .env_remove("RUST_LOG");
    let daemon = Daemon::spawn(serve);
    let token = store.run(["token"]).trim().to_owned();
    (daemon, token)
}

/// Runs fvfsc in namespace b, as a device whose home (pins, config) is `home`, with
/// `token` unless it is empty.
fn device(net: &Net, home: &std::path::Path, token: &str, args: &[&str]) -> Output {
    let mut c = net.exec(&net.b, bin("fvfsc"));
    c.args(args)
        .env_remove("FVFS_URL")
        .env_remove("VFSD_URL")
        .env_remove("FVFS_FINGERPRINT")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home);
    match token.is_empty() {
        true => c.env_remove("FVFS_TOKEN"),
        false => c.env("FVFS_TOKEN", token),
    };
    c.output().unwrap()
}

/// A local user's listener on an address in namespace `ns`: it answers every request
/// with an empty 200 and keeps what it was sent.
struct Squatter {
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Squatter {
    fn start(ns: &str, addr: &str) -> Self {
        let (ns, addr) = (ns.to_owned(), addr.to_owned());
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready, bound) = std::sync::mpsc::channel();
        let (keep, done) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            Net::enter(&ns);
            let listener = TcpListener::bind(&addr).expect("bind the daemon's port");
            listener.set_nonblocking(true).unwrap();
            ready.send(()).unwrap();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    // Nothing waiting: look again shortly (the stop flag is polled).
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Until a request's head, or a TLS handshake's first record.
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                    if got.first() == Some(&0x16) || got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                keep.lock().unwrap().extend(got);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]");
            }
        });
        bound.recv().expect("the squatter bound its port");
        Self {
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
