//! `buddy-slab` backend: this repository's buddy page allocator with
//! per-CPU slab and page caches, bound to the tgoskits line by the core's
//! `tgoskits` feature (`buddy_slab_allocator::tgoskits`: ax-sync guards,
//! CPU slots bound in ax-percpu areas, the `SMP` CPU count).
//!
//! The allocator takes no lock of its own on the hot paths: allocations
//! and frees by a CPU of its own blocks touch only that CPU's slot (IRQs
//! and preemption off), frees of another CPU's objects are one atomic OR,
//! and the buddy lock is taken only to refill or drain a cache in batches.

use core::alloc::Layout;
use core::ptr::NonNull;

use buddy_slab_allocator::AllocError as CoreError;
use buddy_slab_allocator::tgoskits::{self, TgoskitsHeap, region};

use crate::{AllocError, AllocResult, PAGE_SIZE};

/// The core allocator, bound to the tgoskits line.
pub type DefaultByteAllocator = TgoskitsHeap;

/// Physical end (exclusive) of DMA32 memory.
const DMA32_END: usize = 1 << 32;

/// Maps the core's errors onto the crate's.
fn map_err(e: CoreError) -> AllocError {
    match e {
        CoreError::InvalidParam => AllocError::InvalidParam,
        CoreError::MemoryOverlap => AllocError::MemoryOverlap,
        CoreError::NoMemory | CoreError::TooManyRegions => AllocError::NoMemory,
        CoreError::NotAllocated => AllocError::NotAllocated,
    }
}

/// The kernel's translation of the heap's addresses: ax-plat's linear map
/// on bare metal; on a host (tests, std-compat builds) memory is its own
/// physical address.
fn virt_to_phys(vaddr: usize) -> usize {
    #[cfg(target_os = "none")]
    {
        ax_plat::mem::virt_to_phys(vaddr.into()).as_usize()
    }
    #[cfg(not(target_os = "none"))]
    {
        vaddr
    }
}

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

    pub fn init(&self, start_vaddr: usize, size: usize) -> AllocResult {
        // First: the region is split at 4 GiB by its physical address.
        tgoskits::set_virt_to_phys(virt_to_phys);
        // SAFETY: the caller of `GlobalAllocator::init` hands the region
        // over for good (valid, writable, used by nothing else); the
        // backend lives in the `GLOBAL_ALLOCATOR` static, so it never
        // moves; ax-runtime calls init once, before any allocation.
        unsafe { self.inner.init(region(start_vaddr, size)) }.map_err(map_err)
    }

    pub fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult {
        // SAFETY: as in `init`: the caller hands the region over for good.
        match unsafe { self.inner.add_region(region(start_vaddr, size)) } {
            Ok(()) => Ok(()),
            // Too small to hold a page and its metadata: ax-runtime hands
            // over every free region (a 32 KiB hole on x86_64 QEMU) and
            // stops the boot on an error; the published backend skips such
            // regions too.
            Err(CoreError::InvalidParam) => {
                warn!("ax-alloc: buddy-slab leaves out [{start_vaddr:#x}, +{size:#x}): too small");
                Ok(())
            }
            Err(CoreError::TooManyRegions) => {
                error!(
                    "ax-alloc: buddy-slab leaves out [{start_vaddr:#x}, +{size:#x}): section table full (max-sections)"
                );
                Ok(())
            }
            Err(e) => Err(map_err(e)),
        }
    }

    #[inline]
    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        self.inner.alloc(layout).map_err(map_err)
    }

    /// Whether the core took the block back (a bad free changes nothing
    /// and is reported by the core).
    ///
    /// # Safety
    ///
    /// `pos`/`layout` are a live allocation from [`Backend::alloc`].
    #[inline]
    pub unsafe fn dealloc(&self, pos: NonNull<u8>, layout: Layout) -> bool {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.try_dealloc(pos, layout) }.is_ok()
    }

    #[inline]
    pub fn alloc_pages(&self, num_pages: usize, alignment: usize) -> AllocResult<usize> {
        self.inner
            .alloc_pages(num_pages, alignment)
            .map_err(map_err)
    }

    /// Pages whose physical addresses all lie below 4 GiB.
    ///
    /// The core serves them from its sections below the lowmem limit (the
    /// knob `lowmem-limit`, 4 GiB by default), checking the first and last
    /// byte through the translation; DMA32 means below 4 GiB whatever the
    /// knob says, so a run that ends above is given back.
    pub fn alloc_dma32_pages(&self, num_pages: usize, alignment: usize) -> AllocResult<usize> {
        let addr = self
            .inner
            .alloc_pages_lowmem(num_pages, alignment)
            .map_err(map_err)?;
        let last = addr + (num_pages * PAGE_SIZE - 1);
        if virt_to_phys(addr) < DMA32_END && virt_to_phys(last) < DMA32_END {
            return Ok(addr);
        }
        error!("ax-alloc: buddy-slab lowmem run at {addr:#x} ends above 4 GiB (lowmem-limit?)");
        // SAFETY: allocated just above with this count, never handed out.
        unsafe { self.dealloc_pages(addr, num_pages) };
        Err(AllocError::NoMemory)
    }

    /// The pages at exactly `[start, start + num_pages * 4096)`; the core
    /// splits the free blocks around them, after reclaiming its caches if a
    /// page of the range is cached.
    pub fn alloc_pages_at(
        &self,
        start: usize,
        num_pages: usize,
        alignment: usize,
    ) -> AllocResult<usize> {
        if !(alignment == 0 || alignment.is_power_of_two())
            || !start.is_multiple_of(alignment.max(1))
        {
            return Err(AllocError::InvalidParam);
        }
        self.inner.alloc_pages_at(start, num_pages).map_err(map_err)
    }

    /// Frees a page run; says whether the core took it back. The core
    /// checks every page free (double, foreign, interior, wrong count) and
    /// changes nothing for a bad one.
    ///
    /// # Safety
    ///
    /// The pages were returned by one of the page allocations with this
    /// count.
    #[inline]
    pub unsafe fn dealloc_pages(&self, pos: usize, num_pages: usize) -> bool {
        // SAFETY: forwarded caller contract.
        match unsafe { self.inner.dealloc_pages(pos, num_pages) } {
            Ok(()) => true,
            Err(e) => {
                // The API cannot report it; the core counted and logged it.
                error!("ax-alloc: rejected dealloc_pages({pos:#x}, {num_pages}): {e}");
                false
            }
        }
    }

    /// Pages in use (runs and slabs), in bytes.
    pub fn used_bytes(&self) -> usize {
        self.inner.allocated_bytes()
    }

    /// Managed pages not in use (per-CPU page caches included), in bytes.
    pub fn available_bytes(&self) -> usize {
        self.inner
            .managed_bytes()
            .saturating_sub(self.inner.allocated_bytes())
    }
}

/// Gives the calling CPU its own slot of the core (see
/// `buddy_slab_allocator::tgoskits::bind_current_cpu`).
pub fn init_percpu(cpu_id: usize) {
    if let Err(e) = tgoskits::bind_current_cpu(cpu_id) {
        // Sound either way: the CPU uses the shared slot.
        warn!("ax-alloc: CPU {cpu_id} keeps the shared slot: {e}");
    }
}
