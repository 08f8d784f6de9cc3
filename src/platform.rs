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
/// - the methods the allocator calls while it holds a CPU slot or a lock
///   (`cpu_id`, `cpu_id_hint`, `virt_to_phys`, `with_idle_cpu`) neither
///   allocate from this allocator nor take its locks.
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
pub use host::{HostLock, HostPlatform};

#[cfg(feature = "std")]
mod host {
    use super::Platform;
    use crate::config::cpu::HOST_MAX_CPUS;
    use crate::sync::RawLock;
    use core::cell::Cell;
    use core::marker::PhantomData;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const SLOT_WORDS: usize = HOST_MAX_CPUS.div_ceil(64);
    const UNASSIGNED: usize = usize::MAX;
    const NONE_FREE: usize = usize::MAX - 1;

    /// Bit `i` is set iff a live thread owns CPU slot `i` (T1).
    static SLOT_BITMAP: [AtomicU64; SLOT_WORDS] = [const { AtomicU64::new(0) }; SLOT_WORDS];

    std::thread_local! {
        /// The calling thread's slot id, `UNASSIGNED` before its first
        /// allocation. No destructor, so reading it is one TLS load.
        static SLOT_ID: Cell<usize> = const { Cell::new(UNASSIGNED) };
    }

    /// Gives the exiting thread's slot back. Later allocations of the
    /// thread (in other exit hooks) take the shared slot.
    fn release_slot(id: usize) {
        let _ = SLOT_ID.try_with(|s| s.set(NONE_FREE));
        if id < HOST_MAX_CPUS {
            // Release: the next owner of the slot sees every write this
            // thread made to the slot's per-CPU state.
            SLOT_BITMAP[id / 64].fetch_and(!(1 << (id % 64)), Ordering::Release);
        }
    }

    /// Runs `release_slot` when the thread exits, through a POSIX
    /// thread-specific key: registering it allocates nothing from the Rust
    /// heap (a `std` thread-local with a destructor may, on targets where
    /// std keeps such destructors in a list of its own, and this runs
    /// inside an allocation).
    #[cfg(unix)]
    mod exit_hook {
        use core::ffi::c_void;
        use core::sync::atomic::{AtomicUsize, Ordering};

        /// The key, plus one; 0 until created.
        static KEY: AtomicUsize = AtomicUsize::new(0);

        extern "C" fn on_exit(value: *mut c_void) {
            super::release_slot(value.addr().wrapping_sub(1));
        }

        fn key() -> Option<libc::pthread_key_t> {
            let k = KEY.load(Ordering::Acquire);
            if k != 0 {
                return Some((k - 1) as libc::pthread_key_t);
            }
            let mut new: libc::pthread_key_t = 0;
            // SAFETY: `new` is a valid place for the key; `on_exit` is an
            // `extern "C"` function that lives as long as the program.
            if unsafe { libc::pthread_key_create(&mut new, Some(on_exit)) } != 0 {
                return None;
            }
            match KEY.compare_exchange(0, new as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => Some(new),
                Err(won) => {
                    // Another thread created one first: use it.
                    // SAFETY: `new` was created above and never used.
                    unsafe { libc::pthread_key_delete(new) };
                    Some((won - 1) as libc::pthread_key_t)
                }
            }
        }

        /// Arranges for slot `id` to be released when the calling thread
        /// exits; `false` if that cannot be arranged.
        pub(super) fn register(id: usize) -> bool {
            let Some(key) = key() else { return false };
            // SAFETY: `key` is a live key; the value is an integer carried as
            // a pointer (never dereferenced), non-null so `on_exit` runs.
            unsafe { libc::pthread_setspecific(key, core::ptr::without_provenance(id + 1)) == 0 }
        }
    }

    /// On other std targets: a thread-local whose destructor releases the
    /// slot (registered inside the first allocation: std's fallback list
    /// of such destructors may allocate there).
    #[cfg(not(unix))]
    mod exit_hook {
        struct SlotGuard(core::cell::Cell<usize>);

        impl Drop for SlotGuard {
            fn drop(&mut self) {
                super::release_slot(self.0.get());
            }
        }

        std::thread_local! {
            static SLOT_GUARD: SlotGuard = const { SlotGuard(core::cell::Cell::new(usize::MAX)) };
        }

        pub(super) fn register(id: usize) -> bool {
            SLOT_GUARD.try_with(|g| g.0.set(id)).is_ok()
        }
    }

    #[cold]
    fn assign_slot() -> usize {
        let id = claim_slot();
        // Arrange the release first: a thread that cannot give a slot back
        // at exit must not keep one.
        let id = if id < HOST_MAX_CPUS && !exit_hook::register(id) {
            release_slot(id);
            NONE_FREE
        } else {
            id
        };
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

    /// The host's lock: a test-and-test-and-set lock that spins a little
    /// and then yields the CPU while it waits, so that threads beyond the
    /// CPU slots, which share one locked slot, give their cores to the
    /// holder instead of spinning against it. (Its critical sections are a
    /// few hundred instructions: yielding, not parking, is what keeps 64
    /// threads on 2 cores near glibc's CPU time, tests/oversubscription.rs;
    /// a futex mutex took twice glibc's, a pure spin lock almost six times.)
    pub struct HostLock(AtomicBool);

    /// Spins before a waiter starts yielding.
    const SPINS_BEFORE_YIELD: u32 = 64;

    // SAFETY: the compare-exchange from `false` to `true` admits one holder
    // at a time; the Release store in `Unlock` ends its hold (on unwind
    // too).
    unsafe impl RawLock for HostLock {
        const UNLOCKED: Self = Self(AtomicBool::new(false));

        #[inline]
        fn with<R>(&self, f: impl FnOnce() -> R) -> R {
            if self
                .0
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                self.wait();
            }
            struct Unlock<'a>(&'a AtomicBool);
            impl Drop for Unlock<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let _unlock = Unlock(&self.0);
            f()
        }
    }

    impl HostLock {
        #[cold]
        fn wait(&self) {
            let mut spins = 0;
            loop {
                while self.0.load(Ordering::Relaxed) {
                    if spins < SPINS_BEFORE_YIELD {
                        spins += 1;
                        core::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                if self
                    .0
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
            }
        }
    }

    // SAFETY: slot ids are handed out through SLOT_BITMAP's atomic bits (T1):
    // one live thread owns a given id, `HostPin` is `!Send`, and a thread is
    // one execution context (the host allocator is not called from signal
    // handlers).
    unsafe impl Platform for HostPlatform {
        type Lock = HostLock;
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
            // threads off the slot while `f` runs (T1).
            if word.fetch_or(bit, Ordering::Acquire) & bit != 0 {
                return false;
            }
            f();
            word.fetch_and(!bit, Ordering::Release);
            true
        }
    }
}
