//! The inode table's unit tests.

use super::*;

fn path(t: &Inodes, ino: u64) -> Option<(View, String)> {
    t.locate(ino)
        .map(|(v, p)| (v, String::from_utf8(p).expect("utf-8")))
}

/// A forget of an inode's last incarnation can arrive between the listing that
/// named it and the readdirplus reply handing it out: it is filed again under the
/// same number, so the kernel never holds a number the table lacks.
#[test]
fn a_name_handed_out_after_its_forget_is_filed_again() {
    let mut t = Inodes::new();
    let d = t.child(ROOT, b"d", EntryKind::Dir, None, true);
    let listed = t.child(d, b"f", EntryKind::File, None, true);
    t.forget(listed, 1);
    assert_eq!(t.locate(listed), None, "dropped");
    let handed = t.hand_out(listed, d, b"f", EntryKind::File, None);
    assert_eq!(handed, Some(Handed::Linked(listed)));
    assert_eq!(path(&t, listed), Some((View::Live, "/d/f".into())));
    // It counts the lookup: one forget drops it again, not before.
    assert_eq!(
        t.hand_out(listed, d, b"f", EntryKind::File, None),
        Some(Handed::Linked(listed))
    );
    t.forget(listed, 1);
    assert!(t.locate(listed).is_some());
    t.forget(listed, 1);
    assert_eq!(t.locate(listed), None);
}

/// Past its budget the table links no new inode for readdirplus: the names a listing
/// named are only listed, and go with the listing; what the kernel holds already is
/// linked as before, and a lookup still makes an inode.
#[test]
fn past_its_budget_readdirplus_lists_names_without_linking_them() {
    let mut t = Inodes::new();
    let d = t.child(ROOT, b"d", EntryKind::Dir, None, true);
    let held = t.child(d, b"held", EntryKind::File, None, true);
    t.set_budget(t.len() + 2);
    // A listing names its items (no lookup counted), then hands them out.
    let names: Vec<&[u8]> = vec![b"a", b"b", b"c", b"held"];
    let listed: Vec<u64> = names
        .iter()
        .map(|n| t.child(d, n, EntryKind::File, None, false))
        .collect();
    assert!(t.len() >= t.budget, "the listing filled the table");
    let handed: Vec<Option<Handed>> = names
        .iter()
        .zip(&listed)
        .map(|(n, ino)| t.hand_out(*ino, d, n, EntryKind::File, None))
        .collect();
    assert_eq!(
        handed,
        vec![
            Some(Handed::Listed(listed[0])),
            Some(Handed::Listed(listed[1])),
            Some(Handed::Listed(listed[2])),
            Some(Handed::Linked(held)),
        ]
    );
    // The listing closes: what was only listed goes, what the kernel holds stays.
    t.sweep(&listed);
    assert_eq!(t.known(d, b"a"), None);
    assert_eq!(t.known(d, b"held"), Some(held));
    // A lookup of a listed name makes its inode under the number it was listed with.
    assert_eq!(t.child(d, b"b", EntryKind::File, None, true), listed[1]);
    // A name dropped between its listing and the reply is filed again, still only
    // listed, and goes with the listing.
    let again = t.child(d, b"a", EntryKind::File, None, false);
    t.sweep(&[again]);
    t.set_budget(t.len());
    assert_eq!(t.known(d, b"a"), None);
    assert_eq!(
        t.hand_out(again, d, b"a", EntryKind::File, None),
        Some(Handed::Listed(again))
    );
    assert_eq!(t.known(d, b"a"), Some(again));
    t.sweep(&[again]);
    assert_eq!(t.known(d, b"a"), None, "no lookup was counted");
    // Under the budget again, readdirplus links.
    t.set_budget(usize::MAX);
    let c = t.child(d, b"c", EntryKind::File, None, false);
    assert_eq!(
        t.hand_out(c, d, b"c", EntryKind::File, None),
        Some(Handed::Linked(c))
    );
}

#[test]
fn paths_follow_renames_of_any_directory_above() {
    let mut t = Inodes::new();
    let a = t.child(ROOT, b"a", EntryKind::Dir, None, true);
    let b = t.child(a, b"b", EntryKind::Dir, None, true);
    let f = t.child(b, b"f", EntryKind::File, None, true);
    assert_eq!(path(&t, f), Some((View::Live, "/a/b/f".into())));
    t.rename(ROOT, b"a", ROOT, b"z");
    assert_eq!(path(&t, f), Some((View::Live, "/z/b/f".into())));
    assert_eq!(t.known(ROOT, b"a"), None);
    assert_eq!(t.known(ROOT, b"z"), Some(a));
    // The same name of the same kind is the same inode; of another kind, a new one.
    assert_eq!(t.child(b, b"f", EntryKind::File, None, true), f);
    let d = t.child(b, b"f", EntryKind::Dir, None, true);
    assert_ne!(d, f);
    assert_eq!(path(&t, f), None);
}

#[test]
fn unlinked_and_replaced_inodes_are_no_path() {
    let mut t = Inodes::new();
    let f = t.child(ROOT, b"f", EntryKind::File, None, true);
    let g = t.child(ROOT, b"g", EntryKind::File, None, true);
    t.rename(ROOT, b"g", ROOT, b"f");
    assert_eq!(path(&t, f), None, "replaced by the rename");
    assert_eq!(path(&t, g), Some((View::Live, "/f".into())));
    t.detach(ROOT, b"f");
    assert_eq!(path(&t, g), None);
    // A new file of that name is a new inode.
    assert_ne!(t.child(ROOT, b"f", EntryKind::File, None, true), g);
}

#[test]
fn snapshots_are_views_of_their_own() {
    let mut t = Inodes::new();
    assert_eq!(path(&t, SNAPSHOTS), Some((View::SnapshotList, "/".into())));
    let s = t.child(SNAPSHOTS, b"monday", EntryKind::Dir, None, true);
    let f = t.child(s, b"f", EntryKind::File, None, true);
    assert_eq!(
        path(&t, f),
        Some((View::Snapshot("monday".into()), "/f".into()))
    );
}

#[test]
fn a_forgotten_name_looked_up_again_keeps_its_number() {
    let mut t = Inodes::new();
    let a = t.child(ROOT, b"a", EntryKind::Dir, None, true);
    let f = t.child(a, b"f", EntryKind::File, None, true);
    t.forget(f, 1);
    t.forget(a, 1);
    assert_eq!(t.len(), 2);
    let a2 = t.child(ROOT, b"a", EntryKind::Dir, None, true);
    assert_eq!((a2, t.child(a2, b"f", EntryKind::File, None, true)), (a, f));
    // A snapshot's file of the same path is another inode.
    let s = t.child(SNAPSHOTS, b"monday", EntryKind::Dir, None, true);
    let sa = t.child(s, b"a", EntryKind::Dir, None, true);
    assert_ne!(t.child(sa, b"f", EntryKind::File, None, true), f);
}

#[test]
fn forgotten_inodes_leave_the_table_and_their_parents_with_them() {
    let mut t = Inodes::new();
    let a = t.child(ROOT, b"a", EntryKind::Dir, None, true);
    let mut files = Vec::new();
    for i in 0..1000 {
        files.push(t.child(a, format!("f{i}").as_bytes(), EntryKind::File, None, true));
    }
    // Named by a readdir only: dropped by the sweep.
    let listed = t.child(a, b"listed", EntryKind::File, None, false);
    t.sweep(&[listed]);
    assert_eq!(t.known(a, b"listed"), None);
    t.forget(a, 1);
    assert_eq!(t.len(), 1003, "children keep their directory");
    for f in &files {
        t.forget(*f, 1);
    }
    assert_eq!(t.len(), 2, "only the roots stay");
    assert_eq!(t.locate(a), None);
}

#[test]
fn a_held_inode_outlives_its_lookups_and_its_name() {
    let mut t = Inodes::new();
    let a = t.child(ROOT, b"a", EntryKind::Dir, None, true);
    let f = t.child(a, b"f", EntryKind::File, None, true);
    t.hold(f);
    t.forget(f, 1);
    t.forget(a, 1);
    assert_eq!(path(&t, f), Some((View::Live, "/a/f".into())));
    t.detach(a, b"f");
    assert_eq!(t.len(), 3, "the held file; its former parent is dropped");
    t.release(f);
    assert_eq!(t.len(), 2);
}

#[test]
fn the_names_of_one_file_are_one_inode() {
    let mut t = Inodes::new();
    let a = t.child(ROOT, b"a", EntryKind::Dir, None, true);
    let f = t.child(ROOT, b"f", EntryKind::File, Some(7), true);
    assert_eq!(t.child(a, b"g", EntryKind::File, Some(7), true), f);
    assert_eq!(t.known(a, b"g"), Some(f));
    // A link made here adds a name to the inode.
    let h = t.child(ROOT, b"h", EntryKind::File, None, true);
    t.add_name(h, a, b"h2", 9);
    assert_eq!(t.known(a, b"h2"), Some(h));
    // The edge goes: another name takes its place.
    t.detach(ROOT, b"f");
    assert_eq!(path(&t, f), Some((View::Live, "/a/g".into())));
    t.rename(a, b"g", ROOT, b"z");
    assert_eq!(path(&t, f), Some((View::Live, "/z".into())));
    // Forgotten, the inode and its other names leave, and free their folders.
    t.forget(h, 2);
    assert_eq!(t.known(a, b"h2"), None);
    t.forget(f, 2);
    t.forget(a, 1);
    assert_eq!(t.len(), 2, "only the roots stay");
}

#[test]
fn same_content_is_told_only_for_a_repeat() {
    let mut t = Inodes::new();
    let f = t.child(ROOT, b"f", EntryKind::File, None, true);
    assert!(!t.same_content(f, [1; 32]));
    assert!(t.same_content(f, [1; 32]));
    t.content_unknown(f);
    assert!(!t.same_content(f, [1; 32]));
    assert!(t.same_content(f, [1; 32]));
}

#[test]
fn content_is_pushed_only_into_an_inode_never_given_any() {
    let mut t = Inodes::new();
    let (f, g) = (
        t.child(ROOT, b"f", EntryKind::File, None, true),
        t.child(ROOT, b"g", EntryKind::File, None, true),
    );
    assert!(
        !t.first_content(f, [1; 32]),
        "handed out, not known to be read"
    );
    t.in_kernel(f);
    t.in_kernel(g);
    assert!(t.first_content(f, [1; 32]));
    assert!(!t.first_content(f, [1; 32]), "pushed once");
    assert!(t.same_content(f, [1; 32]), "an open keeps what was pushed");
    t.content_unknown(g);
    assert!(!t.first_content(g, [2; 32]), "written here: never pushed");
    assert!(!t.first_content(99, [2; 32]), "not in the table");
    t.forget(f, 1);
    let f = t.child(ROOT, b"f", EntryKind::File, None, true);
    assert!(!t.first_content(f, [3; 32]), "forgotten by the kernel");
    t.in_kernel(f);
    assert!(
        t.first_content(f, [3; 32]),
        "made again by the kernel: fresh"
    );
}

/// The files offered to forget are those the kernel holds, nothing here holds and no
/// request named since the last call; never a directory, and at most as many as asked.
#[test]
fn idle_files_are_files_unused_since_the_last_look() {
    let mut t = Inodes::new();
    let d = t.child(ROOT, b"d", EntryKind::Dir, None, true);
    let files: Vec<u64> = (0..4)
        .map(|i| t.child(d, format!("f{i}").as_bytes(), EntryKind::File, None, true))
        .collect();
    let listed = t.child(d, b"listed", EntryKind::File, None, false);
    // Everything was just used: nothing is idle yet, and the marks are cleared.
    assert!(t.idle_files(10).is_empty());
    // Used since: spared.
    t.locate(files[0]);
    t.looked_up(files[1]);
    // Held by a write-back: spared.
    t.hold(files[2]);
    let idle = t.idle_files(10);
    let names: Vec<(u64, u64, &[u8])> = idle.iter().map(|(i, p, n)| (*i, *p, &n[..])).collect();
    assert_eq!(
        names,
        [(files[3], d, &b"f3"[..])],
        "not {listed} (never looked up)"
    );
    // The used ones are idle now, at most as many as asked; the one offered is not
    // offered again.
    let one = t.idle_files(1);
    assert_eq!(one.len(), 1);
    let other = t.idle_files(10);
    assert_eq!(other.len(), 1);
    let mut both = [one[0].0, other[0].0];
    both.sort_unstable();
    let mut expected = [files[0], files[1]];
    expected.sort_unstable();
    assert_eq!(both, expected);
    assert!(t.idle_files(10).is_empty(), "each offered once");
    // Used again, a file offered is offered again once idle.
    t.locate(files[3]);
    assert!(t.idle_files(10).is_empty());
    assert_eq!(t.idle_files(10)[0].0, files[3]);
}
