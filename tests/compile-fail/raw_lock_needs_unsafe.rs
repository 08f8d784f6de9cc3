//! A lock that excludes nothing cannot be handed to the allocator from
//! safe code: `RawLock` is an unsafe trait, so `Locked` can trust it.
#![forbid(unsafe_code)]

use buddy_slab_allocator::sync::{Locked, RawLock};

struct NoLock;

impl RawLock for NoLock {
    const UNLOCKED: Self = NoLock;
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

fn main() {
    let shared = Locked::<NoLock, Vec<u8>>::new(Vec::new());
    shared.with(|a| shared.with(|b| core::mem::swap(a, b)));
}
