//! The host platform (feature `std`): each thread is a CPU while it
//! lives; its slot is drained and released when it exits.

use super::{DrainHook, Platform};
use crate::config::cpu::{HOST_MAX_CPUS, HOST_SHARED_SLOTS};
use crate::cpu::handoff::OwnerWord;
use crate::sync::RawLock;
use core::cell::Cell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};
use memory_addr::{PhysAddr, VirtAddr};

const SLOT_WORDS: usize = HOST_MAX_CPUS.div_ceil(64);
const UNASSIGNED: usize = usize::MAX;
const NONE_FREE: usize = usize::MAX - 1;

/// Bit `i` is set iff a live thread owns CPU slot `i` (T1).
static SLOT_BITMAP: [OwnerWord; SLOT_WORDS] = [const { OwnerWord::new() }; SLOT_WORDS];

/// Slot `id`'s word and bit.
fn owner_bit(id: usize) -> (&'static OwnerWord, u32) {
    (&SLOT_BITMAP[id / 64], (id % 64) as u32)
}

std::thread_local! {
    /// The calling thread's slot id, `UNASSIGNED` before its first
    /// allocation. No destructor, so reading it is one TLS load.
    static SLOT_ID: Cell<usize> = const { Cell::new(UNASSIGNED) };
    /// The shared slot a thread without a slot of its own uses.
    static SHARED_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Hands the shared slots out round-robin to threads that get no slot.
static NEXT_SHARED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Allocator instances whose slots a thread's exit drains.
mod instances {
    use super::DrainHook;
    use crate::fault::FaultLog;
    use std::sync::{Mutex, MutexGuard};

    /// Instances registered at once; beyond, an instance is not drained
    /// at thread exit (its idle slots are still drained under memory
    /// pressure), and its registration says so.
    const MAX_INSTANCES: usize = 256;

    /// Live instances, in no order. A hook runs only with the lock held,
    /// and `remove` takes it: so no hook runs once its instance is gone.
    static HOOKS: Mutex<[Option<DrainHook>; MAX_INSTANCES]> = Mutex::new([None; MAX_INSTANCES]);

    fn hooks() -> MutexGuard<'static, [Option<DrainHook>; MAX_INSTANCES]> {
        // A panic in a hook poisons nothing that matters: the array is
        // only written whole entries at a time.
        HOOKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `hook`; `false` if there is no room.
    pub(super) fn add(hook: DrainHook) -> bool {
        let mut hooks = hooks();
        let free = hooks.iter_mut().find(|h| h.is_none());
        free.map(|free| *free = Some(hook)).is_some()
    }

    pub(super) fn remove(instance: *const ()) {
        for h in hooks().iter_mut() {
            if h.is_some_and(|h| h.instance == instance) {
                *h = None;
            }
        }
    }

    /// Drains slot `id` of every instance for the exiting thread that owns
    /// it (`owned`: T1, its bit is still set), else as an idle slot;
    /// returns the faults found.
    pub(super) fn drain_all(id: usize, owned: bool) -> FaultLog {
        let mut faults = FaultLog::new();
        for hook in hooks().iter().flatten() {
            // SAFETY: registered hooks belong to live instances (removed
            // under this lock before an instance goes); with `owned`, the
            // caller owns slot `id`.
            let found = unsafe {
                if owned {
                    hook.drain(id)
                } else {
                    hook.drain_if_idle(id)
                }
            };
            faults.append(&found);
        }
        faults
    }
}

/// The exiting thread's slot: drained in every instance, then released.
/// Faults are reported after the registry's lock is released.
fn thread_exits(id: usize) {
    if id >= HOST_MAX_CPUS {
        release_slot(id);
        return;
    }
    let mut faults = instances::drain_all(id, true);
    release_slot(id);
    // A remote free that queued a slab after the drain above, seeing the
    // slot still owned, left it to this one (the fence in `is_idle_hint`
    // pairs with the one `drain_if_idle` makes before it looks).
    faults.append(&instances::drain_all(id, false));
    faults.report();
}

/// Gives the exiting thread's slot back. Later allocations of the
/// thread (in other exit hooks) take the shared slot.
fn release_slot(id: usize) {
    let _ = SLOT_ID.try_with(|s| s.set(NONE_FREE));
    if id < HOST_MAX_CPUS {
        let (word, bit) = owner_bit(id);
        word.release(bit);
    }
}

/// Runs `thread_exits` when the thread exits, through a POSIX
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
        super::thread_exits(value.addr().wrapping_sub(1));
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
            super::thread_exits(self.0.get());
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
    if id >= HOST_MAX_CPUS {
        SHARED_INDEX.set(NEXT_SHARED.fetch_add(1, Ordering::Relaxed));
    }
    SLOT_ID.set(id);
    id
}

fn claim_slot() -> usize {
    for (w, word) in SLOT_BITMAP.iter().enumerate() {
        let limit = (HOST_MAX_CPUS - w * 64).min(64) as u32;
        if let Some(bit) = word.claim_any(limit) {
            return w * 64 + bit as usize;
        }
    }
    NONE_FREE
}

/// Host platform: every thread is its own CPU while it lives.
///
/// A thread claims a free slot on its first allocation and releases it
/// at exit. Threads beyond `cpu.host-max-cpus` get no slot and are spread
/// over the facade's locked shared slots (`cpu.host-shared-slots`), so any
/// number of threads stays sound.
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

    const SHARED_SLOTS: usize = HOST_SHARED_SLOTS;

    #[inline(always)]
    fn shared_slot_hint(_: &HostPin) -> usize {
        SHARED_INDEX.get()
    }

    /// Identity: a host process has no physical addresses to speak of.
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        PhysAddr::from_usize(vaddr.as_usize())
    }

    #[inline]
    fn is_idle_hint(cpu: usize) -> bool {
        // D1 (`cpu::handoff`): ordered after the caller's queueing.
        if cpu >= HOST_MAX_CPUS {
            return false;
        }
        let (word, bit) = owner_bit(cpu);
        word.idle_after_queueing(bit)
    }

    fn register_instance(hook: DrainHook) {
        if !instances::add(hook) {
            log::warn!(
                "buddy-slab: too many allocator instances: {:p} is not drained at thread exit",
                hook.instance
            );
        }
    }

    fn unregister_instance(instance: *const ()) {
        instances::remove(instance);
    }

    fn with_idle_cpu(cpu: usize, f: &mut dyn FnMut()) -> bool {
        if cpu >= HOST_MAX_CPUS {
            return false;
        }
        // The bit keeps new threads off the slot while `f` runs (T1).
        let (word, bit) = owner_bit(cpu);
        if !word.claim(bit) {
            return false;
        }
        f();
        word.release(bit);
        true
    }
}
