//! Size classes and slab geometry, computed at compile time.
#![deny(unsafe_code)]

use super::header::HEADER_BYTES;
use crate::config::slab::{MAX_SLAB_ORDER, MAX_WASTE_FRACTION, SEED_SIZE_CLASSES, SIZE_CLASSES};
use crate::error::{AllocError, AllocResult};
use core::alloc::Layout;

/// Largest object served by slabs, in bytes.
pub const MAX_OBJECT_BYTES: usize = 2048;
/// Most size classes a table can hold: the longer class list of the
/// configuration (`slab.size-classes`, `slab.seed-size-classes`). Every CPU
/// keeps one 64-byte cache per class, so no more are reserved.
pub const MAX_CLASSES: usize = if SIZE_CLASSES.len() > SEED_SIZE_CLASSES.len() {
    SIZE_CLASSES.len()
} else {
    SEED_SIZE_CLASSES.len()
};
const _: () = assert!(MAX_CLASSES <= 64, "at most 64 size classes");
/// Most objects in one slab (bits in each header bitmap).
pub const MAX_OBJECTS: usize = 512;
const INDEX_LEN: usize = MAX_OBJECT_BYTES / 8 + 1;

/// A size class: index into a [`SizeClassTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SizeClass(pub(crate) u8);

impl SizeClass {
    /// Index of the class in its table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Geometry of every class for pages of `PAGE_SIZE` bytes: object size,
/// slab order, objects per slab. A table serves only slab allocators of its
/// page size (the type says so), so slab geometry always fits its slabs.
///
/// Invariants (checked at compile time by `build`):
/// - C1: sizes ascend, are multiples of 8 and the last is 2048.
/// - C2: `index[(size + 7) / 8]` is the smallest class with object size ≥ size.
/// - C3: `objects[c] * sizes[c] + HEADER_BYTES <= PAGE_SIZE << orders[c]`
///   and `objects[c] <= MAX_OBJECTS`: every object a slab has, it hands
///   out.
/// - C4: `inverses[c]` times the odd part of `sizes[c]` is 1 modulo
///   2^`usize::BITS`, so `exact_index` finds an object's index with one
///   multiply and tells a non-boundary offset by the size of the result.
/// - C5: `nr_classes <= MAX_CLASSES`, and every [`SizeClass`] is made here
///   from an index below `nr_classes` (C2 for `index`), so any class
///   indexes an array of `MAX_CLASSES` entries.
#[derive(Debug)]
pub struct SizeClassTable<const PAGE_SIZE: usize> {
    nr_classes: usize,
    sizes: [u16; MAX_CLASSES],
    orders: [u8; MAX_CLASSES],
    objects: [u16; MAX_CLASSES],
    inverses: [usize; MAX_CLASSES],
    index: [u8; INDEX_LEN],
}

impl<const PAGE_SIZE: usize> SizeClassTable<PAGE_SIZE> {
    /// Builds the table for `sizes`; fails to compile (or panics at run
    /// time) if the sizes break C1.
    pub const fn build(sizes: &[usize]) -> Self {
        let page_size = PAGE_SIZE;
        assert!(
            !sizes.is_empty() && sizes.len() <= MAX_CLASSES,
            "1..=MAX_CLASSES size classes"
        );
        assert!(
            sizes[sizes.len() - 1] == MAX_OBJECT_BYTES,
            "the last size class must be 2048"
        );
        let mut t = Self {
            nr_classes: sizes.len(),
            sizes: [0; MAX_CLASSES],
            orders: [0; MAX_CLASSES],
            objects: [0; MAX_CLASSES],
            inverses: [0; MAX_CLASSES],
            index: [0; INDEX_LEN],
        };
        let mut c = 0;
        while c < sizes.len() {
            let size = sizes[c];
            assert!(
                size >= 8 && size.is_multiple_of(8),
                "size classes are multiples of 8"
            );
            assert!(c == 0 || size > sizes[c - 1], "size classes ascend");
            let (order, objects) = Self::slab_geometry(size, page_size);
            t.sizes[c] = size as u16;
            t.orders[c] = order;
            t.objects[c] = objects as u16;
            t.inverses[c] = size_inverse(size);
            c += 1;
        }
        let mut i = 0;
        let mut c = 0;
        while i < INDEX_LEN {
            while sizes[c] < i * 8 {
                c += 1;
            }
            t.index[i] = c as u8;
            i += 1;
        }
        t
    }

    /// Picks the slab order for `size`: the smallest order whose waste is at
    /// most 1/`max-waste-fraction` of the slab, else the least wasteful
    /// order; returns it and the slab's object count. Waste is everything
    /// that holds no object: the header and the tail.
    const fn slab_geometry(size: usize, page_size: usize) -> (u8, usize) {
        let mut best = (0u8, 0usize, usize::MAX);
        let mut order = 0;
        while order <= MAX_SLAB_ORDER {
            let bytes = page_size << order;
            let mut n = (bytes - HEADER_BYTES) / size;
            if n > MAX_OBJECTS {
                n = MAX_OBJECTS;
            }
            let waste = bytes - n * size;
            if n > 0 && waste * MAX_WASTE_FRACTION <= bytes {
                return (order as u8, n);
            }
            // Compare waste fractions waste/bytes without division.
            if n > 0 && (best.1 == 0 || waste * (page_size << best.0) < best.2 * bytes) {
                best = (order as u8, n, waste);
            }
            order += 1;
        }
        assert!(best.1 > 0, "max-slab-order too small for 2048-byte objects");
        (best.0, best.1)
    }

    /// The default table of `configs/*.toml` (`slab.size-classes`).
    pub const fn configured() -> Self {
        Self::build(SIZE_CLASSES)
    }

    /// The 9 power-of-two classes of buddy-slab-allocator 0.6.
    pub const fn seed() -> Self {
        Self::build(SEED_SIZE_CLASSES)
    }

    /// Number of classes.
    pub const fn len(&self) -> usize {
        self.nr_classes
    }

    /// Whether the table is empty (never: `build` rejects it).
    pub const fn is_empty(&self) -> bool {
        self.nr_classes == 0
    }

    /// Iterates over the classes.
    pub fn classes(&self) -> impl Iterator<Item = SizeClass> + '_ {
        (0..self.nr_classes as u8).map(SizeClass)
    }

    /// The class serving `layout`.
    ///
    /// # Errors
    /// `InvalidParam` for a zero size or a layout larger than 2048 bytes (or
    /// aligned to more than 2048, or than any class can honour).
    #[inline(always)]
    pub fn class_for(&self, layout: Layout) -> AllocResult<SizeClass> {
        let size = layout.size();
        // One comparison for both "zero" and "larger than 2048".
        if size.wrapping_sub(1) >= MAX_OBJECT_BYTES {
            return Err(AllocError::InvalidParam);
        }
        let c = self.index[size.div_ceil(8)];
        if layout.align() <= 8 {
            return Ok(SizeClass(c));
        }
        self.aligned_class(c, layout.align())
    }

    /// The class of a request of `size` bytes with alignment ≤ 8, where
    /// `1 <= size <= 2048` (the caller checked): one table load (C2).
    #[inline(always)]
    pub(crate) fn class_of_small(&self, size: usize) -> SizeClass {
        debug_assert!((1..=MAX_OBJECT_BYTES).contains(&size));
        SizeClass(self.index[size.div_ceil(8)])
    }

    /// The smallest class from `first` whose objects are `align`-aligned.
    #[cold]
    #[inline(never)]
    fn aligned_class(&self, first: u8, align: usize) -> AllocResult<SizeClass> {
        // Objects sit at slab base + i * size and slabs are page aligned, so
        // a class honours `align` iff its size is a multiple of it.
        (first as usize..self.nr_classes)
            .find(|&c| (self.sizes[c] as usize).is_multiple_of(align))
            .map(|c| SizeClass(c as u8))
            .ok_or(AllocError::InvalidParam)
    }

    /// Object size of `class`, in bytes.
    #[inline]
    pub fn object_bytes(&self, class: SizeClass) -> usize {
        self.sizes[class.index()] as usize
    }

    /// Slab order of `class` (slabs are `PAGE_SIZE << order` bytes).
    #[inline]
    pub fn slab_order(&self, class: SizeClass) -> u32 {
        self.orders[class.index()] as u32
    }

    /// Objects a slab of `class` holds (and hands out: every one).
    #[inline]
    pub fn objects_per_slab(&self, class: SizeClass) -> usize {
        self.objects[class.index()] as usize
    }

    #[inline]
    pub(crate) fn inverse(&self, class: SizeClass) -> usize {
        self.inverses[class.index()]
    }
}

/// The inverse of the odd part of `size` modulo 2^`usize::BITS` (C4).
pub(crate) const fn size_inverse(size: usize) -> usize {
    assert!(size != 0);
    let odd = size >> size.trailing_zeros();
    // Newton's iteration doubles the correct low bits; any odd number is
    // its own inverse modulo 8, so five steps cover 64 bits.
    let mut x = odd;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2usize.wrapping_sub(odd.wrapping_mul(x)));
        i += 1;
    }
    assert!(x.wrapping_mul(odd) == 1, "C4");
    x
}

/// `off / size` if `size` divides `off`, else a value above
/// `usize::MAX / size`, where `inverse` is `size_inverse(size)` and `shift`
/// is `size.trailing_zeros()`: the divisibility test of Granlund and
/// Montgomery. Multiplying by the inverse maps the multiples of the odd
/// part, and only those, onto `0..=usize::MAX / odd`; the rotation moves
/// any low bits a multiple of the power of two would not have to the top.
/// So `exact_index(off, ..) < n` holds exactly for the object boundaries
/// `off < n * size`.
#[inline(always)]
pub(crate) const fn exact_index(off: usize, inverse: usize, shift: u32) -> usize {
    off.wrapping_mul(inverse).rotate_right(shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: SizeClassTable<4096> = SizeClassTable::configured();

    #[test]
    fn index_is_smallest_fitting_class() {
        for size in 1..=MAX_OBJECT_BYTES {
            let c = T
                .class_for(Layout::from_size_align(size, 1).unwrap())
                .unwrap();
            assert!(T.object_bytes(c) >= size);
            assert!(
                c.0 == 0 || T.object_bytes(SizeClass(c.0 - 1)) < size,
                "size {size}"
            );
        }
    }

    #[test]
    fn geometry_fits_and_wastes_little() {
        for t in [&T, &SizeClassTable::<4096>::seed()] {
            for c in t.classes() {
                let bytes = 4096 << t.slab_order(c);
                let used = t.objects_per_slab(c) * t.object_bytes(c);
                assert!(used + HEADER_BYTES <= bytes, "C3 class {c:?}");
                assert!(t.objects_per_slab(c) <= MAX_OBJECTS);
                assert!((bytes - used) * 10 <= bytes, "class {c:?} wastes over 10%");
            }
        }
    }

    /// Pure integer arithmetic over every offset of every slab: nothing for
    /// Miri to check, and minutes under it.
    #[test]
    #[cfg_attr(miri, ignore = "exhaustive arithmetic, no memory access")]
    fn exact_index_finds_exactly_the_object_boundaries() {
        for t in [&T, &SizeClassTable::<4096>::seed()] {
            for c in t.classes() {
                let size = t.object_bytes(c);
                let n = t.objects_per_slab(c);
                let (inverse, shift) = (t.inverse(c), size.trailing_zeros());
                let span = 4096usize << t.slab_order(c);
                // Every offset in the slab, and as many below its base (an
                // address below the base wraps to a huge offset).
                for off in (0..span).chain((1..=span).map(|k| 0usize.wrapping_sub(k))) {
                    let idx = exact_index(off, inverse, shift);
                    let object = off.is_multiple_of(size) && off / size < n;
                    assert_eq!(idx < n, object, "C4 class {size} off {off:#x}");
                    if off.is_multiple_of(size) {
                        assert_eq!(idx, off / size, "C4 class {size} off {off:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn size_inverse_inverts_every_odd_part() {
        for size in (8..=MAX_OBJECT_BYTES).step_by(8) {
            let odd = size >> size.trailing_zeros();
            assert_eq!(size_inverse(size).wrapping_mul(odd), 1, "size {size}");
        }
    }

    #[test]
    fn alignment_picks_a_multiple() {
        for align in [16, 32, 64, 128, 256, 512, 1024, 2048] {
            for size in [1, 8, 24, 100, 500, 2048] {
                let l = Layout::from_size_align(size, align).unwrap();
                if let Ok(c) = T.class_for(l) {
                    assert_eq!(T.object_bytes(c) % align, 0);
                    assert!(T.object_bytes(c) >= size);
                } else {
                    assert!(size > 2048 || align > 2048);
                }
            }
        }
        assert_eq!(
            T.class_for(Layout::from_size_align(0, 1).unwrap()),
            Err(AllocError::InvalidParam)
        );
        assert_eq!(
            T.class_for(Layout::from_size_align(2049, 1).unwrap()),
            Err(AllocError::InvalidParam)
        );
    }
}
