//! Fragmentation over time (issue 6, part 4): hours of churn compressed
//! into seconds or minutes.
//!
//! Four threads allocate and free mixed sizes (objects of 1..2048 B, page
//! runs of up to 64 KiB and, rarely, up to 2 MiB) with random lifetimes
//! around a live-set target that swings between 10% and 60% of the heap;
//! a quarter of the frees go to the next thread (remote). The main thread
//! samples the largest free block, free blocks per order and the bytes
//! held in per-CPU caches (page caches, and slab memory not holding live
//! objects) and writes them as CSV. At the end everything is freed,
//! `drain_all` runs, and the largest free block must be back at its
//! initial size.
//!
//! - `churn_short` (always on): 1.5 s, CSV in target/churn-short.csv.
//! - `churn_long` (`#[ignore]`, `make churn`): CHURN_SECS seconds (default
//!   180), CSV at CHURN_CSV (default plot/results/churn.csv); `make churn` plots
//!   it to plot/results/churn.svg.

mod common;
use buddy_slab_allocator::{GlobalAllocator, SlabAllocator};
use common::{PAGE, Rng, arena, check, fill};
use core::alloc::Layout;
use core::ptr::NonNull;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const THREADS: usize = 4;
const HEAP_BYTES: usize = 256 << 20;
/// Bytes pattern-checked at each end of a block (at most half of it each,
/// so the two never overlap).
const CHECKED: usize = 32;

struct Block(usize, usize, u64);
// SAFETY: an address and its size; ownership moves with the message.
unsafe impl Send for Block {}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn mark(b: &Block) {
    let n = (b.1 / 2).min(CHECKED);
    fill(b.0 as *mut u8, n, b.2);
    fill((b.0 + b.1 - n) as *mut u8, n, !b.2);
}

fn free(heap: &GlobalAllocator<PAGE>, b: Block) {
    let n = (b.1 / 2).min(CHECKED);
    check(b.0 as *const u8, n, b.2);
    check((b.0 + b.1 - n) as *const u8, n, !b.2);
    // SAFETY: a live block of this size from this heap, given up here.
    unsafe { heap.dealloc(NonNull::new(b.0 as *mut u8).unwrap(), layout(b.1)) };
}

/// Bytes held in per-CPU caches: page caches plus slab memory not holding
/// a live object (free slots, empty slabs, slab headers and tails).
fn cached_bytes(heap: &GlobalAllocator<PAGE>) -> (usize, usize) {
    let table = SlabAllocator::<PAGE>::default_table();
    let (mut pages, mut slab_free) = (0, 0);
    for cpu in 0..heap.cpu_slots() {
        pages += heap.cpu_stats(cpu).unwrap().cached_page_bytes;
        for class in table.classes() {
            let c = heap.class_stats(cpu, class).unwrap();
            let held = c.slabs * (PAGE << table.slab_order(class));
            slab_free += held.saturating_sub(c.live_objects * c.object_bytes);
        }
    }
    (pages, slab_free)
}

/// One sample: the largest free block, and its share of free memory if the
/// heap is 15..25 % allocated (issue 13's "at 20 % load").
struct Sample {
    largest_pages: usize,
    at_20_percent: Option<f64>,
}

fn sample(heap: &GlobalAllocator<PAGE>, t0: Instant, csv: &mut String) -> Sample {
    let largest = heap.largest_free_block_pages();
    let per_order = heap.free_blocks_per_order();
    let free_pages: usize = per_order.iter().enumerate().map(|(o, n)| n << o).sum();
    let st = heap.stats();
    let load = st.allocated_bytes as f64 / heap.managed_bytes() as f64;
    let at_20_percent = (0.15..=0.25)
        .contains(&load)
        .then(|| largest as f64 / free_pages.max(1) as f64);
    let (page_cache, slab_free) = cached_bytes(heap);
    write!(
        csv,
        "{:.3},{largest},{free_pages},{},{},{page_cache},{slab_free},{}",
        t0.elapsed().as_secs_f64(),
        st.allocated_bytes,
        st.slab_bytes,
        st.live_objects
    )
    .unwrap();
    for n in per_order {
        write!(csv, ",{n}").unwrap();
    }
    csv.push('\n');
    Sample {
        largest_pages: largest,
        at_20_percent,
    }
}

/// Runs the churn for `secs`, sampling every `interval`; returns the CSV.
fn churn(secs: f64, interval: Duration) -> String {
    let mut heap = Box::new(GlobalAllocator::<PAGE>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(arena(HEAP_BYTES, PAGE, 0)).unwrap() };
    let managed = heap.managed_bytes();
    let baseline = heap.allocated_bytes();
    let initial_largest = heap.largest_free_block_pages();
    let t0 = Instant::now();
    let mut csv = String::from(
        "t_s,largest_free_pages,free_pages,allocated_bytes,slab_bytes,\
         page_cache_bytes,slab_free_bytes,live_objects",
    );
    for o in 0..heap.free_blocks_per_order().len() {
        write!(csv, ",free_blocks_o{o}").unwrap();
    }
    csv.push('\n');
    sample(&heap, t0, &mut csv);
    let stop = AtomicBool::new(false);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
    let mut min_largest = initial_largest;
    let mut at_20_percent = Vec::new();
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let tx = txs[(t + 1) % THREADS].clone();
            let (heap, stop) = (&*heap, &stop);
            s.spawn(move || {
                let mut rng = Rng(0xc4a5_0000 + t as u64);
                let mut live: Vec<Block> = Vec::new();
                let mut live_bytes = 0usize;
                let mut tag = (t as u64) << 48;
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    for b in rx.try_iter() {
                        free(heap, b);
                    }
                    // The live-set target swings over a 3 s period between
                    // 10% and 60% of the heap (split over the threads).
                    let phase = start.elapsed().as_secs_f64() / 3.0 * std::f64::consts::TAU;
                    let target = (managed as f64 * (0.35 + 0.25 * phase.sin())) as usize / THREADS;
                    let grow = live_bytes < target && rng.below(8) != 0 || live.is_empty();
                    if grow {
                        let size = match rng.below(100) {
                            0 => 64 * 1024 + rng.below(2 << 20),
                            1..=14 => 2049 + rng.below(62 * 1024),
                            _ => 1 + rng.below(2048),
                        };
                        let Ok(p) = heap.alloc(layout(size)) else {
                            continue; // full for now: frees will follow
                        };
                        tag += 1;
                        let b = Block(p.as_ptr() as usize, size, tag);
                        mark(&b);
                        live_bytes += size;
                        live.push(b);
                    } else {
                        let b = live.swap_remove(rng.below(live.len()));
                        live_bytes -= b.1;
                        if rng.below(4) == 0 {
                            tx.send(b).unwrap();
                        } else {
                            free(heap, b);
                        }
                    }
                }
                for b in live {
                    free(heap, b);
                }
                drop(tx);
                // Blocks the previous thread still sends until it stops.
                for b in rx {
                    free(heap, b);
                }
            });
        }
        drop(txs);
        while t0.elapsed().as_secs_f64() < secs {
            std::thread::sleep(interval);
            let s = sample(&heap, t0, &mut csv);
            min_largest = min_largest.min(s.largest_pages);
            at_20_percent.extend(s.at_20_percent);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let st = heap.stats();
    assert_eq!(st.invalid_frees, 0, "{st:?}");
    assert!(st.remote_frees > 0, "{st:?}");
    sample(&heap, t0, &mut csv);
    heap.drain_all();
    let end_largest = sample(&heap, t0, &mut csv).largest_pages;
    heap.check_invariants();
    assert_eq!(heap.stats().live_objects, 0);
    assert_eq!(heap.allocated_bytes(), baseline, "{:?}", heap.stats());
    assert_eq!(
        end_largest, initial_largest,
        "largest free block did not recover"
    );
    println!(
        "churn: {secs} s, {} samples; largest free block {} MiB at start, {} KiB at worst, {} MiB after drain_all",
        csv.lines().count() - 1,
        (initial_largest * PAGE) >> 20,
        (min_largest * PAGE) >> 10,
        (end_largest * PAGE) >> 20
    );
    at_20_percent.sort_by(f64::total_cmp);
    if let (Some(worst), Some(median)) = (
        at_20_percent.first(),
        at_20_percent.get(at_20_percent.len() / 2),
    ) {
        println!(
            "churn: {} samples at 15-25 % load; largest free block / free memory: worst {worst:.3}, median {median:.3}",
            at_20_percent.len()
        );
    }
    csv
}

#[test]
fn churn_short() {
    let csv = churn(1.5, Duration::from_millis(100));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/churn-short.csv");
    std::fs::write(path, csv).unwrap();
}

#[test]
#[ignore = "minutes of churn: run by `make churn`"]
fn churn_long() {
    let secs = std::env::var("CHURN_SECS").map_or(180.0, |s| s.parse().unwrap());
    let csv = churn(secs, Duration::from_millis(500));
    let path = std::env::var("CHURN_CSV")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/plot/results/churn.csv").into());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&path, csv).unwrap();
    println!("churn: series written to {path}");
}
