//! Small objects: allocation, local and remote frees, and slab release.

use super::{GlobalAllocator, fast, small};
use crate::buddy::{PageKind, SectionCache};
use crate::cpu::{SlotRef, hazard};
use crate::debug::{self, ENABLED as DEBUG};
use crate::error::{AllocError, AllocResult};
use crate::fault::{Fault, FaultKind, FreeRejection};
use crate::platform::Platform;
use crate::slab::header::{FreeFault, SlabHeader};
use crate::slab::{ReleasedSlab, SizeClass, SlabAllocResult, SlabCpu};
use crate::sync::Ordering;
use core::alloc::Layout;
use core::ptr::NonNull;

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
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
        self.on_own_slot(|s| s.slab().alloc_small(class))
    }

    /// Every allocation the fast path does not serve: page runs, large
    /// alignments, the shared slot, slab refills, and pops that found a
    /// fault.
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
        self.with_slot(|s, id| self.alloc_object(s, id, layout))
            .unwrap_or(Err(AllocError::NoMemory))
    }

    fn alloc_object(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        layout: Layout,
    ) -> AllocResult<NonNull<u8>> {
        match s.slab().alloc(layout)? {
            SlabAllocResult::Allocated(p) => Ok(p),
            SlabAllocResult::NeedsSlab { size_class, pages } => {
                self.refill(s, id, size_class, pages)
            }
        }
    }

    /// Gets a new slab for `class`, after absorbing remote frees.
    #[cold]
    fn refill(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        class: SizeClass,
        pages: usize,
    ) -> AllocResult<NonNull<u8>> {
        self.honour_reclaim(s, id);
        if !s.slot.pending.is_empty() {
            self.absorb(s, id);
            if let SlabAllocResult::Allocated(p) = s.slab().alloc_class(class) {
                return Ok(p);
            }
        }
        let order = pages.trailing_zeros();
        let base = match self.buddy.with(|b| b.alloc_slab(order, id)) {
            Ok(base) => base,
            Err(_) => {
                self.reclaim(s, id);
                self.buddy.with(|b| b.alloc_slab(order, id))?
            }
        };
        // SAFETY: the buddy just gave us this naturally aligned block of the
        // class's slab size, as a pointer with its region's provenance.
        let added = unsafe {
            s.slab()
                .add_slab_ptr(class, base, pages << Self::PAGE_SHIFT)
        };
        debug_assert!(added.is_ok(), "the table's geometry fits its slabs");
        let head = s
            .local
            .sections
            .meta(&self.map, base.as_ptr().addr(), Self::PAGE_SHIFT)
            .ok_or(AllocError::NoMemory)?;
        added?;
        // The header is written: remote frees may now reach it.
        head.mark_slab_live(order, id);
        match s.slab().alloc_class(class) {
            SlabAllocResult::Allocated(p) => Ok(p),
            SlabAllocResult::NeedsSlab { .. } => Err(AllocError::NoMemory),
        }
    }

    /// Absorbs the remote frees other CPUs made into this slot's slabs.
    pub(super) fn absorb(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) {
        let (slot, local) = (s.slot, &mut *s.local);
        let mut slab = SlabCpu::new(&mut local.slab, &slot.counters.slab, &mut local.faults);
        let sections = &mut local.sections;
        slab.absorb_pending(&slot.pending, |slab, released| {
            self.release_slab(slab, sections, id, released);
        });
    }

    /// Returns a slab slot `id` released to the buddy, unless a remote free
    /// may still touch it: the handshake of `cpu::hazard` (H1). Such a slab
    /// stays as an empty slab of its class, released on a later drain.
    pub(super) fn release_slab(
        &self,
        slab: &mut SlabCpu<'_, PAGE_SIZE>,
        sections: &mut SectionCache,
        id: usize,
        released: ReleasedSlab,
    ) {
        let (base, order) = (released.base(), released.order());
        let Some(head) = sections.meta(&self.map, base, Self::PAGE_SHIFT) else {
            debug_assert!(false, "a slab lies in managed memory");
            return;
        };
        // The queued check comes after the handshake: a remote free whose
        // hazard has moved on is seen in full, its push included.
        let may_go = hazard::try_release(
            &self.release_sync,
            self.hazards(),
            base,
            head,
            (order, id),
            || released.is_queued(),
        );
        if may_go {
            let (base, pages) = released.kill();
            if self.buddy.with(|b| b.free_slab(base, order, id)).is_err() {
                slab.faults()
                    .push(Fault::new(FaultKind::BuddyRefused, base, pages, id));
            }
        } else {
            slab.retain(released);
        }
    }

    /// Frees `ptr`, allocated by this allocator with `layout`.
    ///
    /// Double frees, foreign pointers, interior pointers and wrong layouts
    /// are detected, counted in [`GlobalStats::invalid_frees`], reported
    /// (`log::error!`, once the call holds nothing) and ignored.
    ///
    /// [`GlobalStats::invalid_frees`]: super::GlobalStats::invalid_frees
    ///
    /// # Safety
    /// The caller gives the memory up: it is not used afterwards.
    #[inline]
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded caller contract.
        let _ = unsafe { self.try_dealloc(ptr, layout) };
    }

    /// [`Self::dealloc`], saying whether the free was accepted.
    ///
    /// # Errors
    /// `NotAllocated` for a rejected free (nothing changed).
    ///
    /// # Safety
    /// As [`Self::dealloc`].
    #[inline]
    pub unsafe fn try_dealloc(&self, ptr: NonNull<u8>, layout: Layout) -> AllocResult {
        // SAFETY: forwarded caller contract.
        if unsafe { self.dealloc_fast(ptr, layout) } {
            return Ok(());
        }
        // SAFETY: as above; the fast path changed nothing.
        unsafe { self.dealloc_slow(ptr, layout) }
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
        self.on_own_slot(|s| {
            // SAFETY: forwarded caller contract for the object.
            unsafe { s.slab().free_small(ptr.as_ptr(), class) }.then_some(())
        })
        .is_some()
    }

    /// Every free the fast path does not take: objects of other slabs and
    /// CPUs, page runs, the shared slot, and every bad free (recorded here,
    /// reported once the slot is left).
    ///
    /// # Safety
    /// As `dealloc`.
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: NonNull<u8>, layout: Layout) -> AllocResult {
        let addr = ptr.as_ptr().addr();
        let done = self.with_slot(|s, id| {
            // SAFETY: forwarded caller contract.
            let result = unsafe { self.free_in(s, id, ptr, layout) };
            if let Err(why) = result {
                s.slot.counters.slab.count_rejected_free();
                s.local.faults.push(Fault::new(
                    FaultKind::RejectedFree(why),
                    addr,
                    layout.size(),
                    id,
                ));
            }
            result
        });
        match done {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(AllocError::NotAllocated),
            None => {
                self.invalid_frees.fetch_add(1, Ordering::Relaxed);
                let fault = Fault::new(
                    FaultKind::RejectedFree(FreeRejection::Uninitialised),
                    addr,
                    layout.size(),
                    u32::MAX as usize,
                );
                log::error!("buddy-slab: {fault}");
                Err(AllocError::NotAllocated)
            }
        }
    }

    /// Body of `dealloc` on slot `id`: finds what `ptr` is from its page
    /// metadata and frees it as that, or says why not.
    ///
    /// # Safety
    /// As `dealloc`.
    unsafe fn free_in(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), FreeRejection> {
        let addr = ptr.as_ptr().addr();
        let meta = s
            .local
            .sections
            .meta(&self.map, addr, Self::PAGE_SHIFT)
            .ok_or(FreeRejection::NotManaged)?;
        if let Some((order, owner)) = meta.slab_page() {
            let class = Self::TABLE
                .class_for(layout)
                .map_err(|_| FreeRejection::NotAllocated)?;
            let base = addr & !((PAGE_SIZE << order) - 1);
            return if owner == id {
                // SAFETY: forwarded caller contract.
                unsafe { self.free_local(s, id, order, base, addr, class, layout.size()) }
            } else {
                // SAFETY: forwarded caller contract.
                unsafe { self.free_remote(s, id, owner, order, base, addr, class, layout.size()) }
            };
        }
        if meta.kind() == PageKind::Allocated && !small(&layout) {
            return self.free_run(s, id, meta, addr, layout.size().div_ceil(PAGE_SIZE));
        }
        Err(FreeRejection::NotAllocated)
    }

    /// The slab header of the slab at `base` of `order`, through the
    /// section cache (which holds the slab's section: the caller just
    /// looked up an address in it), with its region's provenance.
    fn header_at(sections: &SectionCache, base: usize, order: u32) -> *const SlabHeader {
        sections
            .ptr_at(SlabHeader::addr_for(base, PAGE_SIZE << order))
            .cast::<SlabHeader>()
    }

    /// Frees the object at `addr` of class `class` into slot `id`'s own slab
    /// at `base`.
    ///
    /// # Safety
    /// As `dealloc`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn free_local(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        order: u32,
        base: usize,
        addr: usize,
        class: SizeClass,
        size: usize,
    ) -> Result<(), FreeRejection> {
        // SAFETY: a slab page of ours: its header is live memory that only
        // this slot releases (and it is running this), read through atomics
        // and trusted once its magic matches (S5).
        let hdr = unsafe { &*Self::header_at(&s.local.sections, base, order) };
        if !hdr.is_live_at(base) || hdr.class() != class.0 {
            return Err(FreeRejection::WrongClass);
        }
        let obj = s.local.sections.ptr_at(addr);
        let (slot, local) = (s.slot, &mut *s.local);
        let mut slab = SlabCpu::new(&mut local.slab, &slot.counters.slab, &mut local.faults);
        if DEBUG {
            slab.debug_check_red_zone(hdr, obj, size);
        }
        // SAFETY: the header is validated and ours; caller gives the object
        // up.
        if let Some(released) = unsafe { slab.dealloc_in(hdr, obj, None) }? {
            self.release_slab(&mut slab, &mut local.sections, id, released);
        }
        Ok(())
    }

    /// Frees the object at `addr` of class `class` into the slab at `base`
    /// of CPU `owner` (not slot `id`): one remote bit, and a push of the
    /// slab on the owner's pending stack when the free opens an epoch.
    ///
    /// # Safety
    /// As `dealloc`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn free_remote(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        owner: usize,
        order: u32,
        base: usize,
        addr: usize,
        class: SizeClass,
        size: usize,
    ) -> Result<(), FreeRejection> {
        let owner_slot = self.slot(owner).ok_or(FreeRejection::NotAllocated)?;
        let head = s
            .local
            .sections
            .meta(&self.map, base, Self::PAGE_SHIFT)
            .ok_or(FreeRejection::NotManaged)?;
        let sections = &s.local.sections;
        let touched = hazard::touch_remote_slab(
            self.hazard(id),
            &self.release_sync,
            base,
            head,
            (order, owner),
            || {
                // SAFETY: H1: the slab was live after our hazard named it, so
                // its owner keeps it (header included) until the hazard
                // moves on; the header is read through atomics and trusted
                // once its magic matches (S5).
                let hdr = unsafe { &*Self::header_at(sections, base, order) };
                if !hdr.is_live_at(base) || hdr.class() != class.0 {
                    return Err(FreeRejection::WrongClass);
                }
                let obj = sections.ptr_at(addr);
                // Debug checks: read the red zone while the object is still
                // ours (a valid free), before its remote bit is published;
                // report it only if the free is accepted.
                let bad_red_zone = if DEBUG {
                    // SAFETY: the caller gives the object up, so until its
                    // remote bit is set nobody else writes it (for a double
                    // free this may read memory another context owns; the
                    // result is then discarded).
                    unsafe {
                        debug::scan(
                            obj,
                            debug::red_zone(size, hdr.object_bytes()),
                            debug::RED_ZONE,
                        )
                    }
                } else {
                    None
                };
                match hdr.free_remote(obj) {
                    Ok(push) => {
                        if push {
                            owner_slot.pending.push(hdr);
                        }
                        Ok(bad_red_zone.map(|off| (obj, off, hdr.object_bytes())))
                    }
                    Err(FreeFault::DoubleFree) => Err(FreeRejection::RemoteDoubleFree),
                    Err(_) => Err(FreeRejection::NotAnObject),
                }
            },
        );
        let red_zone = touched.ok_or(FreeRejection::NotAllocated)??;
        s.slot.counters.remote_frees_sent.add(1);
        if let Some((obj, off, object_bytes)) = red_zone {
            s.slab().red_zone_found(obj, off, object_bytes);
        }
        Ok(())
    }

    /// Whether `ptr`, a small object of `layout`, can serve `new_size`
    /// bytes in place (the same size class).
    pub(super) fn resize_object(&self, ptr: NonNull<u8>, layout: Layout, new_size: usize) -> bool {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return false;
        };
        let table = Self::TABLE;
        match (table.class_for(layout), table.class_for(new_layout)) {
            (Ok(old), Ok(new)) if old == new => {
                if DEBUG {
                    SlabCpu::<PAGE_SIZE>::debug_fill_red_zone(
                        ptr,
                        new_size,
                        table.object_bytes(new),
                    );
                }
                true
            }
            _ => false,
        }
    }
}
