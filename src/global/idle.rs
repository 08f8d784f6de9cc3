//! Memory return: the idle budget of each CPU, trimming to it, and the
//! owner's periodic visit that absorbs remote frees and lets its page
//! cache decay.
//!
//! # The budget
//! What a CPU keeps while idle, empty slabs (empty active slabs included)
//! and cached pages, is at most its *idle budget*: `cpu.idle-budget` bytes
//! and at most `1 / cpu.idle-budget-fraction` of managed memory. The page
//! cache's base marks take at most half of it (`PageCache::base_for`);
//! empty slabs get the rest (`slab_spare`). A free that empties a slab
//! beyond its share releases that slab, or another empty one, to the buddy.
//! A busy CPU's page cache may grow above its base marks; the growth
//! decays at the visits.
//!
//! # Prompt absorption and the visit
//! The allocation fast paths step aside while the CPU's pending stack is
//! not empty (one load of the line remote CPUs write only to queue a
//! slab), and every slow path absorbs it first: a remote free is absorbed
//! by its owner's next allocation, or next slow path of any kind. Every
//! `cpu.decay-calls` slow paths, the visit also lets the page cache's
//! growth decay.

use super::GlobalAllocator;
use super::object::ReleaseBatch;
use crate::config::cpu::{DECAY_CALLS, IDLE_BUDGET, IDLE_BUDGET_FRACTION, PAGE_CACHE_ORDERS};
use crate::cpu::{PageCache, SlotRef};
use crate::platform::Platform;
use crate::slab::SlabCpu;
use crate::sync::Ordering;

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
    /// The idle budget of each CPU, bytes: what it keeps while idle (empty
    /// slabs and cached pages), `cpu.idle-budget` and at most
    /// `1 / cpu.idle-budget-fraction` of managed memory.
    pub fn idle_budget_bytes(&self) -> usize {
        self.idle_budget.load(Ordering::Relaxed)
    }

    /// Sets the budget for `managed_bytes` of managed memory.
    pub(super) fn set_idle_budget(&self, managed_bytes: usize) {
        let budget = IDLE_BUDGET.min(managed_bytes / IDLE_BUDGET_FRACTION);
        let budget_pages = budget >> Self::PAGE_SHIFT;
        let base_pages = PageCache::base_for(budget_pages) * ((1 << PAGE_CACHE_ORDERS) - 1);
        let spare = budget_pages.saturating_sub(base_pages) << Self::PAGE_SHIFT;
        self.idle_budget.store(budget, Ordering::Relaxed);
        self.slab_spare.store(spare, Ordering::Relaxed);
    }

    /// The idle budget in pages.
    #[inline]
    pub(super) fn budget_pages(&self) -> usize {
        self.idle_budget_bytes() >> Self::PAGE_SHIFT
    }

    /// Bytes of empty slabs a CPU may keep: its budget less what its page
    /// cache's base marks may hold.
    #[inline(always)]
    pub(super) fn slab_spare(&self) -> usize {
        self.slab_spare.load(Ordering::Relaxed)
    }

    /// Releases slot `id`'s empty slabs beyond its share of the budget, if
    /// it holds more.
    #[inline]
    pub(super) fn trim_slabs(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) {
        let spare = self.slab_spare();
        if s.slot.counters.slab.empty_bytes() > spare {
            self.shed_slabs(s, id, spare);
        }
    }

    #[cold]
    #[inline(never)]
    fn shed_slabs(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize, spare: usize) {
        let (slot, local) = (s.slot, &mut *s.local);
        let mut slab = SlabCpu::new(
            &mut local.slab,
            &slot.counters.slab,
            &mut local.faults,
            spare,
        );
        let sections = &mut local.sections;
        let mut batch = ReleaseBatch::new();
        slab.shed(spare, |slab, released| {
            self.batch_release(&mut batch, slab, sections, id, released);
        });
        self.flush_releases(&mut batch, &mut slab, id);
    }

    /// [`Self::trim_slabs`] for the current CPU, from a context that holds
    /// no slot (a fast path that emptied a slab).
    #[cold]
    #[inline(never)]
    pub(super) fn trim_here(&self) {
        let _ = self.with_slot(|s, id| self.trim_slabs(s, id));
    }

    /// What every slow path of slot `id` runs first: absorbs queued remote
    /// frees, and lets the page cache decay when that is due.
    #[inline]
    pub(super) fn visit(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) {
        if !s.slot.pending.is_empty() {
            self.absorb(s, id);
        }
        if s.visit_due() {
            self.decay(s);
        }
    }

    /// The page cache's growth decays (every `cpu.decay-calls` slow
    /// paths).
    #[cold]
    #[inline(never)]
    fn decay(&self, s: &mut SlotRef<'_, PAGE_SIZE>) {
        if !s.local.pages.has_grown() {
            return;
        }
        let budget_pages = self.budget_pages();
        s.pages(self, budget_pages).decay(DECAY_CALLS);
    }
}
