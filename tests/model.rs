//! Shadow-model property test: random alloc / free / realloc / page ops /
//! add_region against a BTreeMap of live ranges. Every result is checked
//! for alignment and overlap; every block carries a pattern checked at free.

mod common;
use buddy_slab_allocator::{AllocError, GlobalAllocator};
use common::{PAGE, arena, check, fill};
use core::alloc::Layout;
use core::ptr::NonNull;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, align_shift: u8 },
    Free { pick: usize },
    Realloc { pick: usize, new_size: usize },
    AllocPages { count: usize, align_shift: u8 },
    FreePages { pick: usize },
    AddRegion { pages: usize },
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..=2048, 0u8..=5).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        2 => (2049usize..=40_000, 0u8..=13).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        8 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        3 => (any::<usize>(), 1usize..=20_000).prop_map(|(pick, new_size)| Op::Realloc { pick, new_size }),
        2 => (1usize..=9, 0u8..=4).prop_map(|(count, align_shift)| Op::AllocPages { count, align_shift }),
        2 => any::<usize>().prop_map(|pick| Op::FreePages { pick }),
        1 => (16usize..=256).prop_map(|pages| Op::AddRegion { pages }),
        1 => Just(Op::Drain),
    ]
}

struct Model {
    /// start -> (block, len, tag, layout or page count)
    live: BTreeMap<usize, Live>,
    tag: u64,
    ops: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Object(Layout),
    Pages(usize),
}

/// A live block: its pointer, length, pattern tag and kind.
type Live = (NonNull<u8>, usize, u64, Kind);

impl Model {
    fn insert(&mut self, p: NonNull<u8>, len: usize, kind: Kind) {
        let start = p.as_ptr().addr();
        if let Some((&s, &(_, l, _, _))) = self.live.range(..start + len).next_back() {
            assert!(
                s + l <= start,
                "[{start:#x}, +{len}) overlaps live [{s:#x}, +{l})"
            );
        }
        self.tag += 1;
        fill(p.as_ptr(), len, self.tag);
        self.live.insert(start, (p, len, self.tag, kind));
    }

    fn take(&mut self, pick: usize, pages: bool) -> Option<Live> {
        let keys: Vec<_> = self
            .live
            .iter()
            .filter(|(_, v)| matches!(v.3, Kind::Pages(_)) == pages)
            .map(|(k, _)| *k)
            .collect();
        let k = *keys.get(pick % keys.len().max(1))?;
        let live = self.live.remove(&k).unwrap();
        check(live.0.as_ptr(), live.1, live.2);
        Some(live)
    }
}

fn run(ops: &[Op]) {
    let mut heap = Box::new(GlobalAllocator::<PAGE>::new());
    // SAFETY: leaked arena, heap boxed.
    unsafe { heap.init(arena(4 << 20, PAGE, 5 * PAGE)).unwrap() };
    let baseline = heap.allocated_bytes();
    let mut m = Model {
        live: BTreeMap::new(),
        tag: 0,
        ops: 0,
    };
    for op in ops {
        m.ops += 1;
        match *op {
            Op::Alloc { size, align_shift } => {
                let layout = Layout::from_size_align(size, 1 << align_shift).unwrap();
                match heap.alloc(layout) {
                    Ok(p) => {
                        assert_eq!(p.as_ptr().addr() % layout.align(), 0, "misaligned");
                        m.insert(p, size, Kind::Object(layout));
                    }
                    Err(e) => assert_eq!(e, AllocError::NoMemory),
                }
            }
            Op::Free { pick } => {
                if let Some((p, _, _, Kind::Object(layout))) = m.take(pick, false) {
                    // SAFETY: live block from this heap with this layout.
                    unsafe { heap.dealloc(p, layout) };
                }
            }
            Op::Realloc { pick, new_size } => {
                if let Some((p, len, tag, Kind::Object(layout))) = m.take(pick, false) {
                    // SAFETY: live block from this heap with this layout.
                    match unsafe { heap.realloc(p, layout, new_size) } {
                        Ok(q) => {
                            check(q.as_ptr(), len.min(new_size), tag);
                            let nl = Layout::from_size_align(new_size, layout.align()).unwrap();
                            m.insert(q, new_size, Kind::Object(nl));
                        }
                        Err(e) => {
                            assert_eq!(e, AllocError::NoMemory);
                            check(p.as_ptr(), len, tag);
                            let start = p.as_ptr().addr();
                            m.live.insert(start, (p, len, tag, Kind::Object(layout)));
                        }
                    }
                }
            }
            Op::AllocPages { count, align_shift } => {
                match heap.alloc_pages_ptr(count, PAGE << align_shift) {
                    Ok(a) => {
                        assert_eq!(a.as_ptr().addr() % (PAGE << align_shift), 0);
                        m.insert(a, count * PAGE, Kind::Pages(count));
                    }
                    Err(e) => assert_eq!(e, AllocError::NoMemory),
                }
            }
            Op::FreePages { pick } => {
                if let Some((a, _, _, Kind::Pages(count))) = m.take(pick, true) {
                    // SAFETY: live run from this heap.
                    unsafe { heap.dealloc_pages(a.as_ptr().addr(), count).unwrap() };
                }
            }
            Op::AddRegion { pages } => {
                // SAFETY: leaked arena.
                match unsafe { heap.add_region(arena(pages * PAGE, PAGE, 0)) } {
                    Ok(()) => {}
                    Err(e) => assert_eq!(e, AllocError::TooManyRegions),
                }
            }
            Op::Drain => heap.drain(),
        }
        if m.ops.is_multiple_of(128) {
            heap.check_invariants();
        }
    }
    heap.check_invariants();
    assert_eq!(heap.stats().invalid_frees, 0);
    for (a, (p, len, tag, kind)) in std::mem::take(&mut m.live) {
        check(p.as_ptr(), len, tag);
        // SAFETY: live blocks from this heap.
        unsafe {
            match kind {
                Kind::Object(layout) => heap.dealloc(p, layout),
                Kind::Pages(count) => heap.dealloc_pages(a, count).unwrap(),
            }
        }
    }
    heap.drain_all();
    heap.check_invariants();
    assert_eq!(heap.allocated_bytes(), baseline, "memory leaked");
}

const CASES: u32 = if cfg!(miri) { 2 } else { 64 };
const OPS: core::ops::Range<usize> = if cfg!(miri) { 40..60 } else { 1600..2000 };

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]
    /// 64 cases × up to 2000 ops: ≥ 100k checked operations per run (under
    /// Miri 2 cases × 40-60 ops).
    #[test]
    fn heap_matches_shadow_model(ops in proptest::collection::vec(op(), OPS)) {
        run(&ops);
    }
}
