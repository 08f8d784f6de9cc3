//! The seam between the allocator and the machine it runs on.
//!
//! [`Platform`] tells the facade which CPU it runs on, how to keep it there,
//! how to lock the buddy, and how virtual addresses map to physical ones.
//! Implementations: [`HostPlatform`] (feature `std`: each thread is a CPU),
//! [`SharedSlotPlatform`] (any `no_std` target: one locked slot for all), and
//! the ArceOS binding (feature `arceos`).

use crate::sync::{RawLock, SpinLock};
use memory_addr::{PhysAddr, VirtAddr};

/// Services the global facade needs from the machine.
///
/// # Safety
///
/// Implementors guarantee:
/// - while a [`Platform::Pin`] returned by [`Platform::pin`] is alive and
///   [`Platform::cpu_id`] returned `Some(id)` for it, no execution context
///   on another CPU or thread can obtain a pin with the same `id`, and
///   `id < max_cpus()`; a context on the same CPU (an interrupt handler)
///   may, but only nested inside the first one's run, as interrupts nest.
///   The per-CPU fast path relies on this to touch CPU-local state without
///   locks or atomic read-modify-write instructions; a nested context finds
///   the slot in use and takes the shared slot (O1, `cpu::CpuSlot`).
/// - [`Platform::with_idle_cpu`] runs its closure only while no other
///   context can pin `cpu`.
/// - `Lock` satisfies [`RawLock`]'s contract.
/// - [`Platform::slot_hint`] returns 0 or what [`Platform::set_slot_hint`]
///   stored on the calling CPU since the last [`Platform::claim_slot_hints`]
///   that returned `true`, and only one claim holds at a time (the facade
///   takes a hint for the address of the calling CPU's own slot).
/// - the methods the allocator calls while it holds a CPU slot or a lock
///   (`cpu_id`, `cpu_id_hint`, `slot_hint`, `set_slot_hint`,
///   `virt_to_phys`, `with_idle_cpu`) neither allocate from this allocator
///   nor take its locks.
pub unsafe trait Platform: 'static {
    /// Lock protecting the buddy allocator and each shared CPU slot.
    type Lock: RawLock;
    /// Keeps the current context on its CPU while alive (a kernel masks
    /// interrupts and preemption).
    type Pin;
    /// Pins the current context to its CPU.
    fn pin() -> Self::Pin;
    /// The CPU slot the pinned context owns exclusively, or `None` when it
    /// owns none: it then uses a shared slot behind a [`Platform::Lock`].
    fn cpu_id(pin: &Self::Pin) -> Option<usize>;
    /// The fast paths' view of [`Platform::cpu_id`]: the same id when the
    /// pinned context owns a slot, or any value `>= max_cpus()` when it owns
    /// none *or has not been given one yet* (the slow path then calls
    /// `cpu_id`, which may assign one). One compare instead of an `Option`.
    #[inline(always)]
    fn cpu_id_hint(pin: &Self::Pin) -> usize {
        Self::cpu_id(pin).unwrap_or(usize::MAX)
    }
    /// Number of exclusive CPU slots (every id is below it).
    fn max_cpus() -> usize;
    /// Physical address of the virtual address `vaddr` of managed memory.
    ///
    /// The core calls it when a region is added (to split it at the lowmem
    /// limit, [`LOWMEM_LIMIT`](crate::LOWMEM_LIMIT)) and for the first and
    /// last byte of every lowmem run it hands out, under its buddy lock. A
    /// platform that cannot translate an address should answer a physical
    /// address at or above the limit (e.g. `PhysAddr::from_usize(usize::MAX)`):
    /// the memory then never counts as lowmem.
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr;

    /// Runs `f` as the exclusive user of CPU slot `cpu` if no context owns
    /// that slot now (on the host: a slot whose thread has exited), and says
    /// whether it ran. The facade uses it to reclaim memory cached by idle
    /// slots under memory pressure. The default never runs `f`: busy CPUs
    /// are asked instead to drain on their next slow path.
    fn with_idle_cpu(cpu: usize, f: &mut dyn FnMut()) -> bool {
        let _ = (cpu, f);
        false
    }

    /// Whether CPU slot `cpu` looks idle now (a hint: no context owns it).
    /// A remote free that queues a slab for an idle owner drains that
    /// owner's slot through [`Platform::with_idle_cpu`], so frees into the
    /// slabs of a CPU that makes no more calls still come back. An
    /// implementation that can say yes makes a SeqCst fence before it reads
    /// (the hand-off D1 of `cpu::handoff` rests on it). The default says
    /// no.
    #[inline(always)]
    fn is_idle_hint(cpu: usize) -> bool {
        let _ = cpu;
        false
    }

    /// Whether the platform keeps one per-CPU word for the facade's slot
    /// hints ([`Platform::slot_hint`]). With them the fast paths find the
    /// CPU's slot with one per-CPU load: no CPU-id arithmetic, no check of
    /// the slot count.
    const SLOT_HINTS: bool = false;

    /// Number of shared slots, each behind its own [`Platform::Lock`]
    /// (clamped to `1..=MAX_SHARED_SLOTS`). A kernel needs one: it serves
    /// only re-entered calls. A host with more threads than CPU slots
    /// spreads them over several, so they do not queue on one lock.
    const SHARED_SLOTS: usize = 1;

    /// Which shared slot the pinned context uses when it owns no slot
    /// (taken modulo the number of shared slots): stable per context, so
    /// its frees and allocations meet the same caches.
    #[inline(always)]
    fn shared_slot_hint(pin: &Self::Pin) -> usize {
        let _ = pin;
        0
    }

    /// Claims the per-CPU hints for one allocator instance (at its
    /// `init`); `false` if the platform has none or another instance holds
    /// them. Every CPU's hint is 0 when this returns `true`.
    fn claim_slot_hints() -> bool {
        false
    }

    /// Gives the hints up (their instance is going away), setting every
    /// CPU's hint back to 0.
    fn release_slot_hints() {}

    /// The calling CPU's hint: 0, or the last value [`Platform::set_slot_hint`]
    /// stored on this CPU since the hints were claimed.
    #[inline(always)]
    fn slot_hint(pin: &Self::Pin) -> usize {
        let _ = pin;
        0
    }

    /// Sets the calling CPU's hint.
    #[inline(always)]
    fn set_slot_hint(pin: &Self::Pin, addr: usize) {
        let _ = (pin, addr);
    }

    /// An allocator instance was initialised: a platform that knows when a
    /// CPU stops being used (the host: a thread exits) may drain the CPU's
    /// slot of every live instance through [`DrainHook::drain`] then. The
    /// default ignores it.
    fn register_instance(hook: DrainHook) {
        let _ = hook;
    }

    /// The instance at `instance` is going away: its hook must not run any
    /// more once this returns.
    fn unregister_instance(instance: *const ()) {
        let _ = instance;
    }

    /// Memory is still short after a reclaim, which drains only idle slots
    /// and asks busy CPUs to drain at their next slow path: asks every other
    /// CPU to drain its slot of the registered instances now, and waits a
    /// bounded time for their answers. Says whether any CPU answered (the
    /// allocation is then tried once more). Called with no pin and no lock
    /// held. A kernel sends an inter-processor interrupt whose handler runs
    /// [`DrainHook::drain`] on its CPU. The default asks no one.
    fn drain_other_cpus() -> bool {
        false
    }
}

/// How a platform drains one CPU slot of one allocator instance (see
/// [`Platform::register_instance`]).
#[derive(Clone, Copy, Debug)]
pub struct DrainHook {
    pub(crate) instance: *const (),
    pub(crate) drain: unsafe fn(*const (), usize) -> crate::fault::FaultLog,
    pub(crate) drain_if_idle: unsafe fn(*const (), usize) -> crate::fault::FaultLog,
}

// SAFETY: the instance is a `GlobalAllocator`, which is `Sync`; the hook
// only reaches it through `&`.
unsafe impl Send for DrainHook {}

impl DrainHook {
    /// The instance the hook drains.
    pub fn instance(&self) -> *const () {
        self.instance
    }

    /// Drains CPU slot `cpu` of the instance: absorbs remote frees, returns
    /// empty slabs and cached pages to the buddy. Returns the faults found,
    /// to be reported ([`FaultLog::report`](crate::FaultLog::report)) once
    /// the caller holds no lock.
    ///
    /// # Safety
    /// The instance is alive (not yet unregistered) and the caller owns
    /// slot `cpu` as the allocator's O1 says: it is the context pinned to
    /// it, or no context can pin it while this runs.
    pub unsafe fn drain(&self, cpu: usize) -> crate::fault::FaultLog {
        // SAFETY: forwarded caller contract.
        unsafe { (self.drain)(self.instance, cpu) }
    }

    /// [`Self::drain`] for a slot no context owns: through
    /// [`Platform::with_idle_cpu`], again as long as remote frees queue
    /// slabs for it meanwhile. Does nothing if the slot is in use.
    ///
    /// # Safety
    /// The instance is alive (not yet unregistered).
    pub unsafe fn drain_if_idle(&self, cpu: usize) -> crate::fault::FaultLog {
        // SAFETY: forwarded caller contract.
        unsafe { (self.drain_if_idle)(self.instance, cpu) }
    }
}

/// A platform with no exclusive CPU slots: every call takes the shared slot's
/// lock. Sound on any target; the default without `std` or `arceos`.
pub struct SharedSlotPlatform;

// SAFETY: `cpu_id` never returns an id, so the exclusivity clause is vacuous;
// `SpinLock` provides mutual exclusion.
unsafe impl Platform for SharedSlotPlatform {
    type Lock = SpinLock;
    type Pin = ();
    fn pin() {}
    fn cpu_id(_: &()) -> Option<usize> {
        None
    }
    fn max_cpus() -> usize {
        0
    }
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        PhysAddr::from_usize(vaddr.as_usize())
    }
}

#[cfg(feature = "std")]
mod host;
#[cfg(feature = "std")]
pub use host::{HostLock, HostPlatform};
