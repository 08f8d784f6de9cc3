//! Slab allocator for objects up to 2048 bytes.
//!
//! Each size class keeps one *active* slab whose free list serves
//! allocations, a *partial* queue of slabs with free objects, and an *empty*
//! list of wholly free slabs (up to the CPU's idle budget in bytes,
//! `cpu.idle-budget`; further ones are handed back as
//! [`SlabDeallocResult::FreeSlab`]). Full slabs are
//! on no list. An object finds its slab header by arithmetic: slabs are
//! naturally aligned blocks and the header sits at their end.
//!
//! `SlabAllocator` never locks, never allocates pages itself and never
//! logs: when a class has no free object it answers
//! [`SlabAllocResult::NeedsSlab`] and the caller feeds it a block with
//! [`SlabAllocator::add_slab`]; faults it finds are recorded
//! ([`SlabAllocator::take_faults`]).
//!
//! # State split
//! A CPU's slab state is in two parts: `SlabCaches`, the lists only the
//! owner touches (through `&mut`), and `SlabCounters`, atomics written by
//! the owner and read by anyone for statistics. The facade keeps the first
//! in the CPU slot's owner-only cell and the second beside it, so a reader
//! on another CPU never forms a reference to the owner's state; the logic
//! runs on `SlabCpu`, which borrows both (and the slot's fault log).
//! The standalone [`SlabAllocator`] owns one of each.

mod allocator;
mod caches;
mod counters;
mod debug;
pub(crate) mod header;
mod list;
mod size_class;

pub use allocator::SlabAllocator;
pub(crate) use caches::{FastAlloc, ReleasedSlab, SlabCaches, SlabCpu};
pub(crate) use counters::SlabCounters;
pub use size_class::{MAX_CLASSES, MAX_OBJECT_BYTES, MAX_OBJECTS, SizeClass, SizeClassTable};

use core::ptr::NonNull;

/// Result of [`SlabAllocator::alloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlabAllocResult {
    /// An object of at least the requested size and alignment.
    Allocated(NonNull<u8>),
    /// The class has no free object: add a slab of `pages` pages, aligned to
    /// its size, for `size_class` and retry.
    NeedsSlab {
        /// Class that needs a slab.
        size_class: SizeClass,
        /// Slab size in pages (a power of two).
        pages: usize,
    },
}

/// Result of [`SlabAllocator::dealloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlabDeallocResult {
    /// The object is back on its slab's free list (or the free was rejected
    /// and recorded; see [`SlabStats::invalid_frees`]).
    Done,
    /// The free emptied a slab beyond the idle budget: return
    /// `pages` pages at `base` to the page allocator.
    FreeSlab {
        /// Slab address.
        base: usize,
        /// Slab size in pages.
        pages: usize,
    },
}

/// Per-class statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Object size, bytes.
    pub object_bytes: usize,
    /// Slabs held (active, partial, full and empty).
    pub slabs: usize,
    /// Wholly free slabs kept.
    pub empty_slabs: usize,
    /// Objects handed out and not freed (remote frees count once absorbed).
    pub live_objects: usize,
}

/// Statistics of one `SlabAllocator`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlabStats {
    /// Slabs held.
    pub slabs: usize,
    /// Bytes of slab memory held.
    pub slab_bytes: usize,
    /// Bytes of slabs without a live object (kept for reuse, within the
    /// idle budget).
    pub empty_bytes: usize,
    /// Objects live.
    pub live_objects: usize,
    /// Frees rejected: double, foreign, interior pointer, wrong class.
    pub invalid_frees: usize,
    /// Debug checks: free objects found written to (use after free).
    pub poison_faults: usize,
    /// Debug checks: objects found written past their requested size when
    /// freed (overflow or wrong layout).
    pub red_zone_faults: usize,
}
