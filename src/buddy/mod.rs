//! Buddy page allocator over one or more memory regions.
//!
//! # Algorithm
//! A region is split into a metadata prefix (one 12-byte `PageMeta` per
//! managed page, then the free maps: about a bit per page) and the
//! managed pages, carved into the largest blocks that
//! are naturally aligned by *absolute* page frame number. The buddy of the
//! block at frame `p` of order `k` is `p ^ (1 << k)`, so a block of order
//! `k` is always aligned to `PAGE_SIZE << k` and `alloc_pages(n, align)`
//! needs no search for alignment, whatever the region's start.
//!
//! Runs that are not a power of two are served from the next order and the
//! tail is freed at once, so accounting is exact to the page. Free blocks
//! are bits in per-order bitmaps with a summary tree (`free_map`), so the
//! lowest or highest free block of an order is a few `trailing_zeros` and
//! freed memory is reused in address order; a bitmap of non-empty orders
//! per section picks the order. Sections are kept sorted, so address →
//! section is a binary search.
//!
//! Bad frees (double, foreign, wrong count, inside a run) are detected from
//! the head page's metadata before anything is touched, counted and
//! returned as errors; nothing here logs (see `crate::fault`).
//!
//! `BuddyAllocator` takes `&mut self` everywhere and never locks: the facade
//! wraps it in the platform's IRQ-safe lock. Adding a region is split so
//! that the O(pages) metadata setup runs outside that lock:
//! [`BuddyAllocator::reserve_region`] (checks and reserves the range),
//! [`RegionPlan::prepare`] (writes the metadata, no `&self`), and
//! [`BuddyAllocator::commit_region`] (publishes the sections).

mod free_map;
pub(crate) mod page_meta;
mod region;
mod section;
mod section_map;

pub use page_meta::MAX_RUN_PAGES;
pub(crate) use page_meta::{CachedBlock, ClaimedRun, MAX_OWNER_CPUS, NIL, PageKind, PageMeta};
pub use region::{NewSection, PreparedRegion, RegionPlan};
pub(crate) use section_map::{SectionCache, SectionMap};

use crate::config::{MAX_ORDER, MAX_SECTIONS, NR_ORDERS};
use crate::error::{AllocError, AllocResult};
use crate::fault::{Fault, FaultKind, FaultLog};
use core::ptr::NonNull;
use memory_addr::{PhysAddr, VirtAddr};
use section::{Placement, Section};

/// The lowmem (DMA32) limit as a physical address: the `lowmem-limit` knob
/// of the configuration (`usize` there). Sections whose physical addresses
/// lie below it serve [`BuddyAllocator::alloc_pages_lowmem`] (and the
/// facade's `alloc_pages_lowmem`, `alloc_pages_lowmem_vaddr`).
pub const LOWMEM_LIMIT: PhysAddr = PhysAddr::from_usize(crate::config::LOWMEM_LIMIT);

/// CPU id recorded in faults the buddy finds (it has no CPU of its own).
const NO_CPU: usize = u32::MAX as usize;

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
/// - B11: `reserved[..nr_reserved]` are the regions being prepared outside
///   the lock: disjoint from every section's region and from each other,
///   holding `reserved_sections` section slots in all
///   (`nr_sections + reserved_sections <= MAX_SECTIONS`).
pub struct BuddyAllocator<const PAGE_SIZE: usize> {
    sections: [Option<Section>; MAX_SECTIONS],
    nr_sections: usize,
    total_pages: usize,
    invalid_frees: usize,
    virt_to_phys: fn(VirtAddr) -> PhysAddr,
    lowmem_limit: PhysAddr,
    /// `(start, end, sections, ticket)` per reservation.
    reserved: [(usize, usize, usize, usize); MAX_SECTIONS],
    nr_reserved: usize,
    reserved_sections: usize,
    faults: FaultLog,
}

const fn identity(vaddr: VirtAddr) -> PhysAddr {
    PhysAddr::from_usize(vaddr.as_usize())
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
    /// what is lowmem (physically below [`LOWMEM_LIMIT`]). The translation
    /// runs when a region is added (to split it at the limit) and on every
    /// lowmem allocation (to check the run's first and last byte).
    pub const fn with_virt_to_phys(virt_to_phys: fn(VirtAddr) -> PhysAddr) -> Self {
        let _ = Self::PAGE_SHIFT;
        Self {
            sections: [const { None }; MAX_SECTIONS],
            nr_sections: 0,
            total_pages: 0,
            invalid_frees: 0,
            virt_to_phys,
            lowmem_limit: LOWMEM_LIMIT,
            reserved: [(0, 0, 0, 0); MAX_SECTIONS],
            nr_reserved: 0,
            reserved_sections: 0,
            faults: FaultLog::new(),
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
                    s.meta(idx).start_run(count as u32);
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
            if self.phys(addr) < self.lowmem_limit && self.phys(last) < self.lowmem_limit {
                return Ok(addr);
            }
            self.faults
                .push(Fault::new(FaultKind::LowmemAboveLimit, addr, count, NO_CPU));
            // SAFETY: the run was allocated just above with this count.
            unsafe { self.dealloc_pages(addr, count)? };
        }
        Err(AllocError::NoMemory)
    }

    /// The physical address of `vaddr` (managed memory) by the translation.
    fn phys(&self, vaddr: usize) -> PhysAddr {
        (self.virt_to_phys)(VirtAddr::from_usize(vaddr))
    }

    /// The physical address below which pages count as lowmem
    /// ([`LOWMEM_LIMIT`]).
    pub const fn lowmem_limit(&self) -> PhysAddr {
        self.lowmem_limit
    }

    fn alloc_in(&mut self, i: usize, order: u32, count: usize) -> usize {
        let shift = Self::PAGE_SHIFT;
        let s = self.section_mut(i);
        let idx = s
            .alloc_block(order, Placement::Low)
            .expect("has_order(order) was checked");
        s.free_run(idx + count, (1 << order) - count);
        s.meta(idx).start_run(count as u32);
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
        s.meta(idx).start_run(count as u32);
        Ok(addr)
    }

    /// Finds the section and index of the head of a run of `kind` (Allocated
    /// or Claimed), checking that it is one of `count` pages.
    fn find_run(
        &mut self,
        addr: usize,
        kind: PageKind,
        count: usize,
    ) -> AllocResult<(usize, usize)> {
        let found = addr
            .is_multiple_of(PAGE_SIZE)
            .then(|| self.find_section(addr))
            .flatten();
        let result = found.ok_or(AllocError::NotAllocated).and_then(|i| {
            let s = self.section_mut(i);
            let idx = (addr >> Self::PAGE_SHIFT) - s.base_pfn;
            if !s.meta(idx).is_run(kind, count) {
                return Err(AllocError::NotAllocated);
            }
            Ok((i, idx))
        });
        if result.is_err() {
            self.invalid_frees += 1;
        }
        result
    }

    /// Frees a run from [`Self::alloc_pages`] (or `_lowmem`, `_at`).
    ///
    /// A double free, a foreign address, an address inside a run or a wrong
    /// `count` is rejected before anything changes: it is counted in
    /// [`Self::invalid_frees`] and returned as `NotAllocated`.
    ///
    /// # Safety
    /// The caller owns the run (it was allocated with this `count` and is not
    /// used after this call).
    pub unsafe fn dealloc_pages(&mut self, addr: usize, count: usize) -> AllocResult {
        let (i, idx) = self.find_run(addr, PageKind::Allocated, count)?;
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
        let (i, idx) = self.find_run(addr, PageKind::Allocated, old_count)?;
        self.resize_at(i, idx, old_count, new_count)?;
        self.section_mut(i)
            .meta(idx)
            .set_run_pages(new_count as u32);
        Ok(())
    }

    /// Resizes the run at `addr` that the caller has claimed, as
    /// [`Self::resize_pages`]; the run stays claimed, with its new length
    /// on success and unchanged on error.
    pub(crate) fn resize_claimed<'m>(
        &mut self,
        addr: usize,
        run: ClaimedRun<'m>,
        new_count: usize,
    ) -> Result<ClaimedRun<'m>, (ClaimedRun<'m>, AllocError)> {
        let old = run.pages();
        let Ok((i, idx)) = self.find_run(addr, PageKind::Claimed, old) else {
            return Err((run, AllocError::NotAllocated));
        };
        match self.resize_at(i, idx, old, new_count) {
            Ok(()) => Ok(run.resized(new_count as u32)),
            Err(e) => Err((run, e)),
        }
    }

    /// The page moves of a resize of the run at page `idx` of section `i`.
    fn resize_at(&mut self, i: usize, idx: usize, old: usize, new: usize) -> AllocResult {
        if new == 0 || new > MAX_RUN_PAGES {
            return Err(AllocError::InvalidParam);
        }
        let s = self.section_mut(i);
        if new < old {
            s.free_run(idx + new, old - new);
        } else if new > old && !s.take_range(idx + old, new - old) {
            return Err(AllocError::NoMemory);
        }
        Ok(())
    }

    /// Fills `out` with blocks of `1 << order` pages for CPU `cpu`'s page
    /// cache, tagged `Cached` for it (P1). Returns how many it got.
    pub(crate) fn alloc_cached_blocks(
        &mut self,
        order: u32,
        cpu: usize,
        out: &mut [usize],
    ) -> usize {
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
                m.start_cached(order, cpu);
                out[n] = (base_pfn + idx) << shift;
                n += 1;
            });
            if n == out.len() {
                break;
            }
        }
        n
    }

    /// Frees blocks of `1 << order` pages that a page cache claimed for the
    /// buddy (`Claimed`, one block each). A block not in that state is
    /// counted and skipped, and its address returned.
    pub(crate) fn free_cached_blocks(&mut self, order: u32, addrs: &[usize]) -> Option<usize> {
        let mut last: Option<usize> = None;
        let mut refused = None;
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
                let ok = s.meta(idx).is_run(PageKind::Claimed, 1 << order)
                    && (s.base_pfn + idx).is_multiple_of(1 << order)
                    && idx + (1 << order) <= s.nr_pages;
                if ok {
                    // A cached block is naturally aligned (checked above):
                    // one block, no run carving.
                    s.meta(idx).make_tail();
                    s.free_block(idx, order);
                }
                ok
            });
            if found != Some(true) {
                self.invalid_frees += 1;
                refused = refused.or(Some(addr));
            }
        }
        refused
    }

    /// Frees the run at `addr` that the caller claimed.
    pub(crate) fn free_claimed(&mut self, addr: usize, run: ClaimedRun<'_>) -> AllocResult {
        let (i, idx) = self.find_run(addr, PageKind::Claimed, run.pages())?;
        let s = self.section_mut(i);
        debug_assert!(core::ptr::eq(s.meta(idx), run.meta()));
        s.meta(idx).make_tail();
        s.free_run(idx, run.pages());
        Ok(())
    }

    /// Allocates a naturally aligned block of `1 << order` pages for a slab
    /// of CPU `owner` and tags its pages (B4; the head not live yet) so an
    /// object address finds its slab in O(1). The pointer carries the
    /// region's provenance.
    pub(crate) fn alloc_slab(&mut self, order: u32, owner: usize) -> AllocResult<NonNull<u8>> {
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
        let idx = s
            .alloc_block(order, Placement::High)
            .expect("has_order(order) was checked");
        s.meta(idx).tag_slab_head(order, owner);
        for t in idx + 1..idx + (1 << order) {
            s.meta(t).tag_slab_tail(order, owner);
        }
        Ok(s.ptr_at((s.base_pfn + idx) << shift))
    }

    /// Returns a slab block of CPU `owner` from [`Self::alloc_slab`], whose
    /// head is no longer live.
    pub(crate) fn free_slab(&mut self, addr: usize, order: u32, owner: usize) -> AllocResult {
        let i = self.find_section(addr).ok_or(AllocError::NotAllocated)?;
        let s = self.section_mut(i);
        let idx = (addr >> Self::PAGE_SHIFT) - s.base_pfn;
        if !addr.is_multiple_of(PAGE_SIZE) || !s.meta(idx).is_dead_slab(order, owner) {
            self.invalid_frees += 1;
            return Err(AllocError::NotAllocated);
        }
        for t in idx..idx + (1 << order) {
            s.meta(t).make_tail();
        }
        s.free_block(idx, order);
        Ok(())
    }

    /// Takes the faults found since the last call (lowmem blocks that
    /// mapped above the limit).
    pub fn take_faults(&mut self) -> FaultLog {
        self.faults.take()
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

    /// Free blocks per order over all sections (walks the free maps).
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

    /// Walks every section and panics if an invariant (B1..B11) is broken.
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
        let held: usize = self.reserved[..self.nr_reserved].iter().map(|r| r.2).sum();
        assert_eq!(held, self.reserved_sections, "B11");
        assert!(
            self.nr_sections + self.reserved_sections <= MAX_SECTIONS,
            "B11"
        );
    }
}
