//! `tlsf` backend: the stock heap of the line, a TLSF allocator (the
//! published `rlsf` crate) behind one IRQ-safe `ax_sync::SpinLock`, with
//! page runs carved from it as page-aligned blocks.
//!
//! This is our own code over rlsf, with the published backend's behaviour
//! where it has one: regions are inserted whole, a page run is a block of
//! `num_pages * 4096` bytes aligned to `max(alignment, 4096)`, and
//! `used_bytes` counts the bytes handed out (byte requests and page runs).
//! It differs in taking the lock once per call (the published backend
//! takes it twice per allocation) and in refusing with `InvalidParam` what
//! TLSF cannot do (`alloc_dma32_pages`, `alloc_pages_at`; published: panic).
//! Frees are not checked: a bad free corrupts the heap, as in any TLSF.

use core::alloc::Layout;
use core::ptr::NonNull;

use ax_sync::SpinLock;

use crate::{AllocError, AllocResult, PAGE_SIZE};

/// The default byte allocator for TLSF mode: the published crate's type.
pub type DefaultByteAllocator = rlsf::Tlsf<'static, u32, u32, 28, 32>;

struct Heap {
    tlsf: DefaultByteAllocator,
    /// Bytes of the regions given to the heap.
    total_bytes: usize,
    /// Bytes handed out and not freed.
    used_bytes: usize,
}

pub struct Backend {
    heap: SpinLock<Heap>,
}

impl Backend {
    pub const NAME: &'static str = "TLSF";

    pub const fn new() -> Self {
        Self {
            heap: SpinLock::new(Heap {
                tlsf: rlsf::Tlsf::new(),
                total_bytes: 0,
                used_bytes: 0,
            }),
        }
    }

    pub fn init(&self, start_vaddr: usize, size: usize) -> AllocResult {
        self.add_memory(start_vaddr, size)
    }

    pub fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult {
        let start = NonNull::new(start_vaddr as *mut u8).ok_or(AllocError::InvalidParam)?;
        let block = NonNull::slice_from_raw_parts(start, size);
        let mut heap = self.heap.lock_irqsave();
        // SAFETY: the caller of `GlobalAllocator::init`/`add_memory` hands
        // the region over for good (valid, writable, used by nothing else).
        unsafe { heap.tlsf.insert_free_block_ptr(block) }.ok_or(AllocError::InvalidParam)?;
        heap.total_bytes += size;
        Ok(())
    }

    #[inline]
    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        let mut heap = self.heap.lock_irqsave();
        let ptr = heap.tlsf.allocate(layout).ok_or(AllocError::NoMemory)?;
        heap.used_bytes += layout.size();
        Ok(ptr)
    }

    /// Always `true`: TLSF cannot tell a bad free.
    ///
    /// # Safety
    ///
    /// `pos`/`layout` are a live allocation from [`Backend::alloc`].
    #[inline]
    pub unsafe fn dealloc(&self, pos: NonNull<u8>, layout: Layout) -> bool {
        let mut heap = self.heap.lock_irqsave();
        // SAFETY: a live block of this heap allocated with this alignment
        // (caller contract).
        unsafe { heap.tlsf.deallocate(pos, layout.align()) };
        heap.used_bytes -= layout.size();
        true
    }

    pub fn alloc_pages(&self, num_pages: usize, alignment: usize) -> AllocResult<usize> {
        let size = num_pages
            .checked_mul(PAGE_SIZE)
            .ok_or(AllocError::InvalidParam)?;
        let layout = Layout::from_size_align(size, alignment.max(PAGE_SIZE))
            .map_err(|_| AllocError::InvalidParam)?;
        let mut heap = self.heap.lock_irqsave();
        let ptr = heap.tlsf.allocate(layout).ok_or(AllocError::NoMemory)?;
        heap.used_bytes += size;
        Ok(ptr.as_ptr() as usize)
    }

    /// TLSF cannot place a block below a physical address.
    pub fn alloc_dma32_pages(&self, _num_pages: usize, _alignment: usize) -> AllocResult<usize> {
        Err(AllocError::InvalidParam)
    }

    /// TLSF cannot place a block at an address.
    pub fn alloc_pages_at(
        &self,
        _start: usize,
        _num_pages: usize,
        _alignment: usize,
    ) -> AllocResult<usize> {
        Err(AllocError::InvalidParam)
    }

    /// Always `true` for a non-null `pos`: TLSF cannot tell a bad free.
    ///
    /// # Safety
    ///
    /// `pos`/`num_pages` are a live run from [`Backend::alloc_pages`].
    pub unsafe fn dealloc_pages(&self, pos: usize, num_pages: usize) -> bool {
        let Some(ptr) = NonNull::new(pos as *mut u8) else {
            return false;
        };
        let mut heap = self.heap.lock_irqsave();
        // SAFETY: a live run of this heap (caller contract). Its alignment
        // was at least PAGE_SIZE, and rlsf finds the header of every block
        // aligned to GRANULARITY (32 bytes) or more the same way, so
        // PAGE_SIZE names the alignment it was allocated with.
        unsafe { heap.tlsf.deallocate(ptr, PAGE_SIZE) };
        heap.used_bytes -= num_pages * PAGE_SIZE;
        true
    }

    pub fn used_bytes(&self) -> usize {
        self.heap.lock_irqsave().used_bytes
    }

    pub fn available_bytes(&self) -> usize {
        let heap = self.heap.lock_irqsave();
        heap.total_bytes.saturating_sub(heap.used_bytes)
    }
}

/// TLSF has no per-CPU state.
pub fn init_percpu(_cpu_id: usize) {}
