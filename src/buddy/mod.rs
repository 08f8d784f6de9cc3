//! Buddy page allocator over one or more memory regions.
//!
//! # Algorithm
//! A region is split into a metadata prefix (one 12-byte `PageMeta` per
//! managed page) and the managed pages, carved into the largest blocks that
//! are naturally aligned by *absolute* page frame number. The buddy of the
//! block at frame `p` of order `k` is `p ^ (1 << k)`, so a block of order
//! `k` is always aligned to `PAGE_SIZE << k` and `alloc_pages(n, align)`
//! needs no search for alignment, whatever the region's start.
//!
//! Runs that are not a power of two are served from the next order and the
//! tail is freed at once, so accounting is exact to the page. Free lists are
//! doubly linked by page index (O(1) unlink); a bitmap of non-empty orders
//! per section makes finding a block one `trailing_zeros`. Sections are kept
//! sorted, so address → section is a binary search.
//!
//! Bad frees (double, foreign, wrong count, inside a run) are detected from
//! the head page's metadata before anything is touched, logged and counted.
//!
//! `BuddyAllocator` takes `&mut self` everywhere and never locks: the facade
//! wraps it in the platform's IRQ-safe lock.

mod page_meta;
mod section;
mod section_map;

pub use page_meta::MAX_RUN_PAGES;
pub(crate) use page_meta::{NIL, PageKind, PageMeta};
pub(crate) use section_map::{SectionMap, SectionRef};

use crate::config::{LOWMEM_LIMIT, MAX_ORDER, MAX_SECTIONS, NR_ORDERS};
use crate::error::{AllocError, AllocResult};
use core::ptr::NonNull;
use section::Section;

/// Read-only summary of one managed section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedSection {
    /// Address of the first managed page.
    pub start_vaddr: usize,
    /// Managed pages.
    pub total_pages: usize,
    /// Pages currently free in this section.
    pub free_pages: usize,
    /// Whether the whole section is below the lowmem limit.
    pub lowmem: bool,
    /// The region this section was carved from, metadata prefix included.
    pub region: (usize, usize),
}

/// Page allocator over several sections, `PAGE_SIZE` bytes per page.
///
/// Invariants besides those of `Section`/`PageMeta`:
/// - B8: `sections[..nr_sections]` are `Some`, sorted by start address, and
///   their page ranges do not overlap; the rest are `None`.
/// - B9: `total_pages` is the sum of the sections' `nr_pages`.
pub struct BuddyAllocator<const PAGE_SIZE: usize> {
    sections: [Option<Section>; MAX_SECTIONS],
    nr_sections: usize,
    total_pages: usize,
    invalid_frees: usize,
    virt_to_phys: fn(usize) -> usize,
    lowmem_limit: usize,
}

fn identity(vaddr: usize) -> usize {
    vaddr
}

/// A section just added, as the facade's lock-free map needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewSection {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) base_pfn: usize,
    /// With the region's provenance (B7).
    pub(crate) meta: NonNull<PageMeta>,
}

impl<const PAGE_SIZE: usize> Default for BuddyAllocator<PAGE_SIZE> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const PAGE_SIZE: usize> BuddyAllocator<PAGE_SIZE> {
    const PAGE_SHIFT: u32 = {
        assert!(
            PAGE_SIZE.is_power_of_two() && PAGE_SIZE >= 4096,
            "PAGE_SIZE must be a power of two ≥ 4096"
        );
        PAGE_SIZE.trailing_zeros()
    };

    /// An allocator managing nothing yet; virtual addresses are taken to be
    /// physical ones.
    pub const fn new() -> Self {
        Self::with_virt_to_phys(identity)
    }

    /// An allocator that translates addresses with `virt_to_phys` to decide
    /// what is lowmem.
    pub const fn with_virt_to_phys(virt_to_phys: fn(usize) -> usize) -> Self {
        let _ = Self::PAGE_SHIFT;
        Self {
            sections: [const { None }; MAX_SECTIONS],
            nr_sections: 0,
            total_pages: 0,
            invalid_frees: 0,
            virt_to_phys,
            lowmem_limit: LOWMEM_LIMIT,
        }
    }

    /// Adds the first region. Same as [`Self::add_region`].
    ///
    /// # Safety
    /// See [`Self::add_region`].
    pub unsafe fn init(&mut self, region: &mut [u8]) -> AllocResult {
        // SAFETY: forwarded caller contract.
        unsafe { self.add_region(region) }
    }

    /// Hands `region` to the allocator: its prefix becomes page metadata and
    /// the rest managed pages.
    ///
    /// # Errors
    /// `InvalidParam` if the region cannot hold one page and its metadata,
    /// `MemoryOverlap` if it overlaps a managed region, `TooManyRegions` if
    /// the section table is full.
    ///
    /// Pointers the allocator hands out ([`Self::alloc_pages_ptr`]) carry the
    /// provenance of `region`; the region's provenance is also exposed, so an
    /// address from [`Self::alloc_pages`] may be turned back into a pointer
    /// with [`core::ptr::with_exposed_provenance_mut`].
    ///
    /// # Safety
    /// `region` must be valid for reads and writes for as long as this
    /// allocator (or anything it handed out) is used, and used by nothing
    /// else: the allocator writes metadata into it and hands its pages out.
    pub unsafe fn add_region(&mut self, region: &mut [u8]) -> AllocResult {
        let len = region.len();
        // SAFETY: forwarded caller contract.
        unsafe { self.add_region_raw(region.as_mut_ptr(), len) }.map(|_| ())
    }

    /// [`Self::add_region`] on a raw region; returns the sections created.
    ///
    /// Every pointer the allocator later builds into the region (page
    /// metadata, pages, slabs) is derived from `region` with `with_addr`, so
    /// it carries the region's provenance (strict provenance). The
    /// provenance is also exposed, so that users of the address-typed API
    /// (`alloc_pages` returns a `usize`, as in 0.6) may turn an address back
    /// into a pointer with `core::ptr::with_exposed_provenance_mut` (or an
    /// `as` cast).
    ///
    /// # Safety
    /// As for [`Self::add_region`], for the `len` bytes at `region`.
    pub(crate) unsafe fn add_region_raw(
        &mut self,
        region: *mut u8,
        len: usize,
    ) -> AllocResult<[Option<NewSection>; 2]> {
        let start = region.expose_provenance();
        let end = start.checked_add(len).ok_or(AllocError::InvalidParam)?;
        if start == 0 {
            return Err(AllocError::InvalidParam);
        }
        for s in self.sections() {
            if start < s.region_end && s.region_start < end {
                return Err(AllocError::MemoryOverlap);
            }
        }
        let meta_bytes = core::mem::size_of::<PageMeta>();
        let meta_start = start
            .checked_next_multiple_of(core::mem::align_of::<PageMeta>())
            .ok_or(AllocError::InvalidParam)?;
        if meta_start >= end {
            return Err(AllocError::InvalidParam);
        }
        // Largest page count whose metadata and pages both fit.
        let mut pages = ((end - meta_start) / (PAGE_SIZE + meta_bytes)).min(u32::MAX as usize - 1);
        let data_start = loop {
            if pages == 0 {
                return Err(AllocError::InvalidParam);
            }
            let data = (meta_start + pages * meta_bytes).next_multiple_of(PAGE_SIZE);
            if data
                .checked_add(pages * PAGE_SIZE)
                .is_some_and(|e| e <= end)
            {
                break data;
            }
            pages -= 1;
        };
        // Split at the lowmem limit (assumes the region is linearly mapped;
        // alloc_pages_lowmem checks every block it returns anyway).
        let phys_start = (self.virt_to_phys)(data_start);
        let low_pages = if phys_start >= self.lowmem_limit {
            0
        } else {
            ((self.lowmem_limit - phys_start) >> Self::PAGE_SHIFT).min(pages)
        };
        let parts = [(0, low_pages, true), (low_pages, pages - low_pages, false)];
        let needed = parts.iter().filter(|p| p.1 > 0).count();
        if self.nr_sections + needed > MAX_SECTIONS {
            return Err(AllocError::TooManyRegions);
        }
        let meta = NonNull::new(region.with_addr(meta_start).cast::<PageMeta>())
            .ok_or(AllocError::InvalidParam)?;
        let mut added = [None, None];
        for (slot, &(first, count, lowmem)) in added.iter_mut().zip(parts.iter()) {
            if count == 0 {
                continue;
            }
            let sec_start = data_start + (first << Self::PAGE_SHIFT);
            // SAFETY: meta[first..first + count] lies in the region's prefix
            // (pages * meta_bytes ≤ data_start - meta_start), which the
            // caller gave us exclusively; count < u32::MAX.
            let sec_meta = unsafe { meta.add(first) };
            // SAFETY: see above.
            let section = unsafe {
                Section::new(
                    sec_start >> Self::PAGE_SHIFT,
                    count,
                    sec_meta,
                    (start, end),
                    lowmem,
                )
            };
            let at = self.sections[..self.nr_sections]
                .partition_point(|s| s.as_ref().is_some_and(|s| s.base_pfn < section.base_pfn));
            self.sections[at..=self.nr_sections].rotate_right(1);
            self.sections[at] = Some(section);
            self.nr_sections += 1;
            self.total_pages += count;
            *slot = Some(NewSection {
                start: sec_start,
                end: sec_start + (count << Self::PAGE_SHIFT),
                base_pfn: sec_start >> Self::PAGE_SHIFT,
                meta: sec_meta,
            });
        }
        log::debug!("buddy: region [{start:#x}, {end:#x}) adds {pages} pages at {data_start:#x}");
        Ok(added)
    }

    fn sections(&self) -> impl DoubleEndedIterator<Item = &Section> {
        self.sections[..self.nr_sections].iter().flatten()
    }

    /// Index of the section whose pages contain `addr` (binary search).
    fn find_section(&self, addr: usize) -> Option<usize> {
        let pfn = addr >> Self::PAGE_SHIFT;
        let secs = &self.sections[..self.nr_sections];
        let i = secs.partition_point(|s| s.as_ref().is_some_and(|s| s.base_pfn <= pfn));
        let i = i.checked_sub(1)?;
        let s = secs[i].as_ref()?;
        (pfn < s.base_pfn + s.nr_pages).then_some(i)
    }

    fn section_mut(&mut self, i: usize) -> &mut Section {
        self.sections[i]
            .as_mut()
            .expect("B8: sections[..nr_sections] are Some")
    }

    /// Order of the block that serves `count` pages aligned to `align_bytes`.
    fn order_for(count: usize, align_bytes: usize) -> AllocResult<u32> {
        if count == 0 || !(align_bytes == 0 || align_bytes.is_power_of_two()) {
            return Err(AllocError::InvalidParam);
        }
        let align_pages = (align_bytes >> Self::PAGE_SHIFT).max(1);
        let pages = count.max(align_pages);
        let order = pages
            .checked_next_power_of_two()
            .ok_or(AllocError::NoMemory)?
            .trailing_zeros();
        if order > MAX_ORDER as u32 {
            return Err(AllocError::NoMemory);
        }
        Ok(order)
    }

    /// Allocates `count` contiguous pages aligned to `align_bytes` (0 or a
    /// power of two; at least page alignment). Prefers memory above the
    /// lowmem limit. O(sections + MAX_ORDER).
    ///
    /// # Errors
    /// `InvalidParam` for a zero count or a bad alignment, `NoMemory` when
    /// no block is large enough.
    pub fn alloc_pages(&mut self, count: usize, align_bytes: usize) -> AllocResult<usize> {
        self.alloc_run(count, align_bytes).map(|(_, addr)| addr)
    }

    /// [`Self::alloc_pages`], returning a pointer to the run that carries the
    /// provenance of the region it lies in: what a caller needs to use the
    /// pages under strict provenance (free them with
    /// [`Self::dealloc_pages`] at `ptr.addr()`).
    ///
    /// # Errors
    /// As [`Self::alloc_pages`].
    pub fn alloc_pages_ptr(
        &mut self,
        count: usize,
        align_bytes: usize,
    ) -> AllocResult<NonNull<u8>> {
        let (i, addr) = self.alloc_run(count, align_bytes)?;
        Ok(self.section_mut(i).ptr_at(addr))
    }

    /// Body of [`Self::alloc_pages`]: the section index and address of the
    /// run.
    fn alloc_run(&mut self, count: usize, align_bytes: usize) -> AllocResult<(usize, usize)> {
        let order = Self::order_for(count, align_bytes)?;
        // High sections first: lowmem is kept for those who need it.
        let found = (0..self.nr_sections).rev().find(|&i| {
            self.sections[i]
                .as_ref()
                .is_some_and(|s| !s.lowmem && s.has_order(order))
        });
        let found = found.or_else(|| {
            (0..self.nr_sections).rev().find(|&i| {
                self.sections[i]
                    .as_ref()
                    .is_some_and(|s| s.has_order(order))
            })
        });
        if let Some(i) = found {
            return Ok((i, self.alloc_in(i, order, count)));
        }
        // No single block covers the request: look for a run of adjacent
        // free blocks (only useful when the request is not itself a block).
        let align_pages = (align_bytes >> Self::PAGE_SHIFT).max(1);
        if align_pages < 1 << order {
            let shift = Self::PAGE_SHIFT;
            for i in (0..self.nr_sections).rev() {
                let s = self.section_mut(i);
                if let Some(idx) = s.find_free_run(count, align_pages) {
                    let taken = s.take_range(idx, count);
                    debug_assert!(taken, "find_free_run checked the range");
                    let m = s.meta(idx);
                    m.set_run(PageKind::Allocated, count as u32);
                    return Ok((i, (s.base_pfn + idx) << shift));
                }
            }
        }
        Err(AllocError::NoMemory)
    }

    /// Allocates `count` pages whose physical addresses all lie below the
    /// lowmem limit (DMA32), aligned to `align_bytes`.
    ///
    /// # Errors
    /// As [`Self::alloc_pages`].
    pub fn alloc_pages_lowmem(&mut self, count: usize, align_bytes: usize) -> AllocResult<usize> {
        let order = Self::order_for(count, align_bytes)?;
        for i in 0..self.nr_sections {
            if !self.sections[i]
                .as_ref()
                .is_some_and(|s| s.lowmem && s.has_order(order))
            {
                continue;
            }
            let addr = self.alloc_in(i, order, count);
            let last = addr + (count << Self::PAGE_SHIFT) - 1;
            if (self.virt_to_phys)(addr) < self.lowmem_limit
                && (self.virt_to_phys)(last) < self.lowmem_limit
            {
                return Ok(addr);
            }
            log::error!("buddy: lowmem section maps {addr:#x} above the lowmem limit");
            // SAFETY: the run was allocated just above with this count.
            unsafe { self.dealloc_pages(addr, count)? };
        }
        Err(AllocError::NoMemory)
    }

    fn alloc_in(&mut self, i: usize, order: u32, count: usize) -> usize {
        let shift = Self::PAGE_SHIFT;
        let s = self.section_mut(i);
        let idx = s.alloc_block(order).expect("has_order(order) was checked");
        s.free_run(idx + count, (1 << order) - count);
        let m = s.meta(idx);
        m.set_run(PageKind::Allocated, count as u32);
        (s.base_pfn + idx) << shift
    }

    /// Allocates exactly the pages `[addr, addr + count * PAGE_SIZE)`.
    ///
    /// # Errors
    /// `InvalidParam` if `addr` is not page aligned or `count` is zero or
    /// above [`MAX_RUN_PAGES`], `NotAllocated` if the range is not inside
    /// one section, `NoMemory` if a page in it is not free.
    pub fn alloc_pages_at(&mut self, addr: usize, count: usize) -> AllocResult<usize> {
        if count == 0 || !addr.is_multiple_of(PAGE_SIZE) || count > MAX_RUN_PAGES {
            return Err(AllocError::InvalidParam);
        }
        let i = self.find_section(addr).ok_or(AllocError::NotAllocated)?;
        let s = self.section_mut(i);
        let idx = (addr >> Self::PAGE_SHIFT) - s.base_pfn;
        if idx + count > s.nr_pages {
            return Err(AllocError::NotAllocated);
        }
        if !s.take_range(idx, count) {
            return Err(AllocError::NoMemory);
        }
        let m = s.meta(idx);
        m.set_run(PageKind::Allocated, count as u32);
        Ok(addr)
    }

    /// Finds the section and index of the head of an allocated run, checking
    /// that it is one of `count` pages.
    fn validate_run(
        &mut self,
        addr: usize,
        count: usize,
        what: &str,
    ) -> AllocResult<(usize, usize)> {
        let found = addr
            .is_multiple_of(PAGE_SIZE)
            .then(|| self.find_section(addr))
            .flatten();
        let result = found.ok_or(AllocError::NotAllocated).and_then(|i| {
            let s = self.section_mut(i);
            let idx = (addr >> Self::PAGE_SHIFT) - s.base_pfn;
            let m = s.meta(idx);
            if m.kind() != PageKind::Allocated || m.run_pages() as usize != count {
                return Err(AllocError::NotAllocated);
            }
            Ok((i, idx))
        });
        if result.is_err() {
            self.invalid_frees += 1;
            log::error!(
                "buddy: {what} of {count} pages at {addr:#x} rejected: not an allocated run of that size"
            );
        }
        result
    }

    /// Frees a run from [`Self::alloc_pages`] (or `_lowmem`, `_at`).
    ///
    /// A double free, a foreign address, an address inside a run or a wrong
    /// `count` is rejected before anything changes: it is logged, counted in
    /// [`Self::invalid_frees`] and returned as `NotAllocated`.
    ///
    /// # Safety
    /// The caller owns the run (it was allocated with this `count` and is not
    /// used after this call).
    pub unsafe fn dealloc_pages(&mut self, addr: usize, count: usize) -> AllocResult {
        let (i, idx) = self.validate_run(addr, count, "free")?;
        self.section_mut(i).free_run(idx, count);
        Ok(())
    }

    /// Resizes a run in place from `old_count` to `new_count` pages: shrinking
    /// frees the tail; growing takes the following pages if they are free.
    ///
    /// # Errors
    /// `InvalidParam` for a zero `new_count` or one above
    /// [`MAX_RUN_PAGES`]; `NotAllocated` as for `dealloc_pages`; `NoMemory`
    /// if the pages after the run are not free (the run is unchanged).
    ///
    /// # Safety
    /// As [`Self::dealloc_pages`] for the pages given up when shrinking.
    pub unsafe fn resize_pages(
        &mut self,
        addr: usize,
        old_count: usize,
        new_count: usize,
    ) -> AllocResult {
        if new_count == 0 || new_count > MAX_RUN_PAGES {
            return Err(AllocError::InvalidParam);
        }
        let (i, idx) = self.validate_run(addr, old_count, "resize")?;
        let s = self.section_mut(i);
        if new_count < old_count {
            s.free_run(idx + new_count, old_count - new_count);
        } else if new_count > old_count && !s.take_range(idx + old_count, new_count - old_count) {
            return Err(AllocError::NoMemory);
        }
        s.meta(idx).set_run_pages(new_count as u32);
        Ok(())
    }

    /// Fills `out` with blocks of `1 << order` pages for a per-CPU page
    /// cache, tagged `Cached` (so a stray free of one is rejected). Returns
    /// how many it got.
    pub(crate) fn alloc_cached_blocks(&mut self, order: u32, out: &mut [usize]) -> usize {
        let shift = Self::PAGE_SHIFT;
        let mut n = 0;
        for i in (0..self.nr_sections).rev() {
            let s = self.section_mut(i);
            let base_pfn = s.base_pfn;
            let meta = s.meta;
            s.alloc_blocks(order, out.len() - n, |idx| {
                // SAFETY: `alloc_blocks` hands out indices of blocks inside
                // the section, whose metadata array has nr_pages entries (B7).
                let m = unsafe { &*meta.as_ptr().add(idx) };
                m.set_run(PageKind::Cached, 1 << order);
                out[n] = (base_pfn + idx) << shift;
                n += 1;
            });
            if n == out.len() {
                break;
            }
        }
        n
    }

    /// Frees blocks of `1 << order` pages that a page cache held (tagged
    /// `Cached`). A block not tagged so is logged, counted and skipped.
    pub(crate) fn free_cached_blocks(&mut self, order: u32, addrs: &[usize]) {
        let mut last: Option<usize> = None;
        for &addr in addrs {
            // Blocks of one batch nearly always share a section.
            let pfn = addr >> Self::PAGE_SHIFT;
            let hit = last.filter(|&i| {
                self.sections[i]
                    .as_ref()
                    .is_some_and(|s| pfn >= s.base_pfn && pfn < s.base_pfn + s.nr_pages)
            });
            last = hit.or_else(|| self.find_section(addr));
            let found = last.map(|i| {
                let s = self.section_mut(i);
                let idx = (addr >> Self::PAGE_SHIFT) - s.base_pfn;
                let m = s.meta(idx);
                let ok = m.kind() == PageKind::Cached
                    && m.run_pages() == 1 << order
                    && (s.base_pfn + idx).is_multiple_of(1 << order)
                    && idx + (1 << order) <= s.nr_pages;
                if ok {
                    // A cached block is naturally aligned (P1, checked
                    // above): one block, no run carving.
                    m.set(PageKind::Tail, 0);
                    s.free_block(idx, order);
                }
                ok
            });
            if found != Some(true) {
                self.invalid_frees += 1;
                log::error!("buddy: cached block {addr:#x} (order {order}) is not tagged Cached");
            }
        }
    }

    /// Frees a run the facade claimed (tagged `Cached`) with `count` pages.
    pub(crate) fn free_claimed(&mut self, addr: usize, count: usize) -> AllocResult {
        let i = self.find_section(addr).ok_or(AllocError::NotAllocated)?;
        let s = self.section_mut(i);
        let idx = (addr >> Self::PAGE_SHIFT) - s.base_pfn;
        let m = s.meta(idx);
        if m.kind() != PageKind::Cached || m.run_pages() as usize != count {
            self.invalid_frees += 1;
            return Err(AllocError::NotAllocated);
        }
        m.set(PageKind::Tail, 0);
        s.free_run(idx, count);
        Ok(())
    }

    /// Allocates a naturally aligned block of `1 << order` pages for a slab
    /// and tags its pages (B4) so an object address finds its slab in O(1).
    /// The pointer carries the region's provenance.
    pub(crate) fn alloc_slab(&mut self, order: u32) -> AllocResult<NonNull<u8>> {
        let i = (0..self.nr_sections)
            .rev()
            .find(|&i| {
                self.sections[i]
                    .as_ref()
                    .is_some_and(|s| s.has_order(order))
            })
            .ok_or(AllocError::NoMemory)?;
        let shift = Self::PAGE_SHIFT;
        let s = self.section_mut(i);
        let idx = s.alloc_block(order).expect("has_order(order) was checked");
        s.meta(idx).set(PageKind::Slab, order);
        for t in idx + 1..idx + (1 << order) {
            s.meta(t).set(PageKind::SlabTail, order);
        }
        Ok(s.ptr_at((s.base_pfn + idx) << shift))
    }

    /// Returns a slab block from [`Self::alloc_slab`].
    pub(crate) fn free_slab(&mut self, addr: usize, order: u32) -> AllocResult {
        let i = self.find_section(addr).ok_or(AllocError::NotAllocated)?;
        let s = self.section_mut(i);
        let idx = (addr >> Self::PAGE_SHIFT) - s.base_pfn;
        if !addr.is_multiple_of(PAGE_SIZE) || !s.meta(idx).is(PageKind::Slab, order) {
            self.invalid_frees += 1;
            log::error!("buddy: slab free at {addr:#x} (order {order}) is not a slab head");
            return Err(AllocError::NotAllocated);
        }
        for t in idx..idx + (1 << order) {
            s.meta(t).set(PageKind::Tail, 0);
        }
        s.free_block(idx, order);
        Ok(())
    }

    /// Bytes of managed pages (metadata prefixes excluded).
    pub fn managed_bytes(&self) -> usize {
        self.total_pages << Self::PAGE_SHIFT
    }

    /// Bytes of pages handed out (runs and slabs).
    pub fn allocated_bytes(&self) -> usize {
        (self.total_pages - self.free_pages()) << Self::PAGE_SHIFT
    }

    /// Managed pages.
    pub fn total_pages(&self) -> usize {
        self.total_pages
    }

    /// Free pages.
    pub fn free_pages(&self) -> usize {
        self.sections().map(|s| s.free_pages).sum()
    }

    /// Rejected frees so far (double, foreign, wrong size).
    pub fn invalid_frees(&self) -> usize {
        self.invalid_frees
    }

    /// Number of managed sections.
    pub fn managed_section_count(&self) -> usize {
        self.nr_sections
    }

    /// Summary of section `index` (sorted by address).
    pub fn managed_section(&self, index: usize) -> Option<ManagedSection> {
        let s = self.sections.get(index)?.as_ref()?;
        Some(ManagedSection {
            start_vaddr: s.base_pfn << Self::PAGE_SHIFT,
            total_pages: s.nr_pages,
            free_pages: s.free_pages,
            lowmem: s.lowmem,
            region: (s.region_start, s.region_end),
        })
    }

    /// Free blocks per order over all sections (walks the free lists).
    pub fn free_blocks_per_order(&self) -> [usize; NR_ORDERS] {
        let mut out = [0; NR_ORDERS];
        for s in self.sections() {
            for (order, n) in out.iter_mut().enumerate() {
                *n += s.count_free_blocks(order as u32);
            }
        }
        out
    }

    /// Pages in the largest free block.
    pub fn largest_free_block_pages(&self) -> usize {
        self.sections()
            .filter_map(Section::largest_free_order)
            .max()
            .map_or(0, |o| 1 << o)
    }

    /// Walks every section and panics if an invariant (B1..B9) is broken.
    pub fn check_invariants(&self) {
        let mut total = 0;
        let mut prev_end = 0;
        for s in self.sections() {
            assert!(
                s.base_pfn >= prev_end,
                "B8: sections overlap or are unsorted"
            );
            prev_end = s.base_pfn + s.nr_pages;
            s.check_invariants();
            total += s.nr_pages;
        }
        assert!(
            self.sections[self.nr_sections..]
                .iter()
                .all(Option::is_none),
            "B8"
        );
        assert_eq!(total, self.total_pages, "B9");
    }
}
