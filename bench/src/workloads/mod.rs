//! Workloads a–h (see `shared/reference/anchors.md`) and r, l (issue 15), each generic over
//! [`BenchAlloc`] so every allocator runs the same monomorphised loop with no dynamic dispatch
//! in the timed path.
//!
//! - [`throughput`]: a–e, timed rounds of operation pairs;
//! - [`realloc`]: r, blocks grown by doubling through the allocator's realloc path;
//! - [`server`]: l, a larson-style server, threads replacing objects in a shared pool;
//! - [`latency`]: g, single-operation latency percentiles;
//! - [`efficiency`]: f1, f2 and h, deterministic space measurements.
//!
//! A timed workload is *prepared* for every allocator at once (each on its own fresh
//! pre-faulted arena), warmed up and calibrated per allocator, and then its trials are
//! interleaved across allocators (trial 1 of every allocator, then trial 2, …), so a burst of
//! load from other users of the machine hits every allocator alike instead of one. Every
//! block is tagged after allocation and checked before it is freed ([`crate::check`]).

pub mod efficiency;
pub mod latency;
pub mod realloc;
pub mod server;
pub mod throughput;

use core::alloc::Layout;
use std::time::Duration;

use crate::{
    allocators::BenchAlloc,
    check::{check_tag, expect_block, tag_for, write_tag},
    rng::Rng,
    timing::Summary,
};

/// What the harness measures: one row of the results table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    A,
    B,
    C,
    D,
    DCpu,
    E,
    ECpu,
    F1,
    F2,
    GAllocP50,
    GAllocP99,
    GAllocP999,
    GFreeP50,
    GFreeP99,
    GFreeP999,
    H,
    R,
    L,
    LCpu,
}

impl Metric {
    /// All metrics in table order.
    pub const ALL: [Metric; 19] = [
        Metric::A,
        Metric::B,
        Metric::C,
        Metric::D,
        Metric::DCpu,
        Metric::E,
        Metric::ECpu,
        Metric::F1,
        Metric::F2,
        Metric::GAllocP50,
        Metric::GAllocP99,
        Metric::GAllocP999,
        Metric::GFreeP50,
        Metric::GFreeP99,
        Metric::GFreeP999,
        Metric::H,
        Metric::R,
        Metric::L,
        Metric::LCpu,
    ];

    /// Short row key (also the plot label).
    pub fn key(self) -> &'static str {
        match self {
            Metric::A => "a",
            Metric::B => "b",
            Metric::C => "c",
            Metric::D => "d",
            Metric::DCpu => "d cpu",
            Metric::E => "e",
            Metric::ECpu => "e cpu",
            Metric::F1 => "f1",
            Metric::F2 => "f2",
            Metric::GAllocP50 => "g alloc p50",
            Metric::GAllocP99 => "g alloc p99",
            Metric::GAllocP999 => "g alloc p99.9",
            Metric::GFreeP50 => "g free p50",
            Metric::GFreeP99 => "g free p99",
            Metric::GFreeP999 => "g free p99.9",
            Metric::H => "h",
            Metric::R => "r",
            Metric::L => "l",
            Metric::LCpu => "l cpu",
        }
    }

    /// What the row measures.
    pub fn title(self) -> &'static str {
        match self {
            Metric::A => "64 B alloc then free, one thread",
            Metric::B => "random 8..2048 B, live set, random replacement",
            Metric::C => "4 KiB (4 KiB-aligned) pages live, shuffled free",
            Metric::D => "2 threads, 64 B batches handed over, every free remote (wall clock)",
            Metric::DCpu => "as d, CPU time of producer + consumer per pair",
            Metric::E => "as d with random 8..2048 B (wall clock)",
            Metric::ECpu => "as e, CPU time of producer + consumer per pair",
            Metric::F1 => "heap efficiency: uniform 8..2048 B, 5/6 alloc 1/6 free until OOM",
            Metric::F2 => "heap efficiency, talc's method (50% alloc/10% free/40% realloc)",
            Metric::GAllocP50 => "latency of one alloc (b pattern), p50",
            Metric::GAllocP99 => "latency of one alloc (b pattern), p99",
            Metric::GAllocP999 => "latency of one alloc (b pattern), p99.9",
            Metric::GFreeP50 => "latency of one free (b pattern), p50",
            Metric::GFreeP99 => "latency of one free (b pattern), p99",
            Metric::GFreeP999 => "latency of one free (b pattern), p99.9",
            Metric::H => "metadata overhead per managed 4 KiB page",
            Metric::R => "realloc growth: 8 blocks doubled together from 8 B to 256 KiB",
            Metric::L => {
                "larson-style server: 2 threads, random-size objects, shared pool (wall clock)"
            }
            Metric::LCpu => "as l, CPU time of both threads per replacement",
        }
    }

    /// Unit of the value.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::A
            | Metric::B
            | Metric::C
            | Metric::D
            | Metric::DCpu
            | Metric::E
            | Metric::ECpu
            | Metric::L
            | Metric::LCpu => "ns/pair",
            Metric::R => "ns/realloc",
            Metric::F1 | Metric::F2 => "% of arena",
            Metric::H => "B/page",
            _ => "ns",
        }
    }

    /// The project's absolute goal for this metric (from `anchors.md`), if it has one.
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

    /// The project's goal for this metric as a multiple of the best peer's median (issue 15),
    /// if it has one; the report turns it into a value once the peers are measured.
    pub fn goal_vs_best_peer(self) -> Option<f64> {
        match self {
            Metric::R | Metric::L => Some(1.0),
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
    /// Live blocks in b and g; slots of l's shared pool.
    pub live_blocks: usize,
    /// Live pages in c.
    pub live_pages: usize,
    /// Objects per handed-over batch in d and e.
    pub batch_objects: usize,
    /// Single-operation samples per trial in g.
    pub latency_samples: usize,
    /// Base seed of every random sequence.
    pub seed: u64,
    /// Work units per round instead of calibrating to `trial_target` (for profiling under
    /// callgrind, where time-based calibration makes no sense).
    pub fixed_ops: Option<usize>,
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
            fixed_ops: None,
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
            fixed_ops: None,
        }
    }
}

/// Work units (operation pairs) of the first calibration round.
const CALIBRATION_START_OPS: usize = 256;
/// Upper bound on work units per trial, so a fast allocator cannot make a trial huge.
const MAX_OPS_PER_TRIAL: usize = 1 << 26;

/// A throughput workload prepared for one allocator; its state (allocator instance, live
/// blocks, worker threads) lives between rounds and is torn down on drop.
pub trait TimedRun {
    /// Runs one round of at least `ops` work units (operation pairs); returns the time of its
    /// timed part and the units it actually did.
    fn round(&mut self, ops: usize) -> (Duration, usize);

    /// CPU time all threads of the last round spent (multi-threaded runs only).
    fn last_round_cpu_time(&self) -> Option<Duration> {
        None
    }
}

/// Prepares timed workload `workload` (one of `a`..=`e`, `r`, `l`) for allocator `A`.
pub fn prepare_timed<A: BenchAlloc>(workload: char, cfg: &Config) -> Box<dyn TimedRun> {
    match workload {
        'a'..='e' => throughput::prepare::<A>(workload, cfg),
        'r' => Box::new(realloc::Growth::<A>::new(cfg)),
        'l' => Box::new(server::Server::<A>::new(cfg)),
        _ => unreachable!("not a timed workload: {workload}"),
    }
}

/// Warms `run` up, doubling the work until a round takes at least half of `target`, and
/// returns the work units per round that make a round take about `target` (or warms up with
/// `fixed_ops` and returns it).
pub fn calibrate(run: &mut dyn TimedRun, target: Duration, fixed_ops: Option<usize>) -> usize {
    if let Some(ops) = fixed_ops {
        run.round(ops); // Warm-up only.
        return ops;
    }
    let mut ops = CALIBRATION_START_OPS;
    let estimate = |(elapsed, done): (Duration, usize)| {
        let per_op_secs = elapsed.as_secs_f64() / done.max(1) as f64;
        let wanted = (target.as_secs_f64() / per_op_secs.max(1e-12)) as usize;
        wanted.clamp(CALIBRATION_START_OPS, MAX_OPS_PER_TRIAL)
    };
    loop {
        let (elapsed, done) = run.round(ops);
        if elapsed >= target / 2 || ops >= MAX_OPS_PER_TRIAL {
            // The first rounds of a fresh allocator are slow (empty caches, new slabs):
            // estimate once more from a full-size round.
            return estimate(run.round(estimate((elapsed, done))));
        }
        ops *= 2;
    }
}

/// Nanoseconds per work unit of one round.
pub fn ns_per_unit((elapsed, done): (Duration, usize)) -> f64 {
    elapsed.as_nanos() as f64 / done.max(1) as f64
}

/// Layout of `size_bytes` bytes with 8-byte alignment.
pub(crate) fn layout8(size_bytes: usize) -> Layout {
    Layout::from_size_align(size_bytes, 8).expect("valid layout")
}

/// A live block and what was written into it.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    pub(crate) ptr: *mut u8,
    pub(crate) size_bytes: usize,
    pub(crate) tag: u64,
}

// SAFETY: a `Block` is a handle to memory owned by the workload; the workloads hand each
// block to exactly one thread at a time (producer → consumer), never sharing it.
unsafe impl Send for Block {}

impl Block {
    pub(crate) const EMPTY: Block = Block {
        ptr: core::ptr::null_mut(),
        size_bytes: 0,
        tag: 0,
    };
}

/// Allocates and tags one block of `size_bytes` (8-aligned); panics on failure.
///
/// # Safety
/// - `size_bytes` must be non-zero.
#[inline(always)]
pub(crate) unsafe fn alloc_tagged<A: BenchAlloc>(alloc: &A, size_bytes: usize, id: u64) -> Block {
    // SAFETY: forwarded caller contract.
    let Some(block) = (unsafe { try_alloc_tagged(alloc, size_bytes, id) }) else {
        panic!(
            "{}: allocation of {:?} failed unexpectedly",
            A::NAME,
            layout8(size_bytes)
        );
    };
    block
}

/// As [`alloc_tagged`], but out of memory is `None` instead of a panic (the
/// efficiency workloads run until the first failure).
///
/// # Safety
/// - `size_bytes` must be non-zero.
#[inline(always)]
pub(crate) unsafe fn try_alloc_tagged<A: BenchAlloc>(
    alloc: &A,
    size_bytes: usize,
    id: u64,
) -> Option<Block> {
    let layout = layout8(size_bytes);
    // SAFETY: non-zero size (caller contract).
    let ptr = unsafe { alloc.alloc(layout) };
    if ptr.is_null() {
        return None;
    }
    expect_block(ptr, layout, A::NAME);
    let tag = tag_for(id);
    // SAFETY: `ptr` is a fresh block of `size_bytes` bytes.
    unsafe { write_tag(ptr, size_bytes, tag) };
    Some(Block {
        ptr,
        size_bytes,
        tag,
    })
}

/// Checks and frees a block from [`alloc_tagged`].
///
/// # Safety
/// - `block` must be live in `alloc` and freed only here.
#[inline(always)]
pub(crate) unsafe fn free_checked<A: BenchAlloc>(alloc: &A, block: Block) {
    // SAFETY: the block is live with this size and layout (caller contract).
    unsafe {
        check_tag(block.ptr, block.size_bytes, block.tag, A::NAME);
        alloc.dealloc(block.ptr, layout8(block.size_bytes));
    }
}

/// Uniform size in 8..=2048 bytes (the slab range of the seed).
#[inline(always)]
pub(crate) fn small_size(rng: &mut Rng) -> usize {
    rng.range_inclusive(8, 2048)
}

/// Length of the precomputed (slot, size) script of b, reused cyclically.
pub(crate) const SCRIPT_LEN: usize = 1 << 16;

/// A precomputed random replacement script: which slot to replace and with what size.
pub(crate) fn replacement_script(seed: u64, live_blocks: usize) -> Vec<(u32, u32)> {
    let mut rng = Rng::new(seed);
    (0..SCRIPT_LEN)
        .map(|_| {
            (
                rng.range(0, live_blocks) as u32,
                small_size(&mut rng) as u32,
            )
        })
        .collect()
}

/// Fills `live_blocks` slots with random small blocks.
pub(crate) fn fill_live<A: BenchAlloc>(alloc: &A, seed: u64, live_blocks: usize) -> Vec<Block> {
    let mut rng = Rng::new(seed);
    // SAFETY: sizes are non-zero.
    (0..live_blocks as u64)
        .map(|id| unsafe { alloc_tagged(alloc, small_size(&mut rng), id) })
        .collect()
}

/// Frees every block in `live` (checked).
pub(crate) fn free_all<A: BenchAlloc>(alloc: &A, live: &mut Vec<Block>) {
    for block in live.drain(..) {
        // SAFETY: every block in `live` is live and removed from it here.
        unsafe { free_checked(alloc, block) };
    }
}
