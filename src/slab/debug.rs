//! The slab allocator's debug-check hooks (see [`crate::debug`]): every
//! method is called only under `if debug::ENABLED`, so with checks off none
//! of this is compiled into the paths.

use super::SlabAllocator;
use super::header::SlabHeader;
use crate::debug::{self, Corruption};
use crate::stats::Counter;
use core::ptr::NonNull;

/// Corruptions found by one CPU's debug checks (single writer: that CPU).
#[derive(Debug)]
pub(super) struct FaultCounters {
    pub(super) poison: Counter,
    pub(super) red_zone: Counter,
}

impl FaultCounters {
    #[cfg(not(loom))]
    pub(super) const fn new() -> Self {
        Self {
            poison: Counter::new(),
            red_zone: Counter::new(),
        }
    }
}

impl<const PAGE_SIZE: usize> SlabAllocator<PAGE_SIZE> {
    /// Checks the poison of `obj`, just popped from `hdr`, then fills it
    /// with red zone past its first word: whatever size the caller asks for,
    /// the bytes it does not write stay red zone until the free checks them.
    #[cold]
    pub(super) fn debug_on_alloc(&self, hdr: &SlabHeader, obj: *mut u8) {
        if let Some(off) = hdr.poison_mismatch(obj) {
            self.report_corruption(Corruption::UseAfterFree, hdr, obj, off);
        }
        // SAFETY: `obj` was just popped by this CPU, which owns it until it
        // returns it to the caller.
        unsafe { debug::fill(obj, debug::red_zone(0, hdr.object_bytes()), debug::RED_ZONE) };
    }

    /// Fills the red zone of `obj`, an object of `object_bytes` now serving
    /// `size` bytes (after an in-place `realloc` that shrank it).
    #[inline]
    pub(crate) fn debug_fill_red_zone(obj: NonNull<u8>, size: usize, object_bytes: usize) {
        // SAFETY: the tail past the requested size belongs to the object
        // the caller is handing out; no one else uses it.
        unsafe {
            debug::fill(
                obj.as_ptr(),
                debug::red_zone(size, object_bytes),
                debug::RED_ZONE,
            )
        };
    }

    /// Checks the red zone of `obj` of the owned slab `hdr`, freed with a
    /// layout of `size` bytes, if it is an allocated object (a double or
    /// bad free is reported by the free itself).
    #[cold]
    pub(crate) fn debug_check_red_zone(&self, hdr: &SlabHeader, obj: *mut u8, size: usize) {
        if !hdr.is_allocated(obj) {
            return;
        }
        // SAFETY: `obj` is an allocated object of a slab this CPU owns, and
        // the caller is giving it up: nobody else writes it.
        let bad = unsafe {
            debug::scan(
                obj,
                debug::red_zone(size, hdr.object_bytes()),
                debug::RED_ZONE,
            )
        };
        if let Some(off) = bad {
            self.report_corruption(Corruption::RedZone, hdr, obj, off);
        }
    }

    /// Reports and counts a corruption at byte `off` of `obj` in `hdr`,
    /// found by this CPU slot.
    #[cold]
    pub(crate) fn report_corruption(
        &self,
        kind: Corruption,
        hdr: &SlabHeader,
        obj: *mut u8,
        off: usize,
    ) {
        match kind {
            Corruption::UseAfterFree => self.faults.poison.add(1),
            Corruption::RedZone => self.faults.red_zone.add(1),
        }
        log::error!(
            "buddy-slab debug: {} at {obj:p}+{off} (size class {}, {} B objects, slab {:#x} of cpu {}), found on cpu {}",
            kind.name(),
            hdr.class(),
            hdr.object_bytes(),
            hdr.base(),
            hdr.owner_cpu(),
            self.cpu,
        );
    }
}
