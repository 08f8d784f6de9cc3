//! Unit tests of the per-CPU page cache (`page_cache.rs`).

use super::*;

const SHIFT: u32 = 12;
const CPU: usize = 3;

impl PageCache {
    fn lists_high(&self, order: usize) -> usize {
        self.lists[order].high
    }
}

/// A cache over `n` pages of metadata at page frames `first..first + n`.
fn setup(n: usize, first: usize) -> (PageCache, Vec<PageMeta>) {
    let metas = (0..n).map(|_| PageMeta::new_tail()).collect();
    let mut c = PageCache::new(CPU, first, SHIFT);
    c.set_budget(usize::MAX);
    (c, metas)
}

/// Makes the page at `pfn` the head of a claimed block of `order`.
fn claimed(metas: &[PageMeta], first: usize, pfn: usize, order: u32) -> ClaimedRun<'_> {
    let m = &metas[pfn - first];
    m.test_start_run(1 << order);
    m.claim_run(1 << order).unwrap()
}

#[test]
fn pops_newest_and_takes_oldest() {
    let first = 0x8_0000;
    let (mut c, metas) = setup(4 * PAGE_CACHE_HIGH, first);
    let meta_of = |a: usize| metas.get((a >> SHIFT).wrapping_sub(first));
    for i in 0..PAGE_CACHE_HIGH {
        let run = claimed(&metas, first, first + i, 0);
        assert!(!c.is_full(0));
        c.push(0, (first + i) << SHIFT, run, meta_of);
    }
    assert!(c.is_full(0));
    assert_eq!(c.pages(), PAGE_CACHE_HIGH);
    c.check(meta_of);
    let (oldest, block) = c.take::<false>(0, meta_of).unwrap().unwrap();
    assert_eq!(oldest, first << SHIFT, "oldest first");
    let _ = block.claim();
    let top = c.pop_fast(0, meta_of).unwrap();
    assert_eq!(top, (first + PAGE_CACHE_HIGH - 1) << SHIFT, "newest first");
    let mut seen = 2;
    while let Some(a) = c.pop_fast(0, meta_of) {
        assert!(a >> SHIFT > first);
        seen += 1;
    }
    assert_eq!(seen, PAGE_CACHE_HIGH);
    c.check(meta_of);
    assert_eq!(c.pages(), 0);
    assert!(c.pop_fast(1, meta_of).is_none());
}

#[test]
fn a_corrupted_link_drops_the_list_and_hands_out_nothing_twice() {
    let first = 0x10_0000;
    let (mut c, metas) = setup(8, first);
    let meta_of = |a: usize| metas.get((a >> SHIFT).wrapping_sub(first));
    for i in [0, 2, 4] {
        let run = claimed(&metas, first, first + i, 1);
        c.push(1, (first + i) << SHIFT, run, meta_of);
    }
    // The top block's link now names a page that is not cached.
    metas[4]
        .cached(1, CPU)
        .unwrap()
        .set_next(c.link_of((first + 7) << SHIFT).unwrap());
    assert_eq!(c.pop_fast(1, meta_of).unwrap(), (first + 4) << SHIFT);
    assert!(c.pop_fast(1, meta_of).is_none(), "bad link detected");
    assert_eq!(c.pages(), 2 * 2, "the fast path changes nothing");
    let mut faults = FaultLog::new();
    let Err(bad) = c.take::<true>(1, meta_of) else {
        panic!("the corrupted link is found")
    };
    c.lose(1, bad, &mut faults);
    assert_eq!(c.pages(), 0, "the list is dropped");
    assert_eq!(c.lost_pages, 2 * 2, "two blocks of order 1 counted as lost");
    assert_eq!(faults.iter().count(), 1);
    assert!(c.pop_fast(1, meta_of).is_none());
}

/// A link that names another CPU's cached block (a wild write into the
/// metadata) is refused: only the block's CPU takes it, so it is
/// handed out once, by its owner.
#[test]
fn only_the_owner_takes_a_block_two_lists_name() {
    let first = 0x20_0000;
    let metas: Vec<PageMeta> = (0..8).map(|_| PageMeta::new_tail()).collect();
    let meta_of = |a: usize| metas.get((a >> SHIFT).wrapping_sub(first));
    let mut owner = PageCache::new(1, first, SHIFT);
    let mut other = PageCache::new(2, first, SHIFT);
    owner.push(0, first << SHIFT, claimed(&metas, first, first, 0), meta_of);
    other.push(
        0,
        (first + 1) << SHIFT,
        claimed(&metas, first, first + 1, 0),
        meta_of,
    );
    // `other`'s list is corrupted to name `owner`'s block.
    other.lists[0].head = other.link_of(first << SHIFT).unwrap();
    assert!(other.pop_fast(0, meta_of).is_none(), "not its block");
    assert_eq!(owner.pop_fast(0, meta_of), Some(first << SHIFT));
    assert!(other.pop_fast(0, meta_of).is_none(), "handed out: gone");
}

#[test]
fn high_doubles_on_refill_after_flush_within_budget() {
    const H: usize = PAGE_CACHE_HIGH;
    let (mut c, _) = setup(1, 0x100);
    c.note_refill(0, usize::MAX);
    assert_eq!(c.lists_high(0), H, "no flush: unchanged");
    c.lists[0].flushed = true;
    c.note_refill(0, usize::MAX);
    assert_eq!(c.lists_high(0), 2 * H);
    // The budget is for growth beyond H, over every order: order 1 gets
    // what order 0's growth (H pages) leaves.
    let budget = H + 2 * (H << 1);
    c.lists[1].flushed = true;
    c.note_refill(1, budget);
    assert_eq!(c.lists_high(1), 2 * H);
    c.lists[1].flushed = true;
    c.note_refill(1, budget);
    assert_eq!(c.lists_high(1), 3 * H, "capped by the budget");
    c.note_refill(1, 0);
    assert_eq!(c.lists_high(1), H, "never below the minimum");
    c.reset_high();
    assert_eq!(c.lists_high(0), H);
}

#[test]
fn the_base_spreads_half_the_budget_and_growth_decays_when_unused() {
    let per_mark = (1 << PAGE_CACHE_ORDERS) - 1;
    assert_eq!(PageCache::base_for(0), 1, "at least one block");
    assert_eq!(PageCache::base_for(256), 128 / per_mark);
    assert_eq!(PageCache::base_for(usize::MAX), PAGE_CACHE_HIGH);
    let base = PageCache::base_for(256);
    let mut c = PageCache::new(CPU, 0x100, SHIFT);
    c.set_budget(256);
    assert_eq!(c.lists_high(PAGE_CACHE_ORDERS - 1), base);
    for _ in 0..2 {
        c.lists[0].flushed = true;
        c.note_refill(0, usize::MAX);
    }
    assert_eq!(c.lists_high(0), 4 * base, "grown twice");
    // The list's length alone matters to the decay.
    c.lists[0].len = 3 * base;
    assert_eq!(c.decay_marks(1)[0], 0, "used since: kept");
    assert_eq!(c.lists_high(0), 4 * base);
    let quiet = 2 * 4 * base;
    assert_eq!(c.decay_marks(quiet - 1)[0], 0, "not unused for long enough");
    assert_eq!(c.decay_marks(1)[0], base, "halved: one mark's worth above");
    assert_eq!(c.lists_high(0), 2 * base);
    c.lists[0].used = true;
    c.decay_marks(1 << 20);
    assert_eq!(c.lists_high(0), 2 * base, "used again: kept");
    c.decay_marks(1 << 20);
    c.decay_marks(1 << 20);
    assert_eq!(c.lists_high(0), base, "never below the base");
}

#[test]
fn blocks_far_from_the_first_page_are_not_cached() {
    let c = PageCache::new(0, 0x1000, SHIFT);
    assert!(c.can_cache(0x1000 << SHIFT));
    assert!(c.can_cache((0x1000 + (1 << 31) - 2) << SHIFT));
    assert!(!c.can_cache((0x1000 + (1 << 31)) << SHIFT));
    assert!(c.can_cache(0));
}
