//! Debug checks (feature `debug-checks` or config knob `debug-checks`):
//! poison, red zones and cheap invariant walks, in the style of Linux
//! `slub_debug=PZF`.
//!
//! - **Poison.** A free slab object is filled with [`POISON`] past its first
//!   word (the free-list link) when it is freed (locally, or when its owner
//!   absorbs a remote free) and when a fresh slab is formatted. `alloc`
//!   checks the poison before handing the object out: a changed byte is a
//!   write after free.
//! - **Red zones.** Objects have no spare bytes, so the red zone is the tail
//!   between the requested size and the class's object size: filled with
//!   [`RED_ZONE`] when a request of known size is served (`alloc` with a
//!   layout), checked when it is freed with its layout. A changed byte is an
//!   overflow past the requested size (or a free with a smaller layout than
//!   the allocation's). The first word never holds red zone: a free object's
//!   link lives there.
//! - **Invariant walks.** Slabs are checked (S1, S2) when they are absorbed
//!   or released.
//!
//! Every finding is recorded as a [`Fault`](crate::fault::Fault) naming the
//! address, the object size, the kind of fault and the CPU slot that found
//! it (reported by the facade once the slot is released), and counted in
//! [`SlabStats`](crate::SlabStats) (`poison_faults`, `red_zone_faults`).
//! Freed objects are still accepted: the checks report, they do not change
//! what the allocator does.
//!
//! With both switches off, [`ENABLED`] is a constant `false` and every hook
//! is removed by the compiler.

/// Whether debug checks are compiled in.
pub const ENABLED: bool = cfg!(feature = "debug-checks") || crate::config::DEBUG_CHECKS;

/// Byte written over free objects (Linux `POISON_FREE`).
pub const POISON: u8 = 0x6b;
/// Byte written between the requested size and the object size (Linux
/// `SLUB_RED_ACTIVE`'s companion `POISON_INUSE`).
pub const RED_ZONE: u8 = 0xa5;

/// Bytes at the start of an object that a free object uses for its link.
pub(crate) const LINK_BYTES: usize = core::mem::size_of::<usize>();

/// The red zone of an object of `object_bytes` serving `size` bytes.
#[inline]
pub(crate) const fn red_zone(size: usize, object_bytes: usize) -> (usize, usize) {
    let start = if size > LINK_BYTES { size } else { LINK_BYTES };
    if start >= object_bytes {
        (object_bytes, object_bytes)
    } else {
        (start, object_bytes)
    }
}

/// Offset of the first byte in `bytes` that differs from `want`.
#[inline]
pub(crate) fn first_mismatch(bytes: &[u8], want: u8) -> Option<usize> {
    bytes.iter().position(|&b| b != want)
}

/// Writes `byte` over `[obj + from, obj + to)`.
///
/// # Safety
/// The range is writable memory the caller owns (a free object or the
/// unused tail of an object it is handing out).
#[inline]
pub(crate) unsafe fn fill(obj: *mut u8, (from, to): (usize, usize), byte: u8) {
    if from < to {
        // SAFETY: caller contract.
        unsafe { obj.add(from).write_bytes(byte, to - from) };
    }
}

/// Offset of the first byte of `[obj + from, obj + to)` that is not `byte`.
///
/// # Safety
/// The range is readable memory that no other context writes meanwhile.
#[inline]
pub(crate) unsafe fn scan(obj: *const u8, (from, to): (usize, usize), byte: u8) -> Option<usize> {
    if from >= to {
        return None;
    }
    // SAFETY: caller contract.
    let bytes = unsafe { core::slice::from_raw_parts(obj.add(from), to - from) };
    first_mismatch(bytes, byte).map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_zone_skips_the_link_word() {
        assert_eq!(red_zone(1, 8), (8, 8));
        assert_eq!(red_zone(3, 16), (8, 16));
        assert_eq!(red_zone(10, 16), (10, 16));
        assert_eq!(red_zone(16, 16), (16, 16));
    }

    #[test]
    fn mismatch_is_found() {
        assert_eq!(first_mismatch(&[POISON; 4], POISON), None);
        assert_eq!(first_mismatch(&[POISON, 0, POISON], POISON), Some(1));
    }
}
