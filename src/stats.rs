//! Statistics counters.
#![deny(unsafe_code)]

use crate::sync::{AtomicUsize, Ordering::Relaxed};

/// A counter with one writer (the CPU that owns it) and any number of
/// readers. Updates are a relaxed load and store, not a read-modify-write,
/// so they cost what a plain add costs; readers see a recent value.
#[derive(Debug)]
pub struct Counter(AtomicUsize);

impl Counter {
    /// Zero.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Zero.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> usize {
        self.0.load(Relaxed)
    }

    /// Sets the value (single writer only).
    #[inline]
    pub fn set(&self, n: usize) {
        self.0.store(n, Relaxed);
    }

    /// Adds `n` (single writer only).
    #[inline]
    pub fn add(&self, n: usize) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Subtracts `n` (single writer only).
    #[inline]
    pub fn sub(&self, n: usize) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}
