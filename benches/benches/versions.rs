//! Snapshot and rollback on a tree of 100,000 files, in process, on a real directory
//! store and metadata database: both are O(1) in the tree's size (one version record, no
//! tree walk), and each includes its durable flush.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use fvfs_cas::{ChunkStore, PackOptions, PackStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::{ChunkKind, ChunkRef, Origin, Pending, Repo, TreeEdit, VersionKind};

fn repo_with_files(dir: &std::path::Path, rt: &tokio::runtime::Runtime, files: usize) -> Repo {
    let store = PackStore::open(dir.join("chunks"), PackOptions::default()).unwrap();
    let repo = Repo::new(
        Arc::new(store) as Arc<dyn ChunkStore>,
        Kv::open(&dir.join("meta")).unwrap(),
        Arc::new(fvfs_manifest::Unindexed),
    );
    rt.block_on(async {
        let pending = Pending::default();
        let lock = repo.lock().await;
        let mut edit = TreeEdit::open(&repo, None).await.unwrap();
        for i in 0..files {
            let data = format!("file {i}\n");
            let id = repo
                .put_chunk(&pending, data.as_bytes(), ChunkKind::Data)
                .await
                .unwrap();
            let file = repo
                .put_file(
                    &pending,
                    vec![ChunkRef {
                        id,
                        len: data.len() as u64,
                    }],
                )
                .await
                .unwrap();
            let path = format!("/d{}/f{i}", i / 1000);
            edit.insert(
                &repo,
                &pending,
                path.as_bytes(),
                file.entry(0o644, 0),
                0,
                Origin::Daemon,
            )
            .await
            .unwrap();
        }
        let (root, size) = edit.seal(&repo, &pending).await.unwrap();
        lock.commit(&pending, root, size, VersionKind::Write, "100k files")
            .await
            .unwrap();
    });
    repo
}

fn versions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_with_files(dir.path(), &rt, 100_000);
    let mut g = c.benchmark_group("versions_100k_files");
    g.sample_size(20);
    let mut n = 0u64;
    g.bench_function("snapshot_create", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(async {
                repo.lock()
                    .await
                    .snapshot_create(&format!("s{n}"))
                    .await
                    .unwrap()
            })
        })
    });
    let first = repo.resolve("1").unwrap();
    g.bench_function("rollback", |b| {
        b.iter(|| rt.block_on(async { repo.lock().await.rollback(&first).await.unwrap() }))
    });
    g.finish();
}

criterion_group!(benches, versions);
criterion_main!(benches);
