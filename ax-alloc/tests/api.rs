//! The public API of the published ax-alloc 0.9.2, item by item, for the
//! features this build has: a kernel that builds against the published
//! crate builds against this one.
//!
//! Every function is coerced to an explicit `fn` pointer type (argument
//! and return types exact, `const fn`s also called in a `const`), every
//! type named with the traits the published crate gives it, every enum
//! matched exhaustively, the trait implemented from scratch (so its method
//! set is exact). Nothing here is specific to this crate: the same file is
//! checked against the published crate itself (`ax-alloc/api-published`,
//! `scripts/ax-alloc-test.sh`), so it cannot drift from the real API.
//!
//! It is mostly a compile test: the assertions in `api` check at run time
//! only what needs no backend (error messages, enum order, names).

// Spelling every signature out is the point of this file.
#![allow(clippy::type_complexity)]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use ax_alloc::{
    AllocError, AllocResult, AllocatorOps, DefaultByteAllocator, GlobalAllocator, GlobalPage,
    PageReclaimFn, UsageKind, Usages, global_add_memory, global_allocator, global_init,
    init_percpu_slab, register_page_reclaim_fn, try_page_reclaim,
};
use ax_memory_addr::{PhysAddr, VirtAddr};

/// `const fn`s stay `const` (the allocator is forgotten, not dropped: the
/// published buddy-slab backend's has a destructor, which a `const`
/// cannot run).
static NEW: GlobalAllocator = GlobalAllocator::new();
// This crate's allocator has no destructor; the published one's has.
#[allow(clippy::forget_non_drop)]
const NAME: &str = {
    let allocator = GlobalAllocator::new();
    let name = allocator.name();
    core::mem::forget(allocator);
    name
};

fn is_global_alloc<T: GlobalAlloc + AllocatorOps + Default + Send + Sync + 'static>() {}
fn is_usages<T: Clone + Copy + core::fmt::Debug>() {}
fn is_usage_kind<
    T: Clone
        + Copy
        + PartialEq
        + Eq
        + core::fmt::Debug
        + strum::VariantArray
        + Into<&'static str>
        + 'static,
>() {
}
fn is_error<T: Clone + Copy + PartialEq + Eq + core::fmt::Debug + core::error::Error>() {}
fn is_debug<T: core::fmt::Debug>() {}

/// The global allocator and the boot entry points.
fn global_allocator_api() {
    is_global_alloc::<GlobalAllocator>();
    let _: fn() -> GlobalAllocator = GlobalAllocator::new;
    let _: fn() -> GlobalAllocator = <GlobalAllocator as Default>::default;
    let _: fn(&GlobalAllocator) -> &'static str = GlobalAllocator::name;
    let _: fn(&GlobalAllocator, usize, usize) -> AllocResult = GlobalAllocator::init;
    let _: fn(&GlobalAllocator, usize, usize) -> AllocResult = GlobalAllocator::add_memory;
    let _: fn(&GlobalAllocator, Layout) -> AllocResult<NonNull<u8>> = GlobalAllocator::alloc;
    let _: fn(&GlobalAllocator, NonNull<u8>, Layout) = GlobalAllocator::dealloc;
    let _: fn(&GlobalAllocator, usize, usize, UsageKind) -> AllocResult<usize> =
        GlobalAllocator::alloc_pages;
    let _: fn(&GlobalAllocator, usize, usize, UsageKind) -> AllocResult<usize> =
        GlobalAllocator::alloc_dma32_pages;
    let _: fn(&GlobalAllocator, usize, usize, usize, UsageKind) -> AllocResult<usize> =
        GlobalAllocator::alloc_pages_at;
    let _: fn(&GlobalAllocator, usize, usize, UsageKind) = GlobalAllocator::dealloc_pages;
    let _: fn(&GlobalAllocator) -> usize = GlobalAllocator::used_bytes;
    let _: fn(&GlobalAllocator) -> usize = GlobalAllocator::available_bytes;
    let _: fn(&GlobalAllocator) -> usize = GlobalAllocator::used_pages;
    let _: fn(&GlobalAllocator) -> usize = GlobalAllocator::available_pages;
    let _: fn(&GlobalAllocator) -> Usages = GlobalAllocator::usages;
    let _: unsafe fn(&GlobalAllocator, Layout) -> *mut u8 = <GlobalAllocator as GlobalAlloc>::alloc;
    let _: unsafe fn(&GlobalAllocator, *mut u8, Layout) = <GlobalAllocator as GlobalAlloc>::dealloc;

    let _: fn() -> &'static GlobalAllocator = global_allocator;
    let _: fn(usize, usize) -> AllocResult = global_init;
    let _: fn(usize, usize) -> AllocResult = global_add_memory;
    let _: fn(usize) = init_percpu_slab;
    let _ = &NEW;
    let _ = core::mem::size_of::<DefaultByteAllocator>();
}

/// The byte allocator type of each backend, where it is the published one
/// (buddy-slab's is this project's core, a documented difference).
fn default_byte_allocator_api() {
    #[cfg(feature = "tlsf")]
    {
        let _: fn() -> DefaultByteAllocator = rlsf::Tlsf::<'static, u32, u32, 28, 32>::new;
    }
    #[cfg(not(any(feature = "tlsf", feature = "buddy-slab")))]
    {
        let _: DefaultByteAllocator = ();
    }
}

/// `AllocatorOps`, implemented method by method: the impl compiles only
/// if these are exactly the trait's methods with these signatures.
struct Ops;

impl AllocatorOps for Ops {
    fn name(&self) -> &'static str {
        "ops"
    }
    fn init(&self, _start_vaddr: usize, _size: usize) -> AllocResult {
        Ok(())
    }
    fn add_memory(&self, _start_vaddr: usize, _size: usize) -> AllocResult {
        Ok(())
    }
    fn alloc(&self, _layout: Layout) -> AllocResult<NonNull<u8>> {
        Err(AllocError::NoMemory)
    }
    fn dealloc(&self, _pos: NonNull<u8>, _layout: Layout) {}
    fn alloc_pages(
        &self,
        _num_pages: usize,
        _align: usize,
        _kind: UsageKind,
    ) -> AllocResult<usize> {
        Err(AllocError::NoMemory)
    }
    fn alloc_dma32_pages(
        &self,
        _num_pages: usize,
        _align: usize,
        _kind: UsageKind,
    ) -> AllocResult<usize> {
        Err(AllocError::NoMemory)
    }
    fn alloc_pages_at(
        &self,
        _start: usize,
        _num_pages: usize,
        _align: usize,
        _kind: UsageKind,
    ) -> AllocResult<usize> {
        Err(AllocError::NoMemory)
    }
    fn dealloc_pages(&self, _pos: usize, _num_pages: usize, _kind: UsageKind) {}
    fn used_bytes(&self) -> usize {
        0
    }
    fn available_bytes(&self) -> usize {
        0
    }
    fn used_pages(&self) -> usize {
        0
    }
    fn available_pages(&self) -> usize {
        0
    }
    fn usages(&self) -> Usages {
        NEW.usages()
    }
}

fn allocator_ops_api() {
    // Object safe, as published (ax-runtime and Axvisor may hold `&dyn`).
    let ops: &dyn AllocatorOps = &Ops;
    let _ = ops.name();
    let _: &dyn AllocatorOps = global_allocator();
}

/// Errors, usage kinds and statistics.
fn types_api() {
    is_error::<AllocError>();
    let _: fn(AllocError) -> AllocResult<()> = Err;
    let _: AllocResult = Ok(());
    let _: AllocResult<usize> = Ok(0);
    is_usage_kind::<UsageKind>();
    is_usages::<Usages>();
    let _: fn(&Usages, UsageKind) -> usize = Usages::get;
    let _: PageReclaimFn = |n: usize| n;
    let _: fn(PageReclaimFn) = register_page_reclaim_fn;
    let _: fn(usize) -> usize = try_page_reclaim;
}

/// Every variant, exhaustively: a variant added or removed fails to compile.
fn error_message(e: AllocError) -> &'static str {
    match e {
        AllocError::InvalidParam => "invalid allocation parameter",
        AllocError::AlreadyInitialized => "allocator is already initialized",
        AllocError::MemoryOverlap => "memory region overlaps an existing allocation region",
        AllocError::NoMemory => "not enough memory",
        AllocError::NotAllocated => "memory was not allocated by this allocator",
        AllocError::NotInitialized => "allocator is not initialized",
        AllocError::NotFound => "allocation was not found",
    }
}

/// Every kind, exhaustively, with its discriminant (`#[repr(u8)]`).
fn kind_index(k: UsageKind) -> u8 {
    match k {
        UsageKind::RustHeap => 0,
        UsageKind::VirtMem => 1,
        UsageKind::PageCache => 2,
        UsageKind::PageTable => 3,
        UsageKind::TaskStack => 4,
        UsageKind::Dma => 5,
        UsageKind::Global => 6,
    }
}

/// `GlobalPage`, RAII pages of the global allocator.
fn global_page_api() {
    is_debug::<GlobalPage>();
    let _: fn() -> AllocResult<GlobalPage> = GlobalPage::alloc;
    let _: fn() -> AllocResult<GlobalPage> = GlobalPage::alloc_zero;
    let _: fn(usize, usize) -> AllocResult<GlobalPage> = GlobalPage::alloc_contiguous;
    let _: fn(&GlobalPage) -> VirtAddr = GlobalPage::start_vaddr;
    let _: fn(&GlobalPage, fn(VirtAddr) -> PhysAddr) -> PhysAddr = GlobalPage::start_paddr;
    let _: fn(&GlobalPage) -> usize = GlobalPage::size;
    let _: fn(&GlobalPage) -> *const u8 = GlobalPage::as_ptr;
    let _: fn(&mut GlobalPage) -> *mut u8 = GlobalPage::as_mut_ptr;
    let _: fn(&mut GlobalPage, u8) = GlobalPage::fill;
    let _: fn(&mut GlobalPage) = GlobalPage::zero;
    let _: for<'a> fn(&'a GlobalPage) -> &'a [u8] = GlobalPage::as_slice;
    let _: for<'a> fn(&'a mut GlobalPage) -> &'a mut [u8] = GlobalPage::as_slice_mut;
    // Freed on drop.
    const { assert!(core::mem::needs_drop::<GlobalPage>()) };
}

/// `tracking`: per-allocation records.
#[cfg(feature = "tracking")]
fn tracking_api() {
    use ax_alloc::tracking::{self, AllocationInfo};
    is_debug::<AllocationInfo>();
    let _: fn() = tracking::enable_tracking;
    let _: fn() = tracking::disable_tracking;
    let _: fn() -> bool = tracking::tracking_enabled;
    let _: fn() -> u64 = tracking::current_generation;
    let _: fn(core::ops::Range<u64>, fn(&AllocationInfo)) = tracking::allocations_in;
    let _ = |info: &AllocationInfo| {
        let _: &Layout = &info.layout;
        let _: &axbacktrace::Backtrace = &info.backtrace;
        let _: &u64 = &info.generation;
    };
}

#[test]
fn api() {
    global_allocator_api();
    default_byte_allocator_api();
    allocator_ops_api();
    types_api();
    global_page_api();
    #[cfg(feature = "tracking")]
    tracking_api();

    // The backend selection, as published: tlsf wins over buddy-slab,
    // neither is the stub. The name of this project's buddy-slab backend
    // is its own (a documented difference), so only check it is not TLSF's.
    if cfg!(feature = "tlsf") {
        assert_eq!(NAME, "TLSF");
    } else if cfg!(feature = "buddy-slab") {
        assert!(NAME.starts_with("buddy-slab"), "{NAME}");
    } else {
        assert_eq!(NAME, "stub");
    }
    for e in [
        AllocError::InvalidParam,
        AllocError::AlreadyInitialized,
        AllocError::MemoryOverlap,
        AllocError::NoMemory,
        AllocError::NotAllocated,
        AllocError::NotInitialized,
        AllocError::NotFound,
    ] {
        assert_eq!(e.to_string(), error_message(e));
    }
    let names: Vec<&'static str> = <UsageKind as strum::VariantArray>::VARIANTS
        .iter()
        .map(|&k| {
            assert_eq!(k as u8, kind_index(k));
            k.into()
        })
        .collect();
    assert_eq!(
        names,
        [
            "RustHeap",
            "VirtMem",
            "PageCache",
            "PageTable",
            "TaskStack",
            "Dma",
            "Global"
        ]
    );
    assert_eq!(
        format!("{:?}", NEW.usages()),
        "UsageStats { RustHeap: 0, VirtMem: 0, PageCache: 0, PageTable: 0, TaskStack: 0, Dma: 0, Global: 0 }"
    );
}
