//! Slab allocator for objects up to 2048 bytes.
//!
//! Each size class keeps one *active* slab whose free list serves
//! allocations, a *partial* list of slabs with free objects, and an *empty*
//! list of wholly free slabs (at most `slab.empty-slabs-per-class`; further
//! ones are handed back as [`SlabDeallocResult::FreeSlab`]). Full slabs are
//! on no list. An object finds its slab header by arithmetic: slabs are
//! naturally aligned blocks and the header sits at their end.
//!
//! `SlabAllocator` never locks and never allocates pages itself: when a class
//! has no free object it answers [`SlabAllocResult::NeedsSlab`] and the
//! caller feeds it a block with [`SlabAllocator::add_slab`]. The global
//! facade keeps one per CPU; frees from other CPUs go through the slab's
//! remote bitmap and the owner's pending stack (`header::PendingSlabs`).

mod debug;
pub(crate) mod header;
mod size_class;

pub use size_class::{MAX_CLASSES, MAX_OBJECT_BYTES, MAX_OBJECTS, SizeClass, SizeClassTable};

use crate::config::slab::EMPTY_SLABS_PER_CLASS;
use crate::debug::ENABLED as DEBUG;
use crate::error::{AllocError, AllocResult};
use crate::stats::Counter;
use core::alloc::Layout;
use core::ptr::{self, NonNull};
use header::{FreeFault, PendingSlabs, SlabGeometry, SlabHeader, SlabState};

/// Result of [`SlabAllocator::alloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlabAllocResult {
    /// An object of at least the requested size and alignment.
    Allocated(NonNull<u8>),
    /// The class has no free object: add a slab of `pages` pages, aligned to
    /// its size, for `size_class` and retry.
    NeedsSlab {
        /// Class that needs a slab.
        size_class: SizeClass,
        /// Slab size in pages (a power of two).
        pages: usize,
    },
}

/// Result of [`SlabAllocator::dealloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlabDeallocResult {
    /// The object is back on its slab's free list (or the free was rejected
    /// and logged; see [`SlabStats::invalid_frees`]).
    Done,
    /// The free emptied a slab beyond the empty-slab watermark: return
    /// `pages` pages at `base` to the page allocator.
    FreeSlab {
        /// Slab address.
        base: usize,
        /// Slab size in pages.
        pages: usize,
    },
}

/// Intrusive doubly linked list of slab headers, with both ends (the
/// partial list is a queue, the empty list a stack).
struct SlabList {
    head: *mut SlabHeader,
    tail: *mut SlabHeader,
}

impl SlabList {
    const fn new() -> Self {
        Self {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
        }
    }

    fn push(&mut self, hdr: &SlabHeader) {
        let node = ptr::from_ref(hdr).cast_mut();
        hdr.prev.set(ptr::null_mut());
        hdr.next.set(self.head);
        if self.head.is_null() {
            self.tail = node;
        } else {
            // SAFETY: list members are live slabs owned by this allocator.
            unsafe { (*self.head).prev.set(node) };
        }
        self.head = node;
    }

    fn push_back(&mut self, hdr: &SlabHeader) {
        let node = ptr::from_ref(hdr).cast_mut();
        hdr.next.set(ptr::null_mut());
        hdr.prev.set(self.tail);
        if self.tail.is_null() {
            self.head = node;
        } else {
            // SAFETY: list members are live slabs owned by this allocator.
            unsafe { (*self.tail).next.set(node) };
        }
        self.tail = node;
    }

    fn remove(&mut self, hdr: &SlabHeader) {
        let (prev, next) = (hdr.prev.get(), hdr.next.get());
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: list members are live slabs owned by this allocator.
            unsafe { (*prev).next.set(next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { (*next).prev.set(prev) };
        }
    }

    fn pop(&mut self) -> Option<&'static SlabHeader> {
        // SAFETY: list members are live slabs owned by this allocator; their
        // headers stay valid until the allocator hands the slab back.
        let hdr = unsafe { self.head.as_ref()? };
        self.remove(hdr);
        Some(hdr)
    }

    /// For `check_invariants`: checks every member's back link and the
    /// tail, runs `check` on each member, and returns the length.
    fn check_links(&self, list: &str, mut check: impl FnMut(&SlabHeader)) -> usize {
        let (mut len, mut last) = (0, ptr::null_mut());
        for hdr in self.iter() {
            assert_eq!(hdr.prev.get(), last, "L1: {list} list links");
            check(hdr);
            last = ptr::from_ref(hdr).cast_mut();
            len += 1;
        }
        assert_eq!(self.tail, last, "L1: {list} list tail");
        len
    }

    fn iter(&self) -> impl Iterator<Item = &SlabHeader> {
        let mut cur = self.head;
        core::iter::from_fn(move || {
            // SAFETY: as in `pop`.
            let hdr = unsafe { cur.as_ref()? };
            cur = hdr.next.get();
            Some(hdr)
        })
    }
}

/// One class's slabs, on one cache line (the fast paths touch `active` and
/// `live_objects` of one class; a shift indexes the array).
///
/// The partial list is a queue: a full slab that gets a free object joins
/// at the tail, allocation takes the head, so the slab taken has been
/// collecting frees the longest. With frees spread over many slabs (a
/// random free order), a stack hands out the slab that just got its first
/// free object and is full again after one allocation: the b pattern took
/// the slow path on 47 % of its allocations, 19 % as a queue.
///
/// The counters are atomics written only by the owner (a relaxed load and
/// store, no read-modify-write), so statistics can be read from any CPU.
#[repr(align(64))]
struct ClassCache {
    active: *mut SlabHeader,
    partial: SlabList,
    empty: SlabList,
    /// Slabs on `empty`.
    nr_empty: Counter,
    nr_slabs: Counter,
    live_objects: Counter,
}

const _: () = assert!(core::mem::size_of::<ClassCache>() == 64);

impl ClassCache {
    const fn new() -> Self {
        Self {
            active: ptr::null_mut(),
            partial: SlabList::new(),
            empty: SlabList::new(),
            nr_empty: Counter::new(),
            nr_slabs: Counter::new(),
            live_objects: Counter::new(),
        }
    }

    fn push_empty(&mut self, hdr: &SlabHeader) {
        self.empty.push(hdr);
        self.nr_empty.add(1);
    }

    fn pop_empty(&mut self) -> Option<&'static SlabHeader> {
        let hdr = self.empty.pop()?;
        self.nr_empty.sub(1);
        Some(hdr)
    }

    fn remove_empty(&mut self, hdr: &SlabHeader) {
        self.empty.remove(hdr);
        self.nr_empty.sub(1);
    }
}

/// Per-class statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Object size, bytes.
    pub object_bytes: usize,
    /// Slabs held (active, partial, full and empty).
    pub slabs: usize,
    /// Wholly free slabs kept.
    pub empty_slabs: usize,
    /// Objects handed out and not freed (remote frees count once absorbed).
    pub live_objects: usize,
}

/// Statistics of one `SlabAllocator`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlabStats {
    /// Slabs held.
    pub slabs: usize,
    /// Bytes of slab memory held.
    pub slab_bytes: usize,
    /// Objects live.
    pub live_objects: usize,
    /// Frees rejected: double, foreign, interior pointer, wrong class.
    pub invalid_frees: usize,
    /// Debug checks: free objects found written to (use after free).
    pub poison_faults: usize,
    /// Debug checks: objects found written past their requested size when
    /// freed (overflow or wrong layout).
    pub red_zone_faults: usize,
}

/// Slab caches for every size class, owned by one CPU (or used standalone).
///
/// Invariants: L1: every slab this allocator holds is in exactly one of:
/// `active` of its class, its class's `partial` (state Partial, has free
/// objects), `empty` (state Empty, no live object), or no list (state Full:
/// its free list is empty). L2: `nr_slabs` counts them per class, and
/// `nr_empty` the slabs on `empty`.
pub struct SlabAllocator<const PAGE_SIZE: usize> {
    table: &'static SizeClassTable,
    caches: [ClassCache; MAX_CLASSES],
    cpu: usize,
    invalid_frees: Counter,
    faults: debug::FaultCounters,
}

// SAFETY: the raw pointers are to slabs this allocator owns; moving the
// allocator to another thread moves that ownership with it.
unsafe impl<const PAGE_SIZE: usize> Send for SlabAllocator<PAGE_SIZE> {}

impl<const PAGE_SIZE: usize> Default for SlabAllocator<PAGE_SIZE> {
    fn default() -> Self {
        Self::new()
    }
}

struct Tables<const PAGE_SIZE: usize>;
impl<const PAGE_SIZE: usize> Tables<PAGE_SIZE> {
    const DEFAULT: SizeClassTable = SizeClassTable::default_for(PAGE_SIZE);
    const SEED: SizeClassTable = SizeClassTable::seed_for(PAGE_SIZE);
}

impl<const PAGE_SIZE: usize> SlabAllocator<PAGE_SIZE> {
    /// Slab caches with the configured size classes, owned by CPU 0.
    pub const fn new() -> Self {
        Self::with_table(&Tables::<PAGE_SIZE>::DEFAULT, 0)
    }

    /// The default size-class table for this page size.
    pub const fn default_table() -> &'static SizeClassTable {
        &Tables::<PAGE_SIZE>::DEFAULT
    }

    /// The seed-compatible 9-class table for this page size.
    pub const fn seed_table() -> &'static SizeClassTable {
        &Tables::<PAGE_SIZE>::SEED
    }

    /// Slab caches over `table`, owned by CPU `cpu`.
    pub const fn with_table(table: &'static SizeClassTable, cpu: usize) -> Self {
        Self {
            table,
            caches: [const { ClassCache::new() }; MAX_CLASSES],
            cpu,
            invalid_frees: Counter::new(),
            faults: debug::FaultCounters::new(),
        }
    }

    /// The size-class table in use.
    pub fn table(&self) -> &'static SizeClassTable {
        self.table
    }

    /// Allocates an object for `layout` from the class's active slab.
    ///
    /// # Errors
    /// `InvalidParam` if the layout is not served by slabs (zero size,
    /// larger than 2048 bytes or aligned beyond what any class honours).
    #[inline(always)]
    pub fn alloc(&mut self, layout: Layout) -> AllocResult<SlabAllocResult> {
        let class = self.table.class_for(layout)?;
        Ok(self.alloc_class(class))
    }

    /// Allocates an object of `class`.
    #[inline(always)]
    pub fn alloc_class(&mut self, class: SizeClass) -> SlabAllocResult {
        match self.alloc_small(class) {
            Some(p) => SlabAllocResult::Allocated(p),
            None => self.alloc_slow(class),
        }
    }

    /// Fast path of the facade: an object of `class` from its active slab,
    /// or `None` when that slab has no free object (nothing changed; take
    /// [`Self::alloc_class`]).
    #[inline(always)]
    pub(crate) fn alloc_small(&mut self, class: SizeClass) -> Option<NonNull<u8>> {
        let cache = self.cache(class);
        // SAFETY: `active` is null or a live slab of this class (L1).
        let hdr = unsafe { cache.active.as_ref() }?;
        let obj = hdr.pop()?;
        Some(self.handed_out(class, hdr, obj))
    }

    /// Fast path of the facade's free: frees `obj`, a request of `class`, if
    /// it is an allocated object of the class's active slab. Returns
    /// `false`, having changed nothing, for anything else (another slab, a
    /// bad free, debug checks on): the caller then takes the validating
    /// path, which also reports.
    ///
    /// # Safety
    /// The caller owns this allocator's CPU slot and gives the object up.
    #[inline(always)]
    pub(crate) unsafe fn free_small(&mut self, obj: *mut u8, class: SizeClass) -> bool {
        if DEBUG {
            return false;
        }
        let cache = self.cache_mut(class);
        // SAFETY: `active` is null or a live slab of this class owned by
        // this allocator (L1), so its header is trusted without the magic
        // check; `free_local` validates `obj` against it before any write.
        let Some(hdr) = (unsafe { cache.active.as_ref() }) else {
            return false;
        };
        // SAFETY: forwarded caller contract; an Active slab needs no list
        // move after a free.
        if unsafe { hdr.free_local(obj) }.is_err() {
            return false;
        }
        cache.live_objects.sub(1);
        true
    }

    /// The cache of `class`, for the fast paths: no bounds check.
    #[inline(always)]
    fn cache(&self, class: SizeClass) -> &ClassCache {
        debug_assert!(class.index() < MAX_CLASSES);
        // SAFETY: C5: every `SizeClass` indexes a table of at most
        // MAX_CLASSES classes, the length of `caches`.
        unsafe { self.caches.get_unchecked(class.index()) }
    }

    /// As [`Self::cache`], mutable.
    #[inline(always)]
    fn cache_mut(&mut self, class: SizeClass) -> &mut ClassCache {
        debug_assert!(class.index() < MAX_CLASSES);
        // SAFETY: as in `cache`.
        unsafe { self.caches.get_unchecked_mut(class.index()) }
    }

    /// Accounts for `obj`, just popped from `hdr`, and returns it.
    #[inline(always)]
    fn handed_out(&mut self, class: SizeClass, hdr: &SlabHeader, obj: *mut u8) -> NonNull<u8> {
        self.cache(class).live_objects.add(1);
        if DEBUG {
            self.debug_on_alloc(hdr, obj);
        }
        // SAFETY: objects are never at address 0 (slabs are in managed
        // memory, which starts above 0).
        unsafe { NonNull::new_unchecked(obj) }
    }

    #[cold]
    fn alloc_slow(&mut self, class: SizeClass) -> SlabAllocResult {
        let cache = &mut self.caches[class.index()];
        // SAFETY: as in `alloc_class`.
        if let Some(hdr) = unsafe { cache.active.as_ref() }
            && !hdr.has_free()
        {
            hdr.state.set(SlabState::Full);
            cache.active = ptr::null_mut();
        }
        if cache.active.is_null()
            && let Some(hdr) = cache.partial.pop().or_else(|| cache.pop_empty())
        {
            hdr.state.set(SlabState::Active);
            cache.active = ptr::from_ref(hdr).cast_mut();
        }
        // SAFETY: as in `alloc_class`.
        if let Some(hdr) = unsafe { cache.active.as_ref() }
            && let Some(obj) = hdr.pop()
        {
            return SlabAllocResult::Allocated(self.handed_out(class, hdr, obj));
        }
        SlabAllocResult::NeedsSlab {
            size_class: class,
            pages: 1 << self.table.slab_order(class),
        }
    }

    /// Turns the block `[base, base + bytes)` into a slab of `class` (the
    /// 0.6 signature: the block as an address).
    ///
    /// The pointer is rebuilt with [`core::ptr::with_exposed_provenance_mut`],
    /// so the block's provenance must have been exposed: it is when the
    /// block comes from a [`BuddyAllocator`](crate::BuddyAllocator), which
    /// exposes each region it is given. Under strict provenance use
    /// [`Self::add_slab_ptr`].
    ///
    /// # Errors
    /// As [`Self::add_slab_ptr`].
    ///
    /// # Safety
    /// As [`Self::add_slab_ptr`], for the pointer rebuilt from `base`.
    pub unsafe fn add_slab(
        &mut self,
        class: SizeClass,
        base: usize,
        bytes: usize,
        cpu: usize,
    ) -> AllocResult {
        let base =
            NonNull::new(ptr::with_exposed_provenance_mut(base)).ok_or(AllocError::InvalidParam)?;
        // SAFETY: forwarded caller contract.
        unsafe { self.add_slab_ptr(class, base, bytes, cpu) }
    }

    /// Turns the block of `bytes` at `base` into a slab of `class`. Objects
    /// handed out from it are derived from `base` and carry its provenance.
    ///
    /// # Errors
    /// `InvalidParam` if `bytes` is not the class's slab size (`pages` of
    /// [`SlabAllocResult::NeedsSlab`] times `PAGE_SIZE`) or `base` is not
    /// aligned to it.
    ///
    /// # Safety
    /// The block is writable memory, reachable through `base`, that the
    /// caller gives to this allocator until it comes back as
    /// [`SlabDeallocResult::FreeSlab`] or from [`Self::drain`]. (Slabs do
    /// not point back to the allocator, so it may be moved.)
    pub unsafe fn add_slab_ptr(
        &mut self,
        class: SizeClass,
        base: NonNull<u8>,
        bytes: usize,
        cpu: usize,
    ) -> AllocResult {
        let _ = cpu; // Slabs belong to the allocator's CPU; kept for the 0.6 signature.
        if class.index() >= self.table.len() {
            return Err(AllocError::InvalidParam);
        }
        let order = self.table.slab_order(class);
        if bytes != PAGE_SIZE << order || !base.addr().get().is_multiple_of(bytes) {
            return Err(AllocError::InvalidParam);
        }
        let geo = SlabGeometry {
            class: class.0,
            order,
            object_bytes: self.table.object_bytes(class),
            nr_objects: self.table.objects_per_slab(class),
            recip: self.table.recip(class),
        };
        let base = base.as_ptr();
        let hdr = base
            .map_addr(|a| SlabHeader::addr_for(a, bytes))
            .cast::<SlabHeader>();
        // SAFETY: caller contract: the block is ours, aligned to its size;
        // geometry comes from the table (C3).
        unsafe { SlabHeader::init(hdr, base, &geo, self.cpu) };
        let cache = &mut self.caches[class.index()];
        cache.nr_slabs.add(1);
        // SAFETY: just initialised.
        let hdr = unsafe { &*hdr };
        // A fresh slab goes first in line: it is the one the caller needed.
        // SAFETY: `active` is null or live (L1).
        if let Some(old) = unsafe { cache.active.as_ref() } {
            if old.has_free() {
                old.state.set(SlabState::Partial);
                cache.partial.push(old);
            } else {
                old.state.set(SlabState::Full);
            }
        }
        hdr.state.set(SlabState::Active);
        cache.active = ptr::from_ref(hdr).cast_mut();
        Ok(())
    }

    /// Frees `ptr`, allocated from this allocator with `layout`.
    ///
    /// A double free, an interior or foreign pointer of a live slab, or a
    /// layout of another class is logged, counted and ignored.
    ///
    /// # Safety
    /// The slab-sized, slab-aligned block around `ptr` for `layout`'s class
    /// must be readable memory reachable through `ptr`'s provenance (true
    /// for any pointer this allocator handed out), and the caller gives the
    /// object up.
    pub unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) -> SlabDeallocResult {
        let Ok(class) = self.table.class_for(layout) else {
            self.reject(ptr.as_ptr(), "layout not served by slabs");
            return SlabDeallocResult::Done;
        };
        let bytes = PAGE_SIZE << self.table.slab_order(class);
        let base = ptr.as_ptr() as usize & !(bytes - 1);
        let hdr = ptr
            .as_ptr()
            .with_addr(SlabHeader::addr_for(base, bytes))
            .cast::<SlabHeader>();
        // SAFETY: caller contract: the block around ptr is readable through
        // ptr; the header is only trusted once its magic matches (S5).
        let hdr = unsafe { &*hdr };
        if !hdr.is_live_at(base) || hdr.owner_cpu() != self.cpu {
            self.reject(ptr.as_ptr(), "not in a live slab of this allocator");
            return SlabDeallocResult::Done;
        }
        if DEBUG && hdr.class() == class.0 {
            self.debug_check_red_zone(hdr, ptr.as_ptr(), layout.size());
        }
        // SAFETY: header validated above; caller gives the object up.
        unsafe { self.dealloc_in(hdr, ptr.as_ptr(), Some(class.0)) }
    }

    /// Frees `obj` into the slab `hdr` owned by this allocator, checking
    /// that it is an allocated object of class `class` (if given).
    ///
    /// # Safety
    /// `hdr` is a live slab owned by this allocator; the caller gives the
    /// object up.
    #[inline(always)]
    pub(crate) unsafe fn dealloc_in(
        &mut self,
        hdr: &SlabHeader,
        obj: *mut u8,
        class: Option<u8>,
    ) -> SlabDeallocResult {
        let result = match class.filter(|&c| c != hdr.class()) {
            Some(_) => Err(FreeFault::WrongClass),
            // SAFETY: forwarded caller contract.
            None => unsafe { hdr.free_local(obj) },
        };
        if let Err(fault) = result {
            self.reject(obj, fault_name(fault));
            return SlabDeallocResult::Done;
        }
        let cache = &mut self.caches[hdr.class() as usize];
        cache.live_objects.sub(1);
        match hdr.state.get() {
            SlabState::Active => SlabDeallocResult::Done,
            SlabState::Full if hdr.nr_allocated() > 0 => {
                hdr.state.set(SlabState::Partial);
                cache.partial.push_back(hdr);
                SlabDeallocResult::Done
            }
            SlabState::Partial if hdr.nr_allocated() > 0 => SlabDeallocResult::Done,
            _ => self.slab_emptied(hdr),
        }
    }

    /// A non-active slab has no live object left: keep it as an empty slab
    /// or hand it back.
    fn slab_emptied(&mut self, hdr: &SlabHeader) -> SlabDeallocResult {
        let cache = &mut self.caches[hdr.class() as usize];
        match hdr.state.get() {
            SlabState::Partial => cache.partial.remove(hdr),
            SlabState::Empty => cache.remove_empty(hdr),
            SlabState::Full | SlabState::Active => {}
        }
        // A queued slab is still on a pending stack and must not be released
        // yet (S4): it is re-examined when the owner absorbs it.
        if cache.nr_empty.get() < EMPTY_SLABS_PER_CLASS || hdr.is_queued() {
            hdr.state.set(SlabState::Empty);
            cache.push_empty(hdr);
            return SlabDeallocResult::Done;
        }
        self.release(hdr)
    }

    fn release(&mut self, hdr: &SlabHeader) -> SlabDeallocResult {
        let cache = &mut self.caches[hdr.class() as usize];
        cache.nr_slabs.sub(1);
        let (base, order) = (hdr.base(), hdr.order());
        if DEBUG {
            hdr.check();
        }
        hdr.kill();
        SlabDeallocResult::FreeSlab {
            base,
            pages: 1 << order,
        }
    }

    /// Absorbs the remote frees of every slab on `pending`, moving slabs to
    /// the lists they now belong on; `free_slab(base, pages)` receives each
    /// slab that became free beyond the watermark.
    pub(crate) fn absorb_pending(
        &mut self,
        pending: &PendingSlabs,
        mut free_slab: impl FnMut(usize, usize),
    ) {
        pending.take_all(|hdr| {
            debug_assert_eq!(hdr.owner_cpu(), self.cpu);
            let before = hdr.nr_allocated();
            self.invalid_frees.add(hdr.absorb_remote());
            if DEBUG {
                hdr.check();
            }
            let cache = &mut self.caches[hdr.class() as usize];
            cache.live_objects.sub(before - hdr.nr_allocated());
            let emptied = match hdr.state.get() {
                SlabState::Active => false,
                SlabState::Full if hdr.nr_allocated() > 0 => {
                    if hdr.has_free() {
                        hdr.state.set(SlabState::Partial);
                        cache.partial.push_back(hdr);
                    }
                    false
                }
                SlabState::Partial if hdr.nr_allocated() > 0 => false,
                _ => true,
            };
            if emptied && let SlabDeallocResult::FreeSlab { base, pages } = self.slab_emptied(hdr) {
                free_slab(base, pages);
            }
        });
    }

    /// Returns every empty slab (including a wholly free active one) that is
    /// not queued for remote frees; `free_slab(base, pages)` receives each.
    pub fn drain(&mut self, mut free_slab: impl FnMut(usize, usize)) {
        for c in 0..self.table.len() {
            let cache = &mut self.caches[c];
            // SAFETY: `active` is null or live (L1).
            if let Some(hdr) = unsafe { cache.active.as_ref() }
                && hdr.nr_allocated() == 0
            {
                cache.active = ptr::null_mut();
                hdr.state.set(SlabState::Empty);
                cache.push_empty(hdr);
            }
            let (mut keep, mut kept) = (SlabList::new(), 0);
            while let Some(hdr) = self.caches[c].pop_empty() {
                if hdr.is_queued() {
                    keep.push(hdr);
                    kept += 1;
                } else if let SlabDeallocResult::FreeSlab { base, pages } = self.release(hdr) {
                    free_slab(base, pages);
                }
            }
            let cache = &mut self.caches[c];
            cache.empty = keep;
            cache.nr_empty.set(kept);
        }
    }

    #[cold]
    fn reject(&mut self, obj: *mut u8, why: &str) {
        self.invalid_frees.add(1);
        log::error!("slab cpu {}: free of {obj:p} rejected: {why}", self.cpu);
    }

    /// Statistics of `class`.
    pub fn class_stats(&self, class: SizeClass) -> ClassStats {
        let cache = &self.caches[class.index()];
        ClassStats {
            object_bytes: self.table.object_bytes(class),
            slabs: cache.nr_slabs.get(),
            empty_slabs: cache.nr_empty.get(),
            live_objects: cache.live_objects.get(),
        }
    }

    /// Totals over every class.
    pub fn stats(&self) -> SlabStats {
        let mut s = SlabStats {
            invalid_frees: self.invalid_frees.get(),
            poison_faults: self.faults.poison.get(),
            red_zone_faults: self.faults.red_zone.get(),
            ..SlabStats::default()
        };
        for class in self.table.classes() {
            let c = &self.caches[class.index()];
            s.slabs += c.nr_slabs.get();
            s.slab_bytes += c.nr_slabs.get() * (PAGE_SIZE << self.table.slab_order(class));
            s.live_objects += c.live_objects.get();
        }
        s
    }

    /// Walks every listed slab and checks S1, S2 and L1; panics on a
    /// violation. Full slabs are on no list and are not reached.
    pub fn check_invariants(&self) {
        for class in self.table.classes() {
            let c = &self.caches[class.index()];
            // SAFETY: `active` is null or live (L1).
            if let Some(hdr) = unsafe { c.active.as_ref() } {
                assert_eq!(hdr.state.get(), SlabState::Active);
                hdr.check();
            }
            let listed = c.partial.check_links("partial", |hdr| {
                assert_eq!(hdr.state.get(), SlabState::Partial, "L1");
                assert!(hdr.has_free(), "L1: partial slab without free objects");
                hdr.check();
            });
            let empty = c.empty.check_links("empty", |hdr| {
                assert_eq!(hdr.state.get(), SlabState::Empty, "L1");
                assert_eq!(hdr.nr_allocated(), 0, "L1: empty slab with live objects");
                hdr.check();
            });
            assert_eq!(c.nr_empty.get(), empty, "L2: empty slabs counted");
            assert!(listed + empty <= c.nr_slabs.get(), "L2");
        }
    }
}

fn fault_name(fault: FreeFault) -> &'static str {
    match fault {
        FreeFault::NotAnObject => "not an object boundary of its slab",
        FreeFault::DoubleFree => "double free",
        FreeFault::WrongClass => "layout of another size class",
    }
}
