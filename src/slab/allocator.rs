//! The slab allocator on its own, without the facade: one CPU's caches,
//! their counters and a fault log in one value.

use super::caches::{SlabCaches, SlabCpu};
use super::counters::SlabCounters;
use super::header::SlabHeader;
use super::{ClassStats, SizeClass, SizeClassTable, SlabAllocResult, SlabDeallocResult, SlabStats};
use crate::debug::ENABLED as DEBUG;
use crate::error::{AllocError, AllocResult};
use crate::fault::{Fault, FaultKind, FaultLog, FreeRejection};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// Slab caches for every size class, owned by one CPU, for use without
/// the facade: the lists, their counters and a fault log in one value.
pub struct SlabAllocator<const PAGE_SIZE: usize> {
    caches: SlabCaches<PAGE_SIZE>,
    counters: SlabCounters,
    faults: FaultLog,
    /// Bytes of empty slabs kept for reuse; beyond, frees hand slabs back.
    idle_budget_bytes: usize,
}

impl<const PAGE_SIZE: usize> Default for SlabAllocator<PAGE_SIZE> {
    fn default() -> Self {
        Self::new()
    }
}

struct Tables<const PAGE_SIZE: usize>;
impl<const PAGE_SIZE: usize> Tables<PAGE_SIZE> {
    const DEFAULT: SizeClassTable<PAGE_SIZE> = SizeClassTable::configured();
    const SEED: SizeClassTable<PAGE_SIZE> = SizeClassTable::seed();
}

impl<const PAGE_SIZE: usize> SlabAllocator<PAGE_SIZE> {
    /// Slab caches with the configured size classes, owned by CPU 0.
    pub const fn new() -> Self {
        Self::with_table(&Tables::<PAGE_SIZE>::DEFAULT, 0)
    }

    /// The default size-class table for this page size.
    pub const fn default_table() -> &'static SizeClassTable<PAGE_SIZE> {
        &Tables::<PAGE_SIZE>::DEFAULT
    }

    /// The seed-compatible 9-class table for this page size.
    pub const fn seed_table() -> &'static SizeClassTable<PAGE_SIZE> {
        &Tables::<PAGE_SIZE>::SEED
    }

    /// Slab caches over `table` (built for this page size: the type checks
    /// it), owned by CPU `cpu`.
    pub const fn with_table(table: &'static SizeClassTable<PAGE_SIZE>, cpu: usize) -> Self {
        Self {
            caches: SlabCaches::new(table, cpu),
            counters: SlabCounters::new(),
            faults: FaultLog::new(),
            idle_budget_bytes: crate::config::cpu::IDLE_BUDGET,
        }
    }

    #[inline(always)]
    fn cpu(&mut self) -> SlabCpu<'_, PAGE_SIZE> {
        SlabCpu::new(
            &mut self.caches,
            &self.counters,
            &mut self.faults,
            self.idle_budget_bytes,
        )
    }

    /// Bytes of wholly free slabs kept for reuse (`cpu.idle-budget` unless
    /// set): a free that empties a slab beyond them answers
    /// [`SlabDeallocResult::FreeSlab`].
    pub fn idle_budget_bytes(&self) -> usize {
        self.idle_budget_bytes
    }

    /// Sets [`Self::idle_budget_bytes`]; empty slabs beyond the new budget
    /// go to `free_slab(base, pages)` now.
    pub fn set_idle_budget_bytes(&mut self, bytes: usize, mut free_slab: impl FnMut(usize, usize)) {
        self.idle_budget_bytes = bytes;
        self.cpu().shed(bytes, |_, slab| {
            let (base, pages) = slab.kill();
            free_slab(base, pages);
        });
    }

    /// The size-class table in use.
    pub fn table(&self) -> &'static SizeClassTable<PAGE_SIZE> {
        self.caches.table
    }

    /// Allocates an object for `layout` from the class's active slab.
    ///
    /// # Errors
    /// `InvalidParam` if the layout is not served by slabs (zero size,
    /// larger than 2048 bytes or aligned beyond what any class honours).
    #[inline]
    pub fn alloc(&mut self, layout: Layout) -> AllocResult<SlabAllocResult> {
        self.cpu().alloc(layout)
    }

    /// Allocates an object of `class`.
    #[inline]
    pub fn alloc_class(&mut self, class: SizeClass) -> SlabAllocResult {
        self.cpu().alloc_class(class)
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
    /// `InvalidParam` if `class` is not a class of this allocator's table,
    /// `bytes` is not the class's slab size (`pages` of
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
        // SAFETY: forwarded caller contract.
        unsafe { self.cpu().add_slab_ptr(class, base, bytes) }
    }

    /// Frees `ptr`, allocated from this allocator with `layout`.
    ///
    /// A double free, an interior or foreign pointer of a live slab, or a
    /// layout of another class is recorded ([`Self::take_faults`]),
    /// counted and ignored.
    ///
    /// # Safety
    /// The slab-sized, slab-aligned block around `ptr` for `layout`'s class
    /// must be readable memory reachable through `ptr`'s provenance (true
    /// for any pointer this allocator handed out), and the caller gives the
    /// object up.
    pub unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) -> SlabDeallocResult {
        let cpu = self.caches.cpu;
        let Ok(class) = self.table().class_for(layout) else {
            self.reject(ptr, layout, FreeRejection::NotAllocated);
            return SlabDeallocResult::Done;
        };
        let bytes = PAGE_SIZE << self.table().slab_order(class);
        let base = ptr.as_ptr() as usize & !(bytes - 1);
        let hdr = ptr
            .as_ptr()
            .with_addr(SlabHeader::addr_for(base, bytes))
            .cast::<SlabHeader>();
        // SAFETY: caller contract: the block around ptr is readable through
        // ptr; the header is only trusted once its magic matches (S5).
        let hdr = unsafe { &*hdr };
        if !hdr.is_live_at(base) || hdr.owner_cpu() != cpu {
            self.reject(ptr, layout, FreeRejection::NotAllocated);
            return SlabDeallocResult::Done;
        }
        let mut slab = self.cpu();
        if DEBUG && hdr.class() == class.0 {
            slab.debug_check_red_zone(hdr, ptr.as_ptr(), layout.size());
        }
        // SAFETY: header validated above; caller gives the object up.
        match unsafe { slab.dealloc_in(hdr, ptr.as_ptr(), Some(class.0)) } {
            Ok(None) => SlabDeallocResult::Done,
            Ok(Some(released)) => {
                let (base, pages) = released.kill();
                SlabDeallocResult::FreeSlab { base, pages }
            }
            Err(why) => {
                self.reject(ptr, layout, why);
                SlabDeallocResult::Done
            }
        }
    }

    #[cold]
    fn reject(&mut self, ptr: NonNull<u8>, layout: Layout, why: FreeRejection) {
        self.counters.invalid_frees.add(1);
        let cpu = self.caches.cpu;
        self.faults.push(Fault::new(
            FaultKind::RejectedFree(why),
            ptr.as_ptr().addr(),
            layout.size(),
            cpu,
        ));
    }

    /// Returns every empty slab (including a wholly free active one) that is
    /// not queued for remote frees; `free_slab(base, pages)` receives each.
    pub fn drain(&mut self, mut free_slab: impl FnMut(usize, usize)) {
        self.cpu().drain(|_, slab| {
            let (base, pages) = slab.kill();
            free_slab(base, pages);
        });
    }

    /// Takes the faults recorded since the last call: rejected frees,
    /// remote double frees, corrupted free lists, debug-check findings.
    pub fn take_faults(&mut self) -> FaultLog {
        self.faults.take()
    }

    /// Statistics of `class`.
    pub fn class_stats(&self, class: SizeClass) -> ClassStats {
        self.counters.class_stats(self.table(), class)
    }

    /// Totals over every class.
    pub fn stats(&self) -> SlabStats {
        self.counters.stats(self.table())
    }

    /// Walks every listed slab and checks S1, S2, L1 and L2; panics on a
    /// violation. Full slabs are on no list and are not reached.
    pub fn check_invariants(&self) {
        self.caches.check(&self.counters);
    }
}
