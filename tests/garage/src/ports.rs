//! Loopback ports: fresh free ones for a new node, and a check that a restarting node's
//! own are still free. A port picked free may be taken before Garage binds it; the
//! caller finds out from the node's log and starts over with new ports.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::{Context, Result};

use crate::state::Ports;

/// Three distinct ports free on 127.0.0.1 now (held together while picked).
pub fn pick() -> Result<Ports> {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0");
    let held = [bind()?, bind()?, bind()?];
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).context("local address");
    Ok(Ports {
        rpc: port(&held[0])?,
        s3: port(&held[1])?,
        admin: port(&held[2])?,
    })
}

/// The first of `ports` that something on this machine holds (binding it fails).
pub fn first_taken(ports: Ports) -> Option<u16> {
    [ports.rpc, ports.s3, ports.admin]
        .into_iter()
        .find(|&p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_err())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Held by each test that binds: a port bound with port 0 in one test can be one the
    /// other has just picked and released (CI stop 37 saw it), so they take turns.
    static BINDING: Mutex<()> = Mutex::new(());

    #[test]
    fn picked_ports_are_distinct_and_free() {
        let _turn = BINDING.lock().unwrap();
        let ports = pick().unwrap();
        assert!(ports.rpc != ports.s3 && ports.s3 != ports.admin && ports.rpc != ports.admin);
        assert_eq!(first_taken(ports), None);
    }

    #[test]
    fn a_held_port_is_found_taken() {
        let _turn = BINDING.lock().unwrap();
        let mut ports = pick().unwrap();
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        ports.admin = holder.local_addr().unwrap().port();
        assert_eq!(first_taken(ports), Some(ports.admin));
    }
}
