//! Per-CPU cache of small page blocks (Linux's "pcp" lists).
//!
//! Blocks of order `0..page-cache-orders` freed on a CPU stay there, up to
//! `page-cache-high` per order, and are handed out again without the buddy
//! lock. Refills and drains move `page-cache-batch` blocks per lock
//! acquisition. Cached blocks are allocated runs in the buddy's view, tagged
//! `Cached` in their page metadata.
#![deny(unsafe_code)]

use crate::config::cpu::{PAGE_CACHE_BATCH, PAGE_CACHE_HIGH, PAGE_CACHE_ORDERS};

/// One ring per cached order: allocation takes the newest block (warmest in
/// the cache), a drain returns the oldest. Invariant P1: every address in a
/// ring heads a run of `1 << order` pages tagged `Cached`.
pub(crate) struct PageCache {
    blocks: [[usize; PAGE_CACHE_HIGH]; PAGE_CACHE_ORDERS],
    /// Index of the oldest block per order.
    head: [usize; PAGE_CACHE_ORDERS],
    len: [usize; PAGE_CACHE_ORDERS],
}

impl PageCache {
    pub(crate) const fn new() -> Self {
        Self {
            blocks: [[0; PAGE_CACHE_HIGH]; PAGE_CACHE_ORDERS],
            head: [0; PAGE_CACHE_ORDERS],
            len: [0; PAGE_CACHE_ORDERS],
        }
    }

    /// The cached order serving `count` pages aligned to `align_pages`.
    #[inline]
    pub(crate) fn order_for(count: usize, align_pages: usize) -> Option<usize> {
        let order = count.trailing_zeros() as usize;
        (count.is_power_of_two() && order < PAGE_CACHE_ORDERS && align_pages <= count)
            .then_some(order)
    }

    #[inline]
    fn slot(&self, order: usize, i: usize) -> usize {
        (self.head[order] + i) % PAGE_CACHE_HIGH
    }

    /// Takes the newest block of `order`.
    #[inline]
    pub(crate) fn pop(&mut self, order: usize) -> Option<usize> {
        let len = self.len[order].checked_sub(1)?;
        self.len[order] = len;
        Some(self.blocks[order][self.slot(order, len)])
    }

    /// Whether the ring of `order` is full.
    #[inline]
    pub(crate) fn is_full(&self, order: usize) -> bool {
        self.len[order] == PAGE_CACHE_HIGH
    }

    /// Caches `addr`; returns false if the order's ring is full.
    #[inline]
    pub(crate) fn push(&mut self, order: usize, addr: usize) -> bool {
        let len = self.len[order];
        if len == PAGE_CACHE_HIGH {
            return false;
        }
        let at = self.slot(order, len);
        self.blocks[order][at] = addr;
        self.len[order] = len + 1;
        true
    }

    /// Takes up to `max` of the oldest blocks of `order` for a drain.
    pub(crate) fn take_batch(
        &mut self,
        order: usize,
        max: usize,
        out: &mut [usize; PAGE_CACHE_BATCH],
    ) -> usize {
        let n = self.len[order].min(max).min(PAGE_CACHE_BATCH);
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.blocks[order][self.slot(order, i)];
        }
        self.head[order] = self.slot(order, n);
        self.len[order] -= n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_pops_newest_and_drains_oldest() {
        let mut c = PageCache::new();
        for a in 1..=PAGE_CACHE_HIGH {
            assert!(c.push(0, a));
        }
        assert!(!c.push(0, 999), "full");
        let mut out = [0; PAGE_CACHE_BATCH];
        assert_eq!(c.take_batch(0, usize::MAX, &mut out), PAGE_CACHE_BATCH);
        assert_eq!(out[0], 1, "oldest first");
        assert!(c.push(0, 1000));
        assert_eq!(c.pop(0), Some(1000), "newest first");
        let mut seen = 0;
        while let Some(a) = c.pop(0) {
            assert!(a > PAGE_CACHE_BATCH && a <= PAGE_CACHE_HIGH);
            seen += 1;
        }
        assert_eq!(seen, PAGE_CACHE_HIGH - PAGE_CACHE_BATCH);
        assert_eq!(c.pop(1), None);
    }
}
