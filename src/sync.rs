//! Every atomic the allocator uses, and the lock abstraction.
//!
//! Under `cfg(loom)` the atomics come from loom, so the model tests run the
//! real remote-free code.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
pub(crate) use core::sync::atomic::{Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

use core::cell::UnsafeCell;

/// A mutual-exclusion primitive without data, used by [`Locked`].
///
/// In a kernel it must mask interrupts (and preemption) while held, since the
/// allocator is called from interrupt handlers: ArceOS uses
/// `kspin::SpinNoIrq<()>`.
pub trait RawLock: Sync + Send {
    /// The unlocked state, for `const` construction.
    const UNLOCKED: Self;
    /// Runs `f` with the lock held.
    fn with<R>(&self, f: impl FnOnce() -> R) -> R;
}

/// `T` behind a [`RawLock`]; the only way to reach `T` is [`Locked::with`].
pub struct Locked<L: RawLock, T> {
    raw: L,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by `raw` (see `with`), so sharing
// `Locked` is as safe as sending `T` between threads.
unsafe impl<L: RawLock, T: Send> Sync for Locked<L, T> {}
// SAFETY: owning `Locked` owns `T`.
unsafe impl<L: RawLock, T: Send> Send for Locked<L, T> {}

impl<L: RawLock, T> Locked<L, T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self {
            raw: L::UNLOCKED,
            data: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access to the data.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.raw.with(|| {
            // SAFETY: `raw` is held for the whole closure, so this is the only
            // reference to `data` (RawLock contract: mutual exclusion).
            f(unsafe { &mut *self.data.get() })
        })
    }
}

/// A test-and-test-and-set spin lock that does not touch interrupts: for the
/// host and for kernels that never allocate in interrupt context.
pub struct SpinLock {
    locked: AtomicBool,
}

impl RawLock for SpinLock {
    #[cfg(not(loom))]
    const UNLOCKED: Self = Self {
        locked: AtomicBool::new(false),
    };
    #[cfg(loom)]
    const UNLOCKED: Self = panic!("loom atomics are not const");

    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.locked);
        f()
    }
}
