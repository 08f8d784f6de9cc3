//! Shared test helpers: leaked, aligned arenas (so Miri tracks provenance).
#![allow(dead_code)]

use core::ptr::NonNull;
use std::alloc::{Layout, alloc_zeroed};

pub const PAGE: usize = 4096;

/// A leaked arena of `bytes` bytes aligned to `align`, starting `offset`
/// bytes past that alignment (to test unaligned region starts).
pub fn arena(bytes: usize, align: usize, offset: usize) -> &'static mut [u8] {
    let layout = Layout::from_size_align(bytes + offset, align).unwrap();
    // SAFETY: layout has a non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null());
    // SAFETY: p is a fresh allocation of bytes + offset bytes, leaked.
    unsafe { std::slice::from_raw_parts_mut(p.add(offset), bytes) }
}

/// Fills `len` bytes at `p` with a pattern derived from `tag`.
pub fn fill(p: *mut u8, len: usize, tag: u64) {
    for i in 0..len {
        // SAFETY: caller passes a live block of len bytes.
        unsafe {
            p.add(i)
                .write((tag as u8).wrapping_add(i as u8).wrapping_mul(31) ^ (tag >> 8) as u8)
        };
    }
}

/// Checks the pattern written by `fill`.
pub fn check(p: *const u8, len: usize, tag: u64) {
    for i in 0..len {
        // SAFETY: caller passes a live block of len bytes.
        let got = unsafe { p.add(i).read() };
        let want = (tag as u8).wrapping_add(i as u8).wrapping_mul(31) ^ (tag >> 8) as u8;
        assert_eq!(
            got, want,
            "block {p:p} byte {i} of {len} corrupted (tag {tag})"
        );
    }
}

/// Simple deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A block pointer handed to another thread (the allocation moves with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sent(pub NonNull<u8>);

// SAFETY: the pointer is only an allocation being handed over; the
// receiving thread becomes its only user.
unsafe impl Send for Sent {}
