//! Per-CPU slot hints (`Platform::SLOT_HINTS`, what the ArceOS binding
//! keeps in a `#[def_percpu]` word): one instance holds them at a time, a
//! CPU's hint is set by its first slow path and names its own slot, the
//! fast paths then find the slot through it alone, and dropping the holder
//! clears them for the next instance.

mod common;
use buddy_slab_allocator::sync::SpinLock;
use buddy_slab_allocator::{GlobalAllocator, PhysAddr, Platform, VirtAddr};
use common::{PAGE, arena};
use core::alloc::Layout;
use core::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

const CPUS: usize = 2;

std::thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// Each CPU's hint word, and whether an instance holds them.
static HINTS: [AtomicUsize; CPUS] = [const { AtomicUsize::new(0) }; CPUS];
static CLAIMED: AtomicBool = AtomicBool::new(false);
/// Fast-path reads of a hint (how the tests see that the hint is used).
static HINT_READS: AtomicUsize = AtomicUsize::new(0);

/// The tests share the hint words: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Like `common::SwitchCpus` (the test thread picks its CPU between calls),
/// with hint words.
struct HintCpus;

// SAFETY: one test thread drives the heaps and switches CPU only between
// calls (so a CPU id is one context at a time); a hint is read and written
// only for the current CPU and zeroed when released.
unsafe impl Platform for HintCpus {
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

    const SLOT_HINTS: bool = true;

    fn claim_slot_hints() -> bool {
        CLAIMED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    fn release_slot_hints() {
        for h in &HINTS {
            h.store(0, Ordering::Relaxed);
        }
        CLAIMED.store(false, Ordering::Release);
    }

    fn slot_hint(_: &()) -> usize {
        HINT_READS.fetch_add(1, Ordering::Relaxed);
        HINTS[CPU.with(Cell::get)].load(Ordering::Relaxed)
    }

    fn set_slot_hint(_: &(), addr: usize) {
        HINTS[CPU.with(Cell::get)].store(addr, Ordering::Relaxed);
    }
}

fn on_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu));
}

fn hint(cpu: usize) -> usize {
    HINTS[cpu].load(Ordering::Relaxed)
}

fn heap() -> Box<GlobalAllocator<PAGE, HintCpus>> {
    let heap = Box::new(GlobalAllocator::<PAGE, HintCpus>::new());
    // SAFETY: leaked arena; the box is not moved until dropped.
    unsafe { heap.init(arena(8 << 20, PAGE, 0)).unwrap() };
    heap
}

fn pair(heap: &GlobalAllocator<PAGE, HintCpus>) {
    let l = Layout::from_size_align(48, 8).unwrap();
    let p = heap.alloc(l).unwrap();
    // SAFETY: allocated just above.
    unsafe { heap.dealloc(p, l) };
}

#[test]
fn a_cpus_hint_names_its_own_slot_and_serves_the_fast_paths() {
    let _serial = serial();
    let heap = heap();
    on_cpu(0);
    assert_eq!(hint(0), 0, "no slow path yet");
    pair(&heap);
    let mine = hint(0);
    assert_ne!(mine, 0, "the first slow path sets the hint");
    on_cpu(1);
    pair(&heap);
    assert_ne!(hint(1), 0);
    assert_ne!(hint(1), mine, "each CPU its own slot");
    // The hint is the slot the CPU's counters are in: CPU 1's objects are
    // counted on slot 1.
    let l = Layout::from_size_align(48, 8).unwrap();
    let p = heap.alloc(l).unwrap();
    assert_eq!(heap.cpu_stats(1).unwrap().slab.live_objects, 1);
    assert_eq!(heap.cpu_stats(0).unwrap().slab.live_objects, 0);
    // SAFETY: allocated just above.
    unsafe { heap.dealloc(p, l) };
    // Fast paths read the hint and nothing else picks the slot.
    let reads = HINT_READS.load(Ordering::Relaxed);
    for _ in 0..100 {
        pair(&heap);
    }
    assert!(HINT_READS.load(Ordering::Relaxed) >= reads + 200);
    assert_eq!(heap.stats().invalid_frees, 0);
    heap.check_invariants();
}

#[test]
fn one_instance_holds_the_hints_and_dropping_it_clears_them() {
    let _serial = serial();
    on_cpu(0);
    let first = heap();
    pair(&first);
    let held = hint(0);
    assert_ne!(held, 0);
    // A second heap cannot claim them: it finds its slots by CPU id, and
    // leaves the first heap's hint alone.
    let second = heap();
    pair(&second);
    assert_eq!(hint(0), held);
    assert_eq!(second.stats().live_objects, 0);
    drop(first);
    assert_eq!(hint(0), 0, "released with the heap that held them");
    assert!(!CLAIMED.load(Ordering::Relaxed));
    // The next heap claims them again.
    let third = heap();
    pair(&third);
    assert_ne!(hint(0), 0);
    pair(&second);
    drop((second, third));
    assert!(!CLAIMED.load(Ordering::Relaxed));
}
