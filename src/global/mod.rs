//! The global facade: per-CPU slabs for small requests, the buddy for pages.
//!
//! # Routing
//! Requests with size and alignment ≤ 2048 bytes go to the current CPU's
//! slab caches; larger ones become page runs, served from the CPU's page
//! cache for small power-of-two runs, else from the buddy.
//!
//! # Frees
//! `dealloc` finds the page metadata of the address (lock-free section map,
//! O(log sections), through a one-entry per-CPU cache), which says whether
//! it is a slab page (→ its owner CPU and its header by arithmetic) or the
//! head of a run. A slab object freed by its owner CPU goes back on the
//! slab's free list; freed by another CPU it sets a bit in the slab's
//! remote bitmap (one atomic OR) and, the first time, pushes the slab on
//! the owner's pending stack (one CAS). The owner absorbs pending slabs on
//! its next allocation (whose fast path steps aside while slabs are
//! queued, `idle.rs`) or slow path: O(1) per slab, no walk over full slabs.
//!
//! # Files
//! - `slot.rs`: pinning, the slot a context owns (O1), fault reports after
//!   release;
//! - `object.rs`: objects, remote frees and slab release (H1);
//! - `pages.rs`: page runs and the page cache's source (the locked buddy);
//! - `idle.rs`: the idle budget, trimming to it, the owner's periodic
//!   visit (prompt absorption of remote frees, page-cache decay);
//! - `reclaim.rs`: drains, memory pressure;
//! - `stats.rs`: statistics and invariant checks.
//!
//! # Lock order
//! 1. the CPU pin (`Platform::pin`) or the shared-slot lock, then
//! 2. the buddy lock.
//!
//! Slab and page-cache state is never shared under a lock: it belongs to
//! one CPU slot; cross-CPU traffic is the remote bitmaps, pending stacks
//! and hazards. Nothing is logged while a pin or a lock is held: faults are
//! recorded in the slot and reported after both are released.

mod idle;
mod object;
mod pages;
mod reclaim;
mod slot;
mod stats;

pub use stats::{CpuStats, GlobalStats};

use crate::buddy::{BuddyAllocator, MAX_OWNER_CPUS, SectionMap};
use crate::cpu::{CpuSlot, Hazard, ReleaseSync};
use crate::error::{AllocError, AllocResult};
use crate::platform::{DrainHook, Platform};
use crate::slab::{MAX_OBJECT_BYTES, SizeClassTable, SlabAllocator};
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, Locked, Ordering, RawLock};
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

/// Most shared slots a platform can ask for ([`Platform::SHARED_SLOTS`]).
pub const MAX_SHARED_SLOTS: usize = 16;

/// A shared slot's lock, alone in its cache line: threads on different
/// shared slots must not contend on one line.
#[repr(align(64))]
struct SharedLock<L>(L);

/// Buddy pages + per-CPU slab caches, usable as `#[global_allocator]`.
///
/// Invariants: G1: `slots` is null until `init` publishes `nr_slots`
/// initialised slots and as many hazards at `hazards` (Release/Acquire):
/// ids `0..nr_cpu_slots` belong to the platform's CPUs, the
/// `SHARED_SLOTS` after them are the shared slots, each guarded by its
/// lock in `shared`. G2: every section the buddy manages is
/// in `map`.
pub struct GlobalAllocator<const PAGE_SIZE: usize, P: Platform = DefaultPlatform> {
    buddy: Locked<P::Lock, BuddyAllocator<PAGE_SIZE>>,
    shared: [SharedLock<P::Lock>; MAX_SHARED_SLOTS],
    map: SectionMap,
    slots: AtomicPtr<CpuSlot<PAGE_SIZE>>,
    /// One per slot, in one array so a release scans a few cache lines.
    hazards: AtomicPtr<Hazard>,
    nr_slots: AtomicUsize,
    /// The number of CPU slots once `slots` is published (Release after
    /// it), 0 before: the fast paths' one check for "initialised and an own
    /// slot".
    nr_cpu_slots: AtomicUsize,
    /// Whether this instance holds the platform's per-CPU slot hints
    /// (`Platform::SLOT_HINTS`): set at `init`.
    slot_hints: AtomicBool,
    /// Frees rejected before they reached a slot (before `init`).
    invalid_frees: AtomicUsize,
    /// Calls served by the shared slot because their CPU's slot was in use
    /// on that CPU (a re-entry).
    reentries: AtomicUsize,
    /// CPU slots whose page-cache marks are above the initial one: the
    /// CPUs sharing the page caches' growth budget.
    growing_cpus: AtomicUsize,
    /// Each CPU's idle budget, bytes (`idle.rs`): set as regions are added.
    idle_budget: AtomicUsize,
    /// The part of it empty slabs may take, bytes.
    slab_spare: AtomicUsize,
    /// Bumped when an allocation runs out of memory: every CPU drains its
    /// caches on its next slow path once it sees a new value.
    reclaim_epoch: AtomicUsize,
    /// What slab releases and remote frees synchronise on (H1).
    release_sync: ReleaseSync,
    _platform: PhantomData<fn() -> P>,
}

impl<const PAGE_SIZE: usize, P: Platform> Default for GlobalAllocator<PAGE_SIZE, P> {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the fast paths serve `layout`: 1..=2048 bytes, alignment ≤ 8
/// (one class-table load finds the class).
#[inline(always)]
fn fast(layout: &Layout) -> bool {
    layout.size().wrapping_sub(1) < MAX_OBJECT_BYTES && layout.align() <= 8
}

/// Whether `layout` is served by slabs (else by page runs).
fn small(layout: &Layout) -> bool {
    layout.size() <= MAX_OBJECT_BYTES && layout.align() <= MAX_OBJECT_BYTES
}

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
    const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();
    /// The size classes of every CPU slot: a constant address, so the fast
    /// paths find the class without a dependent load.
    const TABLE: &'static SizeClassTable<PAGE_SIZE> = SlabAllocator::<PAGE_SIZE>::default_table();
    /// The platform's shared slots, clamped to what `shared` holds.
    const SHARED_SLOTS: usize = if P::SHARED_SLOTS == 0 {
        1
    } else if P::SHARED_SLOTS > MAX_SHARED_SLOTS {
        MAX_SHARED_SLOTS
    } else {
        P::SHARED_SLOTS
    };

    /// An allocator with no memory; call [`Self::init`] before use.
    pub const fn new() -> Self {
        Self {
            buddy: Locked::new(BuddyAllocator::with_virt_to_phys(P::virt_to_phys)),
            shared: [const { SharedLock(P::Lock::UNLOCKED) }; MAX_SHARED_SLOTS],
            map: SectionMap::new(),
            slots: AtomicPtr::new(ptr::null_mut()),
            hazards: AtomicPtr::new(ptr::null_mut()),
            nr_slots: AtomicUsize::new(0),
            nr_cpu_slots: AtomicUsize::new(0),
            slot_hints: AtomicBool::new(false),
            invalid_frees: AtomicUsize::new(0),
            reentries: AtomicUsize::new(0),
            growing_cpus: AtomicUsize::new(0),
            idle_budget: AtomicUsize::new(0),
            slab_spare: AtomicUsize::new(0),
            reclaim_epoch: AtomicUsize::new(0),
            release_sync: ReleaseSync::new(),
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
    /// As [`Self::add_region`]; additionally `self` is not moved from now
    /// on until it is dropped (the platform may keep its address to drain
    /// CPU slots: [`Platform::register_instance`]), nor is a `Box` holding
    /// it (moving a `Box` asserts unique access, which the kept address
    /// contradicts; a `static`, `Box::leak` or a `Box` that stays put are
    /// fine), and `init` runs once, before any other call.
    pub unsafe fn init(&self, region: &mut [u8]) -> AllocResult {
        if !self.slots.load(Ordering::Acquire).is_null() {
            return Err(AllocError::InvalidParam);
        }
        // The CPU slots and hazards take the start of the first region,
        // beside the page metadata, so they never split a large buddy block.
        let nr_slots = P::max_cpus() + Self::SHARED_SLOTS;
        if nr_slots > MAX_OWNER_CPUS {
            return Err(AllocError::InvalidParam);
        }
        let slot_bytes = nr_slots * core::mem::size_of::<CpuSlot<PAGE_SIZE>>();
        let bytes = slot_bytes + nr_slots * core::mem::size_of::<Hazard>();
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
        // SAFETY: the hazards follow the slots (a slot's size is a multiple
        // of its 64-byte alignment, so they are aligned), inside the area.
        let hazards = unsafe { slots.add(nr_slots) }.cast::<Hazard>();
        for i in 0..nr_slots {
            // SAFETY: the area has room for nr_slots aligned slots and as
            // many hazards, and the caller gave it to us.
            unsafe {
                slots.add(i).write(CpuSlot::new(i, first_pfn, Self::TABLE));
                hazards.add(i).write(Hazard::new());
            }
        }
        self.nr_slots.store(nr_slots, Ordering::Relaxed);
        self.hazards.store(hazards, Ordering::Relaxed);
        // The fast paths may rebuild a slot pointer from its address (a
        // platform slot hint).
        let _ = slots.expose_provenance();
        self.slots.store(slots, Ordering::Release);
        self.nr_cpu_slots.store(P::max_cpus(), Ordering::Release);
        if P::SLOT_HINTS && P::claim_slot_hints() {
            self.slot_hints.store(true, Ordering::Relaxed);
        }
        self.register_with_platform();
        log::info!(
            "buddy-slab: {} CPU slots, {} size classes, {} managed bytes",
            nr_slots,
            Self::TABLE.len(),
            self.managed_bytes()
        );
        Ok(())
    }

    /// Lets the platform drain this allocator's CPU slots (a thread's at
    /// its exit, on the host) until [`Self::unregister_from_platform`].
    fn register_with_platform(&self) {
        P::register_instance(DrainHook {
            instance: ptr::from_ref(self).cast(),
            drain: Self::drain_hook,
            drain_if_idle: Self::drain_if_idle_hook,
        });
    }

    /// Stops the platform's drains: once this returns, none runs (and none
    /// will, until registered again).
    fn unregister_from_platform(&self) {
        P::unregister_instance(ptr::from_ref(self).cast());
    }

    /// Adds a region of memory (hot-add). Safe to call while other CPUs
    /// allocate: the region's metadata is written outside the buddy lock
    /// (which is taken twice, briefly, to reserve and to publish).
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
        let nr_slots = self.nr_slots.load(Ordering::Relaxed);
        let slots_end = slots
            + nr_slots
                * (core::mem::size_of::<CpuSlot<PAGE_SIZE>>() + core::mem::size_of::<Hazard>());
        if slots != 0 && start < slots_end && slots < start.saturating_add(len) {
            return Err(AllocError::MemoryOverlap);
        }
        let plan = self.buddy.with(|b| b.reserve_region(region, len))?;
        // SAFETY: forwarded caller contract; the range is reserved, so no
        // other call writes it.
        let prepared = unsafe { plan.prepare() };
        let added = self.buddy.with(|b| {
            let added = b.commit_region(prepared)?;
            for s in added.iter().flatten() {
                self.map.insert(s);
            }
            self.set_idle_budget(b.managed_bytes());
            Ok::<_, AllocError>(added)
        })?;
        for s in added.iter().flatten() {
            log::debug!(
                "buddy-slab: region at {start:#x} adds pages [{:#x}, {:#x})",
                s.start,
                s.end
            );
        }
        Ok(())
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
        let in_place = if small(&layout) && small(&new_layout) {
            self.resize_object(ptr, layout, new_size)
        } else if !small(&layout) && !small(&new_layout) {
            self.resize_run(ptr, layout.size(), new_size)
        } else {
            false
        };
        if in_place {
            return Ok(ptr);
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
}

impl<const PAGE_SIZE: usize, P: Platform> Drop for GlobalAllocator<PAGE_SIZE, P> {
    fn drop(&mut self) {
        if !self.slots.load(Ordering::Relaxed).is_null() {
            self.unregister_from_platform();
        }
        if P::SLOT_HINTS && self.slot_hints.load(Ordering::Relaxed) {
            P::release_slot_hints();
        }
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
