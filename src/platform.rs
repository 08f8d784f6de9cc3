//! The seam between the allocator and the machine it runs on.
//!
//! [`Platform`] tells the facade which CPU it runs on, how to keep it there,
//! how to lock the buddy, and how virtual addresses map to physical ones.
//! Implementations: [`HostPlatform`] (feature `std`: each thread is a CPU),
//! [`SharedSlotPlatform`] (any `no_std` target: one locked slot for all), and
//! the ArceOS binding (feature `arceos`).

use crate::sync::{RawLock, SpinLock};

/// Services the global facade needs from the machine.
///
/// # Safety
///
/// Implementors guarantee that while a [`Platform::Pin`] returned by
/// [`Platform::pin`] is alive and [`Platform::cpu_id`] returned `Some(id)` for
/// it, no other execution context (thread, interrupt handler, other CPU) can
/// obtain a pin with the same `id`, and that `id < max_cpus()`. The per-CPU
/// fast path relies on this to touch CPU-local state without locks or atomic
/// read-modify-write instructions. `Lock` must provide mutual exclusion (and
/// mask interrupts where the allocator may be called from them).
pub unsafe trait Platform: 'static {
    /// Lock protecting the buddy allocator and the shared CPU slot.
    type Lock: RawLock;
    /// Keeps the current context on its CPU while alive (a kernel masks
    /// interrupts and preemption).
    type Pin;
    /// Pins the current context to its CPU.
    fn pin() -> Self::Pin;
    /// The CPU slot the pinned context owns exclusively, or `None` when it
    /// owns none: it then uses the shared slot behind [`Platform::Lock`].
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
    fn virt_to_phys(vaddr: usize) -> usize;

    /// Runs `f` as the exclusive user of CPU slot `cpu` if no context owns
    /// that slot now (on the host: a slot whose thread has exited), and says
    /// whether it ran. The facade uses it to reclaim memory cached by idle
    /// slots under memory pressure. The default never runs `f`: busy CPUs
    /// are asked instead to drain on their next slow path.
    fn with_idle_cpu(cpu: usize, f: &mut dyn FnMut()) -> bool {
        let _ = (cpu, f);
        false
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
    fn virt_to_phys(vaddr: usize) -> usize {
        vaddr
    }
}

#[cfg(feature = "std")]
pub use host::HostPlatform;

#[cfg(feature = "std")]
mod host {
    use super::Platform;
    use crate::config::cpu::HOST_MAX_CPUS;
    use crate::sync::SpinLock;
    use core::cell::Cell;
    use core::marker::PhantomData;
    use core::sync::atomic::{AtomicU64, Ordering};

    const SLOT_WORDS: usize = HOST_MAX_CPUS.div_ceil(64);
    const UNASSIGNED: usize = usize::MAX;
    const NONE_FREE: usize = usize::MAX - 1;

    /// Bit `i` is set iff a live thread owns CPU slot `i` (H1).
    static SLOT_BITMAP: [AtomicU64; SLOT_WORDS] = [const { AtomicU64::new(0) }; SLOT_WORDS];

    /// Releases the thread's slot when the thread exits.
    struct SlotGuard;

    impl Drop for SlotGuard {
        fn drop(&mut self) {
            // Later allocations in this thread's TLS destructors take the
            // shared slot. `SLOT_ID` has no destructor, so it is still there.
            let id = SLOT_ID.replace(NONE_FREE);
            if id < HOST_MAX_CPUS {
                // Release: the next owner of the slot sees every write this
                // thread made to the slot's per-CPU state.
                SLOT_BITMAP[id / 64].fetch_and(!(1 << (id % 64)), Ordering::Release);
            }
        }
    }

    std::thread_local! {
        /// The calling thread's slot id, `UNASSIGNED` before its first
        /// allocation. No destructor, so reading it is one TLS load.
        static SLOT_ID: Cell<usize> = const { Cell::new(UNASSIGNED) };
        /// Registered on first use; its destructor releases the slot.
        static SLOT_GUARD: SlotGuard = const { SlotGuard };
    }

    #[cold]
    fn assign_slot() -> usize {
        // Register the release first; if the thread is already exiting, do
        // not take a slot it could never give back.
        if SLOT_GUARD.try_with(|_| ()).is_err() {
            return NONE_FREE;
        }
        let id = claim_slot();
        SLOT_ID.set(id);
        id
    }

    fn claim_slot() -> usize {
        for (w, word) in SLOT_BITMAP.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            loop {
                let free = !bits;
                let bit = free.trailing_zeros() as usize;
                if bit >= 64 || w * 64 + bit >= HOST_MAX_CPUS {
                    break;
                }
                // Acquire pairs with the Release of the slot's previous owner.
                match word.compare_exchange_weak(
                    bits,
                    bits | (1 << bit),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return w * 64 + bit,
                    Err(now) => bits = now,
                }
            }
        }
        NONE_FREE
    }

    /// Host platform: every thread is its own CPU while it lives.
    ///
    /// A thread claims a free slot on its first allocation and releases it
    /// at exit. Threads beyond `cpu.host-max-cpus` get no slot and share the
    /// facade's locked slot, so any number of threads stays sound.
    pub struct HostPlatform;

    /// Host pin: a thread cannot migrate between slots, so pinning is free.
    /// `!Send` so it cannot leave the thread that made it.
    pub struct HostPin(PhantomData<*const ()>);

    // SAFETY: slot ids are handed out through SLOT_BITMAP's atomic bits (H1):
    // one live thread owns a given id, `HostPin` is `!Send`, and a thread is
    // one execution context (the host allocator is not called from signal
    // handlers).
    unsafe impl Platform for HostPlatform {
        type Lock = SpinLock;
        type Pin = HostPin;

        #[inline]
        fn pin() -> HostPin {
            HostPin(PhantomData)
        }

        #[inline(always)]
        fn cpu_id(_: &HostPin) -> Option<usize> {
            let mut id = SLOT_ID.get();
            if id == UNASSIGNED {
                id = assign_slot();
            }
            (id < HOST_MAX_CPUS).then_some(id)
        }

        /// The slot id, or `UNASSIGNED`/`NONE_FREE` (both beyond every
        /// slot): one TLS load.
        #[inline(always)]
        fn cpu_id_hint(_: &HostPin) -> usize {
            SLOT_ID.get()
        }

        fn max_cpus() -> usize {
            HOST_MAX_CPUS
        }

        fn virt_to_phys(vaddr: usize) -> usize {
            vaddr
        }

        fn with_idle_cpu(cpu: usize, f: &mut dyn FnMut()) -> bool {
            if cpu >= HOST_MAX_CPUS {
                return false;
            }
            let (word, bit) = (&SLOT_BITMAP[cpu / 64], 1u64 << (cpu % 64));
            // Acquire: see the last owner's writes; the bit keeps new
            // threads off the slot while `f` runs (H1).
            if word.fetch_or(bit, Ordering::Acquire) & bit != 0 {
                return false;
            }
            f();
            word.fetch_and(!bit, Ordering::Release);
            true
        }
    }
}
