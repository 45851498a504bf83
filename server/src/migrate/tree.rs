//! The tree a migration builds as it goes, and how it lands on HEAD.
//!
//! Finished files are folded, at every checkpoint and every [`FOLD_ENTRIES`] files,
//! into a tree of their own ([`Folded`]: from nothing, only what this migration
//! imports), which is sealed and its edit dropped: memory follows what came since the
//! last fold, not the size of the tree. At the end [`Folded::land`] puts that tree on
//! HEAD, under the HEAD lock, walking both only where both hold a folder and the two
//! differ: a subtree HEAD lacks is put whole (by id), one both hold the same is left.
//! So nothing HEAD holds beside the import is removed, what others committed during
//! the migration stays, and a re-run that found nothing new changes nothing.
//!
//! The folded tree is named by no version until the commit: the migration holds
//! collections off meanwhile ([`fvfs_manifest::Repo::hold_collections`]). Files with
//! several names wait apart until the end (their link ids need every name, see
//! `link_names`): memory follows those, not the tree.

use fvfs_cas::ChunkId;
use fvfs_manifest::node::Meta;
use fvfs_manifest::{
    lookup, path, Entry, EntryKind, ManifestError, Origin, Pending, Repo, TreeEdit,
};

use super::ingest::Ingest;
use super::walk::Stat;

/// Entries (and folders walked) folded into the tree at once, at most; the edits of
/// the landing are sealed as often.
pub const FOLD_ENTRIES: usize = 16_384;

/// A folder walked: its destination, stat and owner and extended attributes.
pub type Dir = (Vec<u8>, Stat, Box<Meta>);

/// What this migration imported so far, as a sealed tree.
#[derive(Default)]
pub struct Folded {
    root: Option<ChunkId>,
}

impl Folded {
    /// Folds `dirs` and `entries` (taken, in any order) into the tree; a path that
    /// cannot be put is noted in `skipped` as "path: why". Fails on a store error.
    pub async fn fold(
        &mut self,
        ingest: &Ingest<'_>,
        dirs: &mut Vec<Dir>,
        entries: &mut Vec<(Vec<u8>, Entry)>,
        skipped: &mut Vec<String>,
    ) -> Result<(), ManifestError> {
        if dirs.is_empty() && entries.is_empty() {
            return Ok(());
        }
        let (repo, pending) = (ingest.repo, ingest.pending);
        let mut edit = TreeEdit::open(repo, self.root).await?;
        let now = super::now_ns();
        let mut dirs = std::mem::take(dirs);
        dirs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (dest, stat, meta) in dirs {
            let made = edit.mkdir(repo, &dest, stat.mode, stat.mtime_ns, Some(meta));
            if let Err(e) = made.await {
                skipped.push(format!("{}: {e}", path::show(&dest)));
            }
        }
        let mut entries = std::mem::take(entries);
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (dest, e) in edit
            .insert_sorted_held(repo, ingest.held, entries, now)
            .await
        {
            skipped.push(format!("{}: {e}", path::show(&dest)));
        }
        self.root = Some(edit.seal(repo, pending).await?.0);
        Ok(())
    }

    /// The tree HEAD (`head`) becomes with the folded tree's `dest` put on it, then
    /// `several` (files with several names, sorted by path); its root and logical
    /// size.
    pub async fn land(
        &self,
        repo: &Repo,
        pending: &Pending,
        head: Option<ChunkId>,
        dest: &[u8],
        several: Vec<(Vec<u8>, Entry)>,
        skipped: &mut Vec<String>,
    ) -> Result<(ChunkId, u64), ManifestError> {
        let now = super::now_ns();
        let mut edit = TreeEdit::open(repo, head).await?;
        let mut todo = Vec::new();
        if let Some(folded) = self.root {
            match lookup(repo, folded, dest).await {
                Ok(top) if path::components(dest).is_ok_and(|c| c.is_empty()) => {
                    children(repo, dest, &top, &mut todo).await?
                }
                Ok(top) => todo.push((dest.to_vec(), top)),
                // Its folder could not be made (noted in `skipped`): nothing below it.
                Err(ManifestError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        {
            let mut steps = 0;
            while let Some((at, new)) = todo.pop() {
                match edit.get(repo, &at).await? {
                    Some(base) if same(&base, &new) => {}
                    Some(base) if base.kind == EntryKind::Dir && new.kind == EntryKind::Dir => {
                        let meta = new.meta.clone();
                        edit.mkdir(repo, &at, new.mode, new.mtime_ns, meta).await?;
                        children(repo, &at, &new, &mut todo).await?;
                    }
                    _ => {
                        let put = edit.insert(repo, pending, &at, new, now, Origin::Daemon);
                        if let Err(e) = put.await {
                            skipped.push(format!("{}: {e}", path::show(&at)));
                        }
                    }
                }
                steps += 1;
                if steps % FOLD_ENTRIES == 0 {
                    let (root, _) = edit.seal(repo, pending).await?;
                    edit = TreeEdit::open(repo, Some(root)).await?;
                }
            }
        }
        for (at, e) in edit
            .insert_sorted(repo, pending, several, now, Origin::Daemon)
            .await
        {
            skipped.push(format!("{}: {e}", path::show(&at)));
        }
        edit.seal(repo, pending).await
    }
}

/// Whether `base` already is `new`, in everything but the name.
fn same(base: &Entry, new: &Entry) -> bool {
    Entry {
        name: new.name.clone(),
        ..base.clone()
    } == *new
}

/// Pushes the entries of folder `dir` (at `at`) onto `todo`, last first, so that they
/// are taken in order.
async fn children(
    repo: &Repo,
    at: &[u8],
    dir: &Entry,
    todo: &mut Vec<(Vec<u8>, Entry)>,
) -> Result<(), ManifestError> {
    let Some(id) = dir.id else {
        return Ok(());
    };
    for e in repo.dir(&id).await?.entries.into_iter().rev() {
        let mut child = at.to_vec();
        if child.last() != Some(&b'/') {
            child.push(b'/');
        }
        child.extend_from_slice(&e.name);
        todo.push((child, e));
    }
    Ok(())
}
