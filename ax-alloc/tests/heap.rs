//! The global allocator over a host arena, for the backend this build
//! selects (`tlsf` or `buddy-slab`; scripts/ax-alloc-test.sh runs both):
//! accounting per usage kind, the used/available figures, the reclaim
//! callback under memory pressure, GlobalPage, and each backend's answers
//! to what only buddy-slab can do (exact placement, DMA32, bad frees).
//!
//! Every test holds `common::heap()` (one global allocator, one reclaim
//! callback), so they run one at a time.
#![cfg(any(feature = "tlsf", feature = "buddy-slab"))]

mod common;

use core::alloc::Layout;
use core::sync::atomic::{AtomicUsize, Ordering};

use ax_alloc::{AllocError, GlobalPage, UsageKind, global_allocator, register_page_reclaim_fn};

const PAGE: usize = 4096;

/// Whether this build's backend is TLSF (`tlsf` wins over `buddy-slab`).
const TLSF: bool = cfg!(feature = "tlsf");

fn usage(kind: UsageKind) -> usize {
    global_allocator().usages().get(kind)
}

#[test]
fn bytes_are_accounted_as_rust_heap() {
    let _heap = common::heap();
    let ga = global_allocator();
    let before = usage(UsageKind::RustHeap);
    let mut blocks = Vec::new();
    let mut total = 0;
    for i in 0..500usize {
        let size = 1 + (i * 37) % 5000;
        let layout = Layout::from_size_align(size, 1 << (i % 7)).unwrap();
        let p = ga.alloc(layout).unwrap();
        assert_eq!(p.as_ptr() as usize % layout.align(), 0);
        // SAFETY: `size` fresh bytes.
        unsafe { p.as_ptr().write_bytes(i as u8, size) };
        blocks.push((p, layout, i as u8));
        total += size;
    }
    assert_eq!(usage(UsageKind::RustHeap), before + total);
    for &(p, layout, fill) in &blocks {
        // SAFETY: live blocks of `layout.size()` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), layout.size()) };
        assert!(bytes.iter().all(|&b| b == fill), "block {p:p} overwritten");
        ga.dealloc(p, layout);
    }
    assert_eq!(usage(UsageKind::RustHeap), before);
    if !TLSF {
        // A double free is refused and moves no counter.
        let layout = Layout::from_size_align(64, 8).unwrap();
        let p = ga.alloc(layout).unwrap();
        ga.dealloc(p, layout);
        ga.dealloc(p, layout);
        assert_eq!(usage(UsageKind::RustHeap), before);
    }
}

#[test]
fn pages_are_accounted_per_kind() {
    let _heap = common::heap();
    let ga = global_allocator();
    let kinds = [
        UsageKind::RustHeap,
        UsageKind::VirtMem,
        UsageKind::PageCache,
        UsageKind::PageTable,
        UsageKind::TaskStack,
        UsageKind::Dma,
        UsageKind::Global,
    ];
    let before: Vec<usize> = kinds.iter().map(|&k| usage(k)).collect();
    let mut runs = Vec::new();
    for (i, &kind) in kinds.iter().enumerate() {
        let (n, align) = (1 + i, PAGE << (i % 4));
        let addr = ga.alloc_pages(n, align, kind).unwrap();
        assert_eq!(addr % align, 0, "{kind:?} run misaligned");
        assert_eq!(usage(kind), before[i] + n * PAGE, "{kind:?}");
        runs.push((addr, n, kind));
    }
    for (a, n, _) in &runs {
        for (b, m, _) in &runs {
            assert!(
                a == b || a + n * PAGE <= *b || b + m * PAGE <= *a,
                "runs overlap"
            );
        }
    }
    for (addr, n, kind) in runs {
        ga.dealloc_pages(addr, n, kind);
    }
    let after: Vec<usize> = kinds.iter().map(|&k| usage(k)).collect();
    assert_eq!(after, before);
    assert_eq!(
        ga.alloc_pages(0, PAGE, UsageKind::Global),
        Err(AllocError::InvalidParam)
    );
    assert!(ga.alloc_pages(1, 3 * PAGE, UsageKind::Global).is_err());
    assert!(
        ga.alloc_pages(usize::MAX / 2, PAGE, UsageKind::Global)
            .is_err()
    );
    assert_eq!(usage(UsageKind::Global), before[6]);
    if !TLSF {
        // A double page free and a wrong count are refused.
        let addr = ga.alloc_pages(16, PAGE, UsageKind::Global).unwrap();
        ga.dealloc_pages(addr, 8, UsageKind::Global);
        assert_eq!(
            usage(UsageKind::Global),
            before[6] + 16 * PAGE,
            "a wrong count was taken"
        );
        ga.dealloc_pages(addr, 16, UsageKind::Global);
        ga.dealloc_pages(addr, 16, UsageKind::Global);
        assert_eq!(
            usage(UsageKind::Global),
            before[6],
            "a double free moved the counter"
        );
    }
}

#[test]
fn figures_are_real() {
    let _heap = common::heap();
    let ga = global_allocator();
    let (u0, a0) = (ga.used_bytes(), ga.available_bytes());
    assert!(
        a0 > common::ARENA_BYTES / 2 && a0 <= common::ARENA_BYTES,
        "available {a0:#x}"
    );
    assert_eq!(ga.used_pages(), u0 / PAGE);
    assert_eq!(ga.available_pages(), a0 / PAGE);
    let run = 256 * PAGE;
    let addr = ga.alloc_pages(256, PAGE, UsageKind::Global).unwrap();
    let (u1, a1) = (ga.used_bytes(), ga.available_bytes());
    assert_eq!(u1, u0 + run);
    assert_eq!(a1, a0 - run);
    ga.dealloc_pages(addr, 256, UsageKind::Global);
    assert_eq!((ga.used_bytes(), ga.available_bytes()), (u0, a0));
}

#[test]
fn global_page_is_raii() {
    let _heap = common::heap();
    let before = usage(UsageKind::Global);
    {
        let zero = GlobalPage::alloc_zero().unwrap();
        assert!(zero.as_slice().iter().all(|&b| b == 0));
        assert_eq!(zero.size(), PAGE);
        let mut four = GlobalPage::alloc_contiguous(4, 4 * PAGE).unwrap();
        assert_eq!(four.start_vaddr().as_usize() % (4 * PAGE), 0);
        four.fill(0x5a);
        assert!(four.as_slice_mut().iter().all(|&b| b == 0x5a));
        let pa = four.start_paddr(|va| ax_memory_addr::PhysAddr::from(va.as_usize() + 1));
        assert_eq!(pa.as_usize(), four.start_vaddr().as_usize() + 1);
        assert_eq!(usage(UsageKind::Global), before + 5 * PAGE);
    }
    assert_eq!(usage(UsageKind::Global), before);
}

#[test]
fn placement_and_dma32_by_backend() {
    let _heap = common::heap();
    let ga = global_allocator();
    let addr = ga.alloc_pages(4, 4 * PAGE, UsageKind::Global).unwrap();
    ga.dealloc_pages(addr, 4, UsageKind::Global);
    let at = ga.alloc_pages_at(addr, 4, PAGE, UsageKind::Global);
    let dma = ga.alloc_dma32_pages(1, PAGE, UsageKind::Dma);
    if TLSF {
        assert_eq!(at, Err(AllocError::InvalidParam));
        assert_eq!(dma, Err(AllocError::InvalidParam));
        return;
    }
    assert_eq!(at, Ok(addr));
    assert!(
        ga.alloc_pages_at(addr + PAGE, 1, PAGE, UsageKind::Global)
            .is_err(),
        "in use"
    );
    assert_eq!(
        ga.alloc_pages_at(addr + PAGE, 1, 2 * PAGE, UsageKind::Global),
        Err(AllocError::InvalidParam),
        "off its alignment"
    );
    ga.dealloc_pages(addr, 4, UsageKind::Global);
    // On the host an address is its own physical address: the arena lies
    // above 4 GiB, so none of it is DMA32 (tests/lowmem.rs maps some below).
    if addr > 1 << 32 {
        assert_eq!(dma, Err(AllocError::NoMemory));
    }
}

/// Pages the callback may free, as a page cache holds them (0: none).
static RECLAIMABLE: [AtomicUsize; 32] = [const { AtomicUsize::new(0) }; 32];
static CALLS: AtomicUsize = AtomicUsize::new(0);
static ASKED: AtomicUsize = AtomicUsize::new(0);

fn reclaim(n: usize) -> usize {
    CALLS.fetch_add(1, Ordering::SeqCst);
    ASKED.store(n, Ordering::SeqCst);
    let mut freed = 0;
    for slot in &RECLAIMABLE {
        if freed == n {
            break;
        }
        let a = slot.swap(0, Ordering::SeqCst);
        if a != 0 {
            global_allocator().dealloc_pages(a, 1, UsageKind::PageCache);
            freed += 1;
        }
    }
    freed
}

fn reclaim_nothing(_n: usize) -> usize {
    CALLS.fetch_add(1, Ordering::SeqCst);
    0
}

#[test]
fn reclaim_serves_allocations_under_pressure() {
    let _heap = common::heap();
    let ga = global_allocator();
    let before = (usage(UsageKind::Global), usage(UsageKind::PageCache));
    register_page_reclaim_fn(reclaim_nothing);
    for slot in &RECLAIMABLE {
        slot.store(
            ga.alloc_pages(1, PAGE, UsageKind::PageCache).unwrap(),
            Ordering::SeqCst,
        );
    }
    let mut runs = Vec::with_capacity(1024);
    let mut pages = Vec::with_capacity(64 * 1024);
    while let Ok(a) = ga.alloc_pages(64, PAGE, UsageKind::Global) {
        runs.push(a);
    }
    while let Ok(a) = ga.alloc_pages(1, PAGE, UsageKind::Global) {
        pages.push(a);
    }
    // Exhausted; a failure whose callback frees nothing retries once.
    CALLS.store(0, Ordering::SeqCst);
    assert_eq!(
        ga.alloc_pages(1, PAGE, UsageKind::Global),
        Err(AllocError::NoMemory)
    );
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    // With pages to reclaim: one call, 16 pages asked (the minimum), the
    // allocation served; the next 15 need no call.
    CALLS.store(0, Ordering::SeqCst);
    register_page_reclaim_fn(reclaim);
    pages.push(
        ga.alloc_pages(1, PAGE, UsageKind::Global)
            .expect("reclaim served the allocation"),
    );
    assert_eq!(
        (CALLS.load(Ordering::SeqCst), ASKED.load(Ordering::SeqCst)),
        (1, 16)
    );
    for _ in 0..15 {
        pages.push(ga.alloc_pages(1, PAGE, UsageKind::Global).unwrap());
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    // A byte allocation goes through the same retry (one page's worth:
    // 16 pages asked).
    let layout = Layout::from_size_align(PAGE, 8).unwrap();
    let bytes = ga
        .alloc(layout)
        .expect("reclaim served the byte allocation");
    assert_eq!(
        (CALLS.load(Ordering::SeqCst), ASKED.load(Ordering::SeqCst)),
        (2, 16)
    );
    // Until nothing is left: 32 pages, 16 a call, then a call that frees none.
    let err = loop {
        match ga.alloc_pages(1, PAGE, UsageKind::Global) {
            Ok(a) => pages.push(a),
            Err(e) => break e,
        }
    };
    assert_eq!(err, AllocError::NoMemory);
    assert!(RECLAIMABLE.iter().all(|s| s.load(Ordering::SeqCst) == 0));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    register_page_reclaim_fn(reclaim_nothing);
    ga.dealloc(bytes, layout);
    for a in runs {
        ga.dealloc_pages(a, 64, UsageKind::Global);
    }
    for a in pages {
        ga.dealloc_pages(a, 1, UsageKind::Global);
    }
    assert_eq!(
        (usage(UsageKind::Global), usage(UsageKind::PageCache)),
        before
    );
}

/// buddy-slab: each test thread is a CPU with its own slot (bound by
/// `init_percpu_slab` as at bring-up); blocks allocated on one CPU and
/// freed on another come back (remote frees), and binding is refused for a
/// CPU bound already or an id that is not the CPU's.
#[cfg(all(feature = "buddy-slab", not(feature = "tlsf")))]
#[test]
fn cpus_have_own_slots_and_free_each_others_blocks() {
    use buddy_slab_allocator::tgoskits::{BindError, bind_current_cpu};
    let _heap = common::heap();
    assert_eq!(bind_current_cpu(0), Err(BindError::AlreadyBound(0)));
    let before = usage(UsageKind::RustHeap);
    let layout = Layout::from_size_align(96, 8).unwrap();
    let cpus = common::HOST_CPUS as usize;
    // Each CPU allocates a batch, patterned with its id.
    let batches: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..cpus)
            .map(|cpu| {
                s.spawn(move || {
                    common::become_cpu(cpu as u32);
                    assert_eq!(bind_current_cpu(cpu), Err(BindError::AlreadyBound(cpu)));
                    let other = (cpu + 1) % cpus;
                    assert_eq!(
                        bind_current_cpu(other),
                        Err(BindError::WrongCpu {
                            given: other,
                            area: cpu
                        })
                    );
                    (0..2000)
                        .map(|_| {
                            let p = global_allocator().alloc(layout).unwrap();
                            // SAFETY: 96 fresh bytes.
                            unsafe { p.as_ptr().write_bytes(cpu as u8, 96) };
                            p.as_ptr() as usize
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(usage(UsageKind::RustHeap), before + (cpus - 1) * 2000 * 96);
    // ... and the next CPU frees them (CPU 0, the test thread, frees the last's).
    std::thread::scope(|s| {
        for (i, batch) in batches.iter().enumerate() {
            let owner = i + 1;
            let freer = (owner + 1) % cpus;
            let free = move || {
                for &a in batch {
                    let p = core::ptr::NonNull::new(a as *mut u8).unwrap();
                    // SAFETY: a live 96-byte block of CPU `owner`.
                    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 96) };
                    assert!(
                        bytes.iter().all(|&b| b == owner as u8),
                        "block {a:#x} overwritten"
                    );
                    global_allocator().dealloc(p, layout);
                }
            };
            if freer == 0 {
                free();
            } else {
                s.spawn(move || {
                    common::become_cpu(freer as u32);
                    free();
                });
            }
        }
    });
    assert_eq!(usage(UsageKind::RustHeap), before);
    // An id that is not the CPU's own is refused (this thread is CPU 0 of
    // the areas; a fresh thread without an area has none).
    std::thread::spawn(|| assert_eq!(bind_current_cpu(1), Err(BindError::NoCpuArea)))
        .join()
        .unwrap();
}

/// tracking: allocations made through `GlobalAlloc` while tracking is on
/// get a record (layout, generation) until they are freed.
#[cfg(feature = "tracking")]
#[test]
fn tracking_records_live_allocations() {
    use ax_alloc::tracking;
    use core::alloc::GlobalAlloc;
    let _heap = common::heap();
    let ga = global_allocator();
    let g0 = tracking::current_generation();
    tracking::enable_tracking();
    let layout = Layout::from_size_align(333, 16).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { GlobalAlloc::alloc(ga, layout) };
    assert!(!p.is_null());
    let mut seen = Vec::new();
    tracking::allocations_in(g0..u64::MAX, |info| {
        seen.push((info.layout, info.generation))
    });
    assert_eq!(seen, [(layout, g0)]);
    tracking::disable_tracking();
    // The record stays while the block lives, tracking disabled or not ...
    let mut n = 0;
    tracking::allocations_in(g0..u64::MAX, |_| n += 1);
    assert_eq!(n, 1);
    // SAFETY: allocated above with `layout`.
    unsafe { GlobalAlloc::dealloc(ga, p, layout) };
    // ... and goes with it.
    let mut n = 0;
    tracking::allocations_in(g0..u64::MAX, |_| n += 1);
    assert_eq!(n, 0);
    assert_eq!(tracking::current_generation(), g0 + 1);
}
