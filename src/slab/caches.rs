//! One CPU's slab state and every operation on it: the owner-only lists
//! ([`SlabCaches`]), the counters anyone reads ([`SlabCounters`]), and the
//! owner's view of both ([`SlabCpu`]) where the slab logic runs.

use super::MAX_CLASSES;
use super::counters::SlabCounters;
use super::header::{FreeFault, HeaderFault, PendingSlabs, SlabGeometry, SlabHeader, SlabState};
use super::list::SlabList;
use super::{SizeClass, SizeClassTable, SlabAllocResult};
use crate::debug::ENABLED as DEBUG;
use crate::error::{AllocError, AllocResult};
use crate::fault::{Fault, FaultKind, FaultLog, FreeRejection};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// A slab the owner gave up: every object free, not queued for remote
/// frees (S4), off every list and uncounted. Its header is still intact
/// (the facade may keep it after all: [`SlabCpu::retain`]); [`Self::kill`]
/// marks it dead before its memory goes back to the page allocator.
#[must_use = "a released slab is lost unless it is freed or retained"]
pub(crate) struct ReleasedSlab(pub(super) &'static SlabHeader);

impl ReleasedSlab {
    pub(crate) fn base(&self) -> usize {
        self.0.base()
    }

    pub(crate) fn order(&self) -> u32 {
        self.0.order()
    }

    /// Whether a remote free has queued it since the owner let it go (S4):
    /// then it must be retained.
    pub(crate) fn is_queued(&self) -> bool {
        self.0.is_queued()
    }

    /// Marks the header dead (S5) and returns `(base, pages)`.
    pub(crate) fn kill(self) -> (usize, usize) {
        if DEBUG {
            self.0.check();
        }
        self.0.kill();
        (self.0.base(), 1 << self.0.order())
    }
}

/// What [`SlabCpu::alloc_small`] found.
pub(crate) enum FastAlloc {
    /// An object, handed out.
    Object(NonNull<u8>),
    /// The free list is empty, the slab has unlinked objects: linking
    /// them is a call, which the fast path leaves to its caller.
    Unlinked,
}

/// One class's owner-only lists (the fast paths read `active` of one
/// class).
///
/// The partial list is a queue: a full slab that gets a free object joins
/// at the tail, allocation takes the head, so the slab taken has been
/// collecting frees the longest. With frees spread over many slabs (a
/// random free order), a stack hands out the slab that just got its first
/// free object and is full again after one allocation: the b pattern took
/// the slow path on 47 % of its allocations, 19 % as a queue.
struct ClassLists {
    active: *mut SlabHeader,
    partial: SlabList,
    empty: SlabList,
}

impl ClassLists {
    const fn new() -> Self {
        Self {
            active: ptr::null_mut(),
            partial: SlabList::new(),
            empty: SlabList::new(),
        }
    }
}

/// A CPU's slab lists for every size class: owner-only state.
///
/// Invariant L1: every slab this CPU holds is in exactly one of: `active`
/// of its class, its class's `partial` (state Partial, has free objects),
/// `empty` (state Empty, no live object), or no list (state Full: its free
/// list is empty).
pub(crate) struct SlabCaches<const PAGE_SIZE: usize> {
    pub(super) table: &'static SizeClassTable<PAGE_SIZE>,
    lists: [ClassLists; MAX_CLASSES],
    pub(super) cpu: usize,
    /// Where the next `shed` starts looking (round robin over classes).
    shed_from: usize,
}

// SAFETY: the raw pointers are to slabs this CPU's caches own; moving the
// caches to another thread moves that ownership with them.
unsafe impl<const PAGE_SIZE: usize> Send for SlabCaches<PAGE_SIZE> {}

impl<const PAGE_SIZE: usize> SlabCaches<PAGE_SIZE> {
    /// Empty caches over `table` for CPU `cpu`.
    pub(crate) const fn new(table: &'static SizeClassTable<PAGE_SIZE>, cpu: usize) -> Self {
        Self {
            table,
            lists: [const { ClassLists::new() }; MAX_CLASSES],
            cpu,
            shed_from: 0,
        }
    }

    /// Walks every listed slab and checks S1, S2, L1 and L2 against
    /// `counters`; panics on a violation. Full slabs are on no list and are
    /// not reached.
    pub(crate) fn check(&self, counters: &SlabCounters) {
        let mut empty_bytes = 0;
        for class in self.table.classes() {
            let c = &self.lists[class.index()];
            let bytes = PAGE_SIZE << self.table.slab_order(class);
            // SAFETY: `active` is null or live (L1).
            if let Some(hdr) = unsafe { c.active.as_ref() } {
                assert_eq!(hdr.state.get(), SlabState::Active);
                hdr.check();
                if hdr.nr_allocated() == 0 {
                    empty_bytes += bytes;
                }
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
            let counted = counters.class(class);
            assert_eq!(counted.nr_empty.get(), empty, "L2: empty slabs counted");
            assert!(listed + empty <= counted.nr_slabs.get(), "L2");
            empty_bytes += empty * bytes;
        }
        assert_eq!(
            counters.empty_bytes.get(),
            empty_bytes,
            "L3: bytes of empty slabs"
        );
    }

    /// The lists of `class`, for the fast paths: no bounds check.
    #[inline(always)]
    fn lists(&self, class: SizeClass) -> &ClassLists {
        debug_assert!(class.index() < MAX_CLASSES);
        // SAFETY: C5: every `SizeClass` indexes a table of at most
        // MAX_CLASSES classes, the length of `lists`.
        unsafe { self.lists.get_unchecked(class.index()) }
    }
}

/// The owner's view of a CPU's slab state: its lists, its counters and
/// where its faults go. All slab logic runs here.
pub(crate) struct SlabCpu<'a, const PAGE_SIZE: usize> {
    caches: &'a mut SlabCaches<PAGE_SIZE>,
    pub(super) counters: &'a SlabCounters,
    faults: &'a mut FaultLog,
    /// Bytes of empty slabs this CPU may keep (its share of the idle
    /// budget): a slab emptied beyond it is released.
    spare: usize,
}

impl<'a, const PAGE_SIZE: usize> SlabCpu<'a, PAGE_SIZE> {
    /// The view of `caches`, keeping at most `spare` bytes of empty slabs.
    #[inline(always)]
    pub(crate) fn new(
        caches: &'a mut SlabCaches<PAGE_SIZE>,
        counters: &'a SlabCounters,
        faults: &'a mut FaultLog,
        spare: usize,
    ) -> Self {
        Self {
            caches,
            counters,
            faults,
            spare,
        }
    }

    /// Bytes of a slab of `class`.
    #[inline(always)]
    fn slab_bytes(&self, class: SizeClass) -> usize {
        PAGE_SIZE << self.table().slab_order(class)
    }

    /// A slab of `class` joined the empty ones (L3).
    #[inline(always)]
    fn count_empty(&mut self, class: SizeClass) {
        self.count_empty_bytes(self.slab_bytes(class));
    }

    /// A slab of `class` left the empty ones (L3).
    #[inline(always)]
    fn uncount_empty(&mut self, class: SizeClass) {
        self.uncount_empty_bytes(self.slab_bytes(class));
    }

    /// `count_empty` for the fast paths: the size from the (hot) header.
    #[inline(always)]
    fn count_empty_bytes(&mut self, bytes: usize) {
        let c = &self.counters.empty_bytes;
        c.set(c.get() + bytes);
    }

    /// `uncount_empty` for the fast paths.
    #[inline(always)]
    fn uncount_empty_bytes(&mut self, bytes: usize) {
        let c = &self.counters.empty_bytes;
        c.set(c.get() - bytes);
    }

    fn table(&self) -> &'static SizeClassTable<PAGE_SIZE> {
        self.caches.table
    }

    /// Where this CPU's faults go.
    pub(crate) fn faults(&mut self) -> &mut FaultLog {
        self.faults
    }

    /// Records a fault this CPU found at `addr` (an object or a slab)
    /// involving `size` bytes.
    #[cold]
    pub(super) fn record(&mut self, kind: FaultKind, addr: usize, size: usize) {
        self.faults
            .push(Fault::new(kind, addr, size, self.caches.cpu));
    }

    /// Allocates an object for `layout` from the class's slabs.
    ///
    /// # Errors
    /// `InvalidParam` if the layout is not served by slabs (zero size,
    /// larger than 2048 bytes or aligned beyond what any class honours).
    #[inline(always)]
    pub(crate) fn alloc(&mut self, layout: Layout) -> AllocResult<SlabAllocResult> {
        let class = self.table().class_for(layout)?;
        Ok(self.alloc_class(class))
    }

    /// Allocates an object of `class`.
    #[inline(always)]
    pub(crate) fn alloc_class(&mut self, class: SizeClass) -> SlabAllocResult {
        match self.alloc_small(class) {
            Some(FastAlloc::Object(p)) => SlabAllocResult::Allocated(p),
            // The slow path links unlinked objects too.
            _ => self.alloc_slow(class),
        }
    }

    /// Fast path of the facade: an object of `class` from its active
    /// slab's free list; [`FastAlloc::Unlinked`] when that list is empty
    /// but the slab has unlinked objects (take [`Self::alloc_linking`]);
    /// `None` for anything else (take [`Self::alloc_class`]). Nothing
    /// changed unless an object is returned.
    #[inline(always)]
    pub(crate) fn alloc_small(&mut self, class: SizeClass) -> Option<FastAlloc> {
        // SAFETY: `active` is null or a live slab of this class (L1).
        let hdr = unsafe { self.caches.lists(class).active.as_ref() }?;
        match hdr.pop_listed() {
            Some(obj) => Some(FastAlloc::Object(self.handed_out(class, hdr, obj))),
            None if hdr.needs_linking() => Some(FastAlloc::Unlinked),
            None => None,
        }
    }

    /// [`Self::alloc_small`], linking the active slab's unlinked objects
    /// when its free list is empty.
    #[inline(always)]
    pub(crate) fn alloc_linking(&mut self, class: SizeClass) -> Option<NonNull<u8>> {
        // SAFETY: `active` is null or a live slab of this class (L1).
        let hdr = unsafe { self.caches.lists(class).active.as_ref() }?;
        let obj = hdr.pop()?;
        Some(self.handed_out(class, hdr, obj))
    }

    /// Fast path of the facade's free: frees `obj`, a request of `class`, if
    /// it is an allocated object of the class's active slab. Returns `None`,
    /// having changed nothing, for anything else (another slab, a bad free,
    /// debug checks on): the caller then takes the validating path, which
    /// also reports. `Some(emptied)`: freed; `emptied` says the slab has no
    /// live object left (the caller may have to trim to its budget).
    ///
    /// # Safety
    /// The caller gives the object up.
    #[inline(always)]
    pub(crate) unsafe fn free_small(&mut self, obj: *mut u8, class: SizeClass) -> Option<bool> {
        if DEBUG {
            return None;
        }
        // SAFETY: `active` is null or a live slab of this class owned by
        // this CPU (L1), so its header is trusted without the magic check;
        // `free_local` validates `obj` against it before any write.
        let hdr = unsafe { self.caches.lists(class).active.as_ref() }?;
        // SAFETY: forwarded caller contract; an Active slab needs no list
        // move after a free.
        unsafe { hdr.free_local(obj) }.ok()?;
        self.counters.class(class).live_objects.sub(1);
        if hdr.nr_allocated() == 0 {
            self.count_empty_bytes(hdr.slab_bytes());
            return Some(true);
        }
        Some(false)
    }

    /// Accounts for `obj`, just popped from `hdr`, and returns it.
    #[inline(always)]
    fn handed_out(&mut self, class: SizeClass, hdr: &SlabHeader, obj: *mut u8) -> NonNull<u8> {
        if hdr.nr_allocated() == 1 {
            // The (active) slab was empty (L3).
            self.uncount_empty_bytes(hdr.slab_bytes());
        }
        self.counters.class(class).live_objects.add(1);
        if DEBUG {
            self.debug_on_alloc(hdr, obj);
        }
        // SAFETY: objects are never at address 0 (slabs are in managed
        // memory, which starts above 0).
        unsafe { NonNull::new_unchecked(obj) }
    }

    /// Pops from `hdr`, repairing (and recording) what makes it refuse.
    /// `None` when the slab has no free object left.
    fn pop_repairing(&mut self, hdr: &SlabHeader) -> Option<*mut u8> {
        // Each repair removes one cause; a bound keeps a slab under a
        // stream of concurrent remote double frees from holding us here.
        for _ in 0..64 {
            if let Some(obj) = hdr.pop() {
                return Some(obj);
            }
            let (kind, addr) = match hdr.repair()? {
                HeaderFault::CorruptFreeList => (FaultKind::CorruptFreeList, hdr.base()),
                HeaderFault::LostUnlinked => (FaultKind::LostUnlinked, hdr.base()),
                HeaderFault::StrayRemoteFree(obj) => {
                    // The object counts as live until the stray bit is
                    // absorbed (S3), which frees it again.
                    let class = SizeClass(hdr.class());
                    if hdr.nr_allocated() == 1 {
                        self.uncount_empty(class);
                    }
                    self.counters.class(class).live_objects.add(1);
                    self.counters.invalid_frees.add(1);
                    (FaultKind::StrayRemoteFree, obj.addr())
                }
            };
            self.record(kind, addr, hdr.object_bytes());
        }
        None
    }

    #[cold]
    fn alloc_slow(&mut self, class: SizeClass) -> SlabAllocResult {
        loop {
            let lists = &self.caches.lists[class.index()];
            // SAFETY: `active` is null or a live slab of this class (L1).
            if let Some(hdr) = unsafe { lists.active.as_ref() } {
                if let Some(obj) = self.pop_repairing(hdr) {
                    return SlabAllocResult::Allocated(self.handed_out(class, hdr, obj));
                }
                if hdr.nr_allocated() == 0 {
                    // No object to hand out, yet none allocated: a broken
                    // slab, kept aside as full rather than trusted (L3).
                    self.uncount_empty(class);
                }
                hdr.state.set(SlabState::Full);
                self.caches.lists[class.index()].active = ptr::null_mut();
            }
            let lists = &mut self.caches.lists[class.index()];
            let next = match lists.partial.pop() {
                Some(hdr) => hdr,
                None => match lists.empty.pop() {
                    Some(hdr) => {
                        self.counters.class(class).nr_empty.sub(1);
                        hdr
                    }
                    None => break,
                },
            };
            next.state.set(SlabState::Active);
            self.caches.lists[class.index()].active = ptr::from_ref(next).cast_mut();
        }
        SlabAllocResult::NeedsSlab {
            size_class: class,
            pages: 1 << self.table().slab_order(class),
        }
    }

    /// Turns the block of `bytes` at `base` into a slab of `class`, its
    /// class's active slab. Objects handed out from it are derived from
    /// `base` and carry its provenance.
    ///
    /// # Errors
    /// `InvalidParam` if `class` is not a class of this table, `bytes` is
    /// not the class's slab size or `base` is not aligned to it.
    ///
    /// # Safety
    /// The block is writable memory, reachable through `base`, that the
    /// caller gives to this CPU's caches until it comes back released.
    pub(crate) unsafe fn add_slab_ptr(
        &mut self,
        class: SizeClass,
        base: NonNull<u8>,
        bytes: usize,
    ) -> AllocResult {
        let table = self.table();
        if class.index() >= table.len() {
            return Err(AllocError::InvalidParam);
        }
        let order = table.slab_order(class);
        if bytes != PAGE_SIZE << order || !base.addr().get().is_multiple_of(bytes) {
            return Err(AllocError::InvalidParam);
        }
        let geo = SlabGeometry {
            class: class.0,
            order,
            slab_bytes: bytes,
            object_bytes: table.object_bytes(class),
            nr_objects: table.objects_per_slab(class),
            inverse: table.inverse(class),
        };
        let base = base.as_ptr();
        let hdr = base
            .map_addr(|a| SlabHeader::addr_for(a, bytes))
            .cast::<SlabHeader>();
        // SAFETY: caller contract: the block is ours, aligned to its size
        // (checked); its geometry is the table's for this page size (C3).
        unsafe { SlabHeader::init(hdr, base, &geo, self.caches.cpu) };
        self.counters.class(class).nr_slabs.add(1);
        // A new slab has no live object (L3) until its first allocation.
        self.count_empty(class);
        // SAFETY: just initialised.
        let hdr = unsafe { &*hdr };
        // A fresh slab goes first in line: it is the one the caller needed.
        // SAFETY: `active` is null or live (L1).
        if let Some(old) = unsafe { self.caches.lists[class.index()].active.as_ref() } {
            if old.nr_allocated() == 0 {
                // Empty already (and counted so): to the empty list.
                self.keep_empty(old);
            } else if old.has_free() {
                old.state.set(SlabState::Partial);
                self.caches.lists[class.index()].partial.push(old);
            } else {
                old.state.set(SlabState::Full);
            }
        }
        hdr.state.set(SlabState::Active);
        self.caches.lists[class.index()].active = ptr::from_ref(hdr).cast_mut();
        Ok(())
    }

    /// Frees `obj` into the slab `hdr` owned by this CPU, checking that it
    /// is an allocated object of class `class` (if given). A rejected free
    /// changes nothing and says why (the caller counts and records it);
    /// an accepted one gives `Ok(Some)` if it emptied a slab this CPU may
    /// not keep. (An emptied active slab stays, counted as empty: the caller
    /// trims to its budget.)
    ///
    /// # Safety
    /// `hdr` is a live slab owned by this CPU; the caller gives the object
    /// up.
    #[inline(always)]
    pub(crate) unsafe fn dealloc_in(
        &mut self,
        hdr: &SlabHeader,
        obj: *mut u8,
        class: Option<u8>,
    ) -> Result<Option<ReleasedSlab>, FreeRejection> {
        let result = match class.filter(|&c| c != hdr.class()) {
            Some(_) => Err(FreeFault::WrongClass),
            // SAFETY: forwarded caller contract.
            None => unsafe { hdr.free_local(obj) },
        };
        if let Err(fault) = result {
            // The caller counts and records the rejection.
            return Err(rejection(fault));
        }
        let class = SizeClass(hdr.class());
        self.counters.class(class).live_objects.sub(1);
        Ok(match hdr.state.get() {
            SlabState::Active => {
                if hdr.nr_allocated() == 0 {
                    self.count_empty(class);
                }
                None
            }
            SlabState::Full if hdr.nr_allocated() > 0 => {
                hdr.state.set(SlabState::Partial);
                self.caches.lists[class.index()].partial.push_back(hdr);
                None
            }
            SlabState::Partial if hdr.nr_allocated() > 0 => None,
            _ => self.slab_emptied(hdr),
        })
    }

    /// A non-active slab has no live object left: keep it as an empty slab
    /// if the budget allows, or release it.
    fn slab_emptied(&mut self, hdr: &SlabHeader) -> Option<ReleasedSlab> {
        let class = SizeClass(hdr.class());
        let lists = &mut self.caches.lists[class.index()];
        match hdr.state.get() {
            SlabState::Partial => lists.partial.remove(hdr),
            SlabState::Empty => {
                lists.empty.remove(hdr);
                self.counters.class(class).nr_empty.sub(1);
                self.uncount_empty(class);
            }
            SlabState::Full | SlabState::Active => {}
        }
        // A queued slab is still on a pending stack and must not be released
        // yet (S4): it is re-examined when the owner absorbs it.
        if self.counters.empty_bytes.get() + self.slab_bytes(class) <= self.spare || hdr.is_queued()
        {
            self.keep_empty(hdr);
            self.count_empty(class);
            return None;
        }
        Some(self.release(hdr))
    }

    /// Puts `hdr`, a slab without a live object, on its class's empty list.
    /// (L3's count is the caller's.)
    fn keep_empty(&mut self, hdr: &SlabHeader) {
        let class = SizeClass(hdr.class());
        hdr.state.set(SlabState::Empty);
        self.caches.lists[class.index()].empty.push(hdr);
        self.counters.class(class).nr_empty.add(1);
    }

    /// Takes an empty slab (off every list, not counted in L3) out of the
    /// counts.
    fn release(&mut self, hdr: &SlabHeader) -> ReleasedSlab {
        self.counters.class(SizeClass(hdr.class())).nr_slabs.sub(1);
        // SAFETY: slab headers live until their memory goes back to the
        // page allocator, which only `ReleasedSlab::kill`'s caller does.
        ReleasedSlab(unsafe { &*ptr::from_ref(hdr) })
    }

    /// Takes back a slab released by this CPU that must stay (a remote
    /// free may still reach it): an empty slab again.
    pub(crate) fn retain(&mut self, slab: ReleasedSlab) {
        let hdr = slab.0;
        let class = SizeClass(hdr.class());
        self.counters.class(class).nr_slabs.add(1);
        self.keep_empty(hdr);
        self.count_empty(class);
    }

    /// Releases empty slabs until this CPU keeps at most `target` bytes of
    /// them: from the empty lists first (round robin over the classes),
    /// then empty active slabs. A queued slab stays (S4). `released`
    /// receives each.
    pub(crate) fn shed(
        &mut self,
        target: usize,
        mut released: impl FnMut(&mut Self, ReleasedSlab),
    ) {
        let n = self.table().len();
        for pass in 0..2 {
            let mut visited = 0;
            while self.counters.empty_bytes.get() > target && visited < n {
                let c = self.caches.shed_from % n;
                self.caches.shed_from = self.caches.shed_from.wrapping_add(1);
                visited += 1;
                let class = SizeClass(c as u8);
                let hdr = if pass == 0 {
                    let Some(hdr) = self.caches.lists[c].empty.iter().find(|h| !h.is_queued())
                    else {
                        continue;
                    };
                    // SAFETY: list members are live slabs this CPU owns (L1).
                    let hdr = unsafe { &*ptr::from_ref(hdr) };
                    self.caches.lists[c].empty.remove(hdr);
                    self.counters.class(class).nr_empty.sub(1);
                    hdr
                } else {
                    // SAFETY: `active` is null or live (L1).
                    let Some(hdr) = (unsafe { self.caches.lists[c].active.as_ref() }) else {
                        continue;
                    };
                    if hdr.nr_allocated() != 0 || hdr.is_queued() {
                        continue;
                    }
                    self.caches.lists[c].active = ptr::null_mut();
                    hdr
                };
                // Visit this class again: it may hold more.
                visited = 0;
                self.uncount_empty(class);
                let slab = self.release(hdr);
                released(self, slab);
            }
        }
    }

    /// Absorbs the remote frees of every slab on `pending`, moving slabs to
    /// the lists they now belong on; `released` receives each slab that
    /// became free beyond the budget.
    pub(crate) fn absorb_pending(
        &mut self,
        pending: &PendingSlabs,
        mut released: impl FnMut(&mut Self, ReleasedSlab),
    ) {
        pending.take_all(|hdr| {
            debug_assert_eq!(hdr.owner_cpu(), self.caches.cpu);
            let before = hdr.nr_allocated();
            let cpu = self.caches.cpu;
            let faults = &mut *self.faults;
            let doubles = hdr.absorb_remote(|obj| {
                faults.push(Fault::new(
                    FaultKind::StrayRemoteFree,
                    obj.addr(),
                    hdr.object_bytes(),
                    cpu,
                ));
            });
            self.counters.invalid_frees.add(doubles);
            if DEBUG {
                hdr.check();
            }
            let class = SizeClass(hdr.class());
            self.counters
                .class(class)
                .live_objects
                .sub(before - hdr.nr_allocated());
            let emptied = match hdr.state.get() {
                SlabState::Active => {
                    if before > 0 && hdr.nr_allocated() == 0 {
                        self.count_empty(class);
                    }
                    false
                }
                SlabState::Full if hdr.nr_allocated() > 0 => {
                    if hdr.has_free() {
                        hdr.state.set(SlabState::Partial);
                        self.caches.lists[class.index()].partial.push_back(hdr);
                    }
                    false
                }
                SlabState::Partial if hdr.nr_allocated() > 0 => false,
                _ => true,
            };
            if emptied && let Some(slab) = self.slab_emptied(hdr) {
                released(self, slab);
            }
        });
    }

    /// Releases every empty slab (including a wholly free active one) that
    /// is not queued for remote frees; `released` receives each.
    pub(crate) fn drain(&mut self, mut released: impl FnMut(&mut Self, ReleasedSlab)) {
        for c in 0..self.table().len() {
            let class = SizeClass(c as u8);
            let lists = &mut self.caches.lists[c];
            // SAFETY: `active` is null or live (L1).
            if let Some(hdr) = unsafe { lists.active.as_ref() }
                && hdr.nr_allocated() == 0
            {
                lists.active = ptr::null_mut();
                // Counted as empty already (L3).
                self.keep_empty(hdr);
            }
            let (mut keep, mut kept) = (SlabList::new(), 0);
            let mut out = SlabList::new();
            while let Some(hdr) = self.caches.lists[c].empty.pop() {
                if hdr.is_queued() {
                    keep.push(hdr);
                    kept += 1;
                } else {
                    out.push(hdr);
                }
            }
            self.caches.lists[c].empty = keep;
            self.counters.class(class).nr_empty.set(kept);
            while let Some(hdr) = out.pop() {
                self.uncount_empty(class);
                let slab = self.release(hdr);
                released(self, slab);
            }
        }
    }

    /// Checks S1, S2, L1 and L2 (see [`SlabCaches::check`]).
    pub(crate) fn check_invariants(&self) {
        self.caches.check(self.counters);
    }
}

fn rejection(fault: FreeFault) -> FreeRejection {
    match fault {
        FreeFault::NotAnObject => FreeRejection::NotAnObject,
        FreeFault::DoubleFree => FreeRejection::DoubleFree,
        FreeFault::WrongClass => FreeRejection::WrongClass,
    }
}
