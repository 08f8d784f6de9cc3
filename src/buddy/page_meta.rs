//! Per-page metadata, 12 bytes per managed page, kept in the region prefix,
//! and every transition of a page's state.
//!
//! The state word is written only through the transitions below: the
//! buddy's (free maps, runs, slab tags) under its lock, and the typed
//! ones the facade and the CPU caches use without it, each of which either
//! wins a compare-and-swap or acts on a page that only its caller may
//! change (a [`ClaimedRun`], a [`CachedBlock`], its own slab's head). So
//! the buddy's tag invariants (B1–B4, P1) are kept in this file.
//!
//! Fields are atomics: the lock-free paths read the state of pages other
//! CPUs may be changing. On every supported target a relaxed load or store
//! compiles to a plain move, so the buddy pays nothing for it.

use crate::sync::{AtomicU32, Ordering};

/// Null link in a page-cache list.
pub(crate) const NIL: u32 = u32::MAX;

/// What a page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PageKind {
    /// Inside a block or run whose head is another page (B2).
    Tail = 0,
    /// Head of a free block of `order` pages, marked in its section's free
    /// map.
    Free = 1,
    /// Head of an allocated run of `high` pages.
    Allocated = 2,
    /// Head of a live slab of `order`, owned by CPU `high`.
    Slab = 3,
    /// Other page of a slab of `order` owned by CPU `high`; its head is the
    /// page index aligned down to `1 << order`.
    SlabTail = 4,
    /// Head of a block of `order` in CPU `high`'s page cache.
    Cached = 5,
    /// Head of a run of `high` pages that one context has claimed: a free,
    /// a resize or a flush in progress. Only the claimer changes it.
    Claimed = 6,
    /// Head of a slab of `order` owned by CPU `high` that is not live: its
    /// header is being written, or it is being released. Remote frees
    /// refuse it (see `cpu::hazard`).
    SlabDead = 7,
}

impl PageKind {
    const fn from_bits(v: u32) -> Self {
        match v & KIND_MASK {
            0 => Self::Tail,
            1 => Self::Free,
            2 => Self::Allocated,
            3 => Self::Slab,
            4 => Self::SlabTail,
            5 => Self::Cached,
            6 => Self::Claimed,
            _ => Self::SlabDead,
        }
    }
}

/// `state` layout: kind in bits 0..3, order in bits 3..8, `high` in bits
/// 8..32 (a run's page count, or the owning CPU). One word keeps
/// `PageMeta` at 12 bytes.
const KIND_MASK: u32 = 0b111;
const ORDER_SHIFT: u32 = 3;
const HIGH_SHIFT: u32 = 8;
/// Low byte of `state`: kind and order.
const KIND_ORDER_MASK: u32 = (1 << HIGH_SHIFT) - 1;
/// Longest run a head can record, in pages (16 Mi pages: 64 GiB with 4 KiB
/// pages). Longer requests are refused as `InvalidParam`.
pub const MAX_RUN_PAGES: usize = (1 << (32 - HIGH_SHIFT)) - 1;
/// Most CPU slots a page can name as its owner.
pub(crate) const MAX_OWNER_CPUS: usize = MAX_RUN_PAGES;

const _: () = assert!(
    (1usize << crate::config::MAX_ORDER) <= MAX_RUN_PAGES,
    "a max-order block must be recordable as a run (max-order <= 23)"
);

const fn state(kind: PageKind, order: u32, high: u32) -> u32 {
    kind as u32 | order << ORDER_SHIFT | high << HIGH_SHIFT
}

/// Metadata of one managed page.
///
/// Invariants (checked by `BuddyAllocator::check_invariants`):
/// - B1: a page is `Free` iff it heads a block marked in the free map of
///   its section for `order` (F1); that block is `1 << order` pages, aligned to
///   `1 << order` by absolute page frame number and wholly in the section.
/// - B2: every page of a free block, allocated, cached or claimed run other
///   than its head is `Tail`.
/// - B3: `Allocated` and `Claimed` heads record the run's page count.
/// - B4: the pages of a slab of order `k` owned by CPU `c` are one `Slab`
///   or `SlabDead` head followed by `(1 << k) - 1` `SlabTail` pages, all
///   recording order `k` and owner `c`.
/// - B10: `next`/`prev` link `Cached` heads in their CPU's page-cache list
///   (P2); elsewhere they are stale.
#[repr(C)]
pub(crate) struct PageMeta {
    next: AtomicU32,
    prev: AtomicU32,
    /// `kind | order << 3 | high << 8`.
    state: AtomicU32,
}

// loom's atomics are larger than the real ones.
#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<PageMeta>() == 12);

impl PageMeta {
    #[cfg(not(loom))]
    pub(crate) const fn new_tail() -> Self {
        Self {
            next: AtomicU32::new(NIL),
            prev: AtomicU32::new(NIL),
            state: AtomicU32::new(PageKind::Tail as u32),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new_tail() -> Self {
        Self {
            next: AtomicU32::new(NIL),
            prev: AtomicU32::new(NIL),
            state: AtomicU32::new(PageKind::Tail as u32),
        }
    }

    /// For the loom model: the head of a live slab of `order` owned by
    /// `owner`.
    #[cfg(loom)]
    pub(crate) fn new_live_slab_head(order: u32, owner: usize) -> Self {
        let m = Self::new_tail();
        m.tag_slab_head(order, owner);
        m.mark_slab_live(order, owner);
        m
    }

    // --- reading ------------------------------------------------------

    #[inline]
    fn load(&self) -> u32 {
        self.state.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn kind(&self) -> PageKind {
        PageKind::from_bits(self.load())
    }

    #[cfg(test)]
    pub(crate) fn order(&self) -> u32 {
        (self.load() & KIND_ORDER_MASK) >> ORDER_SHIFT
    }

    /// The run length of an `Allocated` or `Claimed` head; the owner of a
    /// slab page or a cached block.
    #[cfg(test)]
    pub(crate) fn high(&self) -> u32 {
        self.load() >> HIGH_SHIFT
    }

    /// For a page of a slab (`Slab`, `SlabTail`, `SlabDead`): its order and
    /// owner CPU.
    #[inline]
    pub(crate) fn slab_page(&self) -> Option<(u32, usize)> {
        let s = self.load();
        matches!(
            PageKind::from_bits(s),
            PageKind::Slab | PageKind::SlabTail | PageKind::SlabDead
        )
        .then_some((
            (s & KIND_ORDER_MASK) >> ORDER_SHIFT,
            (s >> HIGH_SHIFT) as usize,
        ))
    }

    /// Whether this head is a live slab of `order` owned by `owner`.
    /// Acquire: pairs with [`Self::mark_slab_live`], so a context that sees
    /// it live sees the slab's header written.
    #[inline]
    pub(crate) fn is_live_slab(&self, order: u32, owner: usize) -> bool {
        self.state.load(Ordering::Acquire) == state(PageKind::Slab, order, owner as u32)
    }

    #[inline]
    pub(super) fn is_free(&self, order: u32) -> bool {
        self.load() & KIND_ORDER_MASK == state(PageKind::Free, order, 0)
    }

    /// Whether this is a head of a run of `pages` of `kind` (`Allocated`
    /// or `Claimed`).
    #[inline]
    pub(super) fn is_run(&self, kind: PageKind, pages: usize) -> bool {
        pages <= MAX_RUN_PAGES && self.load() == state(kind, 0, pages as u32)
    }

    #[inline]
    pub(super) fn next(&self) -> u32 {
        self.next.load(Ordering::Relaxed)
    }

    #[inline]
    pub(super) fn prev(&self) -> u32 {
        self.prev.load(Ordering::Relaxed)
    }

    // --- the buddy's transitions (under its lock) ---------------------

    /// For tests of the page cache: makes this page the head of an
    /// allocated run of `pages`.
    #[cfg(test)]
    pub(crate) fn test_start_run(&self, pages: u32) {
        self.start_run(pages);
    }

    #[inline]
    pub(super) fn set_next(&self, v: u32) {
        self.next.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn set_prev(&self, v: u32) {
        self.prev.store(v, Ordering::Relaxed);
    }

    /// Any page the buddy has taken back, or a page inside a block.
    #[inline]
    pub(super) fn make_tail(&self) {
        self.state.store(PageKind::Tail as u32, Ordering::Relaxed);
    }

    /// Head of a free block of `order` (B1; the caller links it).
    #[inline]
    pub(super) fn make_free(&self, order: u32) {
        debug_assert!(order <= crate::config::MAX_ORDER as u32);
        self.state
            .store(state(PageKind::Free, order, 0), Ordering::Relaxed);
    }

    /// Head of a run of `pages` just taken off the free maps, which no
    /// other CPU can be claiming (B3).
    #[inline]
    pub(super) fn start_run(&self, pages: u32) {
        debug_assert!(pages as usize <= MAX_RUN_PAGES);
        self.state
            .store(state(PageKind::Allocated, 0, pages), Ordering::Relaxed);
    }

    /// Head of a block of `order` handed to CPU `cpu`'s page cache (P1).
    #[inline]
    pub(super) fn start_cached(&self, order: u32, cpu: usize) {
        debug_assert!(cpu <= MAX_OWNER_CPUS);
        self.state.store(
            state(PageKind::Cached, order, cpu as u32),
            Ordering::Relaxed,
        );
    }

    /// Head of a slab of `order` for CPU `owner`, not live yet (B4): the
    /// owner writes the header, then [`Self::mark_slab_live`].
    #[inline]
    pub(super) fn tag_slab_head(&self, order: u32, owner: usize) {
        self.state.store(
            state(PageKind::SlabDead, order, owner as u32),
            Ordering::Relaxed,
        );
    }

    /// Non-head page of a slab of `order` owned by `owner` (B4).
    #[inline]
    pub(super) fn tag_slab_tail(&self, order: u32, owner: usize) {
        self.state.store(
            state(PageKind::SlabTail, order, owner as u32),
            Ordering::Relaxed,
        );
    }

    /// Whether this is the head of a slab of `order` owned by `owner` that
    /// is not live (as the buddy takes it back).
    #[inline]
    pub(super) fn is_dead_slab(&self, order: u32, owner: usize) -> bool {
        self.load() == state(PageKind::SlabDead, order, owner as u32)
    }

    /// Changes the length of a live run (at most [`MAX_RUN_PAGES`]: callers
    /// refuse longer runs), keeping its kind: atomic with respect to a
    /// racing [`Self::claim_run`].
    #[inline]
    pub(super) fn set_run_pages(&self, pages: u32) {
        debug_assert!(pages as usize <= MAX_RUN_PAGES);
        self.state
            .update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                s & KIND_ORDER_MASK | pages << HIGH_SHIFT
            });
    }

    // --- transitions without the lock -----------------------------------

    /// Claims the `Allocated` run of `pages` pages this page heads: one
    /// compare-and-swap to `Claimed` checks kind and length together, so
    /// exactly one of two racing frees of the run wins, and a free with
    /// the wrong length changes nothing.
    #[inline]
    pub(crate) fn claim_run(&self, pages: usize) -> Option<ClaimedRun<'_>> {
        if pages > MAX_RUN_PAGES {
            return None;
        }
        let run = pages as u32;
        self.state
            .compare_exchange(
                state(PageKind::Allocated, 0, run),
                state(PageKind::Claimed, 0, run),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| ClaimedRun {
                meta: self,
                pages: run,
            })
    }

    /// This head as a cached block of `order` in CPU `cpu`'s page cache,
    /// if it is one (P1): one load and one compare. Only CPU `cpu` changes
    /// such a block, so of two CPUs whose lists name it (a corrupted link)
    /// only its owner can take it.
    #[inline]
    pub(crate) fn cached(&self, order: usize, cpu: usize) -> Option<CachedBlock<'_>> {
        (self.load() == state(PageKind::Cached, order as u32, cpu as u32)).then_some(CachedBlock {
            meta: self,
            order: order as u32,
        })
    }

    /// The owner of a slab makes its header visible: `SlabDead` → `Slab`.
    /// Release: pairs with [`Self::is_live_slab`].
    #[inline]
    pub(crate) fn mark_slab_live(&self, order: u32, owner: usize) {
        debug_assert!(self.is_dead_slab(order, owner));
        self.state.store(
            state(PageKind::Slab, order, owner as u32),
            Ordering::Release,
        );
    }

    /// The owner of a live slab starts releasing it: `Slab` → `SlabDead`,
    /// so a remote free that checks it afterwards refuses the slab.
    #[inline]
    pub(crate) fn mark_slab_dead(&self, order: u32, owner: usize) {
        debug_assert!(self.is_live_slab(order, owner));
        self.state.store(
            state(PageKind::SlabDead, order, owner as u32),
            Ordering::Relaxed,
        );
    }
}

/// A run this context has claimed (`Claimed`): nobody else changes its
/// state until it is given up through one of the methods below or handed
/// to the buddy.
#[must_use = "a claimed run is lost unless it is cached, unclaimed or freed"]
pub(crate) struct ClaimedRun<'m> {
    meta: &'m PageMeta,
    pages: u32,
}

impl<'m> ClaimedRun<'m> {
    /// Its length in pages.
    #[inline]
    pub(crate) fn pages(&self) -> usize {
        self.pages as usize
    }

    #[inline]
    pub(super) fn meta(&self) -> &'m PageMeta {
        self.meta
    }

    /// The run changed length under its claim (a resize).
    #[inline]
    pub(super) fn resized(self, pages: u32) -> Self {
        debug_assert!(pages as usize <= MAX_RUN_PAGES);
        self.meta
            .state
            .store(state(PageKind::Claimed, 0, pages), Ordering::Relaxed);
        Self {
            meta: self.meta,
            pages,
        }
    }

    /// Gives the run back to its user: `Allocated` again.
    #[inline]
    pub(crate) fn unclaim(self) {
        self.meta
            .state
            .store(state(PageKind::Allocated, 0, self.pages), Ordering::Relaxed);
    }

    /// Puts the run, a block of `order` pages, in CPU `cpu`'s page cache.
    #[inline]
    pub(crate) fn into_cached(self, order: usize, cpu: usize) -> CachedBlock<'m> {
        debug_assert_eq!(self.pages, 1 << order);
        self.meta.start_cached(order as u32, cpu);
        CachedBlock {
            meta: self.meta,
            order: order as u32,
        }
    }
}

/// A block in CPU `cpu`'s page cache, checked to be tagged so (P1). Only
/// that CPU holds such handles.
pub(crate) struct CachedBlock<'m> {
    meta: &'m PageMeta,
    order: u32,
}

impl<'m> CachedBlock<'m> {
    /// The next (older) block's link in its list.
    #[inline]
    pub(crate) fn next(&self) -> u32 {
        self.meta.next()
    }

    /// The previous (newer) block's link in its list.
    #[inline]
    pub(crate) fn prev(&self) -> u32 {
        self.meta.prev()
    }

    #[inline]
    pub(crate) fn set_next(&self, link: u32) {
        self.meta.set_next(link);
    }

    #[inline]
    pub(crate) fn set_prev(&self, link: u32) {
        self.meta.set_prev(link);
    }

    /// Hands the block out to a user: `Allocated`, a run of `1 << order`.
    #[inline]
    pub(crate) fn hand_out(self) {
        self.meta.state.store(
            state(PageKind::Allocated, 0, 1 << self.order),
            Ordering::Relaxed,
        );
    }

    /// Takes the block off the cache for the buddy: `Claimed`, so a stale
    /// link to it finds it gone.
    #[inline]
    pub(crate) fn claim(self) -> ClaimedRun<'m> {
        let pages = 1 << self.order;
        self.meta
            .state
            .store(state(PageKind::Claimed, 0, pages), Ordering::Relaxed);
        ClaimedRun {
            meta: self.meta,
            pages,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Kind, order and `high` share one word: each transition writes the
    /// state it names, a claim checks kind and length together, and only
    /// the CPU a cached block is tagged for can take it.
    #[test]
    fn transitions_write_what_they_name() {
        let m = PageMeta::new_tail();
        m.start_run(MAX_RUN_PAGES as u32);
        assert_eq!(
            (m.kind(), m.order(), m.high()),
            (PageKind::Allocated, 0, MAX_RUN_PAGES as u32)
        );
        assert!(m.claim_run(MAX_RUN_PAGES - 1).is_none(), "wrong length");
        let claimed = m.claim_run(MAX_RUN_PAGES).unwrap();
        assert!(m.claim_run(MAX_RUN_PAGES).is_none(), "one claim wins");
        assert_eq!(m.kind(), PageKind::Claimed);
        claimed.unclaim();
        assert!(m.is_run(PageKind::Allocated, MAX_RUN_PAGES));

        m.start_run(4);
        let block = m.claim_run(4).unwrap().into_cached(2, 7);
        assert!(m.cached(2, 6).is_none(), "another CPU's block");
        assert!(m.cached(1, 7).is_none(), "another order");
        assert_eq!((m.kind(), m.order(), m.high()), (PageKind::Cached, 2, 7));
        block.set_next(5);
        assert_eq!(m.cached(2, 7).unwrap().next(), 5);
        m.cached(2, 7).unwrap().hand_out();
        assert!(m.is_run(PageKind::Allocated, 4));
        let claimed = m.claim_run(4).unwrap().into_cached(2, 7).claim();
        assert_eq!(claimed.pages(), 4);
        assert!(m.is_run(PageKind::Claimed, 4));
        assert!(m.cached(2, 7).is_none(), "a flushed block is not cached");

        m.tag_slab_head(3, 9);
        assert_eq!(m.slab_page(), Some((3, 9)));
        assert!(!m.is_live_slab(3, 9));
        m.mark_slab_live(3, 9);
        assert!(m.is_live_slab(3, 9) && !m.is_live_slab(3, 8));
        m.mark_slab_dead(3, 9);
        assert!(m.is_dead_slab(3, 9));
        m.tag_slab_tail(3, MAX_OWNER_CPUS);
        assert_eq!(m.slab_page(), Some((3, MAX_OWNER_CPUS)));
        m.make_free(crate::config::MAX_ORDER as u32);
        assert!(m.is_free(crate::config::MAX_ORDER as u32));
    }
}
