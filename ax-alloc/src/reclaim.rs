//! Page reclaim under memory pressure: the callback a kernel registers
//! (StarryOS evicts clean page-cache pages), the lease that keeps it from
//! running twice at once, and the retry policy around it.
//!
//! The backends drain their own caches first: the buddy-slab core reclaims
//! its per-CPU caches before it reports `NoMemory`. Only then does the
//! facade call the registered function and retry, with the policy of the
//! published crate:
//!
//! 1. the first attempt; an error other than `NoMemory` is final;
//! 2. after `NoMemory`, up to [`MAX_RECLAIM_ATTEMPTS`] rounds of: reclaim
//!    `max(pages wanted, MIN_RECLAIM_PAGES)` pages, try again;
//! 3. a round in which the callback freed nothing ends the rounds (its
//!    retry still runs: another CPU may have freed memory meanwhile), as
//!    does any error other than `NoMemory`.
//!
//! No lock of this crate or of a backend is held while the callback runs.

use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::{AllocError, AllocResult};

/// Pages asked of the callback at least, whatever the request's size.
pub(crate) const MIN_RECLAIM_PAGES: usize = 16;

/// Reclaim rounds per request after its first attempt.
pub(crate) const MAX_RECLAIM_ATTEMPTS: usize = 4;

/// A function that tries to reclaim physical pages (e.g. by evicting clean
/// file-backed page cache pages). Returns the number of pages freed.
pub type PageReclaimFn = fn(num_pages: usize) -> usize;

/// The registered [`PageReclaimFn`] as a pointer; null while none is.
/// An atomic, not a lock: reading it costs an allocation under pressure
/// nothing, and registering from any context is safe.
static RECLAIM_FN: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Held while a callback runs (the lease).
static RECLAIM_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Registers the callback the allocator invokes when a page or Rust heap
/// allocation cannot be satisfied; a later call replaces it.
///
/// The callback runs under memory pressure, with no allocator lock held
/// but possibly with interrupts off (an allocation from an interrupt
/// handler): it must not allocate from this allocator, perform I/O, wait
/// for contended locks, or invoke unknown callbacks. It may use try-lock
/// based, clean-page-only eviction and free pages to this allocator.
pub fn register_page_reclaim_fn(f: PageReclaimFn) {
    RECLAIM_FN.store(f as *mut (), Ordering::Release);
}

/// The lease: at most one callback runs at a time in the whole kernel.
struct Lease;

impl Lease {
    fn try_take() -> Option<Self> {
        RECLAIM_ACTIVE
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then_some(Lease)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        RECLAIM_ACTIVE.store(false, Ordering::Release);
    }
}

/// Tries to reclaim `num_pages` physical pages through the registered
/// callback; returns the number of pages it freed.
///
/// Returns 0 without calling anything when no callback is registered or
/// when one is running already, on this CPU (an allocation made by the
/// callback itself, or by an interrupt that arrived meanwhile) or on
/// another: reclaim never recurses and never runs twice at once, as
/// Linux's direct reclaim is bounded.
pub fn try_page_reclaim(num_pages: usize) -> usize {
    let Some(_lease) = Lease::try_take() else {
        return 0;
    };
    let f = RECLAIM_FN.load(Ordering::Acquire);
    if f.is_null() {
        return 0;
    }
    // SAFETY: only `register_page_reclaim_fn` stores here, a
    // `PageReclaimFn` cast to a pointer (function and data pointers have
    // one size on every target of the line).
    let f = unsafe { core::mem::transmute::<*mut (), PageReclaimFn>(f) };
    f(num_pages)
}

/// `attempt`, and after `NoMemory` the reclaim rounds of the module doc,
/// with `reclaim` as the callback ([`retry`] with a callback of the test's).
#[cfg(test)]
fn with_reclaim<T>(
    target_pages: usize,
    mut attempt: impl FnMut() -> AllocResult<T>,
    reclaim: impl FnMut(usize) -> usize,
) -> AllocResult<T> {
    match attempt() {
        Err(AllocError::NoMemory) => reclaim_rounds(target_pages, attempt, reclaim),
        result => result,
    }
}

/// The rounds after a first attempt found no memory.
#[cold]
#[inline(never)]
fn reclaim_rounds<T>(
    target_pages: usize,
    mut attempt: impl FnMut() -> AllocResult<T>,
    mut reclaim: impl FnMut(usize) -> usize,
) -> AllocResult<T> {
    let target = target_pages.max(MIN_RECLAIM_PAGES);
    for _ in 0..MAX_RECLAIM_ATTEMPTS {
        let freed = reclaim(target);
        match attempt() {
            Err(AllocError::NoMemory) if freed > 0 => continue,
            result => return result,
        }
    }
    Err(AllocError::NoMemory)
}

/// `attempt` with the registered callback: what the backends' allocations
/// go through. Inlined so the first attempt stays on the caller's fast path.
#[inline(always)]
pub(crate) fn retry<T>(
    target_pages: usize,
    mut attempt: impl FnMut() -> AllocResult<T>,
) -> AllocResult<T> {
    match attempt() {
        Err(AllocError::NoMemory) => reclaim_rounds(target_pages, attempt, try_page_reclaim),
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the policy with an attempt that succeeds at attempt number
    /// `succeed_at` (never if `None`) and a callback that frees `freed`
    /// pages each time; returns (result, attempts, targets asked).
    fn run(
        target: usize,
        succeed_at: Option<usize>,
        freed: usize,
    ) -> (AllocResult<usize>, usize, std::vec::Vec<usize>) {
        let mut attempts = 0;
        let mut asked = std::vec::Vec::new();
        let result = with_reclaim(
            target,
            || {
                attempts += 1;
                if Some(attempts) == succeed_at {
                    Ok(attempts)
                } else {
                    Err(AllocError::NoMemory)
                }
            },
            |n| {
                asked.push(n);
                freed
            },
        );
        (result, attempts, asked)
    }

    #[test]
    fn success_needs_no_reclaim() {
        assert_eq!(run(1, Some(1), 5), (Ok(1), 1, std::vec![]));
    }

    #[test]
    fn progress_then_success_asks_at_least_the_minimum() {
        assert_eq!(run(1, Some(3), 1), (Ok(3), 3, std::vec![16, 16]));
        assert_eq!(run(64, Some(2), 1), (Ok(2), 2, std::vec![64]));
    }

    #[test]
    fn no_progress_gets_one_more_attempt() {
        assert_eq!(
            run(32, None, 0),
            (Err(AllocError::NoMemory), 2, std::vec![32])
        );
        // ... which may succeed (another CPU freed memory meanwhile).
        assert_eq!(run(32, Some(2), 0), (Ok(2), 2, std::vec![32]));
    }

    #[test]
    fn progress_is_bounded() {
        let (result, attempts, asked) = run(usize::MAX, None, 1);
        assert_eq!(result, Err(AllocError::NoMemory));
        assert_eq!(attempts, MAX_RECLAIM_ATTEMPTS + 1);
        assert_eq!(asked, std::vec![usize::MAX; MAX_RECLAIM_ATTEMPTS]);
    }

    #[test]
    fn other_errors_are_final() {
        let mut reclaims = 0;
        let r: AllocResult = with_reclaim(
            1,
            || Err(AllocError::InvalidParam),
            |_| {
                reclaims += 1;
                1
            },
        );
        assert_eq!((r, reclaims), (Err(AllocError::InvalidParam), 0));
        // Also after a round.
        let mut attempts = 0;
        let r: AllocResult = with_reclaim(
            1,
            || {
                attempts += 1;
                Err(if attempts == 1 {
                    AllocError::NoMemory
                } else {
                    AllocError::NotFound
                })
            },
            |_| 1,
        );
        assert_eq!((r, attempts), (Err(AllocError::NotFound), 2));
    }

    static CALLS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

    /// A callback that tries to reclaim again from inside (as an allocation
    /// it made would): the lease refuses the nested call.
    fn nested(n: usize) -> usize {
        CALLS.fetch_add(1, Ordering::SeqCst);
        assert_eq!(try_page_reclaim(n), 0, "a nested reclaim ran");
        n / 2
    }

    #[test]
    fn the_lease_refuses_nesting_and_is_given_back() {
        register_page_reclaim_fn(nested);
        assert_eq!(try_page_reclaim(10), 5);
        assert_eq!(try_page_reclaim(4), 2);
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
        // While a lease is out (a reclaim running elsewhere), nothing runs.
        let lease = Lease::try_take().unwrap();
        assert_eq!(try_page_reclaim(10), 0);
        drop(lease);
        assert_eq!(try_page_reclaim(10), 5);
        assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    }
}
