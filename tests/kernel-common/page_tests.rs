//! The page tests both ArceOS lines' suites run (tests/kernel,
//! tests/kernel-tgoskits): the page API, its bad parameters, pages on every
//! CPU, `GlobalPage`, all memory as 2 MiB runs; and the patterned pages the line-only page tests use.

use alloc::format;
use alloc::vec::Vec;

use super::util::{PAGE, TestResult, cpu_count, join_all, pattern, spawn_on};
use crate::line::{DIAG, GlobalPage, UsageKind, global_allocator};

pub(crate) fn page_alloc() -> TestResult {
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

pub(crate) fn page_alloc_bad_params() -> TestResult {
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
pub(crate) fn page_alloc_every_cpu() -> TestResult {
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

pub(crate) fn global_page_raii() -> TestResult {
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

/// Fills `n` pages at `addr` with a pattern from `seed`.
///
/// # Safety
///
/// The pages are owned by the caller and mapped.
pub(crate) unsafe fn fill_pages(addr: usize, n: usize, seed: u64) {
    let words = n * PAGE / 8;
    for i in 0..words {
        // SAFETY: within the caller's pages; page addresses are 8-aligned.
        unsafe { *(addr as *mut u64).add(i) = pattern(seed, i) };
    }
}

/// Checks the pattern written by [`fill_pages`].
///
/// # Safety
///
/// As for [`fill_pages`].
pub(crate) unsafe fn check_pages(addr: usize, n: usize, seed: u64) -> TestResult {
    let words = n * PAGE / 8;
    for i in 0..words {
        // SAFETY: within the caller's pages.
        let got = unsafe { *(addr as *const u64).add(i) };
        ensure!(got == pattern(seed, i), "page {addr:#x} word {i}: {got:#x} corrupted");
    }
    Ok(())
}

/// Guest RAM in bytes, from the test script (QEMU's `-m`).
pub(crate) fn guest_mem() -> usize {
    option_env!("KERNEL_TEST_MEM_BYTES").and_then(|m| m.parse().ok()).unwrap_or(128 << 20)
}

/// Nearly all of the guest's RAM can be had as page runs: 2 MiB runs are
/// taken until none is left, the first and last word of each written and
/// checked, then all freed. Returns the bytes taken, for the line's own
/// bounds on top of these.
pub(crate) fn all_memory_as_runs() -> TestResult<usize> {
    const CHUNK_PAGES: usize = 512;
    const CHUNK: usize = CHUNK_PAGES * PAGE;
    let mem = guest_mem();
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
            first.write_volatile(pattern(addr as u64, 0));
            last.write_volatile(pattern(addr as u64, 1));
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
        ensure!(a == pattern(addr as u64, 0) && b == pattern(addr as u64, 1), "run {addr:#x} corrupted");
    }
    for addr in chunks {
        ga.dealloc_pages(addr, CHUNK_PAGES, UsageKind::Global);
    }
    println!("{DIAG}{} MiB of {} MiB RAM as 2 MiB runs, lowest {lo:#x}, highest {hi:#x}", total >> 20, mem >> 20);
    // Metadata (1/256), page tables of the linear map (1/512), the kernel
    // image and 2 MiB alignment losses stay below mem/16 + 64 MiB. Another
    // CPU may keep its caches, up to 6 MiB with the default knobs (5 928
    // KiB, tests/percpu_memory.rs): on the 0.3 line one that cannot answer
    // buddy-slab's `ipi-reclaim` in time; the tgoskits binding reclaims
    // none from idle CPUs (it has no `with_idle_cpu`).
    let cached = (cpu_count() - 1) * (6 << 20);
    ensure!(total + mem / 16 + (64 << 20) + cached >= mem, "only {} MiB of {} MiB usable", total >> 20, mem >> 20);
    let after = ga.usages().get(UsageKind::Global);
    ensure!(after == before, "Global usage {after:#x} after freeing, was {before:#x}");
    Ok(total)
}
