//! Space workloads: heap efficiency f1 and f2, metadata overhead h. Deterministic for a given
//! seed, so they run once per trial without interleaving.

use super::{
    Block, Config, Outcome, free_all, free_checked, layout8, small_size, try_alloc_tagged,
};
use crate::{
    allocators::{BenchAlloc, PAGE_BYTES},
    check::{check_head, check_tag, expect_block, tag_for, write_tag},
    rng::Rng,
    timing::Summary,
};

/// Live requested bytes over arena bytes, in percent.
fn percent_of(live_bytes: usize, arena_bytes: usize) -> f64 {
    live_bytes as f64 * 100.0 / arena_bytes as f64
}

/// f1: uniform 8..2048 B; each step allocates with probability 5/6 or frees a random live
/// block with probability 1/6, until the first failed allocation; reports live requested
/// bytes / arena bytes. A fresh arena per trial.
pub fn workload_f1<A: BenchAlloc>(cfg: &Config) -> Outcome {
    let trials: Vec<f64> = (0..cfg.efficiency_trials)
        .map(|trial| {
            let alloc = A::create(cfg.arena_bytes);
            let arena_bytes = alloc.arena_bytes().expect("arena allocator");
            let mut rng = Rng::new(cfg.seed ^ 0xF1 ^ (trial as u64) << 32);
            let mut live: Vec<Block> = Vec::new();
            let mut live_bytes = 0usize;
            let mut next_id = 0u64;
            loop {
                if rng.range(0, 6) < 5 || live.is_empty() {
                    let size_bytes = small_size(&mut rng);
                    // SAFETY: non-zero size.
                    let Some(block) = (unsafe { try_alloc_tagged(&alloc, size_bytes, next_id) })
                    else {
                        break;
                    };
                    next_id += 1;
                    live.push(block);
                    live_bytes += size_bytes;
                } else {
                    let block = live.swap_remove(rng.range(0, live.len()));
                    live_bytes -= block.size_bytes;
                    // SAFETY: removed from `live`, so freed exactly once.
                    unsafe { free_checked(&alloc, block) };
                }
            }
            let percent = percent_of(live_bytes, arena_bytes);
            free_all(&alloc, &mut live);
            percent
        })
        .collect();
    Outcome::Measured(Summary::of(&trials))
}

/// Size distribution of talc's heap-efficiency benchmark: `rand(4..rand(16..10000))`.
fn talc_method_size(rng: &mut Rng) -> usize {
    let upper = rng.range(16, 10_000);
    rng.range(4, upper)
}

/// f2: talc's heap-efficiency method: each step allocates (50%), frees a random live block
/// (10%) or reallocates a random live block to a new size (40%), sizes
/// `rand(4..rand(16..10000))`, until the first failed allocation or reallocation; reports live
/// requested bytes / arena bytes. A fresh arena per trial.
pub fn workload_f2<A: BenchAlloc>(cfg: &Config) -> Outcome {
    let trials: Vec<f64> = (0..cfg.efficiency_trials)
        .map(|trial| {
            let alloc = A::create(cfg.talc_method_arena_bytes);
            let arena_bytes = alloc.arena_bytes().expect("arena allocator");
            let mut rng = Rng::new(cfg.seed ^ 0xF2 ^ (trial as u64) << 32);
            let mut live: Vec<Block> = Vec::new();
            let mut live_bytes = 0usize;
            let mut next_id = 0u64;
            loop {
                let action = rng.range(0, 10);
                if action < 5 || live.is_empty() {
                    let size_bytes = talc_method_size(&mut rng);
                    // SAFETY: non-zero size.
                    let Some(block) = (unsafe { try_alloc_tagged(&alloc, size_bytes, next_id) })
                    else {
                        break;
                    };
                    next_id += 1;
                    live.push(block);
                    live_bytes += size_bytes;
                } else if action == 5 {
                    let block = live.swap_remove(rng.range(0, live.len()));
                    live_bytes -= block.size_bytes;
                    // SAFETY: removed from `live`, so freed exactly once.
                    unsafe { free_checked(&alloc, block) };
                } else {
                    let index = rng.range(0, live.len());
                    let block = live[index];
                    let new_size_bytes = talc_method_size(&mut rng);
                    // SAFETY: the block is live; on success the old pointer is dead and
                    // replaced in `live`, on failure it stays live and is freed below.
                    let new_ptr = unsafe {
                        check_tag(block.ptr, block.size_bytes, block.tag, A::NAME);
                        alloc.realloc(block.ptr, layout8(block.size_bytes), new_size_bytes)
                    };
                    if new_ptr.is_null() {
                        break;
                    }
                    expect_block(new_ptr, layout8(new_size_bytes), A::NAME);
                    // SAFETY: `new_ptr` is live with `new_size_bytes`; its head was copied.
                    unsafe {
                        check_head(
                            new_ptr,
                            block.size_bytes.min(new_size_bytes),
                            block.tag,
                            A::NAME,
                        );
                        write_tag(new_ptr, new_size_bytes, block.tag);
                    }
                    live[index] = Block {
                        ptr: new_ptr,
                        size_bytes: new_size_bytes,
                        tag: block.tag,
                    };
                    live_bytes = live_bytes - block.size_bytes + new_size_bytes;
                }
            }
            let percent = percent_of(live_bytes, arena_bytes);
            free_all(&alloc, &mut live);
            percent
        })
        .collect();
    Outcome::Measured(Summary::of(&trials))
}

/// Block sizes tried, in this order, once no larger block fits (the slab classes of the seed
/// and a page).
const DRAIN_SIZES_BYTES: [usize; 10] = [4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8];

/// h: metadata overhead per managed page: `(arena bytes − allocatable bytes) / (arena bytes /
/// 4096)`. Allocatable bytes come from a greedy probe: repeatedly allocate the largest block
/// that still fits (binary search at 8-byte precision), then drain with fixed small sizes.
/// Covers everything an allocator does not hand out: headers, metadata, alignment padding
/// and granularity (a buddy's power-of-two rounding is not counted: the probe asks for what
/// fits). A fresh arena.
pub fn workload_h<A: BenchAlloc>(cfg: &Config) -> Outcome {
    let alloc = A::create(cfg.arena_bytes);
    let arena_bytes = alloc.arena_bytes().expect("arena allocator");
    let mut live: Vec<Block> = Vec::new();
    let mut allocatable_bytes = 0usize;
    let try_alloc = |size_bytes: usize| -> *mut u8 {
        // SAFETY: non-zero size.
        unsafe { alloc.alloc(layout8(size_bytes)) }
    };
    let mut keep = |live: &mut Vec<Block>, ptr: *mut u8, size_bytes: usize| {
        expect_block(ptr, layout8(size_bytes), A::NAME);
        let tag = tag_for(live.len() as u64);
        // SAFETY: a fresh block of `size_bytes`.
        unsafe { write_tag(ptr, size_bytes, tag) };
        live.push(Block {
            ptr,
            size_bytes,
            tag,
        });
        allocatable_bytes += size_bytes;
    };
    let mut upper_bytes = arena_bytes;
    loop {
        // Invariant of the search: `fits` fits, `upper_bytes + 8` does not (or is the arena).
        let ptr = try_alloc(8);
        if ptr.is_null() {
            break;
        }
        // SAFETY: just allocated with this layout, not used.
        unsafe { alloc.dealloc(ptr, layout8(8)) };
        let (mut fits, mut too_big) = (8usize, upper_bytes + 8);
        while too_big - fits > 8 {
            let mid = (fits + (too_big - fits) / 2) & !7;
            let mid = mid.max(fits + 8);
            let ptr = try_alloc(mid);
            if ptr.is_null() {
                too_big = mid;
            } else {
                // SAFETY: just allocated with this layout, not used.
                unsafe { alloc.dealloc(ptr, layout8(mid)) };
                fits = mid;
            }
        }
        let ptr = try_alloc(fits);
        if ptr.is_null() {
            break; // The allocator's answer changed between probes; stop here.
        }
        keep(&mut live, ptr, fits);
        upper_bytes = fits;
        if fits <= DRAIN_SIZES_BYTES[0] {
            break;
        }
    }
    for size_bytes in DRAIN_SIZES_BYTES {
        loop {
            let ptr = try_alloc(size_bytes);
            if ptr.is_null() {
                break;
            }
            keep(&mut live, ptr, size_bytes);
        }
    }
    free_all(&alloc, &mut live);
    let pages = arena_bytes / PAGE_BYTES;
    let lost_bytes = arena_bytes.saturating_sub(allocatable_bytes);
    Outcome::Measured(Summary::of(&[lost_bytes as f64 / pages as f64]))
}
