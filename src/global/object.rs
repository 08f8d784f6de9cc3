//! Small objects: allocation, local and remote frees, and slab release.

use super::{GlobalAllocator, fast, small};
use crate::buddy::{PageKind, PageMeta, SectionCache};
use crate::cpu::{SlotRef, hazard};
use crate::debug::{self, ENABLED as DEBUG};
use crate::error::{AllocError, AllocResult};
use crate::fault::{Fault, FaultKind, FreeRejection};
use crate::platform::Platform;
use crate::slab::header::{FreeFault, SlabHeader};
use crate::slab::{FastAlloc, ReleasedSlab, SizeClass, SlabAllocResult, SlabCpu};
use crate::sync::Ordering;
use core::alloc::Layout;
use core::ptr::NonNull;

/// Slabs released together (`flush_releases`).
const RELEASE_BATCH: usize = 16;

/// Slabs a slot is releasing, their heads marked dead, waiting for one
/// handshake and one buddy lock (`GlobalAllocator::flush_releases`).
pub(super) struct ReleaseBatch<'m> {
    slabs: [Option<(ReleasedSlab, &'m PageMeta)>; RELEASE_BATCH],
    len: usize,
}

impl ReleaseBatch<'_> {
    pub(super) fn new() -> Self {
        Self {
            slabs: [const { None }; RELEASE_BATCH],
            len: 0,
        }
    }
}

/// `alloc_slow`'s result: an `AllocResult<NonNull<u8>>` as two scalars,
/// which come back in two registers (the `Result` is returned through
/// memory, so the fast path would need a stack frame to call the slow one).
struct SlowAlloc {
    /// The object, or `None` and `err`.
    ptr: Option<NonNull<u8>>,
    err: AllocError,
}

impl SlowAlloc {
    #[inline(always)]
    fn from(result: AllocResult<NonNull<u8>>) -> Self {
        match result {
            Ok(p) => Self {
                ptr: Some(p),
                // Unread.
                err: AllocError::NoMemory,
            },
            Err(err) => Self { ptr: None, err },
        }
    }

    #[inline(always)]
    fn into_result(self) -> AllocResult<NonNull<u8>> {
        self.ptr.ok_or(self.err)
    }
}

/// A red zone found written to: the object, the offset, the object size.
type RedZoneHit = (*mut u8, usize, usize);

/// What a freed address's page metadata says of its slab.
#[derive(Clone, Copy)]
struct SlabAt {
    base: usize,
    order: u32,
    owner: usize,
    class: SizeClass,
}

/// Counts and records a free slot `id` refused (reported once it is left).
#[cold]
#[inline(never)]
pub(super) fn reject<const PAGE_SIZE: usize>(
    s: &mut SlotRef<'_, PAGE_SIZE>,
    id: usize,
    why: FreeRejection,
    addr: usize,
    size: usize,
) {
    s.slot.counters.slab.count_rejected_free();
    s.local
        .faults
        .push(Fault::new(FaultKind::RejectedFree(why), addr, size, id));
}

fn remote_rejection(fault: FreeFault) -> FreeRejection {
    match fault {
        FreeFault::DoubleFree => FreeRejection::RemoteDoubleFree,
        _ => FreeRejection::NotAnObject,
    }
}

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
    /// Allocates memory for `layout`.
    ///
    /// # Errors
    /// `InvalidParam` for a zero size; `NoMemory` when memory is exhausted
    /// (or before `init`).
    #[inline(always)]
    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        match self.alloc_fast(layout) {
            Some(FastAlloc::Object(p)) => Ok(p),
            // One call site: two would merge their results in memory.
            found => self
                .alloc_slow(layout, matches!(found, Some(FastAlloc::Unlinked)))
                .into_result(),
        }
    }

    /// The fast path: a pop from the active slab of the current CPU's class.
    /// `None` (nothing changed) sends the caller to `alloc_slow`, and
    /// `Unlinked` to `alloc_slow` with `link` set. It returns a bare
    /// pointer in a register: nested results here cost more than the pop
    /// itself (spilled, then reloaded across a store-forwarding stall).
    #[inline(always)]
    fn alloc_fast(&self, layout: Layout) -> Option<FastAlloc> {
        if !fast(&layout) {
            return None;
        }
        let class = Self::TABLE.class_of_small(layout.size());
        self.on_own_slot(|s| {
            // Remote frees wait for no refill: the slow path absorbs them
            // first (one load of a line remote CPUs write only to queue).
            if !s.slot.pending.is_empty() {
                return None;
            }
            s.slab().alloc_small(class)
        })
    }

    /// The fast path found the active slab's free list empty and unlinked
    /// objects in it: links a batch of them and pops one, with what the
    /// fast path checks checked again (the context may have moved).
    #[inline(always)]
    fn alloc_linking(&self, layout: Layout) -> Option<NonNull<u8>> {
        let class = Self::TABLE.class_of_small(layout.size());
        self.on_own_slot(|s| {
            if !s.slot.pending.is_empty() {
                return None;
            }
            s.slab().alloc_linking(class)
        })
    }

    /// Every allocation the fast path does not serve; `link`: it found
    /// unlinked objects to link, most often all that is needed.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout, link: bool) -> SlowAlloc {
        if link && let Some(p) = self.alloc_linking(layout) {
            return SlowAlloc::from(Ok(p));
        }
        SlowAlloc::from(self.alloc_refill(layout))
    }

    /// Body of `alloc_slow` past linking.
    #[inline(always)]
    fn alloc_refill(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        // Page runs, large alignments, the shared slot, slab refills, and
        // pops that found a fault.
        if layout.size() == 0 {
            return Err(AllocError::InvalidParam);
        }
        if !small(&layout) {
            let pages = layout.size().div_ceil(PAGE_SIZE);
            return self.alloc_pages_ptr(pages, layout.align().max(PAGE_SIZE));
        }
        let attempt = || {
            self.with_slot(
                #[inline(always)]
                move |s, id| self.alloc_object(s, id, layout),
            )
            .unwrap_or(Err(AllocError::NoMemory))
        };
        attempt().or_else(|e| self.retry_after_remote_drain(e, attempt))
    }

    fn alloc_object(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        layout: Layout,
    ) -> AllocResult<NonNull<u8>> {
        self.visit(s, id);
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
        let result = match s.slab().alloc_class(class) {
            SlabAllocResult::Allocated(p) => Ok(p),
            SlabAllocResult::NeedsSlab { .. } => Err(AllocError::NoMemory),
        };
        // An empty active slab the new one replaced joined the empty ones.
        self.trim_slabs(s, id);
        result
    }

    /// Absorbs the remote frees other CPUs made into this slot's slabs,
    /// releasing the slabs they emptied beyond the slot's budget.
    pub(super) fn absorb(&self, s: &mut SlotRef<'_, PAGE_SIZE>, id: usize) {
        let (slot, local) = (s.slot, &mut *s.local);
        let spare = self.slab_spare();
        let mut slab = SlabCpu::new(
            &mut local.slab,
            &slot.counters.slab,
            &mut local.faults,
            spare,
        );
        let sections = &mut local.sections;
        let mut batch = ReleaseBatch::new();
        slab.absorb_pending(&slot.pending, |slab, released| {
            self.batch_release(&mut batch, slab, sections, id, released);
        });
        self.flush_releases(&mut batch, &mut slab, id);
        // Active slabs the frees emptied count against the budget too.
        self.trim_slabs(s, id);
    }

    /// Adds a slab slot `id` released to `batch`, its head marked dead
    /// (H1); hands the batch over first if it is full.
    pub(super) fn batch_release<'m>(
        &'m self,
        batch: &mut ReleaseBatch<'m>,
        slab: &mut SlabCpu<'_, PAGE_SIZE>,
        sections: &mut SectionCache,
        id: usize,
        released: ReleasedSlab,
    ) {
        let Some(head) = sections.meta(&self.map, released.base(), Self::PAGE_SHIFT) else {
            debug_assert!(false, "a slab lies in managed memory");
            return;
        };
        if batch.len == RELEASE_BATCH {
            self.flush_releases(batch, slab, id);
        }
        head.mark_slab_dead(released.order(), id);
        batch.slabs[batch.len] = Some((released, head));
        batch.len += 1;
    }

    /// Hands the slabs of `batch` to the buddy, all under one handshake
    /// (H1) and one lock acquisition; a slab a remote free may still touch
    /// stays, marked live again, as an empty slab of its class.
    pub(super) fn flush_releases(
        &self,
        batch: &mut ReleaseBatch<'_>,
        slab: &mut SlabCpu<'_, PAGE_SIZE>,
        id: usize,
    ) {
        if batch.len == 0 {
            return;
        }
        let handshake = self.release_sync.handshake(self.hazards());
        let mut frees = [(0usize, 0u32); RELEASE_BATCH];
        let mut n = 0;
        for entry in &mut batch.slabs[..batch.len] {
            let Some((released, head)) = entry.take() else {
                continue;
            };
            let order = released.order();
            if handshake.keeps(released.base(), || released.is_queued()) {
                head.mark_slab_live(order, id);
                slab.retain(released);
            } else {
                frees[n] = (released.kill().0, order);
                n += 1;
            }
        }
        batch.len = 0;
        if n == 0 {
            return;
        }
        let refused = self.buddy.with(|b| {
            frees[..n]
                .iter()
                .find(|&&(base, order)| b.free_slab(base, order, id).is_err())
                .copied()
        });
        if let Some((base, order)) = refused {
            slab.faults()
                .push(Fault::new(FaultKind::BuddyRefused, base, 1 << order, id));
        }
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
    #[inline(always)]
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
    #[inline(always)]
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
        let freed = self.on_own_slot(|s| {
            // SAFETY: forwarded caller contract for the object.
            let emptied = unsafe { s.slab().free_small(ptr.as_ptr(), class) }?;
            // An emptied active slab counts against the budget.
            Some(emptied && s.slot.counters.slab.empty_bytes() > self.slab_spare())
        });
        match freed {
            Some(false) => true,
            Some(true) => {
                self.trim_here();
                true
            }
            None => false,
        }
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
        let done = self.with_slot(
            #[inline(always)]
            move |s, id| {
                self.visit(s, id);
                // SAFETY: forwarded caller contract.
                let result = unsafe { self.free_in(s, id, ptr, layout) };
                if let Err(why) = result {
                    reject(s, id, why, addr, layout.size());
                }
                result
            },
        );
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
    #[inline(always)]
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
            let slab = SlabAt {
                base: addr & !((PAGE_SIZE << order) - 1),
                order,
                owner,
                class,
            };
            return if owner == id {
                // SAFETY: forwarded caller contract.
                unsafe { self.free_local(s, id, slab, addr, layout.size()) }
            } else {
                // SAFETY: forwarded caller contract.
                unsafe { self.free_remote(s, id, slab, addr, layout.size()) }
            };
        }
        if meta.kind() == PageKind::Allocated && !small(&layout) {
            return self.free_run(s, id, meta, addr, layout.size().div_ceil(PAGE_SIZE));
        }
        Err(FreeRejection::NotAllocated)
    }

    /// The slab header of `slab`, through the section cache (which holds
    /// the slab's section: the caller just looked up an address in it),
    /// with its region's provenance.
    #[inline(always)]
    fn header_at(sections: &SectionCache, slab: &SlabAt) -> *const SlabHeader {
        sections
            .ptr_at(SlabHeader::addr_for(slab.base, PAGE_SIZE << slab.order))
            .cast::<SlabHeader>()
    }

    /// Frees the object at `addr` into slot `id`'s own `slab`.
    ///
    /// # Safety
    /// As `dealloc`.
    #[inline(always)]
    unsafe fn free_local(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        slab: SlabAt,
        addr: usize,
        size: usize,
    ) -> Result<(), FreeRejection> {
        // SAFETY: a slab page of ours: its header is live memory that only
        // this slot releases (and it is running this), read through atomics
        // and trusted once its magic matches (S5).
        let hdr = unsafe { &*Self::header_at(&s.local.sections, &slab) };
        if !hdr.is_live_at(slab.base) || hdr.class() != slab.class.0 {
            return Err(FreeRejection::WrongClass);
        }
        let obj = s.local.sections.ptr_at(addr);
        let (slot, local) = (s.slot, &mut *s.local);
        let spare = self.slab_spare();
        let mut slabs = SlabCpu::new(
            &mut local.slab,
            &slot.counters.slab,
            &mut local.faults,
            spare,
        );
        if DEBUG {
            slabs.debug_check_red_zone(hdr, obj, size);
        }
        // SAFETY: the header is validated and ours; caller gives the object
        // up.
        if let Some(released) = unsafe { slabs.dealloc_in(hdr, obj, None) }? {
            self.release_slab(&mut slabs, &mut local.sections, id, released);
        }
        // An emptied active slab counts against the budget.
        self.trim_slabs(s, id);
        Ok(())
    }

    /// Frees the object at `addr` into `slab`, owned by another CPU: one
    /// remote bit, and a push of the slab on the owner's pending stack when
    /// the free opens an epoch. The header is touched only under H1.
    ///
    /// # Safety
    /// As `dealloc`.
    #[inline(always)]
    unsafe fn free_remote(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        slab: SlabAt,
        addr: usize,
        size: usize,
    ) -> Result<(), FreeRejection> {
        let owner_slot = self.slot(slab.owner).ok_or(FreeRejection::NotAllocated)?;
        // The slab lies in the section of `addr`, which the cache holds.
        let sections = &s.local.sections;
        let head = sections
            .meta_cached(&self.map, slab.base, Self::PAGE_SHIFT)
            .ok_or(FreeRejection::NotAllocated)?;
        if !hazard::cover_remote_slab(
            self.hazard(id),
            &self.release_sync,
            slab.base,
            head,
            (slab.order, slab.owner),
        ) {
            return Err(FreeRejection::NotAllocated);
        }
        // SAFETY: H1: the slab was live after our hazard named it, so its
        // owner keeps it (header included) until the hazard moves on; the
        // header is read through atomics and trusted once its magic matches
        // (S5).
        let hdr = unsafe { &*Self::header_at(sections, &slab) };
        if !hdr.is_live_at(slab.base) || hdr.class() != slab.class.0 {
            return Err(FreeRejection::WrongClass);
        }
        let obj = sections.ptr_at(addr);
        let (pushed, red_zone) = if DEBUG {
            // SAFETY: as `free_remote_checked`'s contract.
            unsafe { Self::free_remote_checked(hdr, obj, size, owner_slot) }?
        } else {
            match hdr.free_remote(obj) {
                Ok(push) => {
                    if push {
                        owner_slot.pending.push(hdr);
                    }
                    (push, None)
                }
                Err(fault) => return Err(remote_rejection(fault)),
            }
        };
        s.slot.counters.remote_frees_sent.add(1);
        if let Some((obj, off, object_bytes)) = red_zone {
            s.slab().red_zone_found(obj, off, object_bytes);
        }
        // An owner that makes no more calls would never absorb the free.
        if pushed && P::is_idle_hint(slab.owner) {
            self.drain_idle_owner(s, id, slab.owner);
        }
        Ok(())
    }

    /// Debug checks: the remote free of `obj` (in the live slab `hdr`) with
    /// the red zone of a `size`-byte request read while the object is still
    /// ours (a valid free), before its remote bit is published. A bad red
    /// zone is returned to be reported only if the free is accepted, with
    /// whether the free queued the slab.
    ///
    /// # Safety
    /// The caller touches `hdr` under H1 and gives the object up.
    #[cold]
    unsafe fn free_remote_checked(
        hdr: &SlabHeader,
        obj: *mut u8,
        size: usize,
        owner_slot: &crate::cpu::CpuSlot<PAGE_SIZE>,
    ) -> Result<(bool, Option<RedZoneHit>), FreeRejection> {
        // SAFETY: the caller gives the object up, so until its remote bit is
        // set nobody else writes it (for a double free this may read memory
        // another context owns; the result is then discarded).
        let bad = unsafe {
            debug::scan(
                obj,
                debug::red_zone(size, hdr.object_bytes()),
                debug::RED_ZONE,
            )
        };
        match hdr.free_remote(obj) {
            Ok(push) => {
                if push {
                    owner_slot.pending.push(hdr);
                }
                Ok((push, bad.map(|off| (obj, off, hdr.object_bytes()))))
            }
            Err(fault) => Err(remote_rejection(fault)),
        }
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
