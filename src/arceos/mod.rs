//! ArceOS binding (feature `arceos`): the [`Platform`] of an ArceOS kernel.
//!
//! - CPU pinning: a `kernel_guard::NoPreemptIrqSave` guard, so neither
//!   preemption nor a local interrupt can run another allocator call on the
//!   same CPU while the core touches that CPU's slot;
//! - each CPU's slot in a `#[percpu::def_percpu]` word (the slot hint the
//!   fast paths read with one per-CPU load), the CPU id for the slow paths
//!   from the `percpu` area that axplat maintains
//!   (`axplat::percpu::this_cpu_id`), the CPU count from
//!   `axconfig::plat::MAX_CPU_NUM`;
//! - an IRQ-safe lock, `kspin::SpinNoIrq<()>`, for the buddy and the shared
//!   slot;
//! - virtual-to-physical translation through axplat's linear map, or an
//!   installed translator (hypervisors).
//!
//! - with feature `ipi`, drains of the other CPUs by inter-processor
//!   interrupt when memory is short (`ipi.rs`).
//!
//! axplat is used rather than axhal because axhal depends on axalloc, the
//! crate that embeds this allocator.

#[cfg(feature = "ipi")]
mod ipi;

#[cfg(feature = "ipi")]
use crate::platform::DrainHook;
use crate::platform::Platform;
use crate::sync::RawLock;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use kernel_guard::{BaseGuard, NoPreemptIrqSave};
use kspin::SpinNoIrq;
use memory_addr::{PhysAddr, VirtAddr};

/// Page size of every ArceOS platform.
pub const PAGE_SIZE: usize = 0x1000;

/// The global allocator of an ArceOS kernel.
pub type ArceOsHeap = crate::GlobalAllocator<PAGE_SIZE, ArceOsPlatform>;

/// Lock for the allocator's shared state: spins with local IRQs and
/// preemption off, so it is safe from any context, interrupt handlers
/// included.
pub struct IrqSafeLock(SpinNoIrq<()>);

// SAFETY: `SpinNoIrq` admits one holder at a time, with local IRQs and
// preemption off while held, so no handler on this CPU can wait for it.
unsafe impl RawLock for IrqSafeLock {
    const UNLOCKED: Self = Self(SpinNoIrq::new(()));

    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.0.lock();
        f()
    }
}

/// Keeps the current context on its CPU: IRQs and preemption stay off while
/// it lives, and are restored on drop.
pub struct CpuPin {
    state: <NoPreemptIrqSave as BaseGuard>::State,
}

impl Drop for CpuPin {
    #[inline]
    // The saved state is `()` where kernel_guard masks no IRQs (the host).
    #[allow(clippy::unit_arg)]
    fn drop(&mut self) {
        NoPreemptIrqSave::release(self.state);
    }
}

/// Translates a kernel virtual address of managed memory; installed by a
/// hypervisor whose memory is not in axplat's linear map.
pub trait VirtToPhys: Sync {
    /// The physical address of `vaddr`, if this translator knows it.
    fn virt_to_phys(&self, vaddr: VirtAddr) -> Option<PhysAddr>;
}

/// Holds a `*const &'static dyn VirtToPhys` (a thin pointer to a fat one).
static TRANSLATOR: AtomicPtr<&'static dyn VirtToPhys> = AtomicPtr::new(core::ptr::null_mut());

/// Installs `translator` for every later `virt_to_phys` (call before
/// `init`).
pub fn set_translator(translator: &'static &'static dyn VirtToPhys) {
    TRANSLATOR.store(
        core::ptr::from_ref(translator).cast_mut(),
        Ordering::Release,
    );
}

/// The calling CPU's slot of the heap holding the hints (0: not yet set):
/// read by the fast paths with one per-CPU load.
#[percpu::def_percpu]
static SLOT_HINT: usize = 0;

/// Whether an allocator instance holds the slot hints.
static HINTS_CLAIMED: AtomicBool = AtomicBool::new(false);

/// The ArceOS platform.
pub struct ArceOsPlatform;

// SAFETY: while a `CpuPin` lives, local interrupts and preemption are off on
// this CPU, so no other context runs on it until the pin drops; other CPUs
// read their own ids from their per-CPU areas (set by axplat at boot, before
// axruntime initialises the heap), and every id is below MAX_CPU_NUM (else
// `None`). The slot hint is a per-CPU word only its CPU writes, claimed by
// one instance at a time (`HINTS_CLAIMED`) and zeroed when released.
// `IrqSafeLock` is a spin lock that masks interrupts.
unsafe impl Platform for ArceOsPlatform {
    type Lock = IrqSafeLock;
    type Pin = CpuPin;

    #[inline]
    fn pin() -> CpuPin {
        CpuPin {
            state: NoPreemptIrqSave::acquire(),
        }
    }

    #[inline]
    fn cpu_id(_pin: &CpuPin) -> Option<usize> {
        let id = axplat::percpu::this_cpu_id();
        (id < axconfig::plat::MAX_CPU_NUM).then_some(id)
    }

    fn max_cpus() -> usize {
        axconfig::plat::MAX_CPU_NUM
    }

    const SLOT_HINTS: bool = true;

    fn claim_slot_hints() -> bool {
        // Every CPU's word starts at 0 and `release_slot_hints` puts it back.
        HINTS_CLAIMED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    fn release_slot_hints() {
        for cpu in 0..axconfig::plat::MAX_CPU_NUM {
            // SAFETY: the per-CPU areas are set up before the heap is (the
            // hints' claimant is being dropped, so it was initialised), and
            // no CPU reads the hints of an instance being dropped.
            unsafe { *SLOT_HINT.remote_ref_mut_raw(cpu) = 0 };
        }
        HINTS_CLAIMED.store(false, Ordering::Release);
    }

    #[inline(always)]
    fn slot_hint(_pin: &CpuPin) -> usize {
        // SAFETY: the pin keeps preemption and IRQs off, so this context
        // stays on the CPU whose word it reads.
        unsafe { SLOT_HINT.read_current_raw() }
    }

    #[inline(always)]
    fn set_slot_hint(_pin: &CpuPin, addr: usize) {
        // SAFETY: as in `slot_hint`; only this CPU writes its word while
        // the hints are held.
        unsafe { SLOT_HINT.write_current_raw(addr) }
    }

    #[cfg(feature = "ipi")]
    fn register_instance(hook: DrainHook) {
        ipi::register(hook);
    }

    #[cfg(feature = "ipi")]
    fn unregister_instance(instance: *const ()) {
        ipi::unregister(instance);
    }

    #[cfg(feature = "ipi")]
    fn drain_other_cpus() -> bool {
        ipi::drain_other_cpus()
    }

    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        let translator = TRANSLATOR.load(Ordering::Acquire);
        // SAFETY: only `set_translator` stores here, from a `&'static`.
        if let Some(t) = unsafe { translator.as_ref() }
            && let Some(paddr) = t.virt_to_phys(vaddr)
        {
            return paddr;
        }
        axplat::mem::virt_to_phys(vaddr)
    }
}

/// `region` as the byte slice the allocator takes.
///
/// # Safety
/// `[start, start + size)` is valid, writable memory that nothing else uses,
/// for as long as the allocator lives.
pub unsafe fn region<'a>(start: VirtAddr, size: usize) -> &'a mut [u8] {
    // SAFETY: caller contract.
    unsafe { core::slice::from_raw_parts_mut(start.as_mut_ptr(), size) }
}
