//! [`GlobalPage`]: pages of the global allocator owned by a value.

use ax_memory_addr::{PhysAddr, VirtAddr};

use crate::{AllocResult, PAGE_SIZE, UsageKind, global_allocator};

/// A RAII wrapper of contiguous 4K-sized pages.
///
/// The pages come from [`global_allocator()`] as [`UsageKind::Global`] and go
/// back to it when the value is dropped.
#[derive(Debug)]
pub struct GlobalPage {
    start_vaddr: VirtAddr,
    num_pages: usize,
}

impl GlobalPage {
    /// Allocate one 4K-sized page.
    pub fn alloc() -> AllocResult<Self> {
        Self::alloc_contiguous(1, PAGE_SIZE)
    }

    /// Allocate one 4K-sized page and fill with zero.
    pub fn alloc_zero() -> AllocResult<Self> {
        let mut page = Self::alloc()?;
        page.zero();
        Ok(page)
    }

    /// Allocate `num_pages` contiguous 4K-sized pages aligned to
    /// `alignment` bytes.
    pub fn alloc_contiguous(num_pages: usize, alignment: usize) -> AllocResult<Self> {
        let start = global_allocator().alloc_pages(num_pages, alignment, UsageKind::Global)?;
        Ok(Self {
            start_vaddr: VirtAddr::from(start),
            num_pages,
        })
    }

    /// Get the start virtual address of this page.
    pub fn start_vaddr(&self) -> VirtAddr {
        self.start_vaddr
    }

    /// Get the start physical address of this page, through the caller's
    /// translation.
    pub fn start_paddr<F>(&self, virt_to_phys: F) -> PhysAddr
    where
        F: FnOnce(VirtAddr) -> PhysAddr,
    {
        virt_to_phys(self.start_vaddr)
    }

    /// Get the total size (in bytes) of these page(s).
    pub fn size(&self) -> usize {
        self.num_pages * PAGE_SIZE
    }

    /// Convert to a raw pointer.
    pub fn as_ptr(&self) -> *const u8 {
        self.start_vaddr.as_ptr()
    }

    /// Convert to a mutable raw pointer.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.start_vaddr.as_mut_ptr()
    }

    /// Fill `self` with `byte`.
    pub fn fill(&mut self, byte: u8) {
        // SAFETY: the pages are ours alone (allocated in `alloc_contiguous`,
        // freed only on drop) and `size()` bytes long.
        unsafe { core::ptr::write_bytes(self.as_mut_ptr(), byte, self.size()) }
    }

    /// Fill `self` with zero.
    pub fn zero(&mut self) {
        self.fill(0)
    }

    /// Forms a slice that can read data.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: as in `fill`; the borrow of `self` keeps the pages alive.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.size()) }
    }

    /// Forms a mutable slice that can write data.
    pub fn as_slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `fill`; the exclusive borrow excludes other views.
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
