//! The S3 tier's encryption key on this machine (`fvfsd key` manages the bucket's
//! passphrases with [`bucket`] and [`passphrase`]).
//!
//! The master key is made at the first start with an empty bucket and kept in two
//! places: wrapped by passphrases in the bucket (`keys/`, see
//! [`fvfs_tiering::s3::keys`]), so the bucket and one passphrase rebuild everything; and
//! in `DATA_DIR/s3-key` (0600), so the daemon starts without anyone typing. The data
//! directory holds the local tier in the clear anyway: the key adds nothing a thief of
//! that disk would lack.
//!
//! Passphrases come from `FVFS_PASSPHRASE` (a new one for `key add`/`passwd`: from
//! `FVFS_NEW_PASSPHRASE`), else `[tiers.s3] passphrase_file`, else the terminal.
//!
//! # Invariants
//! - A bucket holding fvfs data in the clear is never written encrypted (nor the
//!   reverse): the daemon refuses to start and says what to do.
//! - The local key file is written whole or not at all, 0600, and only after its key
//!   object is in the bucket.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fvfs_tiering::s3::keys::{self, KeyError};
use fvfs_tiering::seal::MasterKey;
use fvfs_tiering::{Bucket, S3Settings};

const LOCAL: &str = "s3-key";

/// How the S3 tier is encrypted (`[tiers.s3] encrypt`, `passphrase_file`).
#[derive(Clone, Debug)]
pub struct Crypt {
    pub encrypt: bool,
    pub passphrase_file: Option<PathBuf>,
}

/// The master key kept in the data directory `dir`, if the S3 tier was set up there.
pub fn local_key(dir: &Path) -> Result<Option<MasterKey>> {
    let path = dir.join(LOCAL);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let raw = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| {
            format!(
                "{} is damaged; delete it and start again with the passphrase (FVFS_PASSPHRASE)",
                path.display()
            )
        })?;
    Ok(Some(MasterKey::from_bytes(raw)))
}

fn save_local(dir: &Path, key: &MasterKey) -> Result<()> {
    let path = dir.join(LOCAL);
    let text = format!("{}\n", hex::encode(key.as_bytes()));
    fvfs_cas::platform::write_durably(&path, text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A passphrase from `var`, the passphrase file, or the terminal (asked `prompt`).
pub fn passphrase(var: &str, file: Option<&Path>, prompt: &str, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    if let Some(f) = file {
        let p = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the passphrase file {}", f.display()))?;
        return Ok(p.trim_end_matches(['\n', '\r']).to_owned());
    }
    let Some(p) = crate::tty::read_hidden(prompt)? else {
        bail!("{prompt}: set {var} (or [tiers.s3] passphrase_file), or run this in a terminal");
    };
    if confirm && crate::tty::read_hidden("the same again")?.as_deref() != Some(p.as_str()) {
        bail!("the two passphrases differ");
    }
    Ok(p)
}

/// The bucket of the S3 tier, with this store's key when it is encrypted (also
/// returned: an encrypted NAS tier is sealed under it): read from the data directory,
/// else unlocked from the bucket with the passphrase, else (an empty bucket) made now.
pub async fn bucket(
    dir: &Path,
    settings: &S3Settings,
    crypt: &Crypt,
) -> Result<(Bucket, Option<MasterKey>)> {
    let bucket = Bucket::connect(settings).await;
    let local = local_key(dir)?;
    if !crypt.encrypt {
        if local.is_some() {
            bail!(
                "this store's S3 tier is encrypted ({} exists), but the config says encrypt = false",
                dir.join(LOCAL).display()
            );
        }
        return Ok((bucket, None));
    }
    if let Some(key) = local {
        return Ok((bucket.with_key(&key), Some(key)));
    }
    let where_ = format!(
        "s3://{}/{}",
        settings.bucket,
        settings.prefix.as_deref().unwrap_or("")
    );
    let file = crypt.passphrase_file.as_deref();
    let key = if keys::any(&bucket)
        .await
        .context("cannot reach S3 to set up its encryption key")?
    {
        let p = passphrase(
            "FVFS_PASSPHRASE",
            file,
            &format!("passphrase of {where_}"),
            false,
        )?;
        let (key, id) = keys::unlock(&bucket, &p).await.map_err(|e| match e {
            KeyError::WrongPassphrase(n) => {
                anyhow::anyhow!("wrong passphrase: it opens none of the {n} key(s) of {where_}")
            }
            other => other.into(),
        })?;
        tracing::info!(key = id, "unlocked the S3 tier's master key");
        key
    } else {
        let holds =
            !bucket.list("packs/").await?.is_empty() || !bucket.list("log/").await?.is_empty();
        if holds {
            bail!(
                "{where_} holds fvfs data stored in the clear (by an fvfsd before encryption); \
                 set encrypt = false under [tiers.s3] to go on using it unencrypted, or give \
                 an empty bucket or prefix to start an encrypted copy"
            );
        }
        let p = passphrase(
            "FVFS_PASSPHRASE",
            file,
            &format!("new passphrase for {where_} (needed to recover from it)"),
            true,
        )?;
        let key = MasterKey::generate();
        let id = keys::add(&bucket, &key, &p).await?;
        tracing::info!(key = id, "made the S3 tier's master key");
        key
    };
    save_local(dir, &key)?;
    Ok((bucket.with_key(&key), Some(key)))
}
