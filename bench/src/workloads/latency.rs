//! Latency workload g: every single alloc and free of the b pattern timed by itself.

use super::{Block, Config, SCRIPT_LEN, fill_live, free_all, layout8, replacement_script};
use crate::{
    allocators::BenchAlloc,
    check::{check_tag, expect_block, tag_for, write_tag},
    timing::{TickClock, now_ticks, percentile_u64},
};

/// Percentiles reported by g, per operation kind.
pub const LATENCY_PERCENTILES: [f64; 3] = [50.0, 99.0, 99.9];

/// A latency run prepared for one allocator.
pub trait LatencyRun {
    /// Runs one trial of `latency_samples` replacements; returns alloc p50, p99, p99.9 and
    /// free p50, p99, p99.9 in nanoseconds.
    fn round(&mut self, clock: &TickClock) -> [f64; 6];
}

/// Prepares g for allocator `A`.
pub fn prepare<A: BenchAlloc>(cfg: &Config) -> Box<dyn LatencyRun> {
    Box::new(SingleOps::<A>::new(cfg))
}

/// g: the b pattern (random 8..2048 B, `live_blocks` live, random replacement) with each free
/// and each alloc bracketed by [`now_ticks`] readings.
struct SingleOps<A: BenchAlloc> {
    alloc: A,
    live: Vec<Block>,
    script: Vec<(u32, u32)>,
    cursor: usize,
    next_id: u64,
    alloc_ticks: Vec<u64>,
    free_ticks: Vec<u64>,
}

impl<A: BenchAlloc> SingleOps<A> {
    fn new(cfg: &Config) -> Self {
        let alloc = A::create(cfg.arena_bytes);
        let live = fill_live(&alloc, cfg.seed, cfg.live_blocks);
        Self {
            next_id: live.len() as u64,
            alloc,
            live,
            script: replacement_script(cfg.seed ^ 0x6, cfg.live_blocks),
            cursor: 0,
            alloc_ticks: vec![0; cfg.latency_samples],
            free_ticks: vec![0; cfg.latency_samples],
        }
    }
}

impl<A: BenchAlloc> LatencyRun for SingleOps<A> {
    fn round(&mut self, clock: &TickClock) -> [f64; 6] {
        let Self {
            alloc,
            live,
            script,
            cursor,
            next_id,
            alloc_ticks,
            free_ticks,
        } = self;
        for sample in 0..alloc_ticks.len() {
            let (slot, size_bytes) = script[*cursor];
            *cursor = (*cursor + 1) % SCRIPT_LEN;
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
                let tag = tag_for(*next_id);
                write_tag(ptr, layout.size(), tag);
                *slot = Block {
                    ptr,
                    size_bytes: layout.size(),
                    tag,
                };
            }
            *next_id += 1;
        }
        let mut out = [0.0; 6];
        for (series, samples) in [(0, alloc_ticks), (3, free_ticks)] {
            for (offset, pct) in LATENCY_PERCENTILES.into_iter().enumerate() {
                out[series + offset] = clock.interval_ns(percentile_u64(samples, pct));
            }
        }
        out
    }
}

impl<A: BenchAlloc> Drop for SingleOps<A> {
    fn drop(&mut self) {
        free_all(&self.alloc, &mut self.live);
    }
}
