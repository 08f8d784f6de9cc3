//! Memory comes back (issue 13): what a program frees is usable by any CPU
//! soon, without `drain`, and what a CPU keeps while idle is bounded in
//! bytes.
//!
//! - remote frees are absorbed by the owner's next allocation, even when
//!   it would have stayed on the fast path;
//! - a thread that exits leaves its slot drained, and frees that reach the
//!   slabs of an exited thread are absorbed by the freeing thread;
//! - a pool of worker threads that pass objects around leaves nothing behind
//!   once it is dropped;
//! - after a CPU touched every size class and every cached page order and
//!   freed everything, its idle memory is within its budget.

mod common;
use buddy_slab_allocator::{GlobalAllocator, SlabAllocator};
use common::{PAGE, Sent, arena};
use core::alloc::Layout;
use core::ptr::NonNull;
use std::sync::mpsc;

fn l(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// CPU slots are the process's (one per live thread), shared by every
/// allocator instance: a slot an exited thread gave up can be taken by a
/// thread of another test that never calls this test's allocator, which
/// then cannot drain it (a free into it waits for that thread's calls).
/// The tests here run one at a time, as a program with one heap would.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn heap(bytes: usize) -> &'static GlobalAllocator<PAGE> {
    let heap: &'static GlobalAllocator<PAGE> = Box::leak(Box::new(GlobalAllocator::new()));
    // SAFETY: leaked arena; leaked allocator.
    unsafe { heap.init(arena(bytes, PAGE, 0)).unwrap() };
    heap
}

/// An owner that stays on its fast path still absorbs the frees another
/// thread makes into its slabs, at its next allocation: the slabs they
/// emptied go back to the buddy (or stay within the idle budget).
#[test]
fn remote_frees_are_absorbed_by_the_owners_next_allocation() {
    let _serial = serial();
    let heap = heap(64 << 20);
    let budget = heap.idle_budget_bytes();
    let object = l(64);
    // Warm the class up so that the owner's pairs below stay on its fast
    // path (an active slab with room).
    let warm = heap.alloc(object).unwrap();
    // SAFETY: allocated above.
    unsafe { heap.dealloc(warm, object) };
    let baseline = heap.allocated_bytes();
    let objs: Vec<Sent> = (0..100_000)
        .map(|_| Sent(heap.alloc(object).unwrap()))
        .collect();
    let filled = heap.allocated_bytes();
    assert!(filled >= baseline + 100_000 * 64, "the objects took slabs");
    std::thread::scope(|s| {
        s.spawn(|| {
            for p in objs {
                // SAFETY: allocated above, handed to this thread.
                unsafe { heap.dealloc(p.0, object) };
            }
        });
    });
    // One more pair, which its active slab could serve on the fast path.
    let p = heap.alloc(object).unwrap();
    // SAFETY: allocated just above.
    unsafe { heap.dealloc(p, object) };
    let after = heap.allocated_bytes();
    println!(
        "absorption: {} KiB allocated by the objects, {} KiB after the remote frees \
         and one owner allocation (budget {} KiB)",
        (filled - baseline) >> 10,
        (after - baseline) >> 10,
        budget >> 10
    );
    assert!(
        after <= baseline + budget,
        "{after} bytes allocated after the owner's next allocation: more than \
         the baseline {baseline} plus the idle budget {budget} (was {filled})"
    );
    assert_eq!(
        heap.stats().live_objects,
        0,
        "the remote frees were absorbed"
    );
    assert_eq!(heap.stats().invalid_frees, 0);
}

/// Threads that allocate and pass objects and pages to each other, then
/// exit, leave nothing behind: each exiting thread's slot is drained, and a
/// free into the slabs of a thread that has already exited is absorbed by
/// the freeing thread.
#[test]
fn joined_threads_leave_nothing_behind() {
    let _serial = serial();
    let heap = heap(128 << 20);
    let baseline = heap.allocated_bytes();
    const THREADS: usize = 8;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::channel::<Vec<(Sent, usize)>>())
        .unzip();
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = senders[(t + 1) % THREADS].clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..4000usize {
                    let size = 8 + (i * 97 + t * 31) % 3000;
                    mine.push((Sent(heap.alloc(l(size)).unwrap()), size));
                }
                // Half to the next thread (remote frees there), half freed
                // here.
                let theirs = mine.split_off(mine.len() / 2);
                next.send(theirs).unwrap();
                drop(next);
                for (p, size) in mine {
                    // SAFETY: allocated above.
                    unsafe { heap.dealloc(p.0, l(size)) };
                }
                for (p, size) in rx.recv().unwrap() {
                    // SAFETY: allocated by the previous thread, handed over.
                    unsafe { heap.dealloc(p.0, l(size)) };
                }
            })
        })
        .collect();
    drop(senders);
    for h in handles {
        h.join().unwrap();
    }
    let after = heap.allocated_bytes();
    println!("joined threads: {} bytes left allocated", after - baseline);
    assert_eq!(heap.stats().live_objects, 0);
    assert_eq!(
        after,
        baseline,
        "joined threads left {} bytes allocated",
        after - baseline
    );
    assert_eq!(heap.stats().cached_page_bytes, 0, "their page caches too");
}

/// A pool of workers taking tasks from a shared queue; each task allocates
/// objects that a later task, on any worker, frees. Once the pool is
/// dropped (its threads joined), nothing is left behind.
#[test]
fn a_worker_pool_leaves_nothing_behind_once_dropped() {
    let _serial = serial();
    let heap = heap(128 << 20);
    let baseline = heap.allocated_bytes();
    type Task = Box<dyn FnOnce() + Send>;
    let (tx, rx) = mpsc::channel::<Task>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                loop {
                    let task = rx.lock().unwrap().recv();
                    match task {
                        Ok(task) => task(),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    let (done_tx, done_rx) = mpsc::channel::<Vec<(Sent, usize)>>();
    for round in 0..200usize {
        let done_tx = done_tx.clone();
        // Blocks another task made, to free here.
        let to_free: Vec<(Sent, usize)> = done_rx.try_iter().flatten().collect();
        tx.send(Box::new(move || {
            for (p, size) in to_free {
                // SAFETY: allocated by an earlier task, handed over.
                unsafe { heap.dealloc(p.0, l(size)) };
            }
            let made = (0..500usize)
                .map(|i| {
                    let size = 16 + (i * 131 + round * 7) % 1500;
                    (Sent(heap.alloc(l(size)).unwrap()), size)
                })
                .collect();
            done_tx.send(made).unwrap();
        }))
        .unwrap();
    }
    drop(tx);
    for w in workers {
        w.join().unwrap();
    }
    drop(done_tx);
    // The last tasks' blocks, freed by this thread.
    for (p, size) in done_rx.iter().flatten() {
        // SAFETY: allocated by a task, handed over.
        unsafe { heap.dealloc(p.0, l(size)) };
    }
    let after = heap.allocated_bytes();
    let budget = heap.idle_budget_bytes();
    println!(
        "worker pool: {} KiB left allocated (budget {} KiB)",
        (after - baseline) >> 10,
        budget >> 10
    );
    assert_eq!(heap.stats().live_objects, 0);
    assert!(
        after <= baseline + budget,
        "the pool left {} bytes allocated (this thread may keep {budget})",
        after - baseline
    );
}

/// One CPU touches every size class (three slabs' worth of objects each)
/// and every cached page order, then frees everything: what it keeps idle,
/// empty slabs (empty active slabs included) and cached pages, is within its
/// budget.
#[test]
fn a_cpus_idle_memory_stays_within_its_budget() {
    let _serial = serial();
    let heap = heap(256 << 20);
    let budget = heap.idle_budget_bytes();
    assert!(budget > 0 && budget <= 1 << 20, "1 MiB at most");
    assert!(
        budget <= heap.managed_bytes() / 64,
        "1/64 of managed memory at most"
    );
    let table = SlabAllocator::<PAGE>::default_table();
    for class in table.classes() {
        let size = table.object_bytes(class);
        let objs: Vec<NonNull<u8>> = (0..3 * table.objects_per_slab(class))
            .map(|_| heap.alloc(l(size)).unwrap())
            .collect();
        for p in objs {
            // SAFETY: allocated above with this layout.
            unsafe { heap.dealloc(p, l(size)) };
        }
    }
    for order in 0..4 {
        let pages = 1usize << order;
        let runs: Vec<usize> = (0..512)
            .map(|_| heap.alloc_pages(pages, pages * PAGE).unwrap())
            .collect();
        for r in runs {
            // SAFETY: allocated above with this count.
            unsafe { heap.dealloc_pages(r, pages).unwrap() };
        }
    }
    let id = (0..heap.cpu_slots())
        .find(|&i| heap.cpu_stats(i).unwrap().slab.slab_bytes > 0)
        .expect("this thread's slot");
    let stats = heap.cpu_stats(id).unwrap();
    assert_eq!(stats.slab.live_objects, 0);
    let idle = stats.slab.slab_bytes + stats.cached_page_bytes;
    println!(
        "idle: {} KiB of empty slabs + {} KiB of cached pages, budget {} KiB",
        stats.slab.slab_bytes >> 10,
        stats.cached_page_bytes >> 10,
        budget >> 10
    );
    assert!(
        idle <= budget,
        "idle memory {idle} B ({} B of slabs, {} B of cached pages) over the budget of {budget} B",
        stats.slab.slab_bytes,
        stats.cached_page_bytes
    );
    assert_eq!(
        stats.idle_bytes, idle,
        "the slot reports what it keeps idle"
    );
}
