//! Which CPU slot a call runs on, and reporting once it is left.
//!
//! Every call that touches CPU-local state goes through [`with_slot`]
//! (slow paths) or [`on_own_slot`] (fast paths). Both pin the context, pick
//! its slot and enter it (O1, `cpu::CpuSlot`): the CPU's own slot if it has
//! one and it is not in use, else the shared slot under its lock. The slow
//! path takes the faults the call recorded out of the slot before leaving
//! it and reports them after the pin and the lock are released, so a
//! logger that allocates finds the heap in a consistent state. The fast
//! paths record nothing: whatever would be a fault sends them to the slow
//! path with nothing changed.
//!
//! [`with_slot`]: GlobalAllocator::with_slot
//! [`on_own_slot`]: GlobalAllocator::on_own_slot

use super::GlobalAllocator;
use crate::cpu::{CpuSlot, Hazard, SlotRef};
use crate::fault::{Fault, FaultKind, FaultLog};
use crate::platform::Platform;
use crate::sync::{Ordering, RawLock};
use core::ptr;

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
    /// Runs `f` on the slot the current context owns, with that slot's id,
    /// then reports what `f` recorded, after the slot is left and every lock
    /// released. `None` (without running `f`) before `init`. Always
    /// inlined, so that `f` is inlined into its caller (a slow path).
    #[inline(always)]
    pub(super) fn with_slot<R>(
        &self,
        f: impl FnOnce(&mut SlotRef<'_, PAGE_SIZE>, usize) -> R,
    ) -> Option<R> {
        let pin = P::pin();
        let slots = self.slots.load(Ordering::Acquire);
        if slots.is_null() {
            return None;
        }
        let first_shared = self.first_shared();
        let own = P::cpu_id(&pin)
            .filter(|&id| id < first_shared)
            // SAFETY: id < nr_cpu_slots: an initialised CPU slot (G1).
            .map(|id| (id, unsafe { &*slots.add(id) }));
        if P::SLOT_HINTS
            && let Some((_, slot)) = own
            && self.slot_hints.load(Ordering::Relaxed)
        {
            let addr = ptr::from_ref(slot).addr();
            if P::slot_hint(&pin) != addr {
                P::set_slot_hint(&pin, addr);
            }
        }
        // SAFETY: the pin makes this context the owner of its CPU's slot
        // (Platform contract, O1).
        let entered = own.and_then(|(id, slot)| unsafe { slot.enter() }.map(|s| (id, s)));
        // Written only when `f` recorded something: no copy otherwise.
        let mut faults = None;
        let result = match entered {
            Some((id, mut s)) => {
                let r = f(&mut s, id);
                take_faults(&mut s, &mut faults);
                r
            }
            None => {
                let shared_id = first_shared + P::shared_slot_hint(&pin) % Self::SHARED_SLOTS;
                self.on_shared_slot(shared_id, own.is_some(), &mut faults, f)
            }
        };
        drop(pin);
        if let Some(faults) = &faults {
            faults.report();
        }
        Some(result)
    }

    /// The slow half of `with_slot`: shared slot `shared_id` under its
    /// lock, for a
    /// context with no slot of its own or whose slot is in use on its CPU
    /// (`reentered`). Out of line so the callers inline `f` once.
    #[cold]
    #[inline(never)]
    fn on_shared_slot<R>(
        &self,
        shared_id: usize,
        reentered: bool,
        faults: &mut Option<FaultLog>,
        f: impl FnOnce(&mut SlotRef<'_, PAGE_SIZE>, usize) -> R,
    ) -> R {
        let slot = self.slot(shared_id).expect("G1: the shared slot exists");
        self.shared_lock(shared_id).with(|| {
            // SAFETY: holding its lock makes this context the shared slot's
            // owner (O1).
            let mut s = unsafe { slot.enter() }
                .expect("O1: the holder of the shared lock is the shared slot's only user");
            if reentered {
                self.reentries.fetch_add(1, Ordering::Relaxed);
                s.local
                    .faults
                    .push(Fault::new(FaultKind::Reentered, 0, 0, shared_id));
            }
            let r = f(&mut s, shared_id);
            take_faults(&mut s, faults);
            r
        })
    }

    /// Runs `f` on the pinned context's own slot, for the fast paths:
    /// `None` without running it before `init`, on the shared slot, before
    /// the platform assigned an id, or when the slot is in use on this CPU.
    #[inline(always)]
    pub(super) fn on_own_slot<R>(
        &self,
        f: impl FnOnce(&mut SlotRef<'_, PAGE_SIZE>) -> Option<R>,
    ) -> Option<R> {
        let pin = P::pin();
        let slot = if P::SLOT_HINTS && self.slot_hints.load(Ordering::Relaxed) {
            let hint = P::slot_hint(&pin);
            if hint == 0 {
                return None;
            }
            // SAFETY: Platform contract: a non-zero hint is what `with_slot`
            // stored on this CPU while this instance held the hints: the
            // address of this CPU's own initialised slot (G1), whose
            // provenance `init` exposed.
            unsafe { &*ptr::with_exposed_provenance::<CpuSlot<PAGE_SIZE>>(hint) }
        } else {
            let id = P::cpu_id_hint(&pin);
            // Acquire pairs with `init`'s Release: a non-zero count means
            // the slots are written and `slots` is published (G1).
            if id >= self.nr_cpu_slots.load(Ordering::Acquire) {
                return None;
            }
            let slots = self.slots.load(Ordering::Relaxed);
            // SAFETY: id < nr_cpu_slots: an initialised CPU slot (G1).
            unsafe { &*slots.add(id) }
        };
        // SAFETY: the pin makes this context the slot's owner (Platform
        // contract, O1); the fast paths call no code that could re-enter
        // the allocator.
        let mut s = unsafe { slot.peek() }?;
        let result = f(&mut s);
        drop(s);
        drop(pin);
        result
    }

    /// Slot `id`, if initialised.
    pub(super) fn slot(&self, id: usize) -> Option<&CpuSlot<PAGE_SIZE>> {
        let slots = self.slots.load(Ordering::Acquire);
        // SAFETY: ids below nr_slots are initialised slots (G1).
        (!slots.is_null() && id < self.nr_slots.load(Ordering::Relaxed))
            .then(|| unsafe { &*slots.add(id) })
    }

    /// The id of the first shared slot: the number of CPU slots (0 before
    /// `init`, when there are no slots).
    #[inline(always)]
    pub(super) fn first_shared(&self) -> usize {
        self.nr_slots
            .load(Ordering::Relaxed)
            .saturating_sub(Self::SHARED_SLOTS)
    }

    /// The lock of shared slot `id` (`first_shared() <= id < nr_slots`).
    pub(super) fn shared_lock(&self, id: usize) -> &P::Lock {
        &self.shared[id - self.first_shared()].0
    }

    /// Every slot's hazard (none before `init`).
    pub(super) fn hazards(&self) -> &[Hazard] {
        let hazards = self.hazards.load(Ordering::Acquire);
        if hazards.is_null() {
            return &[];
        }
        // SAFETY: `init` wrote nr_slots hazards there before publishing
        // `slots` (G1), and they live as long as the allocator.
        unsafe { core::slice::from_raw_parts(hazards, self.nr_slots.load(Ordering::Relaxed)) }
    }

    /// Slot `id`'s hazard (`id` is an initialised slot's).
    #[inline(always)]
    pub(super) fn hazard(&self, id: usize) -> &Hazard {
        debug_assert!(id < self.nr_slots.load(Ordering::Relaxed));
        // SAFETY: ids of initialised slots are below nr_slots, and `init`
        // wrote that many hazards before publishing the slots (G1).
        unsafe { &*self.hazards.load(Ordering::Relaxed).add(id) }
    }

    /// Runs `f` as the owner of slot `id`, which the caller may enter (O1:
    /// `&mut` allocator, the platform says the slot is idle, or the caller
    /// holds the shared-slot lock for the shared slot), and returns the
    /// faults `f` recorded there, for the caller to report once it holds
    /// nothing. Does nothing if the slot is in use.
    ///
    /// # Safety
    /// The caller owns slot `id` as O1 says.
    pub(super) unsafe fn as_owner_of(
        &self,
        id: usize,
        f: impl FnOnce(&mut SlotRef<'_, PAGE_SIZE>),
    ) -> Option<FaultLog> {
        let slot = self.slot(id)?;
        // SAFETY: forwarded caller contract.
        let mut s = unsafe { slot.enter() }?;
        f(&mut s);
        let mut faults = None;
        take_faults(&mut s, &mut faults);
        faults
    }
}

/// Moves the faults recorded in slot `s` into `out`: one check when there
/// are none.
#[inline(always)]
fn take_faults<const PAGE_SIZE: usize>(s: &mut SlotRef<'_, PAGE_SIZE>, out: &mut Option<FaultLog>) {
    if !s.local.faults.is_empty() {
        take_faults_cold(s, out);
    }
}

#[cold]
#[inline(never)]
fn take_faults_cold<const PAGE_SIZE: usize>(
    s: &mut SlotRef<'_, PAGE_SIZE>,
    out: &mut Option<FaultLog>,
) {
    *out = Some(s.local.faults.take());
}
