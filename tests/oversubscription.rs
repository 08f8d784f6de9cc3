//! More threads than CPU slots (issue 13): threads beyond
//! `cpu.host-max-cpus` are spread over `cpu.host-shared-slots` locked
//! slots, whose locks must not make them burn the machine waiting. 64
//! threads on this machine's cores run the same mixed workload on glibc's
//! malloc and on this heap; this heap's CPU time (all threads, `getrusage`)
//! must stay within 1.5x glibc's, and every shared slot must have served.
//!
//! One test in its own binary: `RUSAGE_SELF` counts every thread of the
//! process.

mod common;
use buddy_slab_allocator::{GlobalAllocator, config};
use common::{PAGE, arena};
use std::alloc::{GlobalAlloc, Layout, System};

const THREADS: usize = 64;
const PAIRS: usize = if cfg!(miri) { 10 } else { 40_000 };

fn cpu_seconds() -> f64 {
    // SAFETY: `usage` is a valid, writable rusage.
    let usage = unsafe {
        let mut usage = core::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// Each thread keeps a small live set of mixed sizes and replaces blocks
/// in it, checking a tag in each.
fn run(alloc: &(dyn GlobalAlloc + Sync)) -> f64 {
    // All threads alive at once: the first 16 take the CPU slots, the other
    // 48 share the shared slots for the whole run.
    let start_line = std::sync::Barrier::new(THREADS);
    let start = cpu_seconds();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let start_line = &start_line;
            s.spawn(move || {
                // A first allocation takes this thread's slot (if any is
                // left) before the others start.
                // SAFETY: a non-zero layout; freed at once.
                unsafe {
                    let l = Layout::from_size_align(8, 8).unwrap();
                    alloc.dealloc(alloc.alloc(l), l);
                }
                start_line.wait();
                let mut live: Vec<(usize, Layout)> = Vec::with_capacity(64);
                let mut x = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for i in 0..PAIRS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = 8 + (x % 2040) as usize;
                    let layout = Layout::from_size_align(size, 8).unwrap();
                    // SAFETY: a non-zero layout.
                    let p = unsafe { alloc.alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: p is a fresh block of at least 8 bytes.
                    unsafe { p.cast::<u64>().write(x) };
                    if live.len() < 64 {
                        live.push((p.addr(), layout));
                    } else {
                        let k = i % live.len();
                        let (old, old_layout) =
                            core::mem::replace(&mut live[k], (p.addr(), layout));
                        // SAFETY: allocated above with this layout; the
                        // tag check reads its first word.
                        unsafe { alloc.dealloc(old as *mut u8, old_layout) };
                    }
                }
                for (p, layout) in live {
                    // SAFETY: allocated above with this layout.
                    unsafe { alloc.dealloc(p as *mut u8, layout) };
                }
                start_line.wait();
            });
        }
    });
    cpu_seconds() - start
}

#[test]
#[cfg_attr(miri, ignore = "CPU time of 64 threads")]
#[cfg_attr(
    debug_assertions,
    ignore = "compares optimised code with glibc: `make unit` runs it with --release"
)]
fn sixty_four_threads_stay_within_one_and_a_half_times_glibcs_cpu_time() {
    let heap = Box::new(GlobalAllocator::<PAGE>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(arena(256 << 20, PAGE, 0)).unwrap() };
    // Warm both up once, then measure each twice, interleaved.
    run(&System);
    run(&*heap);
    let (mut glibc, mut ours) = (0.0, 0.0);
    for _ in 0..2 {
        glibc += run(&System);
        ours += run(&*heap);
    }
    println!("{THREADS} threads: glibc {glibc:.2} CPU-s, this heap {ours:.2} CPU-s");
    assert!(
        ours <= 1.5 * glibc,
        "this heap took {ours:.2} CPU-seconds where glibc took {glibc:.2}"
    );
    assert_eq!(heap.stats().invalid_frees, 0);
    let shared = config::cpu::HOST_SHARED_SLOTS;
    let first_shared = heap.cpu_slots() - shared;
    let served = (first_shared..heap.cpu_slots())
        .filter(|&id| heap.cpu_stats(id).unwrap().slab.slabs > 0)
        .count();
    assert_eq!(
        served, shared,
        "threads without a slot spread over every shared slot"
    );
}
