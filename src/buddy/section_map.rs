//! Lock-free address → section lookup for the facade's free path, and the
//! one-entry cache of it each CPU keeps.
//!
//! Entries never change once published; only their position in the sorted
//! array moves when a section is inserted. Readers binary-search under a
//! sequence lock and retry if an insertion ran meanwhile. Every field is an
//! atomic, so a torn read is merely retried, never undefined behaviour.

use super::{NewSection, PageMeta};
use crate::config::MAX_SECTIONS;
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, fence};

struct Entry {
    start: AtomicUsize,
    end: AtomicUsize,
    base_pfn: AtomicUsize,
    meta: AtomicPtr<PageMeta>,
}

/// A published section: its page range and metadata array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SectionRef {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) base_pfn: usize,
    /// Derived from the pointer the region came in as (B7), so its
    /// provenance covers the section's pages: see `ptr_at`.
    pub(crate) meta: *const PageMeta,
}

impl SectionRef {
    /// Contains nothing: a cache miss for every address.
    const EMPTY: Self = Self {
        start: 0,
        end: 0,
        base_pfn: 0,
        meta: core::ptr::null(),
    };

    #[inline]
    fn contains(&self, addr: usize) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// One CPU's cache of the section it last looked an address up in:
/// published sections never change, so a copy stays valid and spares the
/// shared lookup.
///
/// A cache serves one [`SectionMap`] (its CPU slot's allocator's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SectionCache {
    cur: SectionRef,
}

impl SectionCache {
    /// A cache that misses on every address.
    pub(crate) const fn new() -> Self {
        Self {
            cur: SectionRef::EMPTY,
        }
    }

    /// The metadata of the page holding `addr`, if managed, through the
    /// cache; the cache then holds `addr`'s section.
    #[inline(always)]
    pub(crate) fn meta<'m>(
        &mut self,
        map: &'m SectionMap,
        addr: usize,
        page_shift: u32,
    ) -> Option<&'m PageMeta> {
        if !self.cur.contains(addr) {
            self.cur = Self::miss(map, addr)?;
        }
        let idx = (addr >> page_shift) - self.cur.base_pfn;
        // SAFETY: addr is in the section, so idx < its page count, and the
        // section's metadata stays initialised while the allocator owning
        // `map` lives (B7; sections are never removed), which outlives 'm.
        Some(unsafe { &*self.cur.meta.add(idx) })
    }

    #[cold]
    #[inline(never)]
    fn miss(map: &SectionMap, addr: usize) -> Option<SectionRef> {
        map.lookup(addr)
    }

    /// [`Self::meta`] without a lookup: `None` unless `addr` lies in the
    /// cached section (for a slab's head after one of its objects).
    #[inline(always)]
    pub(crate) fn meta_cached<'m>(
        &self,
        _map: &'m SectionMap,
        addr: usize,
        page_shift: u32,
    ) -> Option<&'m PageMeta> {
        if !self.cur.contains(addr) {
            return None;
        }
        let idx = (addr >> page_shift) - self.cur.base_pfn;
        // SAFETY: as in `meta`: addr is in the cached section.
        Some(unsafe { &*self.cur.meta.add(idx) })
    }

    /// A pointer to `addr` carrying the provenance of its section's region.
    /// `addr` lies in the cached section: in the one the last
    /// [`Self::meta`] found.
    #[inline]
    pub(crate) fn ptr_at(&self, addr: usize) -> *mut u8 {
        debug_assert!(self.cur.contains(addr));
        self.cur.meta.cast::<u8>().cast_mut().with_addr(addr)
    }
}

/// Sorted table of sections, readable without locks.
///
/// Invariants: M1: `entries[..len]` are sorted by `start` and disjoint;
/// M2: `seq` is odd exactly while an insertion rewrites `entries`.
pub(crate) struct SectionMap {
    seq: AtomicUsize,
    len: AtomicUsize,
    entries: [Entry; MAX_SECTIONS],
}

impl SectionMap {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            seq: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            entries: [const {
                Entry {
                    start: AtomicUsize::new(0),
                    end: AtomicUsize::new(0),
                    base_pfn: AtomicUsize::new(0),
                    meta: AtomicPtr::new(core::ptr::null_mut()),
                }
            }; MAX_SECTIONS],
        }
    }

    fn write(&self, i: usize, r: &SectionRef) {
        let e = &self.entries[i];
        e.start.store(r.start, Ordering::Relaxed);
        e.end.store(r.end, Ordering::Relaxed);
        e.base_pfn.store(r.base_pfn, Ordering::Relaxed);
        e.meta.store(r.meta.cast_mut(), Ordering::Relaxed);
    }

    fn read(&self, i: usize) -> SectionRef {
        let e = &self.entries[i];
        SectionRef {
            start: e.start.load(Ordering::Relaxed),
            end: e.end.load(Ordering::Relaxed),
            base_pfn: e.base_pfn.load(Ordering::Relaxed),
            meta: e.meta.load(Ordering::Relaxed),
        }
    }

    /// Publishes a section. Callers serialise insertions (the buddy lock).
    pub(crate) fn insert(&self, s: &NewSection) {
        let new = SectionRef {
            start: s.start,
            end: s.end,
            base_pfn: s.base_pfn,
            meta: s.meta.as_ptr(),
        };
        let len = self.len.load(Ordering::Relaxed);
        assert!(
            len < MAX_SECTIONS,
            "the buddy's table has the same capacity"
        );
        self.seq.fetch_add(1, Ordering::Relaxed);
        // Order the odd sequence number before the entry writes.
        fence(Ordering::Release);
        let mut i = len;
        while i > 0 && self.read(i - 1).start > new.start {
            let moved = self.read(i - 1);
            self.write(i, &moved);
            i -= 1;
        }
        self.write(i, &new);
        self.len.store(len + 1, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// The section containing `addr`, if any. O(log sections).
    fn lookup(&self, addr: usize) -> Option<SectionRef> {
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            if seq % 2 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let len = self.len.load(Ordering::Relaxed).min(MAX_SECTIONS);
            let (mut lo, mut hi) = (0, len);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if self.entries[mid].start.load(Ordering::Relaxed) <= addr {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let found = lo.checked_sub(1).map(|i| self.read(i));
            // Order the reads above before the re-check of `seq`.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == seq {
                return found.filter(|r| r.contains(addr));
            }
        }
    }
}
