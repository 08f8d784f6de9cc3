//! Per-page metadata, 16 bytes per managed page, kept in the region prefix.
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
    const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Free,
            2 => Self::Allocated,
            3 => Self::Slab,
            4 => Self::SlabTail,
            5 => Self::Cached,
            _ => Self::Tail,
        }
    }
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
    /// `kind | order << 8`.
    state: AtomicU32,
    /// `Allocated`: the run's page count.
    run_pages: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<PageMeta>() == 16);

impl PageMeta {
    #[inline]
    pub(crate) fn kind(&self) -> PageKind {
        PageKind::from_u8(self.state.load(Relaxed) as u8)
    }

    #[inline]
    pub(crate) fn order(&self) -> u32 {
        (self.state.load(Relaxed) >> 8) & 0xff
    }

    #[inline]
    pub(crate) fn set(&self, kind: PageKind, order: u32) {
        self.state.store(kind as u32 | (order << 8), Relaxed);
    }

    #[inline]
    pub(crate) fn is(&self, kind: PageKind, order: u32) -> bool {
        self.state.load(Relaxed) == kind as u32 | (order << 8)
    }

    /// Atomically changes the state from `from` to `to` (order 0); false if
    /// it was not `from`. Lets one of two racing frees win.
    #[inline]
    pub(crate) fn transition(&self, from: PageKind, to: PageKind) -> bool {
        self.state
            .compare_exchange(from as u32, to as u32, Relaxed, Relaxed)
            .is_ok()
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
        self.run_pages.load(Relaxed)
    }

    #[inline]
    pub(crate) fn set_run_pages(&self, v: u32) {
        self.run_pages.store(v, Relaxed);
    }
}

impl PageMeta {
    pub(crate) const fn new_tail() -> Self {
        Self {
            next: AtomicU32::new(NIL),
            prev: AtomicU32::new(NIL),
            state: AtomicU32::new(PageKind::Tail as u32),
            run_pages: AtomicU32::new(0),
        }
    }
}
