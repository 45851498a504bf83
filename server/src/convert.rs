//! `fvfsd convert-store`: the local and NAS tiers from the one-file-per-chunk layout
//! of earlier versions to pack stores, in place, with the data directory locked.
//! Resumable (see `fvfs_cas::pack::convert_legacy`); a tier already converted is
//! left alone.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use fvfs_cas::{pack, PackOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;

pub fn run(dir: &Path, config: &Config, local: &Path) -> Result<ExitCode> {
    crate::home::create_dir(dir)?;
    let _lock = crate::home::lock(dir)?;
    let mut tiers = vec![("local", local, config.local_packs())];
    tiers.extend(config.nas_path().map(|p| ("NAS", p, config.nas_packs())));
    let mut damaged = 0;
    for (name, root, opts) in tiers {
        damaged += convert(name, root, opts)?;
    }
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Converts one tier; returns how many damaged chunk files it set aside.
fn convert(name: &str, root: &Path, opts: PackOptions) -> Result<usize> {
    if !pack::is_legacy(root) {
        fvfs_api::outln!("{name} store {}: nothing to convert", root.display());
        return Ok(0);
    }
    let bar = ProgressBar::with_draw_target(Some(256), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg} {pos}/{len} shards")
            .expect("static template"),
    );
    bar.set_message(format!("converting the {name} store"));
    let done = pack::convert_legacy(root, opts, |n, _| bar.set_position(n))
        .with_context(|| format!("converting {}", root.display()))?;
    bar.finish_and_clear();
    for id in &done.damaged {
        eprintln!(
            "damaged: chunk {id} did not match its name; set aside in {}/damaged (fsck --repair copies it again from another tier)",
            root.display()
        );
    }
    fvfs_api::outln!(
        "{name} store {}: {} chunks ({} bytes) moved into pack files",
        root.display(),
        done.chunks,
        done.bytes
    );
    Ok(done.damaged.len())
}
