//! One Garage node in a folder of its own: `state.json` (see `state.rs`), `garage.toml`
//! written from it, `meta/`, `data/`, `garage.log`, `garage.pid` while it runs, and
//! `env` for shell scripts.
//!
//! A node first boots on fresh ports (picked again, up to three times, when Garage
//! reports one taken); later launches reuse its ports and must find them free. It is
//! *started* once its admin API answers with its node id and its S3 port answers, and
//! *serving* once the node calls the cluster healthy and a signed HeadBucket on its own
//! endpoint succeeds.
//!
//! A `Node` stops the process it launched when dropped, unless [`Node::detach`]ed; a
//! process it only found (from the pid file of an earlier command) is stopped only
//! when asked.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::admin::Admin;
use crate::log;
use crate::process::{stop_all, Server};
use crate::state::{NodeState, Secrets};
use crate::wait::{until, Check, Deadline};
use crate::{ports, S3Access, Settings, BUCKET, KEY_NAME};

/// Tries at booting a fresh node on fresh ports.
const BOOT_ATTEMPTS: usize = 3;

pub struct Node {
    /// Absolute.
    pub dir: PathBuf,
    pub state: NodeState,
    settings: Settings,
    server: Option<Server>,
    /// The log's length when the process was launched: what follows is its own.
    log_start: u64,
}

impl Node {
    pub fn config_path(dir: &Path) -> PathBuf {
        dir.join("garage.toml")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("garage.log")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("garage.pid")
    }

    /// A fresh node in `dir` (created if missing; it must hold no node), of a cluster of
    /// `replication_factor` nodes sharing `secrets`, in `zone`, started.
    pub(crate) fn boot(
        dir: &Path,
        secrets: &Secrets,
        zone: String,
        replication_factor: usize,
        settings: &Settings,
        deadline: Deadline,
    ) -> Result<Self> {
        let dir = absolute(dir)?;
        if dir.join("state.json").exists() || dir.join("meta").exists() {
            bail!(
                "{} already holds a garage node: restart it, or remove the folder for a fresh one",
                dir.display()
            );
        }
        let mut attempt = 1;
        loop {
            for sub in ["meta", "data"] {
                std::fs::create_dir_all(dir.join(sub))
                    .with_context(|| format!("create {}/{sub}", dir.display()))?;
            }
            let mut node = Self {
                dir: dir.clone(),
                state: NodeState {
                    ports: ports::pick()?,
                    secrets: secrets.clone(),
                    replication_factor,
                    zone: zone.clone(),
                    bootstrap_peers: Vec::new(),
                    node_id: None,
                },
                settings: settings.clone(),
                server: None,
                log_start: 0,
            };
            match node.launch(deadline) {
                Ok(id) => {
                    node.state.node_id = Some(id);
                    node.save()?;
                    return Ok(node);
                }
                Err(e)
                    if e.is::<log::PortTaken>()
                        && attempt < BOOT_ATTEMPTS
                        && !deadline.passed() =>
                {
                    eprintln!("fvfs-garage: {e}; retrying with other ports");
                    node.kill()?;
                    // Nothing was configured yet: the next try starts from scratch.
                    for sub in ["meta", "data"] {
                        std::fs::remove_dir_all(dir.join(sub))
                            .with_context(|| format!("remove {}/{sub}", dir.display()))?;
                    }
                    attempt += 1;
                }
                Err(e) => return Err(node.failure(e)),
            }
        }
    }

    /// The node a start left in `dir`, with its process if that still runs.
    pub fn open(dir: &Path, settings: &Settings) -> Result<Self> {
        let dir = absolute(dir)?;
        let state_path = dir.join("state.json");
        if !state_path.exists() {
            bail!(
                "{} holds no node started by fvfs-garage (no state.json)",
                dir.display()
            );
        }
        let state = NodeState::read(&state_path)?;
        let server = Server::find(&dir.join("garage.pid"), &Self::config_path(&dir));
        // Only what a running node logs from now on is checked for bind errors.
        let log_start = std::fs::metadata(dir.join("garage.log")).map_or(0, |m| m.len());
        Ok(Self {
            dir,
            state,
            settings: settings.clone(),
            server,
            log_start,
        })
    }

    /// The node's full id (known once it started).
    pub fn id(&self) -> &str {
        self.state.node_id.as_deref().unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Server::pid)
    }

    pub fn running(&self) -> bool {
        self.server.as_ref().is_some_and(Server::alive)
    }

    /// The node's S3 endpoint, the test bucket and the key.
    pub fn s3(&self) -> S3Access {
        S3Access {
            endpoint: format!("http://127.0.0.1:{}", self.state.ports.s3),
            bucket: BUCKET.into(),
            key_id: self.state.secrets.key_id.clone(),
            secret: self.state.secrets.secret.clone(),
        }
    }

    pub(crate) fn admin(&self) -> Admin {
        Admin {
            endpoint: format!("http://127.0.0.1:{}", self.state.ports.admin),
            token: self.state.secrets.admin_token.clone(),
        }
    }

    /// Writes the state and the config written from it.
    pub(crate) fn save(&self) -> Result<()> {
        self.state.write(&self.state_path())?;
        let config = crate::config::render(&self.dir, &self.state);
        crate::state::write_private(&Self::config_path(&self.dir), config.as_bytes())
    }

    /// Starts the node again, stopping it first if it runs, with its data, ports and
    /// keys; returns once its own endpoint serves the bucket.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        if let Some(port) = ports::first_taken(self.state.ports) {
            bail!(
                "port {port} of the node in {} is taken by another process; cannot restart",
                self.dir.display()
            );
        }
        let deadline = Deadline::after(self.settings.start_timeout);
        let id = self.launch(deadline).map_err(|e| self.failure(e))?;
        if id != self.id() {
            let e = anyhow!("its admin port answered as node {id}, not {}", self.id());
            return Err(self.failure(e));
        }
        self.wait_serving(deadline, &self.s3())
    }

    /// Creates bucket `name` if missing and lets the key read, write and own it; returns
    /// once the node serves it.
    pub fn add_bucket(&mut self, name: &str) -> Result<()> {
        let admin = self.admin();
        let id = match admin.bucket_id(name)? {
            Some(id) => id,
            None => admin.create_bucket(name)?,
        };
        admin.allow(&id, &self.state.secrets.key_id)?;
        let access = S3Access {
            bucket: name.into(),
            ..self.s3()
        };
        self.wait_serving(Deadline::after(self.settings.start_timeout), &access)
    }

    /// Imports the key and creates the bucket for it (once per cluster).
    pub(crate) fn create_key_and_bucket(&self) -> Result<()> {
        let admin = self.admin();
        let s = &self.state.secrets;
        admin.import_key(&s.key_id, &s.secret, KEY_NAME)?;
        let bucket = admin.create_bucket(BUCKET)?;
        admin.allow(&bucket, &s.key_id)
    }

    /// SIGTERM, a bounded wait, SIGKILL; nothing when it does not run.
    pub fn stop(&mut self) -> Result<()> {
        stop_nodes(std::slice::from_mut(self))
    }

    /// SIGKILL at once (a crash); nothing when it does not run.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(server) = &mut self.server {
            server.kill()?;
        }
        self.forget_server();
        Ok(())
    }

    /// Leaves the process it launched running past this `Node`.
    pub fn detach(mut self) {
        self.server = None;
    }

    fn forget_server(&mut self) {
        self.server = None;
        let _ = std::fs::remove_file(self.pid_path());
    }

    /// Writes the config, launches garage, and waits until it started; its node id.
    fn launch(&mut self, deadline: Deadline) -> Result<String> {
        self.save()?;
        self.log_start = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let server = Server::launch(
            &self.settings,
            &Self::config_path(&self.dir),
            &self.log_path(),
            &self.pid_path(),
        )?;
        self.server = Some(server);
        let admin = self.admin();
        let s3 = self.s3();
        let id = until(deadline, "garage's admin API and S3 port", || {
            self.check_alive()?;
            let id = match admin.node_id() {
                Ok(id) => id,
                Err(e) => return Ok(Check::NotYet(format!("{e:#}"))),
            };
            // Any answer, even a refusal of the key it does not know yet.
            Ok(match s3.head_bucket() {
                Ok(_) => Check::Ready(id),
                Err(e) => Check::NotYet(format!("{e:#}")),
            })
        })?;
        // Both APIs answer: a bind error would be in the log by now.
        self.check_alive()?;
        Ok(id)
    }

    /// Waits until the node calls the cluster healthy and serves `access`'s bucket.
    pub(crate) fn wait_serving(&self, deadline: Deadline, access: &S3Access) -> Result<()> {
        let admin = self.admin();
        let what = format!("{} to serve bucket {}", access.endpoint, access.bucket);
        until(deadline, &what, || {
            self.check_alive()?;
            match admin.health() {
                Ok(a) if a.status == 200 => {}
                Ok(a) => return Ok(Check::NotYet(format!("/health: {}", a.text().trim()))),
                Err(e) => return Ok(Check::NotYet(format!("/health: {e:#}"))),
            }
            Ok(match access.head_bucket() {
                Ok(200) => Check::Ready(()),
                Ok(status) => Check::NotYet(format!("HeadBucket: HTTP {status}")),
                Err(e) => Check::NotYet(format!("HeadBucket: {e:#}")),
            })
        })
        .map_err(|e| self.failure(e))
    }

    /// Waits until this node sees every node of `ids` connected.
    pub(crate) fn wait_connected(&self, deadline: Deadline, ids: &[String]) -> Result<()> {
        let admin = self.admin();
        let what = format!("node {} to see all {} nodes up", self.short_id(), ids.len());
        until(deadline, &what, || {
            self.check_alive()?;
            let up = match admin.up_nodes() {
                Ok(up) => up,
                Err(e) => return Ok(Check::NotYet(format!("{e:#}"))),
            };
            let missing = ids.iter().filter(|id| !up.contains(id)).count();
            Ok(match missing {
                0 => Check::Ready(()),
                n => Check::NotYet(format!("{n} not connected")),
            })
        })
        .map_err(|e| self.failure(e))
    }

    fn short_id(&self) -> &str {
        &self.id()[..self.id().len().min(16)]
    }

    /// An error if the process could not bind a port or ended.
    fn check_alive(&self) -> Result<()> {
        if let Some(taken) = log::port_taken(&log::since(&self.log_path(), self.log_start)) {
            return Err(taken.into());
        }
        if !self.running() {
            bail!("garage exited");
        }
        Ok(())
    }

    /// `e`, with where the node's log is and how it ends.
    fn failure(&self, e: anyhow::Error) -> anyhow::Error {
        anyhow!(
            "garage in {}: {e:#}\nits log {} ends with:\n{}",
            self.dir.display(),
            self.log_path().display(),
            log::tail(&self.log_path())
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.server.as_ref().is_some_and(Server::launched_here) {
            return;
        }
        if let Err(e) = self.stop() {
            eprintln!("fvfs-garage: {e:#}");
        }
    }
}

/// Stops every running node of `nodes` at once (each takes a few seconds).
pub fn stop_nodes(nodes: &mut [Node]) -> Result<()> {
    let timeout = match nodes.first() {
        Some(n) => n.settings.stop_timeout,
        None => return Ok(()),
    };
    let mut servers: Vec<&mut Server> =
        nodes.iter_mut().filter_map(|n| n.server.as_mut()).collect();
    let stopped = stop_all(&mut servers, timeout);
    for node in nodes.iter_mut() {
        node.forget_server();
    }
    stopped
}

/// `dir`, created if missing, as an absolute path without symlinks, in UTF-8 (it goes
/// into the config).
fn absolute(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolve {}", dir.display()))?;
    if dir.to_str().is_none() {
        bail!("{} is not UTF-8", dir.display());
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_folder_without_a_node_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_env().unwrap();
        let err = Node::open(dir.path(), &settings).err().unwrap().to_string();
        assert!(err.contains("no state.json"), "{err}");
    }
}
