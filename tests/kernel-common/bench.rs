//! In-kernel allocator benchmark (cargo feature `bench`), shared by both
//! ArceOS lines' suites (tests/kernel, tests/kernel-tgoskits).
//!
//! The workloads of the host anchors (a–e), run inside the kernel through
//! the Rust global allocator (`alloc::alloc::alloc`/`dealloc`, i.e. the
//! `GlobalAlloc` of the line's allocator crate, axalloc or ax-alloc) and the
//! page API (`global_allocator().alloc_pages`/`dealloc_pages`):
//!
//! - a: 64 B alloc then free;
//! - b: random 8..=2048 B, 10k live, random replacement;
//! - c: 4 KiB pages (page API), 2048 live, freed in a shuffled order;
//! - d: 64 B objects handed over in batches from a producer on CPU 0 to a
//!   consumer on CPU 1, which frees them (every free is remote);
//! - e: as d with random 8..=2048 B.
//!
//! a, b and c run on one CPU (CPU 0), on CPUs 0 and 1 (when there are more
//! than two) and on every CPU at once: one pinned thread per CPU, each with
//! its own live set, started together.
//! Every block gets a tag in its first and last 8 bytes (a word derived from
//! a per-allocation sequence number), checked before it is freed: a broken
//! allocator (overlapping or reused live blocks) fails loudly with
//! `bench FAILED: ...` and exit status 1.
//!
//! Output, one line per measurement (ns per alloc+free pair, per CPU; for
//! several CPUs the mean over CPUs, with the slowest and fastest CPU):
//!
//! ```text
//! bench a cpus=1 ns_per_pair=123.4 pairs=200000
//! bench a cpus=4 ns_per_pair=130.2 min=128.0 max=133.9 pairs=200000
//! bench done
//! ```
//!
//! Time comes from the platform's monotonic clock
//! (the hal's `time::monotonic_time_nanos`). The tagging (two stores, two
//! loads per block) is inside the timed loops, the same for every backend.
//! The feature `bench-smoke` divides every iteration count by 100 (a quick
//! check that the bench runs, not a measurement).

use alloc::alloc::{alloc as raw_alloc, dealloc as raw_dealloc};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use std::thread;

use super::util::{Rng, TestResult, cpu_count, join_all, settle_heap, spawn_on};
use crate::line::{UsageKind, global_allocator, monotonic_time_nanos};

const PAGE: usize = 4096;

#[cfg(feature = "bench-smoke")]
const SCALE_DIV: usize = 100;
#[cfg(not(feature = "bench-smoke"))]
const SCALE_DIV: usize = 1;

/// a: alloc+free pairs per CPU.
const A_PAIRS: usize = 200_000 / SCALE_DIV;
/// b: live blocks (not scaled: the workload's shape) and replacements per CPU.
const B_LIVE: usize = 10_000;
const B_PAIRS: usize = 200_000 / SCALE_DIV;
/// c: live pages (not scaled) and rounds of allocate-all / free-all per CPU.
const C_LIVE: usize = 2048;
const C_ROUNDS: usize = 40usize.div_ceil(SCALE_DIV);
/// d, e: objects per batch (not scaled), batches in flight at most, batches.
const DE_BATCH: usize = 2048;
const DE_RING: usize = 4;
const DE_BATCHES: usize = 100usize.div_ceil(SCALE_DIV);
/// Untimed warm-up before a, as a fraction of the timed pairs.
const WARMUP_DIV: usize = 10;

/// Runs every workload, prints the results and `bench done`; returns the
/// exit status (0, or 1 after a failure).
pub fn run() -> i32 {
    let ncpu = cpu_count();
    println!("bench: {} CPUs, {} allocator, scale 1/{}", ncpu, global_allocator().name(), SCALE_DIV);
    // Let the boot's and the first threads' allocations settle.
    settle_heap(usize::MAX);
    match run_all(ncpu) {
        Ok(()) => {
            println!("bench done");
            0
        }
        Err(msg) => {
            println!("bench FAILED: {msg}");
            1
        }
    }
}

fn run_all(ncpu: usize) -> TestResult {
    // One CPU, two (when there are more: the emulator has few host cores,
    // so this is the multi-CPU point least distorted by oversubscription),
    // and every CPU.
    let mut cpu_sets: Vec<Vec<usize>> = alloc::vec![alloc::vec![0]];
    if ncpu > 2 {
        cpu_sets.push(alloc::vec![0, 1]);
    }
    if ncpu > 1 {
        cpu_sets.push((0..ncpu).collect());
    }
    let workloads: [(&str, Workload); 3] = [("a", wl_a), ("b", wl_b), ("c", wl_c)];
    for (name, wl) in workloads {
        for cpus in &cpu_sets {
            report(name, &on_cpus(cpus, wl)?);
        }
    }
    if ncpu > 1 {
        report("d", &[handover(false)?]);
        report("e", &[handover(true)?]);
    } else {
        println!("bench d skipped: needs 2 CPUs");
        println!("bench e skipped: needs 2 CPUs");
    }
    Ok(())
}

/// `(elapsed ns, pairs)` of one CPU's timed loop.
type Sample = (u64, u64);
/// A per-CPU workload: `(cpu, gate)`; calls `gate.wait()` once, right
/// before its timed loop.
type Workload = fn(usize, &Gate) -> TestResult<Sample>;

/// One line: mean ns/pair over the CPUs (and min/max with several CPUs).
fn report(name: &str, samples: &[Sample]) {
    // Tenths of a nanosecond, in integers (no floating point in the kernel).
    let tenths: Vec<u64> = samples.iter().map(|&(ns, pairs)| (ns * 10 + pairs / 2) / pairs.max(1)).collect();
    let mean = tenths.iter().sum::<u64>() / tenths.len() as u64;
    let pairs = samples[0].1;
    let cpus = if name == "d" || name == "e" { 2 } else { samples.len() };
    let fmt = |t: u64| format!("{}.{}", t / 10, t % 10);
    if samples.len() > 1 {
        let (min, max) = (tenths.iter().min().unwrap(), tenths.iter().max().unwrap());
        println!(
            "bench {name} cpus={cpus} ns_per_pair={} min={} max={} pairs={pairs}",
            fmt(mean),
            fmt(*min),
            fmt(*max)
        );
    } else {
        println!("bench {name} cpus={cpus} ns_per_pair={} pairs={pairs}", fmt(mean));
    }
}

/// Start line for the threads of one measurement: each waits until all
/// arrived. Yields while waiting (the kernel's scheduling is cooperative:
/// a spinning thread would keep the spawning main task off its CPU).
pub struct Gate {
    arrived: AtomicUsize,
    n: usize,
}

impl Gate {
    fn new(n: usize) -> Self {
        Self { arrived: AtomicUsize::new(0), n }
    }

    fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < self.n {
            thread::yield_now();
        }
    }
}

/// Runs `wl` on every CPU in `cpus` at once, one pinned thread each.
fn on_cpus(cpus: &[usize], wl: Workload) -> TestResult<Vec<Sample>> {
    let gate = Arc::new(Gate::new(cpus.len()));
    let handles = cpus
        .iter()
        .map(|&cpu| {
            let gate = gate.clone();
            spawn_on(cpu, move || wl(cpu, &gate))
        })
        .collect();
    let samples = join_all(handles)?;
    // Exited threads' stacks go back before the next measurement.
    settle_heap(usize::MAX);
    Ok(samples)
}

fn now_ns() -> u64 {
    monotonic_time_nanos()
}

/// The tag of the block with sequence number `seq` (never 0).
#[inline(always)]
fn tag_of(seq: u64) -> u64 {
    ((seq ^ 0x6b62_656e_6368).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1
}

/// Writes `tag` into the first 8 bytes of the block and `!tag` into its
/// last 8 (only the first when the block is shorter than 16 bytes).
///
/// # Safety
///
/// `p` is a live, 8-aligned block of `size >= 8` bytes owned by the caller.
#[inline(always)]
unsafe fn put_tags(p: *mut u8, size: usize, tag: u64) {
    // SAFETY: inside the block (caller), first word aligned.
    unsafe {
        write_volatile(p as *mut u64, tag);
        if size >= 16 {
            write_volatile(p.add(size - 8) as *mut [u8; 8], (!tag).to_ne_bytes());
        }
    }
}

/// Checks the tags written by [`put_tags`].
///
/// # Safety
///
/// As for [`put_tags`].
#[inline(always)]
unsafe fn check_tags(p: *mut u8, size: usize, tag: u64) -> TestResult {
    // SAFETY: inside the block (caller).
    let (first, last) = unsafe {
        let first = read_volatile(p as *const u64);
        let last = if size >= 16 { read_volatile(p.add(size - 8) as *const [u8; 8]) } else { (!tag).to_ne_bytes() };
        (first, u64::from_ne_bytes(last))
    };
    if first != tag || last != !tag {
        return Err(format!(
            "block {p:p} ({size} B) corrupted: tags {first:#x}/{last:#x}, expected {tag:#x}/{:#x}",
            !tag
        ));
    }
    Ok(())
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Allocates and tags one block through the global allocator.
#[inline(always)]
fn new_block(size: usize, tag: u64) -> TestResult<*mut u8> {
    // SAFETY: size >= 8.
    let p = unsafe { raw_alloc(layout(size)) };
    if p.is_null() {
        return Err(format!("alloc of {size} B failed"));
    }
    // SAFETY: just allocated, `size` bytes, 8-aligned.
    unsafe { put_tags(p, size, tag) };
    Ok(p)
}

/// Checks and frees a block made by [`new_block`].
#[inline(always)]
fn free_block(p: *mut u8, size: usize, tag: u64) -> TestResult {
    // SAFETY: a live block of `size` bytes from `new_block` (caller).
    unsafe {
        check_tags(p, size, tag)?;
        raw_dealloc(p, layout(size));
    }
    Ok(())
}

/// A size in 8..=2048.
#[inline(always)]
fn random_size(rng: &mut Rng) -> usize {
    8 + rng.below(2041) as usize
}

/// a: 64 B alloc then free.
fn wl_a(cpu: usize, gate: &Gate) -> TestResult<Sample> {
    let base = (cpu as u64) << 40;
    let pair = |i: usize| -> TestResult {
        let tag = tag_of(base + i as u64);
        let p = new_block(64, tag)?;
        free_block(p, 64, tag)
    };
    for i in 0..A_PAIRS / WARMUP_DIV {
        pair(i)?;
    }
    gate.wait();
    let t0 = now_ns();
    for i in 0..A_PAIRS {
        pair(i)?;
    }
    Ok((now_ns() - t0, A_PAIRS as u64))
}

/// b: random 8..=2048 B, `B_LIVE` live, a random one replaced each step.
fn wl_b(cpu: usize, gate: &Gate) -> TestResult<Sample> {
    let base = (cpu as u64) << 40;
    let mut rng = Rng::new(0xb0b0 + cpu as u64);
    let mut seq = base;
    // (block, size, tag); set up before the timed loop.
    let mut live: Vec<(*mut u8, usize, u64)> = Vec::with_capacity(B_LIVE);
    for _ in 0..B_LIVE {
        let size = random_size(&mut rng);
        let tag = tag_of(seq);
        seq += 1;
        live.push((new_block(size, tag)?, size, tag));
    }
    gate.wait();
    let t0 = now_ns();
    for _ in 0..B_PAIRS {
        let slot = &mut live[rng.below(B_LIVE as u64) as usize];
        free_block(slot.0, slot.1, slot.2)?;
        let size = random_size(&mut rng);
        let tag = tag_of(seq);
        seq += 1;
        *slot = (new_block(size, tag)?, size, tag);
    }
    let ns = now_ns() - t0;
    for (p, size, tag) in live {
        free_block(p, size, tag)?;
    }
    Ok((ns, B_PAIRS as u64))
}

/// c: `C_LIVE` single pages from the page API, freed in a shuffled order,
/// `C_ROUNDS` times.
fn wl_c(cpu: usize, gate: &Gate) -> TestResult<Sample> {
    let ga = global_allocator();
    let base = (cpu as u64) << 40;
    let mut rng = Rng::new(0xc0c0 + cpu as u64);
    // Four shuffled orders (Fisher-Yates), made before the timed loop.
    let perms: Vec<Vec<u16>> = (0..4)
        .map(|_| {
            let mut p: Vec<u16> = (0..C_LIVE as u16).collect();
            for i in (1..p.len()).rev() {
                p.swap(i, rng.below(i as u64 + 1) as usize);
            }
            p
        })
        .collect();
    let mut pages = [0usize; C_LIVE];
    gate.wait();
    let t0 = now_ns();
    for round in 0..C_ROUNDS {
        let seq0 = base + (round * C_LIVE) as u64;
        for (i, slot) in pages.iter_mut().enumerate() {
            let addr = ga
                .alloc_pages(1, PAGE, UsageKind::Global)
                .map_err(|e| format!("CPU {cpu}: alloc_pages round {round} page {i}: {e:?}"))?;
            // SAFETY: a fresh page of ours.
            unsafe { put_tags(addr as *mut u8, PAGE, tag_of(seq0 + i as u64)) };
            *slot = addr;
        }
        for &i in &perms[round % perms.len()] {
            let addr = pages[i as usize];
            // SAFETY: still ours, tagged above.
            unsafe { check_tags(addr as *mut u8, PAGE, tag_of(seq0 + i as u64))? };
            ga.dealloc_pages(addr, 1, UsageKind::Global);
        }
    }
    Ok((now_ns() - t0, (C_ROUNDS * C_LIVE) as u64))
}

/// Batches in flight from the producer to the consumer: a ring of
/// pre-allocated buffers, each owned by one side at a time (`full` hands
/// it over), so the hand-over itself allocates nothing.
struct Ring {
    /// Set by a side that failed, so the other stops waiting.
    abort: AtomicBool,
    full: [AtomicBool; DE_RING],
    /// (block, size) of each object of a batch.
    slots: [UnsafeCell<Vec<(usize, usize)>>; DE_RING],
}

// SAFETY: a slot is touched only by the side that owns it (`full` false:
// producer; true: consumer), and ownership moves with Release/Acquire.
unsafe impl Sync for Ring {}

/// d (`random == false`) and e: producer on CPU 0, consumer on CPU 1.
/// The time is the consumer's, from the common start to its last free.
fn handover(random: bool) -> TestResult<Sample> {
    let ring = Arc::new(Ring {
        abort: AtomicBool::new(false),
        full: core::array::from_fn(|_| AtomicBool::new(false)),
        slots: core::array::from_fn(|_| UnsafeCell::new(Vec::with_capacity(DE_BATCH))),
    });
    let gate = Arc::new(Gate::new(2));
    let side = |cpu: usize, f: fn(&Ring, &Gate, bool) -> TestResult<Sample>| {
        let (ring, gate) = (ring.clone(), gate.clone());
        spawn_on(cpu, move || {
            let r = f(&ring, &gate, random);
            if r.is_err() {
                ring.abort.store(true, Ordering::Release);
            }
            r
        })
    };
    let handles = alloc::vec![side(0, produce), side(1, consume)];
    let samples = join_all(handles)?;
    settle_heap(usize::MAX);
    Ok(samples[1])
}

/// Waits until slot `s` is `full == want`, or the other side failed.
fn wait_slot(ring: &Ring, s: usize, want: bool) -> TestResult {
    while ring.full[s].load(Ordering::Acquire) != want {
        if ring.abort.load(Ordering::Acquire) {
            return Err(String::from("the other side of the hand-over failed"));
        }
        thread::yield_now();
    }
    Ok(())
}

fn produce(ring: &Ring, gate: &Gate, random: bool) -> TestResult<Sample> {
    let mut rng = Rng::new(if random { 0xe0e0 } else { 0xd0d0 });
    gate.wait();
    for b in 0..DE_BATCHES {
        let s = b % DE_RING;
        wait_slot(ring, s, false)?;
        // SAFETY: the slot is the producer's while `full` is false.
        let batch = unsafe { &mut *ring.slots[s].get() };
        batch.clear();
        for i in 0..DE_BATCH {
            let size = if random { random_size(&mut rng) } else { 64 };
            let p = new_block(size, tag_of((b * DE_BATCH + i) as u64))?;
            batch.push((p as usize, size));
        }
        ring.full[s].store(true, Ordering::Release);
    }
    Ok((0, 0))
}

fn consume(ring: &Ring, gate: &Gate, _random: bool) -> TestResult<Sample> {
    gate.wait();
    let t0 = now_ns();
    for b in 0..DE_BATCHES {
        let s = b % DE_RING;
        wait_slot(ring, s, true)?;
        // SAFETY: the slot is the consumer's while `full` is true.
        let batch = unsafe { &mut *ring.slots[s].get() };
        for (i, &(p, size)) in batch.iter().enumerate() {
            free_block(p as *mut u8, size, tag_of((b * DE_BATCH + i) as u64))?;
        }
        batch.clear();
        ring.full[s].store(false, Ordering::Release);
    }
    Ok((now_ns() - t0, (DE_BATCHES * DE_BATCH) as u64))
}
