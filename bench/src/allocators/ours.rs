//! This crate (`buddy-slab-allocator` from the workspace root) through its `GlobalAllocator`
//! facade with the default host platform (each thread is its own CPU).

use core::{alloc::Layout, ptr::NonNull};

use buddy_slab_allocator::GlobalAllocator;

use super::{BenchAlloc, PAGE_BYTES};
use crate::arena::Arena;

/// This crate over one arena.
pub struct OursBench {
    /// Boxed so its address is stable: the allocator must not move after `init`.
    heap: Box<GlobalAllocator<PAGE_BYTES>>,
    arena: Arena,
}

impl BenchAlloc for OursBench {
    const NAME: &'static str = "ours";
    const HAS_PAGE_API: bool = true;

    fn create(arena_bytes: usize) -> Self {
        let mut arena = Arena::new(arena_bytes);
        let heap = Box::new(GlobalAllocator::<PAGE_BYTES>::new());
        // SAFETY: the arena is used by this allocator alone and outlives it (field order);
        // the allocator is boxed and never moves after init.
        unsafe { heap.init(arena.as_mut_slice()) }.expect("init of this crate's allocator failed");
        Self { heap, arena }
    }

    fn arena_bytes(&self) -> Option<usize> {
        Some(self.arena.len_bytes())
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap
            .alloc(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract: `ptr` is a live non-null block of this allocator.
        unsafe { self.heap.dealloc(NonNull::new_unchecked(ptr), layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarding the caller's contract to the crate's `GlobalAlloc::realloc`.
        unsafe { core::alloc::GlobalAlloc::realloc(&*self.heap, ptr, layout, new_size) }
    }

    fn alloc_pages(&self, count: usize, align_bytes: usize) -> Option<usize> {
        self.heap.alloc_pages(count, align_bytes).ok()
    }

    unsafe fn dealloc_pages(&self, addr: usize, count: usize) {
        // SAFETY: caller contract: `addr`/`count` is a live result of `alloc_pages`.
        unsafe { self.heap.dealloc_pages(addr, count) }
            .expect("dealloc_pages rejected a live range");
    }
}
