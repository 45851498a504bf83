//! Files with several names (hard links) in tree edits: every name takes a change made
//! through one, names are counted, copies get files of their own, and the names are
//! found in directories of any size.

use std::sync::Arc;

use fvfs_cas::{ChunkStore, MemoryStore};
use fvfs_manifest::kv::Kv;
use fvfs_manifest::node::Link;
use fvfs_manifest::*;

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repo,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let repo = Repo::new(
        store as Arc<dyn ChunkStore>,
        Kv::open(&dir.path().join("meta")).unwrap(),
        Arc::new(fvfs_manifest::Unindexed),
    );
    Fixture { _dir: dir, repo }
}

/// One change to the tree, as the daemon's writer applies a client's.
enum Op<'a> {
    Put(&'a str, &'a str, Option<Link>),
    Link(&'a str, &'a str),
    Remove(&'a str),
    Rename(&'a str, &'a str),
    Copy(&'a str, &'a str),
}

/// Applies `ops` to HEAD as one commit; the new root.
async fn commit(repo: &Repo, ops: &[Op<'_>]) -> fvfs_cas::ChunkId {
    let lock = repo.lock().await;
    let pending = Pending::default();
    let head = lock.head().unwrap().map(|v| v.root);
    let mut edit = TreeEdit::open(repo, head).await.unwrap();
    for op in ops {
        match op {
            Op::Put(path, content, link) => {
                let data = repo
                    .put_chunk(&pending, content.as_bytes(), ChunkKind::Data)
                    .await
                    .unwrap();
                let refs = vec![ChunkRef {
                    id: data,
                    len: content.len() as u64,
                }];
                let mut e = repo.put_file(&pending, refs).await.unwrap().entry(0o644, 7);
                e.link = *link;
                edit.insert(repo, &pending, path.as_bytes(), e, 1, Origin::Client)
                    .await
                    .unwrap();
            }
            Op::Link(from, to) => edit
                .link(repo, from.as_bytes(), to.as_bytes(), false, None)
                .await
                .unwrap(),
            Op::Remove(path) => drop(edit.remove(repo, path.as_bytes(), true).await.unwrap()),
            Op::Rename(from, to) => edit
                .rename(repo, from.as_bytes(), to.as_bytes(), None)
                .await
                .unwrap(),
            Op::Copy(from, to) => {
                let e = lookup(repo, head.unwrap(), from.as_bytes()).await.unwrap();
                edit.insert(repo, &pending, to.as_bytes(), e, 1, Origin::Client)
                    .await
                    .unwrap();
            }
        }
    }
    let (root, bytes) = edit.seal(repo, &pending).await.unwrap();
    lock.commit(&pending, root, bytes, VersionKind::Write, "test")
        .await
        .unwrap();
    root
}

async fn entry(repo: &Repo, root: fvfs_cas::ChunkId, path: &str) -> Entry {
    lookup(repo, root, path.as_bytes()).await.unwrap()
}

async fn content(repo: &Repo, root: fvfs_cas::ChunkId, path: &str) -> String {
    let e = entry(repo, root, path).await;
    let mut out = Vec::new();
    for c in repo.file_chunks(&e).await.unwrap() {
        let data = fvfs_cas::ChunkStoreExt::get_data(repo.store().as_ref(), &c.id).await;
        out.extend_from_slice(&data.unwrap());
    }
    String::from_utf8(out).unwrap()
}

/// The link of each of `paths` (`None` for an ordinary entry).
async fn links(repo: &Repo, root: fvfs_cas::ChunkId, paths: &[&str]) -> Vec<Option<Link>> {
    let mut out = Vec::new();
    for p in paths {
        out.push(entry(repo, root, p).await.link);
    }
    out
}

#[tokio::test]
async fn the_names_of_one_file_stay_one_file() {
    let f = fixture();
    let repo = &f.repo;
    commit(
        repo,
        &[Op::Put("/a/f", "one", None), Op::Put("/b/x", "x", None)],
    )
    .await;
    let root = commit(repo, &[Op::Link("/a/f", "/b/g"), Op::Link("/b/g", "/b/h")]).await;
    let l = links(repo, root, &["/a/f", "/b/g", "/b/h"]).await;
    let link = l[0].expect("a linked name");
    assert_eq!(link.nlink, 3);
    assert_eq!(l, vec![Some(link); 3]);
    assert_eq!(entry(repo, root, "/b/x").await.link, None);
    // Directories count the names below them; the root all of them.
    assert_eq!(entry(repo, root, "/a").await.links, 1);
    assert_eq!(entry(repo, root, "/b").await.links, 2);

    // Written through one name: every name has it.
    let root = commit(repo, &[Op::Put("/b/g", "two", Some(link))]).await;
    for p in ["/a/f", "/b/g", "/b/h"] {
        assert_eq!(content(repo, root, p).await, "two", "{p}");
    }
    // A put that does not name the file replaces that name only.
    let root = commit(repo, &[Op::Put("/b/h", "three", None)]).await;
    assert_eq!(content(repo, root, "/a/f").await, "two");
    let two = Some(Link { nlink: 2, ..link });
    assert_eq!(
        links(repo, root, &["/a/f", "/b/g", "/b/h"]).await,
        vec![two, two, None]
    );
    // Renaming one name onto another of the same file changes nothing.
    let same = commit(repo, &[Op::Rename("/a/f", "/b/g")]).await;
    assert_eq!(same, root);
    // The last name but one goes: an ordinary file is left, counted nowhere.
    let root = commit(repo, &[Op::Remove("/b/g")]).await;
    assert_eq!(links(repo, root, &["/a/f"]).await, vec![None]);
    assert_eq!(entry(repo, root, "/a").await.links, 0);
    assert_eq!(content(repo, root, "/a/f").await, "two");
}

#[tokio::test]
async fn names_lost_to_renames_and_removed_folders_are_counted() {
    let f = fixture();
    let repo = &f.repo;
    commit(
        repo,
        &[
            Op::Put("/f", "f", None),
            Op::Put("/other", "o", None),
            Op::Put("/d/x", "x", None),
        ],
    )
    .await;
    let root = commit(
        repo,
        &[
            Op::Link("/f", "/d/.keep"),
            Op::Link("/f", "/g"),
            Op::Link("/f", "/h"),
        ],
    )
    .await;
    assert_eq!(entry(repo, root, "/f").await.link.unwrap().nlink, 4);
    // A file renamed over a name takes its place: the file loses that name.
    let root = commit(repo, &[Op::Rename("/other", "/h")]).await;
    assert_eq!(entry(repo, root, "/g").await.link.unwrap().nlink, 3);
    // A removed folder takes the names it held.
    let root = commit(repo, &[Op::Remove("/d")]).await;
    assert_eq!(entry(repo, root, "/g").await.link.unwrap().nlink, 2);
}

#[tokio::test]
async fn a_copied_folder_holds_files_of_its_own() {
    let f = fixture();
    let repo = &f.repo;
    commit(repo, &[Op::Put("/d/p", "p", None)]).await;
    let root = commit(repo, &[Op::Link("/d/p", "/d/q")]).await;
    let old = entry(repo, root, "/d/p").await.link.unwrap();
    let root = commit(repo, &[Op::Copy("/d", "/e"), Op::Copy("/d/p", "/single")]).await;
    let new = entry(repo, root, "/e/p")
        .await
        .link
        .expect("linked in the copy");
    assert_ne!(new.id, old.id);
    assert_eq!(entry(repo, root, "/e/q").await.link, Some(new));
    assert_eq!(new.nlink, 2);
    assert_eq!(
        entry(repo, root, "/d/p").await.link,
        Some(old),
        "the original keeps its own"
    );
    assert_eq!(entry(repo, root, "/single").await.link, None);
    // A write to the copy stays in the copy.
    let root = commit(repo, &[Op::Put("/e/q", "changed", Some(new))]).await;
    assert_eq!(content(repo, root, "/e/p").await, "changed");
    assert_eq!(content(repo, root, "/d/q").await, "p");
    // A client naming a file's link at a path that is not one of its names is ignored.
    let root = commit(repo, &[Op::Put("/forged", "x", Some(old))]).await;
    assert_eq!(entry(repo, root, "/forged").await.link, None);
    assert_eq!(content(repo, root, "/d/p").await, "p");
}

#[tokio::test]
async fn names_in_a_large_folder_are_found_by_its_counts() {
    let f = fixture();
    let repo = &f.repo;
    let names: Vec<String> = (0..10_000).map(|i| format!("/big/f{i:05}")).collect();
    let puts: Vec<Op> = names.iter().map(|n| Op::Put(n, "small", None)).collect();
    commit(repo, &puts).await;
    let root = commit(repo, &[Op::Link("/big/f07777", "/elsewhere")]).await;
    assert_eq!(entry(repo, root, "/big").await.links, 1);
    let link = entry(repo, root, "/elsewhere").await.link.unwrap();
    // A new edit finds the name in its part of the folder, without listing the folder.
    let root = commit(
        repo,
        &[Op::Put("/elsewhere", "through the other name", Some(link))],
    )
    .await;
    assert_eq!(
        content(repo, root, "/big/f07777").await,
        "through the other name"
    );
    assert_eq!(content(repo, root, "/big/f07776").await, "small");
}

#[tokio::test]
async fn a_move_changes_the_status_of_what_moved() {
    let f = fixture();
    let repo = &f.repo;
    let lock = repo.lock().await;
    let pending = Pending::default();
    let mut edit = TreeEdit::open(repo, None).await.unwrap();
    let data = repo
        .put_chunk(&pending, b"x", ChunkKind::Data)
        .await
        .unwrap();
    let refs = vec![ChunkRef { id: data, len: 1 }];
    let mut e = repo.put_file(&pending, refs).await.unwrap().entry(0o644, 7);
    e.meta = Some(Box::new(node::Meta {
        ctime_ns: 5,
        ..node::Meta::default()
    }));
    edit.insert(repo, &pending, b"/a", e, 1, Origin::Client)
        .await
        .unwrap();
    let (root, bytes) = edit.seal(repo, &pending).await.unwrap();
    lock.commit(&pending, root, bytes, VersionKind::Write, "t")
        .await
        .unwrap();
    drop(lock);
    let root = commit(repo, &[Op::Rename("/a", "/b")]).await;
    let moved = entry(repo, root, "/b").await;
    assert!(moved.meta.unwrap().ctime_ns > 5);
    assert_eq!(moved.mtime_ns, 7, "the content's time stays");
}
