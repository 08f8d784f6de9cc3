//! Userspace references: glibc malloc and mimalloc. They manage process memory themselves,
//! so they get no arena and take no part in the heap-efficiency and metadata workloads.

use core::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;

use super::BenchAlloc;

/// glibc `malloc`/`free` (`aligned_alloc` when the alignment exceeds malloc's 16 bytes).
pub struct GlibcBench;

/// Alignment glibc's `malloc` guarantees on x86_64.
const MALLOC_ALIGN_BYTES: usize = 16;

impl BenchAlloc for GlibcBench {
    const NAME: &'static str = "glibc";
    const USES_ARENA: bool = false;

    fn create(_arena_bytes: usize) -> Self {
        Self
    }

    fn arena_bytes(&self) -> Option<usize> {
        None
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C allocation calls; `aligned_alloc` needs size % align == 0,
        // so round the size up.
        unsafe {
            if layout.align() <= MALLOC_ALIGN_BYTES {
                libc::malloc(layout.size()).cast()
            } else {
                let size = layout.size().next_multiple_of(layout.align());
                libc::aligned_alloc(layout.align(), size).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from malloc/aligned_alloc (caller contract).
        unsafe { libc::free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN_BYTES {
            // SAFETY: `ptr` came from malloc (caller contract).
            unsafe { libc::realloc(ptr.cast(), new_size).cast() }
        } else {
            let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
                return core::ptr::null_mut();
            };
            // SAFETY: forwarding the caller's contract.
            unsafe {
                let new_ptr = self.alloc(new_layout);
                if !new_ptr.is_null() {
                    core::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new_ptr
            }
        }
    }
}

/// mimalloc through its `GlobalAlloc` implementation (not installed as the global allocator).
pub struct MimallocBench;

impl BenchAlloc for MimallocBench {
    const NAME: &'static str = "mimalloc";
    const USES_ARENA: bool = false;

    fn create(_arena_bytes: usize) -> Self {
        Self
    }

    fn arena_bytes(&self) -> Option<usize> {
        None
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: non-zero size (caller contract).
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarding the caller's contract.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarding the caller's contract.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}
