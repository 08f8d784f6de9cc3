//! Handing an idle CPU slot's remote frees to whoever can take them.
//!
//! A slot whose owner makes no more calls (on the host: its thread has
//! exited) would never absorb the frees other CPUs queue on its slabs. Two
//! rules close that gap, with an [`OwnerWord`] saying which slots have an
//! owner:
//! - the freer: after it queues a slab (the push onto the owner's pending
//!   stack), [`OwnerWord::idle_after_queueing`]; if the slot has no owner,
//!   it drains the slot itself, through [`drain_while_idle`];
//! - the one giving a slot up (an exiting thread, or a drainer): after it
//!   clears the slot's bit, it looks at the pending stack again
//!   ([`drain_while_idle`] loops while the slot stays idle and has
//!   something queued).
//!
//! Invariant D1 (no stranded free): a slab queued for a slot that is
//! given up is absorbed by the one giving it up, or by its freer, or by
//! the slot's next owner. Both sides make a SeqCst fence between their
//! write (the push; the bit's release) and their read (the bit; the
//! stack), so at least one of them sees the other's write (the store
//! buffering pattern). `tests/loom.rs` checks D1 with the real pending
//! stack and this code.

#[cfg(any(feature = "std", loom))]
use crate::sync::{AtomicU64, Ordering, fence};

/// One bit per slot of a group of 64: set while a context owns the slot.
/// (The host platform's; a kernel knows its idle CPUs otherwise.)
#[cfg(any(feature = "std", loom))]
pub(crate) struct OwnerWord(AtomicU64);

#[cfg(any(feature = "std", loom))]
impl OwnerWord {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Takes the lowest clear bit below `limit`, if any (a new owner).
    pub(crate) fn claim_any(&self, limit: u32) -> Option<u32> {
        let mut bits = self.0.load(Ordering::Relaxed);
        loop {
            let bit = (!bits).trailing_zeros();
            if bit >= limit.min(64) {
                return None;
            }
            // Acquire pairs with the Release of the slot's previous owner.
            match self.0.compare_exchange_weak(
                bits,
                bits | (1 << bit),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(bit),
                Err(now) => bits = now,
            }
        }
    }

    /// Takes `bit` if it is clear (a drainer of an idle slot).
    pub(crate) fn claim(&self, bit: u32) -> bool {
        // Acquire: see the last owner's writes to the slot.
        self.0.fetch_or(1 << bit, Ordering::Acquire) & (1 << bit) == 0
    }

    /// Gives `bit` up.
    pub(crate) fn release(&self, bit: u32) {
        // Release: the next owner sees every write made to the slot.
        self.0.fetch_and(!(1 << bit), Ordering::Release);
    }

    /// The freer's half of D1, after it queued a slab for slot `bit`:
    /// whether the slot has no owner (then the freer drains it).
    #[inline]
    pub(crate) fn idle_after_queueing(&self, bit: u32) -> bool {
        fence(Ordering::SeqCst);
        self.0.load(Ordering::Relaxed) & (1 << bit) == 0
    }
}

/// The giver's half of D1 (and the drain a freer makes): while
/// `try_drain()` got the idle slot (claimed, drained, released: `true`)
/// and the slot is still idle with something queued (`pending_empty()`
/// false), drains again. Stops when the slot has an owner, which absorbs
/// what it finds.
pub(crate) fn drain_while_idle(
    mut try_drain: impl FnMut() -> bool,
    still_idle: impl Fn() -> bool,
    pending_empty: impl Fn() -> bool,
) {
    // `still_idle` makes the fence that orders the release in `try_drain`
    // before the load of the stack.
    while try_drain() && still_idle() && !pending_empty() {}
}
