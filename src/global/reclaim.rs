//! Drains and memory pressure: giving cached memory back to the buddy.

use super::GlobalAllocator;
use super::object::ReleaseBatch;
use crate::cpu::SlotRef;
use crate::fault::FaultLog;
use crate::platform::Platform;
use crate::slab::SlabCpu;
use crate::sync::{Ordering, RawLock};
use crate::{AllocError, AllocResult};

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
    /// flushes the page cache. Returns the slab base the hazard named (0
    /// for none): its owner may have kept that slab because of it.
    pub(super) fn drain_local(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) -> usize {
        let named = self.hazard(id).take();
        self.absorb(s, id);
        let (slot, local) = (s.slot, &mut *s.local);
        // A drain keeps no empty slab.
        let mut slab = SlabCpu::new(&mut local.slab, &slot.counters.slab, &mut local.faults, 0);
        let sections = &mut local.sections;
        let mut batch = ReleaseBatch::new();
        slab.drain(|slab, released| self.batch_release(&mut batch, slab, sections, id, released));
        self.flush_releases(&mut batch, &mut slab, id);
        s.pages(self, self.budget_pages()).drain();
        named
    }

    /// A dropped hazard named the slab at `base`: if its owner is idle, it
    /// may have kept the slab because of the hazard, and nobody would look
    /// at it again. Drains such owners (and, in turn, the owners of the
    /// slabs their hazards named); returns the faults found.
    #[cold]
    fn kick_owners(&self, mut base: usize) -> FaultLog {
        let mut faults = FaultLog::new();
        let mut sections = crate::buddy::SectionCache::new();
        for _ in 0..self.nr_slots.load(Ordering::Relaxed) {
            let owner = (base != 0)
                .then(|| sections.meta(&self.map, base, Self::PAGE_SHIFT))
                .flatten()
                .and_then(|m| m.slab_page())
                .map(|(_, owner)| owner);
            let Some(owner) = owner.filter(|&o| P::is_idle_hint(o)) else {
                break;
            };
            let (found, next) = self.drain_if_idle(owner);
            faults.append(&found);
            base = next;
        }
        faults
    }

    /// Returns the current CPU's empty slabs and cached pages to the buddy,
    /// after absorbing frees other CPUs made into its slabs.
    pub fn drain(&self) {
        let named = self.with_slot(|s, id| self.drain_local(s, id));
        if let Some(named) = named.filter(|&n| n != 0) {
            self.kick_owners(named).report();
        }
    }

    /// Drains every CPU slot. `&mut self` proves no other context is using
    /// the allocator, so every slot can be touched. On the host a thread
    /// drains its slot as it exits, borrowing the allocator: join the
    /// threads that used it first (`JoinHandle::join` waits for the exit;
    /// the end of `std::thread::scope` does not).
    pub fn drain_all(&mut self) {
        // `&mut self` keeps out every caller, but not the platform's drains
        // (a thread that has returned from its closure may still be running
        // its exit hook): stop them for the while, and hand the platform a
        // fresh pointer afterwards.
        self.unregister_from_platform();
        // No context is in a remote free: no hazard needs to hold a slab.
        for hazard in self.hazards() {
            hazard.clear();
        }
        for id in 0..self.nr_slots.load(Ordering::Relaxed) {
            // SAFETY: `&mut self`: no other context uses any slot (O1).
            let faults = unsafe {
                self.as_owner_of(id, |s| {
                    self.drain_local(s, id);
                })
            };
            if let Some(faults) = faults {
                faults.report();
            }
        }
        if !self.slots.load(Ordering::Relaxed).is_null() {
            self.register_with_platform();
        }
    }

    /// The platform's [`DrainHook`](crate::platform::DrainHook) target:
    /// drains slot `id` of the allocator at `this`.
    ///
    /// # Safety
    /// `this` is a live allocator of this type, and the caller owns slot
    /// `id` (O1).
    pub(super) unsafe fn drain_hook(this: *const (), id: usize) -> FaultLog {
        // SAFETY: caller contract.
        let this = unsafe { &*this.cast::<Self>() };
        let mut named = 0;
        // SAFETY: caller contract.
        let mut faults = unsafe { this.as_owner_of(id, |s| named = this.drain_local(s, id)) }
            .unwrap_or_default();
        if named != 0 {
            faults.append(&this.kick_owners(named));
        }
        faults
    }

    /// The platform's `DrainHook::drain_if_idle` target.
    ///
    /// # Safety
    /// `this` is a live allocator of this type.
    pub(super) unsafe fn drain_if_idle_hook(this: *const (), id: usize) -> FaultLog {
        // SAFETY: caller contract.
        let this = unsafe { &*this.cast::<Self>() };
        let (mut faults, named) = this.drain_if_idle(id);
        if named != 0 {
            faults.append(&this.kick_owners(named));
        }
        faults
    }

    /// Drains slot `owner` if no context owns it, again as long as remote
    /// frees queued slabs for it while we held it (they saw it in use and
    /// left it to us). Returns the faults found and the slab the slot's
    /// dropped hazard named.
    fn drain_if_idle(&self, owner: usize) -> (FaultLog, usize) {
        let mut faults = FaultLog::new();
        let mut named = 0;
        let Some(slot) = self.slot(owner) else {
            return (faults, named);
        };
        crate::cpu::handoff::drain_while_idle(
            || {
                P::with_idle_cpu(owner, &mut || {
                    // SAFETY: `with_idle_cpu` makes us the slot's only user
                    // while this runs (Platform contract, O1).
                    let found = unsafe {
                        self.as_owner_of(owner, |o| {
                            let n = self.drain_local(o, owner);
                            if n != 0 {
                                named = n;
                            }
                        })
                    };
                    if let Some(found) = found {
                        faults.append(&found);
                    }
                })
            },
            || P::is_idle_hint(owner),
            || slot.pending.is_empty(),
        );
        (faults, named)
    }

    /// A remote free queued a slab for `owner`, whose CPU looks idle: drain
    /// its slot now, if the platform lets us, so the free is not stranded.
    /// This slot's hazard is dropped first (its free is complete), so the
    /// drain can release the slab.
    #[cold]
    #[inline(never)]
    pub(super) fn drain_idle_owner(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize, owner: usize) {
        self.hazard(id).clear();
        let (faults, _) = self.drain_if_idle(owner);
        s.local.faults.append(&faults);
    }

    /// [`Self::reclaim`] from a context that holds no slot.
    pub(super) fn reclaim_here(&self) {
        let _ = self.with_slot(|s, id| self.reclaim(s, id));
    }

    /// An allocation failed with `e` after `reclaim`: if memory is short,
    /// drains the shared slots (a reclaim on one could not take the others'
    /// locks) and asks the other CPUs to drain now
    /// ([`Platform::drain_other_cpus`]); if either may have freed memory,
    /// runs `attempt` once more. Called with no pin and no lock held.
    #[cold]
    pub(super) fn retry_after_remote_drain<T>(
        &self,
        e: AllocError,
        attempt: impl FnOnce() -> AllocResult<T>,
    ) -> AllocResult<T> {
        if e != AllocError::NoMemory {
            return Err(e);
        }
        let shared = Self::SHARED_SLOTS > 1 && self.drain_shared_slots();
        let asked = P::drain_other_cpus();
        if shared || asked { attempt() } else { Err(e) }
    }

    /// Drains every shared slot, taking their locks one at a time (the
    /// caller holds none); reports what the drains found. Says whether
    /// there were slots to drain (none before `init`).
    fn drain_shared_slots(&self) -> bool {
        let mut faults = FaultLog::new();
        self.clear_shared_hazards();
        self.drain_shared_into(&mut faults);
        faults.report();
        self.nr_slots.load(Ordering::Relaxed) > self.first_shared()
    }

    /// Drops the shared slots' hazards, each under its slot's lock: no
    /// context is in a slot whose lock we hold, so the slabs they name can
    /// be released by the drains that follow (H1). The caller holds no
    /// shared slot's lock.
    fn clear_shared_hazards(&self) {
        for id in self.first_shared()..self.nr_slots.load(Ordering::Relaxed) {
            self.shared_lock(id).with(|| self.hazard(id).clear());
        }
    }

    /// Drains every shared slot under its lock, one at a time, adding the
    /// faults found to `faults`. The caller holds no shared slot's lock.
    fn drain_shared_into(&self, faults: &mut FaultLog) {
        for id in self.first_shared()..self.nr_slots.load(Ordering::Relaxed) {
            self.shared_lock(id).with(|| {
                // SAFETY: holding its lock makes us the shared slot's owner
                // (O1), and we are in none of them.
                let found = unsafe {
                    self.as_owner_of(id, |o| {
                        self.drain_local(o, id);
                    })
                };
                if let Some(found) = found {
                    faults.append(&found);
                }
            });
        }
    }

    /// Memory ran out: return what slot `id` caches, drain every idle CPU
    /// slot now (and, from a CPU slot, the shared slots), and ask busy CPUs
    /// to drain on their next slow path.
    #[cold]
    pub(super) fn reclaim(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) {
        s.local.seen_reclaim = self.reclaim_epoch.fetch_add(1, Ordering::Relaxed) + 1;
        let first_shared = self.first_shared();
        let others = || (0..first_shared).filter(move |&o| o != id);
        // Lock order: a context that holds a shared slot's lock takes no
        // other's (two such reclaims would wait on each other); the other
        // shared slots drain at their next slow path, seeing the epoch, or
        // before the allocation fails (`retry_after_remote_drain`).
        let from_cpu_slot = id < first_shared;
        // The hazards of idle slots and of the shared slots name slabs that
        // no remote free is touching: drop them first, so that the drains
        // below can release those slabs (H1).
        for other in others() {
            P::with_idle_cpu(other, &mut || self.hazard(other).clear());
        }
        if from_cpu_slot {
            self.clear_shared_hazards();
        }
        self.drain_local(s, id);
        for other in others() {
            P::with_idle_cpu(other, &mut || {
                // SAFETY: `with_idle_cpu` makes us the slot's only user
                // while this runs (Platform contract, O1).
                let faults = unsafe {
                    self.as_owner_of(other, |o| {
                        self.drain_local(o, other);
                    })
                };
                if let Some(faults) = faults {
                    s.local.faults.append(&faults);
                }
            });
        }
        if from_cpu_slot {
            self.drain_shared_into(&mut s.local.faults);
        }
    }
}
