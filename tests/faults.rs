//! The bad-input and fault matrix: every deliberate misuse is rejected,
//! reported and counted exactly, and afterwards no memory is handed out
//! twice (many blocks allocated, all distinct, patterns intact).
//!
//! The use-after-free and red-zone cases need the debug checks:
//! `cargo test --features debug-checks --test faults`.

mod common;
use buddy_slab_allocator::{AllocError, GlobalAllocator, SlabAllocator};
use common::{CPUS, PAGE, SwitchCpus, arena, check, fill, on_cpu};
use core::alloc::Layout;
use core::ptr::NonNull;

type Heap = GlobalAllocator<PAGE, SwitchCpus>;

fn heap(bytes: usize) -> Box<Heap> {
    on_cpu(0);
    let h = Box::new(Heap::new());
    // SAFETY: leaked arena; the heap is boxed and never moves.
    unsafe { h.init(arena(bytes, PAGE, 0)).unwrap() };
    h
}

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Allocates `n` blocks of `size` on the current CPU, fills them, checks
/// they are pairwise distinct and intact, and frees them.
fn nothing_handed_out_twice(h: &Heap, n: usize, size: usize) {
    let n = if cfg!(miri) { n.min(100) } else { n };
    let mut got: Vec<(NonNull<u8>, u64)> = (0..n as u64)
        .map(|tag| {
            let p = h.alloc(l(size, 8)).unwrap();
            fill(p.as_ptr(), size, tag);
            (p, tag)
        })
        .collect();
    got.sort_unstable();
    for w in got.windows(2) {
        assert!(
            w[0].0.as_ptr().addr() + size <= w[1].0.as_ptr().addr(),
            "blocks {:p} and {:p} overlap",
            w[0].0,
            w[1].0
        );
    }
    for &(p, tag) in &got {
        check(p.as_ptr(), size, tag);
        // SAFETY: allocated above with this layout.
        unsafe { h.dealloc(p, l(size, 8)) };
    }
    h.check_invariants();
}

#[test]
fn local_double_free() {
    let h = heap(4 << 20);
    let p = h.alloc(l(48, 8)).unwrap();
    // SAFETY: the second free is deliberate.
    unsafe {
        h.dealloc(p, l(48, 8));
        h.dealloc(p, l(48, 8));
    }
    assert_eq!(h.stats().invalid_frees, 1);
    nothing_handed_out_twice(&h, 2000, 48);
}

#[test]
fn remote_double_free() {
    let h = heap(4 << 20);
    let p = h.alloc(l(48, 8)).unwrap();
    on_cpu(1);
    // SAFETY: the second (remote) free is deliberate.
    unsafe {
        h.dealloc(p, l(48, 8));
        h.dealloc(p, l(48, 8));
    }
    assert_eq!(h.stats().invalid_frees, 1, "caught at the remote bit");
    on_cpu(0);
    nothing_handed_out_twice(&h, 2000, 48);
    assert_eq!(h.stats().invalid_frees, 1);
}

/// A remote free and then a local free of the same object: the local free
/// does not read the remote bitmap (it would cost the owner a cache line a
/// remote CPU writes), so the double free is caught when the owner next
/// hands the object out or absorbs remote frees, whichever comes first;
/// either way it is counted once and the object is handed out once.
#[test]
fn remote_then_local_double_free() {
    for absorb_first in [false, true] {
        let h = heap(4 << 20);
        let layout = l(48, 8);
        // A live neighbour keeps the slab from going back to the buddy
        // when `p` leaves it empty (a 4 MiB heap's idle budget keeps no
        // empty slab): the object is then reused from the same free list.
        let neighbour = h.alloc(layout).unwrap();
        let p = h.alloc(layout).unwrap();
        on_cpu(1);
        // SAFETY: a valid remote free.
        unsafe { h.dealloc(p, layout) };
        on_cpu(0);
        // SAFETY: a deliberate double free, by the owner.
        unsafe { h.dealloc(p, layout) };
        if absorb_first {
            h.drain();
        }
        // Either way the remote bit is absorbed before the object is handed
        // out again (the pop refuses an object with a stray bit, and the
        // slow path absorbs first): it is counted as the double free and
        // the object, free once, is handed out once among the slab's next
        // objects (with debug checks, not necessarily first).
        let next: Vec<_> = (0..300).map(|_| h.alloc(layout).unwrap()).collect();
        assert_eq!(
            next.iter().filter(|&&q| q == p).count(),
            1,
            "p handed out once"
        );
        for &q in next.iter().filter(|&&q| q != p) {
            // SAFETY: allocated above, freed once.
            unsafe { h.dealloc(q, layout) };
        }
        let again = p;
        fill(again.as_ptr(), 48, 9);
        h.drain();
        nothing_handed_out_twice(&h, 2000, 48);
        check(again.as_ptr(), 48, 9);
        assert_eq!(h.stats().invalid_frees, 1, "absorb first: {absorb_first}");
        // SAFETY: allocated above, freed once.
        unsafe { h.dealloc(neighbour, layout) };
        // SAFETY: the live block, freed once.
        unsafe { h.dealloc(again, layout) };
        h.drain();
        assert_eq!(h.stats().invalid_frees, 1);
        assert_eq!(h.stats().live_objects, 0);
        h.check_invariants();
    }
}

/// A remote double free of an object already back on its owner's free list
/// sets a remote bit the owner cannot tell from a valid free once the object
/// is handed out again. The owner must catch it when it reuses the object,
/// not absorb it later as a free of the new allocation.
#[test]
fn remote_double_free_of_a_free_object_then_reuse() {
    let h = heap(4 << 20);
    let layout = l(48, 8);
    let p = h.alloc(layout).unwrap();
    // SAFETY: a valid local free.
    unsafe { h.dealloc(p, layout) };
    on_cpu(1);
    // SAFETY: a deliberate double free, from another CPU.
    unsafe { h.dealloc(p, layout) };
    on_cpu(0);
    // The owner reuses the class: its pop finds the stray remote bit on the
    // object at the top of its free list and refuses it, and the slow path
    // absorbs the bit (as the double free it is) before handing the object
    // out, rather than take the bit later for a free of the new
    // allocation.
    let again = h.alloc(layout).unwrap();
    assert_eq!(again, p, "handed out once its stray bit is absorbed");
    assert_eq!(h.stats().invalid_frees, 1, "found at once");
    fill(again.as_ptr(), 48, 7);
    h.drain();
    nothing_handed_out_twice(&h, 2000, 48);
    check(again.as_ptr(), 48, 7);
    // SAFETY: the live block, freed once.
    unsafe { h.dealloc(again, layout) };
    assert_eq!(h.stats().invalid_frees, 1);
    h.check_invariants();
}

#[test]
fn interior_foreign_and_wrong_layout_frees() {
    let h = heap(4 << 20);
    let p = h.alloc(l(100, 8)).unwrap();
    let run = h.alloc(l(3 * PAGE, 8)).unwrap();
    let mut x = [0u64; 4];
    let foreign = NonNull::from(&mut x).cast::<u8>();
    // SAFETY: each call is a deliberate bad free that must be rejected.
    unsafe {
        h.dealloc(p.add(8), l(100, 8)); // inside the object
        h.dealloc(run.add(PAGE), l(2 * PAGE, 8)); // inside the run
        h.dealloc(foreign, l(8, 8)); // not managed
        h.dealloc(p, l(1000, 8)); // another size class
        h.dealloc(run, l(100, 8)); // a run freed as an object
        assert_eq!(
            h.dealloc_pages(run.as_ptr().addr(), 2),
            Err(AllocError::NotAllocated)
        );
        on_cpu(1);
        h.dealloc(p.add(8), l(100, 8)); // inside the object, remote
    }
    on_cpu(0);
    assert_eq!(h.stats().invalid_frees, 7);
    // The real blocks are intact and free normally.
    // SAFETY: valid frees.
    unsafe {
        h.dealloc(p, l(100, 8));
        h.dealloc(run, l(3 * PAGE, 8));
    }
    assert_eq!(h.stats().invalid_frees, 7);
    nothing_handed_out_twice(&h, 2000, 100);
}

/// Every slot of a slab is an object: a slab of 8-byte objects spans
/// several bitmap words, and all its objects, those at the ends of the
/// words included, are handed out once, freed locally and remotely, and
/// handed out again.
#[test]
fn every_slot_of_a_multi_word_slab_is_an_object() {
    let h = heap(4 << 20);
    let layout = l(8, 8);
    let table = SlabAllocator::<PAGE>::default_table();
    let class = table.class_for(layout).unwrap();
    let (size, slab_bytes) = (table.object_bytes(class), PAGE << table.slab_order(class));
    let per_slab = table.objects_per_slab(class);
    assert!(per_slab > 64, "the slab spans several bitmap words");
    let objs: Vec<NonNull<u8>> = (0..per_slab).map(|_| h.alloc(layout).unwrap()).collect();
    let base = objs[0].as_ptr().addr() & !(slab_bytes - 1);
    let mut offsets: Vec<usize> = objs.iter().map(|p| p.as_ptr().addr() - base).collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (0..per_slab).map(|i| i * size).collect::<Vec<_>>(),
        "one slab's objects, each once"
    );
    // SAFETY: live objects, each freed once: the even ones locally, the odd
    // ones (every word's last slot among them) from another CPU.
    unsafe {
        for (i, &p) in objs.iter().enumerate() {
            on_cpu(i % 2);
            h.dealloc(p, layout);
        }
    }
    on_cpu(0);
    h.drain();
    assert_eq!(h.stats().invalid_frees, 0);
    assert_eq!(h.stats().live_objects, 0);
    nothing_handed_out_twice(&h, 2000, 8);
}

#[test]
fn overlapping_and_too_small_regions() {
    // The heap gets the middle of a larger arena, so regions straddling
    // its ends are still memory this test owns.
    let big = arena(6 << 20, PAGE, 0);
    let base = big.as_mut_ptr();
    on_cpu(0);
    let h = Box::new(Heap::new());
    // SAFETY: the middle 4 MiB of the leaked arena, used by nothing else.
    unsafe {
        h.init(std::slice::from_raw_parts_mut(base.add(1 << 20), 4 << 20))
            .unwrap()
    };
    // Inside the managed pages, built from a pointer the heap handed out:
    // the overlapping `&mut [u8]` borrows from the heap's own provenance.
    let page = h.alloc_pages_ptr(1, 0).unwrap();
    let inside = page.as_ptr().with_addr(base.addr() + (2 << 20));
    // SAFETY: inside the heap's region; rejected as overlapping before
    // anything is written.
    let r = unsafe { h.add_region(std::slice::from_raw_parts_mut(inside, 2 * PAGE)) };
    assert_eq!(r, Err(AllocError::MemoryOverlap), "inside");
    // SAFETY: allocated above.
    unsafe { h.dealloc_pages(page.as_ptr().addr(), 1).unwrap() };
    // Over the region's start (the CPU slots) and straddling either end,
    // built from the test's own pointer to the arena: such a `&mut [u8]`
    // aliases memory the heap reaches through another pointer, which
    // Stacked Borrows rejects (the heap's next access would be UB under
    // Miri), so these run natively only.
    let straddling: &[(usize, usize)] = if cfg!(miri) {
        &[]
    } else {
        &[(1 << 20, 2 * PAGE), (1 << 19, 1 << 20), (9 << 19, 1 << 20)]
    };
    for &(off, len) in straddling {
        // SAFETY: inside the leaked arena; rejected as overlapping before
        // anything is written.
        let r = unsafe { h.add_region(std::slice::from_raw_parts_mut(base.add(off), len)) };
        assert_eq!(r, Err(AllocError::MemoryOverlap), "[{off:#x}, +{len:#x})");
    }
    let tiny = arena(PAGE, PAGE, 0);
    // SAFETY: leaked; rejected as too small to hold a page and its metadata.
    let r = unsafe { h.add_region(tiny) };
    assert_eq!(r, Err(AllocError::InvalidParam));
    let empty: &'static mut [u8] = &mut [];
    // SAFETY: an empty region: nothing to write.
    let r = unsafe { h.add_region(empty) };
    assert_eq!(r, Err(AllocError::InvalidParam));
    assert_eq!(h.managed_section_count(), 1);
    h.check_invariants();
    nothing_handed_out_twice(&h, 2000, 64);
}

/// Fault injection by a tiny arena: slab refills fail (out of pages) with
/// an error, not a panic or a corrupt heap, and `add_region` recovers.
#[test]
fn oom_during_slab_refill_then_add_region() {
    let h = heap(40 * PAGE);
    let layout = l(512, 8);
    let mut live = Vec::new();
    let err = loop {
        match h.alloc(layout) {
            Ok(p) => {
                fill(p.as_ptr(), 512, live.len() as u64);
                live.push(p);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err, AllocError::NoMemory);
    assert!(!live.is_empty());
    // Single pages may remain where a slab block does not fit.
    while let Ok(_page) = h.alloc_pages(1, 0) {}
    assert_eq!(h.alloc(layout), Err(AllocError::NoMemory));
    h.check_invariants();
    // SAFETY: leaked arena.
    unsafe { h.add_region(arena(1 << 20, PAGE, 0)).unwrap() };
    nothing_handed_out_twice(&h, 1000, 512);
    for (i, p) in live.into_iter().enumerate() {
        check(p.as_ptr(), 512, i as u64);
        // SAFETY: allocated above.
        unsafe { h.dealloc(p, layout) };
    }
    assert_eq!(h.stats().invalid_frees, 0);
}

/// A platform that reports a CPU id at or past `max_cpus` breaks its
/// contract; the facade must use the shared slot, and frees between that
/// slot and real CPUs must stay sound.
#[test]
fn cpu_id_past_the_configured_count_uses_the_shared_slot() {
    let h = heap(4 << 20);
    for cpu in [CPUS, CPUS + 5, usize::MAX] {
        on_cpu(cpu);
        let a = h.alloc(l(64, 8)).unwrap();
        fill(a.as_ptr(), 64, 1);
        on_cpu(0);
        let b = h.alloc(l(64, 8)).unwrap();
        assert_ne!(a, b);
        check(a.as_ptr(), 64, 1);
        // A free of the shared slot's object from CPU 0 is remote, and
        // the reverse.
        // SAFETY: valid frees.
        unsafe { h.dealloc(a, l(64, 8)) };
        on_cpu(cpu);
        // SAFETY: valid free.
        unsafe { h.dealloc(b, l(64, 8)) };
        nothing_handed_out_twice(&h, 500, 64);
    }
    on_cpu(0);
    let shared = h.cpu_slots() - 1;
    assert_eq!(shared, CPUS);
    assert!(
        h.cpu_stats(shared).unwrap().slab.slabs > 0,
        "the shared slot served them"
    );
    assert_eq!(h.stats().invalid_frees, 0);
    h.drain_all_for_test();
}

trait DrainAll {
    fn drain_all_for_test(self);
}
impl DrainAll for Box<Heap> {
    fn drain_all_for_test(mut self) {
        self.drain_all();
        self.check_invariants();
    }
}

/// Debug checks: a write after free is found by the poison when the object
/// is handed out again, reported once, and the heap stays usable.
#[cfg(feature = "debug-checks")]
#[test]
fn use_after_free_is_caught_by_poison() {
    let h = heap(4 << 20);
    let layout = l(64, 8);
    // A live neighbour keeps the slab (and the freed object's poison) when
    // `p` leaves it: a 4 MiB heap's idle budget keeps no empty slab.
    let neighbour = h.alloc(layout).unwrap();
    let p = h.alloc(layout).unwrap();
    // SAFETY: a valid free.
    unsafe { h.dealloc(p, layout) };
    // SAFETY: a deliberate write after free (past the link word) into
    // memory the test leaked to the heap, which stays mapped.
    unsafe { p.as_ptr().add(40).write(0x42) };
    let again = h.alloc(layout).unwrap();
    assert_eq!(again, p);
    let s = h.stats();
    assert_eq!(
        (s.poison_faults, s.red_zone_faults, s.invalid_frees),
        (1, 0, 0)
    );
    // SAFETY: valid free.
    unsafe { h.dealloc(again, layout) };
    nothing_handed_out_twice(&h, 2000, 64);
    assert_eq!(h.stats().poison_faults, 1);
    // SAFETY: allocated above, freed once.
    unsafe { h.dealloc(neighbour, layout) };
}

/// Debug checks: a write past the requested size is found at free by the
/// red zone, locally and remotely, and so is a free with a smaller layout.
#[cfg(feature = "debug-checks")]
#[test]
fn overflow_is_caught_by_the_red_zone() {
    let h = heap(4 << 20);
    let layout = l(50, 8); // served by a 56-byte class: red zone [50, 56)
    let a = h.alloc(layout).unwrap();
    let b = h.alloc(layout).unwrap();
    let c = h.alloc(l(56, 8)).unwrap();
    // SAFETY: deliberate one-byte overflows inside the object's slack.
    unsafe {
        a.as_ptr().add(50).write(0);
        b.as_ptr().add(55).write(0);
    }
    fill(c.as_ptr(), 56, 3);
    // SAFETY: frees of live objects (b and c from another CPU; c with a
    // smaller layout of the same class, so its tail is user data).
    unsafe {
        h.dealloc(a, layout);
        on_cpu(1);
        h.dealloc(b, layout);
        h.dealloc(c, l(50, 8));
    }
    on_cpu(0);
    let s = h.stats();
    assert_eq!(
        (s.red_zone_faults, s.poison_faults, s.invalid_frees),
        (3, 0, 0)
    );
    nothing_handed_out_twice(&h, 2000, 50);
    assert_eq!(h.stats().red_zone_faults, 3, "no false reports");
}

/// Debug checks cost nothing when off: the constant folds away.
#[test]
fn debug_switch_matches_the_feature() {
    assert_eq!(
        buddy_slab_allocator::debug::ENABLED,
        cfg!(feature = "debug-checks")
    );
}

/// A wild write into page metadata that breaks a page-cache list link: the
/// cache drops the list (its blocks leak, counted in
/// `page_cache_lost_bytes`) instead of following the link, and nothing is
/// handed out twice.
#[test]
#[cfg_attr(miri, ignore = "the wild write goes through an integer address")]
fn corrupted_page_cache_link_drops_the_list() {
    // Large enough for an idle budget that caches a few blocks per order.
    let h = heap(64 << 20);
    let sec = h.managed_section(0).unwrap();
    // Page metadata: 12-byte entries from the region's start (aligned to
    // 4), one per managed page; the first field is the list's `next` link.
    let meta_of =
        |addr: usize| sec.region.0.next_multiple_of(4) + 12 * ((addr - sec.start_vaddr) / PAGE);
    let a = h.alloc_pages(1, PAGE).unwrap();
    let b = h.alloc_pages(1, PAGE).unwrap();
    // SAFETY: both runs were allocated above; each is freed once.
    unsafe {
        h.dealloc_pages(a, 1).unwrap();
        h.dealloc_pages(b, 1).unwrap();
    }
    // Both are cached, on top of the rest of the refill batch.
    let cached = h.stats().cached_page_bytes;
    assert!(cached >= 2 * PAGE);
    // `b` is on top and links to `a`; point the link at an allocated page.
    let live = h.alloc_pages(4, 4 * PAGE).unwrap();
    let link_to_live = {
        // SAFETY: the metadata entry of `b`, inside the region we leaked;
        // reading the link tells how links encode `a`.
        let link_a = unsafe { (meta_of(b) as *const u32).read() };
        link_a.wrapping_add((live / PAGE).wrapping_sub(a / PAGE) as u32)
    };
    // SAFETY: a deliberate wild write into the metadata entry of `b`.
    unsafe { (meta_of(b) as *mut u32).write(link_to_live) };
    assert_eq!(h.alloc_pages(1, PAGE).unwrap(), b, "the top block is fine");
    let next = h.alloc_pages(1, PAGE).unwrap();
    assert_ne!(next, live, "the bad link is not followed");
    assert_ne!(next, a, "the dropped list's block leaks");
    assert_eq!(
        h.stats().page_cache_lost_bytes,
        cached - PAGE,
        "everything below `b` counted as lost"
    );
    let more: Vec<usize> = (0..200).map(|_| h.alloc_pages(1, PAGE).unwrap()).collect();
    assert!(!more.contains(&a) && !more.contains(&live) && !more.contains(&b));
    // SAFETY: live runs, each freed once.
    unsafe {
        for p in more.into_iter().chain([b, next]) {
            h.dealloc_pages(p, 1).unwrap();
        }
        h.dealloc_pages(live, 4).unwrap();
    }
    assert_eq!(h.stats().invalid_frees, 0);
}
