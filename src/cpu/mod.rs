//! CPU-local state: each CPU's slab caches, page cache and remote-free
//! inbox.
//!
//! A slot is touched without locks by the one context that has pinned its
//! CPU (the `Platform` guarantees exclusivity); other CPUs only push to its
//! `pending` stack and read its counters.

mod page_cache;

pub(crate) use page_cache::PageCache;

use crate::buddy::SectionRef;
use crate::slab::SlabAllocator;
use crate::slab::header::PendingSlabs;
use crate::stats::Counter;
use core::cell::UnsafeCell;

/// What only the owning CPU touches.
pub(crate) struct CpuLocal<const PAGE_SIZE: usize> {
    pub(crate) slab: SlabAllocator<PAGE_SIZE>,
    pub(crate) pages: PageCache,
    /// The section of the last address this CPU freed: published sections
    /// never change, so a copy stays valid and spares the shared lookup.
    pub(crate) section: SectionRef,
    /// The facade's reclaim epoch this CPU last honoured.
    pub(crate) seen_reclaim: usize,
}

/// One CPU's slot, on its own cache lines.
#[repr(align(64))]
pub(crate) struct CpuSlot<const PAGE_SIZE: usize> {
    local: UnsafeCell<CpuLocal<PAGE_SIZE>>,
    /// Slabs of this CPU that other CPUs freed objects into.
    pub(crate) pending: PendingSlabs,
    /// Remote frees this CPU sent to other CPUs' slabs.
    pub(crate) remote_frees_sent: Counter,
    /// Bytes in this CPU's page cache.
    pub(crate) cached_page_bytes: Counter,
    /// Bytes its page cache dropped with corrupted lists (published on the
    /// slow paths that can find out).
    pub(crate) page_cache_lost_bytes: Counter,
}

impl<const PAGE_SIZE: usize> CpuSlot<PAGE_SIZE> {
    /// Slot of CPU `cpu`; `first_pfn` is a page frame of managed memory
    /// (the page cache's links are relative to it).
    pub(crate) fn new(cpu: usize, first_pfn: usize) -> Self {
        Self {
            local: UnsafeCell::new(CpuLocal {
                slab: SlabAllocator::with_table(SlabAllocator::<PAGE_SIZE>::default_table(), cpu),
                pages: PageCache::new(first_pfn, PAGE_SIZE.trailing_zeros()),
                section: SectionRef::EMPTY,
                seen_reclaim: 0,
            }),
            pending: PendingSlabs::new(),
            remote_frees_sent: Counter::new(),
            cached_page_bytes: Counter::new(),
            page_cache_lost_bytes: Counter::new(),
        }
    }

    /// The CPU-local state.
    ///
    /// # Safety
    /// The caller is the slot's owner: it holds the platform pin for this
    /// CPU id (or the shared-slot lock for the shared slot), and does not
    /// call this again while the returned reference lives.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn local(&self) -> &mut CpuLocal<PAGE_SIZE> {
        // SAFETY: caller contract: exclusive owner of the slot.
        unsafe { &mut *self.local.get() }
    }

    /// Slab statistics readable from any CPU.
    ///
    /// Reads only the slab allocator's atomic counters.
    pub(crate) fn slab_stats(&self) -> crate::slab::SlabStats {
        // SAFETY: reads go through `&SlabAllocator` to atomic counters only;
        // the owner never writes the fields read here non-atomically.
        unsafe { (*self.local.get()).slab.stats() }
    }

    pub(crate) fn class_stats(&self, class: crate::slab::SizeClass) -> crate::slab::ClassStats {
        // SAFETY: as in `slab_stats`.
        unsafe { (*self.local.get()).slab.class_stats(class) }
    }
}
