//! Fragmentation goals (issue 13, item 4), on one CPU so that the figures
//! do not depend on scheduling. The buddy takes every block by
//! address-ordered first fit (slabs from the top, runs from the bottom);
//! the figures before it (free lists, a pick among their first 8 blocks)
//! are in the README.
//!
//! - under a mixed load (objects, page runs, a few large runs) held at 20 %
//!   of the heap, the largest free block stays at least 1/4 of free memory
//!   (the goal is 1/8);
//! - under the same mix with a live set swinging between 10 % and 60 % of
//!   the heap, no allocation is refused at the peaks (free lists: about
//!   2 300 refused per run) and, while the heap is 15..25 % allocated, the
//!   largest free block is at least 1/8 of free memory in 9 samples of 10
//!   and never below 1/16 (free lists: 0.010 at worst, 0.038 median). The
//!   issue's goal, 1/8 at every such moment, holds for some region starts
//!   and not others: survivors of a peak can pin every large block for a
//!   moment;
//! - a churn with a constant live set touches a bounded number of distinct
//!   pages: once warmed up, running eight times longer hands out few pages
//!   it had not handed out before (freed memory is reused before fresh
//!   memory is touched, so a host process's resident memory stops growing),
//!   and at most 3.5 times the live set in all.

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
    /// Allocations refused for want of memory.
    failed: usize,
}

impl Churn {
    /// A churn on a fresh heap whose region starts `offset` bytes past a
    /// 16 MiB boundary: where the metadata prefix ends relative to large
    /// aligned blocks decides which of them fit, so the figures depend on
    /// it and the tests fix it.
    fn new(seed: u64, offset: usize) -> Self {
        let heap: &'static GlobalAllocator<PAGE> = Box::leak(Box::new(GlobalAllocator::new()));
        // The CPU slots take a region of their own, so the measured one is
        // the same whatever the slot count (a knob).
        // Both regions come from one arena, the slots' below the measured
        // one: the buddy tries sections in address order, so the leftover
        // of the slots' region is used the same way in every run.
        let whole = arena((16 << 20) + offset + HEAP_BYTES, 16 << 20, 0);
        let (slots, rest) = whole.split_at_mut(16 << 20);
        // SAFETY: disjoint parts of a leaked arena; leaked allocator.
        unsafe {
            heap.init(&mut slots[..1 << 20]).unwrap();
            heap.add_region(&mut rest[offset..]).unwrap();
        }
        Self {
            heap,
            rng: Rng(seed),
            live: Vec::new(),
            live_bytes: 0,
            failed: 0,
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
            let Ok(p) = self.heap.alloc(layout(size)) else {
                self.failed += 1; // full for now: frees will follow
                return;
            };
            let b = Block(p, size);
            on_alloc(&b);
            self.live_bytes += size;
            self.live.push(b);
        }
    }

    /// The largest free block's share of the buddy's free memory.
    fn largest_free_share(&self) -> f64 {
        let per_order = self.heap.free_blocks_per_order();
        let free_pages: usize = per_order.iter().enumerate().map(|(o, n)| n << o).sum();
        self.heap.largest_free_block_pages() as f64 / free_pages as f64
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
    let mut churn = Churn::new(0x5eed_f4a9, 0);
    let target = HEAP_BYTES / 5;
    let (mut worst, mut worst_at) = (f64::MAX, 0);
    for step in 0..300_000 {
        churn.step(target, |_| {});
        if step >= 20_000 && step % 1000 == 0 {
            let ratio = churn.largest_free_share();
            if ratio < worst {
                (worst, worst_at) = (ratio, step);
            }
        }
    }
    println!(
        "fragmentation: at 20 % load the largest free block is at worst {worst:.3} of free memory (step {worst_at})"
    );
    assert_eq!(churn.failed, 0, "allocations refused at 20 % load");
    assert!(
        worst >= 1.0 / 4.0,
        "largest free block {worst:.3} of free memory at step {worst_at}"
    );
}

#[test]
fn a_constant_live_set_touches_a_bounded_number_of_pages() {
    let mut churn = Churn::new(0xc0ff_ee11, 0);
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
    assert_eq!(churn.failed, 0, "allocations refused at 20 % load");
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

/// Where the measured region starts past a 16 MiB boundary: the figures
/// move with it (page-granular starts are the worst seen).
const OFFSETS: [usize; 3] = [0, PAGE, (2 << 20) + PAGE];

#[test]
fn the_largest_free_block_survives_a_swinging_load() {
    for offset in OFFSETS {
        let mut churn = Churn::new(0x51_4e6, offset);
        let managed = churn.heap.managed_bytes();
        const PERIOD: usize = 100_000;
        let (mut ratios, mut worst_at) = (Vec::new(), 0);
        for step in 0..20 * PERIOD {
            let phase = step as f64 / PERIOD as f64 * std::f64::consts::TAU;
            let target = (HEAP_BYTES as f64 * (0.35 + 0.25 * phase.sin())) as usize;
            churn.step(target, |_| {});
            let load = churn.heap.allocated_bytes() as f64 / managed as f64;
            if step >= PERIOD && step % 500 == 0 && (0.15..=0.25).contains(&load) {
                let ratio = churn.largest_free_share();
                if ratios.iter().all(|&r| r > ratio) {
                    worst_at = step;
                }
                ratios.push(ratio);
            }
        }
        ratios.sort_by(f64::total_cmp);
        let worst = ratios[0];
        let below = ratios.iter().filter(|&&r| r < 1.0 / 8.0).count();
        println!(
            "swinging load, region at +{} KiB: {} refused; {} samples at 15-25 % load, largest free block / free memory: worst {worst:.3} (step {worst_at}), median {:.3}, {below} below 1/8",
            offset >> 10,
            churn.failed,
            ratios.len(),
            ratios[ratios.len() / 2]
        );
        assert_eq!(churn.failed, 0, "allocations refused at a 60 % peak");
        assert!(ratios.len() >= 100, "{} samples", ratios.len());
        assert!(
            worst >= 1.0 / 16.0,
            "largest free block {worst:.3} of free memory at step {worst_at}"
        );
        assert!(
            below * 10 <= ratios.len(),
            "{below} of {} samples below 1/8",
            ratios.len()
        );
    }
}
