//! What `tracking` (axalloc's tracking.rs, shared with the 0.3 line) takes
//! from the tgoskits line: ax-sync's IRQ and preemption guard and spin
//! lock for the record buckets, and an ax-percpu flag.

pub(crate) use ax_sync::PreemptIrqSaveGuard as IrqGuard;

/// A record bucket's lock, taken raw: IRQs and preemption are off already.
pub(crate) type BucketLock<T> = ax_sync::SpinLock<T>;
pub(crate) type BucketGuard<'a, T> = ax_sync::RawSpinLockGuard<'a, T>;

/// The prefix of tracking's messages.
pub(crate) const CRATE_NAME: &str = "ax-alloc";

/// Set while this CPU makes, drops or visits records (see `tracking`);
/// read and written only with IRQs and preemption off.
#[ax_percpu::def_percpu]
static IN_TRACKING: bool = false;

/// Sets this CPU's flag to `inside` unless it is so already; says whether
/// it changed. `false` also on a CPU without its per-CPU area yet (early
/// bring-up): nothing is tracked there.
///
/// # Safety
/// IRQs and preemption are off for the call (an [`IrqGuard`] lives).
pub(crate) unsafe fn swap_in_tracking(inside: bool) -> bool {
    // SAFETY: caller contract: the context stays on its CPU and no other
    // context runs there for the whole callback.
    unsafe {
        ax_percpu::with_cpu_pin(|pin| {
            if IN_TRACKING.read_current(pin) == inside {
                return false;
            }
            IN_TRACKING.write_current(pin, inside);
            true
        })
    }
    .unwrap_or(false)
}

/// Locks `bucket` without touching IRQs or preemption.
///
/// # Safety
/// IRQs and preemption are off while the guard lives, and the calling
/// context holds no other bucket lock.
pub(crate) unsafe fn lock_bucket<T>(bucket: &BucketLock<T>) -> BucketGuard<'_, T> {
    // SAFETY: caller contract (ax-sync's `lock_raw` requirements).
    unsafe { bucket.lock_raw() }
}
