//! Per-CPU cache of small page blocks (Linux's "pcp" lists): the lists, and
//! the policy that fills and empties them through the locked buddy.
//!
//! Blocks of order `0..page-cache-orders` freed on a CPU stay on that CPU's
//! list for the order and are handed out again without the buddy lock.
//! Refills and drains move `page-cache-batch` blocks per lock acquisition
//! ([`PageSource`]). Cached blocks are off the buddy's free lists, tagged
//! `Cached` for their CPU in their page metadata.
//!
//! # Lists
//! A list is intrusive: it links blocks through the `next`/`prev` fields of
//! their head `PageMeta`, which a run off the buddy's free lists does not
//! use. So a cache costs no memory per block and has no fixed capacity, and
//! the links live in metadata, out of reach of a use-after-free write into
//! a cached page. Allocation takes the newest block (warmest), a flush
//! returns the oldest. Every block taken off a list is checked to be one of
//! this CPU's cached blocks first (P1): a corrupted link drops the list,
//! and since only a block's own CPU changes a block tagged for it, two CPUs
//! whose lists name the same block cannot both take it.
//!
//! # How much a CPU caches
//! Each order has a `high` mark: a free that finds the list at `high` first
//! returns a batch to the buddy. `high` starts at the *base* mark, which
//! spreads half of the CPU's idle budget over the cached orders (at most
//! `page-cache-high` blocks each), and adapts as Linux's pcp high does: a
//! refill that follows a flush means blocks are cycling through the buddy
//! because the cache is too small, so `high` doubles, up to this CPU's
//! share of `1 / page-cache-fraction` of managed memory (shared by the CPUs
//! whose marks have grown, and by the orders of one CPU). Growth decays
//! once the load is gone: [`PageCpu::decay`], which the facade runs every
//! `cpu.decay-calls` slow paths of the CPU, halves a mark whose list saw no
//! block cached or taken for twice as many of the CPU's slow paths as the
//! mark holds blocks, and flushes what lies above it. So a grown mark of
//! `h` blocks is back at the base within about `4 h` slow paths after its
//! last use (a CPU that takes no slow path keeps its cache until a
//! drain). A drain
//! (memory pressure, `drain`, thread exit) resets the marks to the base.
#![deny(unsafe_code)]

use crate::buddy::{CachedBlock, ClaimedRun, NIL, PageMeta, SectionCache};
use crate::config::cpu::{
    PAGE_CACHE_BATCH, PAGE_CACHE_FRACTION, PAGE_CACHE_HIGH, PAGE_CACHE_ORDERS,
};
use crate::fault::{Fault, FaultKind, FaultLog};
use crate::stats::Counter;
use crate::sync::{AtomicUsize, Ordering};

/// The locked buddy as a page cache sees it. Each method takes the lock
/// once; `publish` runs under it, so a statistics reader that takes the
/// lock never sees a batch half moved.
pub(crate) trait PageSource {
    /// Metadata of the page at `addr`, if managed, through `sections`.
    fn meta<'s>(&'s self, sections: &mut SectionCache, addr: usize) -> Option<&'s PageMeta>;
    /// Takes up to `out.len()` blocks of `order` tagged `Cached` for
    /// `cpu`, then calls `publish(n)` with how many it took; returns `n`
    /// and the managed page count.
    fn refill(
        &self,
        order: u32,
        cpu: usize,
        out: &mut [usize],
        publish: impl FnOnce(usize),
    ) -> (usize, usize);
    /// Frees `blocks` of `order`, claimed for it, then calls `publish`;
    /// returns the first block it refused.
    fn flush(&self, order: u32, blocks: &[usize], publish: impl FnOnce()) -> Option<usize>;
    /// The number of CPUs whose marks have grown (the growth budget's
    /// sharers).
    fn growing_cpus(&self) -> &AtomicUsize;
}

/// The cached blocks of one order.
///
/// Invariants:
/// - P1: every block on the list heads a block of `1 << order` pages
///   tagged `Cached` for this list's CPU and `order`, in managed memory.
/// - P2: `len` blocks are reachable from `head` along `next` and from
///   `tail` along `prev`; `head` and `tail` are `NIL` iff `len == 0`. The
///   head's `prev` and the tail's `next` are never read (stale values).
/// - P3: `base <= high`, where `base` is the cache's base mark
///   (`PageCache::base`).
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
    /// A block was cached or taken since the last decay.
    used: bool,
    /// The CPU's calls since the list was last used, as counted at decays.
    quiet_calls: usize,
}

impl BlockList {
    const EMPTY: Self = Self {
        head: NIL,
        tail: NIL,
        len: 0,
        high: 1,
        flushed: false,
        used: false,
        quiet_calls: 0,
    };
}

/// One CPU's cached blocks, per order (owner-only state).
///
/// Links are page frame numbers relative to `origin_pfn` (wrapping) in 32
/// bits: blocks within ±8 TiB of the first managed page can be cached,
/// others go straight back to the buddy (`can_cache`).
pub(crate) struct PageCache {
    lists: [BlockList; PAGE_CACHE_ORDERS],
    origin_pfn: usize,
    page_shift: u32,
    /// The CPU slot whose blocks these are (their tag, P1).
    cpu: usize,
    /// Pages on all lists.
    pages: usize,
    /// Pages dropped with corrupted lists.
    lost_pages: usize,
    /// Whether this CPU is counted in the source's `growing_cpus`.
    counted_growing: bool,
    /// The base mark of every order (P3): what it caches while idle.
    base: usize,
}

/// Metadata of a block's head page, by address.
pub(crate) trait MetaOf<'m>: FnMut(usize) -> Option<&'m PageMeta> {}
impl<'m, F: FnMut(usize) -> Option<&'m PageMeta>> MetaOf<'m> for F {}

impl PageCache {
    /// An empty cache of CPU slot `cpu` whose links are relative to the
    /// page frame `first_pfn` of managed memory.
    pub(crate) fn new(cpu: usize, first_pfn: usize, page_shift: u32) -> Self {
        Self {
            lists: [BlockList::EMPTY; PAGE_CACHE_ORDERS],
            origin_pfn: first_pfn.wrapping_sub(1 << 31),
            page_shift,
            cpu,
            pages: 0,
            lost_pages: 0,
            counted_growing: false,
            base: 1,
        }
    }

    /// The base mark for an idle budget of `budget_pages` pages: half of it
    /// over the cached orders, within `1..=page-cache-high` blocks.
    pub(crate) const fn base_for(budget_pages: usize) -> usize {
        // Pages of one block of each cached order.
        let per_mark = (1 << PAGE_CACHE_ORDERS) - 1;
        let base = budget_pages / 2 / per_mark;
        if base < 1 {
            1
        } else if base > PAGE_CACHE_HIGH {
            PAGE_CACHE_HIGH
        } else {
            base
        }
    }

    /// Sets the base mark for an idle budget of `budget_pages` pages,
    /// raising the marks below it (P3).
    #[inline]
    pub(crate) fn set_budget(&mut self, budget_pages: usize) {
        let base = Self::base_for(budget_pages);
        if base != self.base {
            self.base = base;
            for list in &mut self.lists {
                list.high = list.high.max(base);
            }
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

    /// Whether the list of `order` is at its high mark.
    #[inline]
    pub(crate) fn is_full(&self, order: usize) -> bool {
        let list = &self.lists[order];
        list.len >= list.high
    }

    /// Puts the block at `addr`, which the caller claimed, on top of the
    /// list of `order`, tagged for this CPU. The caller checked
    /// `can_cache(addr)` and `!is_full(order)`.
    #[inline]
    pub(crate) fn push<'m>(
        &mut self,
        order: usize,
        addr: usize,
        run: ClaimedRun<'_>,
        mut meta_of: impl MetaOf<'m>,
    ) {
        debug_assert!(!self.is_full(order));
        let Some(link) = self.link_of(addr) else {
            debug_assert!(false, "caller checked can_cache");
            run.unclaim();
            return;
        };
        let block = run.into_cached(order, self.cpu);
        let head = self.lists[order].head;
        if head == NIL {
            self.lists[order].tail = link;
        } else if let Some(top) = self.cached_at(order, head, &mut meta_of) {
            top.set_prev(link);
        }
        // (A head that is not one of our blocks is a corrupted list: left
        // for the next walk from either end to find and drop.)
        block.set_next(head);
        let list = &mut self.lists[order];
        list.head = link;
        list.len += 1;
        list.used = true;
        self.pages += 1 << order;
    }

    /// The block `link` names, if it is one of this CPU's cached blocks of
    /// `order` (P1).
    #[inline]
    fn cached_at<'m>(
        &self,
        order: usize,
        link: u32,
        meta_of: &mut impl MetaOf<'m>,
    ) -> Option<CachedBlock<'m>> {
        meta_of(self.addr_of(link))?.cached(order, self.cpu)
    }

    /// Takes the newest (`NEWEST`) or the oldest block of `order`, checked
    /// (P1). `Err(addr)` names the address a corrupted link led to; the
    /// list is unchanged then.
    #[inline(always)]
    fn take<'m, const NEWEST: bool>(
        &mut self,
        order: usize,
        mut meta_of: impl MetaOf<'m>,
    ) -> Result<Option<(usize, CachedBlock<'m>)>, usize> {
        let list = self.lists[order];
        if list.len == 0 {
            return Ok(None);
        }
        let end = if NEWEST { list.head } else { list.tail };
        let addr = self.addr_of(end);
        let Some(block) = self.cached_at(order, end, &mut meta_of) else {
            return Err(addr);
        };
        let list = &mut self.lists[order];
        list.len -= 1;
        if NEWEST {
            list.used = true;
        }
        if list.len == 0 {
            (list.head, list.tail) = (NIL, NIL);
        } else if NEWEST {
            list.head = block.next();
        } else {
            list.tail = block.prev();
        }
        self.pages -= 1 << order;
        Ok(Some((addr, block)))
    }

    /// Fast path: hands out the newest block of `order`. `None`, with
    /// nothing changed, when the list is empty or corrupted (the slow path
    /// then drops it and reports).
    #[inline(always)]
    pub(crate) fn pop_fast<'m>(&mut self, order: usize, meta_of: impl MetaOf<'m>) -> Option<usize> {
        let (addr, block) = self.take::<true>(order, meta_of).ok()??;
        block.hand_out();
        Some(addr)
    }

    /// Drops the list of `order`, corrupted at `addr`: its blocks stay
    /// tagged `Cached`, so they leak rather than be handed out twice.
    #[cold]
    fn lose(&mut self, order: usize, addr: usize, faults: &mut FaultLog) {
        let list = &mut self.lists[order];
        faults.push(Fault::new(
            FaultKind::PageCacheDropped {
                order: order as u8,
                blocks: list.len as u32,
            },
            addr,
            list.len << order,
            self.cpu,
        ));
        self.pages -= list.len << order;
        self.lost_pages += list.len << order;
        (list.head, list.tail, list.len) = (NIL, NIL, 0);
    }

    /// Adapts the high mark of `order` at a refill: doubled if a flush came
    /// since the last refill, and kept within `page-cache-high` plus a share
    /// of `budget_pages` that the growth of this CPU's other orders leaves.
    fn note_refill(&mut self, order: usize, budget_pages: usize) {
        let base = self.base;
        let others: usize = (0..PAGE_CACHE_ORDERS)
            .filter(|&o| o != order)
            .map(|o| (self.lists[o].high - base) << o)
            .sum();
        let cap = base.saturating_add(budget_pages.saturating_sub(others) >> order);
        let list = &mut self.lists[order];
        let want = if list.flushed {
            list.high * 2
        } else {
            list.high
        };
        list.high = want.min(cap).max(base);
        list.flushed = false;
        list.used = true;
    }

    /// Whether a high mark is above the base.
    pub(crate) fn has_grown(&self) -> bool {
        self.lists.iter().any(|l| l.high > self.base)
    }

    /// Resets every high mark to the base (after a drain).
    fn reset_high(&mut self) {
        for list in &mut self.lists {
            list.high = self.base;
            list.flushed = false;
            list.used = false;
            list.quiet_calls = 0;
        }
    }

    /// Called every `calls` of the CPU's calls: halves the mark of every
    /// order whose list has not been used (no block cached or taken) for
    /// twice as many calls as its mark holds blocks (down to the base), and
    /// returns
    /// how many blocks of each order lie above their mark.
    fn decay_marks(&mut self, calls: usize) -> [usize; PAGE_CACHE_ORDERS] {
        let base = self.base;
        let mut excess = [0; PAGE_CACHE_ORDERS];
        for (order, list) in self.lists.iter_mut().enumerate() {
            if list.used {
                list.used = false;
                list.quiet_calls = 0;
            } else if list.high > base {
                list.quiet_calls += calls;
                if list.quiet_calls >= 2 * list.high {
                    list.high = (list.high / 2).max(base);
                    list.quiet_calls = 0;
                }
            }
            excess[order] = list.len.saturating_sub(list.high);
        }
        excess
    }

    /// Checks P1–P3 (walks every list); panics on a violation.
    pub(crate) fn check<'m>(&self, mut meta_of: impl MetaOf<'m>) {
        let mut pages = 0;
        for (order, list) in self.lists.iter().enumerate() {
            assert!(list.high >= self.base, "P3: order {order}");
            assert_eq!(list.len == 0, list.head == NIL, "P2: order {order} head");
            assert_eq!(list.len == 0, list.tail == NIL, "P2: order {order} tail");
            let mut cur = list.head;
            for i in 0..list.len {
                let addr = self.addr_of(cur);
                let block = self
                    .cached_at(order, cur, &mut meta_of)
                    .unwrap_or_else(|| panic!("P1: cached block {addr:#x} of order {order}"));
                assert!(addr.is_multiple_of(1 << (self.page_shift as usize + order)));
                if i + 1 == list.len {
                    assert_eq!(cur, list.tail, "P2: order {order} ends at its tail");
                } else {
                    cur = block.next();
                }
            }
            pages += list.len << order;
        }
        assert_eq!(pages, self.pages, "page count");
    }
}

/// The counters of a page cache other CPUs read.
pub(crate) struct PageCounters {
    /// Bytes on the lists (set under the buddy lock when a batch moves).
    pub(crate) cached_bytes: Counter,
    /// Bytes dropped with corrupted lists.
    pub(crate) lost_bytes: Counter,
}

impl PageCounters {
    pub(crate) const fn new() -> Self {
        Self {
            cached_bytes: Counter::new(),
            lost_bytes: Counter::new(),
        }
    }
}

/// The owner's view of its page cache: the lists, the section cache the
/// metadata lookups go through, its fault log and counters, and the buddy.
pub(crate) struct PageCpu<'a, S: PageSource> {
    pub(crate) cache: &'a mut PageCache,
    pub(crate) sections: &'a mut SectionCache,
    pub(crate) faults: &'a mut FaultLog,
    pub(crate) counters: &'a PageCounters,
    pub(crate) src: &'a S,
}

impl<S: PageSource> PageCpu<'_, S> {
    fn publish(&self) {
        self.counters
            .cached_bytes
            .set(self.cache.pages << self.cache.page_shift);
    }

    /// Hands out a block of `order`: the newest cached one, else one of a
    /// batch from the buddy (the rest is cached). A corrupted list found on
    /// the way is dropped and reported.
    pub(crate) fn alloc(&mut self, order: usize) -> Option<usize> {
        let (src, sections) = (self.src, &mut *self.sections);
        match self.cache.take::<true>(order, |a| src.meta(sections, a)) {
            Ok(Some((addr, block))) => {
                block.hand_out();
                self.publish();
                return Some(addr);
            }
            Ok(None) => {}
            Err(bad) => self.lose(order, bad),
        }
        self.refill(order)
    }

    #[cold]
    fn lose(&mut self, order: usize, addr: usize) {
        self.cache.lose(order, addr, self.faults);
        self.counters
            .lost_bytes
            .set(self.cache.lost_pages << self.cache.page_shift);
        self.publish();
    }

    /// Refills the empty list of `order` with a batch from the buddy,
    /// adapting its high mark, and hands out one block of it.
    fn refill(&mut self, order: usize) -> Option<usize> {
        let mut batch = [0usize; PAGE_CACHE_BATCH];
        let (cpu, shift, pages) = (self.cache.cpu, self.cache.page_shift, self.cache.pages);
        let cached = &self.counters.cached_bytes;
        // No more than the list may hold, plus the block handed out.
        let want = PAGE_CACHE_BATCH.min(self.cache.lists[order].high.saturating_add(1));
        let (n, total_pages) = self.src.refill(order as u32, cpu, &mut batch[..want], |n| {
            // All but the block handed out will be on the lists.
            cached.set((pages + (n.saturating_sub(1) << order)) << shift);
        });
        // This CPU's share of the growth budget: split among the CPUs whose
        // marks have grown, itself included.
        let growing = self.src.growing_cpus();
        let others = growing.load(Ordering::Relaxed) - usize::from(self.cache.counted_growing);
        self.cache
            .note_refill(order, total_pages / (PAGE_CACHE_FRACTION * (others + 1)));
        self.count_growing();
        let (&first, extra) = batch[..n].split_first()?;
        // The oldest first, so that `batch[1]` is the next block handed out.
        let mut back = [0usize; PAGE_CACHE_BATCH];
        let mut nr_back = 0;
        for &addr in extra.iter().rev() {
            let (src, sections) = (self.src, &mut *self.sections);
            let block = src.meta(sections, addr).and_then(|m| m.cached(order, cpu));
            match block {
                Some(block) if !self.cache.is_full(order) && self.cache.can_cache(addr) => {
                    let sections = &mut *self.sections;
                    self.cache
                        .push(order, addr, block.claim(), |a| src.meta(sections, a));
                }
                Some(block) => {
                    let _ = block.claim();
                    back[nr_back] = addr;
                    nr_back += 1;
                }
                None => {}
            }
        }
        if nr_back > 0 {
            self.give_back(order, &back[..nr_back]);
        }
        self.publish();
        let (src, sections) = (self.src, &mut *self.sections);
        src.meta(sections, first)?.cached(order, cpu)?.hand_out();
        Some(first)
    }

    /// Frees `blocks` of `order`, claimed, to the buddy, reporting a block
    /// it refused.
    fn give_back(&mut self, order: usize, blocks: &[usize]) {
        let (counters, pages, shift) = (self.counters, self.cache.pages, self.cache.page_shift);
        let refused = self.src.flush(order as u32, blocks, || {
            counters.cached_bytes.set(pages << shift);
        });
        if let Some(addr) = refused {
            self.faults.push(Fault::new(
                FaultKind::BuddyRefused,
                addr,
                1 << order,
                self.cache.cpu,
            ));
        }
    }

    /// Keeps the source's `growing_cpus` in step with whether this CPU's
    /// marks are above the initial one.
    fn count_growing(&mut self) {
        let grown = self.cache.has_grown();
        if grown != self.cache.counted_growing {
            self.cache.counted_growing = grown;
            let growing = self.src.growing_cpus();
            if grown {
                growing.fetch_add(1, Ordering::Relaxed);
            } else {
                growing.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Caches the claimed block at `addr` of `order` (a cacheable block:
    /// naturally aligned, `can_cache`), flushing a batch first if the list
    /// is at its mark.
    pub(crate) fn free(&mut self, order: usize, addr: usize, run: ClaimedRun<'_>) {
        if self.cache.is_full(order) {
            // Half the list at most: a mark below the batch keeps some.
            let high = self.cache.lists[order].high;
            self.flush(order, PAGE_CACHE_BATCH.min(high.div_ceil(2)));
        }
        let (src, sections) = (self.src, &mut *self.sections);
        self.cache.push(order, addr, run, |a| src.meta(sections, a));
        self.publish();
    }

    /// Returns up to `max` of the oldest cached blocks of `order` to the
    /// buddy, a batch per lock acquisition.
    pub(crate) fn flush(&mut self, order: usize, max: usize) {
        let mut left = max;
        while left > 0 {
            let mut batch = [0usize; PAGE_CACHE_BATCH];
            let mut n = 0;
            while n < left.min(PAGE_CACHE_BATCH) {
                let (src, sections) = (self.src, &mut *self.sections);
                match self.cache.take::<false>(order, |a| src.meta(sections, a)) {
                    Ok(Some((addr, block))) => {
                        let _ = block.claim();
                        batch[n] = addr;
                        n += 1;
                    }
                    Ok(None) => break,
                    Err(bad) => {
                        self.lose(order, bad);
                        break;
                    }
                }
            }
            if n == 0 {
                return;
            }
            self.cache.lists[order].flushed = true;
            self.give_back(order, &batch[..n]);
            left -= n;
        }
    }

    /// Lets growth decay, `calls` of the CPU's calls after the last time
    /// (see the module docs): marks of lists left unused for long halve,
    /// and the blocks above them go back to the buddy.
    pub(crate) fn decay(&mut self, calls: usize) {
        let excess = self.cache.decay_marks(calls);
        for (order, &n) in excess.iter().enumerate() {
            if n > 0 {
                // Not a sign the cache is too small: no growth follows.
                let flushed = self.cache.lists[order].flushed;
                self.flush(order, n);
                self.cache.lists[order].flushed = flushed;
            }
        }
        self.count_growing();
    }

    /// Returns every cached block to the buddy and resets the marks.
    pub(crate) fn drain(&mut self) {
        for order in 0..PAGE_CACHE_ORDERS {
            self.flush(order, usize::MAX);
        }
        self.cache.reset_high();
        self.count_growing();
    }

    /// Checks P1–P3.
    pub(crate) fn check(&mut self) {
        let (src, sections) = (self.src, &mut *self.sections);
        self.cache.check(|a| src.meta(sections, a));
    }
}

#[cfg(test)]
#[path = "page_cache_tests.rs"]
mod tests;
