//! Multi-thread stress: every thread allocates mixed sizes, frees 75% of its
//! blocks itself and hands 25% to the next thread, which frees them
//! remotely. Contents are checked at every free; after teardown and a full
//! drain the heap is back at its baseline.

mod common;
use buddy_slab_allocator::GlobalAllocator;
use common::{PAGE, Rng, arena, check, fill};
use core::alloc::Layout;
use core::ptr::NonNull;
use std::sync::mpsc;

const THREADS: usize = if cfg!(miri) { 3 } else { 6 };
const ROUNDS: usize = if cfg!(miri) { 2 } else { 40 };
const PER_ROUND: usize = if cfg!(miri) { 40 } else { 400 };
/// Under Miri a large arena costs more than the work: its metadata is
/// written and walked page by page.
const ARENA: usize = if cfg!(miri) { 8 << 20 } else { 128 << 20 };

struct Block(NonNull<u8>, usize, u64);
// SAFETY: a block is an allocation; ownership moves with the message.
unsafe impl Send for Block {}

#[test]
fn threads_free_a_quarter_of_their_blocks_remotely() {
    let mut heap = Box::new(GlobalAllocator::<PAGE>::new());
    // SAFETY: leaked arena, heap boxed.
    unsafe { heap.init(arena(ARENA, PAGE, 0)).unwrap() };
    let baseline = heap.allocated_bytes();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Vec<Block>>()).unzip();
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for (t, rx) in rxs.into_iter().enumerate() {
            let tx = txs[(t + 1) % THREADS].clone();
            let heap = &*heap;
            threads.push(s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9 + t as u64);
                for round in 0..ROUNDS {
                    let mut mine = Vec::with_capacity(PER_ROUND);
                    let mut handed = Vec::new();
                    for i in 0..PER_ROUND {
                        let size = if rng.below(16) == 0 {
                            2049 + rng.below(20_000)
                        } else {
                            1 + rng.below(2048)
                        };
                        let layout = Layout::from_size_align(size, 8).unwrap();
                        let p = heap.alloc(layout).unwrap();
                        let tag = (t as u64) << 40 | (round as u64) << 20 | i as u64;
                        fill(p.as_ptr(), size, tag);
                        if rng.below(4) == 0 {
                            handed.push(Block(p, size, tag))
                        } else {
                            mine.push(Block(p, size, tag))
                        }
                    }
                    tx.send(handed).unwrap();
                    for Block(p, size, tag) in mine.into_iter().chain(rx.recv().unwrap()) {
                        check(p.as_ptr(), size, tag);
                        // SAFETY: live block of this size from this heap.
                        unsafe { heap.dealloc(p, Layout::from_size_align(size, 8).unwrap()) };
                    }
                }
            }));
        }
        // Joined explicitly: a join waits for the thread's exit, its slot's
        // drain included, which the end of the scope does not (`drain_all`
        // below takes `&mut` to the heap that drain borrows).
        for t in threads {
            t.join().unwrap();
        }
    });
    let st = heap.stats();
    assert_eq!(st.invalid_frees, 0);
    assert!(st.remote_frees > THREADS * ROUNDS * PER_ROUND / 8, "{st:?}");
    heap.drain_all();
    heap.check_invariants();
    assert_eq!(heap.stats().live_objects, 0);
    assert_eq!(
        heap.allocated_bytes(),
        baseline,
        "slab pages leaked: {:?}",
        heap.stats()
    );
}
