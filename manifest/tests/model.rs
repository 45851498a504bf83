//! Property test: any sequence of edits, committed in any grouping, leaves the same
//! tree as a plain in-memory model of a file system, with the same errors on the way.

use std::collections::BTreeMap;
use std::sync::Arc;

use fvfs_cas::{ChunkStore, ChunkStoreExt, MemoryStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, String),
    Mkdir(Vec<u8>),
    Remove(Vec<u8>, bool),
    Commit,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    File(String),
    Dir,
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
        .prop_map(|c| format!("/{}", c.join("/")).into_bytes())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path(), "[a-z]{0,12}").prop_map(|(p, c)| Op::Put(p, c)),
        2 => path().prop_map(Op::Mkdir),
        2 => (path(), any::<bool>()).prop_map(|(p, r)| Op::Remove(p, r)),
        1 => Just(Op::Commit),
    ]
}

/// The model: path -> kind. Returns whether the op succeeds.
fn apply_model(m: &mut BTreeMap<Vec<u8>, Kind>, op: &Op) -> bool {
    let ancestors = |p: &[u8]| -> Vec<Vec<u8>> {
        (1..p.len())
            .filter(|&i| p[i] == b'/')
            .map(|i| p[..i].to_vec())
            .collect()
    };
    let below = |p: &[u8], k: &[u8]| k.len() > p.len() && k.starts_with(p) && k[p.len()] == b'/';
    match op {
        Op::Put(p, _) | Op::Mkdir(p)
            if ancestors(p)
                .iter()
                .any(|a| matches!(m.get(a), Some(Kind::File(_)))) =>
        {
            false
        }
        Op::Put(p, c) => {
            if m.get(p) == Some(&Kind::Dir) {
                return false;
            }
            for a in ancestors(p) {
                m.insert(a, Kind::Dir);
            }
            m.insert(p.clone(), Kind::File(c.clone()));
            true
        }
        Op::Mkdir(p) => {
            if matches!(m.get(p), Some(Kind::File(_))) {
                return false;
            }
            for a in ancestors(p).into_iter().chain([p.clone()]) {
                m.insert(a, Kind::Dir);
            }
            true
        }
        Op::Remove(p, recursive) => {
            if ancestors(p)
                .iter()
                .any(|a| matches!(m.get(a), Some(Kind::File(_))))
                || !m.contains_key(p)
            {
                return false;
            }
            let children: Vec<Vec<u8>> = m.keys().filter(|k| below(p, k)).cloned().collect();
            if !children.is_empty() && !recursive {
                return false;
            }
            for k in children {
                m.remove(&k);
            }
            m.remove(p);
            true
        }
        Op::Commit => true,
    }
}

async fn apply_tree(repo: &Repo, edit: &mut TreeEdit, pending: &Pending, op: &Op) -> bool {
    match op {
        Op::Put(p, c) => {
            let id = repo
                .put_chunk(pending, c.as_bytes(), ChunkKind::Data)
                .await
                .unwrap();
            let chunks = if c.is_empty() {
                vec![]
            } else {
                vec![ChunkRef {
                    id,
                    len: c.len() as u64,
                }]
            };
            let file = repo.put_file(pending, chunks).await.unwrap();
            edit.insert(repo, pending, p, file.entry(0o644, 1), 0, Origin::Daemon)
                .await
                .is_ok()
        }
        Op::Mkdir(p) => edit.mkdir(repo, p, 0o755, 0, None).await.is_ok(),
        Op::Remove(p, r) => edit.remove(repo, p, *r).await.is_ok(),
        Op::Commit => true,
    }
}

async fn read_tree(repo: &Repo, root: fvfs_cas::ChunkId) -> BTreeMap<Vec<u8>, Kind> {
    let mut entries = Vec::new();
    walk(repo, b"/", root, &mut |p, e| {
        entries.push((p.to_vec(), e.clone()));
        Ok(())
    })
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for (p, e) in entries {
        let kind = match e.kind {
            EntryKind::Dir => Kind::Dir,
            _ => {
                let mut content = Vec::new();
                for c in repo.file_chunks(&e).await.unwrap() {
                    content.extend_from_slice(&repo.store().get_data(&c.id).await.unwrap());
                }
                Kind::File(String::from_utf8(content).unwrap())
            }
        };
        out.insert(p, kind);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn edits_match_a_model_file_system(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repo::new(Arc::new(MemoryStore::new()) as Arc<dyn ChunkStore>, Kv::open(&dir.path().join("m")).unwrap(), Arc::new(fvfs_manifest::Unindexed));
            let mut model = BTreeMap::new();
            let mut pending = Pending::default();
            let mut edit = TreeEdit::open(&repo, None).await.unwrap();
            let mut head_root = None;
            for op in ops.iter().chain([&Op::Commit]) {
                let want = apply_model(&mut model, op);
                let got = apply_tree(&repo, &mut edit, &pending, op).await;
                prop_assert_eq!(got, want, "{:?}", op);
                if let Op::Commit = op {
                    let lock = repo.lock().await;
                    let (root, size) = std::mem::replace(&mut edit, TreeEdit::open(&repo, None).await.unwrap()).seal(&repo, &pending).await.unwrap();
                    let v = lock.commit(&pending, root, size, VersionKind::Write, "t").await.unwrap();
                    drop(lock);
                    pending = Pending::default();
                    edit = TreeEdit::open(&repo, Some(v.root)).await.unwrap();
                    prop_assert_eq!(read_tree(&repo, v.root).await, model.clone());
                    let files: u64 = model.values().map(|k| match k { Kind::File(c) => c.len() as u64, Kind::Dir => 0 }).sum();
                    prop_assert_eq!(v.logical_bytes, files);
                    if let Some(prev) = head_root {
                        // Nothing changed since the last commit: same root, no new nodes.
                        if read_tree(&repo, prev).await == model {
                            prop_assert_eq!(prev, v.root);
                        }
                    }
                    head_root = Some(v.root);
                }
            }
            Ok(())
        })?;
    }
}
