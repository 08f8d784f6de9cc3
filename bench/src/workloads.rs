//! Workloads a–h (see `shared/reference/anchors.md`), each generic over [`BenchAlloc`] so every
//! allocator runs the same monomorphised loop with no dynamic dispatch in the timed path.
//!
//! Every workload gets a fresh allocator instance (fresh pre-faulted arena), runs one untimed
//! warm-up round that also calibrates the amount of work per trial, and then `trials` timed
//! rounds; the reported figure is the median over trials. Every block is tagged after
//! allocation and checked before it is freed ([`crate::check`]).

use core::{alloc::Layout, hint::black_box};
use std::{
    sync::mpsc::{channel, sync_channel},
    time::{Duration, Instant},
};

use crate::{
    allocators::{BenchAlloc, PAGE_BYTES},
    check::{check_head, check_tag, expect_block, tag_for, write_tag},
    rng::Rng,
    timing::{Summary, TickClock, now_ticks, percentile_u64},
};

/// What the harness measures: one row of the results table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    A,
    B,
    C,
    D,
    E,
    F1,
    F2,
    GAllocP50,
    GAllocP99,
    GAllocP999,
    GFreeP50,
    GFreeP99,
    GFreeP999,
    H,
}

impl Metric {
    /// All metrics in table order.
    pub const ALL: [Metric; 14] = [
        Metric::A,
        Metric::B,
        Metric::C,
        Metric::D,
        Metric::E,
        Metric::F1,
        Metric::F2,
        Metric::GAllocP50,
        Metric::GAllocP99,
        Metric::GAllocP999,
        Metric::GFreeP50,
        Metric::GFreeP99,
        Metric::GFreeP999,
        Metric::H,
    ];

    /// Short row key (also the plot label).
    pub fn key(self) -> &'static str {
        match self {
            Metric::A => "a",
            Metric::B => "b",
            Metric::C => "c",
            Metric::D => "d",
            Metric::E => "e",
            Metric::F1 => "f1",
            Metric::F2 => "f2",
            Metric::GAllocP50 => "g alloc p50",
            Metric::GAllocP99 => "g alloc p99",
            Metric::GAllocP999 => "g alloc p99.9",
            Metric::GFreeP50 => "g free p50",
            Metric::GFreeP99 => "g free p99",
            Metric::GFreeP999 => "g free p99.9",
            Metric::H => "h",
        }
    }

    /// What the row measures.
    pub fn title(self) -> &'static str {
        match self {
            Metric::A => "64 B alloc then free, one thread",
            Metric::B => "random 8..2048 B, live set, random replacement",
            Metric::C => "4 KiB (4 KiB-aligned) pages live, shuffled free",
            Metric::D => "2 threads, 64 B batches handed over, every free remote",
            Metric::E => "as d with random 8..2048 B",
            Metric::F1 => "heap efficiency: uniform 8..2048 B, 5/6 alloc 1/6 free until OOM",
            Metric::F2 => "heap efficiency, talc's method (50% alloc/10% free/40% realloc)",
            Metric::GAllocP50 => "latency of one alloc (b pattern), p50",
            Metric::GAllocP99 => "latency of one alloc (b pattern), p99",
            Metric::GAllocP999 => "latency of one alloc (b pattern), p99.9",
            Metric::GFreeP50 => "latency of one free (b pattern), p50",
            Metric::GFreeP99 => "latency of one free (b pattern), p99",
            Metric::GFreeP999 => "latency of one free (b pattern), p99.9",
            Metric::H => "metadata overhead per managed 4 KiB page",
        }
    }

    /// Unit of the value.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::A | Metric::B | Metric::C | Metric::D | Metric::E => "ns/pair",
            Metric::F1 | Metric::F2 => "% of arena",
            Metric::H => "B/page",
            _ => "ns",
        }
    }

    /// The project's goal for this metric (from `anchors.md`), if it has one.
    pub fn goal(self) -> Option<f64> {
        match self {
            Metric::A => Some(5.0),
            Metric::B => Some(25.0),
            Metric::C => Some(15.0),
            Metric::D => Some(40.0),
            Metric::E => Some(90.0),
            Metric::F1 => Some(88.0),
            _ => None,
        }
    }

    /// Whether a larger value is better (efficiency) or worse (time, overhead).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::F1 | Metric::F2)
    }
}

/// Result of one metric for one allocator.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Median and spread over the trials.
    Measured(Summary),
    /// Not measured, with the reason.
    Skipped(&'static str),
}

/// Sizes and budgets of a run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Timed trials per workload (the median is reported).
    pub trials: usize,
    /// Trials of the heap-efficiency runs (each fills an arena until OOM).
    pub efficiency_trials: usize,
    /// Arena size for every workload but f2, in bytes.
    pub arena_bytes: usize,
    /// Arena size for f2 (talc's method uses 128 MiB), in bytes.
    pub talc_method_arena_bytes: usize,
    /// Wall-clock time one timed trial should take; the warm-up calibrates the work to it.
    pub trial_target: Duration,
    /// Live blocks in b and g.
    pub live_blocks: usize,
    /// Live pages in c.
    pub live_pages: usize,
    /// Objects per handed-over batch in d and e.
    pub batch_objects: usize,
    /// Single-operation samples per trial in g.
    pub latency_samples: usize,
    /// Base seed of every random sequence.
    pub seed: u64,
}

impl Config {
    /// The full run.
    pub fn full(trials: usize) -> Self {
        Self {
            trials,
            efficiency_trials: trials.min(3),
            arena_bytes: 64 << 20,
            talc_method_arena_bytes: 128 << 20,
            trial_target: Duration::from_millis(40),
            live_blocks: 10_000,
            live_pages: 2048,
            batch_objects: 2048,
            latency_samples: 200_000,
            seed: 0xB5A_2026,
        }
    }

    /// Tiny sizes, one trial: checks that the harness builds and runs (CI).
    pub fn smoke() -> Self {
        Self {
            trials: 1,
            efficiency_trials: 1,
            arena_bytes: 8 << 20,
            talc_method_arena_bytes: 8 << 20,
            trial_target: Duration::from_millis(2),
            live_blocks: 1000,
            live_pages: 256,
            batch_objects: 256,
            latency_samples: 2000,
            seed: 0xB5A_2026,
        }
    }
}

/// Work units (operation pairs) of the first calibration round.
const CALIBRATION_START_OPS: usize = 256;
/// Upper bound on work units per trial, so a fast allocator cannot make a trial huge.
const MAX_OPS_PER_TRIAL: usize = 1 << 26;

/// Runs `round(ops)` — which does at least `ops` work units and returns the time of its timed
/// part and the units it actually did — to warm up and calibrate `ops` so a round takes about
/// `cfg.trial_target`, then `cfg.trials` times; summarises ns per unit over the trials.
fn timed_trials(cfg: &Config, mut round: impl FnMut(usize) -> (Duration, usize)) -> Summary {
    let mut ops = CALIBRATION_START_OPS;
    loop {
        let (elapsed, done) = round(ops);
        let ops_done = done.max(1);
        if elapsed >= cfg.trial_target / 2 || ops >= MAX_OPS_PER_TRIAL {
            let per_op = elapsed.as_secs_f64() / ops_done as f64;
            let wanted = (cfg.trial_target.as_secs_f64() / per_op.max(1e-12)) as usize;
            ops = wanted.clamp(CALIBRATION_START_OPS, MAX_OPS_PER_TRIAL);
            break;
        }
        ops *= 2;
    }
    let per_trial: Vec<f64> = (0..cfg.trials)
        .map(|_| {
            let (elapsed, done) = round(ops);
            elapsed.as_nanos() as f64 / done.max(1) as f64
        })
        .collect();
    Summary::of(&per_trial)
}

/// Layout of `size_bytes` bytes with 8-byte alignment.
fn layout8(size_bytes: usize) -> Layout {
    Layout::from_size_align(size_bytes, 8).expect("valid layout")
}

/// A live block and what was written into it.
#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size_bytes: usize,
    tag: u64,
}

// SAFETY: a `Block` is a handle to memory owned by the workload; the workloads hand each
// block to exactly one thread at a time (producer → consumer), never sharing it.
unsafe impl Send for Block {}

impl Block {
    const EMPTY: Block = Block { ptr: core::ptr::null_mut(), size_bytes: 0, tag: 0 };
}

/// Allocates and tags one block of `size_bytes` (8-aligned); panics on failure.
///
/// # Safety
/// - `size_bytes` must be non-zero.
#[inline(always)]
unsafe fn alloc_tagged<A: BenchAlloc>(alloc: &A, size_bytes: usize, id: u64) -> Block {
    let layout = layout8(size_bytes);
    // SAFETY: non-zero size (caller contract).
    let ptr = unsafe { alloc.alloc(layout) };
    expect_block(ptr, layout, A::NAME);
    let tag = tag_for(id);
    // SAFETY: `ptr` is a fresh block of `size_bytes` bytes.
    unsafe { write_tag(ptr, size_bytes, tag) };
    Block { ptr, size_bytes, tag }
}

/// Checks and frees a block from [`alloc_tagged`].
///
/// # Safety
/// - `block` must be live in `alloc` and freed only here.
#[inline(always)]
unsafe fn free_checked<A: BenchAlloc>(alloc: &A, block: Block) {
    // SAFETY: the block is live with this size and layout (caller contract).
    unsafe {
        check_tag(block.ptr, block.size_bytes, block.tag, A::NAME);
        alloc.dealloc(block.ptr, layout8(block.size_bytes));
    }
}

/// Uniform size in 8..=2048 bytes (the slab range of the seed).
#[inline(always)]
fn small_size(rng: &mut Rng) -> usize {
    rng.range_inclusive(8, 2048)
}

/// a: 64 B alloc then free, one thread.
pub fn workload_a<A: BenchAlloc>(cfg: &Config) -> Outcome {
    let alloc = A::create(cfg.arena_bytes);
    let summary = timed_trials(cfg, |ops| {
        let start = Instant::now();
        for id in 0..ops as u64 {
            // SAFETY: 64 is non-zero; the block is freed once, right here.
            unsafe {
                let block = alloc_tagged(&alloc, 64, id);
                black_box(block.ptr);
                free_checked(&alloc, block);
            }
        }
        (start.elapsed(), ops)
    });
    Outcome::Measured(summary)
}

/// Length of the precomputed (slot, size) script of b, reused cyclically.
const SCRIPT_LEN: usize = 1 << 16;

/// A precomputed random replacement script: which slot to replace and with what size.
fn replacement_script(seed: u64, live_blocks: usize) -> Vec<(u32, u32)> {
    let mut rng = Rng::new(seed);
    (0..SCRIPT_LEN).map(|_| (rng.range(0, live_blocks) as u32, small_size(&mut rng) as u32)).collect()
}

/// Fills `live_blocks` slots with random small blocks.
fn fill_live<A: BenchAlloc>(alloc: &A, seed: u64, live_blocks: usize) -> Vec<Block> {
    let mut rng = Rng::new(seed);
    // SAFETY: sizes are non-zero.
    (0..live_blocks as u64).map(|id| unsafe { alloc_tagged(alloc, small_size(&mut rng), id) }).collect()
}

/// Frees every block in `live` (checked).
fn free_all<A: BenchAlloc>(alloc: &A, live: &mut Vec<Block>) {
    for block in live.drain(..) {
        // SAFETY: every block in `live` is live and removed from it here.
        unsafe { free_checked(alloc, block) };
    }
}

/// b: random 8..2048 B, `live_blocks` live, random replacement.
pub fn workload_b<A: BenchAlloc>(cfg: &Config) -> Outcome {
    let alloc = A::create(cfg.arena_bytes);
    let mut live = fill_live(&alloc, cfg.seed, cfg.live_blocks);
    let script = replacement_script(cfg.seed ^ 0xB, cfg.live_blocks);
    let mut next_id = live.len() as u64;
    let mut cursor = 0usize;
    let summary = timed_trials(cfg, |ops| {
        let start = Instant::now();
        for _ in 0..ops {
            let (slot, size_bytes) = script[cursor];
            cursor = (cursor + 1) % SCRIPT_LEN;
            let slot = &mut live[slot as usize];
            // SAFETY: the slot's block is live; it is replaced by a fresh one right away.
            unsafe {
                free_checked(&alloc, *slot);
                *slot = alloc_tagged(&alloc, size_bytes as usize, next_id);
            }
            next_id += 1;
        }
        (start.elapsed(), ops)
    });
    free_all(&alloc, &mut live);
    Outcome::Measured(summary)
}

/// c: `live_pages` single 4 KiB pages (4 KiB-aligned) live, then freed in shuffled order;
/// through the page API where the allocator has one, else `Layout(4096, 4096)`.
pub fn workload_c<A: BenchAlloc>(cfg: &Config) -> Outcome {
    let alloc = A::create(cfg.arena_bytes);
    let page_layout = Layout::from_size_align(PAGE_BYTES, PAGE_BYTES).expect("valid layout");
    let mut rng = Rng::new(cfg.seed ^ 0xC);
    // A few precomputed free orders, used in rotation, so shuffling is not timed.
    let orders: Vec<Vec<u32>> = (0..8)
        .map(|_| {
            let mut order: Vec<u32> = (0..cfg.live_pages as u32).collect();
            rng.shuffle(&mut order);
            order
        })
        .collect();
    let mut pages = vec![Block::EMPTY; cfg.live_pages];
    let mut round_index = 0usize;
    let mut next_id = 0u64;
    // One op = one page alloc + free; a round is `live_pages` ops.
    let summary = timed_trials(cfg, |ops| {
        let rounds = ops.div_ceil(cfg.live_pages);
        let start = Instant::now();
        for _ in 0..rounds {
            for page in pages.iter_mut() {
                let ptr = if A::HAS_PAGE_API {
                    alloc.alloc_pages(1, PAGE_BYTES).map_or(core::ptr::null_mut(), |addr| addr as *mut u8)
                } else {
                    // SAFETY: non-zero size.
                    unsafe { alloc.alloc(page_layout) }
                };
                expect_block(ptr, page_layout, A::NAME);
                let tag = tag_for(next_id);
                next_id += 1;
                // SAFETY: a fresh 4 KiB block.
                unsafe { write_tag(ptr, PAGE_BYTES, tag) };
                *page = Block { ptr, size_bytes: PAGE_BYTES, tag };
            }
            for &index in &orders[round_index % orders.len()] {
                let page = pages[index as usize];
                // SAFETY: every page of this round is live and freed exactly once, here.
                unsafe {
                    check_tag(page.ptr, PAGE_BYTES, page.tag, A::NAME);
                    if A::HAS_PAGE_API {
                        alloc.dealloc_pages(page.ptr as usize, 1);
                    } else {
                        alloc.dealloc(page.ptr, page_layout);
                    }
                }
            }
            round_index += 1;
        }
        (start.elapsed(), rounds * cfg.live_pages)
    });
    Outcome::Measured(summary)
}

/// One batch of blocks travelling from producer to consumer.
struct Batch {
    blocks: Vec<Block>,
    /// When the producer started the phase this batch belongs to.
    phase_start: Instant,
    /// Whether this is the phase's last batch (the consumer then reports the phase time).
    last_of_phase: bool,
}

/// Batches that may be in flight between producer and consumer.
const HANDOVER_QUEUE_DEPTH: usize = 4;

/// d/e: a producer thread allocates batches of `batch_objects` blocks and hands each batch to
/// a consumer thread, which checks and frees every block (so every free is remote). The time
/// of a phase runs from the producer's first allocation to the consumer's last free.
fn handover<A: BenchAlloc>(cfg: &Config, random_sizes: bool) -> Outcome {
    let alloc = A::create(cfg.arena_bytes);
    let alloc = &alloc;
    let batch_objects = cfg.batch_objects;
    let seed = cfg.seed ^ if random_sizes { 0xE } else { 0xD };
    std::thread::scope(|scope| {
        // main -> producer: batches in the next phase (closing the channel stops it).
        let (phase_tx, phase_rx) = sync_channel::<usize>(0);
        let (full_tx, full_rx) = sync_channel::<Batch>(HANDOVER_QUEUE_DEPTH);
        let (empty_tx, empty_rx) = channel::<Vec<Block>>();
        let (done_tx, done_rx) = channel::<Duration>();
        for _ in 0..HANDOVER_QUEUE_DEPTH + 2 {
            empty_tx.send(Vec::with_capacity(batch_objects)).expect("queue open");
        }
        scope.spawn(move || {
            let mut rng = Rng::new(seed);
            let mut next_id = 0u64;
            while let Ok(batches) = phase_rx.recv() {
                let phase_start = Instant::now();
                for batch_index in 0..batches {
                    let mut blocks = empty_rx.recv().expect("consumer alive");
                    for _ in 0..batch_objects {
                        let size_bytes = if random_sizes { small_size(&mut rng) } else { 64 };
                        // SAFETY: non-zero size; the block goes to the consumer, who frees it.
                        blocks.push(unsafe { alloc_tagged(alloc, size_bytes, next_id) });
                        next_id += 1;
                    }
                    let last_of_phase = batch_index + 1 == batches;
                    full_tx.send(Batch { blocks, phase_start, last_of_phase }).expect("consumer alive");
                }
            }
        });
        scope.spawn(move || {
            while let Ok(mut batch) = full_rx.recv() {
                for block in batch.blocks.drain(..) {
                    // SAFETY: the producer handed this live block over; it is freed once, here.
                    unsafe { free_checked(alloc, block) };
                }
                // The producer may have finished already; a closed return queue is fine.
                let _ = empty_tx.send(batch.blocks);
                if batch.last_of_phase {
                    done_tx.send(batch.phase_start.elapsed()).expect("main waits");
                }
            }
        });
        let summary = timed_trials(cfg, |ops| {
            let batches = ops.div_ceil(batch_objects).max(2);
            phase_tx.send(batches).expect("producer alive");
            let elapsed = done_rx.recv().expect("consumer alive");
            (elapsed, batches * batch_objects)
        });
        drop(phase_tx);
        Outcome::Measured(summary)
    })
}

/// d: 2 threads, 64 B, batches handed over, every free remote.
pub fn workload_d<A: BenchAlloc>(cfg: &Config) -> Outcome {
    handover::<A>(cfg, false)
}

/// e: as d with random 8..2048 B.
pub fn workload_e<A: BenchAlloc>(cfg: &Config) -> Outcome {
    handover::<A>(cfg, true)
}

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
                    let ptr = unsafe { alloc.alloc(layout8(size_bytes)) };
                    if ptr.is_null() {
                        break;
                    }
                    expect_block(ptr, layout8(size_bytes), A::NAME);
                    let tag = tag_for(next_id);
                    next_id += 1;
                    // SAFETY: a fresh block of `size_bytes`.
                    unsafe { write_tag(ptr, size_bytes, tag) };
                    live.push(Block { ptr, size_bytes, tag });
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
                    let ptr = unsafe { alloc.alloc(layout8(size_bytes)) };
                    if ptr.is_null() {
                        break;
                    }
                    expect_block(ptr, layout8(size_bytes), A::NAME);
                    let tag = tag_for(next_id);
                    next_id += 1;
                    // SAFETY: a fresh block of `size_bytes`.
                    unsafe { write_tag(ptr, size_bytes, tag) };
                    live.push(Block { ptr, size_bytes, tag });
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
                        check_head(new_ptr, block.size_bytes.min(new_size_bytes), block.tag, A::NAME);
                        write_tag(new_ptr, new_size_bytes, block.tag);
                    }
                    live[index] = Block { ptr: new_ptr, size_bytes: new_size_bytes, tag: block.tag };
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

/// Latency percentiles of g, in table order: alloc p50, p99, p99.9, free p50, p99, p99.9.
pub type LatencyOutcomes = [Outcome; 6];

/// g: single-operation latency of alloc and of free on the b pattern (random 8..2048 B,
/// `live_blocks` live, random replacement), each operation timed by itself with
/// [`now_ticks`]; the percentiles of each trial, median over trials.
pub fn workload_g<A: BenchAlloc>(cfg: &Config, clock: &TickClock) -> LatencyOutcomes {
    let alloc = A::create(cfg.arena_bytes);
    let mut live = fill_live(&alloc, cfg.seed, cfg.live_blocks);
    let script = replacement_script(cfg.seed ^ 0x6, cfg.live_blocks);
    let mut alloc_ticks = vec![0u64; cfg.latency_samples];
    let mut free_ticks = vec![0u64; cfg.latency_samples];
    let mut next_id = live.len() as u64;
    let mut cursor = 0usize;
    let mut per_trial: [Vec<f64>; 6] = Default::default();
    // Trial 0 is the warm-up and is discarded.
    for trial in 0..=cfg.trials {
        for sample in 0..cfg.latency_samples {
            let (slot, size_bytes) = script[cursor];
            cursor = (cursor + 1) % SCRIPT_LEN;
            let slot = &mut live[slot as usize];
            let layout = layout8(size_bytes as usize);
            // SAFETY: the slot's block is live; it is freed once and replaced right away.
            unsafe {
                check_tag(slot.ptr, slot.size_bytes, slot.tag, A::NAME);
                let old_layout = layout8(slot.size_bytes);
                let t0 = now_ticks();
                alloc.dealloc(slot.ptr, old_layout);
                let t1 = now_ticks();
                let ptr = alloc.alloc(layout);
                let t2 = now_ticks();
                free_ticks[sample] = t1 - t0;
                alloc_ticks[sample] = t2 - t1;
                expect_block(ptr, layout, A::NAME);
                let tag = tag_for(next_id);
                write_tag(ptr, layout.size(), tag);
                *slot = Block { ptr, size_bytes: layout.size(), tag };
            }
            next_id += 1;
        }
        if trial == 0 {
            continue;
        }
        for (series, samples) in [(0, &mut alloc_ticks), (3, &mut free_ticks)] {
            for (offset, pct) in [50.0, 99.0, 99.9].into_iter().enumerate() {
                let ticks = percentile_u64(samples, pct);
                per_trial[series + offset].push(clock.interval_ns(ticks));
            }
        }
    }
    free_all(&alloc, &mut live);
    per_trial.map(|values| Outcome::Measured(Summary::of(&values)))
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
        live.push(Block { ptr, size_bytes, tag });
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
