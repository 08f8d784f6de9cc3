//! ArceOS global memory allocator of the tgoskits line: a drop-in
//! replacement for the published `ax-alloc` 0.9.2, with this project's
//! buddy + per-CPU slab allocator as the `buddy-slab` backend.
//!
//! The public API is the published crate's for every feature (checked item
//! by item by `tests/api.rs`, which is also compiled against the published
//! crate); a kernel selects this crate with
//! `[patch.crates-io] ax-alloc = { path = ".../ax-alloc" }`.
//!
//! # Features
//!
//! | feature | selects |
//! |---|---|
//! | `buddy-slab` | this project's allocator: buddy pages, per-CPU slab caches and page caches, lock-free remote frees, checked frees; `alloc_dma32_pages` and `alloc_pages_at` implemented. Every ax-runtime kernel has it on (axplat-dyn → axklib → `ax-alloc/buddy-slab`) |
//! | `tlsf` | the stock backend: a TLSF heap (`rlsf`) behind one IRQ-safe lock, pages carved from it. Wins over `buddy-slab` when both are on (as published), so a kernel selects it by enabling `ax-alloc/tlsf` |
//! | neither | a stub whose every operation panics (`name() == "stub"`), as published |
//! | `tracking` | `tracking`: a record (layout, backtrace, generation) per live allocation made through [`GlobalAlloc`], over either backend |
//! | `global-allocator` | the allocator is the Rust global allocator off `target_os = "none"` too (on bare metal it always is) |
//!
//! # Layers
//!
//! - This file is the policy layer, the same for every backend: the
//!   [`GlobalAllocator`] facade ax-runtime, ax-hal and ax-mm call, the
//!   [`AllocatorOps`] trait, per-[`UsageKind`] accounting, page reclaim
//!   (`reclaim.rs`), the `#[global_allocator]` static and the boot entry
//!   points [`global_init`], [`global_add_memory`], [`init_percpu_slab`].
//! - A backend module holds the mechanism: `buddy_slab` (the core's
//!   `TgoskitsHeap`, bound to the line by `buddy_slab_allocator::tgoskits`),
//!   `tlsf` (rlsf) or `stub`.
//! - `tracking` records allocations outside the backend's critical sections.
//!
//! # Memory pressure
//!
//! A byte or page allocation that finds no memory first has the backend
//! drain its own caches (the buddy-slab core returns the current CPU's and
//! the shared slot's cached slabs and pages, and has busy CPUs return
//! theirs, before it reports `NoMemory`), then calls the function given to
//! [`register_page_reclaim_fn`] under a lease and retries, with the
//! published crate's policy (at least 16 pages asked, at most four rounds,
//! a round that freed nothing ends them). `alloc_pages_at` does not call
//! the callback, as published.
//!
//! # Usage accounting
//!
//! [`Usages`] counts live bytes per [`UsageKind`]: byte allocations count
//! their `layout.size()` as [`UsageKind::RustHeap`], page allocations
//! `num_pages * PAGE_SIZE` under the kind the caller names (every kind:
//! the published TLSF backend skips `RustHeap` pages on allocation but not
//! on free). Memory a backend takes internally (slab pages, metadata) is
//! no usage. A free the buddy-slab backend refuses (double, foreign,
//! interior, wrong layout or page count) moves no counter; TLSF cannot
//! tell, so every free counts there; a counter never goes below zero.
//!
//! `used_bytes` / `available_bytes` (and the page figures, in whole pages)
//! are the backend's: with buddy-slab the pages handed out as runs or held
//! by slabs, and the managed pages minus those (pages in per-CPU page
//! caches count as available: they are reclaimed before an allocation
//! fails); with TLSF the bytes handed out and the rest of the heap.
//!
//! # Where this crate differs from the published one
//!
//! - buddy-slab: the backend is this project's allocator, not
//!   buddy-slab-allocator 0.6 behind one lock per call;
//!   [`GlobalAllocator::name`] is `"buddy-slab"` (published:
//!   `"buddy-slab-allocator"`), so the boot line tells them apart;
//!   [`DefaultByteAllocator`] is the core's `TgoskitsHeap`;
//!   `alloc_pages_at` works (published: panics); regions too small to
//!   manage, or beyond the core's section table, are left out with a log
//!   line instead of an error (published: skipped when no 2 MiB-aligned
//!   part remains), so ax-runtime's boot does not stop on them.
//! - tlsf: `alloc_dma32_pages` and `alloc_pages_at` return
//!   `InvalidParam` (published: panic).
//! - The [`GlobalAlloc`] impl ignores a null `dealloc` (published: panics).
//! - `tracking::allocations_in` visits nothing when tracking is disabled
//!   (published: panics); a record goes when its block is freed, enabled
//!   or not.
//!
//! # Boot log
//!
//! ax-runtime prints `use NAME allocator.`; [`global_init`] logs
//! `initialize global allocator at: [0x.., 0x..)` (debug), as published.

#![no_std]
// Host tests print and use std's collections.
#![cfg_attr(test, allow(unused_crate_dependencies))]

#[cfg(test)]
extern crate std;

#[allow(unused_imports)]
#[macro_use]
extern crate log;
extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use strum::{IntoStaticStr, VariantArray};

/// Size of a page handed out by the page interface, in bytes.
const PAGE_SIZE: usize = 0x1000;

mod reclaim;
pub use reclaim::{PageReclaimFn, register_page_reclaim_fn, try_page_reclaim};

mod page;
pub use page::GlobalPage;

// One source for both ArceOS lines; this line's guard, lock and per-CPU
// flag are in tracking_line.rs.
#[cfg(feature = "tracking")]
#[path = "../../axalloc/src/tracking.rs"]
pub mod tracking;
#[cfg(feature = "tracking")]
mod tracking_line;

cfg_if::cfg_if! {
    if #[cfg(tlsf)] {
        mod tlsf;
        use tlsf as imp;
    } else if #[cfg(buddy_slab)] {
        mod buddy_slab;
        use buddy_slab as imp;
    } else {
        mod stub;
        use stub as imp;
    }
}

/// The byte allocator type of the selected backend (buddy-slab: the core's
/// `TgoskitsHeap`; tlsf: `rlsf::Tlsf<'static, u32, u32, 28, 32>`; stub: `()`).
pub use imp::DefaultByteAllocator;

/// Kinds of memory usage for tracking.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, VariantArray, IntoStaticStr)]
pub enum UsageKind {
    /// Heap allocations made by kernel Rust code.
    RustHeap,
    /// Virtual memory, usually used for user space.
    VirtMem,
    /// Page cache for file systems.
    PageCache,
    /// Page tables.
    PageTable,
    /// Page-backed kernel task stacks.
    TaskStack,
    /// DMA memory.
    Dma,
    /// Memory used by [`GlobalPage`].
    Global,
}

const NR_KINDS: usize = UsageKind::VARIANTS.len();

/// Statistics of memory usages: live bytes per [`UsageKind`].
#[derive(Clone, Copy)]
pub struct Usages([usize; NR_KINDS]);

impl Usages {
    /// Get the memory usage for a specific kind.
    pub fn get(&self, kind: UsageKind) -> usize {
        self.0[kind as usize]
    }
}

impl fmt::Debug for Usages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UsageStats");
        for &kind in UsageKind::VARIANTS {
            d.field(kind.into(), &self.get(kind));
        }
        d.finish()
    }
}

/// The error type used for allocation operations in `ax-alloc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// Invalid size, alignment, or other input parameter.
    #[error("invalid allocation parameter")]
    InvalidParam,
    /// The allocator has already been initialized.
    #[error("allocator is already initialized")]
    AlreadyInitialized,
    /// A region overlaps with an existing managed region.
    #[error("memory region overlaps an existing allocation region")]
    MemoryOverlap,
    /// Not enough memory is available to satisfy the request.
    #[error("not enough memory")]
    NoMemory,
    /// Attempted to deallocate memory that was not allocated.
    #[error("memory was not allocated by this allocator")]
    NotAllocated,
    /// The allocator has not been initialized.
    #[error("allocator is not initialized")]
    NotInitialized,
    /// The requested address or entity was not found.
    #[error("allocation was not found")]
    NotFound,
}

/// A [`Result`] alias with [`AllocError`] as the error type.
pub type AllocResult<T = ()> = Result<T, AllocError>;

/// Unified allocator operations provided by all `ax-alloc` backends.
pub trait AllocatorOps {
    /// Returns the allocator name.
    fn name(&self) -> &'static str;

    /// Initializes the allocator with the given region.
    fn init(&self, start_vaddr: usize, size: usize) -> AllocResult;

    /// Adds an extra memory region to the allocator.
    fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult;

    /// Allocates arbitrary bytes.
    fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>>;

    /// Deallocates a prior byte allocation.
    fn dealloc(&self, pos: NonNull<u8>, layout: Layout);

    /// Allocates contiguous pages.
    ///
    /// `align` is the requested byte alignment, not a log2/exponent.
    /// It must be a power-of-two byte alignment accepted by the backend page allocator.
    fn alloc_pages(&self, num_pages: usize, align: usize, kind: UsageKind) -> AllocResult<usize>;

    /// Allocates contiguous DMA32 pages.
    ///
    /// `align` is the requested byte alignment, not a log2/exponent.
    /// It must be a power-of-two byte alignment accepted by the backend page allocator.
    fn alloc_dma32_pages(
        &self,
        num_pages: usize,
        align: usize,
        kind: UsageKind,
    ) -> AllocResult<usize>;

    /// Allocates contiguous pages starting from the given address.
    ///
    /// `align` is the requested byte alignment, not a log2/exponent.
    /// It must be a power-of-two byte alignment accepted by the backend page allocator.
    fn alloc_pages_at(
        &self,
        start: usize,
        num_pages: usize,
        align: usize,
        kind: UsageKind,
    ) -> AllocResult<usize>;

    /// Deallocates a prior page allocation.
    fn dealloc_pages(&self, pos: usize, num_pages: usize, kind: UsageKind);

    /// Returns used byte count.
    fn used_bytes(&self) -> usize;

    /// Returns available byte count.
    fn available_bytes(&self) -> usize;

    /// Returns used page count.
    fn used_pages(&self) -> usize;

    /// Returns available page count.
    fn available_pages(&self) -> usize;

    /// Returns usage statistics.
    fn usages(&self) -> Usages;
}

/// Live counters behind [`Usages`]: one atomic per kind, so accounting
/// takes no lock. A snapshot of several kinds is not atomic as a whole;
/// each value is exact at the moment it is read.
struct UsageCounters([AtomicUsize; NR_KINDS]);

impl UsageCounters {
    const fn new() -> Self {
        Self([const { AtomicUsize::new(0) }; NR_KINDS])
    }

    #[inline]
    fn add(&self, kind: UsageKind, bytes: usize) {
        self.0[kind as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes `bytes` off `kind`, stopping at zero: a free the backend
    /// cannot check (TLSF) must not wrap the counter.
    #[inline]
    fn sub(&self, kind: UsageKind, bytes: usize) {
        let counter = &self.0[kind as usize];
        let mut old = counter.load(Ordering::Relaxed);
        loop {
            let Some(new) = old.checked_sub(bytes) else {
                counter.store(0, Ordering::Relaxed);
                error!("ax-alloc: usage of {kind:?} below zero: a double or mismatched free");
                return;
            };
            match counter.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => old = now,
            }
        }
    }

    fn snapshot(&self) -> Usages {
        Usages(core::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// `num_pages` in bytes; `InvalidParam` for 0 pages or an overflow.
fn pages_to_bytes(num_pages: usize) -> AllocResult<usize> {
    match num_pages.checked_mul(PAGE_SIZE) {
        Some(bytes) if num_pages > 0 => Ok(bytes),
        _ => Err(AllocError::InvalidParam),
    }
}

/// The global allocator of the kernel.
///
/// It serves byte allocations (also through [`GlobalAlloc`]) and page
/// allocations from one pool of memory, and keeps per-[`UsageKind`]
/// statistics.
pub struct GlobalAllocator {
    backend: imp::Backend,
    usages: UsageCounters,
}

impl Default for GlobalAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl GlobalAllocator {
    /// Creates an empty [`GlobalAllocator`]; it manages no memory until
    /// [`GlobalAllocator::init`].
    pub const fn new() -> Self {
        Self {
            backend: imp::Backend::new(),
            usages: UsageCounters::new(),
        }
    }

    /// Returns the name of the allocator (ax-runtime logs
    /// `use NAME allocator.`): `"buddy-slab"`, `"TLSF"` or `"stub"`.
    pub const fn name(&self) -> &'static str {
        imp::Backend::NAME
    }

    /// Initializes the allocator with the memory region
    /// `[start_vaddr, start_vaddr + size)`.
    ///
    /// The region must be valid, writable memory used by nothing else for
    /// the rest of the kernel's life (the allocator writes its metadata
    /// into it); call once, before any allocation (ax-runtime does, with
    /// the largest free region).
    pub fn init(&self, start_vaddr: usize, size: usize) -> AllocResult {
        self.backend.init(start_vaddr, size)
    }

    /// Adds the memory region `[start_vaddr, start_vaddr + size)`, with the
    /// same requirements as [`GlobalAllocator::init`].
    pub fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult {
        self.backend.add_memory(start_vaddr, size)
    }

    /// Allocate arbitrary number of bytes. Returns the left bound of the
    /// allocated region.
    #[inline]
    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        let ptr = reclaim::retry(layout.size().div_ceil(PAGE_SIZE), || {
            self.backend.alloc(layout)
        })?;
        self.usages.add(UsageKind::RustHeap, layout.size());
        Ok(ptr)
    }

    /// Gives back memory obtained from [`GlobalAllocator::alloc`].
    ///
    /// `pos` and `layout` must be exactly those of a live allocation, as
    /// for [`GlobalAlloc::dealloc`] (a safe function in the published API;
    /// the signature is kept). The buddy-slab backend checks the free and
    /// ignores (and reports) a bad one.
    #[inline]
    pub fn dealloc(&self, pos: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller hands back a live allocation with its layout
        // (contract above, the published crate's).
        if unsafe { self.backend.dealloc(pos, layout) } {
            self.usages.sub(UsageKind::RustHeap, layout.size());
        }
    }

    /// Allocates `num_pages` contiguous pages aligned to `alignment` bytes
    /// (a power of two) and accounts them to `kind`. Returns the start
    /// virtual address.
    pub fn alloc_pages(
        &self,
        num_pages: usize,
        alignment: usize,
        kind: UsageKind,
    ) -> AllocResult<usize> {
        let bytes = pages_to_bytes(num_pages)?;
        let addr = reclaim::retry(num_pages, || self.backend.alloc_pages(num_pages, alignment))?;
        self.usages.add(kind, bytes);
        Ok(addr)
    }

    /// Allocates contiguous low-memory pages (every physical address below
    /// 4 GiB), aligned to `alignment` bytes, and accounts them to `kind`.
    /// Free them with [`GlobalAllocator::dealloc_pages`].
    ///
    /// buddy-slab serves them from the sections below its lowmem limit,
    /// found through ax-plat's `virt_to_phys`; ordinary requests take
    /// memory below 4 GiB last. TLSF returns `InvalidParam`.
    pub fn alloc_dma32_pages(
        &self,
        num_pages: usize,
        alignment: usize,
        kind: UsageKind,
    ) -> AllocResult<usize> {
        let bytes = pages_to_bytes(num_pages)?;
        let addr = reclaim::retry(num_pages, || {
            self.backend.alloc_dma32_pages(num_pages, alignment)
        })?;
        self.usages.add(kind, bytes);
        Ok(addr)
    }

    /// Allocates the `num_pages` pages starting exactly at `start` (which
    /// must be aligned to `alignment`, a power of two) and accounts them to
    /// `kind`. `NoMemory` if a page of the range is in use, `NotAllocated`
    /// if the range is not managed memory (buddy-slab); TLSF returns
    /// `InvalidParam`.
    pub fn alloc_pages_at(
        &self,
        start: usize,
        num_pages: usize,
        alignment: usize,
        kind: UsageKind,
    ) -> AllocResult<usize> {
        let bytes = pages_to_bytes(num_pages)?;
        let addr = self.backend.alloc_pages_at(start, num_pages, alignment)?;
        self.usages.add(kind, bytes);
        Ok(addr)
    }

    /// Gives back the `num_pages` pages at `pos` obtained from
    /// [`GlobalAllocator::alloc_pages`], [`GlobalAllocator::alloc_pages_at`]
    /// or [`GlobalAllocator::alloc_dma32_pages`] with the same count and
    /// `kind`.
    ///
    /// buddy-slab checks the free: a double free, a foreign or interior
    /// address or a wrong count is logged and ignored, and `kind`'s usage
    /// is left alone.
    pub fn dealloc_pages(&self, pos: usize, num_pages: usize, kind: UsageKind) {
        // SAFETY: the caller returns pages it owns, with their count
        // (contract above, the published crate's).
        if unsafe { self.backend.dealloc_pages(pos, num_pages) } {
            self.usages.sub(kind, num_pages.saturating_mul(PAGE_SIZE));
        }
    }

    /// Returns the number of bytes in use in the backend (buddy-slab:
    /// pages of runs and slabs; TLSF: bytes handed out).
    pub fn used_bytes(&self) -> usize {
        self.backend.used_bytes()
    }

    /// Returns the number of bytes the backend can still hand out.
    pub fn available_bytes(&self) -> usize {
        self.backend.available_bytes()
    }

    /// Returns [`GlobalAllocator::used_bytes`] in pages.
    pub fn used_pages(&self) -> usize {
        self.used_bytes() / PAGE_SIZE
    }

    /// Returns [`GlobalAllocator::available_bytes`] in whole pages.
    pub fn available_pages(&self) -> usize {
        self.available_bytes() / PAGE_SIZE
    }

    /// Returns the usage statistics of the allocator.
    pub fn usages(&self) -> Usages {
        self.usages.snapshot()
    }
}

impl AllocatorOps for GlobalAllocator {
    fn name(&self) -> &'static str {
        GlobalAllocator::name(self)
    }

    fn init(&self, start_vaddr: usize, size: usize) -> AllocResult {
        GlobalAllocator::init(self, start_vaddr, size)
    }

    fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult {
        GlobalAllocator::add_memory(self, start_vaddr, size)
    }

    fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        GlobalAllocator::alloc(self, layout)
    }

    fn dealloc(&self, pos: NonNull<u8>, layout: Layout) {
        GlobalAllocator::dealloc(self, pos, layout)
    }

    fn alloc_pages(&self, num_pages: usize, align: usize, kind: UsageKind) -> AllocResult<usize> {
        GlobalAllocator::alloc_pages(self, num_pages, align, kind)
    }

    fn alloc_dma32_pages(
        &self,
        num_pages: usize,
        align: usize,
        kind: UsageKind,
    ) -> AllocResult<usize> {
        GlobalAllocator::alloc_dma32_pages(self, num_pages, align, kind)
    }

    fn alloc_pages_at(
        &self,
        start: usize,
        num_pages: usize,
        align: usize,
        kind: UsageKind,
    ) -> AllocResult<usize> {
        GlobalAllocator::alloc_pages_at(self, start, num_pages, align, kind)
    }

    fn dealloc_pages(&self, pos: usize, num_pages: usize, kind: UsageKind) {
        GlobalAllocator::dealloc_pages(self, pos, num_pages, kind)
    }

    fn used_bytes(&self) -> usize {
        GlobalAllocator::used_bytes(self)
    }

    fn available_bytes(&self) -> usize {
        GlobalAllocator::available_bytes(self)
    }

    fn used_pages(&self) -> usize {
        GlobalAllocator::used_pages(self)
    }

    fn available_pages(&self) -> usize {
        GlobalAllocator::available_pages(self)
    }

    fn usages(&self) -> Usages {
        GlobalAllocator::usages(self)
    }
}

// SAFETY: `alloc` returns memory for `layout` from the backend or null
// (never unwinds); `dealloc` forwards the caller's contract. Tracking
// (feature `tracking`) records a block after the backend served it and
// drops the record before the backend has it back; it never touches the
// block itself.
unsafe impl GlobalAlloc for GlobalAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match GlobalAllocator::alloc(self, layout) {
            Ok(ptr) => {
                #[cfg(feature = "tracking")]
                tracking::on_alloc(self, ptr, layout);
                ptr.as_ptr()
            }
            // Null lets fallible containers see the failure; infallible
            // ones call the allocation-error handler.
            Err(_) => core::ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            #[cfg(feature = "tracking")]
            tracking::on_dealloc(self, ptr, layout);
            GlobalAllocator::dealloc(self, ptr, layout);
        }
    }
}

/// The kernel's allocator instance: the Rust global allocator on bare
/// metal (and with `global-allocator`); host unit tests keep std's heap.
#[cfg_attr(
    all(any(target_os = "none", feature = "global-allocator"), not(test)),
    global_allocator
)]
static GLOBAL_ALLOCATOR: GlobalAllocator = GlobalAllocator::new();

/// Returns the reference to the global allocator.
pub fn global_allocator() -> &'static GlobalAllocator {
    &GLOBAL_ALLOCATOR
}

/// Initializes the global allocator with the memory region
/// `[start_vaddr, start_vaddr + size)`; see [`GlobalAllocator::init`].
pub fn global_init(start_vaddr: usize, size: usize) -> AllocResult {
    debug!(
        "initialize global allocator at: [{:#x}, {:#x})",
        start_vaddr,
        start_vaddr.wrapping_add(size)
    );
    GLOBAL_ALLOCATOR.init(start_vaddr, size)
}

/// Add the given memory region to the global allocator; may be called
/// many times, after [`global_init`].
pub fn global_add_memory(start_vaddr: usize, size: usize) -> AllocResult {
    debug!(
        "add a memory region to global allocator: [{:#x}, {:#x})",
        start_vaddr,
        start_vaddr.wrapping_add(size)
    );
    GLOBAL_ALLOCATOR.add_memory(start_vaddr, size)
}

/// Initializes the per-CPU allocator state of the calling CPU during its
/// bring-up: ax-runtime calls it on each CPU after its per-CPU area is
/// installed and before the scheduler, IPIs or interrupts can allocate
/// there (on the primary CPU before [`global_init`]).
///
/// buddy-slab gives the CPU its own slot (until then its calls use the
/// shared, locked one); `cpu_id` must be the CPU's ax-percpu index, and a
/// CPU whose id does not fit the `SMP` capacity keeps the shared slot (both
/// logged). TLSF and the stub have no per-CPU state.
pub fn init_percpu_slab(cpu_id: usize) {
    imp::init_percpu(cpu_id);
}
