//! The free blocks of one section, per order, as bitmaps in address order.
//!
//! A free list hands out whichever block was freed last, so allocations
//! wander over the whole section and a few long-lived pages end up pinning
//! every large block. With one bit per block position and a summary tree
//! over the bits (one bit per non-zero word, up to a single top word), the
//! lowest (or highest) free block of an order is found in one
//! `trailing_zeros` per level, and freed memory is reused before memory
//! that was never touched.
//!
//! Below the top order a level-0 bit stands for a pair of buddies: bit `q`
//! of order `k` for the blocks at absolute page frame numbers
//! `(base_pfn >> (k + 1)) + q << (k + 1)` and `1 << k` above (blocks are
//! aligned by absolute frame number, see `Section`, so bit 0 may start
//! before the section). Two free buddies merge, so at most one of them is
//! free and the caller's page metadata says which. That halves the map
//! (about one bit per page in all). At the top order a bit is one block.

use crate::config::{MAX_ORDER, NR_ORDERS};
use core::ptr::NonNull;

/// Levels of the summary tree at most: 64^6 positions cover any section
/// (fewer than `u32::MAX` pages).
const MAX_LEVELS: usize = 6;

/// Summary tree shape for one order: where each level's words start and
/// how many levels there are (the last holds one word).
#[derive(Clone, Copy)]
struct Tree {
    level_start: [u32; MAX_LEVELS],
    levels: u8,
}

/// Per-order bitmaps of a section's free blocks.
///
/// Invariants:
/// - F1: bit `q` of order `k`'s level 0 is set iff one of the blocks it
///   stands for is a free block of order `k` (it is then `Free` with
///   order `k`, B1).
/// - F2: bit `j` of level `l + 1` is set iff word `j` of level `l` is not
///   zero.
/// - F3: `words` points to `words_for(nr_pages)` words that only this map
///   reads or writes, derived from the region's pointer (B7).
/// - F4: below `MAX_ORDER`, two buddies are never both free (the buddy
///   merges them), so a level-0 bit stands for exactly one free block.
pub(crate) struct FreeMap {
    words: NonNull<u64>,
    trees: [Tree; NR_ORDERS],
    /// `base_pfn` of the section (positions are relative to its multiples).
    base_pfn: usize,
    /// Pages of the section: a pair member past them is not a block.
    nr_pages: usize,
}

/// Level-0 bits per pair of positions: 1 (pairs of buddies) below the top
/// order, 0 at it (top-order blocks do not merge).
const fn pair_shift(order: u32) -> u32 {
    (order < MAX_ORDER as u32) as u32
}

/// Level-0 bits of order `order` a section of `nr_pages` pages can need
/// at most, whatever its base frame number.
const fn positions(nr_pages: usize, order: u32) -> usize {
    (nr_pages >> (order + pair_shift(order))) + 2
}

/// The trees of a section of `nr_pages` pages, laid out one after the
/// other, and the words they take in all.
const fn shape(nr_pages: usize) -> ([Tree; NR_ORDERS], usize) {
    let mut trees = [Tree {
        level_start: [0; MAX_LEVELS],
        levels: 0,
    }; NR_ORDERS];
    let mut at = 0;
    let mut order = 0;
    while order < NR_ORDERS {
        let tree = &mut trees[order];
        let mut n = positions(nr_pages, order as u32).div_ceil(64);
        loop {
            tree.level_start[tree.levels as usize] = at as u32;
            tree.levels += 1;
            at += n;
            if n == 1 {
                break;
            }
            n = n.div_ceil(64);
        }
        order += 1;
    }
    (trees, at)
}

impl FreeMap {
    /// Words the map of a section of `nr_pages` pages takes.
    pub(crate) const fn words_for(nr_pages: usize) -> usize {
        shape(nr_pages).1
    }

    /// An empty map over `words`.
    ///
    /// # Safety
    /// `words` is valid for reads and writes of `words_for(nr_pages)`
    /// aligned `u64`s, used for nothing else while the map lives.
    pub(crate) unsafe fn new(words: NonNull<u64>, base_pfn: usize, nr_pages: usize) -> Self {
        let (trees, len) = shape(nr_pages);
        for i in 0..len {
            // SAFETY: i < words_for(nr_pages), the caller's contract.
            unsafe { words.add(i).write(0) };
        }
        Self {
            words,
            trees,
            base_pfn,
            nr_pages,
        }
    }

    #[inline(always)]
    fn word(&self, tree: &Tree, level: usize, index: usize) -> *mut u64 {
        debug_assert!(level < tree.levels as usize);
        // SAFETY: `index` is a position of this order shifted down by
        // 6 * level, so it lies in that level's words, which lie in the
        // map's `words_for(nr_pages)` words (F3).
        unsafe {
            self.words
                .as_ptr()
                .add(tree.level_start[level] as usize + index)
        }
    }

    /// Level-0 bit of the block at section index `idx` in order `order`.
    #[inline(always)]
    fn bit(&self, idx: usize, order: u32) -> usize {
        // Pairs of buddies by absolute frame number, like the blocks.
        let unit = order + pair_shift(order);
        ((self.base_pfn + idx) >> unit) - (self.base_pfn >> unit)
    }

    /// The free block level-0 bit `bit` of `order` stands for: the lower
    /// of its pair if `is_free` says so (and it lies in the section), else
    /// the higher, or the other way round when `high_first`.
    #[inline(always)]
    fn block(
        &self,
        bit: usize,
        order: u32,
        high_first: bool,
        is_free: impl Fn(usize) -> bool,
    ) -> usize {
        let unit = order + pair_shift(order);
        let first_pfn = ((self.base_pfn >> unit) + bit) << unit;
        if pair_shift(order) == 0 {
            return first_pfn - self.base_pfn;
        }
        let (low, high) = (first_pfn, first_pfn + (1 << order));
        let (a, b) = if high_first { (high, low) } else { (low, high) };
        // A pair member not wholly in the section is not a block: the
        // bit stands for the other one.
        match a.checked_sub(self.base_pfn) {
            Some(idx) if idx + (1 << order) <= self.nr_pages && is_free(idx) => idx,
            _ => b - self.base_pfn,
        }
    }

    /// Marks the block at `idx` of `order` free (F1; by F4 its buddy is
    /// not).
    #[inline]
    pub(crate) fn insert(&mut self, idx: usize, order: u32) {
        let tree = &self.trees[order as usize];
        let mut pos = self.bit(idx, order);
        for level in 0..tree.levels as usize {
            let w = self.word(tree, level, pos >> 6);
            // SAFETY: a word of this map (F3); `&mut self` is exclusive.
            let old = unsafe { *w };
            debug_assert!(level > 0 || old & (1 << (pos & 63)) == 0);
            // SAFETY: as above.
            unsafe { *w = old | 1 << (pos & 63) };
            if old != 0 {
                break; // the levels above already have this word's bit (F2)
            }
            pos >>= 6;
        }
    }

    /// Clears the block at `idx` of `order` (F1; by F4 its buddy is not
    /// free); returns whether the order has no free block left.
    #[inline]
    pub(crate) fn remove(&mut self, idx: usize, order: u32) -> bool {
        let tree = &self.trees[order as usize];
        let mut pos = self.bit(idx, order);
        for level in 0..tree.levels as usize {
            let w = self.word(tree, level, pos >> 6);
            // SAFETY: a word of this map (F3); `&mut self` is exclusive.
            let new = unsafe { *w } & !(1 << (pos & 63));
            // SAFETY: as above.
            unsafe { *w = new };
            if new != 0 {
                return false; // the word still has a bit: the levels above stay (F2)
            }
            pos >>= 6;
        }
        true // the top word is zero
    }

    /// Whether the block at `idx` of `order`, or its buddy, is marked free.
    pub(crate) fn contains(&self, idx: usize, order: u32) -> bool {
        let tree = &self.trees[order as usize];
        let pos = self.bit(idx, order);
        // SAFETY: a word of this map (F3).
        unsafe { *self.word(tree, 0, pos >> 6) >> (pos & 63) & 1 != 0 }
    }

    /// Whether some block of `order` is free.
    #[inline]
    pub(crate) fn any(&self, order: u32) -> bool {
        let tree = &self.trees[order as usize];
        // SAFETY: the top word of this order (F3).
        unsafe { *self.word(tree, tree.levels as usize - 1, 0) != 0 }
    }

    /// Section index of the lowest free block of `order`, if any;
    /// `is_free(idx)` says whether the block at `idx` of `order` is free
    /// (the page metadata's word, F4).
    #[inline]
    pub(crate) fn lowest(&self, order: u32, is_free: impl Fn(usize) -> bool) -> Option<usize> {
        let bit = self.descend(order, |w| w.trailing_zeros())?;
        Some(self.block(bit, order, false, is_free))
    }

    /// Section index of the highest free block of `order`, if any; as
    /// [`Self::lowest`].
    #[inline]
    pub(crate) fn highest(&self, order: u32, is_free: impl Fn(usize) -> bool) -> Option<usize> {
        let bit = self.descend(order, |w| 63 - w.leading_zeros())?;
        Some(self.block(bit, order, true, is_free))
    }

    /// Walks from the top word down, taking the bit `pick` chooses in each
    /// word (F2 makes every word on the way non-zero); the level-0 bit.
    #[inline(always)]
    fn descend(&self, order: u32, pick: impl Fn(u64) -> u32) -> Option<usize> {
        let tree = &self.trees[order as usize];
        let mut index = 0;
        for level in (0..tree.levels as usize).rev() {
            // SAFETY: a word of this map (F3).
            let w = unsafe { *self.word(tree, level, index) };
            if w == 0 {
                debug_assert!(level + 1 == tree.levels as usize, "F2");
                return None;
            }
            index = index << 6 | pick(w) as usize;
        }
        Some(index)
    }

    /// Section indices of the free blocks of `order`, lowest first, with
    /// `is_free` as for [`Self::lowest`] (walks level 0: slow paths and
    /// statistics only).
    pub(crate) fn iter(
        &self,
        order: u32,
        is_free: impl Fn(usize) -> bool + Copy,
    ) -> impl Iterator<Item = usize> {
        let tree = self.trees[order as usize];
        let words = if tree.levels == 1 {
            1
        } else {
            (tree.level_start[1] - tree.level_start[0]) as usize
        };
        (0..words).flat_map(move |i| {
            // SAFETY: a level-0 word of this map (F3).
            let mut w = unsafe { *self.word(&tree, 0, i) };
            core::iter::from_fn(move || {
                (w != 0).then(|| {
                    let bit = w.trailing_zeros() as usize;
                    w &= w - 1;
                    self.block(i * 64 + bit, order, false, is_free)
                })
            })
        })
    }

    /// Checks F2 for every order; panics on a violation.
    pub(crate) fn check_summaries(&self) {
        for (order, tree) in self.trees.iter().enumerate() {
            for level in 1..tree.levels as usize {
                let below = (tree.level_start[level] - tree.level_start[level - 1]) as usize;
                for j in 0..below {
                    // SAFETY: words of this map (F3).
                    let (w, up) = unsafe {
                        (
                            *self.word(tree, level - 1, j),
                            *self.word(tree, level, j >> 6),
                        )
                    };
                    assert_eq!(
                        w != 0,
                        up >> (j & 63) & 1 != 0,
                        "F2: order {order} level {level} word {j}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A map with the free blocks it stands for, as the page metadata
    /// would say (F4 is the test's to keep).
    struct Map {
        _words: Vec<u64>,
        map: FreeMap,
        free: BTreeSet<(u32, usize)>,
    }

    impl Map {
        fn new(base_pfn: usize, nr_pages: usize) -> Self {
            let mut words = vec![u64::MAX; FreeMap::words_for(nr_pages)];
            let ptr = NonNull::new(words.as_mut_ptr()).unwrap();
            // SAFETY: `words` has words_for(nr_pages) words; its heap
            // buffer outlives the map (same struct, never touched).
            let map = unsafe { FreeMap::new(ptr, base_pfn, nr_pages) };
            Self {
                _words: words,
                map,
                free: BTreeSet::new(),
            }
        }
        fn insert(&mut self, idx: usize, order: u32) {
            self.free.insert((order, idx));
            self.map.insert(idx, order);
        }
        fn remove(&mut self, idx: usize, order: u32) -> bool {
            self.free.remove(&(order, idx));
            self.map.remove(idx, order)
        }
        fn lowest(&self, order: u32) -> Option<usize> {
            self.map.lowest(order, |i| self.free.contains(&(order, i)))
        }
        fn highest(&self, order: u32) -> Option<usize> {
            self.map.highest(order, |i| self.free.contains(&(order, i)))
        }
        fn all(&self, order: u32) -> Vec<usize> {
            let free = &self.free;
            self.map
                .iter(order, move |i| free.contains(&(order, i)))
                .collect()
        }
    }

    #[test]
    fn lowest_and_highest_follow_address_order_across_levels() {
        // 600 000 pages: three levels at order 0.
        let mut m = Map::new(12_345, 600_000);
        assert_eq!(m.lowest(0), None);
        assert!(!m.map.any(0));
        for idx in [599_999, 5, 70_000, 4_097] {
            m.insert(idx, 0);
        }
        assert!(m.map.any(0));
        assert_eq!(m.lowest(0), Some(5));
        assert_eq!(m.highest(0), Some(599_999));
        assert!(!m.remove(5, 0));
        assert_eq!(m.lowest(0), Some(4_097));
        assert!(!m.remove(599_999, 0));
        assert_eq!(m.highest(0), Some(70_000));
        assert_eq!(m.all(0), [4_097, 70_000]);
        m.map.check_summaries();
        assert!(!m.remove(4_097, 0));
        assert!(m.remove(70_000, 0), "the last block: the order is empty");
        assert_eq!((m.lowest(0), m.highest(0)), (None, None));
        m.map.check_summaries();
    }

    #[test]
    fn one_bit_stands_for_whichever_buddy_is_free() {
        // A pair member past the section's end is never asked about.
        let mut m = Map::new(0, 63);
        m.insert(62, 0);
        let free = m.free.clone();
        let asked = |i: usize| {
            assert!(i < 63, "asked about page {i}");
            free.contains(&(0, i))
        };
        assert_eq!(m.map.highest(0, asked), Some(62));
        // base_pfn 13: index 0 is frame 13, whose buddy (frame 12) lies
        // before the section.
        let mut m = Map::new(13, 64);
        m.insert(0, 0);
        assert_eq!((m.lowest(0), m.highest(0)), (Some(0), Some(0)));
        m.remove(0, 0);
        m.insert(2, 0); // frame 15: the higher of its pair
        m.insert(3, 0); // frame 16: the lower of its pair
        assert!(m.map.contains(1, 0), "frame 14 shares frame 15's bit");
        assert!(m.map.contains(4, 0), "frame 17 shares frame 16's bit");
        assert!(!m.map.contains(5, 0), "frame 18: no bit");
        assert_eq!(m.all(0), [2, 3]);
        assert_eq!((m.lowest(0), m.highest(0)), (Some(2), Some(3)));
    }

    #[test]
    fn positions_are_aligned_by_absolute_frame_number() {
        // base_pfn 3: the first order-2 block of the section starts at
        // index 1 (frame 4).
        let mut m = Map::new(3, 64);
        m.insert(1, 2);
        m.insert(57, 2);
        assert!(m.map.contains(1, 2) && !m.map.contains(9, 2));
        assert_eq!(m.all(2), [1, 57]);
        assert_eq!((m.lowest(2), m.highest(2)), (Some(1), Some(57)));
    }

    #[test]
    fn top_order_blocks_have_a_bit_each() {
        let top = MAX_ORDER as u32;
        let mut m = Map::new(0, 4 << top);
        m.insert(0, top);
        m.insert(1 << top, top);
        assert_eq!(m.all(top), [0, 1 << top]);
        assert_eq!(m.highest(top), Some(1 << top));
    }

    #[test]
    fn words_for_covers_every_order_and_level() {
        for n in [1, 63, 64, 65, 4095, 4096, 4097, 1 << 20] {
            let m = Map::new(7, n);
            let last = m.map.trees[NR_ORDERS - 1];
            let end = last.level_start[last.levels as usize - 1] as usize + 1;
            assert_eq!(end, m._words.len(), "{n} pages");
        }
    }
}
