//! Drains and memory pressure: giving cached memory back to the buddy.

use super::GlobalAllocator;
use super::object::ReleaseBatch;
use crate::cpu::SlotRef;
use crate::platform::Platform;
use crate::slab::SlabCpu;
use crate::sync::{Ordering, RawLock};

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
    /// Whether a reclaim was requested since this CPU last drained: the
    /// page fast paths then step aside, so that a CPU busy cycling pages
    /// through its cache returns them promptly (one load of a word that
    /// only changes when memory runs out).
    #[inline(always)]
    pub(super) fn reclaim_pending(&self, local: &crate::cpu::CpuLocal<PAGE_SIZE>) -> bool {
        self.reclaim_epoch.load(Ordering::Relaxed) != local.seen_reclaim
    }

    /// Drains slot `id` if a reclaim was requested since it last looked.
    #[inline]
    pub(super) fn honour_reclaim(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) {
        let epoch = self.reclaim_epoch.load(Ordering::Relaxed);
        if epoch != s.local.seen_reclaim {
            s.local.seen_reclaim = epoch;
            self.drain_local(s, id);
        }
    }

    /// Returns what slot `id` caches to the buddy: drops its hazard (it is
    /// in no remote free), absorbs remote frees, releases empty slabs,
    /// flushes the page cache.
    pub(super) fn drain_local(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) {
        self.hazard(id).clear();
        self.absorb(s, id);
        let (slot, local) = (s.slot, &mut *s.local);
        let mut slab = SlabCpu::new(&mut local.slab, &slot.counters.slab, &mut local.faults);
        let sections = &mut local.sections;
        let mut batch = ReleaseBatch::new();
        slab.drain(|slab, released| self.batch_release(&mut batch, slab, sections, id, released));
        self.flush_releases(&mut batch, &mut slab, id);
        s.pages(self).drain();
    }

    /// Returns the current CPU's empty slabs and cached pages to the buddy,
    /// after absorbing frees other CPUs made into its slabs.
    pub fn drain(&self) {
        let _ = self.with_slot(|s, id| self.drain_local(s, id));
    }

    /// Drains every CPU slot. `&mut self` proves no other context is using
    /// the allocator, so every slot can be touched.
    pub fn drain_all(&mut self) {
        // No context is in a remote free: no hazard needs to hold a slab.
        for hazard in self.hazards() {
            hazard.clear();
        }
        for id in 0..self.nr_slots.load(Ordering::Relaxed) {
            // SAFETY: `&mut self`: no other context uses any slot (O1).
            let faults = unsafe { self.as_owner_of(id, |s| self.drain_local(s, id)) };
            if let Some(faults) = faults {
                faults.report();
            }
        }
    }

    /// [`Self::reclaim`] from a context that holds no slot.
    pub(super) fn reclaim_here(&self) {
        let _ = self.with_slot(|s, id| self.reclaim(s, id));
    }

    /// Memory ran out: return what slot `id` caches, drain every idle CPU
    /// slot now (and the shared slot), and ask busy CPUs to drain on their
    /// next slow path.
    #[cold]
    pub(super) fn reclaim(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) {
        s.local.seen_reclaim = self.reclaim_epoch.fetch_add(1, Ordering::Relaxed) + 1;
        let shared_id = self.nr_slots.load(Ordering::Relaxed) - 1;
        // The hazards of idle slots and of the shared slot name slabs that
        // no remote free is touching: drop them first, so that the drains
        // below can release those slabs (H1).
        for other in (0..shared_id).filter(|&o| o != id) {
            P::with_idle_cpu(other, &mut || self.hazard(other).clear());
        }
        if id != shared_id {
            self.shared.with(|| self.hazard(shared_id).clear());
        }
        self.drain_local(s, id);
        for other in (0..shared_id).filter(|&o| o != id) {
            P::with_idle_cpu(other, &mut || {
                // SAFETY: `with_idle_cpu` makes us the slot's only user
                // while this runs (Platform contract, O1).
                let faults = unsafe { self.as_owner_of(other, |o| self.drain_local(o, other)) };
                if let Some(faults) = faults {
                    s.local.faults.append(&faults);
                }
            });
        }
        if id != shared_id {
            self.shared.with(|| {
                // SAFETY: holding `shared` makes us the shared slot's owner
                // (O1); we are not in it ourselves (id != shared_id).
                let faults =
                    unsafe { self.as_owner_of(shared_id, |o| self.drain_local(o, shared_id)) };
                if let Some(faults) = faults {
                    s.local.faults.append(&faults);
                }
            });
        }
    }
}
