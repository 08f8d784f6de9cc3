//! Host tests of `axalloc::tracking` over the backend the features select
//! (`make axalloc-test` runs them with `tracking`, `buddy-slab,tracking`,
//! `hv,tracking` and `level-1,tracking`).
//!
//! The tracking state is global: every test holds [`common::serial`] and
//! leaves tracking disabled with no records of its own behind.
#![cfg(feature = "tracking")]

mod common;

use core::alloc::{GlobalAlloc, Layout};

use axalloc::tracking::{
    AllocationInfo, allocations_in, current_generation, disable_tracking, enable_tracking,
    tracking_enabled,
};
use axalloc::{GlobalAllocator, UsageKind};
use common::{heap, serial};

const HEAP_BYTES: usize = 16 << 20;

/// The records of generations `range`, as `(generation, layout)`, sorted.
fn records(range: core::ops::Range<u64>) -> Vec<(u64, Layout)> {
    let mut seen = Vec::new();
    allocations_in(range, |info: &AllocationInfo| {
        seen.push((info.generation, info.layout))
    });
    seen.sort_by_key(|&(generation, _)| generation);
    seen
}

/// Allocates through `GlobalAlloc`, the tracked interface.
fn alloc(heap: &GlobalAllocator, layout: Layout) -> *mut u8 {
    // SAFETY: the tests use non-zero sizes.
    unsafe { GlobalAlloc::alloc(heap, layout) }
}

/// Frees through `GlobalAlloc`.
fn dealloc(heap: &GlobalAllocator, ptr: *mut u8, layout: Layout) {
    // SAFETY: the tests free their own blocks with their layouts.
    unsafe { GlobalAlloc::dealloc(heap, ptr, layout) }
}

/// Disables tracking even when a test fails, so the next one starts clean.
struct Disable;

impl Drop for Disable {
    fn drop(&mut self) {
        disable_tracking();
    }
}

#[test]
fn records_appear_and_disappear() {
    let _serial = serial();
    let _disable = Disable;
    let heap = heap(HEAP_BYTES);
    assert!(!tracking_enabled());
    let start = current_generation();
    let untracked = alloc(heap, Layout::from_size_align(40, 8).unwrap());
    assert_eq!(current_generation(), start, "recorded while disabled");

    enable_tracking();
    assert!(tracking_enabled());
    let layouts: Vec<Layout> = (0..10)
        .map(|i| Layout::from_size_align(16 << i, 8 << (i % 4)).unwrap())
        .collect();
    let blocks: Vec<*mut u8> = layouts.iter().map(|&l| alloc(heap, l)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    let end = current_generation();
    assert_eq!(end, start + 10);
    let expect: Vec<(u64, Layout)> = (start..end).zip(layouts.iter().copied()).collect();
    assert_eq!(records(start..end), expect);
    assert_eq!(records(start + 2..start + 4), expect[2..4]);
    assert_eq!(records(0..start), []);
    // The untracked interface makes no record.
    let direct = heap.alloc(Layout::new::<u64>()).unwrap();
    assert_eq!(current_generation(), end);

    // Frees drop their records, also once tracking is disabled.
    for i in (0..10).step_by(2) {
        dealloc(heap, blocks[i], layouts[i]);
    }
    let odd: Vec<_> = expect.iter().copied().skip(1).step_by(2).collect();
    assert_eq!(records(start..end), odd);
    disable_tracking();
    for i in (1..10).step_by(2) {
        dealloc(heap, blocks[i], layouts[i]);
    }
    assert_eq!(records(start..end), []);

    dealloc(heap, untracked, Layout::from_size_align(40, 8).unwrap());
    heap.dealloc(direct, Layout::new::<u64>());
    // Record memory came from this heap and went back to it.
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 0);
}

#[test]
fn realloc_moves_the_record() {
    let _serial = serial();
    let _disable = Disable;
    let heap = heap(HEAP_BYTES);
    enable_tracking();
    let start = current_generation();
    let small = Layout::from_size_align(24, 8).unwrap();
    let ptr = alloc(heap, small);
    // SAFETY: `ptr` holds 24 bytes.
    unsafe { ptr.write_bytes(0x5a, 24) };
    // SAFETY: `ptr` is live with layout `small`; 4000 is a valid size.
    let moved = unsafe { heap.realloc(ptr, small, 4000) };
    assert!(!moved.is_null());
    // SAFETY: `moved` holds 4000 bytes, the first 24 copied over.
    let copied = unsafe { core::slice::from_raw_parts(moved, 24) };
    assert!(copied.iter().all(|&b| b == 0x5a));
    let big = Layout::from_size_align(4000, 8).unwrap();
    assert_eq!(records(start..current_generation()), [(start + 1, big)]);
    dealloc(heap, moved, big);
    assert_eq!(records(start..current_generation()), []);
}

/// A visitor runs inside tracking: what it allocates is not recorded, it
/// can free, and a nested `allocations_in` visits nothing (no deadlock).
#[test]
fn visitors_may_allocate() {
    let _serial = serial();
    let _disable = Disable;
    let heap = heap(HEAP_BYTES);
    enable_tracking();
    let start = current_generation();
    let layout = Layout::from_size_align(100, 8).unwrap();
    let blocks: Vec<*mut u8> = (0..3).map(|_| alloc(heap, layout)).collect();
    let mut visits = 0;
    let mut nested = 0;
    allocations_in(start..current_generation(), |_| {
        visits += 1;
        let scratch = alloc(heap, layout);
        assert!(!scratch.is_null());
        dealloc(heap, scratch, layout);
        allocations_in(0..u64::MAX, |_| nested += 1);
    });
    assert_eq!((visits, nested), (3, 0));
    assert_eq!(current_generation(), start + 3);
    assert_eq!(records(start..u64::MAX).len(), 3);
    for ptr in blocks {
        dealloc(heap, ptr, layout);
    }
    assert_eq!(records(start..u64::MAX), []);
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 0);
}

/// With the heap exhausted, an allocation whose record finds no memory
/// still stands; every record goes with its block, and so does the record
/// memory.
#[test]
fn records_in_a_full_heap() {
    let _serial = serial();
    let _disable = Disable;
    let heap = heap(HEAP_BYTES);
    enable_tracking();
    let start = current_generation();
    let layout = Layout::from_size_align(4000, 8).unwrap();
    let mut blocks = Vec::new();
    loop {
        let ptr = alloc(heap, layout);
        if ptr.is_null() {
            break;
        }
        blocks.push(ptr);
        assert!(
            blocks.len() <= HEAP_BYTES / 4000,
            "more blocks than the heap holds"
        );
    }
    let recorded = records(start..u64::MAX).len();
    assert!(recorded <= blocks.len() && recorded + 4 >= blocks.len());
    // Small blocks into the last gaps: some may go unrecorded.
    let tiny = Layout::new::<u64>();
    let mut tinies = Vec::new();
    loop {
        let ptr = alloc(heap, tiny);
        if ptr.is_null() {
            break;
        }
        tinies.push(ptr);
    }
    for ptr in blocks {
        dealloc(heap, ptr, layout);
    }
    for ptr in tinies {
        dealloc(heap, ptr, tiny);
    }
    assert_eq!(records(start..u64::MAX), []);
    assert_eq!(heap.usages().get(UsageKind::RustHeap), 0);
}

/// A free with a layout other than the record's is a bad free: the
/// buddy-slab core refuses it, and the record stays until the real free.
#[cfg(feature = "buddy-slab")]
#[test]
fn a_bad_free_keeps_the_record() {
    let _serial = serial();
    let _disable = Disable;
    let heap = heap(HEAP_BYTES);
    enable_tracking();
    let start = current_generation();
    let layout = Layout::from_size_align(64, 8).unwrap();
    let ptr = alloc(heap, layout);
    dealloc(heap, ptr, Layout::from_size_align(1024, 8).unwrap());
    assert_eq!(records(start..u64::MAX), [(start, layout)]);
    dealloc(heap, ptr, layout);
    assert_eq!(records(start..u64::MAX), []);
}

/// The records are global: allocations of two heaps (two backends'
/// worth of state) are recorded side by side and dropped by their own
/// heap's frees.
#[test]
fn two_heaps() {
    let _serial = serial();
    let _disable = Disable;
    let (first, second) = (heap(HEAP_BYTES), heap(HEAP_BYTES));
    enable_tracking();
    let start = current_generation();
    let layout = Layout::from_size_align(512, 64).unwrap();
    let a = alloc(first, layout);
    let b = alloc(second, layout);
    assert_eq!(records(start..u64::MAX).len(), 2);
    dealloc(first, a, layout);
    assert_eq!(records(start..u64::MAX), [(start + 1, layout)]);
    dealloc(second, b, layout);
    assert_eq!(records(start..u64::MAX), []);
    assert_eq!(first.usages().get(UsageKind::RustHeap), 0);
    assert_eq!(second.usages().get(UsageKind::RustHeap), 0);
}
