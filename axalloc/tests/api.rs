//! The public API of the published axalloc 0.3.0-preview.3, item by item,
//! for the features this build has: a kernel that builds against the
//! published crate builds against this one.
//!
//! Every function is coerced to an explicit `fn` pointer type (argument
//! and return types exact, `const fn`s also called in a `const`), every
//! type named with the traits the published crate gives it, every trait
//! implemented. Nothing here is specific to this crate: the same file is
//! checked against the published crate itself (`axalloc/api-published`,
//! `scripts/axalloc-test.sh`), so it cannot drift from the real API.
//!
//! It is a compile test: the assertions in `api` only confirm at run time
//! what the types already say.

// Spelling every signature out is the point of this file.
#![allow(clippy::type_complexity)]

// This crate's buddy-slab backend (which `hv` selects) translates
// addresses through axplat: the test binary links the tests' dummy MemIf.
#[cfg(feature = "buddy-slab")]
mod common;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use axalloc::{
    DefaultByteAllocator, GlobalAllocator, GlobalPage, UsageKind, Usages, global_add_memory,
    global_allocator, global_init,
};
use axallocator::AllocResult;
use axerrno::AxResult;
use memory_addr::{PhysAddr, VirtAddr};

/// `const fn`s stay `const` (a `static`, not a `const`: with
/// `page-alloc-64g` the stock allocator holds a 2 MiB bitmap, too large
/// for a test thread's stack).
static NEW: GlobalAllocator = GlobalAllocator::new();
const NAME: &str = GlobalAllocator::new().name();

fn is_global_alloc<T: GlobalAlloc + Default + Send + Sync + 'static>() {}
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
fn is_debug<T: core::fmt::Debug>() {}

/// The global allocator and the boot entry points.
fn global_allocator_api() {
    is_global_alloc::<GlobalAllocator>();
    let _: fn() -> GlobalAllocator = GlobalAllocator::new;
    let _: fn() -> GlobalAllocator = <GlobalAllocator as Default>::default;
    let _: fn(&GlobalAllocator) -> &'static str = GlobalAllocator::name;
    let _: fn(&GlobalAllocator, usize, usize) = GlobalAllocator::init;
    let _: fn(&GlobalAllocator, usize, usize) -> AllocResult = GlobalAllocator::add_memory;
    let _: fn(&GlobalAllocator, Layout) -> AllocResult<NonNull<u8>> = GlobalAllocator::alloc;
    let _: fn(&GlobalAllocator, NonNull<u8>, Layout) = GlobalAllocator::dealloc;
    let _: fn(&GlobalAllocator, usize, usize, UsageKind) -> AllocResult<usize> =
        GlobalAllocator::alloc_pages;
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
    let _: fn(usize, usize) -> AllocResult = global_add_memory;
    #[cfg(not(feature = "hv"))]
    let _: fn(usize, usize) = global_init;
    #[cfg(feature = "hv")]
    let _: fn(usize, usize, &'static dyn axalloc::AddrTranslator) = global_init;
}

/// The hypervisor API (feature `hv`).
#[cfg(feature = "hv")]
fn hv_api() {
    struct Identity;
    impl axalloc::AddrTranslator for Identity {
        fn virt_to_phys(&self, va: usize) -> Option<usize> {
            Some(va)
        }
    }
    // `Sync` is a supertrait: a `&'static dyn AddrTranslator` is shared.
    fn is_sync<T: Sync + ?Sized>() {}
    is_sync::<dyn axalloc::AddrTranslator>();
    static IDENTITY: Identity = Identity;
    let translator: &'static dyn axalloc::AddrTranslator = &IDENTITY;
    let _: fn(&(dyn axalloc::AddrTranslator + 'static), usize) -> Option<usize> =
        <dyn axalloc::AddrTranslator>::virt_to_phys;
    assert_eq!(translator.virt_to_phys(0x1000), Some(0x1000));
    let _: fn(&GlobalAllocator, &'static dyn axalloc::AddrTranslator) =
        GlobalAllocator::set_addr_translator;
    let _: fn(&GlobalAllocator, usize, usize, UsageKind) -> AllocResult<usize> =
        GlobalAllocator::alloc_dma32_pages;
}

/// The byte allocator type of the backend. Without `hv` it is
/// axallocator's allocator the features pick (slab > buddy > tlsf), as in
/// the published crate. With `hv` the published crate names
/// buddy-slab-allocator 0.2's `SlabByteAllocator`, which this crate does
/// not use (its `hv` backend is this project's allocator): the name
/// exists, its type differs. (`buddy-slab` is this crate's feature; the
/// published crate has none of that name.)
fn byte_allocator_api() {
    let _: Option<DefaultByteAllocator> = None;
    #[cfg(all(not(any(feature = "hv", feature = "buddy-slab")), feature = "slab"))]
    let _: fn() -> axallocator::SlabByteAllocator = DefaultByteAllocator::new;
    #[cfg(all(
        not(any(feature = "hv", feature = "buddy-slab", feature = "slab")),
        feature = "buddy"
    ))]
    let _: fn() -> axallocator::BuddyByteAllocator = DefaultByteAllocator::new;
    #[cfg(all(
        not(any(
            feature = "hv",
            feature = "buddy-slab",
            feature = "slab",
            feature = "buddy"
        )),
        feature = "tlsf"
    ))]
    let _: fn() -> axallocator::TlsfByteAllocator = DefaultByteAllocator::new;
}

/// Usage statistics.
fn usage_api() {
    is_usages::<Usages>();
    is_usage_kind::<UsageKind>();
    let _: fn(&Usages, UsageKind) -> usize = Usages::get;
    let kinds = [
        UsageKind::RustHeap,
        UsageKind::VirtMem,
        UsageKind::PageCache,
        UsageKind::PageTable,
        UsageKind::Dma,
        UsageKind::Global,
    ];
    // `#[repr(u8)]`, in this order, and no other variant.
    for (i, &kind) in kinds.iter().enumerate() {
        assert_eq!(kind as u8 as usize, i);
    }
    assert_eq!(<UsageKind as strum::VariantArray>::VARIANTS, kinds);
    let name: &'static str = UsageKind::PageTable.into();
    assert_eq!(name, "PageTable");
    match UsageKind::Dma {
        UsageKind::RustHeap
        | UsageKind::VirtMem
        | UsageKind::PageCache
        | UsageKind::PageTable
        | UsageKind::Dma
        | UsageKind::Global => {}
    }
}

/// `GlobalPage`.
fn global_page_api() {
    is_debug::<GlobalPage>();
    let _: fn() -> AxResult<GlobalPage> = GlobalPage::alloc;
    let _: fn() -> AxResult<GlobalPage> = GlobalPage::alloc_zero;
    let _: fn(usize, usize) -> AxResult<GlobalPage> = GlobalPage::alloc_contiguous;
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
    assert!(core::mem::needs_drop::<GlobalPage>());
    // A closure capturing state is a valid `start_paddr` argument.
    let offset = 0x1000;
    let _ = move |page: &GlobalPage| {
        page.start_paddr(|va: VirtAddr| PhysAddr::from(va.as_usize() - offset))
    };
}

/// The tracking module (feature `tracking`).
#[cfg(feature = "tracking")]
fn tracking_api() {
    use axalloc::tracking::{self, AllocationInfo};
    is_debug::<AllocationInfo>();
    let _: fn() = tracking::enable_tracking;
    let _: fn() = tracking::disable_tracking;
    let _: fn() -> bool = tracking::tracking_enabled;
    let _: fn() -> u64 = tracking::current_generation;
    let _: fn(core::ops::Range<u64>, fn(&AllocationInfo)) = tracking::allocations_in;
    // A capturing visitor, as a leak report would pass.
    let _ = || {
        let mut bytes = 0;
        tracking::allocations_in(0..u64::MAX, |info| bytes += info.layout.size());
        bytes
    };
    // The fields are public, with these types.
    let info = AllocationInfo {
        layout: Layout::new::<u64>(),
        backtrace: axbacktrace::Backtrace::capture(),
        generation: 7,
    };
    let AllocationInfo {
        layout,
        backtrace,
        generation,
    } = info;
    let _: (Layout, axbacktrace::Backtrace, u64) = (layout, backtrace, generation);
}

#[test]
fn api() {
    global_allocator_api();
    #[cfg(feature = "hv")]
    hv_api();
    byte_allocator_api();
    usage_api();
    global_page_api();
    #[cfg(feature = "tracking")]
    tracking_api();
    assert!(!NAME.is_empty());
    assert_eq!(NEW.usages().get(UsageKind::RustHeap), 0);
}
