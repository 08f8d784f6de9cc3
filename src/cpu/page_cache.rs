//! Per-CPU cache of small page blocks (Linux's "pcp" lists).
//!
//! Blocks of order `0..page-cache-orders` freed on a CPU stay on that CPU's
//! list for the order and are handed out again without the buddy lock.
//! Refills and drains move `page-cache-batch` blocks per lock acquisition.
//! Cached blocks are allocated runs in the buddy's view, tagged `Cached` in
//! their page metadata.
//!
//! # Lists
//! A list is intrusive: it links blocks through the `next`/`prev` fields of
//! their head `PageMeta`, which a run off the buddy's free lists does not
//! use. So a cache costs no memory per block and has no fixed capacity, and
//! the links live in metadata, out of reach of a use-after-free write into
//! a cached page. Allocation takes the newest block (warmest), a flush
//! returns the oldest.
//!
//! # How much a CPU caches
//! Each order has a `high` mark: a free that finds the list at `high` first
//! returns a batch to the buddy. `high` starts at `page-cache-high` and
//! adapts as Linux's pcp high does: a refill that follows a flush means
//! blocks are cycling through the buddy because the cache is too small, so
//! `high` doubles, up to this CPU's share of `1 / page-cache-fraction` of
//! managed memory (shared by the CPUs whose marks have grown, and by the
//! orders of one CPU). A drain (memory pressure, `drain`) resets it.
#![deny(unsafe_code)]

use crate::buddy::{NIL, PageKind, PageMeta};
use crate::config::cpu::{PAGE_CACHE_BATCH, PAGE_CACHE_HIGH, PAGE_CACHE_ORDERS};

/// The cached blocks of one order.
///
/// Invariants:
/// - P1: every block on the list heads a run of `1 << order` pages tagged
///   `Cached` with `run_pages == 1 << order`, in managed memory.
/// - P2: `len` blocks are reachable from `head` along `next` and from
///   `tail` along `prev`; `head` and `tail` are `NIL` iff `len == 0`. The
///   head's `prev` and the tail's `next` are never read (stale values).
/// - P3: `PAGE_CACHE_HIGH <= high`.
#[derive(Clone, Copy)]
struct BlockList {
    /// Newest block (a link, see `PageCache::link_of`) or `NIL`.
    head: u32,
    /// Oldest block or `NIL`.
    tail: u32,
    len: usize,
    /// Blocks the list may hold before a free flushes a batch.
    high: usize,
    /// A batch went back to the buddy since the last refill.
    flushed: bool,
}

impl BlockList {
    const EMPTY: Self = Self {
        head: NIL,
        tail: NIL,
        len: 0,
        high: PAGE_CACHE_HIGH,
        flushed: false,
    };
}

/// One CPU's cached blocks, per order.
///
/// Links are page frame numbers relative to `origin_pfn` (wrapping) in 32
/// bits: blocks within ±8 TiB of the first managed page can be cached,
/// others go straight back to the buddy (`can_cache`).
pub(crate) struct PageCache {
    lists: [BlockList; PAGE_CACHE_ORDERS],
    origin_pfn: usize,
    page_shift: u32,
    /// Pages on all lists.
    pages: usize,
    /// Pages dropped with corrupted lists (see `checked_block`).
    lost_pages: usize,
    /// Whether this CPU is counted among the CPUs whose marks have grown
    /// (the facade's `growing_cpus`).
    pub(crate) counted_growing: bool,
}

/// Metadata of a block's head page, by address: the facade's section map.
pub(crate) trait MetaOf<'m>: FnMut(usize) -> Option<&'m PageMeta> {}
impl<'m, F: FnMut(usize) -> Option<&'m PageMeta>> MetaOf<'m> for F {}

impl PageCache {
    /// An empty cache whose links are relative to the page frame
    /// `first_pfn` of managed memory.
    pub(crate) fn new(first_pfn: usize, page_shift: u32) -> Self {
        Self {
            lists: [BlockList::EMPTY; PAGE_CACHE_ORDERS],
            origin_pfn: first_pfn.wrapping_sub(1 << 31),
            page_shift,
            pages: 0,
            lost_pages: 0,
            counted_growing: false,
        }
    }

    /// The cached order serving `count` pages aligned to `align_pages`.
    #[inline]
    pub(crate) fn order_for(count: usize, align_pages: usize) -> Option<usize> {
        let order = count.trailing_zeros() as usize;
        (count.is_power_of_two() && order < PAGE_CACHE_ORDERS && align_pages <= count)
            .then_some(order)
    }

    #[inline]
    fn link_of(&self, addr: usize) -> Option<u32> {
        let link = (addr >> self.page_shift).wrapping_sub(self.origin_pfn);
        (link < NIL as usize).then_some(link as u32)
    }

    #[inline]
    fn addr_of(&self, link: u32) -> usize {
        self.origin_pfn.wrapping_add(link as usize) << self.page_shift
    }

    /// Whether a block at `addr` can be linked (see the type's docs).
    #[inline]
    pub(crate) fn can_cache(&self, addr: usize) -> bool {
        self.link_of(addr).is_some()
    }

    /// Pages on all lists.
    #[inline]
    pub(crate) fn pages(&self) -> usize {
        self.pages
    }

    /// Pages dropped so far with corrupted lists (leaked, never reused).
    pub(crate) fn lost_pages(&self) -> usize {
        self.lost_pages
    }

    /// Whether the list of `order` is at its high mark.
    #[inline]
    pub(crate) fn is_full(&self, order: usize) -> bool {
        let list = &self.lists[order];
        list.len >= list.high
    }

    /// Puts the block at `addr`, whose head metadata `meta` the caller has
    /// tagged `Cached`, on top of the list of `order`. The caller checked
    /// `can_cache(addr)` and `!is_full(order)`.
    #[inline]
    pub(crate) fn push<'m>(
        &mut self,
        order: usize,
        addr: usize,
        meta: &PageMeta,
        mut meta_of: impl MetaOf<'m>,
    ) {
        debug_assert!(!self.is_full(order));
        let Some(link) = self.link_of(addr) else {
            debug_assert!(false, "caller checked can_cache");
            return;
        };
        let head = self.lists[order].head;
        if head == NIL {
            self.lists[order].tail = link;
        } else if let Some(top) = meta_of(self.addr_of(head)) {
            // P1: the head is in managed memory, so this always finds it.
            top.set_prev(link);
        }
        meta.set_next(head);
        let list = &mut self.lists[order];
        list.head = link;
        list.len += 1;
        self.pages += 1 << order;
    }

    /// Takes the newest block of `order`: its address and head metadata,
    /// still tagged `Cached`.
    #[inline]
    pub(crate) fn pop<'m>(
        &mut self,
        order: usize,
        meta_of: impl MetaOf<'m>,
    ) -> Option<(usize, &'m PageMeta)> {
        self.take::<true>(order, meta_of)
    }

    /// Takes the newest (`NEWEST`) or the oldest block of `order`.
    #[inline(always)]
    fn take<'m, const NEWEST: bool>(
        &mut self,
        order: usize,
        meta_of: impl MetaOf<'m>,
    ) -> Option<(usize, &'m PageMeta)> {
        let list = self.lists[order];
        if list.len == 0 {
            return None;
        }
        let end = if NEWEST { list.head } else { list.tail };
        let (addr, meta) = self.checked_block(order, end, meta_of)?;
        let list = &mut self.lists[order];
        list.len -= 1;
        if list.len == 0 {
            (list.head, list.tail) = (NIL, NIL);
        } else if NEWEST {
            list.head = meta.next();
        } else {
            list.tail = meta.prev();
        }
        self.pages -= 1 << order;
        Some((addr, meta))
    }

    /// The block `link` names, checked against P1. A block that fails is
    /// a corrupted list (page metadata overwritten): the list is dropped
    /// (its blocks stay tagged `Cached`, so they leak rather than be handed
    /// out twice) and `None` returned.
    #[inline]
    fn checked_block<'m>(
        &mut self,
        order: usize,
        link: u32,
        mut meta_of: impl MetaOf<'m>,
    ) -> Option<(usize, &'m PageMeta)> {
        let addr = self.addr_of(link);
        match meta_of(addr) {
            Some(meta)
                if meta.is(PageKind::Cached, 0) && meta.run_pages() as usize == 1 << order =>
            {
                Some((addr, meta))
            }
            _ => {
                self.lose(order, addr);
                None
            }
        }
    }

    #[cold]
    fn lose(&mut self, order: usize, addr: usize) {
        let list = &mut self.lists[order];
        log::error!(
            "buddy-slab: page cache of order {order} names {addr:#x}, not a cached block; \
             dropping its {} blocks",
            list.len
        );
        self.pages -= list.len << order;
        self.lost_pages += list.len << order;
        (list.head, list.tail, list.len) = (NIL, NIL, 0);
    }

    /// Takes up to `max` (at most a batch) of the oldest blocks of `order`
    /// for a flush, still tagged `Cached`; returns how many.
    pub(crate) fn take_batch<'m>(
        &mut self,
        order: usize,
        max: usize,
        out: &mut [usize; PAGE_CACHE_BATCH],
        mut meta_of: impl MetaOf<'m>,
    ) -> usize {
        let mut n = 0;
        while n < max.min(PAGE_CACHE_BATCH) {
            let Some((addr, _)) = self.take::<false>(order, &mut meta_of) else {
                break;
            };
            out[n] = addr;
            n += 1;
        }
        if n > 0 {
            self.lists[order].flushed = true;
        }
        n
    }

    /// Adapts the high mark of `order` at a refill: doubled if a flush came
    /// since the last refill, and kept within `page-cache-high` plus a share
    /// of `budget_pages` that the growth of this CPU's other orders leaves.
    pub(crate) fn note_refill(&mut self, order: usize, budget_pages: usize) {
        let others: usize = (0..PAGE_CACHE_ORDERS)
            .filter(|&o| o != order)
            .map(|o| (self.lists[o].high - PAGE_CACHE_HIGH) << o)
            .sum();
        let cap = PAGE_CACHE_HIGH.saturating_add(budget_pages.saturating_sub(others) >> order);
        let list = &mut self.lists[order];
        let want = if list.flushed {
            list.high * 2
        } else {
            list.high
        };
        list.high = want.min(cap);
        list.flushed = false;
    }

    /// Checks P1–P3 (walks every list); panics on a violation.
    pub(crate) fn check<'m>(&self, mut meta_of: impl MetaOf<'m>) {
        let mut pages = 0;
        for (order, list) in self.lists.iter().enumerate() {
            assert!(list.high >= PAGE_CACHE_HIGH, "P3: order {order}");
            assert_eq!(list.len == 0, list.head == NIL, "P2: order {order} head");
            assert_eq!(list.len == 0, list.tail == NIL, "P2: order {order} tail");
            let mut cur = list.head;
            for i in 0..list.len {
                let addr = self.addr_of(cur);
                let meta = meta_of(addr).expect("P1: a cached block in managed memory");
                assert!(
                    meta.is(PageKind::Cached, 0) && meta.run_pages() as usize == 1 << order,
                    "P1: cached block {addr:#x} of order {order}"
                );
                assert!(addr.is_multiple_of(1 << (self.page_shift as usize + order)));
                if i + 1 == list.len {
                    assert_eq!(cur, list.tail, "P2: order {order} ends at its tail");
                } else {
                    cur = meta.next();
                }
            }
            pages += list.len << order;
        }
        assert_eq!(pages, self.pages, "page count");
    }

    /// Whether a high mark is above `page-cache-high`.
    pub(crate) fn has_grown(&self) -> bool {
        self.lists.iter().any(|l| l.high > PAGE_CACHE_HIGH)
    }

    /// Resets every high mark to `page-cache-high` (after a drain).
    pub(crate) fn reset_high(&mut self) {
        for list in &mut self.lists {
            list.high = PAGE_CACHE_HIGH;
            list.flushed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIFT: u32 = 12;

    impl PageCache {
        fn lists_high(&self, order: usize) -> usize {
            self.lists[order].high
        }
    }

    /// A cache over `n` pages of metadata at page frames `first..first + n`.
    fn setup(n: usize, first: usize) -> (PageCache, Vec<PageMeta>) {
        let metas = (0..n).map(|_| PageMeta::new_tail()).collect();
        (PageCache::new(first, SHIFT), metas)
    }

    fn cached(metas: &[PageMeta], first: usize, pfn: usize, order: u32) -> usize {
        let m = &metas[pfn - first];
        m.set_run(PageKind::Cached, 1 << order);
        pfn << SHIFT
    }

    #[test]
    fn pops_newest_and_flushes_oldest() {
        let first = 0x8_0000;
        let (mut c, metas) = setup(4 * PAGE_CACHE_HIGH, first);
        let meta_of = |a: usize| metas.get((a >> SHIFT).wrapping_sub(first));
        for i in 0..PAGE_CACHE_HIGH {
            let addr = cached(&metas, first, first + i, 0);
            assert!(!c.is_full(0));
            c.push(0, addr, meta_of(addr).unwrap(), meta_of);
        }
        assert!(c.is_full(0));
        assert_eq!(c.pages(), PAGE_CACHE_HIGH);
        c.check(meta_of);
        let mut out = [0; PAGE_CACHE_BATCH];
        assert_eq!(
            c.take_batch(0, usize::MAX, &mut out, meta_of),
            PAGE_CACHE_BATCH
        );
        assert_eq!(out[0], first << SHIFT, "oldest first");
        assert_eq!(out[1], (first + 1) << SHIFT);
        let (top, _) = c.pop(0, meta_of).unwrap();
        assert_eq!(top, (first + PAGE_CACHE_HIGH - 1) << SHIFT, "newest first");
        let mut seen = 1;
        while let Some((a, _)) = c.pop(0, meta_of) {
            assert!(a >> SHIFT >= first + PAGE_CACHE_BATCH);
            seen += 1;
        }
        assert_eq!(seen, PAGE_CACHE_HIGH - PAGE_CACHE_BATCH);
        c.check(meta_of);
        assert_eq!(c.pages(), 0);
        assert!(c.pop(1, meta_of).is_none());
        c.check(meta_of);
    }

    #[test]
    fn a_corrupted_link_drops_the_list_and_hands_out_nothing_twice() {
        let first = 0x10_0000;
        let (mut c, metas) = setup(8, first);
        let meta_of = |a: usize| metas.get((a >> SHIFT).wrapping_sub(first));
        for i in [0, 2, 4] {
            let addr = cached(&metas, first, first + i, 1);
            c.push(1, addr, meta_of(addr).unwrap(), meta_of);
        }
        // The top block's link now names a page that is not cached.
        metas[4].set_next(c.link_of((first + 7) << SHIFT).unwrap());
        assert_eq!(c.pop(1, meta_of).unwrap().0, (first + 4) << SHIFT);
        assert!(c.pop(1, meta_of).is_none(), "bad link detected");
        assert_eq!(c.pages(), 0, "the list is dropped");
        assert_eq!(
            c.lost_pages(),
            2 * 2,
            "two blocks of order 1 counted as lost"
        );
        assert!(c.pop(1, meta_of).is_none());
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
    fn blocks_far_from_the_first_page_are_not_cached() {
        let c = PageCache::new(0x1000, SHIFT);
        assert!(c.can_cache(0x1000 << SHIFT));
        assert!(c.can_cache((0x1000 + (1 << 31) - 2) << SHIFT));
        assert!(!c.can_cache((0x1000 + (1 << 31)) << SHIFT));
        assert!(c.can_cache(0));
    }
}
