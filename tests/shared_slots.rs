//! Threads without a CPU slot of their own (beyond `cpu.host-max-cpus`) are
//! spread over several shared slots; a free from one such thread to another
//! is then remote, queued on the other shared slot. When memory runs short
//! on one shared slot, the others must give back what they hold, although
//! a call on a shared slot may not take a second shared slot's lock.

mod common;
use buddy_slab_allocator::{GlobalAllocator, config};
use common::{PAGE, arena};
use core::alloc::Layout;
use core::ptr::NonNull;
use std::sync::{Arc, Barrier};

#[test]
fn frees_queued_on_an_unused_shared_slot_come_back_when_memory_runs_short() {
    let heap: &'static GlobalAllocator<PAGE> = Box::leak(Box::new(GlobalAllocator::new()));
    // SAFETY: leaked arena; leaked allocator.
    unsafe { heap.init(arena(16 << 20, PAGE, 0)).unwrap() };
    let l = Layout::from_size_align(512, 8).unwrap();
    // Holders take every CPU slot and keep it until the end.
    let cpus = config::cpu::HOST_MAX_CPUS;
    let (taken, done) = (
        Arc::new(Barrier::new(cpus + 1)),
        Arc::new(Barrier::new(cpus + 1)),
    );
    let holders: Vec<_> = (0..cpus)
        .map(|_| {
            let (taken, done) = (taken.clone(), done.clone());
            std::thread::spawn(move || {
                let p = heap.alloc(l).unwrap();
                // SAFETY: allocated above with this layout.
                unsafe { heap.dealloc(p, l) };
                taken.wait();
                done.wait();
            })
        })
        .collect();
    taken.wait();
    // One slotless thread allocates, the next (another shared slot) frees.
    let blocks: Vec<usize> = std::thread::spawn(move || {
        (0..3000)
            .map(|_| heap.alloc(l).unwrap().as_ptr().addr())
            .collect()
    })
    .join()
    .unwrap();
    std::thread::spawn(move || {
        for b in blocks {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { heap.dealloc(NonNull::new(b as *mut u8).unwrap(), l) };
        }
    })
    .join()
    .unwrap();
    let holding = || {
        (cpus..heap.cpu_slots())
            .filter(|&id| heap.cpu_stats(id).unwrap().slab.live_objects > 0)
            .count()
    };
    assert_eq!(
        holding(),
        1,
        "the frees wait on the first thread's shared slot"
    );
    // A third slotless thread takes everything it can.
    let kept: Vec<usize> = std::thread::spawn(move || {
        let mut kept = Vec::new();
        while let Ok(p) = heap.alloc(l) {
            kept.push(p.as_ptr().addr());
        }
        kept
    })
    .join()
    .unwrap();
    assert_eq!(
        holding(),
        1,
        "only the last thread's shared slot holds objects: the queued frees came back"
    );
    let kept_bytes = kept.len() * l.size();
    assert!(
        kept_bytes >= heap.managed_bytes() / 10 * 9,
        "{} KiB of {} KiB",
        kept_bytes >> 10,
        heap.managed_bytes() >> 10
    );
    for b in kept {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { heap.dealloc(NonNull::new(b as *mut u8).unwrap(), l) };
    }
    done.wait();
    for h in holders {
        h.join().unwrap();
    }
    assert_eq!(heap.stats().invalid_frees, 0);
}
