//! Every atomic the allocator uses, and the lock abstraction.
//!
//! Under `cfg(loom)` the atomics come from loom, so the model tests run the
//! real remote-free code.

pub(crate) use core::sync::atomic::Ordering;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, fence,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, fence,
};

use core::cell::UnsafeCell;

/// A mutual-exclusion primitive without data, used by [`Locked`].
///
/// # Safety
///
/// Implementors guarantee mutual exclusion: while one call of
/// [`RawLock::with`] on a lock value runs its closure, no other call on the
/// same value runs its closure, from any thread, CPU or interrupt context.
/// [`Locked`] hands out `&mut T` on this promise alone. In a kernel whose
/// allocator is called from interrupt handlers the lock must also mask
/// interrupts (and preemption) while held, or a handler that allocates on
/// the CPU holding it would wait for itself: ArceOS uses
/// `kspin::SpinNoIrq<()>`.
///
/// The lock need not be reentrant: the allocator never calls `with` on a
/// lock from inside a closure running under the same lock, and never logs
/// or allocates while it holds one.
pub unsafe trait RawLock: Sync + Send {
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

// SAFETY: access to `data` is serialised by `raw` (see `with`; RawLock's
// contract), so sharing `Locked` is as safe as sending `T` between threads.
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

// SAFETY: the compare-exchange from `false` to `true` admits one holder at
// a time; the Release store in `Unlock` ends its hold (also on unwind).
unsafe impl RawLock for SpinLock {
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
