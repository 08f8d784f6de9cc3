//! The standalone `SlabAllocator`, fed slabs by a standalone buddy, against
//! a shadow model: objects of every class and alignment, drains, and
//! deliberately bad frees (double, interior, another class, foreign) whose
//! rejections are counted. S1, S2, L1 and L2 are checked after every action.
#![no_main]

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use buddy_slab_allocator::{AllocError, BuddyAllocator, SlabAllocResult, SlabAllocator, SlabDeallocResult};
use common::{Arena, PAGE, Shadow};
use core::alloc::Layout;
use core::ptr::NonNull;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Action {
    Alloc { size: u16, align_shift: u8 },
    Free { pick: u16 },
    Drain,
    DoubleFree { pick: u8 },
    InteriorFree { pick: u16, offset: u16 },
    WrongClassFree { pick: u16, size: u16 },
    ForeignFree { offset: u16 },
}

fn class_of(layout: Layout) -> Option<usize> {
    SlabAllocator::<PAGE>::default_table().class_for(layout).ok().map(|c| c.index())
}

fuzz_target!(|actions: Vec<Action>| {
    // Aligned to the largest slab (64 KiB) so that the slab-sized block
    // around any pointer into it, for any class, is readable: the contract
    // of `SlabAllocator::dealloc` that makes even bad frees safe to try.
    let arena = Arena::new(2 << 20, 64 << 10);
    let foreign = Arena::new(64 << 10, 64 << 10);
    let mut buddy = Box::new(BuddyAllocator::<PAGE>::new());
    // SAFETY: the arena outlives both allocators.
    unsafe { buddy.init(arena.region(0)).unwrap() };
    let pages0 = buddy.free_pages();
    let mut slab = Box::new(SlabAllocator::<PAGE>::new());
    let mut m: Shadow<Layout> = Shadow::new();
    let mut freed: Vec<(usize, Layout)> = Vec::new();
    let mut expected_invalid = 0;

    let give_back = |buddy: &mut BuddyAllocator<PAGE>, r: SlabDeallocResult| {
        if let SlabDeallocResult::FreeSlab { base, pages } = r {
            // SAFETY: the slab allocator returned this block.
            unsafe { buddy.dealloc_pages(base, pages).unwrap() };
        }
    };

    for &action in actions.iter().take(1024) {
        match action {
            Action::Alloc { size, align_shift } => {
                let layout = Layout::from_size_align(size as usize % 2048 + 1, 1 << (align_shift % 12)).unwrap();
                let p = loop {
                    match slab.alloc(layout) {
                        Ok(SlabAllocResult::Allocated(p)) => break Some(p),
                        Ok(SlabAllocResult::NeedsSlab { size_class, pages }) => {
                            match buddy.alloc_pages(pages, pages * PAGE) {
                                // SAFETY: a fresh block of the class's slab
                                // size, aligned to it.
                                Ok(a) => unsafe { slab.add_slab(size_class, a, pages * PAGE, 0).unwrap() },
                                Err(e) => {
                                    assert_eq!(e, AllocError::NoMemory);
                                    break None;
                                }
                            }
                        }
                        Err(e) => {
                            assert_eq!(e, AllocError::InvalidParam);
                            assert!(layout.align() > layout.size().next_power_of_two().min(2048) || class_of(layout).is_none());
                            break None;
                        }
                    }
                };
                if let Some(p) = p {
                    assert_eq!(p.as_ptr() as usize % layout.align(), 0, "misaligned");
                    m.insert(p.as_ptr() as usize, layout.size(), layout);
                }
            }
            Action::Free { pick } => {
                if let Some((p, _, _, layout)) = m.pick(pick as usize, |_| true) {
                    m.remove(p);
                    // SAFETY: a live object of this allocator.
                    let r = unsafe { slab.dealloc(NonNull::new(p as *mut u8).unwrap(), layout) };
                    give_back(&mut buddy, r);
                    if freed.len() == 16 {
                        freed.remove(0);
                    }
                    freed.push((p, layout));
                }
            }
            Action::Drain => slab.drain(|base, pages| {
                // SAFETY: the slab allocator returned this block.
                unsafe { buddy.dealloc_pages(base, pages).unwrap() };
            }),
            Action::DoubleFree { pick } => {
                if freed.is_empty() {
                    continue;
                }
                let (p, layout) = freed[pick as usize % freed.len()];
                if m.covering(p).is_some() {
                    continue;
                }
                expected_invalid += 1;
                // SAFETY: a deliberate double free; the block around it is
                // in the arena (readable), and it must be rejected.
                let r = unsafe { slab.dealloc(NonNull::new(p as *mut u8).unwrap(), layout) };
                assert_eq!(r, SlabDeallocResult::Done);
            }
            Action::InteriorFree { pick, offset } => {
                if let Some((p, len, _, layout)) = m.pick(pick as usize, |l| l.size() > 1) {
                    let q = p + 1 + offset as usize % (len - 1);
                    expected_invalid += 1;
                    // SAFETY: a deliberate interior free; must be rejected.
                    let r = unsafe { slab.dealloc(NonNull::new(q as *mut u8).unwrap(), layout) };
                    assert_eq!(r, SlabDeallocResult::Done);
                }
            }
            Action::WrongClassFree { pick, size } => {
                if let Some((p, _, _, layout)) = m.pick(pick as usize, |_| true) {
                    let wrong = Layout::from_size_align(size as usize % 2048 + 1, 1).unwrap();
                    if class_of(wrong) == class_of(layout) {
                        continue;
                    }
                    expected_invalid += 1;
                    // SAFETY: a deliberate wrong-class free; the block around
                    // it is in the arena or is a slab; must be rejected.
                    let r = unsafe { slab.dealloc(NonNull::new(p as *mut u8).unwrap(), wrong) };
                    assert_eq!(r, SlabDeallocResult::Done);
                }
            }
            Action::ForeignFree { offset } => {
                let q = foreign.addr() + (offset as usize % (60 << 10)) / 8 * 8;
                expected_invalid += 1;
                // SAFETY: the 64 KiB-aligned block around it is the zeroed,
                // readable foreign arena; must be rejected.
                let r = unsafe { slab.dealloc(NonNull::new(q as *mut u8).unwrap(), Layout::from_size_align(8, 8).unwrap()) };
                assert_eq!(r, SlabDeallocResult::Done);
            }
        }
        slab.check_invariants();
        let s = slab.stats();
        assert_eq!(s.live_objects, m.live.len(), "live objects");
        assert_eq!(s.invalid_frees, expected_invalid, "rejected frees miscounted");
        assert_eq!((s.poison_faults, s.red_zone_faults), (0, 0), "false corruption report");
    }
    let live: Vec<usize> = m.live.keys().copied().collect();
    for p in live {
        let (_, _, layout) = m.remove(p);
        // SAFETY: live objects.
        let r = unsafe { slab.dealloc(NonNull::new(p as *mut u8).unwrap(), layout) };
        give_back(&mut buddy, r);
    }
    slab.drain(|base, pages| {
        // SAFETY: the slab allocator returned this block.
        unsafe { buddy.dealloc_pages(base, pages).unwrap() };
    });
    assert_eq!(slab.stats().slabs, 0);
    buddy.check_invariants();
    assert_eq!(buddy.free_pages(), pages0, "slab pages leaked");
});
