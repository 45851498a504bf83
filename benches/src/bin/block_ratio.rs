//! How much compressing with context would save (issue 47): the unique chunks of the
//! trees given, cut as fvfs cuts them, in the order a walk reads them (files sorted by
//! path, each file's chunks in order), stored
//! - each alone, as today's frames (`frame::encode`, zstd 3) and as the idle
//!   recompression leaves them (`frame::encode_dense`, zstd 15);
//! - in blocks of consecutive chunks of about 1 and 4 MiB, zstd 3 and 15;
//! - each alone with a dictionary trained on a sample of the store's chunks (112 KiB
//!   and 1 MiB; the dictionary's own bytes counted, its training timed).
//!
//! Prints the bytes of each form, its ratio to today's frames and its compression time
//! on one core. With `--reads`, instead what reading costs in each form (zstd 3): a
//! sequential read of everything (each block decoded once) and reads of chunks picked
//! at random (each decodes its whole block, or its own frame). Usage: block-ratio
//! [--reads] DIR... (a tree's files; symlinks not followed)

use std::path::{Path, PathBuf};
use std::time::Instant;

use fvfs_cas::{chunker, frame, ChunkId};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        match e.file_type() {
            Ok(t) if t.is_dir() => files(&e.path(), out),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
}

/// Bytes and seconds of one way of storing the chunks.
struct Form {
    name: String,
    bytes: u64,
    secs: f64,
}

fn timed(name: String, work: impl FnOnce() -> u64) -> Form {
    let t = Instant::now();
    let bytes = work();
    Form {
        name,
        bytes,
        secs: t.elapsed().as_secs_f64(),
    }
}

fn blocks(chunks: &[Vec<u8>], block: usize, level: i32) -> u64 {
    let mut total = 0u64;
    let mut buf = Vec::with_capacity(block + chunker::MAX_SIZE);
    let mut flush = |buf: &mut Vec<u8>| {
        if !buf.is_empty() {
            total += zstd::bulk::compress(buf, level).expect("zstd").len() as u64;
            buf.clear();
        }
    };
    for c in chunks {
        buf.extend_from_slice(c);
        if buf.len() >= block {
            flush(&mut buf);
        }
    }
    flush(&mut buf);
    total
}

/// Sequential MB/s and microseconds per random chunk read, the chunks stored in groups
/// of about `block` bytes (one chunk each when `block` is 0), zstd 3.
fn reads(chunks: &[Vec<u8>], block: usize) -> (f64, f64) {
    // Each group compressed, with its raw length; each chunk's group.
    let (mut groups, mut of) = (Vec::new(), Vec::with_capacity(chunks.len()));
    let mut buf = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        buf.extend_from_slice(c);
        of.push(groups.len());
        if buf.len() >= block || i + 1 == chunks.len() {
            groups.push((zstd::bulk::compress(&buf, 3).expect("zstd"), buf.len()));
            buf.clear();
        }
    }
    let decode =
        |(packed, len): &(Vec<u8>, usize)| zstd::bulk::decompress(packed, *len).expect("unzstd");
    let raw: usize = chunks.iter().map(Vec::len).sum();
    let t = Instant::now();
    for g in &groups {
        std::hint::black_box(decode(g));
    }
    let sequential = raw as f64 / t.elapsed().as_secs_f64() / 1e6;
    // 2,000 chunks picked by a fixed stride through the store.
    let picks: Vec<usize> = (0..2000).map(|k| (k * 7919) % chunks.len()).collect();
    let t = Instant::now();
    for &i in &picks {
        std::hint::black_box(decode(&groups[of[i]]));
    }
    let random = t.elapsed().as_secs_f64() * 1e6 / picks.len() as f64;
    (sequential, random)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let only_reads = args.first().is_some_and(|a| a == "--reads");
    if only_reads {
        args.remove(0);
    }
    let dirs: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
    assert!(!dirs.is_empty(), "usage: block-ratio [--reads] DIR...");
    let mut paths = Vec::new();
    for d in &dirs {
        files(d, &mut paths);
    }
    let mut seen = std::collections::HashSet::new();
    let mut chunks = Vec::new();
    let mut raw = 0u64;
    for p in &paths {
        let Ok(f) = std::fs::File::open(p) else {
            continue;
        };
        for c in chunker::chunks(std::io::BufReader::new(f), 0) {
            let c = c.expect("read");
            if seen.insert(ChunkId::of(&c)) {
                raw += c.len() as u64;
                chunks.push(c);
            }
        }
    }
    println!(
        "{} files, {} unique chunks, {:.1} MB raw",
        paths.len(),
        chunks.len(),
        raw as f64 / 1e6
    );
    if only_reads {
        println!("| stored as | sequential MB/s | random chunk, µs |\n|---|---|---|");
        for (name, block) in [
            ("each chunk alone", 0),
            ("1 MiB blocks", 1 << 20),
            ("4 MiB blocks", 4 << 20),
        ] {
            let (sequential, random) = reads(&chunks, block);
            println!("| {name} | {sequential:.0} | {random:.0} |");
        }
        return;
    }
    let mut forms = vec![
        timed("each chunk alone, zstd 3 (today)".into(), || {
            chunks.iter().map(|c| frame::encode(c).len() as u64).sum()
        }),
        timed(
            "each chunk alone, zstd 15 (idle recompression)".into(),
            || {
                chunks
                    .iter()
                    .map(|c| frame::encode_dense(c).len() as u64)
                    .sum()
            },
        ),
    ];
    for (block, level) in [
        (1 << 20, 3),
        (1 << 20, 15),
        (4 << 20, 3),
        (4 << 20, 15),
        (4 << 20, 19),
    ] {
        let name = format!("blocks of {} MiB, zstd {level}", block >> 20);
        forms.push(timed(name, || blocks(&chunks, block, level)));
    }
    // Dictionaries from every 16th chunk (its first 16 KiB), at most 64 MB of samples.
    let samples: Vec<&[u8]> = chunks
        .iter()
        .step_by(16)
        .map(|c| &c[..c.len().min(16 << 10)])
        .scan(0usize, |n, c| {
            *n += c.len();
            (*n <= 64 << 20).then_some(c)
        })
        .collect();
    for (size, level) in [(112 << 10, 3), (112 << 10, 15), (1 << 20, 3)] {
        let t = Instant::now();
        let dict = zstd::dict::from_samples(&samples, size).expect("train");
        let trained = t.elapsed().as_secs_f64();
        let name = format!(
            "each chunk alone, {} KiB dictionary, zstd {level}",
            size >> 10
        );
        let mut form = timed(name, || {
            let mut c = zstd::bulk::Compressor::with_dictionary(level, &dict).expect("dict");
            let frames: u64 = chunks
                .iter()
                .map(|x| c.compress(x).expect("zstd").len() as u64)
                .sum();
            frames + dict.len() as u64
        });
        form.secs += trained;
        forms.push(form);
    }
    let today = forms[0].bytes as f64;
    println!("| form | MB | of today | s on one core |\n|---|---|---|---|");
    for f in &forms {
        println!(
            "| {} | {:.1} | {:.3} | {:.1} |",
            f.name,
            f.bytes as f64 / 1e6,
            f.bytes as f64 / today,
            f.secs
        );
    }
}
