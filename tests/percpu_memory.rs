//! Per-CPU memory (issue 6, part 3; issue 13): the bytes of state each CPU
//! slot takes, and the most free memory one CPU's caches can hold, measured
//! and compared with what the knobs in the configuration file allow: one
//! idle budget per CPU, half of it at most for the page cache's base marks,
//! which grow while the CPU cycles pages and decay when it stops.

mod common;
use buddy_slab_allocator::{GlobalAllocator, Platform, SlabAllocator, config};
use common::{PAGE, SwitchCpus, arena, on_cpu};
use core::alloc::Layout;
use core::ptr::NonNull;

/// The page cache's base mark (blocks per order) under `heap`'s budget:
/// half the budget over the cached orders, within `1..=page-cache-high`.
fn base_mark<P: Platform>(heap: &GlobalAllocator<PAGE, P>) -> usize {
    let per_mark = (1 << config::cpu::PAGE_CACHE_ORDERS) - 1;
    (heap.idle_budget_bytes() / PAGE / 2 / per_mark).clamp(1, config::cpu::PAGE_CACHE_HIGH)
}

/// Bytes of empty slabs a CPU may keep: the budget less the base marks.
fn slab_spare<P: Platform>(heap: &GlobalAllocator<PAGE, P>) -> usize {
    let per_mark = (1 << config::cpu::PAGE_CACHE_ORDERS) - 1;
    heap.idle_budget_bytes() - base_mark(heap) * per_mark * PAGE
}

/// The slot the calling thread uses: the one whose counters moved.
fn my_slot(heap: &GlobalAllocator<PAGE>) -> usize {
    (0..heap.cpu_slots())
        .find(|&i| {
            let s = heap.cpu_stats(i).unwrap();
            s.cached_page_bytes > 0 || s.slab.slab_bytes > 0
        })
        .expect("this thread's slot")
}

#[test]
fn per_cpu_state_and_cache_bounds() {
    let region = arena(256 << 20, PAGE, 0);
    let start = region.as_ptr() as usize;
    let mut heap = Box::new(GlobalAllocator::<PAGE>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(region).unwrap() };

    // CPU slots sit at the start of the first region, before its section,
    // followed by one 8-byte hazard word per slot.
    let slots = heap.cpu_slots();
    let slots_bytes = heap.managed_section(0).unwrap().region.0 - start;
    assert_eq!(slots_bytes % slots, 0);
    let slot_bytes = slots_bytes / slots;
    assert_eq!(
        slot_bytes % 64,
        8,
        "cache-line aligned slots and a hazard each"
    );

    // The idle budget: 1 MiB, or 1/64 of managed memory if less.
    let budget = heap.idle_budget_bytes();
    assert_eq!(
        budget,
        config::cpu::IDLE_BUDGET.min(heap.managed_bytes() / config::cpu::IDLE_BUDGET_FRACTION)
    );
    // Page cache: per order, free many blocks and watch the cache's peak.
    let (orders, high) = (config::cpu::PAGE_CACHE_ORDERS, base_mark(&*heap));
    let mut page_cache_max = 0;
    for order in 0..8 {
        let pages = 1 << order;
        let blocks: Vec<usize> = (0..3 * high)
            .map(|_| heap.alloc_pages(pages, pages * PAGE).unwrap())
            .collect();
        heap.drain();
        let mut peak = 0;
        for b in blocks {
            // SAFETY: allocated above with this count.
            unsafe { heap.dealloc_pages(b, pages).unwrap() };
            peak = peak.max(heap.stats().cached_page_bytes);
        }
        let want = if order < orders {
            high * pages * PAGE
        } else {
            0
        };
        assert_eq!(peak, want, "page cache peak for order {order}");
        page_cache_max += peak;
        heap.drain();
    }

    // Slabs: fill three slabs of a class, free everything, see what stays.
    let spare = slab_spare(&*heap);
    let table = SlabAllocator::<PAGE>::default_table();
    let mut slab_max = 0;
    let mut id = None;
    for class in table.classes() {
        let size = table.object_bytes(class);
        let slab_bytes = PAGE << table.slab_order(class);
        let layout = Layout::from_size_align(size, 8).unwrap();
        let objs: Vec<NonNull<u8>> = (0..3 * table.objects_per_slab(class))
            .map(|_| heap.alloc(layout).unwrap())
            .collect();
        let me = *id.get_or_insert_with(|| my_slot(&heap));
        for p in objs {
            // SAFETY: allocated above with this layout.
            unsafe { heap.dealloc(p, layout) };
        }
        let held = heap.cpu_stats(me).unwrap().slab.slab_bytes;
        // All three (the active one included) fit the spare bytes.
        assert!(3 * slab_bytes <= spare);
        assert_eq!(held, 3 * slab_bytes, "class of {size} B");
        assert_eq!(heap.cpu_stats(me).unwrap().slab.empty_bytes, held);
        slab_max = slab_max.max(held);
        heap.drain();
        assert_eq!(heap.cpu_stats(me).unwrap().slab.slab_bytes, 0);
    }
    heap.drain_all();
    assert_eq!(heap.stats().invalid_frees, 0);

    assert!(
        page_cache_max + spare <= budget,
        "the two shares fit the budget"
    );
    println!(
        "per-CPU: slot {slot_bytes} B ({slots} slots = {} KiB); idle caches at most \
         {} KiB (budget): {} KiB of empty slabs + {} KiB of page cache ({high} blocks x \
         orders 0..{orders}, the base mark); 64 CPUs: {} KiB of state, {} MiB of caches",
        slots_bytes >> 10,
        budget >> 10,
        spare >> 10,
        page_cache_max >> 10,
        (65 * slot_bytes) >> 10,
        (64 * budget) >> 20,
    );
    let _ = slab_max;
}

/// The page cache's high mark adapts (Linux pcp style): a CPU that keeps
/// cycling more pages than its base mark through the buddy grows its cache
/// until the cycle stays in it, never beyond its share of
/// `1/page-cache-fraction` of managed memory; a drain resets the mark.
#[test]
fn page_cache_grows_within_its_budget_and_a_drain_resets_it() {
    let fraction = config::cpu::PAGE_CACHE_FRACTION;
    let mut heap = Box::new(GlobalAllocator::<PAGE>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(arena(64 << 20, PAGE, 0)).unwrap() };
    let high = base_mark(&*heap);
    let total_pages = heap.managed_bytes() / PAGE;
    let fresh = heap.free_blocks_per_order();
    // This thread is the one CPU caching pages in this heap.
    let cap_pages = high + total_pages / fraction;

    // A cycle of 4x the initial mark ends up wholly in the cache.
    let live = 4 * high;
    assert!(live < cap_pages);
    let held: Vec<usize> = (0..6).map(|_| cycle_pages(&*heap, live)).collect();
    assert_eq!(held[0], high, "first round: the base mark");
    // (A refill may bring a few blocks beyond the cycle.)
    let last = *held.last().unwrap();
    assert!(
        (live..live + config::cpu::PAGE_CACHE_BATCH).contains(&last),
        "grown to hold the cycle: {held:?}"
    );
    assert!(held.windows(2).all(|w| w[0] <= w[1]), "{held:?}");
    // The grown lists are well formed (P1–P3).
    heap.check_invariants();

    // A cycle bigger than the budget: the cache stops at its cap.
    let big = cap_pages + total_pages / 8;
    let held: Vec<usize> = (0..8).map(|_| cycle_pages(&*heap, big)).collect();
    let peak = *held.iter().max().unwrap();
    assert!(
        peak <= cap_pages,
        "cache {peak} > cap {cap_pages}: {held:?}"
    );
    assert!(peak > cap_pages / 2, "grew toward the cap: {held:?}");

    // A drain empties the cache and resets the mark.
    heap.drain();
    assert_eq!(heap.stats().cached_page_bytes, 0);
    assert_eq!(cycle_pages(&*heap, live), high);

    heap.drain_all();
    let s = heap.stats();
    assert_eq!((s.invalid_frees, s.allocated_bytes), (0, 0));
    assert_eq!(
        heap.free_blocks_per_order(),
        fresh,
        "everything merged back"
    );
}

/// `live` single pages allocated, tagged, checked and freed (newest first);
/// returns the pages all page caches hold afterwards.
fn cycle_pages<P: Platform>(heap: &GlobalAllocator<PAGE, P>, live: usize) -> usize {
    let pages: Vec<usize> = (0..live)
        .map(|_| heap.alloc_pages(1, PAGE).unwrap())
        .collect();
    for (i, &p) in pages.iter().enumerate() {
        // SAFETY: allocated above and not freed yet. The tag checks that
        // nobody else was handed the page meanwhile.
        unsafe { (p as *mut u64).write(i as u64) };
    }
    for (i, &p) in pages.iter().enumerate().rev() {
        // SAFETY: as above; each page is freed once.
        unsafe {
            assert_eq!((p as *const u64).read(), i as u64);
            heap.dealloc_pages(p, 1).unwrap();
        }
    }
    heap.stats().cached_page_bytes / PAGE
}

/// Pages in CPU `cpu`'s page cache.
fn cached_pages_on<P: Platform>(heap: &GlobalAllocator<PAGE, P>, cpu: usize) -> usize {
    heap.cpu_stats(cpu).unwrap().cached_page_bytes / PAGE
}

/// The growth budget (1/page-cache-fraction of managed memory) is split
/// among the CPUs whose page caches have grown: a CPU that caches pages
/// without growing takes no share, and a second growing CPU halves the
/// first one's share at its next refill.
#[test]
fn the_growth_budget_is_shared_by_the_cpus_whose_caches_grow() {
    let fraction = config::cpu::PAGE_CACHE_FRACTION;
    let heap = Box::new(GlobalAllocator::<PAGE, SwitchCpus>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(arena(64 << 20, PAGE, 0)).unwrap() };
    let high = base_mark(&*heap);
    let total_pages = heap.managed_bytes() / PAGE;
    let held = |cpu| cached_pages_on(&heap, cpu);
    // More pages than any share: every round refills after a flush.
    let big = total_pages / 4;

    // CPU 1 caches pages but never needs more than the initial mark.
    on_cpu(1);
    cycle_pages(&*heap, high / 2);
    assert!(held(1) >= high / 2 && held(1) <= high, "{}", held(1));

    // CPU 0 alone grows (a doubling per round, from the base mark): the
    // whole budget is its share.
    on_cpu(0);
    for _ in 0..12 {
        cycle_pages(&*heap, big);
    }
    let alone = held(0);
    assert!(alone <= high + total_pages / fraction, "{alone}");
    assert!(alone > high + total_pages / fraction / 2, "{alone}");

    // CPU 1 grows too: its share is half the budget, and CPU 0's drops to
    // half once it refills again.
    on_cpu(1);
    for _ in 0..12 {
        cycle_pages(&*heap, big);
    }
    assert!(held(1) <= high + total_pages / fraction / 2, "{}", held(1));
    on_cpu(0);
    cycle_pages(&*heap, big);
    assert!(held(0) <= high + total_pages / fraction / 2, "{}", held(0));
    assert!(held(0) + held(1) <= 2 * high + total_pages / fraction);

    // A drained CPU leaves the sharing: CPU 0 gets the whole budget back.
    on_cpu(1);
    heap.drain();
    assert_eq!(held(1), 0);
    on_cpu(0);
    for _ in 0..8 {
        cycle_pages(&*heap, big);
    }
    assert!(held(0) > high + total_pages / fraction / 2, "{}", held(0));
    heap.check_invariants();
}

/// Memory pressure with a grown page cache on a busy CPU: when another CPU
/// runs out, the busy CPU returns its cache on its next page free (the
/// free fast path steps aside once a reclaim was requested), so the other
/// CPU's next attempt succeeds. (An idle CPU is drained at once, see
/// tests/pressure.rs; this platform reports none idle.)
#[test]
fn a_busy_cpu_returns_its_grown_page_cache_after_a_reclaim() {
    let heap = Box::new(GlobalAllocator::<PAGE, SwitchCpus>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { heap.init(arena(16 << 20, PAGE, 0)).unwrap() };
    let high = base_mark(&*heap);
    let total_pages = heap.managed_bytes() / PAGE;
    let held = |cpu| cached_pages_on(&heap, cpu);

    on_cpu(0);
    for _ in 0..8 {
        cycle_pages(&*heap, total_pages / 4);
    }
    let grown = held(0);
    assert!(grown > 4 * high, "CPU 0's cache grew: {grown}");

    // CPU 1 takes everything else, then runs out.
    on_cpu(1);
    let mut mine: Vec<usize> = std::iter::from_fn(|| heap.alloc_pages(1, PAGE).ok()).collect();
    assert_eq!(held(0), grown, "a busy CPU is not drained by another");

    // CPU 0's next page free drains its cache first.
    on_cpu(0);
    let p = heap.alloc_pages(1, PAGE).unwrap();
    // SAFETY: allocated just above, freed once.
    unsafe { heap.dealloc_pages(p, 1).unwrap() };
    assert!(held(0) < grown / 2, "drained: {} of {grown}", held(0));

    on_cpu(1);
    let more: Vec<usize> = std::iter::from_fn(|| heap.alloc_pages(1, PAGE).ok()).collect();
    assert!(
        more.len() + 1 >= grown - held(0),
        "CPU 1 got the returned pages: {}",
        more.len()
    );
    mine.extend(more);
    for p in mine {
        // SAFETY: allocated above, freed once.
        unsafe { heap.dealloc_pages(p, 1).unwrap() };
    }
    assert_eq!(heap.stats().invalid_frees, 0);
}
