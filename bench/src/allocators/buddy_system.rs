//! buddy_system_allocator 0.13 behind a `spin::Mutex`.

use core::{alloc::Layout, ptr::NonNull};

use buddy_system_allocator::Heap;
use spin::Mutex;

use super::BenchAlloc;
use crate::arena::Arena;

/// Orders up to 2^31 bytes: enough for a 128 MiB arena.
type BuddyHeap = Heap<32>;

/// buddy_system_allocator over one arena.
pub struct BuddySystemBench {
    heap: Mutex<BuddyHeap>,
    arena: Arena,
}

impl BenchAlloc for BuddySystemBench {
    const NAME: &'static str = "buddy_system";

    fn create(arena_bytes: usize) -> Self {
        let arena = Arena::new(arena_bytes);
        let mut heap = BuddyHeap::new();
        // SAFETY: the arena is used by this heap alone and outlives it (field order).
        unsafe { heap.init(arena.start() as usize, arena.len_bytes()) };
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
            .alloc(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract: `ptr` is a live block of this heap with this layout.
        unsafe {
            self.heap
                .lock()
                .dealloc(NonNull::new_unchecked(ptr), layout)
        }
    }
}
