//! S3 for end-to-end tests: the Garage server `scripts/test.sh` started for the whole
//! run (its address and keys in the environment), or a private one of the test's own
//! ([`Garage`], [`GarageCluster`] from `fvfs-garage`, stopped on drop) for tests that
//! stop and restart it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use fvfs_garage::{Garage, GarageCluster, S3Access};

/// Where an S3 server answers, and the credentials for it.
#[derive(Clone, Debug)]
pub struct S3Env {
    pub access: S3Access,
}

impl From<S3Access> for S3Env {
    fn from(access: S3Access) -> Self {
        Self { access }
    }
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
            access: S3Access {
                endpoint: var("FVFS_S3_ENDPOINT"),
                bucket: var("FVFS_S3_BUCKET"),
                key_id: var("AWS_ACCESS_KEY_ID"),
                secret: var("AWS_SECRET_ACCESS_KEY"),
            },
        }
    }

    /// Environment for an fvfsd talking to this server.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", &self.access.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.access.secret)
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

    /// A signed S3 request on the bucket (`path_and_query` after the bucket's name),
    /// which must succeed; the response body.
    pub fn request(&self, method: &str, path_and_query: &str) -> String {
        String::from_utf8_lossy(&self.send(method, path_and_query, &[])).into_owned()
    }

    /// A signed request with `body`, which must succeed; the response body's bytes.
    fn send(&self, method: &str, path_and_query: &str, body: &[u8]) -> Vec<u8> {
        let answer = self
            .access
            .send(method, path_and_query, body)
            .unwrap_or_else(|e| panic!("S3 {method} {path_and_query}: {e:#}"));
        assert!(
            answer.ok(),
            "S3 {method} {path_and_query}: HTTP {}: {}",
            answer.status,
            answer.text()
        );
        answer.body
    }

    /// The bytes of object `key` (the whole key, prefix included).
    pub fn object(&self, key: &str) -> Vec<u8> {
        self.send("GET", &format!("/{key}"), &[])
    }

    /// Replaces object `key` by `bytes`.
    pub fn put_object(&self, key: &str, bytes: &[u8]) {
        self.send("PUT", &format!("/{key}"), bytes);
    }

    /// The objects under `prefix` (`photos/packs/`, say): key and size.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let prefix = prefix.replace('/', "%2F");
        let listing = self.request("GET", &format!("/?list-type=2&prefix={prefix}"));
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
                self.access.bucket, self.access.endpoint
            ),
        )
        .expect("write config");
        path
    }
}
