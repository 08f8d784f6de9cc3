//! Per-CPU cache of small page blocks (Linux's "pcp" lists).
//!
//! Blocks of order `0..page-cache-orders` freed on a CPU stay there, up to
//! `page-cache-high` per order, and are handed out again without the buddy
//! lock. Refills and drains move `page-cache-batch` blocks per lock
//! acquisition. Cached blocks are allocated runs in the buddy's view, tagged
//! `Cached` in their page metadata.
#![deny(unsafe_code)]

use crate::config::cpu::{PAGE_CACHE_BATCH, PAGE_CACHE_HIGH, PAGE_CACHE_ORDERS};

/// Stacks of block addresses, one per cached order. Invariant P1: every
/// address in `blocks[o][..len[o]]` heads a run of `1 << o` pages tagged
/// `Cached`.
pub(crate) struct PageCache {
    blocks: [[usize; PAGE_CACHE_HIGH]; PAGE_CACHE_ORDERS],
    len: [usize; PAGE_CACHE_ORDERS],
}

impl PageCache {
    pub(crate) const fn new() -> Self {
        Self {
            blocks: [[0; PAGE_CACHE_HIGH]; PAGE_CACHE_ORDERS],
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
    pub(crate) fn pop(&mut self, order: usize) -> Option<usize> {
        let len = self.len[order].checked_sub(1)?;
        self.len[order] = len;
        Some(self.blocks[order][len])
    }

    /// Caches `addr`; returns false if the order's stack is full.
    #[inline]
    pub(crate) fn push(&mut self, order: usize, addr: usize) -> bool {
        let len = self.len[order];
        if len == PAGE_CACHE_HIGH {
            return false;
        }
        self.blocks[order][len] = addr;
        self.len[order] = len + 1;
        true
    }

    /// Takes up to `max` blocks of `order` (oldest first) for a drain.
    pub(crate) fn take_batch(
        &mut self,
        order: usize,
        max: usize,
        out: &mut [usize; PAGE_CACHE_BATCH],
    ) -> usize {
        let n = self.len[order].min(max).min(PAGE_CACHE_BATCH);
        out[..n].copy_from_slice(&self.blocks[order][..n]);
        self.blocks[order].copy_within(n..self.len[order], 0);
        self.len[order] -= n;
        n
    }
}
