//! Statistics read from another CPU while the heap is busy: the figures
//! never underflow or wrap, and the snapshot's identity holds (what is
//! allocated plus what the page caches hold never exceeds what the buddy
//! has handed out, nor managed memory).
//!
//! Two threads move pages between their page caches (one allocates, the
//! other frees, so caches refill and flush through the buddy while blocks
//! migrate between CPUs) and objects between their slabs; a third reads
//! `stats()` and `allocated_bytes()` as fast as it can. Under Miri (fewer
//! rounds) this also checks that reading the counters of a CPU slot its
//! owner is changing is free of data races and aliasing violations.

mod common;
use buddy_slab_allocator::GlobalAllocator;
use common::{PAGE, Sent, arena};
use core::alloc::Layout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

const ROUNDS: usize = if cfg!(miri) { 40 } else { 100_000 };
/// Small batches keep little memory in users' hands, so what the page
/// caches hold is most of what the buddy counts as handed out: the case in
/// which a reader that mixes counters from before and after a refill sees
/// more cached than allocated.
const BATCH: usize = 2;

#[test]
fn statistics_read_during_refills_and_flushes_are_consistent() {
    let heap: &'static GlobalAllocator<PAGE> = Box::leak(Box::new(GlobalAllocator::new()));
    let bytes = if cfg!(miri) { 2 << 20 } else { 32 << 20 };
    // SAFETY: leaked arena; leaked allocator.
    unsafe { heap.init(arena(bytes, PAGE, 0)).unwrap() };
    let managed = heap.managed_bytes();
    let small = Layout::from_size_align(200, 8).unwrap();
    let done = AtomicBool::new(false);
    let reads = std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Vec<(Sent, Sent)>>(4);
        // Allocates pages (and an object per page), hands them over.
        let producer = s.spawn(move || {
            for _ in 0..ROUNDS {
                let batch = (0..BATCH)
                    .map(|_| {
                        let page = heap.alloc_pages_ptr(1, 0).unwrap();
                        let obj = heap.alloc(small).unwrap();
                        (Sent(page), Sent(obj))
                    })
                    .collect();
                tx.send(batch).unwrap();
            }
        });
        // Frees them: pages into its own page cache (flushing when full),
        // objects as remote frees.
        let consumer = s.spawn(move || {
            for batch in rx {
                for (page, obj) in batch {
                    // SAFETY: each block was allocated above in this form
                    // and handed over.
                    unsafe {
                        heap.dealloc_pages(page.0.as_ptr().addr(), 1).unwrap();
                        heap.dealloc(obj.0, small);
                    }
                }
            }
        });
        // Reads statistics until both are done.
        let reader = s.spawn(|| {
            let mut reads = 0usize;
            while !done.load(Ordering::Acquire) {
                let st = heap.stats();
                assert!(st.allocated_bytes <= managed, "{st:?}");
                assert!(
                    st.allocated_bytes + st.cached_page_bytes <= managed,
                    "cached and allocated pages exceed managed memory: {st:?}"
                );
                assert!(st.slab_bytes <= st.allocated_bytes.max(managed), "{st:?}");
                assert!(heap.allocated_bytes() <= managed);
                reads += 1;
            }
            reads
        });
        producer.join().unwrap();
        consumer.join().unwrap();
        done.store(true, Ordering::Release);
        reader.join().unwrap()
    });
    assert!(reads > 0);
    assert_eq!(heap.stats().invalid_frees, 0);
    println!("{reads} statistics read while the heap ran");
}
