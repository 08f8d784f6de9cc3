//! CPU-local state: each CPU's slab caches, page cache, remote-free inbox
//! and hazard.
//!
//! A slot's local state is touched without locks by the one context that
//! owns the slot (O1); other CPUs only push to its `pending` stack and read
//! its counters. Each slot's hazard (H1) lives in an array of its
//! allocator's, beside the slots.

pub(crate) mod handoff;
pub(crate) mod hazard;
mod page_cache;

pub(crate) use hazard::{Hazard, ReleaseSync};
pub(crate) use page_cache::{PageCache, PageCounters, PageCpu, PageSource};

use crate::buddy::SectionCache;
use crate::config::cpu::DECAY_CALLS;
use crate::fault::FaultLog;
use crate::slab::header::PendingSlabs;
use crate::slab::{SizeClassTable, SlabCaches, SlabCounters, SlabCpu};
use crate::stats::Counter;
use crate::sync::{AtomicBool, Ordering};
use core::cell::UnsafeCell;

/// What only the slot's owner touches (O1).
pub(crate) struct CpuLocal<const PAGE_SIZE: usize> {
    pub(crate) slab: SlabCaches<PAGE_SIZE>,
    pub(crate) pages: PageCache,
    /// The section of the last address this CPU looked up.
    pub(crate) sections: SectionCache,
    /// Faults found while the slot was held, reported after it is left.
    pub(crate) faults: FaultLog,
    /// The facade's reclaim epoch this CPU last honoured.
    pub(crate) seen_reclaim: usize,
    /// Slow paths left before the page cache's next decay.
    pub(crate) slow_calls_left: u32,
}

/// Counters of one slot, written by its owner, read by anyone.
pub(crate) struct SlotCounters {
    pub(crate) slab: SlabCounters,
    pub(crate) pages: PageCounters,
    /// Remote frees this CPU sent to other CPUs' slabs.
    pub(crate) remote_frees_sent: Counter,
}

/// One CPU's slot.
///
/// O1 (slot ownership): at any time at most one `&mut CpuLocal` of a slot
/// exists, made only by [`CpuSlot::enter`] or [`CpuSlot::peek`] and living
/// as long as the [`SlotRef`] it returns. Both are called only by a context
/// that owns the slot: it holds the platform pin for the slot's CPU id, or
/// the shared-slot lock for the shared slot, or `&mut` to the whole
/// allocator, or the platform's promise that the slot is idle. Both refuse
/// while `busy` is set. `enter` sets `busy` until its `SlotRef` drops, so a
/// context that re-enters the allocator on the same CPU while the slot is
/// in use (platform code called from a slow path) gets no second
/// reference: it is served by the shared slot. `peek`, for the fast paths,
/// leaves `busy` clear: its caller runs no code that could re-enter the
/// allocator (no platform call, no callback) while its `SlotRef` lives,
/// and with interrupts masked by the pin, nothing else runs on the CPU.
/// Nothing the allocator runs while a `SlotRef` lives logs or allocates.
#[repr(C, align(64))]
pub(crate) struct CpuSlot<const PAGE_SIZE: usize> {
    /// Owner-only: set while a `SlotRef` of this slot lives (O1).
    busy: AtomicBool,
    local: UnsafeCell<CpuLocal<PAGE_SIZE>>,
    /// Read by anyone.
    pub(crate) counters: SlotCounters,
    /// Slabs of this CPU that other CPUs freed objects into: on a cache
    /// line of its own, which remote CPUs write.
    pub(crate) pending: crate::slab::header::OwnLine<PendingSlabs>,
}

// SAFETY: `local` is reached only through `enter`, by the slot's one owner
// at a time (O1); everything else is atomics.
unsafe impl<const PAGE_SIZE: usize> Sync for CpuSlot<PAGE_SIZE> {}
// SAFETY: as above: the slot's owner changes over time, one at a time.
unsafe impl<const PAGE_SIZE: usize> Send for CpuSlot<PAGE_SIZE> {}

impl<const PAGE_SIZE: usize> CpuSlot<PAGE_SIZE> {
    /// Slot of CPU `cpu` over the size classes `table`; `first_pfn` is a
    /// page frame of managed memory (the page cache's links are relative
    /// to it).
    pub(crate) fn new(
        cpu: usize,
        first_pfn: usize,
        table: &'static SizeClassTable<PAGE_SIZE>,
    ) -> Self {
        Self {
            busy: AtomicBool::new(false),
            local: UnsafeCell::new(CpuLocal {
                slab: SlabCaches::new(table, cpu),
                pages: PageCache::new(cpu, first_pfn, PAGE_SIZE.trailing_zeros()),
                sections: SectionCache::new(),
                faults: FaultLog::new(),
                seen_reclaim: 0,
                slow_calls_left: DECAY_CALLS as u32,
            }),
            counters: SlotCounters {
                slab: SlabCounters::new(),
                pages: PageCounters::new(),
                remote_frees_sent: Counter::new(),
            },
            pending: crate::slab::header::OwnLine(PendingSlabs::new()),
        }
    }

    /// Enters the slot: `None` if it is in use (a re-entry on this CPU).
    ///
    /// # Safety
    /// The caller owns the slot as O1 says (pin, shared-slot lock, `&mut`
    /// allocator, or idle slot).
    #[inline(always)]
    pub(crate) unsafe fn enter(&self) -> Option<SlotRef<'_, PAGE_SIZE>> {
        // Only the owning context writes `busy`, and a re-entry runs on the
        // same CPU, nested in a call made while the slot is held: plain
        // loads and stores suffice (the calls order them).
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        self.busy.store(true, Ordering::Relaxed);
        Some(SlotRef {
            slot: self,
            // SAFETY: O1: the caller owns the slot and `busy` was clear, so
            // no other reference to `local` is alive; `busy` keeps it so
            // until this `SlotRef` drops.
            local: unsafe { &mut *self.local.get() },
            entered: true,
        })
    }

    /// The fast paths' `enter`: `None` if the slot is in use; leaves
    /// `busy` clear (O1).
    ///
    /// # Safety
    /// As [`Self::enter`], and the caller runs no code that could re-enter
    /// the allocator while the `SlotRef` lives.
    #[inline(always)]
    pub(crate) unsafe fn peek(&self) -> Option<SlotRef<'_, PAGE_SIZE>> {
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        Some(SlotRef {
            slot: self,
            // SAFETY: O1: the caller owns the slot, `busy` is clear (no
            // `enter` of this slot is alive), and nothing can enter it while
            // this reference lives (caller contract).
            local: unsafe { &mut *self.local.get() },
            entered: false,
        })
    }
}

/// The one live reference to a slot's local state (O1); leaving the slot
/// when dropped.
pub(crate) struct SlotRef<'a, const PAGE_SIZE: usize> {
    pub(crate) slot: &'a CpuSlot<PAGE_SIZE>,
    pub(crate) local: &'a mut CpuLocal<PAGE_SIZE>,
    /// Made by `enter` (`busy` set), not `peek`.
    entered: bool,
}

impl<const PAGE_SIZE: usize> Drop for SlotRef<'_, PAGE_SIZE> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.entered {
            self.slot.busy.store(false, Ordering::Relaxed);
        }
    }
}

impl<const PAGE_SIZE: usize> SlotRef<'_, PAGE_SIZE> {
    /// Counts one slow path of the owner; `true` every
    /// `cpu.decay-calls`-th, which restarts the count.
    #[inline]
    pub(crate) fn visit_due(&mut self) -> bool {
        let left = &mut self.local.slow_calls_left;
        *left = left.saturating_sub(1);
        if *left == 0 {
            *left = DECAY_CALLS as u32;
            return true;
        }
        false
    }

    /// The slab view of this slot for paths that release no slab (the fast
    /// paths, allocation): it may keep no empty slab, so a free through it
    /// that empties one releases it.
    #[inline(always)]
    pub(crate) fn slab(&mut self) -> SlabCpu<'_, PAGE_SIZE> {
        self.slab_within(0)
    }

    /// The slab view of this slot, keeping up to `spare` bytes of empty
    /// slabs.
    #[inline(always)]
    pub(crate) fn slab_within(&mut self, spare: usize) -> SlabCpu<'_, PAGE_SIZE> {
        SlabCpu::new(
            &mut self.local.slab,
            &self.slot.counters.slab,
            &mut self.local.faults,
            spare,
        )
    }

    /// The page-cache view of this slot over `src`, for an idle budget of
    /// `budget_pages` pages.
    #[inline(always)]
    pub(crate) fn pages<'s, S: PageSource>(
        &'s mut self,
        src: &'s S,
        budget_pages: usize,
    ) -> PageCpu<'s, S> {
        self.local.pages.set_budget(budget_pages);
        PageCpu {
            cache: &mut self.local.pages,
            sections: &mut self.local.sections,
            faults: &mut self.local.faults,
            counters: &self.slot.counters.pages,
            src,
        }
    }
}
