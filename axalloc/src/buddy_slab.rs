//! `buddy-slab` backend: this repository's buddy page allocator with per-CPU
//! slab caches (`buddy_slab_allocator::GlobalAllocator`), bound to ArceOS.
//!
//! The binding ([`ArceOsPlatform`]) supplies what the core needs from the
//! kernel:
//! - CPU pinning: a `kernel_guard::NoPreemptIrqSave` guard, so neither
//!   preemption nor a local interrupt can run another allocator call on the
//!   same CPU while the core touches that CPU's slot;
//! - the CPU id from axplat's per-CPU area, and `MAX_CPU_NUM` from axconfig;
//! - an IRQ-safe lock (`kspin::SpinNoIrq<()>`) for the shared buddy;
//! - virtual-to-physical translation (axplat's linear map, or the
//!   hypervisor's translator under `hv`).
//!
//! axplat is used instead of axhal because axhal depends on axalloc.

use core::alloc::Layout;
use core::ptr::NonNull;

use axallocator::{AllocError, AllocResult};
use buddy_slab_allocator::sync::RawLock;
use buddy_slab_allocator::{AllocError as CoreError, Platform};
use kernel_guard::{BaseGuard, NoPreemptIrqSave};
use kspin::SpinNoIrq;

use crate::PAGE_SIZE;

/// The core allocator, bound to ArceOS.
pub type DefaultByteAllocator = buddy_slab_allocator::GlobalAllocator<PAGE_SIZE, ArceOsPlatform>;

/// Lock for the core's shared state: spins with local IRQs and preemption
/// off, so it is safe from any context, interrupt handlers included.
pub struct IrqSafeLock(SpinNoIrq<()>);

impl RawLock for IrqSafeLock {
    const UNLOCKED: Self = Self(SpinNoIrq::new(()));

    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.0.lock();
        f()
    }
}

/// The ArceOS platform of the core allocator.
pub struct ArceOsPlatform;

/// Keeps the current context on its CPU: IRQs and preemption stay off while
/// it lives, and are restored on drop.
pub struct CpuPin {
    state: <NoPreemptIrqSave as BaseGuard>::State,
}

impl Drop for CpuPin {
    #[inline]
    fn drop(&mut self) {
        NoPreemptIrqSave::release(self.state);
    }
}

// SAFETY: while a `CpuPin` lives, local interrupts and preemption are
// disabled on this CPU, so no other context can run on it until the pin is
// dropped; other CPUs read other ids from their own per-CPU areas, set by
// axplat at boot (before axruntime initialises the heap), and every id is
// below MAX_CPU_NUM. `IrqSafeLock` is a spin lock (mutual exclusion) that
// masks interrupts.
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

    fn virt_to_phys(vaddr: usize) -> usize {
        #[cfg(feature = "hv")]
        if let Some(translator) = *TRANSLATOR.lock() {
            if let Some(paddr) = translator.virt_to_phys(vaddr) {
                return paddr;
            }
        }
        axplat::mem::virt_to_phys(vaddr.into()).as_usize()
    }
}

#[cfg(feature = "hv")]
static TRANSLATOR: SpinNoIrq<Option<&'static dyn crate::AddrTranslator>> = SpinNoIrq::new(None);

/// Installs the hypervisor's address translator (before `init`).
#[cfg(feature = "hv")]
pub fn set_addr_translator(translator: &'static dyn crate::AddrTranslator) {
    *TRANSLATOR.lock() = Some(translator);
}

/// Maps the core's errors onto axallocator's (the API's error type).
fn map_err(e: CoreError) -> AllocError {
    match e {
        CoreError::InvalidParam => AllocError::InvalidParam,
        CoreError::MemoryOverlap => AllocError::MemoryOverlap,
        CoreError::NoMemory | CoreError::TooManyRegions => AllocError::NoMemory,
        CoreError::NotAllocated => AllocError::NotAllocated,
    }
}

/// Memory given to the core must be writable for the rest of the kernel's
/// life; axruntime passes free RAM regions from the linear map.
pub struct Backend {
    inner: DefaultByteAllocator,
}

impl Backend {
    pub const NAME: &'static str = "buddy-slab";

    pub const fn new() -> Self {
        Self {
            inner: DefaultByteAllocator::new(),
        }
    }

    pub fn init(&self, start_vaddr: usize, size: usize) {
        // SAFETY: the caller of `GlobalAllocator::init` hands over the region
        // (valid, writable, unused by anything else, for good); the backend
        // lives in a `static`, so it never moves; init runs once at boot.
        let result = unsafe { self.inner.init(region(start_vaddr, size)) };
        if let Err(e) = result {
            panic!("axalloc: buddy-slab cannot manage [{start_vaddr:#x}, +{size:#x}): {e}");
        }
    }

    pub fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult {
        // SAFETY: as in `init`: the caller hands the region over for good.
        unsafe { self.inner.add_region(region(start_vaddr, size)) }.map_err(map_err)
    }

    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        self.inner.alloc(layout).map_err(map_err)
    }

    /// # Safety
    ///
    /// `pos`/`layout` are a live allocation from [`Backend::alloc`].
    pub unsafe fn dealloc(&self, pos: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.dealloc(pos, layout) }
    }

    pub fn alloc_pages(&self, num_pages: usize, align_pow2: usize) -> AllocResult<usize> {
        self.inner
            .alloc_pages(num_pages, align_pow2)
            .map_err(map_err)
    }

    pub fn alloc_pages_at(
        &self,
        start: usize,
        num_pages: usize,
        align_pow2: usize,
    ) -> AllocResult<usize> {
        if !align_pow2.is_power_of_two() || start % align_pow2 != 0 {
            return Err(AllocError::InvalidParam);
        }
        match self.inner.alloc_pages_at(start, num_pages) {
            // Recently freed pages may sit in this CPU's page cache, where the
            // buddy cannot see them: return the cache and look again. (Pages
            // cached by other CPUs stay invisible until those CPUs drain.)
            Err(CoreError::NoMemory) => {
                self.inner.drain();
                self.inner.alloc_pages_at(start, num_pages).map_err(map_err)
            }
            other => other.map_err(map_err),
        }
    }

    /// # Safety
    ///
    /// The pages were returned by [`Backend::alloc_pages`] /
    /// [`Backend::alloc_pages_at`] with this count.
    pub unsafe fn dealloc_pages(&self, pos: usize, num_pages: usize) {
        // SAFETY: forwarded caller contract.
        if let Err(e) = unsafe { self.inner.dealloc_pages(pos, num_pages) } {
            // The published API cannot report it; the core left its state intact.
            error!("axalloc: rejected dealloc_pages({pos:#x}, {num_pages}): {e}");
        }
    }

    /// Pages in use (runs and slabs), in bytes.
    pub fn used_bytes(&self) -> usize {
        self.inner.allocated_bytes()
    }

    pub fn available_bytes(&self) -> usize {
        self.inner
            .managed_bytes()
            .saturating_sub(self.inner.allocated_bytes())
    }

    pub fn used_pages(&self) -> usize {
        self.used_bytes() / PAGE_SIZE
    }

    pub fn available_pages(&self) -> usize {
        self.available_bytes() / PAGE_SIZE
    }
}

/// The byte slice `[start_vaddr, start_vaddr + size)`.
///
/// # Safety
///
/// The range is valid, writable memory that nothing else uses.
unsafe fn region<'a>(start_vaddr: usize, size: usize) -> &'a mut [u8] {
    // SAFETY: caller contract.
    unsafe { core::slice::from_raw_parts_mut(start_vaddr as *mut u8, size) }
}
