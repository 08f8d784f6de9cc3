//! What a kernel's runtime provides and a host test must: ax-sync's
//! context and spin-lock operations (ax-runtime implements them in a
//! kernel), an arena for the global allocator, and (buddy-slab, tracking)
//! a CPU area per test thread.
#![allow(dead_code)]

use core::panic::Location;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use ax_sync::interface::{AcquireResult, ContextState, LockMetadata};

/// No interrupts or preemption on the host: entering a context changes
/// nothing.
struct HostContextOps;

#[ax_crate_interface::impl_interface]
impl ax_sync::interface::ContextOps for HostContextOps {
    fn enter(_context: u8) -> ContextState {
        ContextState::new(0, 0)
    }
    fn exit(_context: u8, _state: ContextState) {}
    fn irq_return_preempt_enter() -> usize {
        0
    }
    fn irq_return_preempt_exit(_state: usize) {}
    fn hardirq_enter() {}
    fn hardirq_exit() {}
}

/// Spin locks as a test-and-set on the lock word.
struct HostSpinOps;

#[ax_crate_interface::impl_interface]
impl ax_sync::interface::SpinOps for HostSpinOps {
    fn acquire(
        locked: &AtomicBool,
        _metadata: &LockMetadata,
        _lock_addr: usize,
        _context: u8,
        _subclass: u32,
        _caller: &'static Location<'static>,
    ) -> ContextState {
        while locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        ContextState::new(0, 0)
    }

    fn try_acquire(
        locked: &AtomicBool,
        _metadata: &LockMetadata,
        _lock_addr: usize,
        _context: u8,
        _subclass: u32,
        _caller: &'static Location<'static>,
    ) -> AcquireResult {
        let ok = locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        AcquireResult::new(ok, ContextState::new(0, 0))
    }

    fn release(locked: &AtomicBool, _lock_addr: usize, _context: u8, _state: ContextState) {
        locked.store(false, Ordering::Release);
    }

    fn force_release(locked: &AtomicBool, _lock_addr: usize, _context: u8) {
        locked.store(false, Ordering::Release);
    }

    fn is_locked(locked: &AtomicBool) -> bool {
        locked.load(Ordering::Relaxed)
    }
}

/// Size of the global allocator's arena.
pub const ARENA_BYTES: usize = 32 << 20;

/// CPU areas of the host (buddy-slab and tracking tests): one per test
/// thread that calls [`become_cpu`].
pub const HOST_CPUS: u32 = 4;

static INIT: Once = Once::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests (they share the global allocator, the reclaim
/// callback and the host CPU areas: two threads must never be the same CPU
/// at once), makes the calling thread CPU 0, and initialises the global
/// allocator once, over a leaked 2 MiB-aligned arena.
pub fn heap() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(any(feature = "buddy-slab", feature = "tracking"))]
    become_cpu(0);
    INIT.call_once(|| {
        let layout = std::alloc::Layout::from_size_align(ARENA_BYTES, 2 << 20).unwrap();
        // SAFETY: non-zero size; leaked: the allocator owns it for good.
        let arena = unsafe { std::alloc::alloc(layout) };
        assert!(!arena.is_null());
        ax_alloc::global_init(arena as usize, ARENA_BYTES).expect("global_init");
    });
    guard
}

/// Makes the calling thread CPU `cpu`: installs that CPU area (ax-percpu's
/// host areas, one per CPU) and binds it with `init_percpu_slab`, as
/// ax-runtime does at CPU bring-up. Idempotent per thread.
#[cfg(any(feature = "buddy-slab", feature = "tracking"))]
pub fn become_cpu(cpu: u32) {
    std::thread_local! {
        static AS: core::cell::Cell<Option<u32>> = const { core::cell::Cell::new(None) };
    }
    if let Some(now) = AS.get() {
        assert_eq!(now, cpu, "a test thread cannot change CPU");
        return;
    }
    let layout = ax_percpu::host_test::initialize(core::num::NonZeroU32::new(HOST_CPUS).unwrap())
        .expect("host CPU areas");
    let area = layout
        .area(ax_percpu::CpuIndex::try_from(cpu as usize).unwrap())
        .expect("CPU area");
    // SAFETY: a fresh test thread is an offline CPU with no area yet; the
    // host areas live for the whole process.
    unsafe { cpu_local::install_cpu_area(area.cpu_area().unwrap()) }.expect("install CPU area");
    AS.set(Some(cpu));
    ax_alloc::init_percpu_slab(cpu as usize);
}
