//! Correctness checks run inside every workload: each block gets a tag written into its first
//! and last 8 bytes right after allocation, and the tag is verified right before the block is
//! freed. Overlapping blocks, blocks handed out twice or memory scribbled on by the allocator
//! show up as a mismatch, which panics with the allocator's name.
//!
//! Blocks grown by realloc (workload r) carry a size-specific tail instead
//! ([`write_growth_tags`]), and after every realloc the preserved prefix is checked at both
//! ends ([`check_growth_prefix`]).
//!
//! Only the ends are tagged (not the whole block) so that the check costs the same few
//! nanoseconds for every size and does not drown the allocator's own cost.

use core::alloc::Layout;

/// Turns a block id into the tag stored at its start (never zero, differs for every id).
#[inline(always)]
pub fn tag_for(id: u64) -> u64 {
    (id ^ 0x5EED_B5A0_0000_0000).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// Panics if an allocation failed where the workload sized the arena so that it cannot.
#[inline(always)]
pub fn expect_block(ptr: *mut u8, layout: Layout, allocator: &str) {
    if ptr.is_null() || !(ptr as usize).is_multiple_of(layout.align()) {
        bad_block(ptr, layout, allocator);
    }
}

/// The panic of [`expect_block`], out of line: formatting arguments built in the timed loop
/// would be stores to the stack on every pair, which cost time and, depending on where the
/// stack lands, alias (4 KiB apart) with the allocator's own accesses.
#[cold]
#[inline(never)]
fn bad_block(ptr: *mut u8, layout: Layout, allocator: &str) -> ! {
    if ptr.is_null() {
        panic!("{allocator}: allocation of {layout:?} failed unexpectedly");
    }
    panic!("{allocator}: block {ptr:p} violates alignment of {layout:?}");
}

/// Writes `tag` at the start and `!tag` at the end of a `size_bytes` block.
///
/// # Safety
/// - `ptr` must be valid for writes of `size_bytes` bytes.
#[inline(always)]
pub unsafe fn write_tag(ptr: *mut u8, size_bytes: usize, tag: u64) {
    // SAFETY: every write stays inside `ptr..ptr + size_bytes` (caller contract).
    unsafe {
        if size_bytes >= 8 {
            ptr.cast::<u64>().write_unaligned(tag);
            if size_bytes >= 16 {
                ptr.add(size_bytes - 8).cast::<u64>().write_unaligned(!tag);
            }
        } else {
            let bytes = tag.to_le_bytes();
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, size_bytes);
        }
    }
}

/// Checks the tags written by [`write_tag`]; panics naming `allocator` on a mismatch.
///
/// # Safety
/// - `ptr` must be valid for reads of `size_bytes` bytes.
#[inline(always)]
pub unsafe fn check_tag(ptr: *const u8, size_bytes: usize, tag: u64, allocator: &str) {
    // SAFETY: every read stays inside `ptr..ptr + size_bytes` (caller contract).
    let (head_ok, tail_ok) = unsafe {
        if size_bytes >= 8 {
            let head = ptr.cast::<u64>().read_unaligned() == tag;
            let tail =
                size_bytes < 16 || ptr.add(size_bytes - 8).cast::<u64>().read_unaligned() == !tag;
            (head, tail)
        } else {
            let mut bytes = [0u8; 8];
            core::ptr::copy_nonoverlapping(ptr, bytes.as_mut_ptr(), size_bytes);
            (bytes[..size_bytes] == tag.to_le_bytes()[..size_bytes], true)
        }
    };
    if !(head_ok && tail_ok) {
        corrupted(ptr, size_bytes, head_ok, tail_ok, allocator);
    }
}

/// The panic of [`check_tag`], out of line (see [`bad_block`]).
#[cold]
#[inline(never)]
fn corrupted(
    ptr: *const u8,
    size_bytes: usize,
    head_ok: bool,
    tail_ok: bool,
    allocator: &str,
) -> ! {
    panic!(
        "{allocator}: block {ptr:p} ({size_bytes} B) was corrupted while live \
         (head ok: {head_ok}, tail ok: {tail_ok})"
    );
}

/// Checks only the first `min(size_bytes, 8)` bytes, for blocks whose tail moved (realloc).
///
/// # Safety
/// - `ptr` must be valid for reads of `size_bytes` bytes.
#[inline(always)]
pub unsafe fn check_head(ptr: *const u8, size_bytes: usize, tag: u64, allocator: &str) {
    // SAFETY: `min(size_bytes, 8) <= size_bytes` (caller contract).
    unsafe { check_tag(ptr, size_bytes.min(8), tag, allocator) }
}

/// Tail word of a block grown by realloc, at `size_bytes`: it differs per size, so a stale copy
/// of an earlier, smaller stage of the same block fails [`check_growth_prefix`].
#[inline(always)]
fn growth_tail(tag: u64, size_bytes: usize) -> u64 {
    !tag ^ (size_bytes as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// Writes `tag` into the first 8 bytes of a block that grows by realloc and the size-specific
/// [`growth_tail`] into its last 8 (a block of 8 bytes holds the head only).
///
/// # Safety
/// - `ptr` must be valid for writes of `size_bytes` bytes, `size_bytes >= 8`.
#[inline(always)]
pub unsafe fn write_growth_tags(ptr: *mut u8, size_bytes: usize, tag: u64) {
    debug_assert!(size_bytes >= 8);
    // SAFETY: both writes stay inside `ptr..ptr + size_bytes` (caller contract).
    unsafe {
        ptr.cast::<u64>().write_unaligned(tag);
        if size_bytes >= 16 {
            ptr.add(size_bytes - 8)
                .cast::<u64>()
                .write_unaligned(growth_tail(tag, size_bytes));
        }
    }
}

/// Checks that the first `preserved_bytes` of a block still hold what [`write_growth_tags`]
/// wrote at that size: its first 8 bytes and the last 8 of the preserved prefix. Panics naming
/// `allocator` on a mismatch.
///
/// # Safety
/// - `ptr` must be valid for reads of `preserved_bytes` bytes, `preserved_bytes >= 8`.
#[inline(always)]
pub unsafe fn check_growth_prefix(
    ptr: *const u8,
    preserved_bytes: usize,
    tag: u64,
    allocator: &str,
) {
    debug_assert!(preserved_bytes >= 8);
    // SAFETY: both reads stay inside `ptr..ptr + preserved_bytes` (caller contract).
    let (head_ok, tail_ok) = unsafe {
        (
            ptr.cast::<u64>().read_unaligned() == tag,
            preserved_bytes < 16
                || ptr.add(preserved_bytes - 8).cast::<u64>().read_unaligned()
                    == growth_tail(tag, preserved_bytes),
        )
    };
    if !(head_ok && tail_ok) {
        lost_prefix(ptr, preserved_bytes, head_ok, tail_ok, allocator);
    }
}

/// The panic of [`check_growth_prefix`], out of line (see [`bad_block`]).
#[cold]
#[inline(never)]
fn lost_prefix(
    ptr: *const u8,
    preserved_bytes: usize,
    head_ok: bool,
    tail_ok: bool,
    allocator: &str,
) -> ! {
    panic!(
        "{allocator}: block {ptr:p} does not hold its first {preserved_bytes} B after realloc \
         (first 8 bytes ok: {head_ok}, last preserved 8 bytes ok: {tail_ok})"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_for_every_small_size() {
        let mut buffer = [0u8; 64];
        for size_bytes in 1..=64 {
            let tag = tag_for(size_bytes as u64);
            // SAFETY: `size_bytes <= buffer.len()`.
            unsafe {
                write_tag(buffer.as_mut_ptr(), size_bytes, tag);
                check_tag(buffer.as_ptr(), size_bytes, tag, "test");
                check_head(buffer.as_ptr(), size_bytes, tag, "test");
            }
        }
    }

    #[test]
    #[should_panic(expected = "corrupted")]
    fn a_changed_tail_is_caught() {
        let mut buffer = [0u8; 64];
        let tag = tag_for(7);
        // SAFETY: 64 bytes are in bounds.
        unsafe { write_tag(buffer.as_mut_ptr(), 64, tag) };
        buffer[63] ^= 1;
        // SAFETY: 64 bytes are in bounds.
        unsafe { check_tag(buffer.as_ptr(), 64, tag, "test") };
    }

    #[test]
    fn growth_tags_survive_a_copy_to_a_larger_block() {
        let mut old = [0u8; 64];
        let mut new = [0u8; 128];
        let tag = tag_for(9);
        // SAFETY: every size is within its buffer.
        unsafe {
            write_growth_tags(old.as_mut_ptr(), 64, tag);
            core::ptr::copy_nonoverlapping(old.as_ptr(), new.as_mut_ptr(), 64);
            check_growth_prefix(new.as_ptr(), 64, tag, "test");
            write_growth_tags(new.as_mut_ptr(), 128, tag);
            check_growth_prefix(new.as_ptr(), 128, tag, "test");
        }
    }

    #[test]
    #[should_panic(expected = "after realloc")]
    fn a_stale_smaller_stage_is_caught() {
        let mut buffer = [0u8; 64];
        let tag = tag_for(11);
        // The block at 32 B, then claimed to have grown to 64 B without the 64 B tags.
        // SAFETY: every size is within the buffer.
        unsafe {
            write_growth_tags(buffer.as_mut_ptr(), 32, tag);
            buffer[56..64].copy_from_slice(&(!tag).to_le_bytes());
            check_growth_prefix(buffer.as_ptr(), 64, tag, "test");
        }
    }

    #[test]
    fn tags_differ_and_are_never_zero() {
        assert_ne!(tag_for(0), tag_for(1));
        assert!((0..1000).all(|id| tag_for(id) != 0));
    }
}
