//! The allocators under test, each behind the one [`BenchAlloc`] trait.
//!
//! Arena allocators own a fresh pre-faulted [`Arena`](crate::arena::Arena) of the requested
//! size; single-threaded peers sit behind a `spin::Mutex` (as ArceOS wraps its heap in one
//! lock); the userspace references (glibc, mimalloc) manage process memory themselves.
//!
//! Every adapter struct declares its allocator field *before* its arena field, so the
//! allocator is dropped first and never outlives the memory it manages.

use core::alloc::Layout;

pub mod axalloc;
pub mod buddy_system;
pub mod linked_list;
#[cfg(feature = "ours")]
pub mod ours;
pub mod rlsf;
pub mod seed;
pub mod system;
pub mod talc;

/// Page size used by every page API in the harness.
pub const PAGE_BYTES: usize = 4096;

/// One allocator as the workloads see it.
///
/// Implementors are created once per (workload, allocator) pair through [`BenchAlloc::create`]
/// and shared by reference between the workload's threads.
pub trait BenchAlloc: Send + Sync + Sized + 'static {
    /// Short display name (table column).
    const NAME: &'static str;

    /// Whether the allocator manages the arena it is given (false for glibc and mimalloc,
    /// which use process memory; the space workloads f and h do not apply to them).
    const USES_ARENA: bool = true;

    /// Whether the allocator has a page API (`alloc_pages`/`dealloc_pages`).
    const HAS_PAGE_API: bool = false;

    /// Creates an instance managing a fresh arena of `arena_bytes` bytes (ignored by
    /// allocators that manage process memory themselves).
    ///
    /// # Panics
    /// Panics if the allocator refuses the arena (a harness bug, not a measurement).
    fn create(arena_bytes: usize) -> Self;

    /// Size of the arena this instance manages, or `None` for system allocators.
    fn arena_bytes(&self) -> Option<usize>;

    /// Allocates a block for `layout`; null on failure.
    ///
    /// # Safety
    /// - `layout.size()` must be non-zero.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8;

    /// Frees a block.
    ///
    /// # Safety
    /// - `ptr` must come from `alloc`/`realloc` on this instance with this `layout` and must
    ///   not have been freed since.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout);

    /// Resizes a block to `new_size` bytes (same alignment); null on failure, in which case
    /// the old block is still live. The default allocates, copies and frees.
    ///
    /// # Safety
    /// - As for [`dealloc`](Self::dealloc); `new_size` must be non-zero.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: `new_size` is non-zero (caller contract).
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are live, distinct, and at least `min(old, new)` bytes long.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }

    /// Allocates `count` contiguous pages aligned to `align_bytes`; `None` on failure or
    /// when the allocator has no page API.
    fn alloc_pages(&self, _count: usize, _align_bytes: usize) -> Option<usize> {
        None
    }

    /// Frees pages from [`alloc_pages`](Self::alloc_pages).
    ///
    /// # Safety
    /// - `addr`/`count` must be exactly a live result of `alloc_pages` on this instance.
    unsafe fn dealloc_pages(&self, _addr: usize, _count: usize) {
        unreachable!("{} has no page API", Self::NAME)
    }
}
