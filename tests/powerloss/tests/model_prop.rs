//! Property test of the page-map content model alone (no FUSE): random writes,
//! truncations, punches, allocations, fsyncs and cuts against a plain reference (a
//! current `Vec<u8>` and a durable one).

use fvfs_powerloss::model::{Content, PAGE};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Write(u64, Vec<u8>),
    Truncate(u64),
    Punch(u64, u64),
    ZeroRange(u64, u64, bool),
    Allocate(u64, u64, bool),
    Fsync,
    Cut,
}

/// Offsets and lengths spanning a few pages, often at or near page boundaries.
fn pos() -> impl Strategy<Value = u64> {
    let page = PAGE as u64;
    prop_oneof![
        0..5 * page,
        (0..5u64, -2..=2i64).prop_map(move |(p, d)| (p * page).saturating_add_signed(d)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (pos(), prop::collection::vec(any::<u8>(), 1..2 * PAGE)).prop_map(|(o, d)| Op::Write(o, d)),
        1 => pos().prop_map(Op::Truncate),
        1 => (pos(), pos()).prop_map(|(o, l)| Op::Punch(o, l)),
        1 => (pos(), pos(), any::<bool>()).prop_map(|(o, l, k)| Op::ZeroRange(o, l, k)),
        1 => (pos(), pos(), any::<bool>()).prop_map(|(o, l, k)| Op::Allocate(o, l, k)),
        2 => Just(Op::Fsync),
        1 => Just(Op::Cut),
    ]
}

/// The reference: what a file is, without pages.
#[derive(Default)]
struct Reference {
    current: Vec<u8>,
    durable: Vec<u8>,
}

impl Reference {
    fn zero(&mut self, off: u64, len: u64) {
        let end = (off + len).min(self.current.len() as u64);
        if off < end {
            self.current[off as usize..end as usize].fill(0);
        }
    }

    fn grow(&mut self, end: u64) {
        if end as usize > self.current.len() {
            self.current.resize(end as usize, 0);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(off, data) => {
                self.grow(off + data.len() as u64);
                self.current[*off as usize..*off as usize + data.len()].copy_from_slice(data);
            }
            Op::Truncate(size) => self.current.resize(*size as usize, 0),
            Op::Punch(off, len) => self.zero(*off, *len),
            Op::ZeroRange(off, len, keep) => {
                self.zero(*off, *len);
                if !keep {
                    self.grow(off + len);
                }
            }
            Op::Allocate(off, len, keep) => {
                if !keep {
                    self.grow(off + len);
                }
            }
            Op::Fsync => self.durable = self.current.clone(),
            Op::Cut => self.current = self.durable.clone(),
        }
    }
}

fn apply(c: &mut Content, op: &Op) {
    match op {
        Op::Write(off, data) => c.write(*off, data),
        Op::Truncate(size) => c.set_size(*size),
        Op::Punch(off, len) => c.punch_hole(*off, *len),
        Op::ZeroRange(off, len, keep) => c.zero_range(*off, *len, *keep),
        Op::Allocate(off, len, keep) => c.allocate(*off, *len, *keep),
        Op::Fsync => {
            c.sync();
        }
        Op::Cut => {
            c.cut();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn content_matches_the_reference(ops in prop::collection::vec(op(), 1..40)) {
        let mut c = Content::new();
        let mut r = Reference::default();
        for op in &ops {
            apply(&mut c, op);
            r.apply(op);
            prop_assert!(c.check_invariants(), "invariants after {:?}", op);
            prop_assert_eq!(c.size(), r.current.len() as u64);
            prop_assert_eq!(c.durable_size(), r.durable.len() as u64);
            prop_assert!(c.read(0, usize::MAX) == r.current, "content after {:?}", op);
        }
        // The final cut: exactly the durable content remains.
        c.cut();
        prop_assert!(c.read(0, usize::MAX) == r.durable);
        prop_assert_eq!(c.dirty_pages(), 0);
        // Reads at any offset agree too.
        for off in [0, 1, PAGE as u64 - 1, PAGE as u64, 3 * PAGE as u64 + 5] {
            let want = r.durable.get(off as usize..).unwrap_or(&[]).iter().take(PAGE + 3);
            prop_assert!(c.read(off, PAGE + 3).iter().eq(want));
        }
    }
}
