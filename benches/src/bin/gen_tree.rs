//! `gen-tree DIR FILES [SEED]`: writes a home of many small files for the scale
//! benchmarks (issue 46): FILES files of 1-12 KB in folders of 100 (folders of 100
//! folders above them), half text (words, lines: what zstd shrinks) and half noise
//! (what nothing shrinks), every byte a function of SEED and the file's number, so two
//! runs make the same tree and a larger tree holds the smaller one.

use std::io::Write;
use std::path::{Path, PathBuf};

const WORDS: &[&str] = &[
    "the", "photo", "of", "a", "house", "and", "its", "garden", "note", "to", "self", "fn", "let",
    "mut", "return", "struct", "impl", "pub", "use", "mod", "invoice", "march", "holiday",
    "meeting", "draft", "final", "copy", "version", "backup", "mail",
];

/// xorshift64*: fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Where file `n` lives: `dNNN/dNNN/fNNNNNNN` (100 files a folder, 100 folders a
/// folder above).
fn place(root: &Path, n: u64) -> PathBuf {
    let folder = n / 100;
    root.join(format!("d{:03}", folder / 100))
        .join(format!("d{:03}", folder % 100))
        .join(format!(
            "f{n:07}.{}",
            if n.is_multiple_of(2) { "txt" } else { "bin" }
        ))
}

/// The content of file `n`.
fn content(seed: u64, n: u64, out: &mut Vec<u8>) {
    let mut rng = Rng::new(seed ^ n.wrapping_mul(0x1000_0000_01b3));
    let len = 1024 + (rng.next() % (11 * 1024)) as usize;
    out.clear();
    if n.is_multiple_of(2) {
        while out.len() < len {
            let word = WORDS[(rng.next() % WORDS.len() as u64) as usize];
            out.extend_from_slice(word.as_bytes());
            out.push(if rng.next().is_multiple_of(9) {
                b'\n'
            } else {
                b' '
            });
        }
        out.truncate(len);
    } else {
        while out.len() < len {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
        out.truncate(len);
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(root), Some(files)) = (args.first(), args.get(1).and_then(|f| f.parse().ok())) else {
        eprintln!("usage: gen-tree DIR FILES [SEED]");
        std::process::exit(2);
    };
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let root = Path::new(root);
    let mut buf = Vec::with_capacity(12 * 1024);
    let mut bytes = 0u64;
    for n in 0..files {
        let path = place(root, n);
        if n % 100 == 0 {
            std::fs::create_dir_all(path.parent().expect("a folder"))?;
        }
        content(seed, n, &mut buf);
        std::fs::File::create(&path)?.write_all(&buf)?;
        bytes += buf.len() as u64;
    }
    println!("{files} files, {bytes} bytes under {}", root.display());
    Ok(())
}
