//! In-kernel allocator test suite, run as an ArceOS app on QEMU.
//!
//! Every test returns `Ok(())` or a message. The app reports in KTAP
//! version 1, the format of Linux's KUnit and tgoskits' axtest: a
//! `KTAP version 1` line, the plan `1..N`, then one result line per test,
//! `ok I NAME` or, after a diagnostic line `# NAME: reason`, `not ok I NAME`;
//! other lines it prints are diagnostics (`# ...`). Then `N passed, M failed`
//! alone on a line, and the machine shuts down. scripts/kernel-test.sh
//! builds, boots and checks one configuration (the expect file, the KTAP
//! lines and the summary); scripts/kernel-apps.sh runs every line of
//! `test_cmd`.
//!
//! Threads are pinned to CPUs with the task affinity API, and every pinned
//! thread checks that it really runs on its CPU, so "on every CPU" and
//! "cross-CPU free" mean what they say. Block contents are filled with a
//! pattern derived from a seed and checked before every free, so overlapping
//! or corrupted blocks fail the test instead of passing silently.
//!
//! Built with the cargo feature `bench`, the same kernel runs the in-kernel
//! benchmark instead (src/bench.rs; scripts/kernel-bench.sh boots it).

#![no_std]
#![no_main]
// The bench build runs none of the tests.
#![cfg_attr(feature = "bench", allow(dead_code, unused_imports))]

#[macro_use]
extern crate axstd as std;
extern crate alloc;

#[cfg(feature = "bench")]
mod bench;
mod util;

use alloc::alloc::{alloc as raw_alloc, dealloc as raw_dealloc, realloc as raw_realloc};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::sync::atomic::{AtomicUsize, Ordering};

use axalloc::{GlobalPage, UsageKind, global_allocator};
use std::sync::{Arc, Mutex};

use util::{Block, Rng, TestResult, cpu_count, join_all, settle_heap, spawn_on, this_cpu};

const PAGE: usize = 4096;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// `(name, test)`, run in this order. `usage_back_to_baseline` must stay last.
const TESTS: &[(&str, fn() -> TestResult)] = &[
    ("alloc_on_every_cpu", alloc_on_every_cpu),
    ("cross_cpu_free", cross_cpu_free),
    ("cross_cpu_free_concurrent", cross_cpu_free_concurrent),
    ("page_alloc", page_alloc),
    ("page_alloc_bad_params", page_alloc_bad_params),
    ("page_alloc_every_cpu", page_alloc_every_cpu),
    ("alloc_pages_at", alloc_pages_at),
    ("global_page_raii", global_page_raii),
    ("realloc_keeps_contents", realloc_keeps_contents),
    ("large_alignment", large_alignment),
    ("vec_3m", vec_3m),
    ("btreemap_50k", btreemap_50k),
    ("string_churn", string_churn),
    ("smp_stress", smp_stress),
    ("all_memory_usable", all_memory_usable),
    ("idle_cpus_give_back", idle_cpus_give_back),
    ("oom_is_an_error", oom_is_an_error),
    ("usage_back_to_baseline", usage_back_to_baseline),
];

/// RustHeap bytes live when the suite started (after the heap settled).
static BASELINE_HEAP: AtomicUsize = AtomicUsize::new(0);
/// Page usage (all kinds but RustHeap) when the suite started.
static BASELINE_PAGES: Mutex<[usize; 6]> = Mutex::new([0; 6]);

const PAGE_KINDS: [UsageKind; 5] =
    [UsageKind::VirtMem, UsageKind::PageCache, UsageKind::PageTable, UsageKind::Dma, UsageKind::Global];

#[unsafe(no_mangle)]
fn main() {
    #[cfg(feature = "bench")]
    std::process::exit(bench::run());
    #[cfg(not(feature = "bench"))]
    run_tests();
}

fn run_tests() {
    let ncpu = cpu_count();
    println!("alloc-kernel-test: {} CPUs, {} allocator", ncpu, global_allocator().name());

    // Warm up: one pinned thread per CPU, so the task bookkeeping that stays
    // allocated between tests (per-CPU run queues, idle and GC tasks) exists
    // before the baseline is taken.
    let warm: Vec<_> = (0..ncpu).map(|cpu| spawn_on(cpu, || Ok(()))).collect();
    if let Err(e) = join_all(warm) {
        println!("# warm-up failed: {e}");
    }
    settle_heap(usize::MAX);
    let usages = global_allocator().usages();
    BASELINE_HEAP.store(usages.get(UsageKind::RustHeap), Ordering::SeqCst);
    {
        let mut pages = BASELINE_PAGES.lock();
        for kind in PAGE_KINDS {
            pages[kind as usize] = usages.get(kind);
        }
    }
    println!("# baseline: {usages:?}");

    println!("KTAP version 1");
    println!("1..{}", TESTS.len());
    let (mut passed, mut failed) = (0, 0);
    for (i, (name, test)) in TESTS.iter().enumerate() {
        match test() {
            Ok(()) => {
                println!("ok {} {name}", i + 1);
                passed += 1;
            }
            Err(msg) => {
                for line in msg.lines() {
                    println!("# {name}: {line}");
                }
                println!("not ok {} {name}", i + 1);
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// Small and medium sizes, the slab range and just past it.
const SIZES: [usize; 14] = [1, 8, 16, 24, 48, 64, 100, 128, 256, 512, 1000, 2048, 3000, 4096];

fn alloc_on_every_cpu() -> TestResult {
    let ncpu = cpu_count();
    let handles: Vec<_> = (0..ncpu)
        .map(|cpu| {
            spawn_on(cpu, move || {
                let mut blocks = Vec::new();
                for i in 0..3000 {
                    let size = SIZES[i % SIZES.len()];
                    blocks.push(Block::new(size, 8, (cpu << 32 | i) as u64)?);
                }
                for b in &blocks {
                    b.check()?;
                }
                ensure!(this_cpu() == cpu, "thread left CPU {cpu}");
                Ok(blocks.len())
            })
        })
        .collect();
    let counts = join_all(handles)?;
    ensure!(counts.iter().all(|&n| n == 3000), "allocation counts {counts:?}");
    Ok(())
}

/// Blocks allocated on CPU `a` are checked and freed on CPU `(a + 1) % n`.
fn cross_cpu_free() -> TestResult {
    let ncpu = cpu_count();
    ensure!(ncpu > 1, "needs SMP > 1, have {ncpu} CPU");
    for a in 0..ncpu {
        let b = (a + 1) % ncpu;
        let blocks = spawn_on(a, move || {
            let mut rng = Rng::new(a as u64 + 1);
            (0..2000)
                .map(|i| Block::new(rng.size_up_to(4096), rng.align_up_to(64), (a * 100_000 + i) as u64))
                .collect::<Result<Vec<_>, _>>()
        })
        .join()
        .map_err(|e| format!("join: {e:?}"))??;
        spawn_on(b, move || {
            for blk in &blocks {
                blk.check()?;
            }
            drop(blocks);
            Ok(())
        })
        .join()
        .map_err(|e| format!("join: {e:?}"))??;
    }
    Ok(())
}

/// All CPUs free each other's blocks at once, while allocating new ones.
fn cross_cpu_free_concurrent() -> TestResult {
    let ncpu = cpu_count();
    let produced = join_all(
        (0..ncpu)
            .map(|cpu| {
                spawn_on(cpu, move || {
                    let mut rng = Rng::new(0x5eed + cpu as u64);
                    (0..3000)
                        .map(|i| Block::new(rng.size_up_to(2048), 8, (cpu << 40 | i) as u64))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect(),
    )?;
    let mut produced: Vec<Option<Vec<Block>>> = produced.into_iter().map(Some).collect();
    let handles: Vec<_> = (0..ncpu)
        .map(|cpu| {
            let theirs = produced[(cpu + 1) % ncpu].take().unwrap_or_default();
            spawn_on(cpu, move || {
                let mut mine = Vec::new();
                for (i, blk) in theirs.into_iter().enumerate() {
                    blk.check()?;
                    drop(blk);
                    mine.push(Block::new(SIZES[i % SIZES.len()], 8, i as u64)?);
                }
                for blk in &mine {
                    blk.check()?;
                }
                Ok(())
            })
        })
        .collect();
    join_all(handles).map(|_| ())
}

fn page_alloc() -> TestResult {
    let ga = global_allocator();
    let before = ga.usages().get(UsageKind::Global);
    let requests = [(1, PAGE), (2, PAGE), (3, PAGE), (4, 4 * PAGE), (8, 8 * PAGE), (16, 16 * PAGE), (64, PAGE), (5, 0x10_0000)];
    let mut got: Vec<(usize, usize)> = Vec::new();
    let mut total = 0;
    for (i, &(n, align)) in requests.iter().enumerate() {
        let addr = ga.alloc_pages(n, align, UsageKind::Global).map_err(|e| format!("alloc_pages({n}, {align:#x}): {e:?}"))?;
        ensure!(addr % align == 0, "alloc_pages({n}, {align:#x}) = {addr:#x} is misaligned");
        // SAFETY: the n pages at addr were just allocated for this test.
        unsafe { fill_pages(addr, n, i as u64) };
        got.push((addr, n));
        total += n * PAGE;
    }
    for (i, &(a, n)) in got.iter().enumerate() {
        for &(b, m) in &got[i + 1..] {
            ensure!(a + n * PAGE <= b || b + m * PAGE <= a, "page ranges {a:#x}+{n} and {b:#x}+{m} overlap");
        }
    }
    let during = ga.usages().get(UsageKind::Global);
    ensure!(during == before + total, "Global usage {during:#x}, expected {:#x}", before + total);
    for (i, &(addr, n)) in got.iter().enumerate() {
        // SAFETY: still owned by this test.
        unsafe { check_pages(addr, n, i as u64)? };
        ga.dealloc_pages(addr, n, UsageKind::Global);
    }
    let after = ga.usages().get(UsageKind::Global);
    ensure!(after == before, "Global usage {after:#x} after freeing, was {before:#x}");
    Ok(())
}

fn page_alloc_bad_params() -> TestResult {
    let ga = global_allocator();
    let before = ga.usages();
    let zero = ga.alloc_pages(0, PAGE, UsageKind::Global);
    ensure!(zero.is_err(), "alloc_pages(0 pages) = {zero:?}");
    let odd = ga.alloc_pages(1, 3 * PAGE, UsageKind::Global);
    ensure!(odd.is_err(), "alloc_pages(align 3 pages) = {odd:?}");
    let after = ga.usages().get(UsageKind::Global);
    ensure!(after == before.get(UsageKind::Global), "failed calls changed Global usage");
    Ok(())
}

/// Every CPU allocates pages; half are freed locally, half on the next CPU.
fn page_alloc_every_cpu() -> TestResult {
    let ncpu = cpu_count();
    let before = global_allocator().usages().get(UsageKind::Global);
    let produced = join_all(
        (0..ncpu)
            .map(|cpu| {
                spawn_on(cpu, move || {
                    let ga = global_allocator();
                    let mut keep = Vec::new();
                    for i in 0..96 {
                        let n = 1 + i % 4;
                        let addr = ga.alloc_pages(n, PAGE, UsageKind::Global).map_err(|e| format!("CPU {cpu}: {e:?}"))?;
                        let seed = (cpu * 1000 + i) as u64;
                        // SAFETY: freshly allocated pages.
                        unsafe { fill_pages(addr, n, seed) };
                        keep.push((addr, n, seed));
                    }
                    let theirs = keep.split_off(keep.len() / 2);
                    for (addr, n, seed) in keep {
                        // SAFETY: owned by this thread.
                        unsafe { check_pages(addr, n, seed)? };
                        ga.dealloc_pages(addr, n, UsageKind::Global);
                    }
                    Ok(theirs)
                })
            })
            .collect(),
    )?;
    let handles: Vec<_> = produced
        .into_iter()
        .enumerate()
        .map(|(cpu, pages)| {
            spawn_on((cpu + 1) % ncpu, move || {
                for (addr, n, seed) in pages {
                    // SAFETY: ownership moved here with the list.
                    unsafe { check_pages(addr, n, seed)? };
                    global_allocator().dealloc_pages(addr, n, UsageKind::Global);
                }
                Ok(())
            })
        })
        .collect();
    join_all(handles)?;
    let after = global_allocator().usages().get(UsageKind::Global);
    ensure!(after == before, "Global usage {after:#x}, was {before:#x}");
    Ok(())
}

fn alloc_pages_at() -> TestResult {
    let ga = global_allocator();
    let addr = ga.alloc_pages(4, 4 * PAGE, UsageKind::Global).map_err(|e| format!("alloc_pages: {e:?}"))?;
    ga.dealloc_pages(addr, 4, UsageKind::Global);
    let again = ga.alloc_pages_at(addr, 4, PAGE, UsageKind::Global);
    ensure!(matches!(again, Ok(a) if a == addr), "alloc_pages_at({addr:#x}) of free pages = {again:?}");
    let overlap = ga.alloc_pages_at(addr + PAGE, 1, PAGE, UsageKind::Global);
    if let Ok(p) = overlap {
        ga.dealloc_pages(p, 1, UsageKind::Global);
    }
    ga.dealloc_pages(addr, 4, UsageKind::Global);
    ensure!(overlap.is_err(), "alloc_pages_at inside an allocated range succeeded: {overlap:?}");
    Ok(())
}

fn global_page_raii() -> TestResult {
    let ga = global_allocator();
    let before = ga.usages().get(UsageKind::Global);
    {
        let zero = GlobalPage::alloc_zero().map_err(|e| format!("alloc_zero: {e:?}"))?;
        ensure!(zero.as_slice().iter().all(|&b| b == 0), "alloc_zero page not zero");
        let mut four = GlobalPage::alloc_contiguous(4, 4 * PAGE).map_err(|e| format!("alloc_contiguous: {e:?}"))?;
        ensure!(four.start_vaddr().as_usize() % (4 * PAGE) == 0, "misaligned {:?}", four.start_vaddr());
        ensure!(four.size() == 4 * PAGE, "size {}", four.size());
        four.fill(0xa5);
        ensure!(four.as_slice().iter().all(|&b| b == 0xa5), "fill lost");
        let during = ga.usages().get(UsageKind::Global);
        ensure!(during == before + 5 * PAGE, "Global usage {during:#x}, expected {:#x}", before + 5 * PAGE);
    }
    let after = ga.usages().get(UsageKind::Global);
    ensure!(after == before, "Global usage {after:#x} after drop, was {before:#x}");
    Ok(())
}

fn realloc_keeps_contents() -> TestResult {
    // Raw realloc through the global allocator, growing then shrinking.
    let steps = [16usize, 64, 5000, 200_000, 70_000, 24];
    for align in [8usize, 64, 4096] {
        let mut layout = Layout::from_size_align(steps[0], align).unwrap();
        // SAFETY: non-zero size.
        let mut ptr = unsafe { raw_alloc(layout) };
        ensure!(!ptr.is_null(), "alloc {layout:?} failed");
        // SAFETY: `ptr` holds `layout.size()` bytes.
        unsafe { (0..layout.size()).for_each(|i| *ptr.add(i) = i as u8) };
        let mut valid = layout.size();
        for &size in &steps[1..] {
            // SAFETY: `ptr` is live with `layout`; size is non-zero.
            let new = unsafe { raw_realloc(ptr, layout, size) };
            ensure!(!new.is_null(), "realloc to {size} failed");
            ensure!(new as usize % align == 0, "realloc lost alignment {align}: {new:p}");
            valid = valid.min(size);
            for i in 0..valid {
                // SAFETY: within the new block.
                let got = unsafe { *new.add(i) };
                ensure!(got == i as u8, "byte {i} is {got} after realloc to {size} (align {align})");
            }
            ptr = new;
            layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: the whole new block.
            unsafe { (0..size).for_each(|i| *ptr.add(i) = i as u8) };
            valid = size;
        }
        // SAFETY: live block with its current layout.
        unsafe { raw_dealloc(ptr, layout) };
    }
    // Vec growth one element at a time, contents checked at the end.
    let mut v: Vec<u64> = Vec::new();
    for i in 0..100_000u64 {
        v.push(i * 7);
    }
    ensure!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 7), "Vec contents lost in growth");
    v.truncate(10);
    v.shrink_to_fit();
    ensure!(v == [0, 7, 14, 21, 28, 35, 42, 49, 56, 63], "shrink_to_fit lost contents");
    Ok(())
}

fn large_alignment() -> TestResult {
    let mut live = Vec::new();
    for shift in 3..=16 {
        let align = 1usize << shift;
        for size in [1, 24, align, 3 * align] {
            live.push(Block::new(size, align, (shift * 10 + size) as u64)?);
        }
    }
    for b in &live {
        b.check()?;
    }
    Ok(())
}

/// In the spirit of arceos-apps memtest: a 3M-element Vec grown by push.
fn vec_3m() -> TestResult {
    const N: usize = 3_000_000;
    let mut rng = Rng::new(0xdead_beef);
    let mut v: Vec<u32> = Vec::new();
    let mut sum = 0u64;
    for _ in 0..N {
        let x = rng.next() as u32;
        sum += x as u64;
        v.push(x);
    }
    v.sort_unstable();
    ensure!(v.windows(2).all(|w| w[0] <= w[1]), "not sorted");
    let check: u64 = v.iter().map(|&x| x as u64).sum();
    ensure!(check == sum, "contents changed: sum {check} != {sum}");
    drop(v);
    let mut w: Vec<usize> = Vec::with_capacity(N);
    w.extend((0..N).map(|i| i.wrapping_mul(0x9e37_79b9)));
    ensure!(w.iter().enumerate().all(|(i, &x)| x == i.wrapping_mul(0x9e37_79b9)), "usize Vec contents");
    Ok(())
}

/// In the spirit of arceos-apps memtest: a 50k-entry BTreeMap<String, u32>.
fn btreemap_50k() -> TestResult {
    const N: usize = 50_000;
    let mut rng = Rng::new(42);
    let mut map = BTreeMap::new();
    let mut values = Vec::with_capacity(N);
    for _ in 0..N {
        let value = rng.next() as u32;
        map.insert(format!("key_{value}"), value);
        values.push(value);
    }
    values.sort_unstable();
    values.dedup();
    ensure!(map.len() == values.len(), "map has {} entries, expected {}", map.len(), values.len());
    for (k, v) in &map {
        let parsed: u32 = k.strip_prefix("key_").and_then(|s| s.parse().ok()).ok_or(format!("bad key {k}"))?;
        ensure!(parsed == *v, "key {k} holds {v}");
    }
    let keys: Vec<String> = map.keys().step_by(2).cloned().collect();
    for k in &keys {
        ensure!(map.remove(k).is_some(), "remove {k}");
    }
    ensure!(map.len() == values.len() - keys.len(), "len after removals");
    Ok(())
}

fn string_churn() -> TestResult {
    let mut rng = Rng::new(7);
    let mut window: Vec<(String, u64)> = Vec::new();
    for round in 0..20_000u64 {
        let len = rng.below(300) as usize;
        let mut s = String::new();
        for j in 0..len {
            s.push((b'a' + ((round as usize + j) % 26) as u8) as char);
        }
        if round % 3 == 0 {
            s = format!("{s}-{round}");
        }
        let sum = s.bytes().map(u64::from).sum();
        if window.len() < 512 {
            window.push((s, sum));
        } else {
            let i = rng.below(512) as usize;
            let (old, old_sum) = core::mem::replace(&mut window[i], (s, sum));
            ensure!(old.bytes().map(u64::from).sum::<u64>() == old_sum, "string {i} corrupted");
        }
    }
    for (s, sum) in &window {
        ensure!(s.bytes().map(u64::from).sum::<u64>() == *sum, "string corrupted at the end");
    }
    Ok(())
}

/// Mailbox of blocks handed from one CPU to another during the stress.
type Mailbox = Arc<Vec<Mutex<Vec<Block>>>>;

/// All CPUs at once: random sizes and alignments, a window of live blocks,
/// and a steady flow of blocks freed by another CPU than their allocator's.
fn smp_stress() -> TestResult {
    const OPS: usize = 12_000;
    const WINDOW: usize = 200;
    let ncpu = cpu_count();
    let mailboxes: Mailbox = Arc::new((0..ncpu).map(|_| Mutex::new(Vec::new())).collect());
    let handles: Vec<_> = (0..ncpu)
        .map(|cpu| {
            let mailboxes = mailboxes.clone();
            spawn_on(cpu, move || {
                let mut rng = Rng::new(0x57e5_5000 + cpu as u64);
                let mut live: Vec<Block> = Vec::with_capacity(WINDOW);
                let (mut sent, mut received) = (0usize, 0usize);
                for op in 0..OPS {
                    let size = match rng.below(100) {
                        0..60 => 1 + rng.below(256) as usize,
                        60..90 => 256 + rng.below(3840) as usize,
                        90..99 => 4096 + rng.below(28 * 1024) as usize,
                        _ => 32 * 1024 + rng.below(96 * 1024) as usize,
                    };
                    let align = if rng.below(8) == 0 { rng.align_up_to(4096) } else { 8 };
                    let seed = ((cpu as u64) << 48) | op as u64;
                    live.push(Block::new(size, align, seed)?);
                    if live.len() >= WINDOW {
                        let victim = live.swap_remove(rng.below(live.len() as u64) as usize);
                        victim.check()?;
                        if op % 4 == 0 {
                            mailboxes[(cpu + 1) % ncpu].lock().push(victim);
                            sent += 1;
                        }
                    }
                    if op % 32 == 0 {
                        let inbox: Vec<Block> = core::mem::take(&mut *mailboxes[cpu].lock());
                        for blk in inbox {
                            blk.check()?;
                            received += 1;
                        }
                    }
                }
                for blk in &live {
                    blk.check()?;
                }
                ensure!(this_cpu() == cpu, "thread left CPU {cpu}");
                Ok((sent, received))
            })
        })
        .collect();
    let counts = join_all(handles)?;
    // Blocks still in mailboxes are checked and freed here (CPU of main).
    for mb in mailboxes.iter() {
        for blk in core::mem::take(&mut *mb.lock()) {
            blk.check()?;
        }
    }
    let received: usize = counts.iter().map(|c| c.1).sum();
    ensure!(ncpu == 1 || received > 0, "no cross-CPU frees happened: {counts:?}");
    Ok(())
}

/// Guest RAM in bytes, from scripts/kernel-test.sh (QEMU's `-m`).
const MEM_BYTES: Option<&str> = option_env!("KERNEL_TEST_MEM_BYTES");

/// Nearly all of the guest's RAM can be had as page runs: 2 MiB runs are
/// taken until none is left, the first and last word of each written and
/// checked, then all freed. With several GiB this reaches memory past the
/// first gigabyte, which the boot page tables do not map (the buddy-slab
/// backend adds it once paging is up).
fn all_memory_usable() -> TestResult {
    const CHUNK_PAGES: usize = 512;
    const CHUNK: usize = CHUNK_PAGES * PAGE;
    let mem: usize = MEM_BYTES.and_then(|m| m.parse().ok()).unwrap_or(128 << 20);
    let ga = global_allocator();
    let before = ga.usages().get(UsageKind::Global);
    let managed = ga.used_bytes() + ga.available_bytes();
    // Reserved up front: no heap growth while pages are exhausted.
    let mut chunks: Vec<usize> = Vec::with_capacity(mem / CHUNK + 16);
    while chunks.len() < chunks.capacity() {
        let Ok(addr) = ga.alloc_pages(CHUNK_PAGES, CHUNK, UsageKind::Global) else {
            break;
        };
        ensure!(addr % CHUNK == 0, "2 MiB run at {addr:#x} is misaligned");
        let (first, last) = (addr as *mut u64, (addr + CHUNK - 8) as *mut u64);
        // SAFETY: the run was just allocated for this test and is mapped.
        unsafe {
            first.write_volatile(util::pattern(addr as u64, 0));
            last.write_volatile(util::pattern(addr as u64, 1));
        }
        chunks.push(addr);
    }
    let total = chunks.len() * CHUNK;
    // Give some back at once: the rest of the kernel may allocate meanwhile.
    for addr in chunks.drain(chunks.len().saturating_sub(4)..) {
        ga.dealloc_pages(addr, CHUNK_PAGES, UsageKind::Global);
    }
    let (lo, hi) = (chunks.iter().min().copied().unwrap_or(0), chunks.iter().max().copied().unwrap_or(0));
    for &addr in &chunks {
        // SAFETY: still owned by this test.
        let (a, b) = unsafe { ((addr as *const u64).read_volatile(), ((addr + CHUNK - 8) as *const u64).read_volatile()) };
        ensure!(a == util::pattern(addr as u64, 0) && b == util::pattern(addr as u64, 1), "run {addr:#x} corrupted");
    }
    for addr in chunks {
        ga.dealloc_pages(addr, CHUNK_PAGES, UsageKind::Global);
    }
    println!("# {} MiB of {} MiB RAM as 2 MiB runs, lowest {lo:#x}, highest {hi:#x}", total >> 20, mem >> 20);
    // Metadata (1/256), page tables of the linear map (1/512), the kernel
    // image and 2 MiB alignment losses stay below mem/16 + 64 MiB. The
    // other CPUs drain when memory runs short (buddy-slab's `ipi-reclaim`);
    // a CPU that cannot answer within the request's wait keeps its caches
    // (1 MiB idle budget, more if its page cache grew).
    let cached = (cpu_count() - 1) * (6 << 20);
    ensure!(total + mem / 16 + (64 << 20) + cached >= mem, "only {} MiB of {} MiB usable", total >> 20, mem >> 20);
    // With 512 MiB or more this heap hands out 97 % of what it manages as
    // 2 MiB runs, every other CPU's caches included (they drain on request).
    if ga.name() == "buddy-slab" && mem >= 512 << 20 {
        ensure!(
            total * 100 >= managed * 97,
            "{} MiB as 2 MiB runs of {} MiB managed: below 97 %",
            total >> 20,
            managed >> 20
        );
    }
    let after = ga.usages().get(UsageKind::Global);
    ensure!(after == before, "Global usage {after:#x} after freeing, was {before:#x}");
    Ok(())
}

/// Pages the heap hands out, one at a time, until it has no more (all
/// freed again).
fn count_free_pages(max: usize) -> TestResult<usize> {
    let ga = global_allocator();
    // Reserved up front: no heap growth while pages are exhausted.
    let mut pages: Vec<usize> = Vec::with_capacity(max);
    while pages.len() < max {
        let Ok(addr) = ga.alloc_pages(1, PAGE, UsageKind::Global) else {
            break;
        };
        pages.push(addr);
    }
    let n = pages.len();
    for addr in pages {
        ga.dealloc_pages(addr, 1, UsageKind::Global);
    }
    Ok(n)
}

/// The other CPUs cycle pages until their page caches have grown, and go
/// idle; memory short on this CPU must still reach what they cache (with
/// buddy-slab, its `ipi-reclaim`: the allocation that found memory short
/// interrupts them and they drain). As many pages as before, within 1 MiB.
fn idle_cpus_give_back() -> TestResult {
    let mem: usize = MEM_BYTES.and_then(|m| m.parse().ok()).unwrap_or(128 << 20);
    let max = mem / PAGE;
    let before = count_free_pages(max)?;
    let (ncpu, me) = (cpu_count(), this_cpu());
    let cyclers: Vec<_> = (0..ncpu)
        .filter(|&cpu| cpu != me)
        .map(|cpu| {
            spawn_on(cpu, move || {
                let ga = global_allocator();
                let mut pages = Vec::with_capacity(1024);
                for _ in 0..8 {
                    while pages.len() < 1024 {
                        let p = ga.alloc_pages(1, PAGE, UsageKind::Global).map_err(|e| format!("{e:?}"))?;
                        pages.push(p);
                    }
                    for p in pages.drain(..) {
                        ga.dealloc_pages(p, 1, UsageKind::Global);
                    }
                }
                Ok(())
            })
        })
        .collect();
    join_all(cyclers)?;
    let after = count_free_pages(max)?;
    println!("# free pages: {before} before the other CPUs cycled pages, {after} after");
    ensure!(after + 256 >= before, "{after} pages once the other CPUs idle with grown caches, {before} before");
    Ok(())
}

fn oom_is_an_error() -> TestResult {
    let ga = global_allocator();
    let before = ga.usages();
    let huge = Layout::from_size_align(1 << 40, 8).unwrap();
    let r = ga.alloc(huge);
    ensure!(r.is_err(), "1 TiB byte allocation succeeded");
    // SAFETY: non-zero size; a null result is the expected outcome.
    let p = unsafe { raw_alloc(huge) };
    ensure!(p.is_null(), "GlobalAlloc::alloc of 1 TiB returned {p:p}");
    let pages = ga.alloc_pages(1 << 28, PAGE, UsageKind::Global);
    ensure!(pages.is_err(), "1 TiB page allocation succeeded: {pages:?}");
    // The heap still works afterwards.
    let b = Box::new([7u8; 1000]);
    ensure!(b.iter().all(|&x| x == 7), "allocation after OOM");
    drop(b);
    let after = ga.usages();
    ensure!(
        after.get(UsageKind::Global) == before.get(UsageKind::Global),
        "failed page allocation changed usage"
    );
    Ok(())
}

/// Every page kind back to exactly its baseline; the Rust heap back to its
/// baseline within `HEAP_SLACK` once exited tasks are reclaimed.
fn usage_back_to_baseline() -> TestResult {
    /// Room for allocations that legitimately outlive the tests (lazily
    /// grown scheduler queues, the GC's bookkeeping). A leaked task stack
    /// (256 KiB) or any test's blocks are far larger.
    const HEAP_SLACK: usize = 16 * 1024;
    let base_heap = BASELINE_HEAP.load(Ordering::SeqCst);
    let heap = settle_heap(base_heap + HEAP_SLACK);
    let usages = global_allocator().usages();
    let base_pages = *BASELINE_PAGES.lock();
    println!(
        "# usage now: {usages:?}; used_bytes {:#x}, used_pages {}",
        global_allocator().used_bytes(),
        global_allocator().used_pages()
    );
    for kind in PAGE_KINDS {
        let (now, then) = (usages.get(kind), base_pages[kind as usize]);
        ensure!(now == then, "{kind:?} usage {now:#x}, baseline {then:#x}");
    }
    ensure!(
        heap <= base_heap + HEAP_SLACK,
        "RustHeap usage {heap:#x}, baseline {base_heap:#x} (+{HEAP_SLACK:#x} allowed)"
    );
    Ok(())
}

/// Fills `n` pages at `addr` with a pattern from `seed`.
///
/// # Safety
///
/// The pages are owned by the caller and mapped.
unsafe fn fill_pages(addr: usize, n: usize, seed: u64) {
    let words = n * PAGE / 8;
    for i in 0..words {
        // SAFETY: within the caller's pages; page addresses are 8-aligned.
        unsafe { *(addr as *mut u64).add(i) = util::pattern(seed, i) };
    }
}

/// Checks the pattern written by [`fill_pages`].
///
/// # Safety
///
/// As for [`fill_pages`].
unsafe fn check_pages(addr: usize, n: usize, seed: u64) -> TestResult {
    let words = n * PAGE / 8;
    for i in 0..words {
        // SAFETY: within the caller's pages.
        let got = unsafe { *(addr as *const u64).add(i) };
        ensure!(got == util::pattern(seed, i), "page {addr:#x} word {i}: {got:#x} corrupted");
    }
    Ok(())
}
