//! Parallel test in the spirit of arceos-apps' `rust/task/parallel`, run
//! against both kernel heaps.
//!
//! As there, 16 threads sum the integer square roots of their part of 2M
//! shared random numbers and meet at a barrier; the total is compared with
//! a serial sum. Here every thread also allocates blocks of mixed sizes in
//! each of 8 rounds, hands them to the next thread (which the scheduler
//! placed on another CPU) and frees the blocks the previous thread handed
//! it, after checking their pattern. The figures printed (the sum, the
//! number of blocks checked) are the same on every arch and backend and
//! are pinned by `expect_*.out`; the number of frees that really happened
//! on another CPU than the allocation varies and must be non-zero on SMP.
//! A failed check panics, which ends the run without the closing line.

#![no_std]
#![no_main]

#[macro_use]
extern crate axstd as std;
extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use std::os::arceos::api::task::{self as api, AxWaitQueueHandle};
use std::os::arceos::modules::axhal::percpu::this_cpu_id;
use std::sync::{Arc, Mutex};
use std::thread;

const NUM_DATA: usize = 2_000_000;
const NUM_TASKS: usize = 16;
const ROUNDS: usize = 8;
const BLOCKS_PER_ROUND: usize = 128;

/// xorshift64* (as in tests/kernel/src/util.rs): deterministic per seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Integer square root by Newton's method, as in task/parallel.
fn sqrt(n: &u64) -> u64 {
    let mut x = *n;
    loop {
        if x * x <= *n && (x + 1) * (x + 1) > *n {
            return x;
        }
        x = (x + *n / x) / 2;
    }
}

/// A barrier for `NUM_TASKS` threads that can be used again and again.
struct Barrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    wq: AxWaitQueueHandle,
}

impl Barrier {
    const fn new() -> Self {
        Self { arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0), wq: AxWaitQueueHandle::new() }
    }

    fn wait(&self) {
        let generation = self.generation.load(Ordering::SeqCst);
        if self.arrived.fetch_add(1, Ordering::SeqCst) + 1 == NUM_TASKS {
            self.arrived.store(0, Ordering::SeqCst);
            self.generation.fetch_add(1, Ordering::SeqCst);
            api::ax_wait_queue_wake(&self.wq, u32::MAX);
        } else {
            api::ax_wait_queue_wait_until(&self.wq, || self.generation.load(Ordering::SeqCst) != generation, None);
        }
    }
}

static BARRIER: Barrier = Barrier::new();

/// The pattern word `i` of the block seeded with `seed`.
fn pattern(seed: u64, i: usize) -> u64 {
    (seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

/// A heap block filled with its pattern; remembers the CPU it was allocated on.
struct Block {
    words: Box<[u64]>,
    seed: u64,
    cpu: usize,
}

impl Block {
    fn new(len: usize, seed: u64) -> Self {
        let words = (0..len).map(|i| pattern(seed, i)).collect();
        Self { words, seed, cpu: this_cpu_id() }
    }

    fn check(&self) {
        for (i, &w) in self.words.iter().enumerate() {
            assert_eq!(
                w,
                pattern(self.seed, i),
                "block {:#x} ({} words) corrupted at word {i}",
                self.seed,
                self.words.len()
            );
        }
    }
}

/// What one thread did: its partial sum, blocks checked, frees of blocks
/// allocated on another CPU.
struct Part {
    sum: u64,
    checked: usize,
    remote_frees: usize,
}

fn part(i: usize, data: &[u64], mailboxes: &[Mutex<Vec<Block>>]) -> Part {
    let left = i * (NUM_DATA / NUM_TASKS);
    let right = (left + (NUM_DATA / NUM_TASKS)).min(NUM_DATA);
    println!("part {}: {:?} [{}, {})", i, thread::current().id(), left, right);
    let sum = data[left..right].iter().map(sqrt).sum();

    let mut rng = Rng::new(0x9a7a_11e1 + i as u64);
    let (mut checked, mut remote_frees) = (0, 0);
    for round in 0..ROUNDS {
        // 8 B to 2 KiB mostly (slab objects), some up to 16 KiB and a few
        // 64 KiB page runs.
        let outgoing: Vec<Block> = (0..BLOCKS_PER_ROUND)
            .map(|k| {
                let len = match rng.below(100) {
                    0..85 => 1 + rng.below(256) as usize,
                    85..98 => 257 + rng.below(1792) as usize,
                    _ => 8192,
                };
                Block::new(len, ((i * ROUNDS + round) * BLOCKS_PER_ROUND + k) as u64)
            })
            .collect();
        mailboxes[(i + 1) % NUM_TASKS].lock().extend(outgoing);
        BARRIER.wait();
        let incoming = core::mem::take(&mut *mailboxes[i].lock());
        let cpu = this_cpu_id();
        for block in incoming {
            block.check();
            checked += 1;
            remote_frees += usize::from(block.cpu != cpu);
        }
    }
    println!("part {}: {:?} finished", i, thread::current().id());
    Part { sum, checked, remote_frees }
}

#[unsafe(no_mangle)]
fn main() {
    let ncpu = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("parallel: {NUM_TASKS} tasks on {ncpu} CPUs");
    let mut rng = Rng::new(0xdead_beef);
    let data: Arc<Vec<u64>> = Arc::new((0..NUM_DATA).map(|_| u64::from(rng.next_u64() as u32)).collect());
    let expect: u64 = data.iter().map(sqrt).sum();
    let mailboxes: Arc<Vec<Mutex<Vec<Block>>>> = Arc::new((0..NUM_TASKS).map(|_| Mutex::new(Vec::new())).collect());

    let tasks: Vec<_> = (0..NUM_TASKS)
        .map(|i| {
            let (data, mailboxes) = (data.clone(), mailboxes.clone());
            thread::spawn(move || part(i, &data, &mailboxes))
        })
        .collect();
    let parts: Vec<Part> = tasks.into_iter().map(|t| t.join().expect("a part panicked")).collect();

    let actual: u64 = parts.iter().map(|p| p.sum).sum();
    println!("sum = {actual}");
    assert_eq!(expect, actual, "parallel sum differs from the serial one");
    let checked: usize = parts.iter().map(|p| p.checked).sum();
    println!("blocks checked = {checked}");
    assert_eq!(checked, NUM_TASKS * ROUNDS * BLOCKS_PER_ROUND, "blocks lost on the way");
    assert!(mailboxes.iter().all(|m| m.lock().is_empty()), "blocks left in a mailbox");
    let remote: usize = parts.iter().map(|p| p.remote_frees).sum();
    println!("cross-CPU frees: {remote}");
    assert!(ncpu == 1 || remote > 0, "no block was freed on another CPU than its allocation");
    println!("Parallel summation tests run OK!");
}
