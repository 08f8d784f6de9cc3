//! Buddy page allocator through its public API.

mod common;
use buddy_slab_allocator::buddy::MAX_RUN_PAGES;
use buddy_slab_allocator::{AllocError, BuddyAllocator, LOWMEM_LIMIT, PhysAddr, VirtAddr};
use common::{PAGE, arena};

type Buddy = BuddyAllocator<PAGE>;

/// A buddy over a fresh arena, and the arena's pointer and length (the
/// pointer keeps the arena's provenance for tests that build overlapping
/// regions from it).
fn buddy_over(bytes: usize, offset: usize) -> (Buddy, *mut u8, usize) {
    let region = arena(bytes, 1 << 21, offset);
    let (start, len) = (region.as_mut_ptr(), region.len());
    let mut b = Buddy::new();
    // SAFETY: the arena is leaked and used by nothing else; the slice is
    // rebuilt from `start` so that `start` stays usable by the test.
    unsafe { b.init(std::slice::from_raw_parts_mut(start, len)).unwrap() };
    b.check_invariants();
    (b, start, len)
}

#[test]
fn metadata_is_12_bytes_and_a_bit_per_page_and_accounting_is_exact() {
    let (b, _, len) = buddy_over(16 << 20, 0);
    let pages = b.total_pages();
    // Metadata (12 B/page), free maps (a bit per page, their summaries and
    // a word per order and level of rounding), at most one page of
    // rounding.
    let maps = pages / 7 + 24 * 3 * 8;
    assert!(
        len - pages * PAGE <= pages * 12 + maps + PAGE,
        "overhead {} for {pages} pages",
        len - pages * PAGE
    );
    assert_eq!(b.free_pages(), pages);
    assert_eq!(b.managed_bytes(), pages * PAGE);
    assert_eq!(b.allocated_bytes(), 0);
}

#[test]
fn aligned_requests_succeed_on_an_unaligned_region_start() {
    // The seed fails alloc_pages(2, 8K) here with plenty free.
    for offset in [PAGE, 3 * PAGE, 5 * PAGE + 100] {
        let (mut b, _, _) = buddy_over(4 << 20, offset);
        for align in [2 * PAGE, 8 * PAGE, 64 * PAGE, 256 * PAGE] {
            let a = b.alloc_pages(2, align).unwrap();
            assert_eq!(a % align, 0);
            // SAFETY: just allocated with this count.
            unsafe { b.dealloc_pages(a, 2).unwrap() };
        }
        b.check_invariants();
    }
}

#[test]
fn split_and_merge_restore_the_largest_block() {
    let (mut b, _, _) = buddy_over(8 << 20, 0);
    let largest = b.largest_free_block_pages();
    let mut runs = Vec::new();
    for n in [1, 3, 7, 16, 5, 2, 33] {
        let a = b.alloc_pages(n, 0).unwrap();
        runs.push((a, n));
    }
    let used: usize = runs.iter().map(|r| r.1).sum();
    assert_eq!(
        b.allocated_bytes(),
        used * PAGE,
        "non-power-of-two runs free their tail"
    );
    for (a, n) in runs.into_iter().rev() {
        // SAFETY: allocated above with this count.
        unsafe { b.dealloc_pages(a, n).unwrap() };
        b.check_invariants();
    }
    assert_eq!(b.largest_free_block_pages(), largest);
    assert_eq!(b.allocated_bytes(), 0);
}

#[test]
fn bad_frees_are_rejected_without_damage() {
    let (mut b, start, _) = buddy_over(4 << 20, 0);
    let a = b.alloc_pages(4, 0).unwrap();
    // SAFETY: the calls are deliberately wrong; the allocator
    // must reject them without touching memory.
    unsafe {
        assert_eq!(
            b.dealloc_pages(a, 3),
            Err(AllocError::NotAllocated),
            "wrong count"
        );
        assert_eq!(
            b.dealloc_pages(a + PAGE, 3),
            Err(AllocError::NotAllocated),
            "inside a run"
        );
        assert_eq!(
            b.dealloc_pages(a + 1, 4),
            Err(AllocError::NotAllocated),
            "unaligned"
        );
        assert_eq!(
            b.dealloc_pages(start.addr().wrapping_sub(1 << 30), 1),
            Err(AllocError::NotAllocated),
            "foreign"
        );
        b.dealloc_pages(a, 4).unwrap();
        assert_eq!(
            b.dealloc_pages(a, 4),
            Err(AllocError::NotAllocated),
            "double free"
        );
    }
    assert_eq!(b.invalid_frees(), 5);
    assert_eq!(
        b.free_pages(),
        b.total_pages(),
        "free pages never exceed total"
    );
    b.check_invariants();
    // Still fully usable, nothing handed out twice.
    let x = b.alloc_pages(1, 0).unwrap();
    let y = b.alloc_pages(1, 0).unwrap();
    assert_ne!(x, y);
}

#[test]
fn invalid_parameters_and_oom() {
    let (mut b, _, _) = buddy_over(1 << 20, 0);
    assert_eq!(b.alloc_pages(0, 0), Err(AllocError::InvalidParam));
    assert_eq!(b.alloc_pages(1, 3 * PAGE), Err(AllocError::InvalidParam));
    assert_eq!(b.alloc_pages(usize::MAX / 2, 0), Err(AllocError::NoMemory));
    assert_eq!(
        b.alloc_pages(b.total_pages() + 1, 0),
        Err(AllocError::NoMemory)
    );
    // Exhaust, fail, free, succeed.
    let mut got = Vec::new();
    while let Ok(a) = b.alloc_pages(1, 0) {
        got.push(a);
    }
    assert_eq!(b.free_pages(), 0);
    assert_eq!(b.alloc_pages(1, 0), Err(AllocError::NoMemory));
    // SAFETY: allocated above.
    unsafe { b.dealloc_pages(got.pop().unwrap(), 1).unwrap() };
    assert!(b.alloc_pages(1, 0).is_ok());
}

#[test]
fn regions_hot_add_and_overlap() {
    let (mut b, start, len) = buddy_over(2 << 20, 0);
    let before = b.total_pages();
    let second = arena(2 << 20, PAGE, 0);
    // SAFETY: leaked arena.
    unsafe { b.add_region(second).unwrap() };
    assert_eq!(b.managed_section_count(), 2);
    assert!(b.total_pages() > before);
    // SAFETY: the second half of the first arena; overlapping ranges are
    // rejected before anything is written.
    let overlap = unsafe { std::slice::from_raw_parts_mut(start.add(len / 2), len / 2) };
    assert_eq!(
        // SAFETY: rejected before anything is written (overlap).
        unsafe { b.add_region(overlap) },
        Err(AllocError::MemoryOverlap)
    );
    let tiny = arena(PAGE, PAGE, 0);
    // SAFETY: leaked arena (too small: rejected).
    let too_small = unsafe { b.add_region(tiny) };
    assert_eq!(too_small, Err(AllocError::InvalidParam));
    b.check_invariants();
    // Sections are sorted and allocations come from both.
    let s0 = b.managed_section(0).unwrap();
    let s1 = b.managed_section(1).unwrap();
    assert!(s0.start_vaddr < s1.start_vaddr);
    let mut n = 0;
    while b.alloc_pages(1, 0).is_ok() {
        n += 1;
    }
    assert_eq!(n, b.total_pages());
}

#[test]
fn alloc_pages_at_takes_an_exact_range() {
    let (mut b, _, _) = buddy_over(4 << 20, 0);
    let s = b.managed_section(0).unwrap();
    let at = s.start_vaddr + 37 * PAGE;
    assert_eq!(b.alloc_pages_at(at, 10), Ok(at));
    b.check_invariants();
    assert_eq!(
        b.alloc_pages_at(at + 5 * PAGE, 10),
        Err(AllocError::NoMemory),
        "overlaps a used run"
    );
    assert_eq!(b.allocated_bytes(), 10 * PAGE, "failed attempt rolled back");
    b.check_invariants();
    // Nothing else hands those pages out.
    while let Ok(a) = b.alloc_pages(1, 0) {
        assert!(a < at || a >= at + 10 * PAGE);
    }
    // SAFETY: allocated above.
    unsafe { b.dealloc_pages(at, 10).unwrap() };
    assert_eq!(b.alloc_pages_at(1 << 40, 1), Err(AllocError::NotAllocated));
    // A page head records runs of at most MAX_RUN_PAGES pages.
    assert_eq!(
        b.alloc_pages_at(at, MAX_RUN_PAGES + 1),
        Err(AllocError::InvalidParam)
    );
    let a = b.alloc_pages(1, 0).expect("the run freed above");
    // SAFETY: `a` is a live run of one page; the resize is refused before
    // anything changes.
    let resized = unsafe { b.resize_pages(a, 1, MAX_RUN_PAGES + 1) };
    assert_eq!(resized, Err(AllocError::InvalidParam));
}

#[test]
fn resize_in_place() {
    let (mut b, _, _) = buddy_over(4 << 20, 0);
    let s = b.managed_section(0).unwrap();
    let a = b.alloc_pages_at(s.start_vaddr, 3).unwrap();
    // SAFETY: a is a 3-page run we own.
    unsafe {
        b.resize_pages(a, 3, 9).unwrap();
        assert_eq!(b.allocated_bytes(), 9 * PAGE);
        b.resize_pages(a, 9, 2).unwrap();
        assert_eq!(b.allocated_bytes(), 2 * PAGE);
        assert_eq!(b.resize_pages(a, 3, 4), Err(AllocError::NotAllocated));
        b.dealloc_pages(a, 2).unwrap();
    }
    b.check_invariants();
    assert_eq!(b.allocated_bytes(), 0);
}

fn fake_phys(vaddr: VirtAddr) -> PhysAddr {
    // Map the test arena so that its upper half lies above the lowmem limit.
    PhysAddr::from_usize(
        vaddr
            .as_usize()
            .wrapping_sub(unsafe_base())
            .wrapping_add(LOWMEM_LIMIT.as_usize() - (2 << 20)),
    )
}

/// `fake_phys` of the byte at `addr`.
fn phys_of(addr: usize) -> PhysAddr {
    fake_phys(VirtAddr::from_usize(addr))
}

static BASE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
fn unsafe_base() -> usize {
    *BASE.get().unwrap()
}

#[test]
fn lowmem_pages_are_below_the_limit() {
    let region = arena(4 << 20, 1 << 21, 0);
    BASE.set(region.as_ptr() as usize).unwrap();
    let mut b = Buddy::with_virt_to_phys(fake_phys);
    assert_eq!(b.lowmem_limit(), LOWMEM_LIMIT);
    // SAFETY: leaked arena.
    unsafe { b.init(region).unwrap() };
    assert_eq!(b.managed_section_count(), 2, "split at the lowmem limit");
    assert!(b.managed_section(0).unwrap().lowmem && !b.managed_section(1).unwrap().lowmem);
    let mut low = 0;
    while let Ok(a) = b.alloc_pages_lowmem(1, 0) {
        assert!(phys_of(a) < LOWMEM_LIMIT && phys_of(a + PAGE - 1) < LOWMEM_LIMIT);
        low += 1;
    }
    assert_eq!(low, b.managed_section(0).unwrap().total_pages);
    // Ordinary allocations still work from high memory.
    let hi = b.alloc_pages(4, 0).unwrap();
    assert!(phys_of(hi) >= LOWMEM_LIMIT);
    b.check_invariants();
}
