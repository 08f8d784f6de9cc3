//! ArceOS global memory allocator (drop-in replacement for the published
//! `axalloc` 0.3.0-preview.3), with this project's buddy + per-CPU slab
//! allocator as an optional backend.
//!
//! The public API is the published crate's for every feature (checked
//! item by item by `tests/api.rs`, which is also compiled against the
//! published crate); an app selects this crate with
//! `[patch.crates-io] axalloc = { path = ".../axalloc" }`.
//!
//! # Features
//!
//! | feature | selects |
//! |---|---|
//! | `tlsf` (default), `slab`, `buddy` | the stock backend's byte allocator from axallocator (slab > buddy > tlsf when several are on) |
//! | `level-1` | stock backend, one level: the byte allocator owns all memory and serves pages too |
//! | `page-alloc-4g`, `page-alloc-64g` | the stock bitmap page allocator's capacity (default 256 MiB) |
//! | `buddy-slab` | this project's backend; adds `GlobalAllocator::alloc_dma32_pages` |
//! | `hv` | Axvisor's allocator: the buddy-slab backend plus `AddrTranslator`, `GlobalAllocator::set_addr_translator` and the three-argument [`global_init`] |
//! | `tracking` | the `tracking` module: per-allocation records with backtraces, over either backend |
//!
//! # Layers
//!
//! - This file is the policy layer, identical for every backend: the
//!   [`GlobalAllocator`] facade that ArceOS calls, per-[`UsageKind`] usage
//!   accounting, the `#[global_allocator]` static, and the boot entry points
//!   [`global_init`] / [`global_add_memory`].
//! - A backend module holds the mechanism:
//!   - `stock` (default): what ArceOS ships, a byte allocator from
//!     `axallocator` (TLSF, slab or buddy, by feature) that grows on demand
//!     from a bitmap page allocator;
//!   - `buddy_slab` (feature `buddy-slab`, or `hv`): `buddy_slab_allocator`'s
//!     global facade, bound to ArceOS's CPU ids, IRQ-safe locks and address
//!     map (the core's `arceos` feature).
//! - `tracking` (feature `tracking`) records allocations made through
//!   [`GlobalAlloc`], outside the backend's critical sections.
//!
//! # Usage accounting
//!
//! [`Usages`] counts live bytes per [`UsageKind`]: byte allocations count
//! their `layout.size()` as [`UsageKind::RustHeap`]; page allocations count
//! `num_pages * PAGE_SIZE` under the kind the caller names (every kind: the
//! published stock crate skips `RustHeap` pages on allocation but not on
//! free). Memory a backend takes internally (heap growth, slab pages) is
//! not a usage. A page free the backend refuses (double, foreign,
//! unaligned; with buddy-slab also a wrong count) moves no counter; byte
//! frees always count, as neither backend reports a refused one, and a
//! counter never goes below zero.
//!
//! # Where this crate differs from the published one
//!
//! Beyond the backend: `alloc_pages_at` under `level-1` returns
//! `InvalidParam` (published: panics); a one-page request honours its
//! alignment on the stock backend; with `hv` the figures
//! (`used_bytes`, ...) are real (published: 0), [`DefaultByteAllocator`] is
//! the core's `ArceOsHeap` (published: buddy-slab-allocator 0.2's
//! `SlabByteAllocator`), [`global_init`] installs the translator before
//! the first region is added, [`GlobalAllocator::name`] is `buddy-slab`;
//! the [`GlobalAlloc`] impl returns null on exhaustion (published: calls
//! `handle_alloc_error`).
//!
//! # Boot log
//!
//! The log lines ArceOS's app tests grep for are kept:
//! `initialize global allocator at: [0x.., 0x..)` (debug level) and the
//! allocator [`GlobalAllocator::name`] that axruntime prints.

#![no_std]

#[macro_use]
extern crate log;
extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

pub use axallocator::{AllocError, AllocResult};
use strum::{IntoStaticStr, VariantArray};

/// Size of a page handed out by the page interface, in bytes.
const PAGE_SIZE: usize = 0x1000;

mod page;
pub use page::GlobalPage;

#[cfg(feature = "tracking")]
pub mod tracking;
#[cfg(feature = "tracking")]
mod tracking_line;

cfg_if::cfg_if! {
    if #[cfg(feature = "buddy-slab")] {
        mod buddy_slab;
        use buddy_slab as imp;
    } else {
        mod stock;
        use stock as imp;
    }
}

/// The byte allocator type of the selected backend.
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
    /// DMA memory.
    Dma,
    /// Memory used by [`GlobalPage`].
    Global,
}

const NR_KINDS: usize = UsageKind::VARIANTS.len();

/// A snapshot of the memory usage statistics, in bytes per [`UsageKind`].
#[derive(Clone, Copy)]
pub struct Usages([usize; NR_KINDS]);

impl Usages {
    /// Live bytes of kind `kind` when the snapshot was taken.
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

/// Live counters behind [`Usages`]: one atomic per kind, so accounting takes
/// no lock and never serialises CPUs. A snapshot of several kinds is not
/// atomic as a whole; each value is exact at the moment it is read.
struct UsageCounters([AtomicUsize; NR_KINDS]);

impl UsageCounters {
    const fn new() -> Self {
        Self([const { AtomicUsize::new(0) }; NR_KINDS])
    }

    fn add(&self, kind: UsageKind, bytes: usize) {
        self.0[kind as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes `bytes` off `kind`, stopping at zero: a free the backend could
    /// not check (a double byte free, say) must not wrap the counter.
    fn sub(&self, kind: UsageKind, bytes: usize) {
        let counter = &self.0[kind as usize];
        if counter
            .try_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                old.checked_sub(bytes)
            })
            .is_err()
        {
            counter.store(0, Ordering::Relaxed);
            error!("axalloc: usage of {kind:?} below zero: a double or mismatched free");
        }
    }

    fn snapshot(&self) -> Usages {
        Usages(core::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// The global allocator used by ArceOS.
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

    /// Returns the name of the allocator (axruntime logs `use NAME allocator.`).
    pub const fn name(&self) -> &'static str {
        imp::Backend::NAME
    }

    /// Initializes the allocator with the memory region
    /// `[start_vaddr, start_vaddr + size)`.
    ///
    /// The region must be valid, writable memory used by nothing else for
    /// the rest of the kernel's life (the allocator writes its metadata into
    /// it). Call once, before any allocation.
    ///
    /// # Panics
    ///
    /// Panics if the backend cannot manage the region (too small, misaligned
    /// beyond repair): the kernel cannot run without a heap.
    pub fn init(&self, start_vaddr: usize, size: usize) {
        self.backend.init(start_vaddr, size);
    }

    /// Adds the memory region `[start_vaddr, start_vaddr + size)`, with the
    /// same requirements as [`GlobalAllocator::init`].
    pub fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult {
        self.backend.add_memory(start_vaddr, size)
    }

    /// Allocates memory for `layout`.
    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        let ptr = self.backend.alloc(layout)?;
        self.usages.add(UsageKind::RustHeap, layout.size());
        Ok(ptr)
    }

    /// Gives back memory obtained from [`GlobalAllocator::alloc`].
    ///
    /// `pos` and `layout` must be exactly those of a live allocation, as for
    /// [`GlobalAlloc::dealloc`] (the published API makes this a safe
    /// function; this crate keeps the signature).
    pub fn dealloc(&self, pos: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller hands back a live allocation with its layout
        // (contract above, the same as the published axalloc's).
        if unsafe { self.backend.dealloc(pos, layout) } {
            // After the free, never before, and only if the backend took it
            // back (buddy-slab rejects bad frees; the stock heaps cannot
            // tell, so every free counts there).
            self.usages.sub(UsageKind::RustHeap, layout.size());
        }
    }

    /// Allocates `num_pages` contiguous pages aligned to `align_pow2` bytes
    /// (a power of two, at least the page size) and accounts them to `kind`.
    /// Returns the start virtual address.
    pub fn alloc_pages(
        &self,
        num_pages: usize,
        align_pow2: usize,
        kind: UsageKind,
    ) -> AllocResult<usize> {
        let bytes = pages_to_bytes(num_pages)?;
        let addr = self.backend.alloc_pages(num_pages, align_pow2)?;
        self.usages.add(kind, bytes);
        Ok(addr)
    }

    /// Allocates `num_pages` contiguous pages whose physical addresses all
    /// lie below 4 GiB (DMA32), aligned to `align_pow2` bytes, and accounts
    /// them to `kind`. Returns the start virtual address; free the run with
    /// [`GlobalAllocator::dealloc_pages`].
    ///
    /// Physical addresses come from the platform's linear map or, with
    /// `hv`, from the installed `AddrTranslator`. Ordinary page and byte
    /// requests take memory below 4 GiB last.
    ///
    /// The published crate has this method with `hv` only; here it comes
    /// with the buddy-slab backend (`buddy-slab`, which `hv` selects).
    #[cfg(feature = "buddy-slab")]
    pub fn alloc_dma32_pages(
        &self,
        num_pages: usize,
        align_pow2: usize,
        kind: UsageKind,
    ) -> AllocResult<usize> {
        let bytes = pages_to_bytes(num_pages)?;
        let addr = self.backend.alloc_dma32_pages(num_pages, align_pow2)?;
        self.usages.add(kind, bytes);
        Ok(addr)
    }

    /// Installs the hypervisor's translation of the heap's virtual
    /// addresses to physical ones, used by every later translation
    /// (DMA32 requests, the split of regions at 4 GiB). Call it before
    /// [`GlobalAllocator::init`], as [`global_init`] does: a region keeps
    /// the split made when it was added.
    ///
    /// There is one translator for the kernel, not one per allocator: the
    /// buddy-slab core's ArceOS platform reads it.
    #[cfg(feature = "hv")]
    pub fn set_addr_translator(&self, translator: &'static dyn AddrTranslator) {
        imp::set_addr_translator(translator);
    }

    /// Allocates `num_pages` contiguous pages starting exactly at `start`
    /// (which must be aligned to `align_pow2`) and accounts them to `kind`.
    pub fn alloc_pages_at(
        &self,
        start: usize,
        num_pages: usize,
        align_pow2: usize,
        kind: UsageKind,
    ) -> AllocResult<usize> {
        let bytes = pages_to_bytes(num_pages)?;
        let addr = self.backend.alloc_pages_at(start, num_pages, align_pow2)?;
        self.usages.add(kind, bytes);
        Ok(addr)
    }

    /// Gives back `num_pages` pages at `pos` obtained from
    /// [`GlobalAllocator::alloc_pages`], [`GlobalAllocator::alloc_pages_at`]
    /// or `alloc_dma32_pages` with the same count and `kind`.
    ///
    /// A free the backend finds bad (a double free, a foreign or unaligned
    /// address, with buddy-slab also a wrong count) is logged and ignored,
    /// and `kind`'s usage is left alone.
    pub fn dealloc_pages(&self, pos: usize, num_pages: usize, kind: UsageKind) {
        // SAFETY: the caller returns pages it owns, with their count (contract above).
        if unsafe { self.backend.dealloc_pages(pos, num_pages) } {
            // After the free, never before: a counter may run high for a
            // moment (another CPU reusing the pages), never below zero.
            self.usages.sub(kind, num_pages * PAGE_SIZE);
        }
    }

    /// Bytes in use in the byte allocator (backend-defined granularity: the
    /// stock allocators count requested sizes, buddy-slab counts occupied
    /// pages and slab slots).
    pub fn used_bytes(&self) -> usize {
        self.backend.used_bytes()
    }

    /// Bytes still available to the byte allocator without growing it.
    pub fn available_bytes(&self) -> usize {
        self.backend.available_bytes()
    }

    /// Pages in use in the page allocator.
    pub fn used_pages(&self) -> usize {
        self.backend.used_pages()
    }

    /// Pages still free in the page allocator.
    pub fn available_pages(&self) -> usize {
        self.backend.available_pages()
    }

    /// Returns the usage statistics of the allocator.
    pub fn usages(&self) -> Usages {
        self.usages.snapshot()
    }
}

fn pages_to_bytes(num_pages: usize) -> AllocResult<usize> {
    match num_pages.checked_mul(PAGE_SIZE) {
        Some(bytes) if num_pages > 0 => Ok(bytes),
        _ => Err(AllocError::InvalidParam),
    }
}

// SAFETY: `alloc` returns memory for `layout` from the backend or null
// (never unwinds); `dealloc` forwards the caller's contract. Tracking
// (feature `tracking`) records a block after the backend served it and
// drops the record before the backend has it back; it never touches the
// block itself.
unsafe impl GlobalAlloc for GlobalAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match GlobalAllocator::alloc(self, layout) {
            Ok(ptr) => {
                #[cfg(feature = "tracking")]
                tracking::on_alloc(self, ptr, layout);
                ptr.as_ptr()
            }
            // Null lets `alloc::alloc::handle_alloc_error` report the layout.
            Err(_) => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            #[cfg(feature = "tracking")]
            tracking::on_dealloc(self, ptr, layout);
            GlobalAllocator::dealloc(self, ptr, layout);
        }
    }
}

/// The kernel's allocator instance (the Rust global allocator on bare metal;
/// host unit tests keep std's heap).
#[cfg_attr(all(target_os = "none", not(test)), global_allocator)]
static GLOBAL_ALLOCATOR: GlobalAllocator = GlobalAllocator::new();

/// Returns the reference to the global allocator.
pub fn global_allocator() -> &'static GlobalAllocator {
    &GLOBAL_ALLOCATOR
}

/// Translation of the heap's virtual addresses to physical ones, supplied
/// by the hypervisor runtime (feature `hv`; the published crate re-exports
/// buddy-slab-allocator 0.2's trait of the same shape).
#[cfg(feature = "hv")]
pub trait AddrTranslator: Sync {
    /// The physical address of `va`, or `None` if it is not mapped (the
    /// platform's linear map is used then).
    fn virt_to_phys(&self, va: usize) -> Option<usize>;
}

/// Initializes the global allocator with the memory region
/// `[start_vaddr, start_vaddr + size)`; see [`GlobalAllocator::init`] for the
/// requirements on the region. Call once, before any allocation.
#[cfg(not(feature = "hv"))]
pub fn global_init(start_vaddr: usize, size: usize) {
    init_global(start_vaddr, size);
}

/// Initializes the global allocator with the memory region
/// `[start_vaddr, start_vaddr + size)` and the hypervisor's address
/// translator; see [`GlobalAllocator::init`]. The translator is installed
/// first (the published crate installs it after init), so the region is
/// split at 4 GiB by its physical addresses.
#[cfg(feature = "hv")]
pub fn global_init(start_vaddr: usize, size: usize, translator: &'static dyn AddrTranslator) {
    GLOBAL_ALLOCATOR.set_addr_translator(translator);
    init_global(start_vaddr, size);
}

fn init_global(start_vaddr: usize, size: usize) {
    debug!(
        "initialize global allocator at: [{:#x}, {:#x})",
        start_vaddr,
        start_vaddr.wrapping_add(size)
    );
    GLOBAL_ALLOCATOR.init(start_vaddr, size);
}

/// Adds the memory region `[start_vaddr, start_vaddr + size)` to the global
/// allocator; may be called many times, after [`global_init`].
pub fn global_add_memory(start_vaddr: usize, size: usize) -> AllocResult {
    debug!(
        "add a memory region to global allocator: [{:#x}, {:#x})",
        start_vaddr,
        start_vaddr.wrapping_add(size)
    );
    GLOBAL_ALLOCATOR.add_memory(start_vaddr, size)
}
