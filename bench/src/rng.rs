//! A small deterministic PRNG (xoshiro256**, seeded through SplitMix64).
//!
//! The harness needs reproducible sequences (every allocator sees the same sizes and the same
//! free order for a given seed) and a generator cheap enough not to dominate a ~5 ns loop.
#![deny(unsafe_code)]

/// xoshiro256** state.
#[derive(Clone)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// Creates a generator whose sequence is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut splitmix = seed;
        let mut next = || {
            splitmix = splitmix.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = splitmix;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            state: [next(), next(), next(), next()],
        }
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform integer in `low..high` (`high > low`), by Lemire's multiply-shift (bias is
    /// below 2^-40 for the ranges used here and irrelevant to a benchmark).
    #[inline]
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        debug_assert!(high > low);
        let span = (high - low) as u64;
        low + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as usize
    }

    /// Uniform integer in `low..=high`.
    #[inline]
    pub fn range_inclusive(&mut self, low: usize, high: usize) -> usize {
        self.range(low, high + 1)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn ranges_stay_in_bounds_and_cover_them() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 8];
        for _ in 0..10_000 {
            let v = rng.range_inclusive(8, 15);
            assert!((8..=15).contains(&v));
            seen[v - 8] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..100).collect();
        Rng::new(3).shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }
}
