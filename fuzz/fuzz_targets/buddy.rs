//! The standalone `BuddyAllocator` against a shadow model: page runs of any
//! count and alignment, lowmem (the first region straddles the 4 GiB limit
//! through its address translation), exact-address runs, in-place resizes,
//! hot-added regions, and deliberately bad frees whose rejections are
//! counted. Invariants B1-B9 are checked after every action.
#![no_main]

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use buddy_slab_allocator::{AllocError, BuddyAllocator, PhysAddr, VirtAddr};
use common::{Arena, PAGE, Shadow};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const LOWMEM_LIMIT: usize = 1 << 32;
static BASE: AtomicUsize = AtomicUsize::new(0);

/// Maps the first arena to 128 KiB below the lowmem limit.
fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
    PhysAddr::from_usize(phys(vaddr.as_usize()))
}

fn phys(vaddr: usize) -> usize {
    vaddr.wrapping_sub(BASE.load(Relaxed)).wrapping_add(LOWMEM_LIMIT - (128 << 10))
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Action {
    Alloc { count: u8, align_shift: u8 },
    AllocLowmem { count: u8, align_shift: u8 },
    AllocAt { page: u16, count: u8 },
    Free { pick: u16 },
    Resize { pick: u16, count: u8 },
    AddRegion { pages: u8, offset: u16 },
    DoubleFree { pick: u8 },
    InteriorFree { pick: u16, page: u8 },
    WrongCount { pick: u16, delta: i8 },
    ForeignFree { page: u8 },
}

fuzz_target!(|actions: Vec<Action>| {
    let arena = Arena::new(1 << 20, PAGE);
    BASE.store(arena.addr(), Relaxed);
    let foreign = Arena::new(16 * PAGE, PAGE);
    let mut extra = Vec::new();
    let mut b = Box::new(BuddyAllocator::<PAGE>::with_virt_to_phys(virt_to_phys));
    // SAFETY: the arena outlives the allocator.
    unsafe { b.init(arena.region(0)).unwrap() };
    let mut m: Shadow<usize> = Shadow::new();
    let mut freed: Vec<(usize, usize)> = Vec::new();
    let mut expected_invalid = 0;

    for &action in actions.iter().take(1024) {
        match action {
            Action::Alloc { count, align_shift } | Action::AllocLowmem { count, align_shift } => {
                let lowmem = matches!(action, Action::AllocLowmem { .. });
                let (count, align) = (count as usize % 40 + 1, PAGE << (align_shift % 7));
                let r = if lowmem { b.alloc_pages_lowmem(count, align) } else { b.alloc_pages(count, align) };
                match r {
                    Ok(a) => {
                        assert_eq!(a % align, 0, "misaligned run");
                        if lowmem {
                            assert!(phys(a + count * PAGE - 1) < LOWMEM_LIMIT, "not lowmem");
                        }
                        m.insert(a, count * PAGE, count);
                    }
                    Err(e) => assert_eq!(e, AllocError::NoMemory),
                }
            }
            Action::AllocAt { page, count } => {
                let count = count as usize % 16 + 1;
                let addr = arena.addr() + (page as usize % 256) * PAGE;
                match b.alloc_pages_at(addr, count) {
                    Ok(a) => {
                        assert_eq!(a, addr);
                        m.insert(a, count * PAGE, count);
                    }
                    Err(e) => {
                        assert!(matches!(e, AllocError::NoMemory | AllocError::NotAllocated), "{e:?}");
                        // Refused: then some page there is live, metadata,
                        // or outside the section. A free range must succeed.
                        let free = (0..count).all(|i| m.covering(addr + i * PAGE).is_none());
                        let sec = b.managed_section(0).unwrap();
                        let inside = addr >= sec.start_vaddr && addr + count * PAGE <= sec.start_vaddr + sec.total_pages * PAGE;
                        let lowmem_split = b.managed_section_count() > 1 && (1..b.managed_section_count()).any(|i| {
                            let s = b.managed_section(i).unwrap();
                            s.region == sec.region
                        });
                        assert!(!(free && inside && !lowmem_split), "alloc_pages_at refused a free range: {e:?}");
                    }
                }
            }
            Action::Free { pick } => {
                if let Some((a, _, _, count)) = m.pick(pick as usize, |_| true) {
                    m.remove(a);
                    // SAFETY: a live run of this allocator.
                    unsafe { b.dealloc_pages(a, count).unwrap() };
                    if freed.len() == 16 {
                        freed.remove(0);
                    }
                    freed.push((a, count));
                }
            }
            Action::Resize { pick, count } => {
                if let Some((a, len, tag, old)) = m.pick(pick as usize, |_| true) {
                    let new = count as usize % 40 + 1;
                    m.remove(a);
                    // SAFETY: a live run; shrinking gives up its tail.
                    match unsafe { b.resize_pages(a, old, new) } {
                        Ok(()) => {
                            common::check_prefix(a, len, len.min(new * PAGE), tag);
                            m.insert(a, new * PAGE, new);
                        }
                        Err(e) => {
                            assert_eq!(e, AllocError::NoMemory);
                            m.insert(a, old * PAGE, old);
                        }
                    }
                }
            }
            Action::AddRegion { pages, offset } => {
                let a = Arena::new((pages as usize % 64 + 1) * PAGE + 64, PAGE);
                // SAFETY: the arena outlives the allocator.
                match unsafe { b.add_region(a.region(offset as usize % 64)) } {
                    Ok(()) => extra.push(a),
                    Err(e) => assert!(matches!(e, AllocError::InvalidParam | AllocError::TooManyRegions), "{e:?}"),
                }
            }
            Action::DoubleFree { pick } => {
                if freed.is_empty() {
                    continue;
                }
                let (a, count) = freed[pick as usize % freed.len()];
                if m.covering(a).is_some() {
                    continue;
                }
                expected_invalid += 1;
                // SAFETY: a deliberate double free: rejected untouched.
                assert_eq!(unsafe { b.dealloc_pages(a, count) }, Err(AllocError::NotAllocated));
            }
            Action::InteriorFree { pick, page } => {
                if let Some((a, _, _, count)) = m.pick(pick as usize, |&c| c > 1) {
                    let q = a + (1 + page as usize % (count - 1)) * PAGE;
                    expected_invalid += 1;
                    // SAFETY: a deliberate interior free: rejected untouched.
                    assert_eq!(unsafe { b.dealloc_pages(q, 1) }, Err(AllocError::NotAllocated));
                }
            }
            Action::WrongCount { pick, delta } => {
                if let Some((a, _, _, count)) = m.pick(pick as usize, |_| true) {
                    let wrong = (count as isize + delta as isize).max(1) as usize;
                    if wrong == count {
                        continue;
                    }
                    expected_invalid += 1;
                    // SAFETY: a deliberate wrong count: rejected untouched.
                    assert_eq!(unsafe { b.dealloc_pages(a, wrong) }, Err(AllocError::NotAllocated));
                }
            }
            Action::ForeignFree { page } => {
                expected_invalid += 1;
                let q = foreign.addr() + (page as usize % 16) * PAGE;
                // SAFETY: not managed: rejected untouched.
                assert_eq!(unsafe { b.dealloc_pages(q, 1) }, Err(AllocError::NotAllocated));
            }
        }
        b.check_invariants();
        let live_pages: usize = m.live.values().map(|v| v.2).sum();
        assert_eq!(b.free_pages() + live_pages, b.total_pages(), "page accounting");
        assert_eq!(b.invalid_frees(), expected_invalid, "rejected frees miscounted");
    }
    let live: Vec<usize> = m.live.keys().copied().collect();
    for a in live {
        let (_, _, count) = m.remove(a);
        // SAFETY: a live run.
        unsafe { b.dealloc_pages(a, count).unwrap() };
    }
    b.check_invariants();
    assert_eq!(b.free_pages(), b.total_pages(), "pages leaked");
    drop(b);
    drop(extra);
});
