//! The page tests of the suite: the page API, usage figures, pages on
//! every CPU, `alloc_pages_at`, DMA32 pages, `GlobalPage`, all memory as
//! 2 MiB runs, and the page reclaim callback.

use super::*;

pub(super) fn page_alloc() -> TestResult {
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

pub(super) fn page_alloc_bad_params() -> TestResult {
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

/// Every CPU allocates pages; half are freed locally, half on the next CPU.
pub(super) fn page_alloc_every_cpu() -> TestResult {
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

pub(super) fn global_page_raii() -> TestResult {
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

/// Guest RAM in bytes, from scripts/kernel-test.sh (QEMU's `-m`).
pub(super) const MEM_BYTES: Option<&str> = option_env!("KERNEL_TEST_MEM_BYTES");

/// Nearly all of the guest's RAM can be had as page runs: 2 MiB runs are
/// taken until none is left, the first and last word of each written and
/// checked, then all freed.
pub(super) fn all_memory_usable() -> TestResult {
    const CHUNK_PAGES: usize = 512;
    const CHUNK: usize = CHUNK_PAGES * PAGE;
    let mem: usize = MEM_BYTES.and_then(|m| m.parse().ok()).unwrap_or(128 << 20);
    let ga = global_allocator();
    let before = ga.usages().get(UsageKind::Global);
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
    println!("    {} MiB of {} MiB RAM as 2 MiB runs, lowest {lo:#x}, highest {hi:#x}", total >> 20, mem >> 20);
    // Metadata (1/256), page tables of the linear map (1/512), the kernel
    // image and 2 MiB alignment losses stay below mem/16 + 64 MiB. The
    // other CPUs' caches are not reclaimed while those CPUs idle (the
    // tgoskits binding has no `with_idle_cpu`): up to 6 MiB each with the
    // default knobs (5 928 KiB, tests/percpu_memory.rs).
    let cached = (cpu_count() - 1) * (6 << 20);
    ensure!(total + mem / 16 + (64 << 20) + cached >= mem, "only {} MiB of {} MiB usable", total >> 20, mem >> 20);
    let after = ga.usages().get(UsageKind::Global);
    ensure!(after == before, "Global usage {after:#x} after freeing, was {before:#x}");
    Ok(())
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
    let mem: usize = MEM_BYTES.and_then(|m| m.parse().ok()).unwrap_or(128 << 20);
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
