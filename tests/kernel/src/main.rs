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
//! benchmark instead (../kernel-common/bench.rs; scripts/kernel-bench.sh
//! boots it). The tests shared with tests/kernel-tgoskits are in
//! ../kernel-common/; this file has the harness and this line's own tests.

#![no_std]
#![no_main]
// The bench build runs none of the tests.
#![cfg_attr(feature = "bench", allow(dead_code, unused_imports))]

#[macro_use]
extern crate axstd as std;
extern crate alloc;

// ../kernel-common/ holds what this suite shares with the other ArceOS
// line's; line.rs is what it takes from this line.
#[macro_use]
#[path = "../../kernel-common/mod.rs"]
mod common;
mod line;

use alloc::format;
use alloc::vec::Vec;

use axalloc::{UsageKind, global_allocator};

use common::heap_tests::*;
use common::page_tests::*;
use common::util::{PAGE, TestResult, cpu_count, join_all, settle_heap, spawn_on, this_cpu};

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

#[unsafe(no_mangle)]
fn main() {
    #[cfg(feature = "bench")]
    std::process::exit(common::bench::run());
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
    let usages = record_baseline();
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

/// All memory as 2 MiB runs, within the shared bounds. With several GiB
/// this reaches memory past the first gigabyte, which the boot page tables
/// do not map (the buddy-slab backend adds it once paging is up).
fn all_memory_usable() -> TestResult {
    let ga = global_allocator();
    let managed = ga.used_bytes() + ga.available_bytes();
    let total = all_memory_as_runs()?;
    // With 512 MiB or more this heap hands out 97 % of what it manages as
    // 2 MiB runs, every other CPU's caches included (they drain on request).
    if ga.name() == "buddy-slab" && guest_mem() >= 512 << 20 {
        ensure!(
            total * 100 >= managed * 97,
            "{} MiB as 2 MiB runs of {} MiB managed: below 97 %",
            total >> 20,
            managed >> 20
        );
    }
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
    let mem: usize = guest_mem();
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
    // A CPU that answers after the request's bounded wait (its vCPU thread
    // descheduled on a loaded host) has drained by the next count; without
    // the interrupts an idle CPU never drains, and every count falls short.
    let (mut after, mut counts) = (0, 0);
    while counts < 3 && after + 256 < before {
        after = count_free_pages(max)?;
        counts += 1;
    }
    println!("# free pages: {before} before the other CPUs cycled pages, {after} after ({counts} counts)");
    ensure!(after + 256 >= before, "{after} pages once the other CPUs idle with grown caches, {before} before");
    Ok(())
}
