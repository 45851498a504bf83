//! A node's `garage.log`, which every launch appends to: what Garage wrote since a
//! launch (where a port it could not bind shows), and its last lines, quoted in errors
//! without terminal colour codes.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Log lines quoted in an error.
const TAIL: usize = 20;

/// Garage could not bind a port (it logs the error and runs on without that API, or
/// exits for its RPC port).
#[derive(Debug)]
pub struct PortTaken(String);

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "garage could not bind a port: {}", self.0)
    }
}

impl std::error::Error for PortTaken {}

/// The log from byte `start` on (what the launch at that length wrote).
pub fn since(log: &Path, start: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        if f.seek(SeekFrom::Start(start)).is_ok() {
            let _ = f.read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The last "Address already in use" of `text`, if any.
pub fn port_taken(text: &str) -> Option<PortTaken> {
    text.lines()
        .rev()
        .find(|l| l.contains("Address already in use"))
        .map(|l| PortTaken(plain(l)))
}

/// The log's last lines, indented.
pub fn tail(log: &Path) -> String {
    let text = since(log, 0);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL)..]
        .iter()
        .map(|l| format!("  {}", plain(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `line` without terminal colour codes (ESC [ parameters letter).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log line as Garage 2.5 writes it when the S3 port is taken.
    const BIND_ERROR: &str = "\u{1b}[2m2026-12-03T12:11:06Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m \
        \u{1b}[2mgarage::server\u{1b}[0m\u{1b}[2m:\u{1b}[0m S3 API server exited with error: \
        IO error: Address already in use (os error 98)";

    #[test]
    fn a_bind_error_is_found_and_quoted_plain() {
        let text = format!("INFO starting\n{BIND_ERROR}\nINFO more\n");
        let taken = port_taken(&text).unwrap().to_string();
        assert!(
            taken.ends_with("2026-12-03T12:11:06Z ERROR garage::server: S3 API server exited with error: IO error: Address already in use (os error 98)"),
            "{taken}"
        );
        assert!(port_taken("INFO all fine\n").is_none());
    }

    #[test]
    fn only_what_follows_a_launch_is_read_and_the_tail_is_short() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("garage.log");
        let old: String = (0..30).map(|i| format!("old {i}\n")).collect();
        std::fs::write(&log, format!("{old}{BIND_ERROR}\n")).unwrap();
        assert!(port_taken(&since(&log, old.len() as u64)).is_some());
        std::fs::write(&log, format!("{BIND_ERROR}\n{old}")).unwrap();
        assert!(port_taken(&since(&log, BIND_ERROR.len() as u64 + 1)).is_none());
        let tail = tail(&log);
        assert_eq!(tail.lines().count(), TAIL);
        assert!(tail.ends_with("  old 29"), "{tail}");
    }
}
