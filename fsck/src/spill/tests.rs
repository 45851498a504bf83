use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

/// Ids from a small alphabet, so that many repeat (a chunk in many files).
fn id(n: u16) -> ChunkId {
    ChunkId::of(&n.to_le_bytes())
}

fn sorted(budget_records: usize, dir: &std::path::Path, pushed: &[u16]) -> Sorted<ChunkId> {
    let spill = Spill::in_dir(dir).with_budget(budget_records * ChunkId::LEN);
    let mut sorter = spill.sorter();
    for n in pushed {
        sorter.push(id(*n)).unwrap();
    }
    sorter.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the budget, the set holds each pushed record once, in order, read
    /// alike twice, and answers lookups of records in it and not.
    #[test]
    fn a_set_holds_each_record_pushed_once_in_order(
        pushed in proptest::collection::vec(0u16..3000, 0..4000),
        budget in 4usize..600,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let set = sorted(budget, dir.path(), &pushed);
        let want: Vec<ChunkId> = pushed.iter().map(|n| id(*n)).collect::<BTreeSet<_>>().into_iter().collect();
        let got: Vec<ChunkId> = set.iter().map(|r| r.unwrap()).collect();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(set.len(), want.len() as u64);
        let again: Vec<ChunkId> = set.iter().map(|r| r.unwrap()).collect();
        prop_assert_eq!(&again, &want);
        let kept: BTreeSet<u16> = pushed.iter().copied().collect();
        for n in (0u16..3000).step_by(7) {
            prop_assert_eq!(set.contains(&id(n)).unwrap(), kept.contains(&n), "{}", n);
        }
    }
}

#[test]
fn records_within_the_budget_stay_in_memory_and_more_go_to_nameless_files() {
    let dir = tempfile::tempdir().unwrap();
    let small = sorted(100, dir.path(), &[3, 1, 2, 3, 1]);
    assert!(matches!(small, Sorted::Memory(_)));
    // Duplicates alone never spill: sorting them out frees the budget.
    let repeated: Vec<u16> = (0..5000).map(|n| n % 40).collect();
    assert!(matches!(
        sorted(100, dir.path(), &repeated),
        Sorted::Memory(_)
    ));

    let many: Vec<u16> = (0..5000).rev().collect();
    let big = sorted(100, dir.path(), &many);
    let Sorted::File { fences, .. } = &big else {
        panic!("5,000 records over a budget of 100 are on disk");
    };
    assert_eq!(fences.len(), 5000usize.div_ceil(PAGE_RECORDS));
    assert_eq!(big.len(), 5000);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the files have no name in the folder"
    );
}

#[test]
fn order_records_sort_by_their_key_first() {
    let dir = tempfile::tempdir().unwrap();
    let spill = Spill::in_dir(dir.path()).with_budget(4 * 40);
    let mut sorter = spill.sorter();
    for n in 0..100u16 {
        sorter.push((u64::from(100 - n), id(n))).unwrap();
    }
    let got: Vec<(u64, ChunkId)> = sorter
        .finish()
        .unwrap()
        .iter()
        .map(|r| r.unwrap())
        .collect();
    let want: Vec<(u64, ChunkId)> = (1..=100u64).map(|k| (k, id(100 - k as u16))).collect();
    assert_eq!(got, want);
}

#[test]
fn a_folder_that_cannot_take_files_is_named_in_the_error() {
    let spill = Spill::in_dir("/nonexistent/fvfs-spill").with_budget(4 * 32);
    let mut sorter = spill.sorter();
    let err = (0..100u16)
        .try_for_each(|n| sorter.push(id(n)))
        .expect_err("nowhere to spill");
    assert!(err.to_string().contains("/nonexistent/fvfs-spill"), "{err}");
}

#[test]
fn runs_beyond_the_most_kept_apart_are_merged_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut sorter = Spill::in_dir(dir.path()).with_budget(4 * 32).sorter();
    for n in 0..1000u16 {
        sorter.push(id(n)).unwrap();
    }
    assert!(
        sorter.runs.len() < MAX_RUNS,
        "{} files open",
        sorter.runs.len()
    );
    let set = sorter.finish().unwrap();
    assert_eq!(set.len(), 1000);
    assert!((0..1000).all(|n| set.contains(&id(n)).unwrap()));
}
