//! Unit tests of the tree model: what a cut keeps and drops, and when nodes are freed.

use super::*;

fn tree() -> Tree {
    Tree::new(0, 0)
}

fn meta() -> Meta {
    Meta::new(0o644, 0, 0)
}

fn file(t: &mut Tree, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let ino = t.make(parent, name.as_bytes(), New::File, meta()).unwrap();
    t.write(ino, 0, data).unwrap();
    ino
}

fn dir(t: &mut Tree, parent: Ino, name: &str) -> Ino {
    t.make(parent, name.as_bytes(), New::Dir, meta()).unwrap()
}

fn names(t: &Tree, d: Ino) -> Vec<String> {
    t.list(d)
        .unwrap()
        .into_iter()
        .skip(2)
        .map(|(n, _, _)| String::from_utf8(n).unwrap())
        .collect()
}

fn read_all(t: &Tree, ino: Ino) -> Vec<u8> {
    t.read(ino, 0, usize::MAX).unwrap()
}

#[test]
fn a_synced_file_in_an_unsynced_directory_vanishes() {
    let mut t = tree();
    let f = file(&mut t, ROOT, "f", b"data");
    t.fsync(f, false).unwrap();
    let report = t.cut();
    assert_eq!(report.freed_inodes, 1);
    assert_eq!(t.lookup(ROOT, b"f"), Err(Error::NotFound));
    assert_eq!(t.read(f, 0, 1), Err(Error::Stale));
}

#[test]
fn a_synced_entry_without_synced_data_is_an_empty_file() {
    let mut t = tree();
    let f = file(&mut t, ROOT, "f", b"data");
    t.fsyncdir(ROOT).unwrap();
    t.cut();
    assert_eq!(t.lookup(ROOT, b"f"), Ok(f));
    assert_eq!(read_all(&t, f), b"");
}

#[test]
fn rename_over_a_file_is_undone_unless_synced() {
    let mut t = tree();
    let old = file(&mut t, ROOT, "db", b"old");
    let new = file(&mut t, ROOT, "db.tmp", b"new");
    t.fsync(old, false).unwrap();
    t.fsync(new, false).unwrap();
    t.fsyncdir(ROOT).unwrap();
    t.rename(ROOT, b"db.tmp", ROOT, b"db", RenameMode::Replace)
        .unwrap();
    assert_eq!(names(&t, ROOT), ["db"]);
    // The replaced file is still named by the durable list: not freed.
    assert_eq!(read_all(&t, old), b"old");
    t.cut();
    assert_eq!(names(&t, ROOT), ["db", "db.tmp"]);
    assert_eq!(read_all(&t, t.lookup(ROOT, b"db").unwrap()), b"old");

    t.rename(ROOT, b"db.tmp", ROOT, b"db", RenameMode::Replace)
        .unwrap();
    t.fsyncdir(ROOT).unwrap();
    // Nothing holds the replaced file any more.
    assert_eq!(t.read(old, 0, 1), Err(Error::Stale));
    t.cut();
    assert_eq!(names(&t, ROOT), ["db"]);
    assert_eq!(read_all(&t, t.lookup(ROOT, b"db").unwrap()), b"new");
}

#[test]
fn unlink_is_undone_with_the_durable_content() {
    let mut t = tree();
    let f = file(&mut t, ROOT, "f", b"kept");
    t.fsync(f, false).unwrap();
    t.fsyncdir(ROOT).unwrap();
    t.write(f, 0, b"lost, longer").unwrap();
    t.unlink(ROOT, b"f").unwrap();
    assert_eq!(t.lookup(ROOT, b"f"), Err(Error::NotFound));
    t.cut();
    assert_eq!(read_all(&t, t.lookup(ROOT, b"f").unwrap()), b"kept");
    assert_eq!(t.attr(f).unwrap().nlink, 1);
}

#[test]
fn nested_directories_keep_exactly_the_synced_entries() {
    let mut t = tree();
    let a = dir(&mut t, ROOT, "a");
    let b = dir(&mut t, a, "b");
    let kept = file(&mut t, b, "kept", b"1");
    let _lost = file(&mut t, b, "lost", b"2");
    let _c = dir(&mut t, a, "c");
    t.fsync(kept, false).unwrap();
    t.fsyncdir(b).unwrap();
    let _late = file(&mut t, b, "late", b"3");
    // b is durable in a only after a's fsyncdir; c was created before it too.
    t.fsyncdir(a).unwrap();
    t.fsyncdir(ROOT).unwrap();
    let _d = dir(&mut t, ROOT, "d");
    t.cut();
    assert_eq!(names(&t, ROOT), ["a"]);
    assert_eq!(names(&t, a), ["b", "c"]);
    assert_eq!(names(&t, b), ["kept", "lost"]);
    assert_eq!(read_all(&t, kept), b"1");
    let lost = t.lookup(b, b"lost").unwrap();
    assert_eq!(read_all(&t, lost), b"");
    assert_eq!(t.attr(a).unwrap().nlink, 4);
    assert_eq!(t.attr(ROOT).unwrap().nlink, 3);
}

#[test]
fn a_directory_durably_named_twice_keeps_one_name() {
    let mut t = tree();
    let a = dir(&mut t, ROOT, "a");
    let b = dir(&mut t, ROOT, "b");
    t.fsyncdir(ROOT).unwrap();
    t.rename(ROOT, b"b", a, b"b", RenameMode::Replace).unwrap();
    t.fsyncdir(a).unwrap();
    let report = t.cut();
    assert_eq!(report.dropped_dir_aliases, 1);
    assert_eq!(names(&t, ROOT), ["a", "b"]);
    assert_eq!(names(&t, a), Vec::<String>::new());
    assert_eq!(t.lookup(ROOT, b"b"), Ok(b));
}

#[test]
fn rename_rules() {
    let mut t = tree();
    let a = dir(&mut t, ROOT, "a");
    let b = dir(&mut t, a, "b");
    file(&mut t, b, "f", b"");
    file(&mut t, ROOT, "g", b"");
    let r =
        |t: &mut Tree, p, n: &str, np, nn: &str, m| t.rename(p, n.as_bytes(), np, nn.as_bytes(), m);
    use RenameMode::*;
    assert_eq!(r(&mut t, ROOT, "a", b, "x", Replace), Err(Error::Invalid));
    assert_eq!(r(&mut t, ROOT, "a", a, "x", Replace), Err(Error::Invalid));
    assert_eq!(r(&mut t, ROOT, "g", a, "b", Replace), Err(Error::IsDir));
    assert_eq!(r(&mut t, a, "b", ROOT, "g", Replace), Err(Error::NotDir));
    assert_eq!(
        r(&mut t, ROOT, "g", ROOT, "a", NoReplace),
        Err(Error::Exists)
    );
    assert_eq!(
        r(&mut t, ROOT, "nope", ROOT, "x", Replace),
        Err(Error::NotFound)
    );
    let e = dir(&mut t, ROOT, "e");
    assert_eq!(r(&mut t, ROOT, "e", a, "b", Replace), Err(Error::NotEmpty));
    t.unlink(b, b"f").unwrap();
    r(&mut t, ROOT, "e", a, "b", Replace).unwrap();
    assert_eq!(t.read(b, 0, 1), Err(Error::Stale));
    assert_eq!(t.lookup(a, b"b"), Ok(e));
    r(&mut t, ROOT, "g", a, "b", Exchange).unwrap();
    assert_eq!(t.lookup(ROOT, b"g"), Ok(e));
    assert_eq!(t.attr(ROOT).unwrap().nlink, 4);
    assert_eq!(t.attr(a).unwrap().nlink, 2);
    assert_eq!(t.list(e).unwrap()[1].1, ROOT);
}

#[test]
fn unlinked_files_live_while_the_kernel_holds_them() {
    let mut t = tree();
    let f = file(&mut t, ROOT, "f", b"x");
    t.hold(f).unwrap();
    t.unlink(ROOT, b"f").unwrap();
    assert_eq!(read_all(&t, f), b"x");
    assert_eq!(t.attr(f).unwrap().nlink, 0);
    t.forget(f, 1);
    assert_eq!(t.read(f, 0, 1), Err(Error::Stale));
}

#[test]
fn freeing_a_directory_frees_what_only_its_durable_list_held() {
    let mut t = tree();
    let d = dir(&mut t, ROOT, "d");
    let f = file(&mut t, d, "f", b"x");
    t.fsyncdir(d).unwrap();
    t.unlink(d, b"f").unwrap();
    // d's durable list still names f.
    assert_eq!(read_all(&t, f), b"x");
    t.rmdir(ROOT, b"d").unwrap();
    assert_eq!(t.read(f, 0, 1), Err(Error::Stale));
    assert_eq!(t.kind(d), Err(Error::Stale));
}

#[test]
fn hard_links_count_and_survive_by_either_name() {
    let mut t = tree();
    let f = file(&mut t, ROOT, "f", b"x");
    t.link(f, ROOT, b"g").unwrap();
    assert_eq!(t.attr(f).unwrap().nlink, 2);
    t.fsyncdir(ROOT).unwrap();
    t.unlink(ROOT, b"f").unwrap();
    t.cut();
    assert_eq!(t.attr(f).unwrap().nlink, 2);
    let d = dir(&mut t, ROOT, "d");
    assert_eq!(t.link(d, ROOT, b"h"), Err(Error::NotPermitted));
}

#[test]
fn errors_for_wrong_kinds() {
    let mut t = tree();
    let d = dir(&mut t, ROOT, "d");
    let f = file(&mut t, ROOT, "f", b"");
    assert_eq!(t.unlink(ROOT, b"d"), Err(Error::IsDir));
    assert_eq!(t.rmdir(ROOT, b"f"), Err(Error::NotDir));
    assert_eq!(t.write(d, 0, b"x"), Err(Error::IsDir));
    assert_eq!(t.lookup(f, b"x"), Err(Error::NotDir));
    assert_eq!(t.make(ROOT, b"f", New::Dir, meta()), Err(Error::Exists));
    assert_eq!(t.make(ROOT, b"..", New::Dir, meta()), Err(Error::Invalid));
    assert_eq!(
        t.make(ROOT, &[b'x'; 256], New::File, meta()),
        Err(Error::NameTooLong)
    );
    let s = t
        .make(ROOT, b"s", New::Symlink(b"f".to_vec()), meta())
        .unwrap();
    assert_eq!(t.readlink(s).unwrap(), b"f");
    assert_eq!(t.readlink(f), Err(Error::Invalid));
}
