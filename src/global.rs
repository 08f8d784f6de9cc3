//! The global facade: per-CPU slabs for small requests, the buddy for pages.
//!
//! # Routing
//! Requests with size and alignment ≤ 2048 bytes go to the current CPU's
//! [`SlabAllocator`](crate::SlabAllocator); larger ones become page runs,
//! served from the CPU's page cache for small power-of-two runs, else from
//! the buddy.
//!
//! # Frees
//! `dealloc` finds the page metadata of the address (lock-free section map,
//! O(log sections)), which says whether it is a slab page (→ its header by
//! arithmetic) or the head of a run. A slab object freed by its owner CPU
//! goes back on the slab's free list; freed by another CPU it sets a bit in
//! the slab's remote bitmap (one atomic OR) and, the first time, pushes the
//! slab on the owner's pending stack (one CAS). The owner absorbs pending
//! slabs on its next slow path: O(1) per slab, no walk over full slabs.
//!
//! # Lock order
//! 1. the CPU pin (`Platform::pin`) or the shared-slot lock, then
//! 2. the buddy lock.
//!
//! Slab and page-cache state is never shared under a lock: it belongs to
//! one CPU slot; cross-CPU traffic is the remote bitmaps and pending stacks.

use crate::buddy::{BuddyAllocator, ManagedSection, PageKind, PageMeta, SectionMap, SectionRef};
use crate::config::cpu::{PAGE_CACHE_BATCH, PAGE_CACHE_FRACTION};
use crate::cpu::{CpuLocal, CpuSlot, PageCache};
use crate::debug::{self, Corruption, ENABLED as DEBUG};
use crate::error::{AllocError, AllocResult};
use crate::platform::Platform;
use crate::slab::header::SlabHeader;
use crate::slab::{
    ClassStats, MAX_OBJECT_BYTES, SizeClass, SizeClassTable, SlabAllocResult, SlabAllocator,
    SlabDeallocResult, SlabStats,
};
use crate::sync::{AtomicPtr, AtomicUsize, Locked, Ordering, RawLock};
use core::alloc::{GlobalAlloc, Layout};
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

/// The platform used when none is named: the host platform with `std`,
/// the shared-slot platform otherwise.
#[cfg(feature = "std")]
pub type DefaultPlatform = crate::platform::HostPlatform;
/// The platform used when none is named: the host platform with `std`,
/// the shared-slot platform otherwise.
#[cfg(not(feature = "std"))]
pub type DefaultPlatform = crate::platform::SharedSlotPlatform;

/// Whole-allocator statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalStats {
    /// Bytes of managed pages.
    pub managed_bytes: usize,
    /// Bytes of pages in use: runs handed out and slabs (page caches not
    /// counted).
    pub allocated_bytes: usize,
    /// Bytes held by slabs (part of `allocated_bytes`).
    pub slab_bytes: usize,
    /// Bytes in per-CPU page caches (free from the user's point of view).
    pub cached_page_bytes: usize,
    /// Small objects live (remote frees count once absorbed).
    pub live_objects: usize,
    /// Rejected frees: double, foreign, wrong layout, interior pointers.
    pub invalid_frees: usize,
    /// Frees of objects owned by another CPU.
    pub remote_frees: usize,
    /// Debug checks: free objects found written to (use after free).
    pub poison_faults: usize,
    /// Debug checks: objects written past their requested size (overflow
    /// or wrong layout), found when freed.
    pub red_zone_faults: usize,
    /// Bytes page caches dropped because page metadata holding their list
    /// links was corrupted (leaked, never handed out twice).
    pub page_cache_lost_bytes: usize,
}

/// Statistics of one CPU slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Its slab caches.
    pub slab: SlabStats,
    /// Bytes in its page cache.
    pub cached_page_bytes: usize,
    /// Frees it made of objects owned by other CPUs.
    pub remote_frees_sent: usize,
    /// Bytes its page cache dropped because a list link in page metadata
    /// was corrupted (the blocks leak rather than be handed out twice).
    pub page_cache_lost_bytes: usize,
}

/// Buddy pages + per-CPU slab caches, usable as `#[global_allocator]`.
///
/// Invariants: G1: `slots` is null until `init` publishes `nr_slots`
/// initialised slots (Release/Acquire): ids `0..nr_slots - 1` belong to the
/// platform's CPUs, the last is the shared slot guarded by `shared`.
/// G2: every section the buddy manages is in `map`.
pub struct GlobalAllocator<const PAGE_SIZE: usize, P: Platform = DefaultPlatform> {
    buddy: Locked<P::Lock, BuddyAllocator<PAGE_SIZE>>,
    shared: P::Lock,
    map: SectionMap,
    slots: AtomicPtr<CpuSlot<PAGE_SIZE>>,
    nr_slots: AtomicUsize,
    /// `nr_slots - 1` once `slots` is published (Release after it), 0
    /// before: the fast paths' one check for "initialised and an own slot".
    nr_cpu_slots: AtomicUsize,
    invalid_frees: AtomicUsize,
    /// CPU slots whose page-cache marks are above the initial one: the
    /// CPUs sharing the page caches' growth budget (each slot's
    /// `counted_growing` says whether it is counted here).
    growing_cpus: AtomicUsize,
    /// Bumped when an allocation runs out of memory: every CPU drains its
    /// caches on its next slow path once it sees a new value.
    reclaim_epoch: AtomicUsize,
    _platform: PhantomData<fn() -> P>,
}

impl<const PAGE_SIZE: usize, P: Platform> Default for GlobalAllocator<PAGE_SIZE, P> {
    fn default() -> Self {
        Self::new()
    }
}

/// Result of `choose_slot`.
enum SlotChoice<'a, const PAGE_SIZE: usize> {
    /// The pinned CPU's own slot and id.
    Own(&'a CpuSlot<PAGE_SIZE>, usize),
    /// No own slot: (slots, shared slot id, the CPU id that did not fit).
    Shared(*mut CpuSlot<PAGE_SIZE>, usize, Option<usize>),
    /// `init` has not run.
    Uninit,
}

/// Evaluates `$body` with `$slot`, `$id` and `$local` bound to the current
/// CPU's slot (or the shared slot, under its lock). The first form gives
/// `AllocResult` of the body (`NoMemory` before `init`); the second gives the
/// body's value, or `$uninit` before `init`, so hot callers get one flat
/// result instead of nested ones.
///
/// A macro rather than a closure so the fast path's body is inlined into
/// the caller; `$body` must not `return` or use `?` (it also runs inside a
/// closure on the shared path): call a method instead.
macro_rules! with_slot {
    ($this:expr, |$slot:ident, $id:pat_param, $local:ident| $body:expr) => {
        with_slot!($this, |$slot, $id, $local| Ok($body); uninit = Err(AllocError::NoMemory))
    };
    ($this:expr, |$slot:ident, $id:pat_param, $local:ident| $body:expr; uninit = $uninit:expr) => {{
        let this = $this;
        let pin = P::pin();
        let result = match this.choose_slot(&pin) {
            SlotChoice::Own($slot, $id) => {
                // SAFETY: the pin makes this context the slot's only user
                // (Platform contract); no other `local()` borrow of it is
                // alive here.
                let $local = unsafe { $slot.local() };
                $body
            }
            SlotChoice::Shared(slots, shared_id, cpu) => {
                this.with_shared_slot((slots, shared_id, cpu), |$slot, $id, $local| $body)
            }
            SlotChoice::Uninit => $uninit,
        };
        drop(pin);
        result
    }};
}

/// Whether the fast paths serve `layout`: 1..=2048 bytes, alignment ≤ 8
/// (one class-table load finds the class).
#[inline(always)]
fn fast(layout: &Layout) -> bool {
    layout.size().wrapping_sub(1) < MAX_OBJECT_BYTES && layout.align() <= 8
}

fn small(layout: &Layout) -> bool {
    layout.size() <= MAX_OBJECT_BYTES && layout.align() <= MAX_OBJECT_BYTES
}

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
    const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();
    /// The size classes of every CPU slot (`CpuSlot::new`): a constant
    /// address, so the fast paths find the class without a dependent load.
    const TABLE: &'static SizeClassTable = SlabAllocator::<PAGE_SIZE>::default_table();

    /// An allocator with no memory; call [`Self::init`] before use.
    pub const fn new() -> Self {
        Self {
            buddy: Locked::new(BuddyAllocator::with_virt_to_phys(P::virt_to_phys)),
            shared: P::Lock::UNLOCKED,
            map: SectionMap::new(),
            slots: AtomicPtr::new(ptr::null_mut()),
            nr_slots: AtomicUsize::new(0),
            nr_cpu_slots: AtomicUsize::new(0),
            invalid_frees: AtomicUsize::new(0),
            growing_cpus: AtomicUsize::new(0),
            reclaim_epoch: AtomicUsize::new(0),
            _platform: PhantomData,
        }
    }

    /// Adds the first region and sets up the per-CPU slots in it.
    ///
    /// # Errors
    /// As [`Self::add_region`]; `InvalidParam` if already initialised;
    /// `InvalidParam` if the region cannot hold the per-CPU slots.
    ///
    /// # Safety
    /// As [`Self::add_region`]; additionally `self` is not moved while
    /// anything it handed out is in use, and `init` runs once, before any
    /// other call.
    pub unsafe fn init(&self, region: &mut [u8]) -> AllocResult {
        if !self.slots.load(Ordering::Acquire).is_null() {
            return Err(AllocError::InvalidParam);
        }
        // The CPU slots take the start of the first region, beside the page
        // metadata, so they never split a large buddy block.
        let nr_slots = P::max_cpus() + 1;
        let bytes = nr_slots * core::mem::size_of::<CpuSlot<PAGE_SIZE>>();
        let start = region.as_mut_ptr().addr();
        let offset = start.next_multiple_of(core::mem::align_of::<CpuSlot<PAGE_SIZE>>()) - start;
        if offset + bytes >= region.len() {
            return Err(AllocError::InvalidParam);
        }
        let (slot_area, rest) = region.split_at_mut(offset + bytes);
        // SAFETY: forwarded caller contract for the rest of the region.
        unsafe { self.add_region(rest)? };
        let first_pfn = self
            .buddy
            .with(|b| b.managed_section(0))
            .map_or(0, |s| s.start_vaddr >> Self::PAGE_SHIFT);
        // SAFETY: offset < slot_area.len(); the result is aligned for a slot.
        let slots = unsafe { slot_area.as_mut_ptr().add(offset) }.cast::<CpuSlot<PAGE_SIZE>>();
        for i in 0..nr_slots {
            // SAFETY: the area has room for nr_slots aligned slots and the
            // caller gave it to us.
            unsafe { slots.add(i).write(CpuSlot::new(i, first_pfn)) };
        }
        self.nr_slots.store(nr_slots, Ordering::Relaxed);
        self.slots.store(slots, Ordering::Release);
        self.nr_cpu_slots.store(nr_slots - 1, Ordering::Release);
        log::info!(
            "buddy-slab: {} CPU slots, {} size classes, {} managed bytes",
            nr_slots,
            SlabAllocator::<PAGE_SIZE>::default_table().len(),
            self.managed_bytes()
        );
        Ok(())
    }

    /// Adds a region of memory (hot-add). Safe to call while other CPUs
    /// allocate.
    ///
    /// # Errors
    /// `InvalidParam` (too small), `MemoryOverlap`, `TooManyRegions`.
    ///
    /// # Safety
    /// `region` is valid for reads and writes for as long as this allocator
    /// is used, and used by nothing else.
    pub unsafe fn add_region(&self, region: &mut [u8]) -> AllocResult {
        let (region, len) = (region.as_mut_ptr(), region.len());
        let start = region.addr();
        // The CPU slots sit beside the first region, outside every section:
        // a region over them must be refused like any overlap.
        let slots = self.slots.load(Ordering::Acquire).addr();
        let slots_end = slots
            + self.nr_slots.load(Ordering::Relaxed) * core::mem::size_of::<CpuSlot<PAGE_SIZE>>();
        if slots != 0 && start < slots_end && slots < start.saturating_add(len) {
            return Err(AllocError::MemoryOverlap);
        }
        self.buddy.with(|b| {
            // SAFETY: forwarded caller contract.
            let added = unsafe { b.add_region_raw(region, len)? };
            for s in added.iter().flatten() {
                self.map.insert(s);
            }
            Ok(())
        })
    }

    /// Which slot the pinned context uses.
    #[inline(always)]
    fn choose_slot(&self, pin: &P::Pin) -> SlotChoice<'_, PAGE_SIZE> {
        let slots = self.slots.load(Ordering::Acquire);
        if slots.is_null() {
            return SlotChoice::Uninit;
        }
        let shared_id = self.nr_slots.load(Ordering::Relaxed) - 1;
        match P::cpu_id(pin) {
            // SAFETY: id < nr_slots - 1, an initialised slot (G1).
            Some(id) if id < shared_id => SlotChoice::Own(unsafe { &*slots.add(id) }, id),
            other => SlotChoice::Shared(slots, shared_id, other),
        }
    }

    /// Runs `f` on the pinned context's own slot, for the fast paths:
    /// `None` without running it before `init`, on the shared slot, or
    /// before the platform assigned an id.
    #[inline(always)]
    fn on_own_slot<R>(
        &self,
        f: impl FnOnce(&CpuSlot<PAGE_SIZE>, &mut CpuLocal<PAGE_SIZE>) -> Option<R>,
    ) -> Option<R> {
        let pin = P::pin();
        let id = P::cpu_id_hint(&pin);
        // Acquire pairs with `init`'s Release: a non-zero count means the
        // slots are written and `slots` is published (G1).
        if id >= self.nr_cpu_slots.load(Ordering::Acquire) {
            return None;
        }
        let slots = self.slots.load(Ordering::Relaxed);
        // SAFETY: id < nr_slots - 1: an initialised CPU slot (G1).
        let slot = unsafe { &*slots.add(id) };
        // SAFETY: the pin makes this context the slot's only user (Platform
        // contract); no other `local()` borrow of it is alive.
        let result = f(slot, unsafe { slot.local() });
        drop(pin);
        result
    }

    /// The slow half of `with_slot`: no exclusive CPU slot, so take the
    /// shared one under its lock. Kept out of line so the fast path inlines
    /// `f` once.
    #[cold]
    #[inline(never)]
    fn with_shared_slot<R>(
        &self,
        (slots, shared_id, cpu): (*mut CpuSlot<PAGE_SIZE>, usize, Option<usize>),
        f: impl FnOnce(&CpuSlot<PAGE_SIZE>, usize, &mut CpuLocal<PAGE_SIZE>) -> R,
    ) -> R {
        if cpu.is_some() {
            log::warn!(
                "buddy-slab: CPU id {cpu:?} beyond the {shared_id} configured; using the shared slot"
            );
        }
        self.shared.with(|| {
            // SAFETY: the shared slot is the last one (G1); holding `shared`
            // makes us its only user.
            let slot = unsafe { &*slots.add(shared_id) };
            // SAFETY: as above.
            f(slot, shared_id, unsafe { slot.local() })
        })
    }

    fn slot(&self, id: usize) -> Option<&CpuSlot<PAGE_SIZE>> {
        let slots = self.slots.load(Ordering::Acquire);
        // SAFETY: ids below nr_slots are initialised slots (G1).
        (!slots.is_null() && id < self.nr_slots.load(Ordering::Relaxed))
            .then(|| unsafe { &*slots.add(id) })
    }

    /// Allocates memory for `layout`.
    ///
    /// # Errors
    /// `InvalidParam` for a zero size; `NoMemory` when memory is exhausted
    /// (or before `init`).
    #[inline]
    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        match self.alloc_fast(layout) {
            Some(p) => Ok(p),
            None => self.alloc_slow(layout),
        }
    }

    /// The fast path: a pop from the active slab of the current CPU's class.
    /// `None` (nothing changed) sends the caller to `alloc_slow`. It returns
    /// a bare pointer in a register: nested results here cost more than the
    /// pop itself (spilled, then reloaded across a store-forwarding stall).
    #[inline(always)]
    fn alloc_fast(&self, layout: Layout) -> Option<NonNull<u8>> {
        if !fast(&layout) {
            return None;
        }
        let class = Self::TABLE.class_of_small(layout.size());
        self.on_own_slot(|_, local| local.slab.alloc_small(class))
    }

    /// Every allocation the fast path does not serve: page runs, large
    /// alignments, the shared slot, and slab refills.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        if layout.size() == 0 {
            return Err(AllocError::InvalidParam);
        }
        if !small(&layout) {
            let pages = layout.size().div_ceil(PAGE_SIZE);
            return self.alloc_pages_ptr(pages, layout.align().max(PAGE_SIZE));
        }
        with_slot!(self, |slot, id, local| self.alloc_in(slot, id, local, layout); uninit = Err(AllocError::NoMemory))
    }

    #[inline(always)]
    fn alloc_in(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        id: usize,
        local: &mut CpuLocal<PAGE_SIZE>,
        layout: Layout,
    ) -> AllocResult<NonNull<u8>> {
        match local.slab.alloc(layout)? {
            SlabAllocResult::Allocated(p) => Ok(p),
            SlabAllocResult::NeedsSlab { size_class, pages } => {
                self.refill(slot, id, local, size_class, pages)
            }
        }
    }

    /// Gets a new slab for `class`, after absorbing remote frees.
    #[cold]
    fn refill(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        id: usize,
        local: &mut CpuLocal<PAGE_SIZE>,
        class: SizeClass,
        pages: usize,
    ) -> AllocResult<NonNull<u8>> {
        self.honour_reclaim(slot, local);
        if !slot.pending.is_empty() {
            self.absorb(slot, local);
            if let SlabAllocResult::Allocated(p) = local.slab.alloc_class(class) {
                return Ok(p);
            }
        }
        let order = pages.trailing_zeros();
        let base = match self.buddy.with(|b| b.alloc_slab(order)) {
            Ok(base) => base,
            Err(_) => {
                self.reclaim(slot, id, local);
                self.buddy.with(|b| b.alloc_slab(order))?
            }
        };
        // SAFETY: the buddy just gave us this naturally aligned block of the
        // class's slab size, as a pointer with its region's provenance.
        unsafe {
            local
                .slab
                .add_slab_ptr(class, base, pages << Self::PAGE_SHIFT, id)
        }?;
        match local.slab.alloc_class(class) {
            SlabAllocResult::Allocated(p) => Ok(p),
            SlabAllocResult::NeedsSlab { .. } => Err(AllocError::NoMemory),
        }
    }

    fn absorb(&self, slot: &CpuSlot<PAGE_SIZE>, local: &mut CpuLocal<PAGE_SIZE>) {
        local
            .slab
            .absorb_pending(&slot.pending, |base, pages| self.free_slab(base, pages));
    }

    fn free_slab(&self, base: usize, pages: usize) {
        if let Err(e) = self
            .buddy
            .with(|b| b.free_slab(base, pages.trailing_zeros()))
        {
            log::error!("buddy-slab: returning slab {base:#x} failed: {e}");
        }
    }

    #[cold]
    fn reject(&self, addr: usize, layout: Layout, why: &str) {
        self.invalid_frees.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "buddy-slab: free of {addr:#x} ({} bytes, align {}) rejected: {why}",
            layout.size(),
            layout.align()
        );
    }

    /// Page metadata of `addr` (lock-free section map).
    fn meta_of(&self, addr: usize) -> Option<&PageMeta> {
        let sec = self.map.lookup(addr)?;
        // SAFETY: section metadata lives as long as the allocator (B7;
        // sections are never removed), which outlives `&self`.
        Some(unsafe { &*ptr::from_ref(sec.meta_of(addr, Self::PAGE_SHIFT)) })
    }

    /// Page metadata of `addr` through the CPU's one-entry section cache.
    #[inline(always)]
    fn meta_in(&self, local: &mut CpuLocal<PAGE_SIZE>, addr: usize) -> Option<&PageMeta> {
        self.meta_via(&mut local.section, addr)
    }

    /// [`Self::meta_in`] given only the section cache (so a page-cache
    /// method can look up metadata while the cache itself is borrowed).
    #[inline(always)]
    fn meta_via(&self, section: &mut SectionRef, addr: usize) -> Option<&PageMeta> {
        if !section.contains(addr) {
            *section = self.map.lookup(addr)?;
        }
        // SAFETY: as in `meta_of`: published sections and their metadata
        // live as long as the allocator.
        Some(unsafe { &*ptr::from_ref(section.meta_of(addr, Self::PAGE_SHIFT)) })
    }

    /// Frees `ptr`, allocated by this allocator with `layout`.
    ///
    /// Double frees, foreign pointers, interior pointers and wrong layouts
    /// are detected, logged, counted in [`GlobalStats::invalid_frees`] and
    /// ignored.
    ///
    /// # Safety
    /// The caller gives the memory up: it is not used afterwards.
    #[inline]
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller contract.
        if !unsafe { self.dealloc_fast(ptr, layout) } {
            // SAFETY: as above; the fast path changed nothing.
            unsafe { self.dealloc_slow(ptr, layout) }
        }
    }

    /// The fast path: an allocated object of the active slab of the current
    /// CPU's class for `layout` goes back on its free list (validated as
    /// in `free_local`). `false`, with nothing changed, for anything else.
    ///
    /// # Safety
    /// As `dealloc`.
    #[inline(always)]
    unsafe fn dealloc_fast(&self, ptr: NonNull<u8>, layout: Layout) -> bool {
        if !fast(&layout) {
            return false;
        }
        let class = Self::TABLE.class_of_small(layout.size());
        self.on_own_slot(|_, local| {
            // SAFETY: `local` is this context's own slot; forwarded caller
            // contract for the object.
            unsafe { local.slab.free_small(ptr.as_ptr(), class) }.then_some(())
        })
        .is_some()
    }

    /// Every free the fast path does not take: objects of other slabs and
    /// CPUs, page runs, the shared slot, and every bad free (reported here).
    ///
    /// # Safety
    /// As `dealloc`.
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller contract.
        let done = with_slot!(self, |slot, id, local| unsafe {
            self.dealloc_in(slot, id, local, ptr, layout)
        }; uninit = Err("allocator not initialised"));
        if let Err(why) = done {
            self.reject(ptr.as_ptr() as usize, layout, why);
        }
    }

    /// Body of `dealloc` on the current CPU's slot.
    ///
    /// # Safety
    /// As `dealloc`.
    #[inline(always)]
    unsafe fn dealloc_in(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        id: usize,
        local: &mut CpuLocal<PAGE_SIZE>,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), &'static str> {
        let addr = ptr.as_ptr() as usize;
        let meta = self.meta_in(local, addr).ok_or("not in managed memory")?;
        match meta.kind() {
            PageKind::Slab | PageKind::SlabTail => {
                let bytes = PAGE_SIZE << meta.order();
                let base = addr & !(bytes - 1);
                // `meta_in` left the section of `addr` in the cache: the
                // header and the object are reached with its region's
                // provenance, whatever pointer the caller passed.
                let hdr = local.section.ptr_at(SlabHeader::addr_for(base, bytes));
                let obj = local.section.ptr_at(addr);
                // SAFETY: slab pages are managed memory; the header is
                // read only through atomics and trusted once its magic
                // matches (S5).
                let hdr = unsafe { &*hdr.cast::<SlabHeader>() };
                match local.slab.table().class_for(layout) {
                    Ok(c) if hdr.is_live_at(base) && hdr.class() == c.0 => {}
                    _ => return Err("layout does not match the object's size class"),
                }
                if DEBUG {
                    // SAFETY: as below.
                    return unsafe {
                        self.free_object_checked(slot, id, local, hdr, obj, layout.size())
                    };
                }
                // SAFETY: header validated; caller gives the object up.
                unsafe { self.free_object(slot, id, local, hdr, obj) }
            }
            PageKind::Allocated if !small(&layout) => {
                self.free_run(slot, local, meta, addr, layout.size().div_ceil(PAGE_SIZE))
            }
            _ => Err("not the start of a live allocation of this kind"),
        }
    }

    /// # Safety
    /// `hdr` is a live slab; the caller gives `obj` up.
    #[inline(always)]
    unsafe fn free_object(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        id: usize,
        local: &mut CpuLocal<PAGE_SIZE>,
        hdr: &SlabHeader,
        obj: *mut u8,
    ) -> Result<(), &'static str> {
        let owner = hdr.owner_cpu();
        if owner == id {
            // SAFETY: we own the slab's CPU slot; caller contract.
            let result = unsafe { local.slab.dealloc_in(hdr, obj, None) };
            if let SlabDeallocResult::FreeSlab { base, pages } = result {
                self.free_slab(base, pages);
            }
            return Ok(());
        }
        slot.remote_frees_sent.add(1);
        match hdr.free_remote(obj) {
            Ok(false) => Ok(()),
            Ok(true) => {
                let owner_slot = self.slot(owner).ok_or("slab owner is not a CPU slot")?;
                owner_slot.pending.push(hdr);
                Ok(())
            }
            Err(_) => Err("double free or not an object boundary (remote)"),
        }
    }

    /// Debug checks: `free_object` with the red zone of a `size`-byte
    /// request checked (see [`crate::debug`]).
    ///
    /// # Safety
    /// As `free_object`.
    #[cold]
    unsafe fn free_object_checked(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        id: usize,
        local: &mut CpuLocal<PAGE_SIZE>,
        hdr: &SlabHeader,
        obj: *mut u8,
        size: usize,
    ) -> Result<(), &'static str> {
        if hdr.owner_cpu() == id {
            local.slab.debug_check_red_zone(hdr, obj, size);
            // SAFETY: forwarded caller contract.
            return unsafe { self.free_object(slot, id, local, hdr, obj) };
        }
        // Remote: read the red zone while the object is still ours (a valid
        // free), before its remote bit is published; report it only if the
        // free is accepted.
        // SAFETY: the caller gives the object up, so until its remote bit
        // is set nobody else writes it (for a double free this may read
        // memory another context owns; the result is then discarded).
        let bad = unsafe {
            debug::scan(
                obj,
                debug::red_zone(size, hdr.object_bytes()),
                debug::RED_ZONE,
            )
        };
        // SAFETY: forwarded caller contract.
        let result = unsafe { self.free_object(slot, id, local, hdr, obj) };
        if let (Ok(()), Some(off)) = (result, bad) {
            local
                .slab
                .report_corruption(Corruption::RedZone, hdr, obj, off);
        }
        result
    }

    fn free_run_at(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        local: &mut CpuLocal<PAGE_SIZE>,
        addr: usize,
        count: usize,
    ) -> Result<(), &'static str> {
        let meta = self.meta_in(local, addr).ok_or("not in managed memory")?;
        self.free_run(slot, local, meta, addr, count)
    }

    /// Frees the run at `addr` (page metadata `meta`) of `count` pages.
    fn free_run(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        local: &mut CpuLocal<PAGE_SIZE>,
        meta: &PageMeta,
        addr: usize,
        count: usize,
    ) -> Result<(), &'static str> {
        // Claiming (Allocated → Cached) makes exactly one of two racing
        // frees win; from here the run is ours.
        if !addr.is_multiple_of(PAGE_SIZE) || !meta.claim_run(count) {
            return Err(if meta.kind() == PageKind::Allocated {
                "page count does not match the run"
            } else {
                "not an allocated page run (double free?)"
            });
        }
        // Only naturally aligned runs are cached (a run grown in place may
        // not be), so a cached block honours any alignment up to its size.
        if let Some(order) = PageCache::order_for(count, 1)
            .filter(|&o| addr.is_multiple_of(PAGE_SIZE << o) && local.pages.can_cache(addr))
        {
            self.honour_reclaim(slot, local);
            if local.pages.is_full(order) {
                self.flush_pages(slot, local, order, PAGE_CACHE_BATCH);
            }
            // `run_pages == count` was checked above: the block is tagged as
            // a cached block of `order` is (P1).
            self.cache_block(slot, local, order, addr, meta);
            return Ok(());
        }
        self.buddy
            .with(|b| b.free_claimed(addr, count))
            .map_err(|_| "claimed run vanished")
    }

    /// Resizes `ptr` to `new_size` bytes, in place when the size class or
    /// the page run allows, else by moving the contents.
    ///
    /// # Errors
    /// `InvalidParam` for a zero or overflowing size; `NoMemory`. On error
    /// the old allocation is untouched.
    ///
    /// # Safety
    /// `ptr` was allocated by this allocator with `layout`; on success the
    /// caller uses only the returned pointer.
    pub unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> AllocResult<NonNull<u8>> {
        let new_layout = Layout::from_size_align(new_size, layout.align())
            .map_err(|_| AllocError::InvalidParam)?;
        if new_size == 0 {
            return Err(AllocError::InvalidParam);
        }
        if small(&layout) && small(&new_layout) {
            let table = SlabAllocator::<PAGE_SIZE>::default_table();
            if let Ok(class) = table.class_for(new_layout)
                && table.class_for(layout) == Ok(class)
            {
                if DEBUG {
                    SlabAllocator::<PAGE_SIZE>::debug_fill_red_zone(
                        ptr,
                        new_size,
                        table.object_bytes(class),
                    );
                }
                return Ok(ptr);
            }
        } else if !small(&layout) && !small(&new_layout) {
            let (old_pages, new_pages) = (
                layout.size().div_ceil(PAGE_SIZE),
                new_size.div_ceil(PAGE_SIZE),
            );
            if old_pages == new_pages {
                return Ok(ptr);
            }
            let addr = ptr.as_ptr() as usize;
            if let Some(meta) = self.meta_of(addr) {
                // Claim the run so a racing free cannot touch it meanwhile.
                if meta.claim_run(old_pages) {
                    let resized = self.buddy.with(|b| {
                        // Ours since the claim: a plain store gives it back.
                        meta.set(PageKind::Allocated, 0);
                        // SAFETY: caller owns the run; shrinking gives up
                        // only its tail.
                        unsafe { b.resize_pages(addr, old_pages, new_pages) }
                    });
                    if resized.is_ok() {
                        return Ok(ptr);
                    }
                }
            }
        }
        let new = self.alloc(new_layout)?;
        // SAFETY: both blocks are live, distinct, and at least min(old, new)
        // bytes long.
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), layout.size().min(new_size))
        };
        // SAFETY: caller contract: the old block is given up on success.
        unsafe { self.dealloc(ptr, layout) };
        Ok(new)
    }

    /// Allocates `count` contiguous pages aligned to `align_bytes` (0 or a
    /// power of two). Small power-of-two runs come from the CPU's page cache.
    ///
    /// # Errors
    /// `InvalidParam`, `NoMemory`.
    #[inline]
    pub fn alloc_pages(&self, count: usize, align_bytes: usize) -> AllocResult<usize> {
        match self.alloc_pages_fast(count, align_bytes) {
            Some(addr) => Ok(addr),
            None => self
                .alloc_pages_ptr(count, align_bytes)
                .map(|p| p.as_ptr().addr()),
        }
    }

    /// The fast path: a block from the current CPU's page cache. `None`
    /// (nothing changed) when the request is not cacheable or the cache of
    /// its order is empty.
    #[inline(always)]
    fn alloc_pages_fast(&self, count: usize, align_bytes: usize) -> Option<usize> {
        let order = PageCache::order_for(count, align_bytes >> Self::PAGE_SHIFT)?;
        if !(align_bytes == 0 || align_bytes.is_power_of_two()) {
            return None;
        }
        self.on_own_slot(|slot, local| {
            // No reclaim check here: taking blocks shrinks the cache; the
            // free fast path, which grows it, checks.
            let (addr, meta) = local
                .pages
                .pop(order, |a| self.meta_via(&mut local.section, a))?;
            slot.cached_page_bytes
                .set(local.pages.pages() << Self::PAGE_SHIFT);
            // Cached blocks are ours (P1, checked by `pop`): a plain store
            // hands one out.
            meta.set(PageKind::Allocated, 0);
            Some(addr)
        })
    }

    /// [`Self::alloc_pages`], returning a pointer to the run that carries the
    /// provenance of the region it lies in: what a caller needs to use the
    /// pages under strict provenance (free them with
    /// [`Self::dealloc_pages`] at `ptr.addr()`).
    ///
    /// # Errors
    /// `InvalidParam`, `NoMemory`.
    pub fn alloc_pages_ptr(&self, count: usize, align_bytes: usize) -> AllocResult<NonNull<u8>> {
        if count == 0 || !(align_bytes == 0 || align_bytes.is_power_of_two()) {
            return Err(AllocError::InvalidParam);
        }
        if let Some(order) = PageCache::order_for(count, align_bytes >> Self::PAGE_SHIFT)
            && let Ok(Some(ptr)) =
                with_slot!(self, |slot, _, local| self.alloc_cached(slot, local, order))
        {
            return Ok(ptr);
        }
        self.buddy
            .with(|b| b.alloc_pages_ptr(count, align_bytes))
            .or_else(|_| {
                let _ = with_slot!(self, |slot, id, local| self.reclaim(slot, id, local));
                self.buddy.with(|b| b.alloc_pages_ptr(count, align_bytes))
            })
    }

    /// Whether a reclaim was requested since this CPU last drained: the
    /// page fast paths then step aside, so that a CPU busy cycling pages
    /// through its cache returns them promptly (one load of a word that
    /// only changes when memory runs out).
    #[inline(always)]
    fn reclaim_pending(&self, local: &CpuLocal<PAGE_SIZE>) -> bool {
        self.reclaim_epoch.load(Ordering::Relaxed) != local.seen_reclaim
    }

    /// Drains this CPU if a reclaim was requested since it last looked.
    #[inline]
    fn honour_reclaim(&self, slot: &CpuSlot<PAGE_SIZE>, local: &mut CpuLocal<PAGE_SIZE>) {
        let epoch = self.reclaim_epoch.load(Ordering::Relaxed);
        if epoch != local.seen_reclaim {
            local.seen_reclaim = epoch;
            self.drain_local(slot, local);
        }
    }

    /// Memory ran out: return what this CPU caches, drain every idle CPU
    /// slot now (and the shared slot), and ask busy CPUs to drain on their
    /// next slow path.
    #[cold]
    fn reclaim(&self, slot: &CpuSlot<PAGE_SIZE>, id: usize, local: &mut CpuLocal<PAGE_SIZE>) {
        local.seen_reclaim = self.reclaim_epoch.fetch_add(1, Ordering::Relaxed) + 1;
        self.drain_local(slot, local);
        let shared_id = self.nr_slots.load(Ordering::Relaxed) - 1;
        for other in (0..shared_id).filter(|&o| o != id) {
            if let Some(other_slot) = self.slot(other) {
                P::with_idle_cpu(other, &mut || {
                    // SAFETY: `with_idle_cpu` makes us the slot's only user
                    // while this runs (Platform contract).
                    self.drain_local(other_slot, unsafe { other_slot.local() });
                });
            }
        }
        if id != shared_id
            && let Some(shared) = self.slot(shared_id)
        {
            self.shared.with(|| {
                // SAFETY: holding `shared` makes us the shared slot's only
                // user (G1); we are not in it ourselves (id != shared_id).
                self.drain_local(shared, unsafe { shared.local() })
            });
        }
    }

    fn alloc_cached(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        local: &mut CpuLocal<PAGE_SIZE>,
        order: usize,
    ) -> Option<NonNull<u8>> {
        self.honour_reclaim(slot, local);
        let popped = local
            .pages
            .pop(order, |a| self.meta_via(&mut local.section, a));
        let addr = match popped {
            Some((addr, meta)) => {
                slot.cached_page_bytes
                    .set(local.pages.pages() << Self::PAGE_SHIFT);
                // Cached blocks are ours (P1): a plain store hands it out.
                meta.set(PageKind::Allocated, 0);
                addr
            }
            None => self.refill_pages(slot, local, order)?,
        };
        // `meta_via` left the block's section in the cache.
        NonNull::new(local.section.ptr_at(addr))
    }

    /// Refills the empty page cache of `order` with a batch from the buddy,
    /// adapting its high mark, and hands out one block of it.
    fn refill_pages(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        local: &mut CpuLocal<PAGE_SIZE>,
        order: usize,
    ) -> Option<usize> {
        // (`alloc_cached`, the one caller, has honoured a pending reclaim.)
        // The list was empty, or dropped as corrupted: publish the loss.
        slot.page_cache_lost_bytes
            .set(local.pages.lost_pages() << Self::PAGE_SHIFT);
        let mut batch = [0usize; PAGE_CACHE_BATCH];
        let (n, total_pages) = self.buddy.with(|b| {
            let n = b.alloc_cached_blocks(order as u32, &mut batch);
            (n, b.total_pages())
        });
        // This CPU's share of the growth budget: split among the CPUs whose
        // marks have grown, itself included.
        let others =
            self.growing_cpus.load(Ordering::Relaxed) - usize::from(local.pages.counted_growing);
        local
            .pages
            .note_refill(order, total_pages / (PAGE_CACHE_FRACTION * (others + 1)));
        self.count_growing(local);
        let (&first, extra) = batch[..n].split_first()?;
        // The oldest first, so that `batch[1]` is the next block handed out.
        for &addr in extra.iter().rev() {
            if local.pages.is_full(order) || !local.pages.can_cache(addr) {
                self.buddy
                    .with(|b| b.free_cached_blocks(order as u32, &[addr]));
                continue;
            }
            match self.meta_in(local, addr) {
                Some(meta) => self.cache_block(slot, local, order, addr, meta),
                None => log::error!("buddy-slab: refilled block {addr:#x} is unmanaged"),
            }
        }
        self.meta_in(local, first)?.set(PageKind::Allocated, 0);
        Some(first)
    }

    /// Keeps `growing_cpus` in step with whether this CPU's marks are above
    /// the initial one.
    fn count_growing(&self, local: &mut CpuLocal<PAGE_SIZE>) {
        let grown = local.pages.has_grown();
        if grown != local.pages.counted_growing {
            local.pages.counted_growing = grown;
            if grown {
                self.growing_cpus.fetch_add(1, Ordering::Relaxed);
            } else {
                self.growing_cpus.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Puts a block tagged `Cached` (P1) on this CPU's list of `order`,
    /// which has room and can link `addr`.
    #[inline(always)]
    fn cache_block(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        local: &mut CpuLocal<PAGE_SIZE>,
        order: usize,
        addr: usize,
        meta: &PageMeta,
    ) {
        local
            .pages
            .push(order, addr, meta, |a| self.meta_via(&mut local.section, a));
        slot.cached_page_bytes
            .set(local.pages.pages() << Self::PAGE_SHIFT);
    }

    /// Allocates `count` pages below the lowmem (DMA32) limit.
    ///
    /// # Errors
    /// `InvalidParam`, `NoMemory`.
    pub fn alloc_pages_lowmem(&self, count: usize, align_bytes: usize) -> AllocResult<usize> {
        self.buddy
            .with(|b| b.alloc_pages_lowmem(count, align_bytes))
            .or_else(|e| {
                if e != AllocError::NoMemory {
                    return Err(e);
                }
                // Lowmem pages may sit in CPU caches: reclaim, then retry.
                let _ = with_slot!(self, |slot, id, local| self.reclaim(slot, id, local));
                self.buddy
                    .with(|b| b.alloc_pages_lowmem(count, align_bytes))
            })
    }

    /// Allocates exactly the pages at `[addr, addr + count * PAGE_SIZE)`.
    ///
    /// # Errors
    /// `InvalidParam`, `NotAllocated` (outside managed memory), `NoMemory`
    /// (a page in the range is in use).
    pub fn alloc_pages_at(&self, addr: usize, count: usize) -> AllocResult<usize> {
        self.buddy
            .with(|b| b.alloc_pages_at(addr, count))
            .or_else(|e| {
                if e != AllocError::NoMemory {
                    return Err(e);
                }
                // Pages in the range may sit in a CPU's page cache or in empty
                // slabs: reclaim, then try once more.
                let _ = with_slot!(self, |slot, id, local| self.reclaim(slot, id, local));
                self.buddy.with(|b| b.alloc_pages_at(addr, count))
            })
    }

    /// Frees a run from `alloc_pages` (or `_lowmem`, `_at`).
    ///
    /// # Errors
    /// `NotAllocated` for a double free, a foreign address, an address
    /// inside a run or a wrong `count`; nothing changes then.
    ///
    /// # Safety
    /// The caller owns the run and does not use it afterwards.
    #[inline]
    pub unsafe fn dealloc_pages(&self, addr: usize, count: usize) -> AllocResult {
        if self.dealloc_pages_fast(addr, count) {
            return Ok(());
        }
        // SAFETY: forwarded caller contract; the fast path changed nothing.
        unsafe { self.dealloc_pages_slow(addr, count) }
    }

    /// The fast path: a run that is a cacheable block goes to the current
    /// CPU's page cache if it has room. `false`, with nothing changed, for
    /// anything else (bad frees included: the slow path reports them).
    #[inline(always)]
    fn dealloc_pages_fast(&self, addr: usize, count: usize) -> bool {
        let Some(order) = PageCache::order_for(count, 1) else {
            return false;
        };
        if !addr.is_multiple_of(PAGE_SIZE << order) {
            return false;
        }
        self.on_own_slot(|slot, local| {
            if local.pages.is_full(order)
                || !local.pages.can_cache(addr)
                || self.reclaim_pending(local)
            {
                return None;
            }
            let meta = self.meta_in(local, addr)?;
            if !meta.claim_run(count) {
                return None;
            }
            // Claimed (exactly one of two racing frees gets here, see
            // `free_run`) with `run_pages == count`: the block is tagged as
            // P1 asks.
            self.cache_block(slot, local, order, addr, meta);
            Some(())
        })
        .is_some()
    }

    /// # Safety
    /// As `dealloc_pages`.
    #[inline(never)]
    unsafe fn dealloc_pages_slow(&self, addr: usize, count: usize) -> AllocResult {
        let done = with_slot!(self, |slot, _, local| self
            .free_run_at(slot, local, addr, count));
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => {
                self.invalid_frees.fetch_add(1, Ordering::Relaxed);
                log::error!("buddy-slab: free of {count} pages at {addr:#x} rejected: {why}");
                Err(AllocError::NotAllocated)
            }
            Err(e) => Err(e),
        }
    }

    /// Returns up to `max` cached blocks of `order` to the buddy.
    fn flush_pages(
        &self,
        slot: &CpuSlot<PAGE_SIZE>,
        local: &mut CpuLocal<PAGE_SIZE>,
        order: usize,
        max: usize,
    ) {
        let mut batch = [0usize; PAGE_CACHE_BATCH];
        let mut left = max;
        while left > 0 {
            let n = local.pages.take_batch(order, left, &mut batch, |a| {
                self.meta_via(&mut local.section, a)
            });
            if n < left.min(PAGE_CACHE_BATCH) {
                // Emptied, or dropped as corrupted: publish the loss.
                slot.page_cache_lost_bytes
                    .set(local.pages.lost_pages() << Self::PAGE_SHIFT);
            }
            if n == 0 {
                return;
            }
            slot.cached_page_bytes
                .set(local.pages.pages() << Self::PAGE_SHIFT);
            self.buddy
                .with(|b| b.free_cached_blocks(order as u32, &batch[..n]));
            left -= n;
        }
    }

    fn drain_local(&self, slot: &CpuSlot<PAGE_SIZE>, local: &mut CpuLocal<PAGE_SIZE>) {
        self.absorb(slot, local);
        local.slab.drain(|base, pages| self.free_slab(base, pages));
        for order in 0..crate::config::cpu::PAGE_CACHE_ORDERS {
            self.flush_pages(slot, local, order, usize::MAX);
        }
        local.pages.reset_high();
        self.count_growing(local);
    }

    /// Returns the current CPU's empty slabs and cached pages to the buddy,
    /// after absorbing frees other CPUs made into its slabs.
    pub fn drain(&self) {
        let _ = with_slot!(self, |slot, _, local| self.drain_local(slot, local));
    }

    /// Drains every CPU slot. `&mut self` proves no other context is using
    /// the allocator, so every slot can be touched.
    pub fn drain_all(&mut self) {
        let n = self.nr_slots.load(Ordering::Relaxed);
        for id in 0..n {
            if let Some(slot) = self.slot(id) {
                // SAFETY: `&mut self`: no other context uses any slot.
                self.drain_local(slot, unsafe { slot.local() });
            }
        }
    }

    /// Bytes of managed pages.
    pub fn managed_bytes(&self) -> usize {
        self.buddy.with(|b| b.managed_bytes())
    }

    /// Bytes of pages in use (runs and slabs; per-CPU page caches count as
    /// free).
    pub fn allocated_bytes(&self) -> usize {
        self.buddy.with(|b| b.allocated_bytes()) - self.cached_page_bytes()
    }

    fn cached_page_bytes(&self) -> usize {
        (0..self.nr_slots.load(Ordering::Relaxed))
            .filter_map(|i| self.slot(i))
            .map(|s| s.cached_page_bytes.get())
            .sum()
    }

    /// Number of managed sections.
    pub fn managed_section_count(&self) -> usize {
        self.buddy.with(|b| b.managed_section_count())
    }

    /// Summary of section `index`.
    pub fn managed_section(&self, index: usize) -> Option<ManagedSection> {
        self.buddy.with(|b| b.managed_section(index))
    }

    /// Pages in the largest free block of the buddy.
    pub fn largest_free_block_pages(&self) -> usize {
        self.buddy.with(|b| b.largest_free_block_pages())
    }

    /// Free blocks per buddy order.
    pub fn free_blocks_per_order(&self) -> [usize; crate::config::NR_ORDERS] {
        self.buddy.with(|b| b.free_blocks_per_order())
    }

    /// Number of CPU slots (the platform's CPUs plus the shared slot).
    pub fn cpu_slots(&self) -> usize {
        self.nr_slots.load(Ordering::Relaxed)
    }

    /// Statistics of CPU slot `cpu`.
    pub fn cpu_stats(&self, cpu: usize) -> Option<CpuStats> {
        let slot = self.slot(cpu)?;
        Some(CpuStats {
            slab: slot.slab_stats(),
            cached_page_bytes: slot.cached_page_bytes.get(),
            remote_frees_sent: slot.remote_frees_sent.get(),
            page_cache_lost_bytes: slot.page_cache_lost_bytes.get(),
        })
    }

    /// Statistics of `class` on CPU slot `cpu`.
    pub fn class_stats(&self, cpu: usize, class: SizeClass) -> Option<ClassStats> {
        Some(self.slot(cpu)?.class_stats(class))
    }

    /// Whole-allocator statistics.
    pub fn stats(&self) -> GlobalStats {
        let (managed_bytes, buddy_allocated, buddy_invalid) = self
            .buddy
            .with(|b| (b.managed_bytes(), b.allocated_bytes(), b.invalid_frees()));
        let mut s = GlobalStats {
            managed_bytes,
            invalid_frees: buddy_invalid + self.invalid_frees.load(Ordering::Relaxed),
            ..GlobalStats::default()
        };
        for id in 0..self.nr_slots.load(Ordering::Relaxed) {
            if let Some(c) = self.cpu_stats(id) {
                s.slab_bytes += c.slab.slab_bytes;
                s.live_objects += c.slab.live_objects;
                s.invalid_frees += c.slab.invalid_frees;
                s.cached_page_bytes += c.cached_page_bytes;
                s.remote_frees += c.remote_frees_sent;
                s.poison_faults += c.slab.poison_faults;
                s.red_zone_faults += c.slab.red_zone_faults;
                s.page_cache_lost_bytes += c.page_cache_lost_bytes;
            }
        }
        s.allocated_bytes = buddy_allocated - s.cached_page_bytes;
        s
    }

    /// Checks the buddy's invariants and the current CPU's slabs and page
    /// cache.
    pub fn check_invariants(&self) {
        self.buddy.with(|b| b.check_invariants());
        let _ = with_slot!(self, |_slot, _, local| {
            local.slab.check_invariants();
            local.pages.check(|a| self.meta_via(&mut local.section, a));
        });
    }
}

// SAFETY: `alloc` returns blocks of at least `layout.size()` bytes aligned
// to `layout.align()` that no other live allocation overlaps (buddy B1-B4,
// slab S1-S3); `dealloc` and `realloc` follow GlobalAlloc's contracts.
unsafe impl<const PAGE_SIZE: usize, P: Platform> GlobalAlloc for GlobalAllocator<PAGE_SIZE, P> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::alloc(self, layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc contract.
            unsafe { Self::dealloc(self, p, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return ptr::null_mut();
        };
        // SAFETY: GlobalAlloc contract.
        unsafe { Self::realloc(self, p, layout, new_size) }.map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}
