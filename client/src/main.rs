//! `fvfsc`: the fvfs client for any device on the LAN.
//!
//! The client talks to `fvfsd serve` over HTTP; until the daemon's API exists (the
//! daemon-and-client issue), it only identifies itself, so that packaging and scripts
//! can already rely on the binary's name and `--version`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "fvfsc",
    version,
    about = "fvfs client (commands arrive with `fvfsd serve`)"
)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!("fvfsc: no commands yet; use `fvfsd` on the server for now (see README.md)");
    std::process::exit(2);
}
