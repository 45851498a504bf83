//! `fvfsd`: parses the command line, starts the runtime and runs the command
//! ([`fvfs_server::run`]).

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, not glibc's malloc: under sustained load the daemon's many threads (tokio
/// workers, file I/O moved off them) fragmented glibc's per-thread arenas and its RSS
/// only ever grew, past 400 MiB in a soak; jemalloc gives freed pages back (figures in
/// benches/README.md; mimalloc was tried and held 900 MiB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = fvfs_server::cli::Cli::parse();
    // 8 MiB stacks (tokio's default is 2): sealing and walking a tree recurse once per
    // level, and paths may be 512 levels deep (`path::MAX_DEPTH`); 1024 levels
    // overflowed 2 MiB. At most 64 blocking threads (tokio's default is 512): each
    // store read runs in `block_in_place`, which hands its worker's place to another
    // thread, and serving a mount's walk of 100,000 files grew the pool to all 512,
    // each with jemalloc's cache of its own: 300 MiB instead of 95, no faster (the
    // blocking work is file I/O on one disk; benches/README.md, nineteenth session).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .max_blocking_threads(64)
        .build()
        .expect("tokio runtime");
    match runtime.block_on(fvfs_server::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            fvfs_api::out::quiet_on_closed_pipe(e.chain());
            eprintln!("fvfsd: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
