//! Misuse from safe code: every safe public function is sound, whatever its
//! caller does. Compile-time refusals (a lock implemented without
//! `unsafe`, a size-class table of another page size) are checked by
//! trybuild against tests/compile-fail; the run-time ones here are driven
//! from a crate that forbids `unsafe` (and run under Miri, `make miri`).
#![forbid(unsafe_code)]

use buddy_slab_allocator::{
    AllocError, BuddyAllocator, GlobalAllocator, SlabAllocResult, SlabAllocator,
};
use core::alloc::Layout;

#[test]
#[cfg_attr(miri, ignore = "runs the compiler")]
fn compile_time_refusals() {
    trybuild::TestCases::new().compile_fail("tests/compile-fail/*.rs");
}

#[test]
fn an_allocator_without_memory_refuses_everything() {
    let heap = GlobalAllocator::<4096>::new();
    let l = Layout::from_size_align(64, 8).unwrap();
    assert_eq!(heap.alloc(l), Err(AllocError::NoMemory));
    assert_eq!(
        heap.alloc(Layout::from_size_align(0, 1).unwrap()),
        Err(AllocError::InvalidParam)
    );
    assert!(heap.alloc_pages(1, 0).is_err());
    assert!(heap.alloc_pages(0, 0).is_err());
    assert!(heap.alloc_pages(1, 3).is_err());
    assert!(heap.alloc_pages_at(0x1000, 1).is_err());
    assert!(heap.alloc_pages_lowmem(1, 0).is_err());
    heap.drain();
    heap.check_invariants();
    let s = heap.stats();
    assert_eq!((s.managed_bytes, s.allocated_bytes), (0, 0));
    assert_eq!(heap.cpu_stats(0), None);
    assert_eq!(heap.cpu_slots(), 0);
}

#[test]
fn a_slab_allocator_without_slabs_asks_for_them() {
    let mut slab = SlabAllocator::<4096>::new();
    let l = Layout::from_size_align(100, 8).unwrap();
    let class = slab.table().class_for(l).unwrap();
    assert!(matches!(
        slab.alloc(l),
        Ok(SlabAllocResult::NeedsSlab { size_class, .. }) if size_class == class
    ));
    // A class of another table (here the seed table's last class, 2048 B)
    // is one of this table's classes or asks for a slab of this table's
    // geometry: never an object of the other table's size.
    let seed = SlabAllocator::<4096>::seed_table();
    let foreign = seed
        .class_for(Layout::from_size_align(2048, 8).unwrap())
        .unwrap();
    match slab.alloc_class(foreign) {
        SlabAllocResult::NeedsSlab { pages, .. } => {
            assert_eq!(pages, 1 << slab.table().slab_order(foreign));
        }
        SlabAllocResult::Allocated(_) => panic!("no slab was given"),
    }
    assert!(
        slab.alloc(Layout::from_size_align(4096, 8).unwrap())
            .is_err()
    );
    assert!(slab.take_faults().is_empty());
    slab.drain(|_, _| panic!("nothing to return"));
    slab.check_invariants();
}

#[test]
fn regions_are_checked_before_anything_is_written() {
    let mut buddy = BuddyAllocator::<4096>::new();
    assert_eq!(buddy.alloc_pages(1, 0), Err(AllocError::NoMemory));
    assert_eq!(buddy.alloc_pages(0, 0), Err(AllocError::InvalidParam));
    assert_eq!(buddy.alloc_pages_at(4096, 1), Err(AllocError::NotAllocated));
    // Reserving takes no memory (only a prepared region, `unsafe`, does).
    assert_eq!(
        buddy.reserve_region(core::ptr::null_mut(), 1 << 20).err(),
        Some(AllocError::InvalidParam)
    );
    let fake = core::ptr::without_provenance_mut::<u8>(0x1000_0000);
    let plan = buddy.reserve_region(fake, 1 << 20).unwrap();
    assert_eq!(
        buddy.reserve_region(fake, 4096).err(),
        Some(AllocError::MemoryOverlap),
        "a reserved range is taken"
    );
    // The plan is dropped unprepared: the reservation stays, nothing is
    // managed, nothing was written.
    drop(plan);
    assert_eq!(buddy.managed_bytes(), 0);
    buddy.check_invariants();
}
