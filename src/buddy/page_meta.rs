//! Per-page metadata, 12 bytes per managed page, kept in the region prefix.
//!
//! Fields are atomics accessed with `Relaxed` ordering: the buddy writes them
//! under its lock, while the facade's lock-free free path reads the state of
//! slab pages. On every supported target a relaxed load or store compiles to
//! a plain move, so the buddy pays nothing for it.

use crate::sync::{AtomicU32, Ordering::Relaxed};

/// Null link in a free list.
pub(crate) const NIL: u32 = u32::MAX;

/// What a page is, recorded in [`PageMeta::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PageKind {
    /// Inside a block or run whose head is another page (B2).
    Tail = 0,
    /// Head of a free block of `order` pages, linked in its free list.
    Free = 1,
    /// Head of an allocated run of `run_pages` pages.
    Allocated = 2,
    /// First page of a slab of `order`.
    Slab = 3,
    /// Other page of a slab of `order`; its head is the page index aligned
    /// down to `1 << order`.
    SlabTail = 4,
    /// Head of an allocated run that the facade has claimed for freeing or
    /// holds in a per-CPU page cache.
    Cached = 5,
}

impl PageKind {
    const fn from_bits(v: u32) -> Self {
        match v & KIND_MASK {
            1 => Self::Free,
            2 => Self::Allocated,
            3 => Self::Slab,
            4 => Self::SlabTail,
            5 => Self::Cached,
            _ => Self::Tail,
        }
    }
}

/// `state` layout: kind in bits 0..3, order in bits 3..8, run pages in bits
/// 8..32. One word instead of two keeps `PageMeta` at 12 bytes.
const KIND_MASK: u32 = 0b111;
const ORDER_SHIFT: u32 = 3;
const RUN_SHIFT: u32 = 8;
/// Low byte of `state`: kind and order.
const KIND_ORDER_MASK: u32 = (1 << RUN_SHIFT) - 1;
/// Longest run a head can record, in pages (16 Mi pages: 64 GiB with 4 KiB
/// pages). Longer requests are refused as `InvalidParam`.
pub const MAX_RUN_PAGES: usize = (1 << (32 - RUN_SHIFT)) - 1;

const _: () = assert!(
    (1usize << crate::config::MAX_ORDER) <= MAX_RUN_PAGES,
    "a max-order block must be recordable as a run (max-order <= 23)"
);

const fn kind_order(kind: PageKind, order: u32) -> u32 {
    kind as u32 | order << ORDER_SHIFT
}

/// Metadata of one managed page.
///
/// Invariants (checked by `BuddyAllocator::check_invariants`):
/// - B1: a page is `Free` iff it heads a block on the free list of its
///   section for `order`; that block is `1 << order` pages, aligned to
///   `1 << order` by absolute page frame number and wholly in the section.
/// - B2: every page of a free block or allocated run other than its head is
///   `Tail`.
/// - B3: `Allocated` heads record `run_pages` = the page count handed out.
/// - B4: the pages of a slab of order `k` are one `Slab` head followed by
///   `(1 << k) - 1` `SlabTail` pages, all recording `order = k`.
#[repr(C)]
pub(crate) struct PageMeta {
    /// Next block in the free list (section page index) or [`NIL`].
    next: AtomicU32,
    /// Previous block in the free list or [`NIL`].
    prev: AtomicU32,
    /// `kind | order << 3 | run_pages << 8`; `run_pages` is meaningful
    /// for `Allocated` and `Cached` heads (the run's page count), stale
    /// elsewhere. Writers keep the part they do not set: the buddy under
    /// its lock, the facade only on runs it has claimed (`claim_run`).
    state: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<PageMeta>() == 12);

impl PageMeta {
    #[inline]
    pub(crate) fn kind(&self) -> PageKind {
        PageKind::from_bits(self.state.load(Relaxed))
    }

    #[inline]
    pub(crate) fn order(&self) -> u32 {
        (self.state.load(Relaxed) & KIND_ORDER_MASK) >> ORDER_SHIFT
    }

    /// Sets kind and order; the run length stays. A load and a store: only
    /// for pages no other CPU can claim (every kind but `Allocated`,
    /// or an `Allocated` run the caller owns and nobody else knows).
    #[inline]
    pub(crate) fn set(&self, kind: PageKind, order: u32) {
        debug_assert!(order <= crate::config::MAX_ORDER as u32);
        let run = self.state.load(Relaxed) & !KIND_ORDER_MASK;
        self.state.store(run | kind_order(kind, order), Relaxed);
    }

    #[inline]
    pub(crate) fn is(&self, kind: PageKind, order: u32) -> bool {
        self.state.load(Relaxed) & KIND_ORDER_MASK == kind_order(kind, order)
    }

    /// Claims the `Allocated` run of `run_pages` pages this page heads:
    /// one compare-and-swap to `Cached` checks kind and length together, so
    /// exactly one of two racing frees of the run wins, and a free with the
    /// wrong length changes nothing.
    #[inline]
    pub(crate) fn claim_run(&self, run_pages: usize) -> bool {
        run_pages <= MAX_RUN_PAGES && {
            let run = (run_pages as u32) << RUN_SHIFT;
            self.state
                .compare_exchange(
                    kind_order(PageKind::Allocated, 0) | run,
                    kind_order(PageKind::Cached, 0) | run,
                    Relaxed,
                    Relaxed,
                )
                .is_ok()
        }
    }

    #[inline]
    pub(crate) fn next(&self) -> u32 {
        self.next.load(Relaxed)
    }

    #[inline]
    pub(crate) fn prev(&self) -> u32 {
        self.prev.load(Relaxed)
    }

    #[inline]
    pub(crate) fn set_next(&self, v: u32) {
        self.next.store(v, Relaxed);
    }

    #[inline]
    pub(crate) fn set_prev(&self, v: u32) {
        self.prev.store(v, Relaxed);
    }

    #[inline]
    pub(crate) fn run_pages(&self) -> u32 {
        self.state.load(Relaxed) >> RUN_SHIFT
    }

    /// Makes this page the head of a run of `run_pages` pages of `kind`
    /// (order 0), in one store: for runs just taken off the free lists,
    /// which no other CPU can be claiming.
    #[inline]
    pub(crate) fn set_run(&self, kind: PageKind, run_pages: u32) {
        debug_assert!(run_pages as usize <= MAX_RUN_PAGES);
        self.state
            .store(kind_order(kind, 0) | run_pages << RUN_SHIFT, Relaxed);
    }

    /// Changes the run length of a live run (at most [`MAX_RUN_PAGES`]:
    /// callers refuse longer runs), atomically with respect to a racing
    /// `claim_run`, whose kind change it keeps.
    #[inline]
    pub(crate) fn set_run_pages(&self, run_pages: u32) {
        debug_assert!(run_pages as usize <= MAX_RUN_PAGES);
        let _ = self.state.fetch_update(Relaxed, Relaxed, |s| {
            Some(s & KIND_ORDER_MASK | run_pages << RUN_SHIFT)
        });
    }
}

impl PageMeta {
    pub(crate) const fn new_tail() -> Self {
        Self {
            next: AtomicU32::new(NIL),
            prev: AtomicU32::new(NIL),
            state: AtomicU32::new(PageKind::Tail as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kind, order and run length share one word: each setter keeps the
    /// parts it does not set, and a claim checks and keeps the run length.
    #[test]
    fn packed_state_keeps_what_it_does_not_set() {
        let m = PageMeta::new_tail();
        m.set_run(PageKind::Allocated, MAX_RUN_PAGES as u32);
        assert_eq!(
            (m.kind(), m.order(), m.run_pages()),
            (PageKind::Allocated, 0, MAX_RUN_PAGES as u32)
        );
        assert!(
            !m.claim_run(MAX_RUN_PAGES - 1),
            "a wrong length claims nothing"
        );
        assert!(m.claim_run(MAX_RUN_PAGES));
        assert!(!m.claim_run(MAX_RUN_PAGES), "one claim wins");
        assert_eq!(
            (m.kind(), m.run_pages()),
            (PageKind::Cached, MAX_RUN_PAGES as u32)
        );
        m.set_run_pages(3);
        assert_eq!((m.kind(), m.run_pages()), (PageKind::Cached, 3));
        m.set(PageKind::Slab, crate::config::MAX_ORDER as u32);
        assert!(m.is(PageKind::Slab, crate::config::MAX_ORDER as u32));
        assert_eq!(
            (m.order(), m.run_pages()),
            (crate::config::MAX_ORDER as u32, 3)
        );
        for kind in [
            PageKind::Tail,
            PageKind::Free,
            PageKind::SlabTail,
            PageKind::Cached,
        ] {
            m.set(kind, 5);
            assert_eq!((m.kind(), m.order()), (kind, 5));
        }
    }
}
