//! The slab layer's debug-check hooks (see [`crate::debug`]): every method
//! is called only under `if debug::ENABLED`, so with checks off none of
//! this is compiled into the paths. Findings are recorded as faults and
//! counted, never logged here.

use super::SlabCpu;
use super::header::SlabHeader;
use crate::debug;
use crate::fault::FaultKind;
use core::ptr::NonNull;

impl<const PAGE_SIZE: usize> SlabCpu<'_, PAGE_SIZE> {
    /// Checks the poison of `obj`, just popped from `hdr`, then fills it
    /// with red zone past its first word: whatever size the caller asks for,
    /// the bytes it does not write stay red zone until the free checks them.
    #[cold]
    pub(super) fn debug_on_alloc(&mut self, hdr: &SlabHeader, obj: *mut u8) {
        if let Some(off) = hdr.poison_mismatch(obj) {
            self.counters.poison_faults.add(1);
            self.record(
                FaultKind::UseAfterFree { offset: off as u32 },
                obj.addr(),
                hdr.object_bytes(),
            );
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
    pub(crate) fn debug_check_red_zone(&mut self, hdr: &SlabHeader, obj: *mut u8, size: usize) {
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
            self.red_zone_found(obj, off, hdr.object_bytes());
        }
    }

    /// Records and counts a red zone found overwritten at byte `off` of
    /// `obj` (of `object_bytes`).
    #[cold]
    pub(crate) fn red_zone_found(&mut self, obj: *mut u8, off: usize, object_bytes: usize) {
        self.counters.red_zone_faults.add(1);
        self.record(
            FaultKind::RedZone { offset: off as u32 },
            obj.addr(),
            object_bytes,
        );
    }
}
