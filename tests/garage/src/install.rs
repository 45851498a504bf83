//! (Binary.) `fvfs-garage install`: builds garage `GARAGE_VERSION` into `GARAGE_ROOT`
//! with `cargo install` (about 10 minutes), only when `GARAGE_BIN` is missing. (The
//! default `GARAGE_BIN` is where it lands.)

use std::process::Command;

use anyhow::{bail, Context, Result};

use fvfs_garage::Settings;

pub fn install(settings: &Settings) -> Result<()> {
    if settings.bin.exists() {
        eprintln!(
            "fvfs-garage: garage already installed: {}",
            version(settings)?
        );
        return Ok(());
    }
    eprintln!(
        "fvfs-garage: building garage {} into {} (about 10 minutes)",
        settings.version,
        settings.root.display()
    );
    std::fs::create_dir_all(&settings.root)
        .with_context(|| format!("create {}", settings.root.display()))?;
    let status = Command::new("cargo")
        .args([
            "install",
            "garage",
            "--locked",
            "--version",
            &settings.version,
        ])
        .arg("--root")
        .arg(&settings.root)
        // Stdout is for what scripts read.
        .stdout(std::io::stderr())
        .status()
        .context("run cargo install")?;
    if !status.success() {
        bail!("cargo install garage {} failed: {status}", settings.version);
    }
    let built = settings.root.join("bin/garage");
    if !built.exists() {
        bail!("cargo install finished but {} is missing", built.display());
    }
    eprintln!("fvfs-garage: installed {}", built.display());
    Ok(())
}

/// The first line of `garage --version`.
fn version(settings: &Settings) -> Result<String> {
    let out = settings
        .garage()
        .arg("--version")
        .output()
        .with_context(|| format!("run {}", settings.bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}
