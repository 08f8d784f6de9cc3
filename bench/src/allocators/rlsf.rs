//! rlsf 0.2 (TLSF) behind a `spin::Mutex`.

use core::{alloc::Layout, ptr::NonNull};

use rlsf::Tlsf;
use spin::Mutex;

use super::BenchAlloc;
use crate::arena::Arena;

/// TLSF parameters: 32 second-level lists, first level up to 2^28 × granularity
/// (enough for a 128 MiB arena); the same shape ArceOS' `TlsfByteAllocator` uses.
type Heap = Tlsf<'static, u32, u32, 28, 32>;

/// `Tlsf` holds raw pointers into the arena, so it is not `Send` by itself.
struct SendHeap(Heap);
// SAFETY: the heap's pointers point into the arena owned by the same `RlsfBench`; every
// access goes through the mutex, so moving it to another thread is sound.
unsafe impl Send for SendHeap {}

/// rlsf over one arena.
pub struct RlsfBench {
    heap: Mutex<SendHeap>,
    arena: Arena,
}

impl BenchAlloc for RlsfBench {
    const NAME: &'static str = "rlsf";

    fn create(arena_bytes: usize) -> Self {
        let mut arena = Arena::new(arena_bytes);
        let mut heap = Heap::new();
        let block = NonNull::from(arena.as_mut_slice());
        // SAFETY: the arena is used by this heap alone and outlives it (field order).
        unsafe { heap.insert_free_block_ptr(block) }.expect("rlsf pool insert failed");
        Self {
            heap: Mutex::new(SendHeap(heap)),
            arena,
        }
    }

    fn arena_bytes(&self) -> Option<usize> {
        Some(self.arena.len_bytes())
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap
            .lock()
            .0
            .allocate(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract: `ptr` is a live block of this heap with this alignment.
        unsafe {
            self.heap
                .lock()
                .0
                .deallocate(NonNull::new_unchecked(ptr), layout.align())
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: caller contract: `ptr` is a live block of this heap.
        unsafe {
            self.heap
                .lock()
                .0
                .reallocate(NonNull::new_unchecked(ptr), new_layout)
        }
        .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }
}
