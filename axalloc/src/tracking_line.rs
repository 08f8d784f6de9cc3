//! What [`crate::tracking`] (shared with the tgoskits line's ax-alloc)
//! takes from the 0.3 line: kernel_guard's IRQ and preemption guard,
//! kspin's raw spin lock for the record buckets, and percpu's flag.

pub(crate) use kernel_guard::NoPreemptIrqSave as IrqGuard;

/// A record bucket's lock: IRQs and preemption are off already.
pub(crate) type BucketLock<T> = kspin::SpinRaw<T>;
pub(crate) type BucketGuard<'a, T> = kspin::SpinRawGuard<'a, T>;

/// The prefix of tracking's messages.
pub(crate) const CRATE_NAME: &str = "axalloc";

/// Set while this CPU makes, drops or visits records (see `tracking`);
/// read and written only with IRQs and preemption off.
#[percpu::def_percpu]
static IN_TRACKING: bool = false;

/// Sets this CPU's flag to `inside` unless it is so already; says whether
/// it changed.
///
/// # Safety
/// IRQs and preemption are off for the call (an [`IrqGuard`] lives).
pub(crate) unsafe fn swap_in_tracking(inside: bool) -> bool {
    // SAFETY: caller contract: no other context runs on this CPU, so this
    // CPU's flag is ours alone.
    unsafe {
        if IN_TRACKING.read_current_raw() == inside {
            return false;
        }
        IN_TRACKING.write_current_raw(inside);
    }
    true
}

/// Locks `bucket`.
///
/// # Safety
/// IRQs and preemption are off while the guard lives (a `SpinRaw` does not
/// turn them off itself).
pub(crate) unsafe fn lock_bucket<T>(bucket: &BucketLock<T>) -> BucketGuard<'_, T> {
    bucket.lock()
}
