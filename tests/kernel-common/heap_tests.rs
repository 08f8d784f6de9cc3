//! The heap tests both ArceOS lines' suites run (tests/kernel,
//! tests/kernel-tgoskits): blocks on every CPU, cross-CPU frees, realloc,
//! alignment, collections, SMP stress, OOM, and the usage baseline the
//! suite must return to. Each line's main.rs lists them in its `TESTS`.

use alloc::alloc::{alloc as raw_alloc, dealloc as raw_dealloc, realloc as raw_realloc};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::util::{Block, PAGE, Rng, TestResult, cpu_count, join_all, settle_heap, spawn_on, this_cpu};
use crate::line::{DIAG, HEAP_KINDS, UsageKind, Usages, global_allocator, heap_bytes};

/// The page kinds `usage_back_to_baseline` wants back exactly.
const PAGE_KINDS: [UsageKind; 5] =
    [UsageKind::VirtMem, UsageKind::PageCache, UsageKind::PageTable, UsageKind::Dma, UsageKind::Global];
/// Heap bytes (`line::heap_bytes`) live when the suite started.
static BASELINE_HEAP: AtomicUsize = AtomicUsize::new(0);
/// Usage of each of `PAGE_KINDS`, in that order, when the suite started.
static BASELINE_PAGES: Mutex<[usize; PAGE_KINDS.len()]> = Mutex::new([0; PAGE_KINDS.len()]);

/// Takes the baseline of `usage_back_to_baseline` (once the heap settled
/// after the warm-up) and returns the usages it was taken from.
pub(crate) fn record_baseline() -> Usages {
    let usages = global_allocator().usages();
    BASELINE_HEAP.store(heap_bytes(&usages), Ordering::SeqCst);
    *BASELINE_PAGES.lock() = PAGE_KINDS.map(|kind| usages.get(kind));
    usages
}

/// Small and medium sizes, the slab range and just past it.
pub(crate) const SIZES: [usize; 14] = [1, 8, 16, 24, 48, 64, 100, 128, 256, 512, 1000, 2048, 3000, 4096];

pub(crate) fn alloc_on_every_cpu() -> TestResult {
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
pub(crate) fn cross_cpu_free() -> TestResult {
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
pub(crate) fn cross_cpu_free_concurrent() -> TestResult {
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

pub(crate) fn realloc_keeps_contents() -> TestResult {
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

pub(crate) fn large_alignment() -> TestResult {
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
pub(crate) fn vec_3m() -> TestResult {
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
pub(crate) fn btreemap_50k() -> TestResult {
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

pub(crate) fn string_churn() -> TestResult {
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

/// All CPUs at once: random sizes and alignments, a window of live blocks,
/// and a steady flow of blocks freed by another CPU than their allocator's.
/// Mailbox of blocks handed from one CPU to another during the stress.
type Mailbox = Arc<Vec<Mutex<Vec<Block>>>>;

pub(crate) fn smp_stress() -> TestResult {
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

pub(crate) fn oom_is_an_error() -> TestResult {
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

/// Every page kind back to exactly its baseline; the heap (`HEAP_KINDS`)
/// back to its baseline within `HEAP_SLACK` once exited tasks are reclaimed.
pub(crate) fn usage_back_to_baseline() -> TestResult {
    /// Room for allocations that legitimately outlive the tests (lazily
    /// grown scheduler queues, the GC's bookkeeping). A leaked task stack
    /// (256 KiB) or any test's blocks are far larger.
    const HEAP_SLACK: usize = 16 * 1024;
    let base_heap = BASELINE_HEAP.load(Ordering::SeqCst);
    let heap = settle_heap(base_heap + HEAP_SLACK);
    let usages = global_allocator().usages();
    let base_pages = *BASELINE_PAGES.lock();
    println!(
        "{DIAG}usage now: {usages:?}; used_bytes {:#x}, used_pages {}",
        global_allocator().used_bytes(),
        global_allocator().used_pages()
    );
    for (kind, then) in PAGE_KINDS.into_iter().zip(base_pages) {
        let now = usages.get(kind);
        ensure!(now == then, "{kind:?} usage {now:#x}, baseline {then:#x}");
    }
    ensure!(
        heap <= base_heap + HEAP_SLACK,
        "{HEAP_KINDS} usage {heap:#x}, baseline {base_heap:#x} (+{HEAP_SLACK:#x} allowed)"
    );
    Ok(())
}
