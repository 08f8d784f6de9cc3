//! The page tests only this line runs: usage figures, `alloc_pages_at`
//! with the backend's refusals, DMA32 pages, all memory as 2 MiB runs, and
//! the page reclaim callback. The shared ones are in
//! ../../kernel-common/page_tests.rs.

use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use ax_alloc::{AllocError, UsageKind, global_allocator, register_page_reclaim_fn};

use crate::common::page_tests::{all_memory_as_runs, check_pages, fill_pages, guest_mem};
use crate::common::util::{PAGE, TestResult};
use crate::{Backend, backend};

/// `used_bytes`/`available_bytes` and the page figures are real: a 1 MiB
/// run moves each by its size, pages are bytes / 4096, and used plus
/// available stays what it was (the heap's size).
pub(super) fn usage_figures() -> TestResult {
    /// Other activity (a slab refill for this test's own bookkeeping, a
    /// timer) may move the figures a little meanwhile.
    const SLACK: usize = 256 * 1024;
    const RUN_PAGES: usize = 256;
    let ga = global_allocator();
    let near = |a: usize, b: usize| a.abs_diff(b) <= SLACK;
    let (u0, a0) = (ga.used_bytes(), ga.available_bytes());
    ensure!(u0 > 0 && a0 > 0, "used {u0:#x}, available {a0:#x}");
    ensure!(ga.used_pages() == u0 / PAGE || near(ga.used_pages() * PAGE, u0), "used_pages {}", ga.used_pages());
    ensure!(near(ga.available_pages() * PAGE, a0), "available_pages {} vs {a0:#x} bytes", ga.available_pages());
    let addr = ga.alloc_pages(RUN_PAGES, PAGE, UsageKind::Global).map_err(|e| format!("alloc_pages: {e:?}"))?;
    let (u1, a1) = (ga.used_bytes(), ga.available_bytes());
    ga.dealloc_pages(addr, RUN_PAGES, UsageKind::Global);
    let (u2, a2) = (ga.used_bytes(), ga.available_bytes());
    let run = RUN_PAGES * PAGE;
    ensure!(near(u1, u0 + run), "used {u0:#x} -> {u1:#x} for a {run:#x}-byte run");
    ensure!(near(a1 + run, a0), "available {a0:#x} -> {a1:#x} for a {run:#x}-byte run");
    ensure!(near(u2, u0) && near(a2, a0), "after the free: used {u2:#x} (was {u0:#x}), available {a2:#x} (was {a0:#x})");
    ensure!(near(u1 + a1, u0 + a0), "used + available moved: {:#x} -> {:#x}", u0 + a0, u1 + a1);
    Ok(())
}

pub(super) fn alloc_pages_at() -> TestResult {
    let ga = global_allocator();
    let before = ga.usages().get(UsageKind::Global);
    let addr = ga.alloc_pages(4, 4 * PAGE, UsageKind::Global).map_err(|e| format!("alloc_pages: {e:?}"))?;
    ga.dealloc_pages(addr, 4, UsageKind::Global);
    let again = ga.alloc_pages_at(addr, 4, PAGE, UsageKind::Global);
    if backend() == Backend::Tlsf {
        // TLSF cannot place a block: refused, not a panic (the published
        // TLSF backend panics here).
        ensure!(again == Err(AllocError::InvalidParam), "TLSF alloc_pages_at = {again:?}");
        let after = ga.usages().get(UsageKind::Global);
        ensure!(after == before, "a refused alloc_pages_at changed Global usage");
        return Ok(());
    }
    ensure!(matches!(again, Ok(a) if a == addr), "alloc_pages_at({addr:#x}) of free pages = {again:?}");
    let overlap = ga.alloc_pages_at(addr + PAGE, 1, PAGE, UsageKind::Global);
    if let Ok(p) = overlap {
        ga.dealloc_pages(p, 1, UsageKind::Global);
    }
    let misaligned = ga.alloc_pages_at(addr + PAGE, 1, 2 * PAGE, UsageKind::Global);
    // SAFETY: the 4 pages at addr are this test's.
    unsafe { fill_pages(addr, 4, 0xa7) };
    // SAFETY: as above.
    unsafe { check_pages(addr, 4, 0xa7)? };
    ensure!(ga.usages().get(UsageKind::Global) == before + 4 * PAGE, "alloc_pages_at not accounted");
    ga.dealloc_pages(addr, 4, UsageKind::Global);
    ensure!(overlap.is_err(), "alloc_pages_at inside an allocated range succeeded: {overlap:?}");
    ensure!(misaligned == Err(AllocError::InvalidParam), "alloc_pages_at off its alignment = {misaligned:?}");
    let after = ga.usages().get(UsageKind::Global);
    ensure!(after == before, "Global usage {after:#x}, was {before:#x}");
    Ok(())
}

/// DMA32 pages: the first and last byte of every run below 4 GiB
/// physical (ax-hal's translation), accounted as `Dma`; TLSF refuses them.
pub(super) fn dma32_pages() -> TestResult {
    use std::os::arceos::modules::ax_hal::mem::{VirtAddr, virt_to_phys};
    let ga = global_allocator();
    let before = ga.usages().get(UsageKind::Dma);
    if backend() == Backend::Tlsf {
        let r = ga.alloc_dma32_pages(4, 4 * PAGE, UsageKind::Dma);
        ensure!(r == Err(AllocError::InvalidParam), "TLSF alloc_dma32_pages = {r:?}");
        ensure!(ga.usages().get(UsageKind::Dma) == before, "a refused DMA32 request changed Dma usage");
        return Ok(());
    }
    let mut runs = Vec::new();
    for (i, (n, align)) in [(4, 4 * PAGE), (1, PAGE), (17, PAGE), (64, 64 * PAGE)].into_iter().enumerate() {
        let addr = ga.alloc_dma32_pages(n, align, UsageKind::Dma).map_err(|e| format!("alloc_dma32_pages({n}): {e:?}"))?;
        ensure!(addr % align == 0, "DMA32 run {addr:#x} misaligned to {align:#x}");
        for byte in [addr, addr + n * PAGE - 1] {
            let pa = virt_to_phys(VirtAddr::from(byte)).as_usize();
            ensure!(pa < 1 << 32, "DMA32 run {addr:#x}+{n}: byte {byte:#x} at physical {pa:#x}");
        }
        // SAFETY: freshly allocated pages.
        unsafe { fill_pages(addr, n, 0xd3a0 + i as u64) };
        runs.push((addr, n, 0xd3a0 + i as u64));
    }
    let bytes: usize = runs.iter().map(|r| r.1 * PAGE).sum();
    let during = ga.usages().get(UsageKind::Dma);
    ensure!(during == before + bytes, "Dma usage {during:#x}, expected {:#x}", before + bytes);
    for (addr, n, seed) in runs {
        // SAFETY: still owned by this test.
        unsafe { check_pages(addr, n, seed)? };
        ga.dealloc_pages(addr, n, UsageKind::Dma);
    }
    let zero = ga.alloc_dma32_pages(0, PAGE, UsageKind::Dma);
    ensure!(zero.is_err(), "alloc_dma32_pages(0 pages) = {zero:?}");
    let after = ga.usages().get(UsageKind::Dma);
    ensure!(after == before, "Dma usage {after:#x} after freeing, was {before:#x}");
    Ok(())
}

/// All memory as 2 MiB runs, within the shared bounds.
pub(super) fn all_memory_usable() -> TestResult {
    all_memory_as_runs().map(drop)
}

/// Pages the reclaim callback of `page_reclaim` may free (0: none), as a
/// page cache holds them; atomics, so the callback takes no lock.
pub(super) static RECLAIMABLE: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
/// Calls of the callback, and the page count the last one asked for.
pub(super) static RECLAIM_CALLS: AtomicUsize = AtomicUsize::new(0);
pub(super) static RECLAIM_ASKED: AtomicUsize = AtomicUsize::new(0);

/// The test's reclaim callback: frees up to `n` of the `RECLAIMABLE` pages.
pub(super) fn reclaim_reclaimable(n: usize) -> usize {
    RECLAIM_CALLS.fetch_add(1, Ordering::SeqCst);
    RECLAIM_ASKED.store(n, Ordering::SeqCst);
    let mut freed = 0;
    for slot in &RECLAIMABLE {
        if freed == n {
            break;
        }
        let addr = slot.swap(0, Ordering::SeqCst);
        if addr != 0 {
            global_allocator().dealloc_pages(addr, 1, UsageKind::PageCache);
            freed += 1;
        }
    }
    freed
}

/// After registration, the callback gives back 0 pages.
pub(super) fn reclaim_nothing(_n: usize) -> usize {
    0
}

/// The registered reclaim callback is called once memory runs out, under
/// the published policy (at least 16 pages asked, a call that frees
/// nothing ends the retries), and what it frees serves the allocation.
pub(super) fn page_reclaim() -> TestResult {
    const CHUNK_PAGES: usize = 512;
    let mem: usize = guest_mem();
    let ga = global_allocator();
    let before = ga.usages();
    register_page_reclaim_fn(reclaim_nothing);
    for slot in &RECLAIMABLE {
        let addr = ga.alloc_pages(1, PAGE, UsageKind::PageCache).map_err(|e| format!("alloc_pages: {e:?}"))?;
        slot.store(addr, Ordering::SeqCst);
    }
    // Reserved up front: nothing below allocates from the heap until the
    // memory is given back (no printing either).
    let mut chunks: Vec<usize> = Vec::with_capacity(mem / (CHUNK_PAGES * PAGE) + 16);
    let mut pages: Vec<usize> = Vec::with_capacity(64 * 1024);
    let result = (|| {
        // Exhaust memory: large runs, then single pages until one fails
        // (with a callback that frees nothing).
        while chunks.len() < chunks.capacity() {
            match ga.alloc_pages(CHUNK_PAGES, PAGE, UsageKind::Global) {
                Ok(a) => chunks.push(a),
                Err(_) => break,
            }
        }
        while pages.len() < pages.capacity() {
            match ga.alloc_pages(1, PAGE, UsageKind::Global) {
                Ok(a) => pages.push(a),
                Err(e) => {
                    ensure!(e == AllocError::NoMemory, "page allocation failed with {e:?}");
                    break;
                }
            }
        }
        ensure!(pages.len() < pages.capacity(), "memory did not run out in {} single pages", pages.len());
        let exhausted_at = pages.len();
        // Now the callback that frees the reclaimable pages.
        RECLAIM_CALLS.store(0, Ordering::SeqCst);
        register_page_reclaim_fn(reclaim_reclaimable);
        let first = ga.alloc_pages(1, PAGE, UsageKind::Global);
        let (calls, asked) = (RECLAIM_CALLS.load(Ordering::SeqCst), RECLAIM_ASKED.load(Ordering::SeqCst));
        let first = first.map_err(|e| format!("allocation with 64 reclaimable pages: {e:?} after {calls} calls"))?;
        pages.push(first);
        ensure!(calls == 1 && asked == 16, "{calls} callback calls asking {asked} pages, expected 1 asking 16 (the minimum)");
        // The other 15 pages it freed serve the next 15 without a call.
        for i in 0..15 {
            let a = ga.alloc_pages(1, PAGE, UsageKind::Global).map_err(|e| format!("page {i} after a reclaim of 16: {e:?}"))?;
            pages.push(a);
        }
        let calls = RECLAIM_CALLS.load(Ordering::SeqCst);
        ensure!(calls == 1, "{calls} callback calls for 16 pages, expected 1");
        // Then on until the callback has nothing left: NoMemory.
        let last = loop {
            match ga.alloc_pages(1, PAGE, UsageKind::Global) {
                Ok(a) if pages.len() < pages.capacity() => pages.push(a),
                Ok(a) => {
                    ga.dealloc_pages(a, 1, UsageKind::Global);
                    return Err(format!("no end after {} pages", pages.len()));
                }
                Err(e) => break e,
            }
        };
        let left = RECLAIMABLE.iter().filter(|s| s.load(Ordering::SeqCst) != 0).count();
        let (got, calls) = (pages.len() - exhausted_at, RECLAIM_CALLS.load(Ordering::SeqCst));
        ensure!(last == AllocError::NoMemory, "the last allocation failed with {last:?}");
        ensure!(left == 0, "{left} reclaimable pages were never reclaimed");
        ensure!(got >= 64, "only {got} pages after reclaiming 64");
        // 64 pages, 16 a call, then one call that frees nothing.
        ensure!(calls == 5, "{calls} callback calls, expected 4 that freed 16 pages and 1 that freed none");
        Ok((chunks.len(), exhausted_at, got, calls))
    })();
    register_page_reclaim_fn(reclaim_nothing);
    for slot in &RECLAIMABLE {
        let addr = slot.swap(0, Ordering::SeqCst);
        if addr != 0 {
            ga.dealloc_pages(addr, 1, UsageKind::PageCache);
        }
    }
    for &a in &chunks {
        ga.dealloc_pages(a, CHUNK_PAGES, UsageKind::Global);
    }
    for &a in &pages {
        ga.dealloc_pages(a, 1, UsageKind::Global);
    }
    let (nchunks, npages, got, calls) = result?;
    println!("    exhausted after {nchunks} 2 MiB runs and {npages} pages; {calls} reclaim calls gave {got} more pages");
    let after = ga.usages();
    for kind in [UsageKind::Global, UsageKind::PageCache] {
        ensure!(after.get(kind) == before.get(kind), "{kind:?} usage {:#x}, was {:#x}", after.get(kind), before.get(kind));
    }
    Ok(())
}
