//! The control protocol on stdin/stdout, one line each way per command:
//! `cut` answers `ok` once the cut is done; `stats` answers one line of JSON. Anything
//! else answers a line starting with `error:`, so a caller waiting for a line never hangs.

use std::sync::Mutex;

use crate::fs::lock;
use crate::model::{Tree, PAGE};

/// The line answering the command `line`; `None` for a blank line.
pub fn answer(tree: &Mutex<Tree>, line: &str) -> Option<String> {
    match line.trim() {
        "" => None,
        "cut" => {
            lock(tree).cut();
            Some("ok".into())
        }
        "stats" => Some(stats_json(&lock(tree))),
        other => Some(format!("error: unknown command {other:?} (cut, stats)")),
    }
}

/// The counters and what the file system holds now, as one line of JSON.
pub fn stats_json(t: &Tree) -> String {
    let s = &t.stats;
    let cut = &s.last_cut;
    let c = t.census();
    let page = PAGE as u64;
    serde_json::json!({
        "fsync": s.fsync,
        "fdatasync": s.fdatasync,
        "fsyncdir": s.fsyncdir,
        "sync_writes": s.sync_writes,
        "synced_bytes": s.synced_pages * page,
        "cuts": s.cuts,
        "refused_dead": s.refused_dead,
        "last_cut": {
            "dropped_bytes": cut.dropped_pages * page,
            "resized_files": cut.resized_files,
            "restored_dirs": cut.restored_dirs,
            "freed_inodes": cut.freed_inodes,
            "dropped_dir_aliases": cut.dropped_dir_aliases,
        },
        "files": c.files,
        "dirs": c.dirs,
        "other_inodes": c.others,
        "bytes": c.bytes,
        "allocated_bytes": c.allocated_pages * page,
        "dirty_bytes": c.dirty_pages * page,
        "page_size": page,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_answer_one_line() {
        let tree = Mutex::new(Tree::new(0, 0));
        assert_eq!(answer(&tree, "  "), None);
        assert_eq!(answer(&tree, "cut\n").as_deref(), Some("ok"));
        let stats: serde_json::Value =
            serde_json::from_str(&answer(&tree, "stats").unwrap()).unwrap();
        assert_eq!(stats["cuts"], 1);
        assert_eq!(stats["dirs"], 1);
        assert!(answer(&tree, "reboot").unwrap().starts_with("error:"));
    }
}
