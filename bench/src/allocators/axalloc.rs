//! ArceOS' byte-allocator backends from `axallocator` 0.2 (TLSF = rlsf, slab, buddy =
//! buddy_system_allocator 0.10), each behind a `spin::Mutex` as `axalloc` wraps them in one
//! `SpinNoIrq` lock. Each backend is given the whole arena directly (ArceOS starts with a small
//! byte heap and grows it from its bitmap page allocator; here there is no page layer, so
//! workload c uses `Layout(4096, 4096)`).

use core::{alloc::Layout, marker::PhantomData, ptr::NonNull};

use axallocator::{BuddyByteAllocator, ByteAllocator, SlabByteAllocator, TlsfByteAllocator};
use spin::Mutex;

use super::BenchAlloc;
use crate::arena::Arena;

/// Names an `axallocator` backend and how to build it.
pub trait AxBackend: ByteAllocator + 'static {
    /// Table name.
    const NAME: &'static str;
    /// A fresh, uninitialised backend.
    fn empty() -> Self;
}

impl AxBackend for TlsfByteAllocator {
    const NAME: &'static str = "ax-tlsf";
    fn empty() -> Self {
        Self::new()
    }
}
impl AxBackend for SlabByteAllocator {
    const NAME: &'static str = "ax-slab";
    fn empty() -> Self {
        Self::new()
    }
}
impl AxBackend for BuddyByteAllocator {
    const NAME: &'static str = "ax-buddy";
    fn empty() -> Self {
        Self::new()
    }
}

/// The backends hold raw pointers into the arena and are not `Send` by themselves.
struct SendBackend<B>(B);
// SAFETY: the backend's pointers point into the arena owned by the same `AxBench`; every
// access goes through the mutex, so moving it to another thread is sound.
unsafe impl<B> Send for SendBackend<B> {}

/// One `axallocator` backend over one arena.
pub struct AxBench<B: AxBackend> {
    heap: Mutex<SendBackend<B>>,
    arena: Arena,
    _backend: PhantomData<fn() -> B>,
}

// SAFETY: all access to the backend goes through the spin mutex (see `SendBackend`).
unsafe impl<B: AxBackend> Sync for AxBench<B> {}

impl<B: AxBackend> BenchAlloc for AxBench<B> {
    const NAME: &'static str = B::NAME;

    fn create(arena_bytes: usize) -> Self {
        let arena = Arena::new(arena_bytes);
        let mut backend = B::empty();
        // The slab backend needs a multiple of 32 KiB; round down for all three alike.
        let usable_bytes = arena.len_bytes() / 0x8000 * 0x8000;
        backend.init(arena.start() as usize, usable_bytes);
        Self {
            heap: Mutex::new(SendBackend(backend)),
            arena,
            _backend: PhantomData,
        }
    }

    fn arena_bytes(&self) -> Option<usize> {
        Some(self.arena.len_bytes())
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap
            .lock()
            .0
            .alloc(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract: `ptr` is a live non-null block of this backend.
        self.heap
            .lock()
            .0
            .dealloc(unsafe { NonNull::new_unchecked(ptr) }, layout)
    }
}
