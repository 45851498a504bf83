//! Which user holds the other end of a loopback connection, so that the per-peer
//! connection cap counts a local user's connections apart from another's: a process
//! holding hundreds of stalled connections from 127.0.0.1 then fills only its own
//! user's share, and fvfsc, mounts and browsers of other users get in.
//!
//! On Linux the kernel answers with one exact sock_diag lookup of the peer's socket
//! (by its four addresses, `NETLINK_SOCK_DIAG`): one round trip, whatever the number
//! of sockets. Elsewhere, and when the lookup fails, there is no answer and the
//! connection counts by its address alone.

use std::net::SocketAddr;

/// The uid owning the socket at the other end of loopback connection `peer` ->
/// `local` (`None` if unknown).
pub fn of(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        linux::lookup(local, peer)
            .inspect_err(|e| tracing::debug!(%peer, "uid of a loopback peer: {e}"))
            .ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (local, peer);
        None
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::io;
    use std::net::{IpAddr, SocketAddr};

    use rustix::net::netlink::{SocketAddrNetlink, SOCK_DIAG};
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

    /// `SOCK_DIAG_BY_FAMILY`, `NLMSG_ERROR`, `NLM_F_REQUEST`, `IPPROTO_TCP`.
    const BY_FAMILY: u16 = 20;
    const ERROR: u16 = 2;
    const REQUEST: u16 = 1;
    const TCP: u8 = 6;
    /// `struct nlmsghdr`, then `inet_diag_req_v2` up to its socket id.
    const HEADER: usize = 16;
    /// Where `idiag_uid` is in an answer: the header, then `inet_diag_msg`'s family,
    /// state, timer and retrans (4), its socket id (48), expires, rqueue, wqueue (12).
    const UID_AT: usize = HEADER + 4 + 48 + 12;

    /// `struct inet_diag_sockid` of the peer's own socket: its source is the peer,
    /// its destination this end; ports in network order, the cookie "none".
    fn socket_id(local: SocketAddr, peer: SocketAddr) -> Vec<u8> {
        let mut id = Vec::with_capacity(48);
        id.extend_from_slice(&peer.port().to_be_bytes());
        id.extend_from_slice(&local.port().to_be_bytes());
        for ip in [peer.ip(), local.ip()] {
            let mut addr = [0u8; 16];
            match ip {
                IpAddr::V4(v4) => addr[..4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => addr.copy_from_slice(&v6.octets()),
            }
            id.extend_from_slice(&addr);
        }
        id.extend_from_slice(&0u32.to_ne_bytes()); // interface: any
        id.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
        id
    }

    pub fn lookup(local: SocketAddr, peer: SocketAddr) -> io::Result<u32> {
        let family = match peer.ip() {
            IpAddr::V4(_) => AddressFamily::INET,
            IpAddr::V6(_) => AddressFamily::INET6,
        };
        let id = socket_id(local, peer);
        let mut req = Vec::with_capacity(HEADER + 8 + id.len());
        let len = (HEADER + 8 + id.len()) as u32;
        req.extend_from_slice(&len.to_ne_bytes());
        req.extend_from_slice(&BY_FAMILY.to_ne_bytes());
        req.extend_from_slice(&REQUEST.to_ne_bytes());
        req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        req.extend_from_slice(&[family.as_raw() as u8, TCP, 0, 0]);
        req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
        req.extend_from_slice(&id);
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(SOCK_DIAG),
        )?;
        rustix::net::sendto(&fd, &req, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))?;
        let mut answer = [0u8; 512];
        let (n, _) = rustix::net::recv(&fd, &mut answer, RecvFlags::empty())?;
        let answer = &answer[..n];
        let u16_at = |at: usize| u16::from_ne_bytes([answer[at], answer[at + 1]]);
        let u32_at =
            |at: usize| u32::from_ne_bytes(answer[at..at + 4].try_into().expect("4 bytes"));
        if n < HEADER {
            return Err(io::Error::other("short answer"));
        }
        match u16_at(4) {
            BY_FAMILY if n >= UID_AT + 4 => {
                // The answer is about the socket asked for: its ports, as sent.
                if answer[HEADER + 4..HEADER + 8] != id[..4] {
                    return Err(io::Error::other("an answer about another socket"));
                }
                Ok(u32_at(UID_AT))
            }
            ERROR if n >= HEADER + 4 => {
                let errno = i32::from_ne_bytes(answer[HEADER..HEADER + 4].try_into().unwrap());
                Err(io::Error::from_raw_os_error(-errno))
            }
            other => Err(io::Error::other(format!("answer of type {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn the_owner_of_a_loopback_peer_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(of(server.local_addr().unwrap(), peer), Some(me));
        // A socket that is not there: no answer.
        drop(client);
        let gone = SocketAddr::new(peer.ip(), 1);
        assert_eq!(of(server.local_addr().unwrap(), gone), None);
    }
}
