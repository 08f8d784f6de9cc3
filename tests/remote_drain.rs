//! Busy and idle CPUs drained on request (issue 14, item 2): when memory is
//! still short after a reclaim (which drains only the calling CPU and the
//! slots the platform says are idle), the facade asks the platform to have
//! every other CPU drain now (`Platform::drain_other_cpus`, an
//! inter-processor interrupt in a kernel) and tries once more. Here a test
//! platform plays the interrupt: it drains the other CPUs' slots through the
//! hook the heap registered, as their interrupt handlers would.

mod common;
use buddy_slab_allocator::platform::DrainHook;
use buddy_slab_allocator::sync::SpinLock;
use buddy_slab_allocator::{AllocError, GlobalAllocator, PhysAddr, Platform, VirtAddr};
use common::{CPUS, PAGE, SwitchCpus, arena, on_cpu};
use core::alloc::Layout;
use core::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

std::thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
    static HOOK: Cell<Option<DrainHook>> = const { Cell::new(None) };
}

/// Requests answered by [`Ipi::drain_other_cpus`].
static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// `SwitchCpus` plus drains on request: every other CPU's slot of the
/// registered heap, from the requesting thread (each test drives its heap
/// from one thread, so no other context owns those slots meanwhile).
struct Ipi;

// SAFETY: as `SwitchCpus`: a heap is driven by one thread, which switches
// CPU only between calls, so the slots `drain_other_cpus` drains are owned
// by no context while it runs (O1).
unsafe impl Platform for Ipi {
    type Lock = SpinLock;
    type Pin = ();
    fn pin() {}
    fn cpu_id(_: &()) -> Option<usize> {
        Some(CPU.with(Cell::get))
    }
    fn max_cpus() -> usize {
        CPUS
    }
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        PhysAddr::from_usize(vaddr.as_usize())
    }
    fn register_instance(hook: DrainHook) {
        HOOK.with(|h| h.set(Some(hook)));
    }
    fn unregister_instance(instance: *const ()) {
        HOOK.with(|h| {
            if h.get().is_some_and(|k| k.instance() == instance) {
                h.set(None);
            }
        });
    }
    fn drain_other_cpus() -> bool {
        let Some(hook) = HOOK.with(Cell::get) else {
            return false;
        };
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let me = CPU.with(Cell::get);
        for cpu in (0..CPUS).filter(|&c| c != me) {
            // SAFETY: the heap is alive (registered) and no context owns
            // slot `cpu` now (see the impl's SAFETY comment).
            let faults = unsafe { hook.drain(cpu) };
            assert!(faults.is_empty(), "{faults:?}");
        }
        true
    }
}

/// CPU 1 fills its page cache and keeps an empty slab, then goes quiet;
/// CPU 0 takes single pages until none is left. Returns the pages CPU 0
/// got, the pages that were free before, and what CPU 1 still caches.
fn exhaust<P: Platform>(
    heap: &GlobalAllocator<PAGE, P>,
    set_cpu: impl Fn(usize),
) -> (usize, usize, usize) {
    set_cpu(1);
    let pages: Vec<usize> = (0..64)
        .map(|_| heap.alloc_pages(1, PAGE).unwrap())
        .collect();
    let objects: Vec<_> = (0..64)
        .map(|_| {
            heap.alloc(Layout::from_size_align(256, 8).unwrap())
                .unwrap()
        })
        .collect();
    for p in pages {
        // SAFETY: allocated above, one page each.
        unsafe { heap.dealloc_pages(p, 1).unwrap() };
    }
    for o in objects {
        // SAFETY: allocated above with this layout.
        unsafe { heap.dealloc(o, Layout::from_size_align(256, 8).unwrap()) };
    }
    assert!(
        heap.cpu_stats(1).unwrap().idle_bytes > 0,
        "CPU 1 caches something"
    );
    set_cpu(0);
    let free = (heap.managed_bytes() - heap.allocated_bytes()) / PAGE;
    let mut got = Vec::new();
    loop {
        match heap.alloc_pages(1, PAGE) {
            Ok(p) => got.push(p),
            Err(e) => {
                assert_eq!(e, AllocError::NoMemory);
                break;
            }
        }
    }
    let n = got.len();
    let cached = heap.cpu_stats(1).unwrap().idle_bytes;
    for p in got {
        // SAFETY: allocated above, one page each.
        unsafe { heap.dealloc_pages(p, 1).unwrap() };
    }
    (n, free, cached)
}

#[test]
fn an_allocation_short_of_memory_has_the_other_cpus_drained_and_retries() {
    let heap = Box::new(GlobalAllocator::<PAGE, Ipi>::new());
    // SAFETY: leaked arena; boxed allocator, not moved after init.
    unsafe { heap.init(arena(4 << 20, PAGE, 0)).unwrap() };
    let set_cpu = |c| CPU.with(|cpu| cpu.set(c));
    let before = REQUESTS.load(Ordering::Relaxed);
    let (got, free, cached) = exhaust(&heap, set_cpu);
    assert!(
        REQUESTS.load(Ordering::Relaxed) > before,
        "the platform was asked"
    );
    assert_eq!(cached, 0, "CPU 1 drained on request");
    assert_eq!(got, free, "every free page reached CPU 0");

    // Objects too: CPU 1's empty slab comes back for CPU 0's objects.
    set_cpu(1);
    let l = Layout::from_size_align(2048, 8).unwrap();
    let o = heap.alloc(l).unwrap();
    // SAFETY: allocated above with this layout.
    unsafe { heap.dealloc(o, l) };
    set_cpu(0);
    let mut objects = Vec::new();
    while let Ok(o) = heap.alloc(l) {
        objects.push(o);
    }
    assert_eq!(heap.cpu_stats(1).unwrap().idle_bytes, 0, "CPU 1 drained");
    for o in objects {
        // SAFETY: allocated above with this layout.
        unsafe { heap.dealloc(o, l) };
    }
    assert_eq!(heap.stats().invalid_frees, 0);
}

/// The same on a platform that cannot ask: CPU 1's caches stay out of
/// reach (what the hook is for).
#[test]
fn without_the_request_an_idle_cpus_caches_stay_out_of_reach() {
    let heap = Box::new(GlobalAllocator::<PAGE, SwitchCpus>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(arena(4 << 20, PAGE, 0)).unwrap() };
    let (got, free, cached) = exhaust(&heap, on_cpu);
    assert!(cached > 0);
    assert!(got < free, "{got} of {free} pages");
}
