//! Workload r: Vec-style growth. [`GROWTH_BLOCKS`] blocks start at [`GROWTH_FIRST_BYTES`] and
//! are doubled together, one realloc per block per doubling, up to [`GROWTH_LAST_BYTES`], then
//! freed; reported as ns per realloc step (the first allocation and the final free of each
//! block are inside the timed loop and spread over its steps).
//!
//! The blocks grow in lockstep so each one's neighbours are live while it grows: growing in
//! place is then not free for an allocator that places them next to each other, as with
//! several vectors filled at once. Every realloc goes through the allocator's own realloc path
//! ([`BenchAlloc::realloc`]: in place where the allocator can, else its own move).

use std::time::{Duration, Instant};

use super::{Block, Config, TimedRun, layout8};
use crate::{
    allocators::BenchAlloc,
    check::{check_growth_prefix, expect_block, tag_for, write_growth_tags},
};

/// Blocks grown at the same time.
pub const GROWTH_BLOCKS: usize = 8;
/// Size of every block before its first realloc.
pub const GROWTH_FIRST_BYTES: usize = 8;
/// Size of every block after its last realloc.
pub const GROWTH_LAST_BYTES: usize = 256 << 10;
/// Doublings from the first to the last size.
const GROWTH_DOUBLINGS: usize = (GROWTH_LAST_BYTES / GROWTH_FIRST_BYTES).trailing_zeros() as usize;
/// Realloc steps of one growth of every block (the work unit of a round).
const STEPS_PER_GROWTH: usize = GROWTH_BLOCKS * GROWTH_DOUBLINGS;

/// r for one allocator. No block is live between rounds.
pub struct Growth<A> {
    alloc: A,
    next_id: u64,
}

impl<A: BenchAlloc> Growth<A> {
    pub fn new(cfg: &Config) -> Self {
        Self {
            alloc: A::create(cfg.arena_bytes),
            next_id: 0,
        }
    }
}

/// Allocates one block of [`GROWTH_FIRST_BYTES`] and tags it; panics on failure.
#[inline(always)]
fn start_block<A: BenchAlloc>(alloc: &A, id: u64) -> Block {
    let layout = layout8(GROWTH_FIRST_BYTES);
    // SAFETY: non-zero size.
    let ptr = unsafe { alloc.alloc(layout) };
    expect_block(ptr, layout, A::NAME);
    let tag = tag_for(id);
    // SAFETY: a fresh block of `GROWTH_FIRST_BYTES >= 8` bytes.
    unsafe { write_growth_tags(ptr, GROWTH_FIRST_BYTES, tag) };
    Block {
        ptr,
        size_bytes: GROWTH_FIRST_BYTES,
        tag,
    }
}

/// Reallocates `block` to `new_size_bytes`, checks that its old contents came along and tags
/// the new size; panics on failure or lost contents.
///
/// # Safety
/// - `block` must be live in `alloc` with the tags of [`write_growth_tags`]; it is dead
///   afterwards (the returned block replaces it).
#[inline(always)]
unsafe fn grow<A: BenchAlloc>(alloc: &A, block: Block, new_size_bytes: usize) -> Block {
    // SAFETY: the block is live with this layout (caller contract); non-zero new size.
    let ptr = unsafe { alloc.realloc(block.ptr, layout8(block.size_bytes), new_size_bytes) };
    expect_block(ptr, layout8(new_size_bytes), A::NAME);
    // SAFETY: `ptr` is live with `new_size_bytes > block.size_bytes >= 8` bytes.
    unsafe {
        check_growth_prefix(ptr, block.size_bytes, block.tag, A::NAME);
        write_growth_tags(ptr, new_size_bytes, block.tag);
    }
    Block {
        ptr,
        size_bytes: new_size_bytes,
        tag: block.tag,
    }
}

/// Checks and frees a fully grown block.
///
/// # Safety
/// - As for [`grow`].
#[inline(always)]
unsafe fn finish_block<A: BenchAlloc>(alloc: &A, block: Block) {
    // SAFETY: the block is live with this size and layout (caller contract).
    unsafe {
        check_growth_prefix(block.ptr, block.size_bytes, block.tag, A::NAME);
        alloc.dealloc(block.ptr, layout8(block.size_bytes));
    }
}

impl<A: BenchAlloc> TimedRun for Growth<A> {
    fn round(&mut self, ops: usize) -> (Duration, usize) {
        let growths = ops.div_ceil(STEPS_PER_GROWTH);
        let alloc = &self.alloc;
        let mut blocks = [Block::EMPTY; GROWTH_BLOCKS];
        let start = Instant::now();
        for _ in 0..growths {
            for block in &mut blocks {
                *block = start_block(alloc, self.next_id);
                self.next_id += 1;
            }
            let mut size_bytes = GROWTH_FIRST_BYTES;
            while size_bytes < GROWTH_LAST_BYTES {
                size_bytes *= 2;
                for block in &mut blocks {
                    // SAFETY: every block is live and replaced by its grown self right here.
                    *block = unsafe { grow(alloc, *block, size_bytes) };
                }
            }
            for block in blocks {
                // SAFETY: every block is live and freed exactly once, here.
                unsafe { finish_block(alloc, block) };
            }
        }
        (start.elapsed(), growths * STEPS_PER_GROWTH)
    }
}
