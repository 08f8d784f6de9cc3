//! [`GlobalPage`]: owned, contiguous 4 KiB pages from the global allocator.

use axerrno::{AxError, AxResult};
use memory_addr::{PhysAddr, VirtAddr};

use crate::{PAGE_SIZE, UsageKind, global_allocator};

/// Contiguous 4 KiB pages owned by this value (accounted as
/// [`UsageKind::Global`]); they go back to the allocator on drop.
#[derive(Debug)]
pub struct GlobalPage {
    start_vaddr: VirtAddr,
    num_pages: usize,
}

impl GlobalPage {
    /// Allocates one page.
    pub fn alloc() -> AxResult<Self> {
        Self::alloc_contiguous(1, PAGE_SIZE)
    }

    /// Allocates one page filled with zeros.
    pub fn alloc_zero() -> AxResult<Self> {
        let mut page = Self::alloc()?;
        page.zero();
        Ok(page)
    }

    /// Allocates `num_pages` contiguous pages aligned to `alignment` bytes.
    pub fn alloc_contiguous(num_pages: usize, alignment: usize) -> AxResult<Self> {
        let vaddr = global_allocator()
            .alloc_pages(num_pages, alignment, UsageKind::Global)
            .map_err(|_| AxError::NoMemory)?;
        Ok(Self {
            start_vaddr: vaddr.into(),
            num_pages,
        })
    }

    /// Start virtual address.
    pub fn start_vaddr(&self) -> VirtAddr {
        self.start_vaddr
    }

    /// Start physical address, through the caller's translation.
    pub fn start_paddr<F>(&self, virt_to_phys: F) -> PhysAddr
    where
        F: FnOnce(VirtAddr) -> PhysAddr,
    {
        virt_to_phys(self.start_vaddr)
    }

    /// Size of the pages in bytes.
    pub fn size(&self) -> usize {
        self.num_pages * PAGE_SIZE
    }

    /// Raw pointer to the first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.start_vaddr.as_ptr()
    }

    /// Mutable raw pointer to the first byte.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.start_vaddr.as_mut_ptr()
    }

    /// Fills every byte with `byte`.
    pub fn fill(&mut self, byte: u8) {
        self.as_slice_mut().fill(byte);
    }

    /// Fills every byte with zero.
    pub fn zero(&mut self) {
        self.fill(0)
    }

    /// The pages as a byte slice.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `self` owns `size()` bytes of mapped memory at `as_ptr()`
        // from the allocator; shared access follows `&self`.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.size()) }
    }

    /// The pages as a mutable byte slice.
    pub fn as_slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; exclusive access follows `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(self.as_mut_ptr(), self.size()) }
    }
}

impl Drop for GlobalPage {
    fn drop(&mut self) {
        global_allocator().dealloc_pages(
            self.start_vaddr.as_usize(),
            self.num_pages,
            UsageKind::Global,
        );
    }
}
