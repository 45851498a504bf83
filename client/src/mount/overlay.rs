//! Changes to the live tree made on a mount and not committed yet, besides file
//! contents (which write-backs hold): new folders, symlinks and special files, new
//! attributes of entries, removals, and renames of what is not a folder. They are commit ops kept in order, each with the entry it
//! makes its path show; the mount shows those entries over the tree, and the next batch
//! commits the ops before the files closed with them, in one version.
//!
//! # Invariants
//! - Ops are committed in the order they were made, and only a prefix of them at a time
//!   ([`Overlay::ops`] then [`Overlay::committed`]), so what is shown is always HEAD with
//!   the ops not committed yet applied.
//! - A folder made here shows only what was made in it here (it has no node yet), until
//!   the op that made it is committed; attributes staged over a folder the tree has
//!   leave its content to the tree.
//! - Every op is appended to a journal (`<staging>/<pid>-<start>.ops`, JSON lines, not
//!   synced)
//!   before it is shown; the journal is rewritten with what is left once a prefix is
//!   committed, and removed once nothing is. A mount that was killed leaves it for the
//!   next one ([`leftover_ops`]), which commits it before the files; a line cut short by
//!   a power cut ends it.
//! - A removal (unlink, rmdir of an empty folder) is staged as the absence it makes its
//!   path show, and a rename of a file, symlink or special file as the entry it shows
//!   at its new path and the absence at its old one ([`Overlay::stage_move`]), so that
//!   an `rm -rf` or a folder of photos sorted by hand is one version. Folders and hard
//!   links never move in the overlay: their renames and links commit everything staged
//!   first, so the paths of staged ops never move under them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fvfs_api::commit::CommitOp;
use fvfs_node::{Entry, EntryKind};

/// A staged op, with the path whose entry it makes and that entry (`None`: it removes
/// the path).
#[derive(Clone, Debug)]
struct Staged {
    op: CommitOp,
    path: Vec<u8>,
    entry: Option<Entry>,
    /// It makes a new entry (not new attributes of one).
    made: bool,
    /// The path it leaves empty as well (a rename's source).
    from: Option<Vec<u8>>,
}

/// The changes a mount made that wait for a batch.
pub struct Overlay {
    staged: Vec<Staged>,
    /// The latest entry staged for each path (`None`: removed).
    shown: HashMap<Vec<u8>, Option<Entry>>,
    /// The names staged in each folder.
    children: HashMap<Vec<u8>, BTreeSet<Vec<u8>>>,
    /// Folders made by ops not committed yet.
    new_dirs: HashSet<Vec<u8>>,
    /// Ops handed out to be committed (the first ones): never replaced.
    in_flight: usize,
    /// When the oldest op waiting was staged.
    since: Option<SystemTime>,
    journal: PathBuf,
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    (&path[..cut.max(1)], &path[cut + 1..])
}

impl Overlay {
    /// An empty overlay journaled in `staging`.
    pub fn new(staging: &Path) -> Self {
        Self {
            staged: Vec::new(),
            shown: HashMap::new(),
            children: HashMap::new(),
            new_dirs: HashSet::new(),
            in_flight: 0,
            since: None,
            journal: staging.join(format!(
                "{}-{}.ops",
                std::process::id(),
                SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            )),
        }
    }

    /// Its journal (which [`leftover_ops`] leaves alone).
    pub fn journal(&self) -> &Path {
        &self.journal
    }

    /// Stages `op`, which makes `path` show `entry` (named by its last component): a new
    /// entry if `made`, else new attributes of what is there; `None`: `op` removes it.
    pub fn stage(
        &mut self,
        op: CommitOp,
        path: &[u8],
        mut entry: Option<Entry>,
        made: bool,
    ) -> io::Result<()> {
        if let Some(entry) = &mut entry {
            entry.name = split(path).1.to_vec();
        }
        self.push(Staged {
            op,
            path: path.to_vec(),
            entry,
            made,
            from: None,
        })
    }

    /// Stages `op`, which moves the entry at `from` (`entry`, not a folder) to `to`.
    pub fn stage_move(
        &mut self,
        op: CommitOp,
        from: &[u8],
        to: &[u8],
        mut entry: Entry,
    ) -> io::Result<()> {
        entry.name = split(to).1.to_vec();
        self.push(Staged {
            op,
            path: to.to_vec(),
            entry: Some(entry),
            made: true,
            from: Some(from.to_vec()),
        })
    }

    /// Journals `staged`, then shows it.
    fn push(&mut self, staged: Staged) -> io::Result<()> {
        let mut line = serde_json::to_vec(&staged.op)?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.journal)?
            .write_all(&line)?;
        self.since.get_or_insert_with(SystemTime::now);
        self.show(&staged);
        let made = staged.made;
        // New attributes of the path the last op changed replace that op (a folder
        // touched by every file renamed into it), and so does its removal, unless the
        // op made the path or is being committed.
        let replaceable = self.staged.len() > self.in_flight;
        match self.staged.last_mut() {
            Some(last) if replaceable && !made && !last.made && last.path == staged.path => {
                *last = staged
            }
            _ => self.staged.push(staged),
        }
        Ok(())
    }

    fn show(&mut self, s: &Staged) {
        if let Some(from) = &s.from {
            let (dir, name) = split(from);
            self.children
                .entry(dir.to_vec())
                .or_default()
                .insert(name.to_vec());
            self.shown.insert(from.clone(), None);
        }
        let (path, entry) = (&s.path[..], &s.entry);
        match entry {
            Some(e) if s.made && e.kind == EntryKind::Dir => {
                self.new_dirs.insert(path.to_vec());
            }
            None => {
                self.new_dirs.remove(path);
            }
            Some(_) => {}
        }
        let (dir, name) = split(path);
        self.children
            .entry(dir.to_vec())
            .or_default()
            .insert(name.to_vec());
        self.shown.insert(path.to_vec(), entry.clone());
    }

    /// What `path` shows: `Some(Some((entry, new)))` if staged here (`new`: a folder
    /// made here, whose content is only what is staged in it; a folder that is not new
    /// keeps the tree's content), `Some(None)` if removed here or below a new folder and
    /// not staged (so it does not exist), `None` if the tree says.
    pub fn get(&self, path: &[u8]) -> Option<Option<(&Entry, bool)>> {
        if self.shown.is_empty() {
            return None;
        }
        if let Some(e) = self.shown.get(path) {
            return Some(e.as_ref().map(|e| (e, self.new_dirs.contains(path))));
        }
        let mut at = path;
        while at != b"/" {
            at = split(at).0;
            if self.new_dirs.contains(at) {
                return Some(None);
            }
        }
        None
    }

    /// The names staged in folder `dir`, each with the entry it shows (`None`:
    /// removed here).
    pub fn children(&self, dir: &[u8]) -> Vec<(Vec<u8>, Option<Entry>)> {
        let Some(names) = self.children.get(dir) else {
            return Vec::new();
        };
        (names.iter())
            .filter_map(|n| {
                let shown = self.shown.get(&fvfs_node::path::join(dir, n))?;
                Some((n.clone(), shown.clone()))
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// How many ops wait, and since when.
    pub fn waiting(&self) -> Option<(usize, SystemTime)> {
        Some((self.staged.len(), self.since?))
    }

    /// The ops waiting, in order, handed out to be committed (none of them is replaced
    /// from now on): commit them, then call [`Self::committed`] with how many were.
    pub fn ops(&mut self) -> Vec<CommitOp> {
        self.in_flight = self.staged.len();
        self.staged.iter().map(|s| s.op.clone()).collect()
    }

    /// The first `n` ops are in the tree now: no longer shown over it.
    pub fn committed(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.in_flight = self.in_flight.saturating_sub(n);
        self.staged.drain(..n);
        self.shown.clear();
        self.children.clear();
        self.new_dirs.clear();
        for s in std::mem::take(&mut self.staged) {
            self.show(&s);
            self.staged.push(s);
        }
        if self.staged.is_empty() {
            self.since = None;
        }
        if let Err(e) = self.rewrite_journal() {
            tracing::warn!("cannot rewrite {}: {e}", self.journal.display());
        }
    }

    fn rewrite_journal(&self) -> io::Result<()> {
        if self.staged.is_empty() {
            return match std::fs::remove_file(&self.journal) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let mut all = Vec::new();
        for s in &self.staged {
            all.extend(serde_json::to_vec(&s.op)?);
            all.push(b'\n');
        }
        let next = self.journal.with_extension("ops.next");
        std::fs::write(&next, all)?;
        std::fs::rename(&next, &self.journal)
    }
}

/// Whether `name` is an ops journal's.
pub fn is_journal(name: &str) -> bool {
    name.ends_with(".ops") || name.ends_with(".ops.next")
}

/// The ops mounts no longer running left in `staging` (all journals but `mine` and
/// those of running processes), journal by journal in the order they were written, each
/// with its journal (to remove once they are committed). A line that does not parse (cut
/// short by a power cut) ends its journal.
pub fn leftover_ops(staging: &Path, mine: &Path) -> io::Result<Vec<(PathBuf, Vec<CommitOp>)>> {
    let mut found = Vec::new();
    for f in std::fs::read_dir(staging)? {
        let path = f?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(pid) = (name.strip_suffix(".ops"))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if path == mine || super::waiting::another_runs(pid) {
            continue;
        }
        let raw = std::fs::read(&path)?;
        let ops: Vec<CommitOp> = (raw.split(|&b| b == b'\n'))
            .map_while(|line| serde_json::from_slice(line).ok())
            .collect();
        let modified = std::fs::metadata(&path)?.modified()?;
        found.push((modified, path, ops));
    }
    found.sort_by_key(|(t, _, _)| *t);
    Ok(found.into_iter().map(|(_, p, ops)| (p, ops)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fvfs_api::path::encode_path;

    fn mkdir(path: &[u8], mode: u32) -> (CommitOp, Entry) {
        let op = CommitOp::Mkdir {
            path: encode_path(path),
            mode,
            mtime_ns: 0,
            meta: None,
        };
        (op, Entry::dir(mode, 0))
    }

    #[test]
    fn staged_folders_show_over_the_tree_until_committed_in_order() {
        let staging = tempfile::tempdir().unwrap();
        let mut o = Overlay::new(staging.path());
        assert_eq!(o.get(b"/a"), None);
        for (path, mode) in [(&b"/a"[..], 0o755), (b"/a/b", 0o700), (b"/c", 0o755)] {
            let (op, entry) = mkdir(path, mode);
            o.stage(op, path, Some(entry), true).unwrap();
        }
        // Shown, and what a new folder does not hold does not exist.
        assert_eq!(o.get(b"/a/b").unwrap().unwrap().0.mode, 0o700);
        assert_eq!(o.get(b"/a/b/x"), Some(None));
        assert_eq!(o.get(b"/elsewhere"), None);
        let names: Vec<_> = o.children(b"/").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [b"a".to_vec(), b"c".to_vec()]);
        // A later change of a staged path shows the latest.
        let (op, entry) = mkdir(b"/a/b", 0o750);
        o.stage(op, b"/a/b", Some(entry), false).unwrap();
        let (b, new) = o.get(b"/a/b").unwrap().unwrap();
        assert_eq!((b.mode, new), (0o750, true));
        // Attributes of the same path again replace the last op, unless handed out.
        let count = |o: &Overlay| o.waiting().map_or(0, |(n, _)| n);
        let before = count(&o);
        let _ = o.ops();
        let (op, entry) = mkdir(b"/a/b", 0o751);
        o.stage(op, b"/a/b", Some(entry), false).unwrap();
        assert_eq!(count(&o), before + 1, "the last op was handed out");
        let (op, entry) = mkdir(b"/a/b", 0o750);
        o.stage(op, b"/a/b", Some(entry), false).unwrap();
        assert_eq!(count(&o), before + 1, "replaced");
        // Journaled, in order (read as another process would).
        assert!(leftover_ops(staging.path(), o.journal())
            .unwrap()
            .is_empty());
        let left = leftover_ops(staging.path(), Path::new("/")).unwrap();
        assert_eq!(left.len(), 1);
        // Every op, and the one replaced too (replayed, the last one wins).
        let mut journaled = left[0].1.iter();
        for op in o.ops() {
            assert!(journaled.any(|j| *j == op), "{op:?} journaled in order");
        }
        assert_eq!(journaled.next(), None);
        // The first two committed: the rest is still shown and journaled.
        o.committed(2);
        assert_eq!(o.get(b"/a"), None);
        assert_eq!(o.get(b"/c").unwrap().unwrap().0.mode, 0o755);
        // Made by a committed op now: its new attributes show over the tree's folder,
        // and what the tree holds in it shows too.
        let (b, new) = o.get(b"/a/b").unwrap().unwrap();
        assert_eq!((b.mode, new), (0o750, false));
        assert_eq!(o.get(b"/a/b/x"), None);
        let left = leftover_ops(staging.path(), Path::new("/")).unwrap();
        let rest = o.ops();
        assert_eq!(left[0].1, rest);
        o.committed(rest.len());
        assert!(o.is_empty() && o.waiting().is_none());
        assert!(leftover_ops(staging.path(), Path::new("/"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn removals_hide_the_trees_names_until_made_again() {
        let staging = tempfile::tempdir().unwrap();
        let mut o = Overlay::new(staging.path());
        let remove = |path: &[u8]| CommitOp::Remove {
            path: encode_path(path),
            recursive: false,
        };
        // Attributes of a path, then its removal: the removal replaces them.
        let (op, entry) = mkdir(b"/t/d", 0o700);
        o.stage(op, b"/t/d", Some(entry), false).unwrap();
        o.stage(remove(b"/t/d"), b"/t/d", None, false).unwrap();
        o.stage(remove(b"/t/f"), b"/t/f", None, false).unwrap();
        assert_eq!(o.get(b"/t/f"), Some(None));
        assert_eq!(o.get(b"/t/d"), Some(None));
        assert_eq!(o.get(b"/t/g"), None, "the tree says");
        let mut listed = o.children(b"/t");
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(listed, [(b"d".to_vec(), None), (b"f".to_vec(), None)]);
        assert_eq!(o.ops(), [remove(b"/t/d"), remove(b"/t/f")]);
        // Made again: shown as new, and what the tree held in it is gone.
        let (op, entry) = mkdir(b"/t/d", 0o755);
        o.stage(op, b"/t/d", Some(entry), true).unwrap();
        let (d, new) = o.get(b"/t/d").unwrap().unwrap();
        assert_eq!((d.mode, new), (0o755, true));
        assert_eq!(o.get(b"/t/d/old"), Some(None));
        // Its removal committed, the new folder is still shown.
        o.committed(2);
        assert_eq!(o.get(b"/t/f"), None);
        assert_eq!(o.get(b"/t/d").unwrap().unwrap().0.mode, 0o755);
    }

    #[test]
    fn a_journal_cut_short_ends_at_its_last_whole_line() {
        let staging = tempfile::tempdir().unwrap();
        let (op, _) = mkdir(b"/kept", 0o755);
        let mut raw = serde_json::to_vec(&op).unwrap();
        raw.extend(b"\n{\"op\":\"mkd");
        std::fs::write(staging.path().join("1-5.ops"), &raw).unwrap(); // pid 1 runs
        let earlier = format!("{}-5.ops", std::process::id());
        std::fs::write(staging.path().join(earlier), &raw).unwrap();
        let left = leftover_ops(staging.path(), Path::new("/")).unwrap();
        assert_eq!(left.len(), 1, "a live process's journal is left alone");
        assert_eq!(left[0].1, [op]);
    }
}
