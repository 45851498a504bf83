//! mDNS: the daemon announces itself as `_fvfs._tcp.local.` (TXT: version, node id,
//! role, `fp`: its TLS certificate's fingerprint; never a token) and watches for other fvfs daemons, so `/v1/devices` can list
//! the daemons and the clients it has seen.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use fvfs_api::reports::{self, ClientSeen, DaemonSeen};
use fvfs_api::MDNS_SERVICE as SERVICE;
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Daemons seen over mDNS and clients seen over HTTP.
#[derive(Default)]
pub struct Devices {
    daemons: Mutex<BTreeMap<String, DaemonSeen>>,
    clients: Mutex<BTreeMap<IpAddr, ClientSeen>>,
}

impl Devices {
    pub fn client_seen(&self, address: IpAddr, agent: &str) {
        let agent: String = agent.chars().take(200).collect();
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                address,
                ClientSeen {
                    address,
                    agent,
                    last_seen: now(),
                },
            );
    }

    pub fn list(&self) -> reports::Devices {
        let daemons: Vec<DaemonSeen> = self
            .daemons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let clients: Vec<ClientSeen> = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        reports::Devices { daemons, clients }
    }
}

/// The names this machine answers to: its node name as is, and as announced.
pub fn machine_names() -> Vec<String> {
    let raw = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    vec![raw, host_name()]
}

fn host_name() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        "fvfs".into()
    } else {
        clean
    }
}

/// The daemon's registration, withdrawn by [`Announcement::stop`].
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Announcement {
    /// Registers the daemon listening on `listen`, and records daemons seen into `devices`.
    /// `name` is the instance name (default: `fvfsd-HOST-NODEID`).
    pub fn start(
        listen: SocketAddr,
        node_id: &str,
        fingerprint: &fvfs_api::tls::Fingerprint,
        name: Option<&str>,
        devices: &Arc<Devices>,
    ) -> Result<Self> {
        let daemon = ServiceDaemon::new().context("cannot start mDNS")?;
        let host = host_name();
        let instance = match name {
            Some(n) => n.to_owned(),
            None => format!("fvfsd-{host}-{}", &node_id[..8.min(node_id.len())]),
        };
        let fingerprint = fingerprint.to_string();
        let props = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("node_id", node_id),
            ("role", "daemon"),
            (fvfs_api::MDNS_FINGERPRINT, fingerprint.as_str()),
        ];
        let host_fqdn = format!("{host}.local.");
        let info = if listen.ip().is_unspecified() {
            ServiceInfo::new(
                SERVICE,
                &instance,
                &host_fqdn,
                "",
                listen.port(),
                &props[..],
            )?
            .enable_addr_auto()
        } else {
            ServiceInfo::new(
                SERVICE,
                &instance,
                &host_fqdn,
                listen.ip(),
                listen.port(),
                &props[..],
            )?
        };
        let fullname = info.get_fullname().to_owned();
        daemon
            .register(info)
            .context("cannot register the mDNS service")?;
        let events = daemon.browse(SERVICE).context("cannot browse mDNS")?;
        let devices = devices.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                let mut daemons = devices.daemons.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    ServiceEvent::ServiceResolved(s) => {
                        let d = DaemonSeen {
                            name: s.get_fullname().to_owned(),
                            host: s.host.clone(),
                            addresses: s.get_addresses().iter().map(|a| a.to_ip_addr()).collect(),
                            port: s.get_port(),
                            version: s.get_property_val_str("version").map(str::to_owned),
                            node_id: s.get_property_val_str("node_id").map(str::to_owned),
                            fingerprint: s
                                .get_property_val_str(fvfs_api::MDNS_FINGERPRINT)
                                .map(str::to_owned),
                            last_seen: now(),
                        };
                        daemons.insert(d.name.clone(), d);
                    }
                    ServiceEvent::ServiceRemoved(_, name) => {
                        daemons.remove(&name);
                    }
                    _ => {}
                }
            }
        });
        tracing::info!(%fullname, "announced over mDNS");
        Ok(Self { daemon, fullname })
    }

    pub fn stop(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}
