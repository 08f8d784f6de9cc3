//! Statistics and invariant checks.
//!
//! Every figure comes from counters outside the slots' owner-only state
//! (`cpu::SlotCounters`) or from the buddy under its lock, so reading them
//! from any CPU while others allocate is sound. Page-cache contents are
//! counted per CPU and moved in batches under the buddy lock, which the
//! snapshot also holds; a block that moves between two CPUs' caches while
//! the snapshot reads their counters can be seen in both, so the cached
//! total is clamped to what the buddy has handed out: no figure underflows,
//! and `allocated_bytes + cached_page_bytes` never exceeds what the buddy
//! counts as in use.

use super::GlobalAllocator;
use crate::buddy::ManagedSection;
use crate::platform::Platform;
use crate::slab::{ClassStats, SizeClass, SlabStats};
use crate::sync::Ordering;

/// Whole-allocator statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalStats {
    /// Bytes of managed pages.
    pub managed_bytes: usize,
    /// Bytes of pages in use: runs handed out and slabs (page caches not
    /// counted).
    pub allocated_bytes: usize,
    /// Bytes held by slabs (part of `allocated_bytes`).
    pub slab_bytes: usize,
    /// Bytes in per-CPU page caches (free from the user's point of view).
    pub cached_page_bytes: usize,
    /// Small objects live (remote frees count once absorbed).
    pub live_objects: usize,
    /// Rejected frees: double, foreign, wrong layout, interior pointers.
    pub invalid_frees: usize,
    /// Frees of objects owned by another CPU.
    pub remote_frees: usize,
    /// Debug checks: free objects found written to (use after free).
    pub poison_faults: usize,
    /// Debug checks: objects written past their requested size (overflow
    /// or wrong layout), found when freed.
    pub red_zone_faults: usize,
    /// Bytes page caches dropped because page metadata holding their list
    /// links was corrupted (leaked, never handed out twice).
    pub page_cache_lost_bytes: usize,
    /// Calls served by the shared slot because their CPU's slot was in use
    /// on the same CPU (re-entries).
    pub reentries: usize,
}

/// Statistics of one CPU slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Its slab caches.
    pub slab: SlabStats,
    /// Bytes in its page cache.
    pub cached_page_bytes: usize,
    /// Bytes it keeps while idle: empty slabs and cached pages (within
    /// [`GlobalAllocator::idle_budget_bytes`] once its page cache's growth
    /// has decayed).
    pub idle_bytes: usize,
    /// Frees it made of objects owned by other CPUs.
    pub remote_frees_sent: usize,
    /// Bytes its page cache dropped because a list link in page metadata
    /// was corrupted (the blocks leak rather than be handed out twice).
    pub page_cache_lost_bytes: usize,
}

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
    /// Bytes of managed pages.
    pub fn managed_bytes(&self) -> usize {
        self.buddy.with(|b| b.managed_bytes())
    }

    /// Bytes of pages in use (runs and slabs; per-CPU page caches count as
    /// free).
    pub fn allocated_bytes(&self) -> usize {
        let (allocated, cached) = self
            .buddy
            .with(|b| (b.allocated_bytes(), self.cached_page_bytes()));
        allocated - cached.min(allocated)
    }

    /// Sum of the slots' page-cache counters.
    fn cached_page_bytes(&self) -> usize {
        (0..self.nr_slots.load(Ordering::Relaxed))
            .filter_map(|i| self.slot(i))
            .map(|s| s.counters.pages.cached_bytes.get())
            .fold(0, usize::saturating_add)
    }

    /// Number of managed sections.
    pub fn managed_section_count(&self) -> usize {
        self.buddy.with(|b| b.managed_section_count())
    }

    /// Summary of section `index`.
    pub fn managed_section(&self, index: usize) -> Option<ManagedSection> {
        self.buddy.with(|b| b.managed_section(index))
    }

    /// Pages in the largest free block of the buddy.
    pub fn largest_free_block_pages(&self) -> usize {
        self.buddy.with(|b| b.largest_free_block_pages())
    }

    /// Free blocks per buddy order.
    pub fn free_blocks_per_order(&self) -> [usize; crate::config::NR_ORDERS] {
        self.buddy.with(|b| b.free_blocks_per_order())
    }

    /// Number of CPU slots (the platform's CPUs plus its shared slots).
    pub fn cpu_slots(&self) -> usize {
        self.nr_slots.load(Ordering::Relaxed)
    }

    /// Statistics of CPU slot `cpu`.
    pub fn cpu_stats(&self, cpu: usize) -> Option<CpuStats> {
        let c = &self.slot(cpu)?.counters;
        let slab = c.slab.stats(Self::TABLE);
        let cached_page_bytes = c.pages.cached_bytes.get();
        Some(CpuStats {
            slab,
            cached_page_bytes,
            idle_bytes: slab.empty_bytes + cached_page_bytes,
            remote_frees_sent: c.remote_frees_sent.get(),
            page_cache_lost_bytes: c.pages.lost_bytes.get(),
        })
    }

    /// Statistics of `class` on CPU slot `cpu`.
    pub fn class_stats(&self, cpu: usize, class: SizeClass) -> Option<ClassStats> {
        let c = &self.slot(cpu)?.counters;
        Some(c.slab.class_stats(Self::TABLE, class))
    }

    /// Whole-allocator statistics: one snapshot (see the module docs for
    /// how consistent it is while other CPUs run).
    pub fn stats(&self) -> GlobalStats {
        let (managed_bytes, buddy_allocated, buddy_invalid, cached) = self.buddy.with(|b| {
            (
                b.managed_bytes(),
                b.allocated_bytes(),
                b.invalid_frees(),
                self.cached_page_bytes(),
            )
        });
        let cached_page_bytes = cached.min(buddy_allocated);
        let mut s = GlobalStats {
            managed_bytes,
            allocated_bytes: buddy_allocated - cached_page_bytes,
            cached_page_bytes,
            invalid_frees: buddy_invalid + self.invalid_frees.load(Ordering::Relaxed),
            reentries: self.reentries.load(Ordering::Relaxed),
            ..GlobalStats::default()
        };
        for id in 0..self.nr_slots.load(Ordering::Relaxed) {
            if let Some(c) = self.cpu_stats(id) {
                s.slab_bytes += c.slab.slab_bytes;
                s.live_objects += c.slab.live_objects;
                s.invalid_frees += c.slab.invalid_frees;
                s.remote_frees += c.remote_frees_sent;
                s.poison_faults += c.slab.poison_faults;
                s.red_zone_faults += c.slab.red_zone_faults;
                s.page_cache_lost_bytes += c.page_cache_lost_bytes;
            }
        }
        s
    }

    /// Checks the buddy's invariants and the current CPU's slabs and page
    /// cache; panics on a violation.
    pub fn check_invariants(&self) {
        self.buddy.with(|b| b.check_invariants());
        let _ = self.with_slot(|s, _| {
            s.slab().check_invariants();
            s.pages(self, self.budget_pages()).check();
        });
    }
}
