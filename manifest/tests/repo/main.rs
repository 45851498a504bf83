//! The manifest against a memory store: path copying, group commit, snapshots,
//! rollback and diff.

use std::collections::HashSet;
use std::sync::Arc;

use fvfs_cas::{ChunkStore, MemoryStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::*;

mod store;
mod tree;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MemoryStore>,
    /// The repository's database, for records written around it.
    kv: Kv,
    repo: Repo,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let kv = Kv::open(&dir.path().join("meta")).unwrap();
    let repo = Repo::new(
        store.clone() as Arc<dyn ChunkStore>,
        kv.clone(),
        Arc::new(fvfs_manifest::Unindexed),
    );
    Fixture {
        _dir: dir,
        store,
        kv,
        repo,
    }
}

fn file_entry(id: fvfs_cas::ChunkId, size: u64) -> Entry {
    FileRef {
        size,
        node: None,
        chunks: vec![ChunkRef { id, len: size }],
    }
    .entry(0o644, 7)
}

/// Writes `files` (path, content) as one commit on top of HEAD.
async fn write(repo: &Repo, files: &[(&str, &str)]) -> Version {
    let lock = repo.lock().await;
    let pending = Pending::default();
    let mut edit = TreeEdit::open(repo, lock.head().unwrap().map(|v| v.root))
        .await
        .unwrap();
    for (path, content) in files {
        let data = repo
            .put_chunk(&pending, content.as_bytes(), ChunkKind::Data)
            .await
            .unwrap();
        let file = repo
            .put_file(
                &pending,
                vec![ChunkRef {
                    id: data,
                    len: content.len() as u64,
                }],
            )
            .await
            .unwrap();
        edit.insert(
            repo,
            &pending,
            path.as_bytes(),
            file.entry(0o644, 7),
            1,
            Origin::Daemon,
        )
        .await
        .unwrap();
    }
    let (root, bytes) = edit.seal(repo, &pending).await.unwrap();
    lock.commit(&pending, root, bytes, VersionKind::Write, "test")
        .await
        .unwrap()
}

async fn read(repo: &Repo, root: fvfs_cas::ChunkId, path: &str) -> Option<String> {
    let e = lookup(repo, root, path.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    for c in repo.file_chunks(&e).await.unwrap() {
        out.extend_from_slice(
            &fvfs_cas::ChunkStoreExt::get_data(repo.store().as_ref(), &c.id)
                .await
                .unwrap(),
        );
    }
    Some(String::from_utf8(out).unwrap())
}
