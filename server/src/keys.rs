//! The S3 tier's encryption key on this machine, and `fvfsd key list|add|remove|passwd`.
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
fn passphrase(var: &str, file: Option<&Path>, prompt: &str, confirm: bool) -> Result<String> {
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

/// `fvfsd key`'s subcommands.
#[derive(clap::Subcommand)]
pub enum KeyAction {
    /// List the bucket's keys.
    List,
    /// Add a passphrase (the new one from FVFS_NEW_PASSPHRASE or the terminal).
    Add,
    /// Remove a key by id (never the last).
    Remove { id: String },
    /// Change a passphrase: the key FVFS_PASSPHRASE opens is replaced by a new one.
    Passwd,
}

/// `fvfsd key ACTION`.
pub async fn command(
    dir: &Path,
    settings: &S3Settings,
    crypt: &Crypt,
    action: KeyAction,
) -> Result<()> {
    if !crypt.encrypt {
        bail!("the S3 tier is not encrypted (encrypt = false): it has no keys");
    }
    let (bucket, master) = bucket(dir, settings, crypt).await?;
    let master = master.context("no key after setting it up")?;
    let file = crypt.passphrase_file.as_deref();
    match action {
        KeyAction::List => {
            for (id, k) in keys::list(&bucket).await? {
                let mark = if k.master == master.fingerprint() {
                    ""
                } else {
                    "  (another master key)"
                };
                fvfs_api::outln!(
                    "{id}  made {} on {}  argon2id m={} MiB t={}{mark}",
                    fvfs_api::show::time(k.created as i64),
                    k.host,
                    k.m_kib / 1024,
                    k.t_cost
                );
            }
        }
        KeyAction::Add => {
            let p = passphrase("FVFS_NEW_PASSPHRASE", None, "new passphrase", true)?;
            let id = keys::add(&bucket, &master, &p).await?;
            fvfs_api::outln!("added key {id}");
        }
        KeyAction::Remove { id } => {
            keys::remove(&bucket, &master, &id).await?;
            fvfs_api::outln!("removed key {id}");
        }
        KeyAction::Passwd => {
            let old = passphrase("FVFS_PASSPHRASE", file, "current passphrase", false)?;
            let (_, old_id) = keys::unlock(&bucket, &old).await?;
            let new = passphrase("FVFS_NEW_PASSPHRASE", None, "new passphrase", true)?;
            let id = keys::add(&bucket, &master, &new).await?;
            keys::remove(&bucket, &master, &old_id).await?;
            fvfs_api::outln!("replaced key {old_id} by {id}");
        }
    }
    Ok(())
}
