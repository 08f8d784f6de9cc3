//! Global facade: routing, realloc, remote frees, bad input, OOM recovery,
//! the typed (`VirtAddr`/`PhysAddr`) page API.

mod common;
use buddy_slab_allocator::{AllocError, GlobalAllocator};
use common::{PAGE, Sent, arena, check, fill};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

type Heap = GlobalAllocator<PAGE>;

// Smaller under Miri, which interprets every instruction and slows down
// as an arena's bookkeeping fragments with every object touched.
/// Objects one thread allocates and another frees.
const REMOTE_OBJECTS: u64 = if cfg!(miri) { 300 } else { 20_000 };
/// Arena of the tests that hold many objects or a multi-MiB run.
const BIG_ARENA: usize = if cfg!(miri) { 4 << 20 } else { 32 << 20 };
/// The largest run of the round trip: (size, align).
const LARGEST_RUN: (usize, usize) = if cfg!(miri) {
    (384 << 10, 256 << 10)
} else {
    (3 << 20, 1 << 20)
};
/// Objects allocated after the bad frees, checked distinct and intact.
const AFTER_BAD_INPUT: u64 = if cfg!(miri) { 200 } else { 1000 };
/// Arena that the OOM test exhausts with 1000-byte objects.
const OOM_ARENA: usize = if cfg!(miri) { 1 << 20 } else { 4 << 20 };

/// Initialises `h` over a leaked arena of `bytes`. The caller keeps the
/// heap where it is from now on: the platform holds its address (a Box
/// returned after `init` would be a move, which invalidates that pointer
/// under Stacked Borrows).
fn init(h: &Heap, bytes: usize) {
    // SAFETY: leaked arena; the caller's Box keeps the allocator in place
    // and is not moved.
    unsafe { h.init(arena(bytes, PAGE, 0)).unwrap() };
}

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn small_and_large_requests_round_trip() {
    let mut h = Box::new(Heap::new());
    init(&h, BIG_ARENA);
    let base = h.allocated_bytes();
    let mut live = Vec::new();
    for (i, &(size, align)) in [
        (1, 1),
        (8, 8),
        (24, 8),
        (64, 64),
        (2048, 2048),
        (2049, 8),
        (4096, 4096),
        (100_000, 16),
        LARGEST_RUN,
    ]
    .iter()
    .enumerate()
    {
        let p = h.alloc(l(size, align)).unwrap();
        assert_eq!(p.as_ptr() as usize % align, 0);
        fill(p.as_ptr(), size, i as u64);
        live.push((p, l(size, align), i as u64));
    }
    for (p, layout, tag) in live {
        check(p.as_ptr(), layout.size(), tag);
        // SAFETY: allocated above with this layout.
        unsafe { h.dealloc(p, layout) };
    }
    h.check_invariants();
    h.drain_all();
    assert_eq!(h.allocated_bytes(), base, "everything returned after drain");
    assert_eq!(h.stats().invalid_frees, 0);
}

#[test]
fn realloc_grows_and_shrinks_in_place_when_it_can() {
    let h = Box::new(Heap::new());
    init(&h, 16 << 20);
    let p = h.alloc(l(50, 8)).unwrap();
    fill(p.as_ptr(), 50, 1);
    // SAFETY: pointer and layout from this allocator.
    let q = unsafe { h.realloc(p, l(50, 8), 56) }.unwrap();
    assert_eq!(p, q, "same size class: in place");
    // SAFETY: pointer and layout from this allocator.
    let r = unsafe { h.realloc(q, l(56, 8), 1000) }.unwrap();
    check(r.as_ptr(), 50, 1);
    // SAFETY: pointer and layout from this allocator.
    let big = unsafe { h.realloc(r, l(1000, 8), 5 * PAGE) }.unwrap();
    check(big.as_ptr(), 50, 1);
    // SAFETY: pointer and layout from this allocator.
    let bigger = unsafe { h.realloc(big, l(5 * PAGE, 8), 7 * PAGE) }.unwrap();
    check(bigger.as_ptr(), 50, 1);
    // SAFETY: pointer and layout from this allocator.
    let smaller = unsafe { h.realloc(bigger, l(7 * PAGE, 8), 3 * PAGE) }.unwrap();
    assert_eq!(smaller, bigger, "page runs shrink in place");
    // SAFETY: pointer and layout from this allocator.
    let tiny = unsafe { h.realloc(smaller, l(3 * PAGE, 8), 16) }.unwrap();
    check(tiny.as_ptr(), 16, 1);
    // SAFETY: live allocation.
    unsafe { h.dealloc(tiny, l(16, 8)) };
    assert_eq!(h.stats().invalid_frees, 0);
    // Through GlobalAlloc too.
    // SAFETY: GlobalAlloc contract upheld: non-zero layout, matching frees.
    unsafe {
        let g = GlobalAlloc::alloc(&*h, l(300, 8));
        let g2 = GlobalAlloc::realloc(&*h, g, l(300, 8), 310);
        assert_eq!(g, g2);
        GlobalAlloc::dealloc(&*h, g2, l(310, 8));
    }
}

#[test]
fn bad_input_gets_errors_and_leaves_the_heap_sound() {
    let h = Box::new(Heap::new());
    init(&h, 8 << 20);
    assert_eq!(h.alloc(l(0, 1)), Err(AllocError::InvalidParam));
    assert_eq!(h.alloc(l(1 << 40, 8)), Err(AllocError::NoMemory));
    assert_eq!(h.alloc_pages(0, 0), Err(AllocError::InvalidParam));
    assert_eq!(h.alloc_pages(1, 3 * PAGE), Err(AllocError::InvalidParam));
    let small = h.alloc(l(64, 8)).unwrap();
    let page_ptr = h.alloc_pages_ptr(2, 0).unwrap();
    let page = page_ptr.as_ptr().addr();
    let mut x = 0u64;
    let foreign = NonNull::from(&mut x).cast::<u8>();
    // SAFETY: each call is a deliberate bad free that must be
    // rejected without touching memory.
    unsafe {
        h.dealloc(small, l(64, 8));
        h.dealloc(small, l(64, 8)); // double free
        h.dealloc(foreign, l(8, 8)); // not ours
        h.dealloc(NonNull::new_unchecked(small.as_ptr().add(64)), l(128, 8)); // wrong class
        assert_eq!(h.dealloc_pages(page, 1), Err(AllocError::NotAllocated)); // wrong count
        assert_eq!(
            h.dealloc_pages(page + PAGE, 1),
            Err(AllocError::NotAllocated)
        ); // inside
        h.dealloc(page_ptr, l(64, 8)); // page run freed as object
        h.dealloc_pages(page, 2).unwrap();
        assert_eq!(h.dealloc_pages(page, 2), Err(AllocError::NotAllocated)); // double
    }
    assert_eq!(h.stats().invalid_frees, 7);
    h.check_invariants();
    // Later allocations are distinct and intact.
    let mut got: Vec<_> = (0..AFTER_BAD_INPUT)
        .map(|i| {
            let p = h.alloc(l(64, 8)).unwrap();
            fill(p.as_ptr(), 64, i);
            (p, i)
        })
        .collect();
    got.sort_by_key(|g| g.0);
    assert!(got.windows(2).all(|w| w[0].0 != w[1].0));
    for (p, i) in got {
        check(p.as_ptr(), 64, i);
    }
}

#[test]
fn oom_is_an_error_and_the_heap_recovers() {
    let mut h = Box::new(Heap::new());
    init(&h, OOM_ARENA);
    let mut live = Vec::new();
    loop {
        match h.alloc(l(1000, 8)) {
            Ok(p) => live.push(p),
            Err(e) => {
                assert_eq!(e, AllocError::NoMemory);
                break;
            }
        }
    }
    // Slabs of 1000-byte objects waste little: most of the arena is used.
    assert!(live.len() > OOM_ARENA / 1000 * 3 / 4, "{}", live.len());
    // Slabs need blocks of several pages; single pages may remain.
    let mut pages = Vec::new();
    while let Ok(a) = h.alloc_pages(1, 0) {
        pages.push(a);
    }
    assert_eq!(
        h.alloc(l(8, 8))
            .map(|_| ())
            .or_else(|e| if e == AllocError::NoMemory {
                Ok(())
            } else {
                Err(e)
            }),
        Ok(())
    );
    assert_eq!(h.alloc_pages(1, 0), Err(AllocError::NoMemory));
    // Free half: allocations work again.
    for p in live.drain(..live.len() / 2) {
        // SAFETY: allocated above.
        unsafe { h.dealloc(p, l(1000, 8)) };
    }
    assert!(h.alloc(l(1000, 8)).is_ok());
    h.drain_all();
    // Adding memory also ends OOM.
    let more = arena(OOM_ARENA, PAGE, 0);
    // SAFETY: leaked arena.
    unsafe { h.add_region(more).unwrap() };
    assert!(h.alloc_pages(OOM_ARENA / PAGE / 4, 0).is_ok());
    assert_eq!(h.managed_section_count(), 2);
}

#[test]
fn remote_frees_return_objects_and_slabs_to_the_owner() {
    let mut h = Box::new(Heap::new());
    init(&h, BIG_ARENA);
    let base = h.allocated_bytes();
    let layout = l(256, 8);
    // This thread takes a CPU slot first, so the other thread gets another
    // one (slots of exited threads are reused).
    h.drain();
    let warm = h.alloc(layout).unwrap();
    // SAFETY: allocated just above.
    unsafe { h.dealloc(warm, layout) };
    // Another thread allocates; this one frees everything (all remote).
    let ptrs: Vec<Sent> = std::thread::scope(|s| {
        s.spawn(|| {
            (0..REMOTE_OBJECTS)
                .map(|i| {
                    let p = h.alloc(layout).unwrap();
                    fill(p.as_ptr(), 256, i);
                    Sent(p)
                })
                .collect()
        })
        .join()
        .unwrap()
    });
    for (i, &Sent(p)) in ptrs.iter().enumerate() {
        check(p.as_ptr(), 256, i as u64);
        // SAFETY: allocated by the other thread with this layout.
        unsafe { h.dealloc(p, layout) };
    }
    let st = h.stats();
    assert_eq!(st.remote_frees, REMOTE_OBJECTS as usize);
    assert_eq!(st.invalid_frees, 0);
    // The owner thread has exited; drain_all absorbs its pending slabs and
    // returns every one of them (the seed leaks these).
    h.drain_all();
    assert_eq!(h.allocated_bytes(), base);
    assert_eq!(h.stats().live_objects, 0);
}

#[test]
fn remote_double_free_is_detected() {
    let h = Box::new(Heap::new());
    init(&h, 8 << 20);
    let layout = l(32, 8);
    let own = h.alloc(layout).unwrap(); // take a slot before the other thread
    let Sent(p) =
        std::thread::scope(|s| s.spawn(|| Sent(h.alloc(layout).unwrap())).join().unwrap());
    assert_ne!(p, own);
    // SAFETY: the second free is a deliberate double free.
    unsafe {
        h.dealloc(p, layout);
        h.dealloc(p, layout);
    }
    assert_eq!(h.stats().invalid_frees, 1);
}

/// The typed page API (issue 14 item 5): `VirtAddr` runs from the facade,
/// lowmem runs whose `PhysAddr` lies below the typed lowmem limit, a run
/// taken back at its `VirtAddr`, and misuse answered with the same errors
/// as the `usize` forms.
#[test]
fn typed_page_api_round_trips_and_rejects_misuse() {
    use buddy_slab_allocator::{LOWMEM_LIMIT, MemoryAddr, Platform, VirtAddr};
    use common::{LowHalf, low_half_heap};

    let h = low_half_heap();
    assert_eq!(h.lowmem_limit(), LOWMEM_LIMIT);

    let run: VirtAddr = h.alloc_pages_vaddr(4, 4 * PAGE).unwrap();
    assert!(run.is_aligned(4 * PAGE));
    let low = h.alloc_pages_lowmem_vaddr(2, 0).unwrap();
    assert!(LowHalf::virt_to_phys(low) < LOWMEM_LIMIT);
    assert!(LowHalf::virt_to_phys(low + (2 * PAGE - 1)) < LOWMEM_LIMIT);

    // SAFETY: allocated above, not used.
    unsafe { h.dealloc_pages_vaddr(run, 4).unwrap() };
    assert_eq!(
        h.alloc_pages_at_vaddr(run, 4),
        Ok(run),
        "taken back exactly"
    );

    // Misuse: typed errors, nothing changes.
    assert_eq!(h.alloc_pages_at_vaddr(run, 1), Err(AllocError::NoMemory)); // in use
    assert_eq!(
        h.alloc_pages_at_vaddr(run + 1, 1),
        Err(AllocError::InvalidParam) // not page aligned
    );
    assert_eq!(
        h.alloc_pages_at_vaddr(VirtAddr::from_usize(PAGE), 1),
        Err(AllocError::NotAllocated) // outside managed memory
    );
    assert_eq!(h.alloc_pages_vaddr(0, 0), Err(AllocError::InvalidParam));
    // SAFETY: not a run (inside one): rejected, nothing changes.
    let inside = unsafe { h.dealloc_pages_vaddr(run + PAGE, 1) };
    assert_eq!(inside, Err(AllocError::NotAllocated));
    // SAFETY: the runs allocated above, each freed once.
    unsafe {
        h.dealloc_pages_vaddr(run, 4).unwrap();
        h.dealloc_pages_vaddr(low, 2).unwrap();
    }
    // SAFETY: freed just above: a double free, rejected.
    let double = unsafe { h.dealloc_pages_vaddr(low, 2) };
    assert_eq!(double, Err(AllocError::NotAllocated));
    h.drain();
    assert_eq!(h.stats().allocated_bytes, 0);
}
