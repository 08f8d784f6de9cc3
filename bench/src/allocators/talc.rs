//! talc 5.1 (`Talc<Manual>`) behind a `spin::Mutex`.

use core::alloc::Layout;

use spin::Mutex;
use talc::{DefaultBinning, base::Talc, source::Manual};

use super::BenchAlloc;
use crate::arena::Arena;

/// talc over one arena.
pub struct TalcBench {
    heap: Mutex<Talc<Manual, DefaultBinning>>,
    arena: Arena,
}

impl BenchAlloc for TalcBench {
    const NAME: &'static str = "talc";

    fn create(arena_bytes: usize) -> Self {
        let mut arena = Arena::new(arena_bytes);
        let mut heap = Talc::new(Manual);
        let region = arena.as_mut_slice();
        // SAFETY: the arena is used by this heap alone and outlives it (field order).
        unsafe { heap.claim(region.as_mut_ptr(), region.len()) }.expect("talc claim failed");
        Self {
            heap: Mutex::new(heap),
            arena,
        }
    }

    fn arena_bytes(&self) -> Option<usize> {
        Some(self.arena.len_bytes())
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: non-zero size (caller contract); the heap was claimed in `create`.
        unsafe { self.heap.lock().allocate(layout) }.map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract of `BenchAlloc::dealloc` = talc's `deallocate` contract.
        unsafe { self.heap.lock().deallocate(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Same strategy as talc's own `GlobalAlloc::realloc`: in place if possible.
        // SAFETY: caller contract: `ptr` is live with `layout`, `new_size` non-zero.
        if unsafe { self.heap.lock().try_realloc_in_place(ptr, layout, new_size) } {
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let mut heap = self.heap.lock();
        // SAFETY: non-zero size; on success both blocks are live and distinct.
        unsafe {
            let Some(new_ptr) = heap.allocate(new_layout) else {
                return core::ptr::null_mut();
            };
            core::ptr::copy_nonoverlapping(ptr, new_ptr.as_ptr(), layout.size().min(new_size));
            heap.deallocate(ptr, layout);
            new_ptr.as_ptr()
        }
    }
}
