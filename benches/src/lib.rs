//! fvfs benchmarks: criterion micro-benchmarks of the ingest pipeline in `benches/`,
//! and side-by-side comparison scripts with restic, borg and casync in `scripts/`.
//! Results, with the machine and date, are recorded in `benches/README.md`.
