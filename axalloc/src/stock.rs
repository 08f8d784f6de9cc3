//! Stock ArceOS backend: what the published axalloc does, written anew.
//!
//! - Two levels (default): a bitmap page allocator owns the first region;
//!   the byte allocator (TLSF, slab or buddy from `axallocator`) starts with
//!   [`INIT_HEAP_BYTES`] taken from it and grows by page chunks whenever an
//!   allocation does not fit. Heap chunks are never returned to the page
//!   allocator. Regions added after init go to the byte allocator (the
//!   bitmap page allocator manages a single range).
//! - One level (`level-1`): the byte allocator owns everything and serves
//!   page requests as page-aligned byte allocations.
//!
//! Lock order: `bytes` before `pages` (heap growth holds `bytes`). Both are
//! `SpinNoIrq`, so either may be taken from interrupt handlers.

use core::alloc::Layout;
use core::ptr::NonNull;

use axallocator::{AllocError, AllocResult, BaseAllocator, ByteAllocator};
#[cfg(not(feature = "level-1"))]
use axallocator::{BitmapPageAllocator, PageAllocator};
use kspin::SpinNoIrq;

use crate::PAGE_SIZE;

cfg_if::cfg_if! {
    if #[cfg(feature = "slab")] {
        /// The byte allocator selected by features (slab > buddy > tlsf).
        pub type DefaultByteAllocator = axallocator::SlabByteAllocator;
        const NAME: &str = "slab";
    } else if #[cfg(feature = "buddy")] {
        /// The byte allocator selected by features (slab > buddy > tlsf).
        pub type DefaultByteAllocator = axallocator::BuddyByteAllocator;
        const NAME: &str = "buddy";
    } else if #[cfg(feature = "tlsf")] {
        /// The byte allocator selected by features (slab > buddy > tlsf).
        pub type DefaultByteAllocator = axallocator::TlsfByteAllocator;
        const NAME: &str = "TLSF";
    } else {
        compile_error!("axalloc: enable one of the features tlsf, slab, buddy or buddy-slab");
    }
}

/// Size of the byte allocator's first chunk, taken at init (32 KiB).
#[cfg(not(feature = "level-1"))]
const INIT_HEAP_BYTES: usize = 0x8000;

/// Byte allocator plus (two-level mode) the page allocator feeding it.
pub struct Backend {
    bytes: SpinNoIrq<DefaultByteAllocator>,
    #[cfg(not(feature = "level-1"))]
    pages: SpinNoIrq<PagePool>,
}

/// The bitmap page allocator and the range it manages (the first region).
#[cfg(not(feature = "level-1"))]
struct PagePool {
    bitmap: BitmapPageAllocator<PAGE_SIZE>,
    /// Page-aligned `[start, end)` that `bitmap` manages; empty before init.
    start: usize,
    end: usize,
}

#[cfg(not(feature = "level-1"))]
impl PagePool {
    const fn new() -> Self {
        Self {
            bitmap: BitmapPageAllocator::new(),
            start: 0,
            end: 0,
        }
    }

    fn init(&mut self, start_vaddr: usize, size: usize) {
        self.bitmap.init(start_vaddr, size);
        self.start = start_vaddr.next_multiple_of(PAGE_SIZE);
        self.end = (start_vaddr + size) / PAGE_SIZE * PAGE_SIZE;
    }

    fn alloc_pages(&mut self, num_pages: usize, align_pow2: usize) -> AllocResult<usize> {
        if num_pages == 1 && align_pow2 > PAGE_SIZE {
            return self.alloc_aligned_page(align_pow2);
        }
        self.bitmap.alloc_pages(num_pages, align_pow2)
    }

    /// One page aligned to `align_pow2` (> the page size). The bitmap
    /// allocator takes any free page for a one-page request whatever the
    /// alignment, so ask for two aligned pages and give the second back;
    /// if no such pair is free, try each aligned page in turn
    /// (O(pages / alignment) probes, only when memory is that short).
    fn alloc_aligned_page(&mut self, align_pow2: usize) -> AllocResult<usize> {
        match self.bitmap.alloc_pages(2, align_pow2) {
            Ok(addr) => {
                self.bitmap.dealloc_pages(addr + PAGE_SIZE, 1);
                Ok(addr)
            }
            Err(AllocError::NoMemory) => {
                let first = self.start.next_multiple_of(align_pow2);
                (first..self.end)
                    .step_by(align_pow2)
                    .find_map(|addr| self.bitmap.alloc_pages_at(addr, 1, align_pow2).ok())
                    .ok_or(AllocError::NoMemory)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `[addr, addr + num_pages pages)` lies in the managed range.
    fn contains(&self, addr: usize, num_pages: usize) -> bool {
        num_pages
            .checked_mul(PAGE_SIZE)
            .and_then(|bytes| addr.checked_add(bytes))
            .is_some_and(|end| addr >= self.start && end <= self.end)
    }
}

impl Backend {
    pub const NAME: &'static str = NAME;

    pub const fn new() -> Self {
        Self {
            bytes: SpinNoIrq::new(DefaultByteAllocator::new()),
            #[cfg(not(feature = "level-1"))]
            pages: SpinNoIrq::new(PagePool::new()),
        }
    }

    pub fn init(&self, start_vaddr: usize, size: usize) {
        #[cfg(feature = "level-1")]
        self.bytes.lock().init(start_vaddr, size);
        #[cfg(not(feature = "level-1"))]
        {
            assert!(
                size > INIT_HEAP_BYTES,
                "axalloc: first region of {size:#x} bytes is too small"
            );
            self.pages.lock().init(start_vaddr, size);
            let heap = self
                .pages
                .lock()
                .alloc_pages(INIT_HEAP_BYTES / PAGE_SIZE, PAGE_SIZE)
                .expect("axalloc: cannot take the initial heap from the first region");
            self.bytes.lock().init(heap, INIT_HEAP_BYTES);
        }
    }

    pub fn add_memory(&self, start_vaddr: usize, size: usize) -> AllocResult {
        self.bytes.lock().add_memory(start_vaddr, size)
    }

    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        let mut bytes = self.bytes.lock();
        #[cfg(feature = "level-1")]
        return bytes.alloc(layout);
        #[cfg(not(feature = "level-1"))]
        loop {
            if let Ok(ptr) = bytes.alloc(layout) {
                return Ok(ptr);
            }
            self.grow_heap(&mut bytes, layout)?;
        }
    }

    /// Moves a chunk of pages into the byte allocator so that `layout` fits:
    /// as large as the heap already is (doubling it), else smaller, down to
    /// the least that can hold `layout`. Each successful call adds at least
    /// one page, so the caller's retry loop ends when pages run out.
    #[cfg(not(feature = "level-1"))]
    fn grow_heap(&self, bytes: &mut DefaultByteAllocator, layout: Layout) -> AllocResult {
        // Room for the block, its worst-case alignment padding and the
        // allocator's own per-chunk and per-block headers (one page).
        let need = layout
            .size()
            .checked_add(layout.align())
            .and_then(|n| n.checked_add(PAGE_SIZE))
            .ok_or(AllocError::NoMemory)?;
        let min_pages = need.div_ceil(PAGE_SIZE);
        let mut try_pages = bytes
            .total_bytes()
            .max(need)
            .checked_next_power_of_two()
            .ok_or(AllocError::NoMemory)?
            / PAGE_SIZE;
        loop {
            let n = try_pages.max(min_pages);
            if let Ok(start) = self.pages.lock().alloc_pages(n, PAGE_SIZE) {
                debug!(
                    "expand heap memory: [{:#x}, {:#x})",
                    start,
                    start + n * PAGE_SIZE
                );
                return bytes.add_memory(start, n * PAGE_SIZE).inspect_err(|_| {
                    self.pages.lock().bitmap.dealloc_pages(start, n);
                });
            }
            if n == min_pages {
                return Err(AllocError::NoMemory);
            }
            try_pages /= 2;
        }
    }

    /// # Safety
    ///
    /// `pos`/`layout` are a live allocation from [`Backend::alloc`].
    /// Always `true`: the byte allocators cannot tell a bad free.
    pub unsafe fn dealloc(&self, pos: NonNull<u8>, layout: Layout) -> bool {
        self.bytes.lock().dealloc(pos, layout);
        true
    }

    pub fn alloc_pages(&self, num_pages: usize, align_pow2: usize) -> AllocResult<usize> {
        #[cfg(feature = "level-1")]
        {
            let layout = page_layout(num_pages, align_pow2)?;
            self.alloc(layout).map(|p| p.as_ptr() as usize)
        }
        #[cfg(not(feature = "level-1"))]
        self.pages.lock().alloc_pages(num_pages, align_pow2)
    }

    pub fn alloc_pages_at(
        &self,
        start: usize,
        num_pages: usize,
        align_pow2: usize,
    ) -> AllocResult<usize> {
        #[cfg(feature = "level-1")]
        {
            // A byte allocator cannot place a block at a chosen address.
            let _ = (start, num_pages, align_pow2);
            Err(AllocError::InvalidParam)
        }
        #[cfg(not(feature = "level-1"))]
        {
            let mut pages = self.pages.lock();
            // The bitmap allocator indexes from its base without a check.
            if num_pages == 0 || !pages.contains(start, num_pages) {
                return Err(AllocError::InvalidParam);
            }
            pages.bitmap.alloc_pages_at(start, num_pages, align_pow2)
        }
    }

    /// Frees a page run; says whether the backend took it back (a free it
    /// can tell is bad changes nothing and returns `false`).
    ///
    /// Two levels: the run must lie in the page pool, start on a page and
    /// be allocated there (the bitmap's used count moves only for such a
    /// free). The bitmap cannot tell a run from part of one, nor a heap
    /// chunk from a run. One level: the byte allocators check nothing, so
    /// only a null address or an impossible size is refused.
    ///
    /// # Safety
    ///
    /// `[pos, pos + num_pages * PAGE_SIZE)` was returned by
    /// [`Backend::alloc_pages`] / [`Backend::alloc_pages_at`] with this count.
    pub unsafe fn dealloc_pages(&self, pos: usize, num_pages: usize) -> bool {
        #[cfg(feature = "level-1")]
        {
            let (Ok(layout), Some(ptr)) = (
                page_layout(num_pages, PAGE_SIZE),
                NonNull::new(pos as *mut u8),
            ) else {
                error!("axalloc: rejected dealloc_pages({pos:#x}, {num_pages}): bad run");
                return false;
            };
            // SAFETY: pages were allocated by `alloc` with this size (caller
            // contract); the byte allocators ignore the alignment on free.
            unsafe { self.dealloc(ptr, layout) }
        }
        #[cfg(not(feature = "level-1"))]
        {
            let mut pages = self.pages.lock();
            let accepted = num_pages > 0
                && pos.is_multiple_of(PAGE_SIZE)
                && pages.contains(pos, num_pages)
                && {
                    let used = pages.bitmap.used_pages();
                    pages.bitmap.dealloc_pages(pos, num_pages);
                    pages.bitmap.used_pages() != used
                };
            drop(pages);
            if !accepted {
                error!("axalloc: rejected dealloc_pages({pos:#x}, {num_pages}): not allocated");
            }
            accepted
        }
    }

    pub fn used_bytes(&self) -> usize {
        self.bytes.lock().used_bytes()
    }

    pub fn available_bytes(&self) -> usize {
        self.bytes.lock().available_bytes()
    }

    pub fn used_pages(&self) -> usize {
        #[cfg(feature = "level-1")]
        return self.used_bytes().div_ceil(PAGE_SIZE);
        #[cfg(not(feature = "level-1"))]
        self.pages.lock().bitmap.used_pages()
    }

    pub fn available_pages(&self) -> usize {
        #[cfg(feature = "level-1")]
        return self.available_bytes() / PAGE_SIZE;
        #[cfg(not(feature = "level-1"))]
        self.pages.lock().bitmap.available_pages()
    }
}

#[cfg(feature = "level-1")]
fn page_layout(num_pages: usize, align_pow2: usize) -> AllocResult<Layout> {
    let size = num_pages
        .checked_mul(PAGE_SIZE)
        .ok_or(AllocError::InvalidParam)?;
    Layout::from_size_align(size, align_pow2.max(PAGE_SIZE)).map_err(|_| AllocError::InvalidParam)
}
