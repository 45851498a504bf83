//! S3 for end-to-end tests: the Garage server `scripts/test.sh` started for the whole
//! run (its address and keys in the environment), or a private one started through
//! `scripts/garage.sh` for tests that stop and restart it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where an S3 server answers, and the credentials for it.
#[derive(Clone, Debug)]
pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl S3Env {
    /// The server shared by the whole test run.
    pub fn shared() -> Self {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| {
                panic!("{k} is not set: run the tests with scripts/test.sh, which starts Garage")
            })
        };
        Self {
            endpoint: var("FVFS_S3_ENDPOINT"),
            bucket: var("FVFS_S3_BUCKET"),
            key_id: var("AWS_ACCESS_KEY_ID"),
            secret: var("AWS_SECRET_ACCESS_KEY"),
        }
    }

    /// Environment for an fvfsd talking to this server.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_REGION", "garage");
    }

    /// `fvfsd serve` on `store` with `config` (naming this server), on a free loopback port.
    pub fn serve(&self, store: &crate::Fvfsd, config: &Path) -> crate::daemon::Daemon {
        crate::daemon::Daemon::spawn(self.fvfsd(
            store,
            config,
            ["serve", "--listen", "127.0.0.1:0", "--no-mdns"],
        ))
    }

    /// `fvfsd --config CONFIG ARGS` on `store`, with this server's credentials.
    pub fn fvfsd<const N: usize>(
        &self,
        store: &crate::Fvfsd,
        config: &Path,
        args: [&str; N],
    ) -> Command {
        let mut cmd = store.cmd(["--config", config.to_str().expect("utf-8 path")]);
        cmd.args(args);
        self.apply(&mut cmd);
        cmd
    }

    /// A signed S3 request with curl (the tests have no S3 client of their own); the
    /// response body.
    pub fn curl(&self, method: &str, path_and_query: &str) -> String {
        String::from_utf8_lossy(&self.send(method, path_and_query, None)).into_owned()
    }

    /// A signed request with curl, with `body` when given; the response body's bytes.
    fn send(&self, method: &str, path_and_query: &str, body: Option<&Path>) -> Vec<u8> {
        // The payload's hash for an empty body; a body goes unsigned.
        let hash = match body {
            None => "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            Some(_) => "UNSIGNED-PAYLOAD",
        };
        let mut cmd = Command::new("curl");
        cmd.args(["-sf", "--noproxy", "*", "-X", method])
            .args(["--aws-sigv4", "aws:amz:garage:s3"])
            .args(["--user", &format!("{}:{}", self.key_id, self.secret)])
            .args(["-H", &format!("x-amz-content-sha256: {hash}")]);
        if let Some(file) = body {
            cmd.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        let out = cmd
            .arg(format!("{}/{}{path_and_query}", self.endpoint, self.bucket))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {method} {path_and_query}: {out:?}"
        );
        out.stdout
    }

    /// The bytes of object `key` (the whole key, prefix included).
    pub fn object(&self, key: &str) -> Vec<u8> {
        self.send("GET", &format!("/{key}"), None)
    }

    /// Replaces object `key` by `bytes`.
    pub fn put_object(&self, key: &str, bytes: &[u8]) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write the body");
        self.send("PUT", &format!("/{key}"), Some(file.path()));
    }

    /// The objects under `prefix` (`photos/packs/`, say): key and size.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let prefix = prefix.replace('/', "%2F");
        let listing = self.curl("GET", &format!("/?list-type=2&prefix={prefix}"));
        listing
            .split("<Contents>")
            .skip(1)
            .map(|c| {
                let field = |f: &str| {
                    c.split(&format!("<{f}>"))
                        .nth(1)
                        .and_then(|s| s.split(&format!("</{f}>")).next())
                        .unwrap_or_else(|| panic!("no {f} in {c}"))
                        .to_owned()
                };
                (field("Key"), field("Size").parse().expect("a size"))
            })
            .collect()
    }

    /// The packs under `prefix`: key and size, from a bucket listing.
    pub fn packs(&self, prefix: &str) -> Vec<(String, u64)> {
        self.list(&format!("{prefix}/packs/"))
    }

    /// A config file with this server as the S3 tier under `prefix`, and `extra` TOML.
    pub fn config(&self, dir: &Path, prefix: &str, extra: &str) -> PathBuf {
        let path = dir.join("fvfsd.toml");
        std::fs::write(
            &path,
            format!(
                "[tiers.s3]\nbucket = {:?}\nendpoint = {:?}\nregion = \"garage\"\nprefix = {prefix:?}\n{extra}",
                self.bucket, self.endpoint
            ),
        )
        .expect("write config");
        path
    }
}

/// A Garage server of this test's own, stopped on drop.
pub struct Garage {
    dir: tempfile::TempDir,
    pub env: S3Env,
}

fn script(args: &[&str]) -> String {
    let path = std::env::var("FVFS_GARAGE_SCRIPT")
        .expect("FVFS_GARAGE_SCRIPT is not set: run the tests with scripts/test.sh");
    let out = Command::new(path)
        .args(args)
        .output()
        .expect("run garage.sh");
    assert!(
        out.status.success(),
        "garage.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn read_env(path: &str) -> S3Env {
    let text = std::fs::read_to_string(path).expect("garage env file");
    let vars: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .collect();
    let get = |k: &str| {
        vars.get(k)
            .unwrap_or_else(|| panic!("{k} missing in {path}"))
            .to_string()
    };
    S3Env {
        endpoint: get("FVFS_S3_ENDPOINT"),
        bucket: get("FVFS_S3_BUCKET"),
        key_id: get("AWS_ACCESS_KEY_ID"),
        secret: get("AWS_SECRET_ACCESS_KEY"),
    }
}

impl Garage {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let env_file = script(&["start", dir.path().to_str().expect("utf-8")]);
        let env = read_env(&env_file);
        Self { dir, env }
    }

    pub fn stop(&self) {
        script(&["stop", self.dir.path().to_str().expect("utf-8")]);
    }

    /// Starts it again with the same data, address and keys.
    pub fn restart(&self) {
        script(&["restart", self.dir.path().to_str().expect("utf-8")]);
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.stop());
    }
}

/// A Garage cluster of this test's own (`replication_factor` = its size), on loopback;
/// every node stopped on drop.
pub struct GarageCluster {
    dir: tempfile::TempDir,
    pub env: S3Env,
}

impl GarageCluster {
    pub fn start(nodes: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_str().expect("utf-8");
        let env_file = script(&["cluster", path, &nodes.to_string()]);
        let env = read_env(&env_file);
        Self { dir, env }
    }

    fn node(&self, k: usize) -> String {
        self.dir
            .path()
            .join(format!("node{k}"))
            .to_string_lossy()
            .into_owned()
    }

    /// Stops node `k` (1-based).
    pub fn stop_node(&self, k: usize) {
        script(&["stop", &self.node(k)]);
    }

    /// Starts node `k` again, with its data; returns once it serves S3.
    pub fn restart_node(&self, k: usize) {
        script(&["restart", &self.node(k)]);
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        let path = self.dir.path().to_string_lossy().into_owned();
        let _ = std::panic::catch_unwind(|| script(&["cluster-stop", &path]));
    }
}
