//! Host tests of the axalloc facade over the backend the features select
//! (`make axalloc-test` runs this file once per feature set).
//!
//! Each test builds its own heap ([`common::heap`]) except `global_heap`,
//! the one test of the `static` that `global_init` sets up.

mod common;

use core::alloc::Layout;
use core::ptr::NonNull;

use axalloc::{AllocError, GlobalAllocator, GlobalPage, UsageKind, global_allocator};
use common::{PAGE_SIZE, expected_name, heap, region, serial};

/// Heap size of the tests that need no more.
const HEAP_BYTES: usize = 16 << 20;

/// Writes a pattern derived from `seed` over `[ptr, ptr + len)`.
fn fill(ptr: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: the tests pass blocks they own, `len` bytes long.
    let bytes = unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), len) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
}

/// Checks the pattern [`fill`] wrote.
fn check(ptr: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: as in `fill`.
    let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), len) };
    for (i, &b) in bytes.iter().enumerate() {
        assert_eq!(
            b,
            seed.wrapping_add(i as u8),
            "byte {i} of {ptr:p} overwritten"
        );
    }
}

fn page_ptr(addr: usize) -> NonNull<u8> {
    NonNull::new(addr as *mut u8).unwrap()
}

#[test]
fn init_name_and_figures() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    assert_eq!(heap.name(), expected_name());
    assert!(heap.available_bytes() > 0);
    assert!(heap.available_pages() > 0);
    for &kind in <UsageKind as strum::VariantArray>::VARIANTS {
        assert_eq!(heap.usages().get(kind), 0, "{kind:?}");
    }
}

#[test]
fn bytes_alloc_dealloc_and_usage() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let mut live = Vec::new();
    let mut total = 0;
    for (i, &(size, align)) in [
        (1, 1),
        (8, 8),
        (24, 8),
        (100, 4),
        (256, 64),
        (1000, 8),
        (4096, 4096),
        (5000, 16),
        (64 << 10, 8),
    ]
    .iter()
    .enumerate()
    {
        let layout = Layout::from_size_align(size, align).unwrap();
        let ptr = heap.alloc(layout).unwrap();
        assert_eq!(ptr.as_ptr() as usize % align, 0, "{layout:?} at {ptr:p}");
        fill(ptr, size, i as u8);
        total += size;
        live.push((ptr, layout, i as u8));
        assert_eq!(heap.usages().get(UsageKind::RustHeap), total);
    }
    for &(ptr, layout, seed) in &live {
        check(ptr, layout.size(), seed);
    }
    for (ptr, layout, _) in live {
        heap.dealloc(ptr, layout);
        total -= layout.size();
        assert_eq!(heap.usages().get(UsageKind::RustHeap), total);
    }
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 0);
}

#[test]
fn used_and_available_bytes_follow_a_large_block() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    const BIG: usize = 1 << 20;
    let before = heap.used_bytes();
    let layout = Layout::from_size_align(BIG, 8).unwrap();
    let ptr = heap.alloc(layout).unwrap();
    let during = heap.used_bytes();
    assert!(during >= before + BIG, "used {before} -> {during}");
    let available_during = heap.available_bytes();
    heap.dealloc(ptr, layout);
    let after = heap.used_bytes();
    assert!(during - after >= BIG, "used {during} -> {after}");
    assert!(heap.available_bytes() >= available_during + BIG);
}

#[test]
fn byte_oom_is_an_error() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let layout = Layout::from_size_align(2 * HEAP_BYTES, 8).unwrap();
    assert!(matches!(heap.alloc(layout), Err(AllocError::NoMemory)));
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 0);
}

#[test]
fn pages_alloc_dealloc_and_usage() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let used = heap.used_pages();
    let available = heap.available_pages();
    let mut runs = Vec::new();
    let mut pages = 0;
    for (i, &(n, align, kind)) in [
        (1, PAGE_SIZE, UsageKind::PageTable),
        (4, 4 * PAGE_SIZE, UsageKind::VirtMem),
        (3, PAGE_SIZE, UsageKind::PageCache),
        (16, 64 << 10, UsageKind::Dma),
        (1, 2 << 20, UsageKind::Global),
    ]
    .iter()
    .enumerate()
    {
        let addr = heap.alloc_pages(n, align, kind).unwrap();
        assert_eq!(
            addr % align,
            0,
            "{n} pages aligned to {align:#x} at {addr:#x}"
        );
        fill(page_ptr(addr), n * PAGE_SIZE, i as u8);
        runs.push((addr, n, kind, i as u8));
        pages += n;
        assert_eq!(heap.usages().get(kind), n * PAGE_SIZE, "{kind:?}");
        assert_eq!(heap.used_pages(), used + pages);
        if !cfg!(feature = "level-1") {
            // One level: the byte allocator's free bytes grow and shrink
            // with the heap, not page by page.
            assert_eq!(heap.available_pages(), available - pages);
        }
    }
    for &(addr, n, _, seed) in &runs {
        check(page_ptr(addr), n * PAGE_SIZE, seed);
    }
    for (addr, n, kind, _) in runs {
        heap.dealloc_pages(addr, n, kind);
        assert_eq!(heap.usages().get(kind), 0, "{kind:?}");
    }
    assert_eq!(heap.used_pages(), used);
    if !cfg!(feature = "level-1") {
        assert_eq!(heap.available_pages(), available);
    }
}

/// The stock page allocator (a bitmap) with one free page: an aligned
/// one-page request still gets it if it is aligned, and only then (the
/// bitmap allocator itself ignores the alignment of one-page requests).
#[cfg(not(any(feature = "buddy-slab", feature = "level-1")))]
#[test]
fn one_aligned_page_in_a_full_heap() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let kind = UsageKind::VirtMem;
    let mut pages = Vec::new();
    while let Ok(addr) = heap.alloc_pages(1, PAGE_SIZE, kind) {
        pages.push(addr);
    }
    pages.sort_unstable();
    // Free one page at a 64 KiB (not 128 KiB) boundary, and one that is
    // not even 8 KiB aligned.
    let aligned = *pages
        .iter()
        .find(|&&a| a % (64 << 10) == 0 && a % (128 << 10) != 0)
        .unwrap();
    let unaligned = aligned + 5 * PAGE_SIZE;
    assert!(pages.contains(&unaligned));
    heap.dealloc_pages(aligned, 1, kind);
    heap.dealloc_pages(unaligned, 1, kind);
    assert!(heap.alloc_pages(1, 128 << 10, kind).is_err());
    assert_eq!(heap.alloc_pages(1, 64 << 10, kind).ok(), Some(aligned));
    assert!(heap.alloc_pages(1, 8 << 10, kind).is_err());
    assert_eq!(heap.alloc_pages(1, PAGE_SIZE, kind).ok(), Some(unaligned));
    for addr in pages {
        heap.dealloc_pages(addr, 1, kind);
    }
    assert_eq!(heap.usages().get(kind), 0);
}

/// Page frees the backend refuses leave the usage counters (and the
/// backend) as they were: a double free, an address outside the heap, an
/// unaligned one, and (buddy-slab) a wrong count.
#[cfg(not(feature = "level-1"))]
#[test]
fn rejected_page_frees_keep_usages() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let other = heap
        .alloc_pages(1, PAGE_SIZE, UsageKind::PageTable)
        .unwrap();
    let kind = UsageKind::VirtMem;
    let run = heap.alloc_pages(2, PAGE_SIZE, kind).unwrap();
    let live = heap.alloc_pages(4, 4 * PAGE_SIZE, kind).unwrap();
    assert_eq!(heap.usages().get(kind), 6 * PAGE_SIZE);
    heap.dealloc_pages(run, 2, kind);
    let used = heap.used_pages();
    let expect = |what: &str| {
        assert_eq!(heap.usages().get(kind), 4 * PAGE_SIZE, "{what}");
        assert_eq!(heap.usages().get(UsageKind::PageTable), PAGE_SIZE, "{what}");
        assert_eq!(heap.used_pages(), used, "{what}");
    };
    expect("after the first free");
    heap.dealloc_pages(run, 2, kind);
    expect("double free");
    heap.dealloc_pages(run, 1, kind);
    expect("double free of a part");
    let (foreign, _) = region(HEAP_BYTES);
    heap.dealloc_pages(foreign, 1, kind);
    expect("foreign address");
    heap.dealloc_pages(PAGE_SIZE, 1, kind);
    expect("low address");
    heap.dealloc_pages(live + 8, 1, kind);
    expect("unaligned address");
    heap.dealloc_pages(live, 0, kind);
    expect("no pages");
    if cfg!(feature = "buddy-slab") {
        // The bitmap allocator cannot tell a run from part of one.
        heap.dealloc_pages(live, 3, kind);
        expect("wrong count");
        heap.dealloc_pages(live + PAGE_SIZE, 1, kind);
        expect("interior page");
    }
    heap.dealloc_pages(live, 4, kind);
    heap.dealloc_pages(other, 1, UsageKind::PageTable);
    assert_eq!(heap.usages().get(kind), 0);
    assert_eq!(heap.usages().get(UsageKind::PageTable), 0);
}

/// A byte free the core rejects (double, interior, wrong class) leaves
/// `RustHeap` usage where it was: usage moves only for frees the backend
/// accepted. (The stock byte allocators cannot tell a bad free.)
#[cfg(feature = "buddy-slab")]
#[test]
fn rejected_byte_frees_keep_usages() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let l = Layout::from_size_align(100, 8).unwrap();
    let a = heap.alloc(l).unwrap();
    let b = heap.alloc(l).unwrap();
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 200);
    heap.dealloc(a, l);
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 100);
    heap.dealloc(a, l);
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 100, "double free");
    // SAFETY: a pointer inside `b`, freed on purpose as a bad free.
    heap.dealloc(unsafe { b.add(8) }, l);
    assert_eq!(
        heap.usages().get(UsageKind::RustHeap),
        100,
        "interior pointer"
    );
    heap.dealloc(b, Layout::from_size_align(1000, 8).unwrap());
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 100, "wrong class");
    heap.dealloc(b, l);
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 0);
}

#[test]
fn bad_page_requests_are_errors() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let kind = UsageKind::VirtMem;
    assert!(heap.alloc_pages(0, PAGE_SIZE, kind).is_err());
    assert!(heap.alloc_pages(1, 3 * PAGE_SIZE, kind).is_err());
    assert!(
        heap.alloc_pages(usize::MAX / PAGE_SIZE, PAGE_SIZE, kind)
            .is_err()
    );
    assert!(
        heap.alloc_pages(2 * HEAP_BYTES / PAGE_SIZE, PAGE_SIZE, kind)
            .is_err()
    );
    assert_eq!(heap.usages().get(kind), 0);
}

#[cfg(not(feature = "level-1"))]
#[test]
fn pages_at_a_given_address() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let kind = UsageKind::VirtMem;
    // A free, 64 KiB-aligned run of 8 pages: found by allocating it.
    let addr = heap.alloc_pages(8, 64 << 10, kind).unwrap();
    heap.dealloc_pages(addr, 8, kind);
    let used = heap.used_pages();

    assert_eq!(
        heap.alloc_pages_at(addr, 8, 64 << 10, kind).ok(),
        Some(addr)
    );
    assert_eq!(heap.usages().get(kind), 8 * PAGE_SIZE);
    assert_eq!(heap.used_pages(), used + 8);
    fill(page_ptr(addr), 8 * PAGE_SIZE, 7);
    // Taken: neither the run nor a page inside it can be had again.
    assert!(heap.alloc_pages_at(addr, 8, PAGE_SIZE, kind).is_err());
    assert!(
        heap.alloc_pages_at(addr + 3 * PAGE_SIZE, 1, PAGE_SIZE, kind)
            .is_err()
    );
    // A start that is not aligned as asked.
    assert!(
        heap.alloc_pages_at(addr + PAGE_SIZE, 1, 64 << 10, kind)
            .is_err()
    );
    assert_eq!(heap.usages().get(kind), 8 * PAGE_SIZE);
    check(page_ptr(addr), 8 * PAGE_SIZE, 7);

    heap.dealloc_pages(addr, 8, kind);
    assert_eq!(heap.usages().get(kind), 0);
    assert_eq!(heap.used_pages(), used);
}

#[cfg(feature = "level-1")]
#[test]
fn pages_at_a_given_address() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    // A byte allocator cannot place a block at a chosen address (the
    // published crate panics here).
    let addr = heap.alloc_pages(1, PAGE_SIZE, UsageKind::VirtMem).unwrap();
    heap.dealloc_pages(addr, 1, UsageKind::VirtMem);
    assert!(matches!(
        heap.alloc_pages_at(addr, 1, PAGE_SIZE, UsageKind::VirtMem),
        Err(AllocError::InvalidParam)
    ));
    assert_eq!(heap.usages().get(UsageKind::VirtMem), 0);
}

#[test]
fn add_memory_grows_the_heap() {
    let _serial = serial();
    let heap = heap(HEAP_BYTES);
    let layout = Layout::from_size_align(1 << 20, 8).unwrap();
    let mut live = Vec::new();
    while let Ok(ptr) = heap.alloc(layout) {
        live.push(ptr);
        assert!(
            live.len() <= HEAP_BYTES >> 20,
            "more 1 MiB blocks than the heap holds"
        );
    }
    assert!(
        live.len() >= 8,
        "only {} 1 MiB blocks in a 16 MiB heap",
        live.len()
    );
    let (start, size) = region(HEAP_BYTES);
    heap.add_memory(start, size).unwrap();
    let more = heap.alloc(layout).unwrap();
    assert!((start..start + size).contains(&(more.as_ptr() as usize)));
    live.push(more);
    assert_eq!(heap.usages().get(UsageKind::RustHeap), live.len() << 20);
    for ptr in live {
        heap.dealloc(ptr, layout);
    }
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 0);
}

/// The `static` behind `global_allocator()`: `global_init`,
/// `global_add_memory`, the `GlobalAlloc` impl and [`GlobalPage`]. One
/// test, because the static is initialised once per process.
#[test]
fn global_heap() {
    let _serial = serial();
    let (start, size) = region(HEAP_BYTES);
    #[cfg(not(feature = "hv"))]
    axalloc::global_init(start, size);
    #[cfg(feature = "hv")]
    axalloc::global_init(start, size, &common::TRANSLATOR);
    let heap: &'static GlobalAllocator = global_allocator();
    assert_eq!(heap.name(), expected_name());
    let (extra, extra_size) = region(HEAP_BYTES);
    axalloc::global_add_memory(extra, extra_size).unwrap();

    // The Rust allocator interface.
    let layout = Layout::from_size_align(300, 16).unwrap();
    // SAFETY: a non-zero-size layout; freed below with the same layout.
    let ptr = unsafe { core::alloc::GlobalAlloc::alloc(heap, layout) };
    assert!(!ptr.is_null() && (ptr as usize).is_multiple_of(16));
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 300);
    // SAFETY: allocated above with this layout.
    unsafe { core::alloc::GlobalAlloc::dealloc(heap, ptr, layout) };
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 0);
    let huge = Layout::from_size_align(1 << 40, 8).unwrap();
    // SAFETY: a non-zero-size layout; the null result is not used.
    assert!(unsafe { core::alloc::GlobalAlloc::alloc(heap, huge) }.is_null());

    // GlobalPage: owned pages, accounted as `Global`, freed on drop.
    let mut one = GlobalPage::alloc().unwrap();
    assert_eq!(one.size(), PAGE_SIZE);
    assert_eq!(one.start_vaddr().as_usize() % PAGE_SIZE, 0);
    one.fill(0xa5);
    assert!(one.as_slice().iter().all(|&b| b == 0xa5));
    let zero = GlobalPage::alloc_zero().unwrap();
    assert!(zero.as_slice().iter().all(|&b| b == 0));
    let mut run = GlobalPage::alloc_contiguous(4, 16 * PAGE_SIZE).unwrap();
    assert_eq!(run.size(), 4 * PAGE_SIZE);
    assert_eq!(run.start_vaddr().as_usize() % (16 * PAGE_SIZE), 0);
    run.as_slice_mut()[4 * PAGE_SIZE - 1] = 7;
    assert_eq!(run.as_slice()[4 * PAGE_SIZE - 1], 7);
    assert_eq!(run.as_ptr(), run.as_mut_ptr().cast_const());
    let paddr = run.start_paddr(|va| memory_addr::PhysAddr::from(va.as_usize() - 0x1000));
    assert_eq!(paddr.as_usize(), run.start_vaddr().as_usize() - 0x1000);
    assert_eq!(heap.usages().get(UsageKind::Global), 6 * PAGE_SIZE);
    assert!(GlobalPage::alloc_contiguous(1 << 30, PAGE_SIZE).is_err());
    drop((one, zero, run));
    assert_eq!(heap.usages().get(UsageKind::Global), 0);
}

/// DMA32 pages (`alloc_dma32_pages`, the published `hv` API; here with the
/// buddy-slab backend, so also under `buddy-slab` alone): the first 4 MiB
/// of the heap's region are mapped below 4 GiB, the rest above. Without
/// `hv` the dummy platform maps them; with `hv` the installed
/// `AddrTranslator` does, while the platform says everything is above.
#[cfg(feature = "buddy-slab")]
#[test]
fn dma32_pages_lie_below_4_gib() {
    const LOW: usize = 4 << 20;
    const DMA32_END: usize = 1 << 32;
    const RUN: usize = 4;
    let _serial = serial();
    let (start, size) = region(HEAP_BYTES);
    let heap = common::empty_heap();
    #[cfg(not(feature = "hv"))]
    common::map_phys(start, DMA32_END - LOW);
    #[cfg(feature = "hv")]
    {
        common::map_phys(start, DMA32_END);
        common::map_phys_hv(start, DMA32_END - LOW);
        heap.set_addr_translator(&common::TRANSLATOR);
    }
    let phys = |vaddr: usize| vaddr - start + DMA32_END - LOW;
    heap.init(start, size);

    let kind = UsageKind::Dma;
    let mut runs = Vec::new();
    while let Ok(addr) = heap.alloc_dma32_pages(RUN, RUN * PAGE_SIZE, kind) {
        assert_eq!(addr % (RUN * PAGE_SIZE), 0);
        assert!(
            phys(addr + RUN * PAGE_SIZE - 1) < DMA32_END,
            "{addr:#x} above 4 GiB"
        );
        fill(page_ptr(addr), RUN * PAGE_SIZE, runs.len() as u8);
        runs.push(addr);
        assert_eq!(heap.usages().get(kind), runs.len() * RUN * PAGE_SIZE);
    }
    // All of the low part but its page metadata and CPU slots, no more.
    let dma_bytes = runs.len() * RUN * PAGE_SIZE;
    assert!(
        (LOW - (256 << 10)..=LOW).contains(&dma_bytes),
        "{dma_bytes:#x} DMA32 bytes"
    );
    // Ordinary pages come from above 4 GiB, and are still there.
    let high = heap
        .alloc_pages(RUN, PAGE_SIZE, UsageKind::VirtMem)
        .unwrap();
    assert!(phys(high) >= DMA32_END);
    heap.dealloc_pages(high, RUN, UsageKind::VirtMem);
    // A freed DMA32 run can be had again; the others kept their contents.
    let last = runs.pop().unwrap();
    heap.dealloc_pages(last, RUN, kind);
    assert_eq!(
        heap.alloc_dma32_pages(RUN, PAGE_SIZE, kind).ok(),
        Some(last)
    );
    runs.push(last);
    for (i, &addr) in runs[..runs.len() - 1].iter().enumerate() {
        check(page_ptr(addr), RUN * PAGE_SIZE, i as u8);
    }
    // Bad requests.
    assert!(heap.alloc_dma32_pages(0, PAGE_SIZE, kind).is_err());
    assert!(heap.alloc_dma32_pages(1, 3 * PAGE_SIZE, kind).is_err());
    assert!(
        heap.alloc_dma32_pages(usize::MAX / PAGE_SIZE, PAGE_SIZE, kind)
            .is_err()
    );
    assert_eq!(heap.usages().get(kind), dma_bytes);
    for addr in runs {
        heap.dealloc_pages(addr, RUN, kind);
    }
    assert_eq!(heap.usages().get(kind), 0);
}
