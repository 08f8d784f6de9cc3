//! One contiguous range of managed pages with its own free map.
//!
//! Page indices (`idx`) are relative to the section; alignment is by absolute
//! page frame number `base_pfn + idx`, so a block of order `k` starts at an
//! address aligned to `PAGE_SIZE << k` whatever the region's start.

use super::free_map::FreeMap;
use super::page_meta::{PageKind, PageMeta};
use crate::config::{MAX_ORDER, NR_ORDERS};
use core::ptr::NonNull;

/// Which end of free memory a block is taken from (see
/// [`Section::alloc_block`]). Slabs come from the high end and page runs
/// from the low end, so that the two kinds of
/// allocation, which live on different time scales, do not interleave and
/// large free blocks survive between them (grouping by mobility, as Linux
/// does by pageblock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Page runs and page-cache refills.
    Low,
    /// Slabs.
    High,
}

/// Free blocks and metadata of one section. See `PageMeta` for B1..B4 and
/// `FreeMap` for F1..F4.
///
/// Further invariants:
/// - B5: bit `k` of `nonempty_orders` is set iff a block of order `k` is
///   free.
/// - B6: `free_pages` is the sum of `1 << order` over the free blocks.
/// - B7: `meta` points to `nr_pages` initialised `PageMeta`s that nothing
///   else writes except through this section (and the slab owner through
///   `PageMeta` atomics it has been given by the buddy). It is derived from
///   the pointer the region came in as, so its provenance covers the whole
///   region: every pointer to a page is built from it (`ptr_at`).
pub(crate) struct Section {
    /// Absolute page frame number (`vaddr / PAGE_SIZE`) of page 0.
    pub(crate) base_pfn: usize,
    /// Pages managed (not counting the metadata prefix).
    pub(crate) nr_pages: usize,
    /// First byte of the whole region this section was carved from.
    pub(crate) region_start: usize,
    /// One past the last byte of that region.
    pub(crate) region_end: usize,
    /// Whether all of this section's memory lies below the lowmem limit.
    pub(crate) lowmem: bool,
    pub(crate) meta: NonNull<PageMeta>,
    free: FreeMap,
    nonempty_orders: u32,
    pub(crate) free_pages: usize,
}

// SAFETY: a Section is plain data plus a pointer to metadata it owns (B7);
// moving it to another thread moves that ownership.
unsafe impl Send for Section {}

impl Section {
    /// Builds a section over `nr_pages` pages whose metadata is at `meta`,
    /// initialises every `PageMeta` and frees all pages.
    ///
    /// # Safety
    /// - `meta` is valid for writes of `nr_pages` `PageMeta`s, suitably
    ///   aligned, and is used for nothing else while the section lives.
    /// - `map` is valid for reads and writes of
    ///   `FreeMap::words_for(nr_pages)` aligned `u64`s, used for nothing
    ///   else while the section lives.
    /// - `nr_pages < u32::MAX`.
    pub(crate) unsafe fn new(
        base_pfn: usize,
        nr_pages: usize,
        meta: NonNull<PageMeta>,
        map: NonNull<u64>,
        region: (usize, usize),
        lowmem: bool,
    ) -> Self {
        for i in 0..nr_pages {
            // SAFETY: caller contract: `meta` has room for `nr_pages` entries.
            unsafe {
                meta.as_ptr().add(i).write(PageMeta::new_tail());
            }
        }
        let mut s = Self {
            base_pfn,
            nr_pages,
            region_start: region.0,
            region_end: region.1,
            lowmem,
            meta,
            // SAFETY: forwarded caller contract for `map`.
            free: unsafe { FreeMap::new(map, base_pfn, nr_pages) },
            nonempty_orders: 0,
            free_pages: 0,
        };
        s.free_run(0, nr_pages);
        s
    }

    #[inline]
    pub(crate) fn meta(&self, idx: usize) -> &PageMeta {
        // Every index comes from a free-list link (B1) or from arithmetic
        // bounded by `nr_pages` in the callers: asserted in debug builds,
        // clamped (a branch-free cmov, unlike a panicking check) in release
        // so that even corrupted links cannot reach outside the array.
        debug_assert!(idx < self.nr_pages);
        let idx = idx.min(self.nr_pages - 1);
        // SAFETY: idx < nr_pages (clamped above; sections are never empty)
        // and `meta` holds nr_pages initialised entries (B7).
        unsafe { &*self.meta.as_ptr().add(idx) }
    }

    /// `meta` for an index the caller has just checked against `nr_pages`
    /// (no clamp: the merge loop calls this once per level).
    #[inline(always)]
    fn meta_checked(&self, idx: usize) -> &PageMeta {
        debug_assert!(idx < self.nr_pages);
        // SAFETY: the caller checked idx < nr_pages; `meta` holds nr_pages
        // initialised entries (B7).
        unsafe { &*self.meta.as_ptr().add(idx) }
    }

    /// A pointer to `addr`, a byte of this section's pages, carrying the
    /// region's provenance (B7).
    #[inline]
    pub(crate) fn ptr_at(&self, addr: usize) -> NonNull<u8> {
        debug_assert!(self.region_start <= addr && addr < self.region_end);
        NonNull::new(self.meta.as_ptr().cast::<u8>().with_addr(addr))
            .expect("pages lie above their metadata, so above address 0")
    }

    /// Order of the largest block starting at `idx` that is naturally aligned
    /// and fits in `pages` pages.
    #[inline]
    fn max_block_order(&self, idx: usize, pages: usize) -> u32 {
        let align = (self.base_pfn + idx).trailing_zeros();
        let fit = usize::BITS - 1 - pages.leading_zeros();
        align.min(fit).min(MAX_ORDER as u32)
    }

    #[inline]
    fn push_free(&mut self, idx: usize, order: u32) {
        self.meta(idx).make_free(order);
        self.free.insert(idx, order);
        self.nonempty_orders |= 1 << order;
        self.free_pages += 1 << order;
    }

    /// Takes the free block at `idx` off the map and marks its head `Tail`.
    #[inline]
    fn remove_free(&mut self, idx: usize, order: u32) {
        let m = self.meta(idx);
        debug_assert!(m.is_free(order) && self.free.contains(idx, order));
        m.make_tail();
        if self.free.remove(idx, order) {
            self.nonempty_orders &= !(1 << order);
        }
        self.free_pages -= 1 << order;
    }

    /// The buddy of the block at `idx` of `order`, if it lies wholly in
    /// the section.
    #[inline(always)]
    fn buddy_of(&self, idx: usize, order: u32) -> Option<usize> {
        let buddy = ((self.base_pfn + idx) ^ (1 << order)).checked_sub(self.base_pfn)?;
        (buddy + (1 << order) <= self.nr_pages).then_some(buddy)
    }

    /// Frees the naturally aligned block at `idx` of `order`, merging it
    /// with free buddies. The block's pages must all be `Tail`.
    pub(crate) fn free_block(&mut self, mut idx: usize, mut order: u32) {
        while order < MAX_ORDER as u32 {
            let Some(buddy) = self.buddy_of(idx, order) else {
                break;
            };
            if !self.meta_checked(buddy).is_free(order) {
                break;
            }
            self.remove_free(buddy, order);
            idx = idx.min(buddy);
            order += 1;
        }
        self.push_free(idx, order);
    }

    /// Frees the pages `[idx, idx + pages)` as maximal aligned blocks.
    pub(crate) fn free_run(&mut self, idx: usize, pages: usize) {
        let end = idx + pages;
        let mut cur = idx;
        while cur < end {
            let order = self.max_block_order(cur, end - cur);
            self.meta(cur).make_tail();
            self.free_block(cur, order);
            cur += 1 << order;
        }
    }

    /// Whether a block of `order` or larger is free.
    #[inline]
    pub(crate) fn has_order(&self, order: u32) -> bool {
        self.nonempty_orders >> order != 0
    }

    /// Largest free order, if any page is free.
    pub(crate) fn largest_free_order(&self) -> Option<u32> {
        (self.nonempty_orders != 0).then(|| 31 - self.nonempty_orders.leading_zeros())
    }

    /// Whether the block at an index is a free block of `order`: what the
    /// free map asks to tell a pair of buddies apart (F4).
    #[inline(always)]
    fn is_free_at(&self, order: u32) -> impl Fn(usize) -> bool + Copy + '_ {
        move |i| self.meta(i).is_free(order)
    }

    /// The free blocks of `order`, lowest first (walks its bitmap: slow
    /// paths and statistics only).
    fn free_blocks(&self, order: u32) -> impl Iterator<Item = usize> + '_ {
        self.free.iter(order, self.is_free_at(order))
    }

    /// Free blocks of `order` (statistics only).
    pub(crate) fn count_free_blocks(&self, order: u32) -> usize {
        self.free_blocks(order).count()
    }

    /// The free block of `order` nearest the `placement`'s end. Some block
    /// of `order` must be free.
    fn pick(&self, order: u32, placement: Placement) -> usize {
        let is_free = self.is_free_at(order);
        let found = match placement {
            Placement::Low => self.free.lowest(order, is_free),
            Placement::High => self.free.highest(order, is_free),
        };
        found.expect("B5: the order has a free block")
    }

    /// Takes a naturally aligned block of `order` pages: of the free blocks
    /// of every order that fits, the one nearest the `placement`'s end
    /// (address-ordered first fit), split down to `order` keeping the half
    /// at that end. Splitting a low large block rather than taking a small
    /// high one keeps each kind of allocation packed at its end, so what
    /// lies between stays in large blocks and freed memory is reused
    /// before memory never touched. O(orders × bitmap levels). Its pages
    /// are all `Tail` on return.
    pub(crate) fn alloc_block(&mut self, order: u32, placement: Placement) -> Option<usize> {
        let mut orders = self.nonempty_orders >> order << order;
        let mut best: Option<(u32, usize)> = None;
        while orders != 0 {
            let o = orders.trailing_zeros();
            orders &= orders - 1;
            let idx = self.pick(o, placement);
            if best.is_none_or(|(_, b)| (placement == Placement::Low) == (idx < b)) {
                best = Some((o, idx));
            }
        }
        let (mut cur_order, mut idx) = best?;
        self.remove_free(idx, cur_order);
        while cur_order > order {
            cur_order -= 1;
            let half = 1 << cur_order;
            match placement {
                Placement::Low => self.push_free(idx + half, cur_order),
                Placement::High => {
                    self.push_free(idx, cur_order);
                    idx += half;
                }
            }
        }
        Some(idx)
    }

    /// Takes up to `want` blocks of `order` for a page-cache refill, carving
    /// them out of as few larger blocks as possible (no split-then-pop churn
    /// per block), and calls `f` on each block's index. Returns how many.
    pub(crate) fn alloc_blocks(
        &mut self,
        order: u32,
        want: usize,
        mut f: impl FnMut(usize),
    ) -> usize {
        let mut got = 0;
        while got < want {
            let left = want - got;
            let target = (order + usize::BITS - 1 - left.leading_zeros()).min(MAX_ORDER as u32);
            // The largest free block that does not overshoot what is left...
            let fitting = self.nonempty_orders & ((2u32 << target) - 1) & !((1u32 << order) - 1);
            let (idx, taken) = if fitting != 0 {
                let o = 31 - fitting.leading_zeros();
                let idx = self.pick(o, Placement::Low);
                self.remove_free(idx, o);
                (idx, o)
            } else {
                // ...else split the smallest larger one down to `target`.
                let above = self.nonempty_orders.checked_shr(target + 1).unwrap_or(0);
                if above == 0 {
                    break;
                }
                let mut o = target + 1 + above.trailing_zeros();
                let idx = self.pick(o, Placement::Low);
                self.remove_free(idx, o);
                while o > target {
                    o -= 1;
                    self.push_free(idx + (1 << o), o);
                }
                (idx, target)
            };
            for k in 0..1usize << (taken - order) {
                f(idx + (k << order));
            }
            got += 1 << (taken - order);
        }
        got
    }

    /// Finds the free block containing page `idx`: `(head, order)`.
    fn free_block_containing(&self, idx: usize) -> Option<(usize, u32)> {
        let pfn = self.base_pfn + idx;
        for order in 0..=MAX_ORDER as u32 {
            let head_pfn = pfn & !((1usize << order) - 1);
            let head = head_pfn.checked_sub(self.base_pfn)?;
            if self.meta(head).is_free(order) {
                return Some((head, order));
            }
        }
        None
    }

    /// Finds `count` contiguous free pages starting at an absolute frame
    /// number that is a multiple of `align_pages`, spanning several adjacent
    /// free blocks: the fallback when no single block of the covering order
    /// is free. A free run of `count` pages always contains a free block of
    /// order ≥ log2(count) - 1, so only those blocks seed the search, largest
    /// first. Slow path: O(candidates × blocks per run × MAX_ORDER).
    pub(crate) fn find_free_run(&self, count: usize, align_pages: usize) -> Option<usize> {
        let min_order = (usize::BITS - 1 - count.leading_zeros())
            .saturating_sub(1)
            .min(MAX_ORDER as u32);
        for order in (min_order..=MAX_ORDER as u32).rev() {
            for block in self.free_blocks(order) {
                let mut start = block;
                while let Some((head, _)) = start
                    .checked_sub(1)
                    .and_then(|p| self.free_block_containing(p))
                {
                    start = head;
                }
                let mut end = block + (1 << order);
                while end < self.nr_pages {
                    let Some((head, o)) = self.free_block_containing(end) else {
                        break;
                    };
                    end = head + (1 << o);
                }
                let first = (self.base_pfn + start).next_multiple_of(align_pages) - self.base_pfn;
                if first + count <= end {
                    return Some(first);
                }
            }
        }
        None
    }

    /// Takes exactly the pages `[idx, idx + pages)` off the free map, or
    /// nothing if one of them is not free. Pages taken are `Tail`.
    /// O(pages / block + MAX_ORDER) per block touched.
    pub(crate) fn take_range(&mut self, idx: usize, pages: usize) -> bool {
        let end = idx + pages;
        if end > self.nr_pages {
            return false;
        }
        let mut cur = idx;
        while cur < end {
            let Some((head, order)) = self.free_block_containing(cur) else {
                // Roll back what was taken so far.
                self.free_run(idx, cur - idx);
                return false;
            };
            let block_end = head + (1 << order);
            self.remove_free(head, order);
            self.free_run(head, cur - head);
            let taken_end = block_end.min(end);
            self.free_run(taken_end, block_end - taken_end);
            cur = taken_end;
        }
        true
    }

    /// Checks B1, B2 (for free blocks), B4, B5, B6 and F1, F2, F4; panics on a
    /// violation.
    pub(crate) fn check_invariants(&self) {
        self.free.check_summaries();
        let mut free_pages = 0;
        let mut listed = 0;
        for order in 0..NR_ORDERS as u32 {
            assert_eq!(
                self.free.any(order),
                self.nonempty_orders & (1 << order) != 0,
                "B5 order {order}"
            );
            for idx in self.free_blocks(order) {
                let m = self.meta(idx);
                assert!(
                    idx + (1 << order) <= self.nr_pages,
                    "B1: block {idx} past section end"
                );
                assert!(
                    m.is_free(order),
                    "F1: page {idx} marked free at order {order} is {:?}",
                    m.kind()
                );
                for t in idx + 1..idx + (1 << order) {
                    assert_eq!(
                        self.meta(t).kind(),
                        PageKind::Tail,
                        "B2: page {t} in free block {idx}"
                    );
                }
                if let Some(buddy) = self.buddy_of(idx, order)
                    && order < MAX_ORDER as u32
                {
                    assert!(
                        !self.meta(buddy).is_free(order),
                        "F4: buddies {idx} and {buddy} both free at order {order}"
                    );
                }
                free_pages += 1 << order;
                listed += 1;
            }
        }
        assert_eq!(free_pages, self.free_pages, "B6");
        let mut free_heads = 0;
        for idx in 0..self.nr_pages {
            let m = self.meta(idx);
            match m.kind() {
                PageKind::Free => free_heads += 1,
                PageKind::Slab | PageKind::SlabDead => {
                    let (order, owner) = m.slab_page().expect("a slab head");
                    assert!(
                        (self.base_pfn + idx).is_multiple_of(1 << order)
                            && idx + (1 << order) <= self.nr_pages,
                        "B4: slab head {idx} misplaced"
                    );
                    for t in idx + 1..idx + (1 << order) {
                        let tail = self.meta(t);
                        assert!(
                            tail.kind() == PageKind::SlabTail
                                && tail.slab_page() == Some((order, owner)),
                            "B4: page {t} of the slab at {idx}"
                        );
                    }
                }
                _ => {}
            }
        }
        assert_eq!(free_heads, listed, "F1: a Free page is not marked free");
    }
}
