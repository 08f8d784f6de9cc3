//! `buddy-slab` backend: this repository's buddy page allocator with per-CPU
//! slab caches, bound to ArceOS by the core crate's `arceos` feature
//! (`buddy_slab_allocator::arceos`: kspin locks, NoPreemptIrqSave pinning,
//! percpu CPU ids through axplat, axconfig's CPU count).

use core::alloc::Layout;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use axallocator::{AllocError, AllocResult};
use buddy_slab_allocator::arceos::{ArceOsHeap, ArceOsPlatform, region};
use buddy_slab_allocator::{AllocError as CoreError, Platform};
use kspin::SpinNoIrq;
use memory_addr::{PhysAddr, VirtAddr};

use crate::PAGE_SIZE;

/// The core allocator, bound to ArceOS.
pub type DefaultByteAllocator = ArceOsHeap;

/// Adapts the hypervisor's translator (kept in `TRANSLATOR`) to the core's.
#[cfg(feature = "hv")]
struct HvTranslator;

/// The hypervisor's translator. A leaf lock, held only to copy the
/// reference in or out: never while the translator runs or another lock
/// is taken, so the core may translate under its buddy lock.
#[cfg(feature = "hv")]
static TRANSLATOR: SpinNoIrq<Option<&'static dyn crate::AddrTranslator>> = SpinNoIrq::new(None);

#[cfg(feature = "hv")]
impl buddy_slab_allocator::arceos::VirtToPhys for HvTranslator {
    fn virt_to_phys(&self, vaddr: VirtAddr) -> Option<PhysAddr> {
        let translator = (*TRANSLATOR.lock())?;
        translator
            .virt_to_phys(vaddr.as_usize())
            .map(PhysAddr::from)
    }
}

/// Installs the hypervisor's address translator for every later
/// translation of the core (one for the whole kernel: the core's ArceOS
/// platform has a single translator).
#[cfg(feature = "hv")]
pub fn set_addr_translator(translator: &'static dyn crate::AddrTranslator) {
    static ADAPTER: &dyn buddy_slab_allocator::arceos::VirtToPhys = &HvTranslator;
    *TRANSLATOR.lock() = Some(translator);
    buddy_slab_allocator::arceos::set_translator(&ADAPTER);
}

/// Physical end (exclusive) of DMA32 memory.
const DMA32_END: PhysAddr = PhysAddr::from_usize(1 << 32);

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
    /// Never dropped: ArceOS keeps its heap in a `static`, and without
    /// drop glue `GlobalAllocator::new()` stays usable in a `const` (as
    /// with the stock backends). The core unregisters an instance from its
    /// platform on drop (the ArceOS platform keeps one, for `ipi-reclaim`'s
    /// drains).
    inner: ManuallyDrop<DefaultByteAllocator>,
    /// `(start_vaddr, size)` of the part of the first region held back
    /// until paging is up (see [`BOOT_MAPPED_BYTES`]); size 0 once added.
    deferred: SpinNoIrq<(usize, usize)>,
    /// Set once the deferred part has been added.
    grown: AtomicBool,
}

/// RAM the boot page tables map (the knob `arceos.boot-mapped-bytes`: 1 GiB
/// by default, as riscv64-qemu-virt and aarch64-qemu-virt map until axmm
/// builds the full linear map; 512 GiB for x86-pc from
/// configs/platforms/x86-pc.toml). axruntime hands the heap over before
/// axmm runs, and the buddy prefers high memory, so with more RAM than that
/// it handed out pages that were not mapped yet and the kernel faulted in
/// axmm's first page-table write. The first region is therefore cut at its
/// first boundary of this size (the linear-map offsets are aligned to it,
/// so a virtual boundary is a physical one); the rest is added the first
/// time the heap runs out, long after paging is up (axmm needs 2 MiB of
/// page tables per GiB of RAM: 128 MiB for 64 GiB).
const BOOT_MAPPED_BYTES: usize = buddy_slab_allocator::config::arceos::BOOT_MAPPED_BYTES;

/// A first part smaller than this is not worth the wait: no cut.
const MIN_FIRST_PART_BYTES: usize = 64 << 20;

impl Backend {
    pub const NAME: &'static str = "buddy-slab";

    pub const fn new() -> Self {
        Self {
            inner: ManuallyDrop::new(DefaultByteAllocator::new()),
            deferred: SpinNoIrq::new((0, 0)),
            grown: AtomicBool::new(false),
        }
    }

    pub fn init(&self, start_vaddr: usize, size: usize) {
        let cut = (start_vaddr | (BOOT_MAPPED_BYTES - 1)).wrapping_add(1);
        let first = if cut > start_vaddr
            && cut - start_vaddr >= MIN_FIRST_PART_BYTES
            && cut - start_vaddr < size
        {
            *self.deferred.lock() = (cut, size - (cut - start_vaddr));
            info!(
                "axalloc: buddy-slab holds back [{cut:#x}, {:#x}) until the heap first runs out",
                start_vaddr + size
            );
            cut - start_vaddr
        } else {
            size
        };
        // SAFETY: the caller of `GlobalAllocator::init` hands over the region
        // (valid, writable, unused by anything else, for good); the backend
        // lives in a `static`, so it never moves; init runs once at boot.
        let result = unsafe { self.inner.init(region(VirtAddr::from(start_vaddr), first)) };
        if let Err(e) = result {
            panic!("axalloc: buddy-slab cannot manage [{start_vaddr:#x}, +{first:#x}): {e}");
        }
    }

    /// Adds the held-back part of the first region, if any; says whether a
    /// retry may now succeed (also when another CPU just added it).
    #[cold]
    fn add_deferred(&self) -> bool {
        let mut deferred = self.deferred.lock();
        let (start, size) = core::mem::take(&mut *deferred);
        if size == 0 {
            return self.grown.load(Ordering::Acquire);
        }
        // SAFETY: the tail of the region handed over in `init`, not given to
        // the core yet (`deferred` is emptied under its lock).
        match unsafe { self.inner.add_region(region(VirtAddr::from(start), size)) } {
            Ok(()) => info!("axalloc: buddy-slab adds the held-back [{start:#x}, +{size:#x})"),
            Err(e) => error!("axalloc: buddy-slab cannot add [{start:#x}, +{size:#x}): {e}"),
        }
        self.grown.store(true, Ordering::Release);
        true
    }

    /// Runs `f`; if it finds no memory (or an address in the held-back
    /// part), adds the held-back part and runs it once more.
    #[inline]
    fn or_grow<T>(&self, f: impl Fn() -> Result<T, CoreError>) -> AllocResult<T> {
        match f() {
            Err(CoreError::NoMemory | CoreError::NotAllocated) if self.add_deferred() => f(),
            r => r,
        }
        .map_err(map_err)
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
        self.or_grow(|| self.inner.alloc(layout))
    }

    /// # Safety
    ///
    /// `pos`/`layout` are a live allocation from [`Backend::alloc`].
    /// Whether the core accepted the free (a rejected one changed nothing
    /// and is reported by the core).
    pub unsafe fn dealloc(&self, pos: NonNull<u8>, layout: Layout) -> bool {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.try_dealloc(pos, layout) }.is_ok()
    }

    pub fn alloc_pages(&self, num_pages: usize, align_pow2: usize) -> AllocResult<usize> {
        self.or_grow(|| self.inner.alloc_pages(num_pages, align_pow2))
    }

    pub fn alloc_pages_at(
        &self,
        start: usize,
        num_pages: usize,
        align_pow2: usize,
    ) -> AllocResult<usize> {
        if !align_pow2.is_power_of_two() || !start.is_multiple_of(align_pow2) {
            return Err(AllocError::InvalidParam);
        }
        // The core reclaims per-CPU caches before it reports NoMemory.
        self.or_grow(|| self.inner.alloc_pages_at(start, num_pages))
    }

    /// Pages whose physical addresses all lie below 4 GiB.
    ///
    /// The core serves them from the sections below its lowmem limit (a
    /// knob, `lowmem-limit`, 4 GiB by default), checking the first and last
    /// byte through the platform's translation. DMA32 means below 4 GiB
    /// whatever the knob says, so a run that ends above is given back.
    pub fn alloc_dma32_pages(&self, num_pages: usize, align_pow2: usize) -> AllocResult<usize> {
        let addr = self.or_grow(|| self.inner.alloc_pages_lowmem_vaddr(num_pages, align_pow2))?;
        let last = addr + (num_pages * PAGE_SIZE - 1);
        let below = |vaddr| ArceOsPlatform::virt_to_phys(vaddr) < DMA32_END;
        if below(addr) && below(last) {
            return Ok(addr.as_usize());
        }
        error!("axalloc: buddy-slab lowmem run at {addr:#x} ends above 4 GiB (lowmem-limit?)");
        // SAFETY: the run was allocated just above with this count and has
        // not been handed out.
        unsafe { self.dealloc_pages(addr.as_usize(), num_pages) };
        Err(AllocError::NoMemory)
    }

    /// Frees a page run; says whether the core took it back. The core
    /// validates every page free (double, foreign, interior, wrong count)
    /// and changes nothing for a bad one.
    ///
    /// # Safety
    ///
    /// The pages were returned by [`Backend::alloc_pages`],
    /// [`Backend::alloc_pages_at`] or [`Backend::alloc_dma32_pages`] with
    /// this count.
    pub unsafe fn dealloc_pages(&self, pos: usize, num_pages: usize) -> bool {
        // SAFETY: forwarded caller contract.
        match unsafe { self.inner.dealloc_pages(pos, num_pages) } {
            Ok(()) => true,
            Err(e) => {
                // The published API cannot report it; the core logged it.
                error!("axalloc: rejected dealloc_pages({pos:#x}, {num_pages}): {e}");
                false
            }
        }
    }

    /// Pages in use (runs and slabs), in bytes.
    pub fn used_bytes(&self) -> usize {
        self.inner.allocated_bytes()
    }

    /// Free managed bytes plus the held-back part (its metadata included).
    pub fn available_bytes(&self) -> usize {
        self.inner
            .managed_bytes()
            .saturating_sub(self.inner.allocated_bytes())
            + self.deferred.lock().1
    }

    pub fn used_pages(&self) -> usize {
        self.used_bytes() / PAGE_SIZE
    }

    pub fn available_pages(&self) -> usize {
        self.available_bytes() / PAGE_SIZE
    }
}
