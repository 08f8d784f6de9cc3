//! Host tests of `ax_alloc::tracking` (axalloc's tracking.rs, shared by
//! both ArceOS lines; axalloc/tests/tracking.rs tests it in full there):
//! what this line's `tracking_line` decides, the per-CPU re-entry flag and
//! the raw bucket locks, over the global allocator.
//!
//! Every test holds `common::heap()` and leaves tracking disabled with no
//! records of its own behind.
// `tracking` alone selects no backend (every call panics, as published).
#![cfg(all(feature = "tracking", any(feature = "tlsf", feature = "buddy-slab")))]

mod common;

use core::alloc::{GlobalAlloc, Layout};

use ax_alloc::global_allocator;
use ax_alloc::tracking::{allocations_in, current_generation, disable_tracking, enable_tracking};

/// Disables tracking even when a test fails.
struct Disable;

impl Drop for Disable {
    fn drop(&mut self) {
        disable_tracking();
    }
}

fn alloc(layout: Layout) -> *mut u8 {
    // SAFETY: non-zero sizes.
    unsafe { GlobalAlloc::alloc(global_allocator(), layout) }
}

fn dealloc(ptr: *mut u8, layout: Layout) {
    // SAFETY: the tests free their own blocks with their layouts.
    unsafe { GlobalAlloc::dealloc(global_allocator(), ptr, layout) }
}

fn count(range: core::ops::Range<u64>) -> usize {
    let mut n = 0;
    allocations_in(range, |_| n += 1);
    n
}

#[test]
fn records_follow_their_blocks() {
    let _heap = common::heap();
    let _disable = Disable;
    let layout = Layout::from_size_align(48, 8).unwrap();
    enable_tracking();
    let start = current_generation();
    let blocks: Vec<*mut u8> = (0..4).map(|_| alloc(layout)).collect();
    assert_eq!(current_generation(), start + 4);
    assert_eq!(count(start..u64::MAX), 4);
    disable_tracking();
    // Freed while disabled: the records go with their blocks.
    for p in blocks {
        dealloc(p, layout);
    }
    assert_eq!(count(start..u64::MAX), 0);
}

/// A visitor runs inside tracking: its own allocations are not recorded,
/// and an `allocations_in` nested in it visits nothing, however often:
/// a refused re-entry must leave the outer one's flag set.
#[test]
fn nested_visits_stay_untracked() {
    let _heap = common::heap();
    let _disable = Disable;
    let layout = Layout::from_size_align(100, 8).unwrap();
    enable_tracking();
    let start = current_generation();
    let blocks: Vec<*mut u8> = (0..3).map(|_| alloc(layout)).collect();
    let (mut visits, mut nested) = (0, 0);
    allocations_in(start..current_generation(), |_| {
        visits += 1;
        let scratch = alloc(layout);
        assert!(!scratch.is_null());
        dealloc(scratch, layout);
        allocations_in(0..u64::MAX, |_| nested += 1);
    });
    assert_eq!((visits, nested), (3, 0));
    assert_eq!(
        current_generation(),
        start + 3,
        "the visitor's blocks went unrecorded"
    );
    for p in blocks {
        dealloc(p, layout);
    }
    assert_eq!(count(start..u64::MAX), 0);
}
