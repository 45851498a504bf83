//! fsck and gc over in-memory stores, no binaries, no root: what a check finds on a
//! damaged store, what a collection frees and keeps, and that a store failing under
//! a collection loses nothing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use fvfs_api::reports::Compaction;
use fvfs_cas::faults::{Fault, FaultyStore, Op};
use fvfs_cas::{ChunkId, ChunkStore, MemoryStore, StoreError};
use fvfs_fsck::gc::{self, Options as GcOptions};
use fvfs_fsck::retention::Retention;
use fvfs_fsck::{FsckError, Options, Progress, Spill, Tier};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::meta::{TIER_LOCAL, TIER_S3};
use fvfs_manifest::*;
use fvfs_tiering::s3::{IsNode, Packs};
use fvfs_tiering::Publishing;

struct Fixture {
    _dir: tempfile::TempDir,
    /// Sets of more than a few chunks go to disk: every check and collection here
    /// takes the path a store of millions of chunks takes.
    spill: Spill,
    store: Arc<FaultyStore<MemoryStore>>,
    repo: Arc<Repo>,
    /// An S3 tier seen through its packs, when the store has one.
    s3: Option<(Arc<MemoryStore>, Arc<FakePacks>)>,
}

fn fixture() -> Fixture {
    fixture_with(None)
}

/// A store with the local tier and, when given, an S3 tier whose packs are `s3`.
fn fixture_with(s3: Option<Arc<FakePacks>>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let kv = Kv::open(&dir.path().join("meta")).unwrap();
    let replicas = if s3.is_some() { TIER_S3 } else { 0 };
    let index = Arc::new(fvfs_tiering::TierIndex::new(&kv, replicas));
    let repo = Arc::new(Repo::new(store.clone() as Arc<dyn ChunkStore>, kv, index));
    Fixture {
        spill: Spill::in_dir(dir.path()).with_budget(8 * 32),
        _dir: dir,
        store,
        repo,
        s3: s3.map(|p| (Arc::new(MemoryStore::new()), p)),
    }
}

/// The packs of an S3 tier as fsck and gc see them: what they were told, and whether
/// the bucket refuses to be told.
#[derive(Default)]
struct FakePacks {
    dropped: Mutex<Vec<u64>>,
    compactions: AtomicUsize,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Packs for FakePacks {
    async fn pack_names(&self) -> Result<HashSet<[u8; 32]>, StoreError> {
        Ok(HashSet::new())
    }

    async fn compact(
        &self,
        _: f64,
        _: bool,
        _: &IsNode<'_>,
        _: Option<&dyn fvfs_cas::ChunkStore>,
    ) -> Result<Compaction, StoreError> {
        self.compactions.fetch_add(1, Ordering::SeqCst);
        Ok(Compaction::default())
    }

    async fn record_dropped(&self, numbers: &[u64]) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the bucket is down".into()));
        }
        self.dropped.lock().unwrap().extend_from_slice(numbers);
        Ok(())
    }

    async fn collecting(&self) -> tokio::sync::OwnedMutexGuard<()> {
        std::sync::Arc::new(tokio::sync::Mutex::new(()))
            .lock_owned()
            .await
    }

    async fn follow(
        &self,
        _: &dyn fvfs_cas::ChunkStore,
        _: &IsNode<'_>,
    ) -> Result<fvfs_api::reports::Followed, StoreError> {
        Ok(Default::default())
    }
}

impl Fixture {
    fn tiers(&self) -> Vec<Tier> {
        let mut tiers = vec![Tier {
            name: "local",
            bit: TIER_LOCAL,
            store: self.store.clone(),
            s3: None,
        }];
        if let Some((store, packs)) = &self.s3 {
            tiers.push(Tier {
                name: "s3",
                bit: TIER_S3,
                store: store.clone(),
                s3: Some(packs.clone()),
            });
        }
        tiers
    }

    /// Writes `files` (path, content) as one commit on top of HEAD; returns the
    /// data chunk of each.
    async fn write(&self, files: &[(&str, &str)]) -> Vec<ChunkId> {
        let repo = &self.repo;
        let lock = repo.lock().await;
        let pending = Pending::default();
        let mut edit = TreeEdit::open(repo, lock.head().unwrap().map(|v| v.root))
            .await
            .unwrap();
        let mut ids = Vec::new();
        for (path, content) in files {
            let data = repo
                .put_chunk(&pending, content.as_bytes(), ChunkKind::Data)
                .await
                .unwrap();
            ids.push(data);
            let refs = vec![ChunkRef {
                id: data,
                len: content.len() as u64,
            }];
            let file = repo.put_file(&pending, refs).await.unwrap();
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
            .unwrap();
        ids
    }

    async fn check(&self, read_data: bool) -> fvfs_api::reports::FsckReport {
        let versions = fvfs_fsck::versions_to_check(&self.repo, true, None).unwrap();
        let opts = Options {
            read_data,
            repair: false,
        };
        let progress = Arc::new(Progress::new("fsck"));
        fvfs_fsck::check(
            &self.repo,
            &self.tiers(),
            &versions,
            opts,
            &self.spill,
            &progress,
        )
        .await
        .unwrap()
        .report
    }

    async fn collect(&self, keep_last: u64) -> Result<fvfs_api::reports::GcReport, FsckError> {
        let opts = GcOptions {
            retention: Retention {
                keep_last: Some(keep_last),
                keep_daily: None,
                keep_weekly: None,
            },
            dry_run: false,
            grace_secs: 0,
            in_flight_secs: 0,
            compact_below: 0.0,
            recompress: false,
            offline: true,
        };
        let progress = Progress::new("gc");
        gc::collect(&self.repo, &self.tiers(), &opts, &self.spill, &progress).await
    }

    async fn stored(&self) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self.store.list().map(|r| r.unwrap()).collect().await;
        ids.sort();
        ids
    }
}

#[tokio::test]
async fn fsck_names_the_path_of_a_missing_and_of_a_corrupt_chunk() {
    let f = fixture();
    let ids = f
        .write(&[("/docs/a.txt", "alpha"), ("/docs/b.txt", "bravo")])
        .await;
    let clean = f.check(true).await;
    assert!(clean.is_clean() && clean.problems.is_empty(), "{clean:?}");
    assert_eq!(clean.data_chunks, 2);

    f.store.delete(&ids[0]).await.unwrap();
    let missing = f.check(false).await;
    assert!(!missing.is_clean());
    assert_eq!(missing.problems.len(), 1, "{missing:?}");
    assert_eq!(missing.problems[0].id, ids[0]);
    assert_eq!(missing.problems[0].path, "/docs/a.txt");

    // The other chunk's copy replaced by different bytes: a dying disk.
    f.store.delete(&ids[1]).await.unwrap();
    let wrong = bytes::Bytes::from(fvfs_cas::frame::encode(b"not bravo"));
    f.store.put(ids[1], wrong).await.unwrap();
    let corrupt = f.check(true).await;
    let found: Vec<(&str, ChunkId)> = corrupt
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.id))
        .collect();
    assert!(found.contains(&("/docs/b.txt", ids[1])), "{corrupt:?}");
    assert!(
        found.iter().all(|(path, _)| path.starts_with("/docs/")),
        "{corrupt:?}"
    );
}

/// A chunk that many files hold is counted and checked once: the walk's list of
/// reachable ids drops its duplicates as it grows (here 150,000 references to 1,000
/// chunks, well past the point where it first does).
#[tokio::test]
async fn fsck_counts_a_chunk_that_many_files_hold_once() {
    let f = fixture();
    let pending = Pending::default();
    let mut refs = Vec::new();
    for n in 0..1_000 {
        let content = format!("chunk {n}");
        let id = f
            .repo
            .put_chunk(&pending, content.as_bytes(), ChunkKind::Data)
            .await
            .unwrap();
        let len = content.len() as u64;
        refs.push(ChunkRef { id, len });
    }
    let mut dirs = Vec::new();
    for d in 0..150 {
        let mut entries = Vec::new();
        for (n, r) in refs.iter().enumerate() {
            let file = f.repo.put_file(&pending, vec![*r]).await.unwrap();
            entries.push(Entry {
                name: format!("d{d}-f{n:04}").into_bytes(),
                ..file.entry(0o644, 7)
            });
        }
        let dir = Node::Dir(DirNode { entries });
        let id = f.repo.put_node(&pending, &dir).await.unwrap();
        dirs.push(Entry {
            name: format!("d{d:03}").into_bytes(),
            id: Some(id),
            ..Entry::dir(0o755, 7)
        });
    }
    commit_root(&f, &pending, dirs).await;
    let report = f.check(true).await;
    assert!(
        report.is_clean() && report.problems.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.data_chunks, 1_000);
    assert_eq!(report.nodes, 151);
}

#[tokio::test]
async fn gc_frees_what_only_dropped_versions_reach_and_keeps_the_rest_readable() {
    let f = fixture();
    let old = f.write(&[("/a", "first a"), ("/b", "shared b")]).await;
    f.write(&[("/a", "second a")]).await;
    let before = f.stored().await;
    let report = f.collect(1).await.unwrap();
    assert_eq!(report.versions_dropped, vec![1]);
    let after = f.stored().await;
    assert!(
        !after.contains(&old[0]),
        "the dropped version's own chunk is freed"
    );
    assert!(
        after.contains(&old[1]),
        "a chunk the kept version shares stays"
    );
    assert!(after.len() < before.len());
    let check = f.check(true).await;
    assert!(check.is_clean() && check.problems.is_empty(), "{check:?}");
}

/// The idle rewrite's hint: HEAD's chunks (its data and its tree nodes) are in the
/// filter, and the chunks only an older version reaches mostly are not.
#[tokio::test]
async fn newest_chunks_are_heads_and_not_the_older_versions() {
    let f = fixture();
    assert!(fvfs_fsck::newest_chunks(&f.repo).await.is_none(), "no HEAD");
    let files: Vec<(String, String)> = (0..200)
        .map(|i| (format!("/d{}/f{i}", i % 7), format!("old content {i}")))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (&p[..], &c[..])).collect();
    let old = f.write(&refs).await;
    let changed: Vec<(String, String)> = (0..100)
        .map(|i| (format!("/d{}/f{i}", i % 7), format!("new content {i}")))
        .collect();
    let refs: Vec<(&str, &str)> = changed.iter().map(|(p, c)| (&p[..], &c[..])).collect();
    let new = f.write(&refs).await;
    let filter = fvfs_fsck::newest_chunks(&f.repo).await.unwrap();
    assert!(new.iter().chain(&old[100..]).all(|id| filter.may_hold(id)));
    let root = f.repo.head().unwrap().unwrap().root;
    assert!(filter.may_hold(&root), "tree nodes too");
    let stale = old[..100].iter().filter(|id| filter.may_hold(id)).count();
    assert!(
        stale < 10,
        "{stale} of 100 replaced chunks said to be HEAD's"
    );
}

/// A collection whose reachable set is on disk (far more chunks than the fixture's
/// budget) frees exactly what only the dropped version reached.
#[tokio::test]
async fn gc_with_its_marks_on_disk_frees_exactly_what_only_dropped_versions_reach() {
    let f = fixture();
    let names: Vec<String> = (0..200).map(|n| format!("/d{}/f{n}", n % 7)).collect();
    let first: Vec<String> = (0..200).map(|n| format!("first {n}")).collect();
    let files: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(first.iter().map(String::as_str))
        .collect();
    let old = f.write(&files).await;
    // Every other file rewritten: the old content of those is reached by version 1 only.
    let second: Vec<String> = (0..200).step_by(2).map(|n| format!("second {n}")).collect();
    let files: Vec<(&str, &str)> = names
        .iter()
        .step_by(2)
        .map(String::as_str)
        .zip(second.iter().map(String::as_str))
        .collect();
    let new = f.write(&files).await;
    let report = f.collect(1).await.unwrap();
    assert_eq!(report.versions_dropped, vec![1]);
    let after: HashSet<ChunkId> = f.stored().await.into_iter().collect();
    for (n, id) in old.iter().enumerate() {
        assert_eq!(after.contains(id), n % 2 == 1, "file {n}'s first content");
    }
    assert!(new.iter().all(|id| after.contains(id)));
    let check = f.check(true).await;
    assert!(check.is_clean() && check.problems.is_empty(), "{check:?}");
    assert_eq!(check.data_chunks, 200);
}

#[tokio::test]
async fn gc_tells_s3s_log_what_it_dropped_before_compacting_and_compacts_nothing_until_it_can() {
    let packs = Arc::new(FakePacks::default());
    let f = fixture_with(Some(packs.clone()));
    for n in 1..=3 {
        f.write(&[("/a", &format!("a, version {n}"))]).await;
    }
    packs.down.store(true, Ordering::SeqCst);
    let report = f.collect(1).await.unwrap();
    assert_eq!(report.versions_dropped, vec![1, 2]);
    let skipped = report.s3_skipped.expect("S3's part is said skipped");
    assert!(skipped.contains("the bucket is down"), "{skipped}");
    assert_eq!(
        packs.compactions.load(Ordering::SeqCst),
        0,
        "no pack touched"
    );
    assert_eq!(
        f.repo.dropped_unpublished().unwrap(),
        [1, 2],
        "kept for the next"
    );

    packs.down.store(false, Ordering::SeqCst);
    let report = f.collect(1).await.unwrap();
    assert!(report.s3_skipped.is_none(), "{report:?}");
    assert_eq!(*packs.dropped.lock().unwrap(), [1, 2]);
    assert_eq!(packs.compactions.load(Ordering::SeqCst), 1);
    assert!(f.repo.dropped_unpublished().unwrap().is_empty());
}

#[tokio::test]
async fn gc_that_cannot_read_a_kept_node_deletes_nothing() {
    let f = fixture();
    f.write(&[("/a", "first a"), ("/dir/b", "b")]).await;
    f.write(&[("/a", "second a")]).await;
    let before = f.stored().await;
    // The mark phase meets an unavailable store: it must stop before the sweep.
    f.store.schedule(Op::Get, Fault::Fail, u32::MAX);
    let err = f.collect(1).await.unwrap_err();
    assert!(matches!(err, FsckError::Unreadable(_)), "{err}");
    assert!(
        err.to_string().contains("before deleting anything"),
        "{err}"
    );
    assert_eq!(f.stored().await, before, "nothing deleted");
}

/// A version whose root is the directory node `entries` (sorted), made by hand: what
/// a bug in the tree edit, or a forged node, would leave.
async fn commit_root(f: &Fixture, pending: &Pending, entries: Vec<Entry>) {
    let node = Node::Dir(DirNode { entries });
    let root = f.repo.put_node(pending, &node).await.unwrap();
    let lock = f.repo.lock().await;
    lock.commit(pending, root, 0, VersionKind::Write, "by hand")
        .await
        .unwrap();
}

/// Hard links: fsck passes a tree whose file has names in two folders (made by the
/// tree edit), and names each way the names of one file can disagree.
#[tokio::test]
async fn fsck_checks_that_the_names_of_a_file_agree() {
    let f = fixture();
    f.write(&[("/a/x", "shared"), ("/b/other", "other")]).await;
    {
        let repo = &f.repo;
        let lock = repo.lock().await;
        let pending = Pending::default();
        let mut edit = TreeEdit::open(repo, lock.head().unwrap().map(|v| v.root))
            .await
            .unwrap();
        edit.link(repo, b"/a/x", b"/b/y", false, None)
            .await
            .unwrap();
        let (root, bytes) = edit.seal(repo, &pending).await.unwrap();
        lock.commit(&pending, root, bytes, VersionKind::Write, "link")
            .await
            .unwrap();
    }
    let clean = f.check(false).await;
    assert!(clean.problems.is_empty(), "{clean:?}");

    // Take the linked entry the edit made, and put its names together by hand.
    let head = f.repo.head().unwrap().unwrap();
    let Node::Dir(top) = f.repo.node(&head.root).await.unwrap() else {
        panic!("root is a directory")
    };
    let a = top.entries.iter().find(|e| e.name == b"a").unwrap();
    let Node::Dir(inside) = f.repo.node(&a.id.unwrap()).await.unwrap() else {
        panic!("a is a directory")
    };
    let x = inside.entries[0].clone();
    let link = x.link.expect("x has two names");
    assert_eq!(link.nlink, 2);
    let named = |name: &str, e: &Entry| Entry {
        name: name.into(),
        ..e.clone()
    };
    // One name's entry differs (another mode).
    let other_mode = Entry {
        mode: 0o600,
        ..x.clone()
    };
    let entries = vec![named("p", &x), named("q", &other_mode)];
    commit_root(&f, &Pending::default(), entries).await;
    let found = f.check(false).await;
    let what: Vec<&str> = found.problems.iter().map(|p| p.what.as_str()).collect();
    assert!(
        what.iter().any(|w| w.contains("hold different entries")),
        "{found:?}"
    );

    // Two names where the file says three.
    let three = Entry {
        link: Some(fvfs_manifest::node::Link { nlink: 3, ..link }),
        ..x.clone()
    };
    let entries = vec![named("p", &three), named("q", &three)];
    commit_root(&f, &Pending::default(), entries).await;
    let found = f.check(false).await;
    assert!(
        found
            .problems
            .iter()
            .any(|p| p.what.contains("says it has 3 names; the tree has 2")),
        "{found:?}"
    );

    // A folder that counts no linked name below it, though it holds one: finding
    // the file's other names would skip it.
    let pending = Pending::default();
    let inside = Node::Dir(DirNode {
        entries: vec![named("q", &x)],
    });
    let hides = Entry {
        name: b"hides".to_vec(),
        id: Some(f.repo.put_node(&pending, &inside).await.unwrap()),
        links: 0,
        ..Entry::dir(0o755, 0)
    };
    commit_root(&f, &pending, vec![hides, named("p", &x)]).await;
    let found = f.check(false).await;
    let counted: Vec<&str> = found
        .problems
        .iter()
        .filter(|p| p.what.contains("counts 0 names"))
        .map(|p| p.path.as_str())
        .collect();
    assert_eq!(counted, ["/hides"], "{found:?}");
}

/// What a tier's [`Meanwhile`] does once: given the ids of a bulk read, whether it
/// acted on them.
type Act = Box<dyn Fn(Vec<ChunkId>) -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// A tier that, after answering a bulk read, runs `act` on its ids until it has acted
/// once: what a live daemon's replication or eviction does just after fsck read ahead
/// of its checks.
struct Meanwhile {
    inner: Arc<dyn ChunkStore>,
    act: Act,
    acted: AtomicBool,
}

impl Meanwhile {
    fn new(inner: Arc<dyn ChunkStore>, act: Act) -> Arc<Self> {
        Arc::new(Self {
            inner,
            act,
            acted: AtomicBool::new(false),
        })
    }
}

#[async_trait::async_trait]
impl ChunkStore for Meanwhile {
    async fn put(&self, id: ChunkId, frame: bytes::Bytes) -> Result<(), StoreError> {
        self.inner.put(id, frame).await
    }
    async fn get(&self, id: &ChunkId) -> Result<fvfs_cas::Loaded, StoreError> {
        self.inner.get(id).await
    }
    async fn has(&self, ids: &[ChunkId]) -> Result<Vec<bool>, StoreError> {
        self.inner.has(ids).await
    }
    async fn delete(&self, id: &ChunkId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    fn list(&self) -> futures::stream::BoxStream<'_, Result<ChunkId, StoreError>> {
        self.inner.list()
    }
    async fn usage(&self) -> Result<fvfs_cas::Usage, StoreError> {
        self.inner.usage().await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn get_many(&self, ids: Vec<ChunkId>) -> fvfs_cas::ChunkStream<'_> {
        futures::stream::once(async move {
            let answers: Vec<_> = self.inner.get_many(ids.clone()).collect().await;
            if !self.acted.load(Ordering::SeqCst) && (self.act)(ids).await {
                self.acted.store(true, Ordering::SeqCst);
            }
            futures::stream::iter(answers)
        })
        .flatten()
        .boxed()
    }
}

#[tokio::test]
async fn fsck_beside_replication_reports_no_copy_confirmed_after_its_read_ahead() {
    let f = fixture_with(Some(Arc::new(FakePacks::default())));
    let ids = f
        .write(&[("/docs/a.txt", "alpha"), ("/docs/b.txt", "bravo")])
        .await;
    let (s3, packs) = f.s3.clone().unwrap();
    // The first read ahead of S3 copies the chunks there and confirms them.
    let copies = Arc::new(AtomicUsize::new(0));
    let (store, local, repo, copied) =
        (s3.clone(), f.store.clone(), f.repo.clone(), copies.clone());
    let late = Meanwhile::new(
        s3.clone(),
        Box::new(move |ids| {
            let (s3, local, repo, copied) =
                (store.clone(), local.clone(), repo.clone(), copied.clone());
            async move {
                use fvfs_tiering::Replication;
                let mark = repo.copy_mark();
                for id in &ids {
                    if let Ok(loaded) = local.get(id).await {
                        s3.put(*id, loaded.frame).await.unwrap();
                        copied.fetch_add(1, Ordering::SeqCst);
                    }
                }
                repo.replication_done(TIER_S3, &ids, &mark).await.unwrap();
                true
            }
            .boxed()
        }),
    );
    let mut tiers = f.tiers();
    tiers[1] = Tier {
        name: "s3",
        bit: TIER_S3,
        store: late.clone(),
        s3: Some(packs),
    };
    let versions = fvfs_fsck::versions_to_check(&f.repo, true, None).unwrap();
    let opts = Options {
        read_data: true,
        repair: false,
    };
    let check = || async {
        let progress = Arc::new(Progress::new("fsck"));
        fvfs_fsck::check(&f.repo, &tiers, &versions, opts, &f.spill, &progress)
            .await
            .unwrap()
            .report
    };
    let report = check().await;
    assert!(copies.load(Ordering::SeqCst) >= 2, "copied meanwhile");
    assert!(report.problems.is_empty(), "{report:?}");
    // A copy lost after its confirmation is still reported.
    s3.delete(&ids[0]).await.unwrap();
    let report = check().await;
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].tier.as_deref(), Some("s3"));
    assert_eq!(report.problems[0].path, "/docs/a.txt");
}

#[tokio::test]
async fn fsck_repair_beside_an_eviction_claims_no_copy_it_deleted() {
    use fvfs_tiering::Replication;
    let f = fixture_with(Some(Arc::new(FakePacks::default())));
    let ids = f
        .write(&[("/docs/a.txt", "alpha"), ("/docs/b.txt", "bravo")])
        .await;
    let (s3, packs) = f.s3.clone().unwrap();
    let mark = f.repo.copy_mark();
    for id in &ids {
        s3.put(*id, f.store.get(id).await.unwrap().frame)
            .await
            .unwrap();
    }
    f.repo.replication_done(TIER_S3, &ids, &mark).await.unwrap();
    drop(mark);
    // The first read ahead of the local tier that asks for the data chunks is followed
    // by their eviction: bits cleared, then copies deleted, under the fence.
    let (store, repo, targets) = (f.store.clone(), f.repo.clone(), ids.clone());
    let local = Meanwhile::new(
        f.store.clone(),
        Box::new(move |asked| {
            let (store, repo, targets) = (store.clone(), repo.clone(), targets.clone());
            async move {
                if !asked.iter().any(|id| targets.contains(id)) {
                    return false;
                }
                use fvfs_tiering::Eviction;
                let evicting = repo.evicting(&targets);
                let cleared = repo.evicted(TIER_LOCAL, &targets).await.unwrap();
                assert_eq!(cleared.len(), targets.len());
                for id in &targets {
                    store.delete(id).await.unwrap();
                }
                drop(evicting);
                true
            }
            .boxed()
        }),
    );
    let tiers = vec![
        Tier {
            name: "local",
            bit: TIER_LOCAL,
            store: local.clone(),
            s3: None,
        },
        Tier {
            name: "s3",
            bit: TIER_S3,
            store: s3.clone(),
            s3: Some(packs),
        },
    ];
    let versions = fvfs_fsck::versions_to_check(&f.repo, true, None).unwrap();
    let opts = Options {
        read_data: true,
        repair: true,
    };
    let progress = Arc::new(Progress::new("fsck"));
    let report = fvfs_fsck::check(&f.repo, &tiers, &versions, opts, &f.spill, &progress)
        .await
        .unwrap()
        .report;
    assert!(local.acted.load(Ordering::SeqCst), "evicted meanwhile");
    assert_eq!((report.unclaimed, report.claimed), (0, 0), "{report:?}");
    for id in &ids {
        let r = f.repo.chunk_record(id).unwrap().unwrap();
        assert_eq!(r.tiers & TIER_LOCAL, 0, "the record claims a deleted copy");
        assert!(!f.store.has(&[*id]).await.unwrap()[0]);
    }
    assert!(report.problems.is_empty(), "{report:?}");
}
