//! Memory pressure: memory cached by other CPUs (their slabs, remote frees
//! waiting for them, their page caches) is reclaimed before an allocation
//! fails.

mod common;
use buddy_slab_allocator::{AllocError, GlobalAllocator};
use common::{PAGE, arena};
use core::alloc::Layout;
use core::ptr::NonNull;

#[test]
fn a_large_allocation_succeeds_after_other_cpus_freed_their_memory() {
    // 'static so plain threads can use it: `JoinHandle::join` returns only
    // after a thread's TLS destructors ran, i.e. after it released its CPU
    // slot (scoped threads signal completion earlier).
    let heap: &'static GlobalAllocator<PAGE> = Box::leak(Box::new(GlobalAllocator::<PAGE>::new()));
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(arena(16 << 20, PAGE, 0)).unwrap() };
    let managed = heap.managed_bytes();
    let small = Layout::from_size_align(192, 8).unwrap();
    // Four threads fill the heap with small objects and page runs until it
    // runs out, then hand their blocks to the next thread.
    let filled: Vec<Vec<usize>> = {
        (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let r = if mine.len() % 7 == t {
                            heap.alloc_pages(1, 0).map(|a| a | 1)
                        } else {
                            heap.alloc(small).map(|p| p.as_ptr() as usize)
                        };
                        match r {
                            Ok(a) => mine.push(a),
                            Err(e) => {
                                assert_eq!(e, AllocError::NoMemory);
                                break mine;
                            }
                        }
                    }
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    };
    assert!(
        heap.allocated_bytes() * 10 > managed * 9,
        "the heap was full"
    );
    // Other threads free everything (remote frees for the objects), and
    // exit, leaving their caches and the owners' pending slabs behind.
    let freers: Vec<_> = filled
        .into_iter()
        .map(|blocks| {
            std::thread::spawn(move || {
                for a in blocks {
                    // SAFETY: each block was allocated above in this form.
                    unsafe {
                        if a & 1 == 1 {
                            heap.dealloc_pages(a & !1, 1).unwrap();
                        } else {
                            heap.dealloc(NonNull::new(a as *mut u8).unwrap(), small);
                        }
                    }
                }
            })
        })
        .collect();
    for f in freers {
        f.join().unwrap();
    }
    // 90% of the heap in one run: only possible if every CPU's caches,
    // empty slabs and remotely freed slabs were reclaimed.
    let pages = managed / PAGE * 9 / 10;
    let big = heap.alloc_pages(pages, 0).expect("reclaim before OOM");
    // SAFETY: allocated just above.
    unsafe { heap.dealloc_pages(big, pages).unwrap() };
    assert_eq!(heap.stats().invalid_frees, 0);
}

/// Lowmem (DMA32) pages freed into a CPU's page cache are reclaimed for a
/// lowmem request rather than failing it.
#[test]
fn lowmem_pages_in_a_page_cache_serve_lowmem_requests() {
    use buddy_slab_allocator::{LOWMEM_LIMIT, Platform, VirtAddr};
    use common::{LOW_HALF_ARENA, LowHalf, low_half_heap};

    let heap = low_half_heap();
    let low: Vec<usize> = std::iter::from_fn(|| heap.alloc_pages_lowmem(1, 0).ok()).collect();
    assert!(
        low.len() > LOW_HALF_ARENA / PAGE / 8,
        "{} lowmem pages",
        low.len()
    );
    for &p in &low {
        // SAFETY: allocated above, freed once.
        unsafe { heap.dealloc_pages(p, 1).unwrap() };
    }
    assert!(
        heap.stats().cached_page_bytes > 0,
        "some sit in the page cache"
    );
    let again: Vec<usize> = std::iter::from_fn(|| heap.alloc_pages_lowmem(1, 0).ok()).collect();
    assert_eq!(again.len(), low.len(), "every lowmem page served again");
    assert!(
        again
            .iter()
            .all(|&p| LowHalf::virt_to_phys(VirtAddr::from_usize(p + PAGE - 1)) < LOWMEM_LIMIT)
    );
    for &p in &again {
        // SAFETY: allocated above, freed once.
        unsafe { heap.dealloc_pages(p, 1).unwrap() };
    }
    heap.drain();
    assert_eq!(heap.stats().allocated_bytes, 0);
}
