//! Export of trees no local file system could hold, as stored before names were
//! limited.

use super::*;
use fvfs_cas::{ChunkStore, MemoryStore};
use fvfs_manifest::node::{DirNode, Node};
use fvfs_manifest::{ChunkKind, ChunkRef, FileRef, Pending, VersionKind};

/// A repository whose HEAD is one folder holding `names`, each a file of "content"
/// (a tree stored before names were limited can hold any of them).
async fn legacy_tree(dir: &Path, names: &[Vec<u8>]) -> Repo {
    let store = Arc::new(MemoryStore::new()) as Arc<dyn ChunkStore>;
    let kv = fvfs_manifest::kv::Kv::open(&dir.join("meta")).unwrap();
    let repo = Repo::new(store, kv, Arc::new(fvfs_manifest::Unindexed));
    let pending = Pending::default();
    let data = repo
        .put_chunk(&pending, b"content", ChunkKind::Data)
        .await
        .unwrap();
    let file = FileRef {
        size: 7,
        node: None,
        chunks: vec![ChunkRef { id: data, len: 7 }],
    };
    let mut entries: Vec<Entry> = names
        .iter()
        .map(|n| Entry {
            name: n.clone(),
            ..file.clone().entry(0o644, 0)
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let root = repo
        .put_node(&pending, &Node::Dir(DirNode { entries }))
        .await
        .unwrap();
    let lock = repo.lock().await;
    lock.commit(&pending, root, 7, VersionKind::Write, "legacy")
        .await
        .unwrap();
    drop(lock);
    repo
}

#[tokio::test]
async fn names_no_local_file_system_holds_are_named_and_passed() {
    let work = tempfile::tempdir().unwrap();
    let (long, huge) = (vec![b'l'; 300], vec![b'h'; 4096]);
    let names = [b"fine".to_vec(), long.clone(), huge.clone()];
    let repo = legacy_tree(work.path(), &names).await;
    let out = work.path().join("out");
    let args = ExportArgs {
        version: None,
        path: "/".into(),
        dir: out.clone(),
        keep_privileged: false,
        verbose: false,
    };
    let outcome = run(&repo, None, args).await.unwrap();
    assert_eq!(std::fs::read(out.join("fine")).unwrap(), b"content");
    assert_eq!(outcome.skipped.len(), 2, "{:?}", outcome.skipped);
    for (name, why) in [(&long, "300"), (&huge, "4096")] {
        let shown = out.join(OsStr::from_bytes(name)).display().to_string();
        let named = outcome.skipped.iter().find(|s| s.starts_with(&shown));
        assert!(
            named.is_some_and(|s| s.contains("too long")),
            "{why}: {:?}",
            outcome.skipped
        );
    }
    assert!(outcome.summary.contains("1 files"), "{}", outcome.summary);
}
