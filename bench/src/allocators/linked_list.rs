//! linked_list_allocator 0.10 (first fit) behind a `spin::Mutex`.

use core::{alloc::Layout, ptr::NonNull};

use linked_list_allocator::Heap;
use spin::Mutex;

use super::BenchAlloc;
use crate::arena::Arena;

/// linked_list_allocator over one arena.
pub struct LinkedListBench {
    heap: Mutex<Heap>,
    arena: Arena,
}

impl BenchAlloc for LinkedListBench {
    const NAME: &'static str = "linked_list";

    fn create(arena_bytes: usize) -> Self {
        let arena = Arena::new(arena_bytes);
        let mut heap = Heap::empty();
        // SAFETY: the arena is used by this heap alone and outlives it (field order).
        unsafe { heap.init(arena.start(), arena.len_bytes()) };
        Self {
            heap: Mutex::new(heap),
            arena,
        }
    }

    fn arena_bytes(&self) -> Option<usize> {
        Some(self.arena.len_bytes())
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract: `ptr` is a live block of this heap with this layout.
        unsafe {
            self.heap
                .lock()
                .deallocate(NonNull::new_unchecked(ptr), layout)
        }
    }
}
