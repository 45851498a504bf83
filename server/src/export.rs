//! `fvfsd export`: write a tree of any version back to a local directory, byte for
//! byte, with modes, mtimes and symlinks.
//!
//! Nothing existing is overwritten: files are created with `O_EXCL`, so exporting into
//! the wrong folder fails on the first clash instead of replacing someone's file.
//! Directories are created writable and get their real mode and mtime last, deepest
//! first, so read-only directories and their mtimes come out right.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures::StreamExt;
use fvfs_manifest::{lookup, path, walk, Entry, EntryKind, Repo};
use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

/// What to export. Also the body of `POST /v1/admin/export`.
#[derive(clap::Args, serde::Serialize, serde::Deserialize)]
pub struct Args {
    /// Version number, snapshot name or HEAD~N to export (default: HEAD).
    #[arg(long)]
    version: Option<String>,
    /// Path inside fvfs to export.
    path: PathBuf,
    /// Local directory to write into (created if missing).
    dir: PathBuf,
}

/// Exports; returns the summary line.
pub async fn run(repo: &Repo, args: Args) -> Result<String> {
    let version = repo.resolve(args.version.as_deref().unwrap_or("HEAD"))?;
    let src = args.path.as_os_str().as_bytes();
    let top = lookup(repo, version.root, src).await?;
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut entries = Vec::new();
    match (top.kind, top.id) {
        (EntryKind::Dir, Some(id)) => {
            walk(repo, b"", id, &mut |p, e| {
                entries.push((p[1..].to_vec(), e.clone()));
                Ok(())
            })
            .await?
        }
        _ => entries.push((top.name.clone(), top.clone())),
    }
    let mut dirs = Vec::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    for (rel, entry) in &entries {
        let dest = args.dir.join(OsStr::from_bytes(rel));
        match entry.kind {
            EntryKind::Dir => {
                fs::create_dir(&dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                dirs.push((dest, entry));
            }
            EntryKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&entry.target), &dest)
                    .with_context(|| format!("cannot create symlink {}", dest.display()))?;
                set_mtime(&dest, entry)?;
            }
            EntryKind::File => {
                bytes += write_file(repo, entry, &dest).await?;
                files += 1;
            }
        }
    }
    for (dest, entry) in dirs.iter().rev() {
        fs::set_permissions(dest, Permissions::from_mode(entry.mode))
            .with_context(|| format!("cannot set mode of {}", dest.display()))?;
        set_mtime(dest, entry)?;
    }
    Ok(format!(
        "exported {} of version {}: {files} files, {} directories, {bytes} bytes into {}",
        path::show(src),
        version.number,
        dirs.len(),
        args.dir.display()
    ))
}

async fn write_file(repo: &Repo, entry: &Entry, dest: &Path) -> Result<u64> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let mut written = 0;
    let ids = repo
        .file_chunks(entry)
        .await?
        .iter()
        .map(|c| c.id)
        .collect();
    let mut chunks = std::pin::pin!(fvfs_cas::read_ahead(repo.store().clone(), ids));
    while let Some(data) = chunks.next().await {
        let data = data.with_context(|| format!("reading {}", dest.display()))?;
        file.write_all(&data)
            .with_context(|| format!("cannot write {}", dest.display()))?;
        written += data.len() as u64;
    }
    anyhow::ensure!(
        written == entry.size,
        "{}: read {written} bytes, expected {}",
        dest.display(),
        entry.size
    );
    file.set_permissions(Permissions::from_mode(entry.mode))?;
    drop(file);
    set_mtime(dest, entry)?;
    Ok(written)
}

fn set_mtime(dest: &Path, entry: &Entry) -> Result<()> {
    let t = Timespec {
        tv_sec: entry.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: entry.mtime_ns.rem_euclid(1_000_000_000),
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, dest, &times, AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("cannot set mtime of {}", dest.display()))
}
