//! Helpers of the test suite, shared by both ArceOS lines: pinned threads,
//! patterned blocks, a small RNG.

use alloc::alloc::{alloc as raw_alloc, dealloc as raw_dealloc};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::time::Duration;

use std::os::arceos::api::task::{AxCpuMask, ax_set_current_affinity};
use std::thread::{self, JoinHandle};

use crate::line::{global_allocator, heap_bytes, this_cpu_id};

/// Returns `Err(format!(...))` from the test unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(alloc::format!($($fmt)+));
        }
    };
}

pub const PAGE: usize = 4096;

/// What a test (or a test thread) returns: `Err` carries the reason.
pub type TestResult<T = ()> = Result<T, String>;

/// Number of CPUs the kernel runs on.
pub fn cpu_count() -> usize {
    thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The CPU the caller runs on.
pub fn this_cpu() -> usize {
    this_cpu_id()
}

/// Spawns a thread that moves itself to `cpu`, checks that it got there,
/// then runs `f`.
pub fn spawn_on<T, F>(cpu: usize, f: F) -> JoinHandle<TestResult<T>>
where
    T: Send + 'static,
    F: FnOnce() -> TestResult<T> + Send + 'static,
{
    thread::spawn(move || {
        ax_set_current_affinity(AxCpuMask::one_shot(cpu)).map_err(|e| format!("affinity to CPU {cpu}: {e:?}"))?;
        let now = this_cpu();
        if now != cpu {
            return Err(format!("thread pinned to CPU {cpu} runs on CPU {now}"));
        }
        f()
    })
}

/// Joins every handle (so no thread outlives the test) and returns the
/// results in order, or the first error.
pub fn join_all<T>(handles: Vec<JoinHandle<TestResult<T>>>) -> TestResult<Vec<T>> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(format!("join: {e:?}"));
            }
        }
    }
    match first_err {
        None => Ok(out),
        Some(e) => Err(e),
    }
}

/// Waits until exited tasks have been reclaimed, and returns the heap usage
/// then (`line::heap_bytes`: where task stacks are counted differs by line).
///
/// ArceOS frees an exited task (and its stack) lazily, from a per-CPU GC or
/// reaper task that only wakes when a task exits on that CPU, so the last
/// joined thread of each CPU lingers. Short detached threads, spread over
/// the CPUs by the scheduler, wake every CPU's reaper; being detached, they
/// are reclaimed by the same pass. Returns once usage is at most `target`,
/// or (for `target == usize::MAX`) once it stopped changing; gives up after
/// about three seconds and returns the last value.
pub fn settle_heap(target: usize) -> usize {
    let usage = || heap_bytes(&global_allocator().usages());
    let mut last = usage();
    let mut stable = 0;
    for round in 0..300 {
        if round % 10 == 0 {
            for _ in 0..cpu_count() {
                drop(thread::spawn(|| {}));
            }
        }
        thread::sleep(Duration::from_millis(10));
        let now = usage();
        if now <= target {
            return now;
        }
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
        if target == usize::MAX && stable >= 25 {
            return now;
        }
    }
    last
}

/// The pattern word `i` of a block seeded with `seed`.
pub fn pattern(seed: u64, i: usize) -> u64 {
    (seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (i as u64)
}

/// A heap block from the global allocator, filled with a seeded pattern
/// and checked on demand; freed on drop (on whichever CPU drops it).
pub struct Block {
    ptr: *mut u8,
    layout: Layout,
    seed: u64,
}

// SAFETY: a Block owns its allocation exclusively; the allocator must accept
// frees from any CPU, which is what the tests check.
unsafe impl Send for Block {}

impl Block {
    /// Allocates `size` bytes aligned to `align` (a power of two, at least 8)
    /// and fills them.
    pub fn new(size: usize, align: usize, seed: u64) -> TestResult<Self> {
        let layout = Layout::from_size_align(size, align).map_err(|e| format!("layout {size}/{align}: {e}"))?;
        // SAFETY: size is non-zero in every caller (sizes start at 1).
        let ptr = unsafe { raw_alloc(layout) };
        if ptr.is_null() {
            return Err(format!("alloc {layout:?} failed"));
        }
        if ptr as usize % align != 0 {
            return Err(format!("alloc {layout:?} returned misaligned {ptr:p}"));
        }
        let block = Self { ptr, layout, seed };
        let (words, tail) = (size / 8, size % 8);
        for i in 0..words {
            // SAFETY: inside the block; `ptr` is at least 8-aligned.
            unsafe { *(ptr as *mut u64).add(i) = pattern(seed, i) };
        }
        for j in 0..tail {
            // SAFETY: inside the block.
            unsafe { *ptr.add(words * 8 + j) = pattern(seed, words + j) as u8 };
        }
        Ok(block)
    }

    /// Checks that the block still holds its pattern.
    pub fn check(&self) -> TestResult {
        let (words, tail) = (self.layout.size() / 8, self.layout.size() % 8);
        for i in 0..words {
            // SAFETY: inside the live block.
            let got = unsafe { *(self.ptr as *const u64).add(i) };
            if got != pattern(self.seed, i) {
                return Err(format!("block {:p} ({:?}) corrupted at word {i}: {got:#x}", self.ptr, self.layout));
            }
        }
        for j in 0..tail {
            // SAFETY: inside the live block.
            let got = unsafe { *self.ptr.add(words * 8 + j) };
            if got != pattern(self.seed, words + j) as u8 {
                return Err(format!("block {:p} ({:?}) corrupted at byte {}", self.ptr, self.layout, words * 8 + j));
            }
        }
        Ok(())
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed only here.
        unsafe { raw_dealloc(self.ptr, self.layout) }
    }
}

/// xorshift64*: deterministic, seeded per thread.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0; the bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A size in `1..=max`.
    pub fn size_up_to(&mut self, max: usize) -> usize {
        1 + self.below(max as u64) as usize
    }

    /// A power of two in `8..=max`.
    pub fn align_up_to(&mut self, max: usize) -> usize {
        let steps = (max / 8).trailing_zeros() as u64 + 1;
        8 << self.below(steps)
    }
}
