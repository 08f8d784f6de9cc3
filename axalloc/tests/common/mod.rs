//! Fixtures shared by axalloc's host tests.
//!
//! The tests run as ArceOS's `make unittest` runs a module: on the host,
//! with `AX_CONFIG_PATH` unset, so axconfig's dummy config applies
//! (`max-cpu-num = 1`), and with percpu's `sp-naive` feature (a dev
//! dependency), so `#[def_percpu]` statics are plain statics.
//!
//! Under that config the buddy-slab backend sees one CPU, id 0, whatever
//! thread calls it, and its CPU pin (`NoPreemptIrqSave`) does nothing on
//! the host: two threads in one heap would share CPU slot 0 unsynchronised.
//! Every test therefore holds [`serial`] for its whole run (the tracking
//! state is global too).
#![allow(dead_code)]

use std::alloc::Layout;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use axalloc::GlobalAllocator;

/// Page size of the page API.
pub const PAGE_SIZE: usize = 0x1000;

/// One gibibyte.
pub const GIB: usize = 1 << 30;

/// Serialises the tests of one test binary (see the module doc), and
/// starts each with identity address translation (a failed test may have
/// left its own).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next test still runs.
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    PHYS_OFFSET.store(0, Ordering::SeqCst);
    TRANSLATOR_OFFSET.store(0, Ordering::SeqCst);
    guard
}

/// A leaked region of `bytes` bytes starting at a gigabyte boundary, as
/// `(start_vaddr, size)`.
///
/// The stock backend's bitmap page allocator indexes pages from the
/// gigabyte boundary below the region, and its default capacity is
/// 256 MiB: a region elsewhere in its gigabyte could exceed it. Only the
/// pages the tests touch are committed.
pub fn region(bytes: usize) -> (usize, usize) {
    let layout = Layout::from_size_align(bytes, GIB).unwrap();
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { std::alloc::alloc(layout) };
    assert!(
        !ptr.is_null(),
        "cannot reserve a {bytes:#x}-byte test region"
    );
    (ptr as usize, bytes)
}

/// The heaps the tests use, one each: statics, because with
/// `page-alloc-64g` a stock `GlobalAllocator` holds a 2 MiB bitmap, more
/// than a test thread's stack takes on the way into a `Box`. A static
/// never moves and outlives everything it hands out.
static HEAPS: [GlobalAllocator; 32] = [const { GlobalAllocator::new() }; 32];
static NEXT_HEAP: AtomicUsize = AtomicUsize::new(0);

/// An allocator no test has used, not initialised.
pub fn empty_heap() -> &'static GlobalAllocator {
    HEAPS
        .get(NEXT_HEAP.fetch_add(1, Ordering::Relaxed))
        .expect("the tests use more heaps than common::HEAPS holds")
}

/// An allocator that manages a new region of `bytes` bytes.
pub fn heap(bytes: usize) -> &'static GlobalAllocator {
    let heap = empty_heap();
    let (start, size) = region(bytes);
    heap.init(start, size);
    heap
}

/// The expected [`GlobalAllocator::name`] of the backend the features
/// select (the line axruntime prints, `use NAME allocator.`).
pub fn expected_name() -> &'static str {
    if cfg!(feature = "buddy-slab") {
        "buddy-slab"
    } else if cfg!(feature = "slab") {
        "slab"
    } else if cfg!(feature = "buddy") {
        "buddy"
    } else {
        "TLSF"
    }
}

/// `virt - PHYS_OFFSET` is the physical address the dummy platform reports
/// for a virtual address (wrapping). Zero (identity) unless a test maps a
/// region elsewhere with [`map_phys`].
static PHYS_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Makes the dummy platform translate `vaddr` to `paddr` (and every other
/// address by the same offset), for the heaps created after this call.
pub fn map_phys(vaddr: usize, paddr: usize) {
    PHYS_OFFSET.store(vaddr.wrapping_sub(paddr), Ordering::SeqCst);
}

/// The dummy platform's translation.
pub fn virt_to_phys(vaddr: usize) -> usize {
    vaddr.wrapping_sub(PHYS_OFFSET.load(Ordering::SeqCst))
}

/// `virt - TRANSLATOR_OFFSET` is what [`TRANSLATOR`] reports.
static TRANSLATOR_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Makes [`TRANSLATOR`] translate `vaddr` to `paddr` (and every other
/// address by the same offset).
pub fn map_phys_hv(vaddr: usize, paddr: usize) {
    TRANSLATOR_OFFSET.store(vaddr.wrapping_sub(paddr), Ordering::SeqCst);
}

/// A hypervisor's address translator (feature `hv`), independent of the
/// dummy platform's translation.
#[cfg(feature = "hv")]
pub struct Translator;

#[cfg(feature = "hv")]
impl axalloc::AddrTranslator for Translator {
    fn virt_to_phys(&self, va: usize) -> Option<usize> {
        Some(va.wrapping_sub(TRANSLATOR_OFFSET.load(Ordering::SeqCst)))
    }
}

/// The translator the `hv` tests install.
#[cfg(feature = "hv")]
pub static TRANSLATOR: Translator = Translator;

/// The platform memory interface that axhal's dummy platform would
/// provide: the buddy-slab backend (the core's `arceos` binding) calls
/// `axplat::mem::virt_to_phys`, which links to this impl. Only
/// `virt_to_phys` is reached by the allocator.
#[cfg(feature = "buddy-slab")]
mod dummy_mem {
    use axplat::mem::{MemIf, RawRange};
    use memory_addr::{PhysAddr, VirtAddr};

    struct DummyMem;

    #[axplat::impl_plat_interface]
    impl MemIf for DummyMem {
        fn phys_ram_ranges() -> &'static [RawRange] {
            &[]
        }

        fn reserved_phys_ram_ranges() -> &'static [RawRange] {
            &[]
        }

        fn mmio_ranges() -> &'static [RawRange] {
            &[]
        }

        fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
            VirtAddr::from(
                paddr
                    .as_usize()
                    .wrapping_add(super::PHYS_OFFSET.load(core::sync::atomic::Ordering::SeqCst)),
            )
        }

        fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
            PhysAddr::from(super::virt_to_phys(vaddr.as_usize()))
        }

        fn kernel_aspace() -> (VirtAddr, usize) {
            (VirtAddr::from(0), usize::MAX)
        }
    }
}
