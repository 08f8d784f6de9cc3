//! Shared pieces of the fuzz targets: arenas freed after each input, the
//! shadow model of live ranges, and content patterns.
#![allow(dead_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::BTreeMap;

pub const PAGE: usize = 4096;

/// Memory owned by one fuzz input, returned to the system when dropped.
pub struct Arena {
    pub ptr: *mut u8,
    layout: Layout,
}

impl Arena {
    pub fn new(bytes: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(bytes, align).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Self { ptr, layout }
    }

    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// The arena as a region for `add_region`, starting `offset` bytes in.
    ///
    /// # Safety
    /// The caller hands the slice to one allocator, which is dropped before
    /// the arena.
    pub unsafe fn region(&self, offset: usize) -> &'static mut [u8] {
        let offset = offset.min(self.layout.size() - 1);
        // SAFETY: inside the arena (caller contract on use).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), self.layout.size() - offset) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

fn pattern(tag: u64, i: usize) -> u8 {
    (tag as u8).wrapping_add(i as u8).wrapping_mul(31) ^ (tag >> 8) as u8
}

/// Writes a pattern over the first and last 64 bytes of `[p, p + len)` and
/// every 509th byte between (all of it when short): cheap enough for page
/// runs too.
pub fn fill(p: usize, len: usize, tag: u64) {
    for i in sample(len) {
        // SAFETY: the caller owns the live block.
        unsafe { ((p + i) as *mut u8).write(pattern(tag, i)) };
    }
}

pub fn check(p: usize, len: usize, tag: u64) {
    check_prefix(p, len, len, tag);
}

/// Checks the first `prefix` bytes of a block filled for `len` bytes (what
/// a `realloc` must keep).
pub fn check_prefix(p: usize, len: usize, prefix: usize, tag: u64) {
    for i in sample(len).filter(|&i| i < prefix) {
        // SAFETY: the caller owns the live block.
        let got = unsafe { ((p + i) as *const u8).read() };
        assert_eq!(got, pattern(tag, i), "block {p:#x}+{i} of {len} corrupted");
    }
}

fn sample(len: usize) -> impl Iterator<Item = usize> {
    let head = len.min(64);
    let tail = len.saturating_sub(64).max(head);
    (0..head).chain((head..tail).step_by(509)).chain(tail..len)
}

/// Live blocks: start -> (len, tag, payload).
pub struct Shadow<T> {
    pub live: BTreeMap<usize, (usize, u64, T)>,
    tag: u64,
}

impl<T: Copy> Shadow<T> {
    pub fn new() -> Self {
        Self { live: BTreeMap::new(), tag: 0 }
    }

    /// Records a new block, checking it overlaps no live one.
    pub fn insert(&mut self, start: usize, len: usize, payload: T) {
        assert!(len > 0);
        if let Some((&s, &(l, _, _))) = self.live.range(..start + len).next_back() {
            assert!(s + l <= start, "[{start:#x}, +{len}) overlaps live [{s:#x}, +{l})");
        }
        self.tag += 1;
        fill(start, len, self.tag);
        self.live.insert(start, (len, self.tag, payload));
    }

    /// The live block containing `addr`, if any.
    pub fn covering(&self, addr: usize) -> Option<(usize, usize)> {
        let (&s, &(l, _, _)) = self.live.range(..=addr).next_back()?;
        (addr < s + l).then_some((s, l))
    }

    /// Picks the `pick`-th live block matching `f` (without removing it).
    pub fn pick(&self, pick: usize, f: impl Fn(&T) -> bool) -> Option<(usize, usize, u64, T)> {
        let n = self.live.values().filter(|v| f(&v.2)).count();
        if n == 0 {
            return None;
        }
        let (&k, &(l, t, p)) = self.live.iter().filter(|(_, v)| f(&v.2)).nth(pick % n)?;
        Some((k, l, t, p))
    }

    /// Removes a block after checking its pattern.
    pub fn remove(&mut self, start: usize) -> (usize, u64, T) {
        let (len, tag, p) = self.live.remove(&start).unwrap();
        check(start, len, tag);
        (len, tag, p)
    }
}
