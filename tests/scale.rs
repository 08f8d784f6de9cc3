//! Scale: arenas of 1, 16 and 64 GiB (issue 6, part 1).
//!
//! Arenas are address space only (`mmap` with `MAP_NORESERVE`): the
//! allocator touches its 12-byte-per-page metadata (192 MiB for 64 GiB) and
//! the tests touch a few pages, so a 24 GiB machine never commits more than
//! that. Each figure is printed (`--nocapture`); `make scale` runs the heavy
//! sizes optimised.
//!
//! - `two_gib_arena` (always on): the same checks as the heavy test, on
//!   2 GiB.
//! - `large_arenas` (`#[ignore]`): 1, 16 and 64 GiB, one after the other,
//!   each unmapped before the next.

mod common;
use buddy_slab_allocator::{BuddyAllocator, GlobalAllocator};
use common::{PAGE, Rng, check, fill};
use core::alloc::Layout;
use std::time::Instant;

const GIB: usize = 1 << 30;
/// Pages of a 1 GiB block.
const GIB_PAGES: usize = GIB / PAGE;
/// Metadata per managed page (`PageMeta`).
const META_BYTES: usize = 12;

/// An anonymous, unreserved mapping, unmapped on drop.
struct Arena {
    ptr: *mut u8,
    len: usize,
}

impl Arena {
    fn new(len: usize) -> Self {
        Self::map(core::ptr::null_mut(), len, 0)
    }

    /// A mapping of `len` bytes exactly at `addr` (which must be free
    /// address space: an existing mapping makes the test fail, never
    /// replaced).
    fn at(addr: usize, len: usize) -> Self {
        let arena = Self::map(addr as *mut libc::c_void, len, libc::MAP_FIXED_NOREPLACE);
        assert_eq!(arena.ptr.addr(), addr, "mmap ignored the address");
        arena
    }

    fn map(hint: *mut libc::c_void, len: usize, flags: libc::c_int) -> Self {
        // SAFETY: a fresh private anonymous mapping; a hint, if any, only
        // with MAP_FIXED_NOREPLACE, which never replaces a mapping.
        let ptr = unsafe {
            libc::mmap(
                hint,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | flags,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap of {len} bytes failed");
        Self {
            ptr: ptr.cast(),
            len,
        }
    }

    /// The whole mapping as a region.
    ///
    /// # Safety
    /// Nothing else uses the mapping while the returned slice or anything
    /// carved from it is in use, and it is not used after `self` drops.
    #[allow(clippy::mut_from_ref)]
    unsafe fn region(&self) -> &mut [u8] {
        // SAFETY: the mapping is `len` readable and writable bytes; the
        // caller keeps it exclusive and within `self`'s life.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing uses it any more (`region`
        // contract).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Resident set size of this process in bytes.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    resident * PAGE
}

/// Aligned 1 GiB blocks wholly inside `[start, start + pages * PAGE)`.
fn aligned_gib_blocks(start: usize, pages: usize) -> usize {
    let end = start + pages * PAGE;
    (end / GIB).saturating_sub(start.div_ceil(GIB))
}

/// What one arena size measured.
struct Figures {
    arena_bytes: usize,
    managed_bytes: usize,
    metadata_bytes: usize,
    buddy_init_ms: f64,
    global_init_ms: f64,
    rss_growth_bytes: usize,
    gib_blocks: usize,
    largest_block_pages: usize,
    largest_alloc_us: f64,
}

impl Figures {
    fn print(&self) {
        println!(
            "scale: arena {:>3} GiB | managed {:>11} B | metadata {:>9} B ({:.3}% of the arena) | \
             init buddy {:>7.1} ms, global {:>7.1} ms | RSS +{:>4} MiB | \
             1 GiB blocks {:>3} | largest block {} MiB, alloc+free {:.1} us",
            self.arena_bytes / GIB,
            self.managed_bytes,
            self.metadata_bytes,
            self.metadata_bytes as f64 * 100.0 / self.arena_bytes as f64,
            self.buddy_init_ms,
            self.global_init_ms,
            self.rss_growth_bytes >> 20,
            self.gib_blocks,
            (self.largest_block_pages * PAGE) >> 20,
            self.largest_alloc_us,
        );
    }
}

/// Inits a buddy, then a facade, over an arena of `arena_bytes`, and checks
/// metadata size, 1 GiB blocks, the largest block and scattered
/// pattern-checked allocations.
fn measure(arena_bytes: usize) -> Figures {
    let arena = Arena::new(arena_bytes);

    // --- bare buddy: init time and metadata ---------------------------------
    let rss0 = rss_bytes();
    let mut buddy = Box::new(BuddyAllocator::<PAGE>::new());
    let t = Instant::now();
    // SAFETY: the mapping is ours alone; the buddy is dropped before the
    // facade reuses it, and both before the arena.
    unsafe { buddy.init(arena.region()).unwrap() };
    let buddy_init_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_growth_bytes = rss_bytes().saturating_sub(rss0);
    let pages = buddy.total_pages();
    let managed_bytes = buddy.managed_bytes();
    assert_eq!(managed_bytes, pages * PAGE);
    assert_eq!(
        buddy.managed_section_count(),
        1,
        "host arenas lie above 4 GiB"
    );
    let metadata_bytes = arena_bytes - managed_bytes;
    // 12 B per managed page, the free maps (one bit per page and their
    // summaries: at most 1/7 B per page here), plus at most a page of
    // rounding and the alignment of the data start.
    let maps = pages / 7;
    assert!(
        metadata_bytes >= pages * META_BYTES + pages / 8
            && metadata_bytes < pages * META_BYTES + maps + 2 * PAGE,
        "metadata {metadata_bytes} B for {pages} pages"
    );
    assert_eq!(buddy.free_pages(), pages);
    drop(buddy);

    // --- facade over the same memory ----------------------------------------
    let mut heap = Box::new(GlobalAllocator::<PAGE>::new());
    let t = Instant::now();
    // SAFETY: as above; the buddy that used the mapping is gone.
    unsafe { heap.init(arena.region()).unwrap() };
    let global_init_ms = t.elapsed().as_secs_f64() * 1e3;
    let sec = heap.managed_section(0).unwrap();
    let (start, total) = (sec.start_vaddr, sec.total_pages);
    let initial_largest = heap.largest_free_block_pages();
    let baseline = heap.allocated_bytes();

    // Every aligned 1 GiB block, then no more; first and last page touched.
    let expect_gib = aligned_gib_blocks(start, total);
    let mut gib = Vec::new();
    while let Ok(addr) = heap.alloc_pages(GIB_PAGES, GIB) {
        assert_eq!(addr % GIB, 0);
        assert!(addr >= start && addr + GIB <= start + total * PAGE);
        fill(addr as *mut u8, 64, addr as u64);
        fill((addr + GIB - 64) as *mut u8, 64, !addr as u64);
        gib.push(addr);
    }
    assert_eq!(
        gib.len(),
        expect_gib,
        "1 GiB blocks in [{start:#x}, +{total} pages)"
    );
    for &addr in &gib {
        check(addr as *const u8, 64, addr as u64);
        check((addr + GIB - 64) as *const u8, 64, !addr as u64);
        // SAFETY: allocated above with this count.
        unsafe { heap.dealloc_pages(addr, GIB_PAGES).unwrap() };
    }
    assert_eq!(heap.largest_free_block_pages(), initial_largest);

    // The largest block (max-order, or what the arena allows) and back.
    let t = Instant::now();
    let big = heap
        .alloc_pages(initial_largest, initial_largest * PAGE)
        .expect("largest free block");
    // SAFETY: just allocated.
    unsafe { heap.dealloc_pages(big, initial_largest).unwrap() };
    let largest_alloc_us = t.elapsed().as_secs_f64() * 1e6;

    // Scattered runs at exact addresses over the whole section, plus small
    // objects, all pattern-checked.
    let mut rng = Rng(arena_bytes as u64 | 1);
    let mut runs = Vec::new();
    for i in 0..64 {
        let n = 1 + rng.below(4);
        let slot = total / 64;
        let idx = i * slot + rng.below(slot - n);
        let addr = start + idx * PAGE;
        let got = heap
            .alloc_pages_at(addr, n)
            .expect("a free run at an exact address");
        assert_eq!(got, addr);
        fill(addr as *mut u8, n * PAGE, addr as u64);
        runs.push((addr, n));
    }
    let mut objs = Vec::new();
    for i in 0..2000u64 {
        let size = 1 + (i as usize * 37) % 2048;
        let p = heap
            .alloc(Layout::from_size_align(size, 8).unwrap())
            .unwrap();
        fill(p.as_ptr(), size, i);
        objs.push((p, size, i));
    }
    for (p, size, tag) in objs {
        check(p.as_ptr(), size, tag);
        // SAFETY: allocated above with this layout.
        unsafe { heap.dealloc(p, Layout::from_size_align(size, 8).unwrap()) };
    }
    for (addr, n) in runs {
        check(addr as *const u8, n * PAGE, addr as u64);
        // SAFETY: allocated above with this count.
        unsafe { heap.dealloc_pages(addr, n).unwrap() };
    }
    heap.drain_all();
    assert_eq!(heap.stats().invalid_frees, 0);
    assert_eq!(heap.allocated_bytes(), baseline);
    assert_eq!(heap.largest_free_block_pages(), initial_largest);
    heap.check_invariants();
    drop(heap);
    drop(arena);

    Figures {
        arena_bytes,
        managed_bytes,
        metadata_bytes,
        buddy_init_ms,
        global_init_ms,
        rss_growth_bytes,
        gib_blocks: expect_gib,
        largest_block_pages: initial_largest,
        largest_alloc_us,
    }
}

#[test]
fn two_gib_arena() {
    let f = measure(2 * GIB);
    f.print();
    // 2 GiB minus 8 MiB of metadata holds an aligned 1 GiB block only if
    // the mapping is well placed; an aligned 512 MiB block always fits.
    assert!(f.largest_block_pages >= GIB_PAGES / 2);
}

#[test]
#[ignore = "64 GiB of address space, 256 MiB of metadata: run by `make scale`"]
fn large_arenas() {
    for gib in [1, 16, 64] {
        let f = measure(gib * GIB);
        f.print();
        if gib >= 16 {
            assert!(
                f.gib_blocks >= gib - 2,
                "{} 1 GiB blocks in {gib} GiB",
                f.gib_blocks
            );
            assert_eq!(f.largest_block_pages, 1 << 20, "max-order 20: 4 GiB blocks");
        }
    }
}

/// A region hot-added farther from the first one than the page caches'
/// 32-bit links reach (2^31 pages, 8 TiB with 4 KiB pages): its blocks
/// bypass the per-CPU cache and go straight to the buddy, and everything
/// else works as for a near region (allocation, slabs, accounting, merging
/// back after a drain).
#[test]
fn a_region_beyond_the_page_cache_window_bypasses_the_cache() {
    const MIB: usize = 1 << 20;
    let near = Arena::new(8 * MIB);
    // 9 TiB below the first region (user space ends near 128 TiB on
    // x86_64 and aarch64 Linux, where `near` usually lies).
    let far_addr = (near.ptr.addr() - (9 << 40)) & !(8 * MIB - 1);
    let far = Arena::at(far_addr, 8 * MIB);
    let heap = Box::new(GlobalAllocator::<PAGE>::new());
    // SAFETY: both mappings are ours alone and outlive the heap (declared
    // before it, dropped after).
    unsafe {
        heap.init(near.region()).unwrap();
        heap.add_region(far.region()).unwrap();
    }
    let managed = heap.managed_bytes();
    let in_far = |a: usize| (far_addr..far_addr + 8 * MIB).contains(&a);

    // Take every page, one at a time: the far region's pages come too.
    let mut pages = Vec::new();
    while let Ok(a) = heap.alloc_pages(1, PAGE) {
        fill(a as *mut u8, PAGE, a as u64);
        pages.push(a);
    }
    let far_pages: Vec<usize> = pages.iter().copied().filter(|&a| in_far(a)).collect();
    assert!(far_pages.len() > 1000, "{} far pages", far_pages.len());
    let mut sorted = pages.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), pages.len(), "a page handed out twice");

    // Freeing far pages leaves the CPU's page cache as it is: they go to
    // the buddy, and come back from it.
    let cached = heap.stats().cached_page_bytes;
    for &a in &far_pages {
        check(a as *const u8, PAGE, a as u64);
        // SAFETY: allocated above, freed once.
        unsafe { heap.dealloc_pages(a, 1).unwrap() };
    }
    assert_eq!(
        heap.stats().cached_page_bytes,
        cached,
        "far pages were cached"
    );
    assert_eq!(
        heap.largest_free_block_pages() * PAGE,
        4 * MIB,
        "far pages merged"
    );
    // Slabs and page runs from the far region.
    let layout = Layout::from_size_align(64, 8).unwrap();
    let objects: Vec<_> = (0..10_000).map(|_| heap.alloc(layout).unwrap()).collect();
    assert!(objects.iter().all(|p| in_far(p.as_ptr().addr())));
    let run = heap.alloc_pages(3, PAGE).unwrap();
    assert!(in_far(run));
    heap.check_invariants();
    // SAFETY: all live, each freed once.
    unsafe {
        heap.dealloc_pages(run, 3).unwrap();
        for p in objects {
            heap.dealloc(p, layout);
        }
        for &a in pages.iter().filter(|&&a| !in_far(a)) {
            heap.dealloc_pages(a, 1).unwrap();
        }
    }
    let mut heap = heap;
    heap.drain_all();
    heap.check_invariants();
    let stats = heap.stats();
    assert_eq!(stats.allocated_bytes, 0);
    assert_eq!(stats.invalid_frees, 0);
    assert_eq!(stats.managed_bytes, managed);
}
