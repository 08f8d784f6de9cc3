//! No backend (neither `buddy-slab` nor `tlsf`): every operation panics
//! and every figure is 0, as in the published crate.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::AllocResult;

/// Placeholder byte allocator type when no backend is enabled.
pub type DefaultByteAllocator = ();

const MSG: &str =
    "ax-alloc: no allocator backend enabled, enable the 'tlsf' or 'buddy-slab' feature";

pub struct Backend;

impl Backend {
    pub const NAME: &'static str = "stub";

    pub const fn new() -> Self {
        Self
    }

    pub fn init(&self, _start_vaddr: usize, _size: usize) -> AllocResult {
        unimplemented!("{MSG}")
    }

    pub fn add_memory(&self, _start_vaddr: usize, _size: usize) -> AllocResult {
        unimplemented!("{MSG}")
    }

    pub fn alloc(&self, _layout: Layout) -> AllocResult<NonNull<u8>> {
        unimplemented!("{MSG}")
    }

    /// # Safety
    ///
    /// None needed: it panics.
    pub unsafe fn dealloc(&self, _pos: NonNull<u8>, _layout: Layout) -> bool {
        unimplemented!("{MSG}")
    }

    pub fn alloc_pages(&self, _num_pages: usize, _align: usize) -> AllocResult<usize> {
        unimplemented!("{MSG}")
    }

    pub fn alloc_dma32_pages(&self, _num_pages: usize, _align: usize) -> AllocResult<usize> {
        unimplemented!("{MSG}")
    }

    pub fn alloc_pages_at(
        &self,
        _start: usize,
        _num_pages: usize,
        _align: usize,
    ) -> AllocResult<usize> {
        unimplemented!("{MSG}")
    }

    /// # Safety
    ///
    /// None needed: it panics.
    pub unsafe fn dealloc_pages(&self, _pos: usize, _num_pages: usize) -> bool {
        unimplemented!("{MSG}")
    }

    pub fn used_bytes(&self) -> usize {
        0
    }

    pub fn available_bytes(&self) -> usize {
        0
    }
}

/// The stub has no per-CPU state.
pub fn init_percpu(_cpu_id: usize) {}
