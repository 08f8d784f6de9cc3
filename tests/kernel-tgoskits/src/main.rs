//! In-kernel allocator test suite of the tgoskits ArceOS line (ax-std 0.7,
//! ax-alloc 0.9), run as an app on QEMU: the tests it shares with the 0.3
//! line's tests/kernel (../kernel-common/), plus the line's own API (DMA32
//! pages, page reclaim, the usage figures: src/pages.rs).
//!
//! Every test returns `Ok(())` or a message; the app prints one line per
//! test (`test NAME ... ok` / `test NAME ... FAILED` plus the reason), then
//! `N passed, M failed` alone on a line, then shuts the machine down.
//! scripts/kernel-tgoskits-test.sh builds, boots and checks it.
//!
//! Threads are pinned to CPUs with the task affinity API, and every pinned
//! thread checks that it really runs on its CPU, so "on every CPU" and
//! "cross-CPU free" mean what they say. Block contents are filled with a
//! pattern derived from a seed and checked before every free, so overlapping
//! or corrupted blocks fail the test instead of passing silently.
//!
//! Built with the cargo feature `bench`, the same kernel runs the in-kernel
//! benchmark instead (../kernel-common/bench.rs;
//! scripts/kernel-tgoskits-bench.sh boots it, also built without the
//! ax-alloc patch by seed/).
//!
//! Some tests depend on the backend ([`Backend`]): the published TLSF
//! cannot place pages at an address or below 4 GiB, and ours refuses
//! those requests with `InvalidParam`, which the tests check.

#![no_std]
#![no_main]
// The bench build runs none of the tests.
#![cfg_attr(feature = "bench", allow(dead_code, unused_imports))]

#[macro_use]
extern crate ax_std as std;
extern crate alloc;

// ../kernel-common/ holds what this suite shares with the other ArceOS
// line's; line.rs is what it takes from this line.
#[macro_use]
#[path = "../../kernel-common/mod.rs"]
mod common;
mod line;
/// This line's own page tests.
mod pages;

use alloc::vec::Vec;

use ax_alloc::global_allocator;

use common::heap_tests::*;
use common::page_tests::*;
use common::util::{TestResult, cpu_count, join_all, settle_heap, spawn_on};
use pages::*;

/// `(name, test)`, run in this order. `usage_back_to_baseline` must stay last.
const TESTS: &[(&str, fn() -> TestResult)] = &[
    ("alloc_on_every_cpu", alloc_on_every_cpu),
    ("cross_cpu_free", cross_cpu_free),
    ("cross_cpu_free_concurrent", cross_cpu_free_concurrent),
    ("page_alloc", page_alloc),
    ("usage_figures", usage_figures),
    ("page_alloc_bad_params", page_alloc_bad_params),
    ("page_alloc_every_cpu", page_alloc_every_cpu),
    ("alloc_pages_at", alloc_pages_at),
    ("dma32_pages", dma32_pages),
    ("global_page_raii", global_page_raii),
    ("realloc_keeps_contents", realloc_keeps_contents),
    ("large_alignment", large_alignment),
    ("vec_3m", vec_3m),
    ("btreemap_50k", btreemap_50k),
    ("string_churn", string_churn),
    ("smp_stress", smp_stress),
    ("all_memory_usable", all_memory_usable),
    ("page_reclaim", page_reclaim),
    ("oom_is_an_error", oom_is_an_error),
    ("usage_back_to_baseline", usage_back_to_baseline),
];

/// The backend this kernel runs on, by its name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    /// This project's allocator (ax-alloc's `buddy-slab` here).
    BuddySlab,
    /// The stock TLSF backend (`tlsf`).
    Tlsf,
    /// Anything else (the published buddy-slab backend, `seed/`).
    Other,
}

fn backend() -> Backend {
    match global_allocator().name() {
        "buddy-slab" => Backend::BuddySlab,
        "TLSF" => Backend::Tlsf,
        _ => Backend::Other,
    }
}

#[unsafe(no_mangle)]
fn main() {
    #[cfg(feature = "bench")]
    std::process::exit(common::bench::run());
    #[cfg(not(feature = "bench"))]
    run_tests();
}

fn run_tests() {
    let ncpu = cpu_count();
    // Warm up: one pinned thread per CPU, so the task bookkeeping that stays
    // allocated between tests (per-CPU run queues, idle and reaper tasks)
    // exists before the baseline is taken. Also, once they ran, every
    // secondary CPU has printed its boot lines, which would otherwise cut
    // into the banner.
    let warm: Vec<_> = (0..ncpu).map(|cpu| spawn_on(cpu, || Ok(()))).collect();
    let warm = join_all(warm);
    settle_heap(usize::MAX);
    println!("alloc-kernel-test: {} CPUs, {} allocator", ncpu, global_allocator().name());
    if let Err(e) = warm {
        println!("warm-up failed: {e}");
    }
    let usages = record_baseline();
    println!("baseline: {usages:?}");

    let (mut passed, mut failed) = (0, 0);
    for (name, test) in TESTS {
        match test() {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(msg) => {
                println!("test {name} ... FAILED");
                println!("    {msg}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
