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
    use super::*;

    // Only ports these tests hold are asserted taken: a port found free a moment ago
    // can be taken by anything else on the machine (an outgoing connection's ephemeral
    // port, the Garage node the suite runs), so "still free" is never asserted (CI
    // stop 42 saw a picked port taken by the time it was checked).

    #[test]
    fn picked_ports_are_distinct() {
        let ports = pick().unwrap();
        assert!(ports.rpc != ports.s3 && ports.s3 != ports.admin && ports.rpc != ports.admin);
        assert!(ports.rpc != 0 && ports.s3 != 0 && ports.admin != 0);
    }

    #[test]
    fn the_first_held_port_is_found_taken() {
        let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let held = [bind(), bind(), bind()];
        let port = |i: usize| held[i].local_addr().unwrap().port();
        let ports = Ports {
            rpc: port(0),
            s3: port(1),
            admin: port(2),
        };
        assert_eq!(first_taken(ports), Some(ports.rpc));
        let turned = Ports {
            rpc: ports.admin,
            s3: ports.rpc,
            admin: ports.s3,
        };
        assert_eq!(first_taken(turned), Some(ports.admin));
    }
}
