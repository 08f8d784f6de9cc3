//! Hot-add does its O(pages) work outside the buddy lock: the region's
//! metadata (12 bytes a page) is written while other CPUs keep allocating,
//! and the lock is held only to reserve the range and to publish it. (In
//! ArceOS the lock masks interrupts: before, a 64 GiB region kept them off
//! for 73 ms.)
//!
//! A test platform whose lock records the longest time it was held: adding
//! 8 GiB of address space (24 MiB of metadata, written and first touched
//! here) must hold it for a small fraction of the time the call takes.

mod common;
use buddy_slab_allocator::sync::{RawLock, SpinLock};
use buddy_slab_allocator::{GlobalAllocator, PhysAddr, Platform, VirtAddr};
use common::{PAGE, arena};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Longest hold of any `TimedLock`, in nanoseconds.
static LONGEST_HOLD_NS: AtomicU64 = AtomicU64::new(0);

struct TimedLock(SpinLock);

// SAFETY: it forwards to `SpinLock`, which provides mutual exclusion.
unsafe impl RawLock for TimedLock {
    const UNLOCKED: Self = Self(SpinLock::UNLOCKED);
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        self.0.with(|| {
            let start = Instant::now();
            let r = f();
            let held = start.elapsed().as_nanos() as u64;
            LONGEST_HOLD_NS.fetch_max(held, Ordering::Relaxed);
            r
        })
    }
}

/// One CPU: this test's thread.
struct TimedPlatform;

// SAFETY: only this test's one thread uses the platform, so CPU 0's slot
// has one user; the lock is a spin lock.
unsafe impl Platform for TimedPlatform {
    type Lock = TimedLock;
    type Pin = ();
    fn pin() {}
    fn cpu_id(_: &()) -> Option<usize> {
        Some(0)
    }
    fn max_cpus() -> usize {
        1
    }
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        PhysAddr::from_usize(vaddr.as_usize())
    }
}

#[test]
#[cfg_attr(miri, ignore = "8 GiB of address space")]
fn hot_add_writes_metadata_outside_the_lock() {
    const BYTES: usize = 8 << 30;
    let heap = Box::new(GlobalAllocator::<PAGE, TimedPlatform>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(arena(4 << 20, PAGE, 0)).unwrap() };
    // SAFETY: a fresh private anonymous mapping, never unmapped.
    let ptr = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(ptr, libc::MAP_FAILED);
    // SAFETY: the mapping is BYTES writable bytes, used by nothing else,
    // for the rest of the process.
    let region = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), BYTES) };
    LONGEST_HOLD_NS.store(0, Ordering::Relaxed);
    let start = Instant::now();
    // SAFETY: as above.
    unsafe { heap.add_region(region).unwrap() };
    let took = start.elapsed().as_nanos() as u64;
    let held = LONGEST_HOLD_NS.load(Ordering::Relaxed);
    println!("add_region of 8 GiB: {took} ns, lock held at most {held} ns");
    assert!(
        held * 20 < took,
        "the lock was held {held} ns of the {took} ns add_region took"
    );
    // The new memory is usable.
    let run = heap.alloc_pages(1 << 18, 1 << 30).unwrap();
    // SAFETY: allocated above.
    unsafe { heap.dealloc_pages(run, 1 << 18).unwrap() };
    heap.check_invariants();
}
