//! What a peer, or all of them together, can hold of the daemon.
//!
//! - Connections are capped in all (`[daemon] max_connections`, and never closer than
//!   256 to the process's file limit, which is raised to its hard limit at start) and
//!   per peer (`max_connections_per_peer`): an address, and on loopback an address and
//!   the user holding the other end ([`super::peer_uid`]), so that a local process
//!   flooding 127.0.0.1 fills only its own user's share. A connection over either cap
//!   is closed at once, so a flood from one peer leaves room for the others.
//! - `idle_timeout_secs`: a request head must arrive whole within it (which also ends
//!   idle keep-alive connections: hyper's header timer runs while a connection waits
//!   for its next request), and a request body that sends nothing for that long is cut
//!   off. Slow handlers are not timed: only waiting on the peer is.
//! - A failing accept (no file descriptors left, say) backs off, 10 ms doubling to 1 s,
//!   instead of spinning.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};

/// The limits in force.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub per_peer: usize,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            per_peer: 256,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// File descriptors kept for the store, the database and S3 beside the connections.
const FD_RESERVE: u64 = 256;

impl Limits {
    /// Connection caps and the idle timeout: `[daemon]`'s, else the defaults.
    pub fn of(config: &crate::config::Config) -> anyhow::Result<Self> {
        let (d, set) = (Self::default(), &config.daemon);
        let limits = Self {
            max_connections: set.max_connections.unwrap_or(d.max_connections),
            per_peer: set.max_connections_per_peer.unwrap_or(d.per_peer),
            idle_timeout: (set.idle_timeout_secs).map_or(d.idle_timeout, Duration::from_secs),
        };
        if limits.max_connections == 0 || limits.per_peer == 0 || limits.idle_timeout.is_zero() {
            anyhow::bail!("[daemon] max_connections, max_connections_per_peer and idle_timeout_secs must be above 0");
        }
        Ok(limits)
    }

    /// Raises the soft file limit to the hard one, and lowers the connection cap to fit
    /// under it.
    pub fn fit_file_limit(mut self) -> Self {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        // `None` is unlimited.
        if limit.current != limit.maximum {
            limit.current = limit.maximum;
            if let Err(e) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!("cannot raise the file limit: {e}");
            }
        }
        let files = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        let room = files.saturating_sub(FD_RESERVE).max(16);
        if (self.max_connections as u64) > room {
            tracing::warn!(
                "max_connections {} lowered to {room}: the file limit is {files}",
                self.max_connections
            );
            self.max_connections = room as usize;
        }
        self
    }
}

/// Who a connection counts against: its address, and on loopback the user at the
/// other end when known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: IpAddr,
    pub uid: Option<u32>,
}

impl Peer {
    /// The peer of connection `peer` -> `local`.
    pub fn of(local: std::net::SocketAddr, peer: std::net::SocketAddr) -> Self {
        let uid = if peer.ip().is_loopback() {
            super::peer_uid::of(local, peer)
        } else {
            None
        };
        Self {
            addr: peer.ip(),
            uid,
        }
    }
}

/// Counts connections, in all and per peer.
pub struct Admission {
    limits: Limits,
    open: Mutex<(usize, HashMap<Peer, usize>)>,
    refused: AtomicU64,
}

/// One admitted connection; dropping it frees its place.
pub struct Ticket {
    admission: Arc<Admission>,
    peer: Peer,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::new((0, HashMap::new())),
            refused: AtomicU64::new(0),
        })
    }

    /// Connections open now, and refused since start.
    pub fn counts(&self) -> (usize, u64) {
        let open = self.open.lock().expect("admission lock").0;
        (open, self.refused.load(Ordering::Relaxed))
    }

    /// A place for a connection from `peer`, or why there is none.
    pub fn admit(self: &Arc<Self>, peer: Peer) -> Result<Ticket, &'static str> {
        let mut open = self.open.lock().expect("admission lock");
        let refuse = |why| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(why)
        };
        if open.0 >= self.limits.max_connections {
            return refuse("the connection cap is reached");
        }
        let mine = open.1.entry(peer).or_default();
        if *mine >= self.limits.per_peer {
            return refuse("this peer's connection cap is reached");
        }
        *mine += 1;
        open.0 += 1;
        Ok(Ticket {
            admission: self.clone(),
            peer,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().expect("admission lock");
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

/// Waits between failed accepts: 10 ms doubling to 1 s, back to none after a success.
#[derive(Default)]
pub struct Backoff(Option<Duration>);

impl Backoff {
    pub fn success(&mut self) {
        self.0 = None;
    }

    /// How long to wait after this failure.
    pub fn failure(&mut self) -> Duration {
        let next = self.0.map_or(Duration::from_millis(10), |d| {
            (d * 2).min(Duration::from_secs(1))
        });
        self.0 = Some(next);
        next
    }
}

/// The idle timeout, carried in each request's extensions to the handlers that read
/// its body.
#[derive(Clone, Copy, Debug)]
pub struct Idle(pub Duration);

/// The idle timeout a request carries (the default one if none).
pub fn idle_of<B>(req: &hyper::Request<B>) -> Duration {
    req.extensions()
        .get::<Idle>()
        .map_or(Limits::default().idle_timeout, |i| i.0)
}

/// The next frame of a request body; an error when the peer sends nothing for `idle`.
pub async fn frame<B>(body: &mut B, idle: Duration) -> Option<Result<Frame<Bytes>, String>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    match tokio::time::timeout(idle, body.frame()).await {
        Ok(f) => f.map(|r| r.map_err(|e| e.to_string())),
        Err(_) => Some(Err(format!("nothing received for {} s", idle.as_secs()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_all_and_per_peer_and_places_come_back() {
        let a = Admission::new(Limits {
            max_connections: 3,
            per_peer: 2,
            idle_timeout: Duration::from_secs(1),
        });
        let peer = |addr: &str, uid| Peer {
            addr: addr.parse().unwrap(),
            uid,
        };
        let (p1, p2) = (peer("10.0.0.1", None), peer("10.0.0.2", None));
        let t1 = a.admit(p1).unwrap();
        let _t2 = a.admit(p1).unwrap();
        assert!(a.admit(p1).is_err(), "per peer");
        let _t3 = a.admit(p2).unwrap();
        assert!(a.admit(p2).is_err(), "in all");
        drop(t1);
        let _t4 = a.admit(p1).unwrap();
        assert_eq!(a.counts(), (3, 2));
    }

    #[test]
    fn on_loopback_each_user_has_a_share_of_its_own() {
        let a = Admission::new(Limits {
            max_connections: 10,
            per_peer: 2,
            idle_timeout: Duration::from_secs(1),
        });
        let local = |uid| Peer {
            addr: "127.0.0.1".parse().unwrap(),
            uid: Some(uid),
        };
        let _flood = [
            a.admit(local(65534)).unwrap(),
            a.admit(local(65534)).unwrap(),
        ];
        assert!(
            a.admit(local(65534)).is_err(),
            "the flooding user is at its cap"
        );
        let _mine = a.admit(local(1000)).unwrap();
    }

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<_> = (0..10).map(|_| b.failure()).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(waits[9], Duration::from_secs(1));
        b.success();
        assert_eq!(b.failure(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_cut_off() {
        use futures::StreamExt;
        let sent = futures::stream::iter([Ok::<_, String>(Frame::data(Bytes::from_static(b"x")))]);
        let mut body = http_body_util::StreamBody::new(sent.chain(futures::stream::pending()));
        let idle = Duration::from_secs(30);
        let first = frame(&mut body, idle).await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"x"));
        let stalled = frame(&mut body, idle).await.unwrap().unwrap_err();
        assert!(stalled.contains("30 s"), "{stalled}");
    }
}
