//! The API token: made at first start, kept 0600 in the data directory, required as
//! `Authorization: Bearer TOKEN` whenever the daemon listens beyond loopback.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The token in `dir/token`, created (32 random bytes, hex) if missing.
pub fn token(dir: &Path) -> Result<String> {
    let path = dir.join("token");
    match fs::read_to_string(&path) {
        Ok(t) => {
            let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by others (mode {mode:o}); run: chmod 600 {}",
                    path.display(),
                    path.display()
                );
            }
            let t = t.trim().to_owned();
            if t.len() < 32 {
                bail!(
                    "{} holds no valid token; delete it to make a new one",
                    path.display()
                );
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 32];
            fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut raw))
                .context("reading /dev/urandom")?;
            let t = fvfs_cas::ChunkId::from_bytes(raw).to_hex();
            // Whole or absent after a power cut: a torn token file would lock
            // every client out until someone deletes it.
            fvfs_cas::platform::write_durably(&path, format!("{t}\n").as_bytes(), 0o600)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(t)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Compares a presented token with the real one in time independent of where they differ.
pub fn matches(presented: &str, token: &str) -> bool {
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
