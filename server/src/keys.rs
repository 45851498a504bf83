//! `fvfsd key list|add|remove|passwd`: the passphrases that unlock the S3 tier's master
//! key in its bucket (the key itself is the engine's, [`fvfs_engine::keys`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use fvfs_engine::keys::{bucket, passphrase, Crypt};
use fvfs_tiering::s3::keys;
use fvfs_tiering::S3Settings;

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
