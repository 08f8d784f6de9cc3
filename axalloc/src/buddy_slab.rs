//! `buddy-slab` backend: this repository's buddy page allocator with per-CPU
//! slab caches, bound to ArceOS by the core crate's `arceos` feature
//! (`buddy_slab_allocator::arceos`: kspin locks, NoPreemptIrqSave pinning,
//! percpu CPU ids through axplat, axconfig's CPU count).

use core::alloc::Layout;
use core::ptr::NonNull;

use axallocator::{AllocError, AllocResult};
use buddy_slab_allocator::AllocError as CoreError;
use buddy_slab_allocator::arceos::{ArceOsHeap, region};
use memory_addr::VirtAddr;

use crate::PAGE_SIZE;

/// The core allocator, bound to ArceOS.
pub type DefaultByteAllocator = ArceOsHeap;

/// Adapts the hypervisor's translator (kept in `TRANSLATOR`) to the core's.
#[cfg(feature = "hv")]
struct HvTranslator;

#[cfg(feature = "hv")]
static TRANSLATOR: kspin::SpinNoIrq<Option<&'static dyn crate::AddrTranslator>> =
    kspin::SpinNoIrq::new(None);

#[cfg(feature = "hv")]
impl buddy_slab_allocator::arceos::VirtToPhys for HvTranslator {
    fn virt_to_phys(&self, vaddr: VirtAddr) -> Option<memory_addr::PhysAddr> {
        let t = (*TRANSLATOR.lock())?;
        t.virt_to_phys(vaddr.as_usize())
            .map(memory_addr::PhysAddr::from)
    }
}

/// Installs the hypervisor's address translator (before `init`).
#[cfg(feature = "hv")]
pub fn set_addr_translator(translator: &'static dyn crate::AddrTranslator) {
    static ADAPTER: &dyn buddy_slab_allocator::arceos::VirtToPhys = &HvTranslator;
    *TRANSLATOR.lock() = Some(translator);
    buddy_slab_allocator::arceos::set_translator(&ADAPTER);
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
        let result = unsafe { self.inner.init(region(VirtAddr::from(start_vaddr), size)) };
        if let Err(e) = result {
            panic!("axalloc: buddy-slab cannot manage [{start_vaddr:#x}, +{size:#x}): {e}");
        }
    }

    pub fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult {
        // SAFETY: as in `init`: the caller hands the region over for good.
        unsafe {
            self.inner
                .add_region(region(VirtAddr::from(start_vaddr), size))
        }
        .map_err(map_err)
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
        // The core reclaims per-CPU caches before it reports NoMemory.
        self.inner.alloc_pages_at(start, num_pages).map_err(map_err)
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
