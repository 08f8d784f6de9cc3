//! Adding a region: checked and reserved under the lock, its metadata
//! written without it, published under it again.

use super::BuddyAllocator;
use super::free_map::FreeMap;
use super::page_meta::PageMeta;
use super::section::Section;
use crate::config::MAX_SECTIONS;
use crate::error::{AllocError, AllocResult};
use core::ptr::NonNull;

/// A region checked against the managed ones and reserved
/// ([`BuddyAllocator::reserve_region`]), to be prepared without the lock.
#[must_use = "a reserved region stays reserved until it is committed"]
pub struct RegionPlan {
    ticket: usize,
    region: *mut u8,
    start: usize,
    end: usize,
    meta_start: usize,
    /// First byte of the sections' free maps (after the metadata).
    map_start: usize,
    data_start: usize,
    /// `(first page, pages, lowmem)` of each section to build.
    parts: [(usize, usize, bool); 2],
    page_shift: u32,
}

// SAFETY: a plan is a reservation of memory the caller handed over; moving
// it to another thread moves that ownership.
unsafe impl Send for RegionPlan {}

/// The sections of a [`RegionPlan`], built ([`RegionPlan::prepare`]), to be
/// published by [`BuddyAllocator::commit_region`].
#[must_use = "a prepared region stays reserved until it is committed"]
pub struct PreparedRegion {
    ticket: usize,
    sections: [Option<Section>; 2],
}

/// Names each reservation, across every allocator of the process, so that
/// a region is committed only to the allocator that checked it.
static NEXT_TICKET: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);

// SAFETY: as for `RegionPlan`.
unsafe impl Send for PreparedRegion {}

/// A section just added, as the facade's lock-free map needs it.
#[derive(Debug, Clone, Copy)]
pub struct NewSection {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) base_pfn: usize,
    /// With the region's provenance (B7).
    pub(crate) meta: NonNull<PageMeta>,
}

impl RegionPlan {
    /// Second step of adding a region: writes one `PageMeta` per page and
    /// frees every page into the new sections' free maps. O(pages); needs
    /// no lock, since the reservation keeps every other caller off the
    /// range.
    ///
    /// # Safety
    /// The region the plan was made for is valid for reads and writes for
    /// as long as the allocator it is committed to is used, and used by
    /// nothing else (the contract of `add_region`).
    pub unsafe fn prepare(self) -> PreparedRegion {
        let meta_bytes = core::mem::size_of::<PageMeta>();
        let pages = self.parts[0].1 + self.parts[1].1;
        debug_assert!(self.meta_start + pages * meta_bytes <= self.map_start);
        debug_assert!(self.map_start + map_bytes(&self.parts) <= self.data_start);
        let meta = NonNull::new(self.region.with_addr(self.meta_start).cast::<PageMeta>())
            .expect("the metadata lies in the region, above address 0");
        let mut map = NonNull::new(self.region.with_addr(self.map_start).cast::<u64>())
            .expect("the free maps lie in the region, above address 0");
        let mut sections = [None, None];
        for (slot, &(first, count, lowmem)) in sections.iter_mut().zip(self.parts.iter()) {
            if count == 0 {
                continue;
            }
            let sec_start = self.data_start + (first << self.page_shift);
            // SAFETY: meta[first..first + count] lies in the region's prefix
            // (pages * meta_bytes <= map_start - meta_start), which the
            // caller gave us exclusively; count < u32::MAX.
            let sec_meta = unsafe { meta.add(first) };
            // SAFETY: see above; the section's map words follow the previous
            // section's within the map_bytes(parts) bytes before data_start.
            *slot = Some(unsafe {
                Section::new(
                    sec_start >> self.page_shift,
                    count,
                    sec_meta,
                    map,
                    (self.start, self.end),
                    lowmem,
                )
            });
            // SAFETY: still within (or one past) the maps' words, as above.
            map = unsafe { map.add(FreeMap::words_for(count)) };
        }
        PreparedRegion {
            ticket: self.ticket,
            sections,
        }
    }
}

/// Bytes the free maps of the sections `parts` take.
fn map_bytes(parts: &[(usize, usize, bool); 2]) -> usize {
    parts
        .iter()
        .filter(|p| p.1 > 0)
        .map(|p| FreeMap::words_for(p.1) * 8)
        .sum()
}

impl<const PAGE_SIZE: usize> BuddyAllocator<PAGE_SIZE> {
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
        let plan = self.reserve_region(region, len)?;
        // SAFETY: forwarded caller contract; the range is reserved.
        let prepared = unsafe { plan.prepare() };
        self.commit_region(prepared)
    }

    /// First step of adding a region: checks it (size, overlap with managed
    /// and reserved regions, room in the section table) and reserves it.
    /// O(sections). The region's metadata is written by
    /// [`RegionPlan::prepare`], which needs no lock, and published by
    /// [`Self::commit_region`].
    ///
    /// # Errors
    /// As [`Self::add_region`].
    pub fn reserve_region(&mut self, region: *mut u8, len: usize) -> AllocResult<RegionPlan> {
        let start = region.expose_provenance();
        let end = start.checked_add(len).ok_or(AllocError::InvalidParam)?;
        if start == 0 {
            return Err(AllocError::InvalidParam);
        }
        let taken = self
            .sections()
            .map(|s| (s.region_start, s.region_end))
            .chain(self.reserved[..self.nr_reserved].iter().map(|r| (r.0, r.1)));
        for (s, e) in taken {
            if start < e && s < end {
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
        // Largest page count whose metadata, free maps and pages all fit.
        // The maps take a bit per page and a little: the estimate counts
        // 1/7 byte, so the loop steps a few times and leaves at most a
        // couple of pages unused.
        let upper = (end - meta_start) / (PAGE_SIZE + meta_bytes);
        let mut pages = (upper - upper / (7 * (PAGE_SIZE + meta_bytes))).min(u32::MAX as usize - 1);
        let (map_start, data_start, parts) = loop {
            if pages == 0 {
                return Err(AllocError::InvalidParam);
            }
            let map_start = (meta_start + pages * meta_bytes).next_multiple_of(8);
            // The maps' size depends on the lowmem split, which depends on
            // where the pages start: step the start up until the maps fit
            // before it (a few words either way, so one step or two).
            let mut data = (map_start + FreeMap::words_for(pages) * 8).next_multiple_of(PAGE_SIZE);
            let mut fit = None;
            for _ in 0..4 {
                let parts = self.lowmem_parts(data, pages);
                let needed = (map_start + map_bytes(&parts)).next_multiple_of(PAGE_SIZE);
                if needed <= data {
                    fit = Some((data, parts));
                    break;
                }
                data = needed;
            }
            if let Some((data, parts)) = fit
                && data
                    .checked_add(pages * PAGE_SIZE)
                    .is_some_and(|e| e <= end)
            {
                break (map_start, data, parts);
            }
            pages -= 1;
        };
        let needed = parts.iter().filter(|p| p.1 > 0).count();
        if self.nr_sections + self.reserved_sections + needed > MAX_SECTIONS {
            return Err(AllocError::TooManyRegions);
        }
        let ticket = NEXT_TICKET.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        self.reserved[self.nr_reserved] = (start, end, needed, ticket);
        self.nr_reserved += 1;
        self.reserved_sections += needed;
        Ok(RegionPlan {
            ticket,
            region,
            start,
            end,
            meta_start,
            map_start,
            data_start,
            parts,
            page_shift: Self::PAGE_SHIFT,
        })
    }

    /// The sections of `pages` pages starting at `data_start`: those below
    /// the lowmem limit and the rest (assumes the region is linearly
    /// mapped; alloc_pages_lowmem checks every block it returns anyway).
    fn lowmem_parts(&self, data_start: usize, pages: usize) -> [(usize, usize, bool); 2] {
        let phys_start = self.phys(data_start);
        let low_pages = if phys_start >= self.lowmem_limit {
            0
        } else {
            ((self.lowmem_limit.as_usize() - phys_start.as_usize()) >> Self::PAGE_SHIFT).min(pages)
        };
        [(0, low_pages, true), (low_pages, pages - low_pages, false)]
    }

    /// Last step of adding a region: publishes the sections `prepared`
    /// built and drops the reservation. O(sections).
    ///
    /// # Errors
    /// `InvalidParam` if `prepared` was reserved by another allocator (it
    /// is dropped: its memory stays the caller's).
    pub fn commit_region(
        &mut self,
        prepared: PreparedRegion,
    ) -> AllocResult<[Option<NewSection>; 2]> {
        let r = self.reserved[..self.nr_reserved]
            .iter()
            .position(|r| r.3 == prepared.ticket)
            .ok_or(AllocError::InvalidParam)?;
        self.reserved_sections -= self.reserved[r].2;
        self.reserved.copy_within(r + 1..self.nr_reserved, r);
        self.nr_reserved -= 1;
        let mut added = [None, None];
        for (slot, section) in added.iter_mut().zip(prepared.sections) {
            let Some(section) = section else { continue };
            *slot = Some(NewSection {
                start: section.base_pfn << Self::PAGE_SHIFT,
                end: (section.base_pfn + section.nr_pages) << Self::PAGE_SHIFT,
                base_pfn: section.base_pfn,
                meta: section.meta,
            });
            let at = self.sections[..self.nr_sections]
                .partition_point(|s| s.as_ref().is_some_and(|s| s.base_pfn < section.base_pfn));
            self.total_pages += section.nr_pages;
            self.sections[at..=self.nr_sections].rotate_right(1);
            self.sections[at] = Some(section);
            self.nr_sections += 1;
        }
        Ok(added)
    }
}
