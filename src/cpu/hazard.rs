//! Slab release against remote frees that come too late.
//!
//! A remote free writes into the header of a slab another CPU owns (one
//! atomic OR into its remote bitmap, sometimes a push). For a valid free
//! its own object keeps the slab alive: the owner cannot release a slab
//! with an allocated object. A double free of an object that is already
//! free has no such guard: between checking that the slab is live and
//! writing into its header, the owner may release the slab and its memory
//! be handed out again, and the write would land in someone else's data.
//!
//! The handshake closing that window, in the spirit of hazard pointers:
//! - each CPU slot has a [`Hazard`]: the base of the slab whose header it
//!   touches in a remote free. [`Hazard::cover`] publishes it (a release
//!   store, then a read-modify-write of the allocator's [`ReleaseSync`]
//!   word) *before* the freeing CPU checks, in the slab head's page
//!   metadata (which is never freed), that the slab is live; it touches the
//!   header only if it is. A CPU freeing into the same slab again finds its
//!   hazard already there and pays nothing more.
//! - the owner, before it releases slabs, marks their heads dead, then
//!   makes one [`ReleaseSync::handshake`] for all of them: a
//!   read-modify-write of the same word, then acquire loads of the slots'
//!   hazards. It releases a slab only if no hazard names it (and it is not
//!   queued, checked after), else it keeps the slab as an empty one and
//!   marks it live again.
//!
//! Why it holds (R: the remote CPU, O: the owner; H1 below): both sides
//! read-modify-write the word, so their two RMWs are ordered. If R's comes
//! first, O's acquires it and O's load of R's hazard sees the slab (or a
//! later hazard of R's, a release store made after R's free was done):
//! O keeps the slab, or R is finished with it. If O's comes first, R's
//! acquires it and R's check sees the dead mark (or a later state of the
//! page): R refuses. Every life of every slab uses the same word, so a
//! hazard that stayed published covers a later life of its slab too. Only
//! RMWs and release/acquire pairs are involved, no SeqCst fence, so the
//! loom model (tests/loom.rs) checks it as it is.
//!
//! Invariant H1: while a slot's hazard names a slab base, the slot touches
//! that slab's header only after a check of its head that follows the
//! RMW of the hazard's publication. A hazard pins at most one slab, so a
//! stale one delays the release of at most one slab per CPU slot.
#![deny(unsafe_code)]

use crate::buddy::page_meta::PageMeta;
use crate::sync::{AtomicUsize, Ordering};

/// The remote side of H1: publishes `hazard` for the slab at `base`, then
/// says whether the slab's head page `head` shows it live, a slab of
/// `order` owned by `owner`. Only if it does may the caller touch the
/// slab's header; if not, the slab is being released, or is no slab (any
/// more).
#[inline(always)]
#[must_use = "the slab's header may be touched only if it is live"]
pub(crate) fn cover_remote_slab(
    hazard: &Hazard,
    sync: &ReleaseSync,
    base: usize,
    head: &PageMeta,
    (order, owner): (u32, usize),
) -> bool {
    hazard.cover(sync, base);
    head.is_live_slab(order, owner)
}

/// The owner side of H1 for one slab: marks the slab at `base` (head page
/// `head`, a live slab of `order` owned by `owner`) dead, and says whether
/// it may go back to the page allocator: no slot's hazard names it, and
/// `is_queued()`, asked after the handshake, says no remote free has
/// queued it. If not, the slab is marked live again and the caller keeps
/// it. (Several slabs: mark each dead, one [`ReleaseSync::handshake`],
/// then [`Handshake::keeps`] for each.)
pub(crate) fn try_release(
    sync: &ReleaseSync,
    hazards: &[Hazard],
    base: usize,
    head: &PageMeta,
    (order, owner): (u32, usize),
    is_queued: impl FnOnce() -> bool,
) -> bool {
    head.mark_slab_dead(order, owner);
    let handshake = sync.handshake(hazards);
    if handshake.keeps(base, is_queued) {
        head.mark_slab_live(order, owner);
        return false;
    }
    true
}

/// The word slab releases and hazard publications synchronise on (one per
/// allocator, on its own cache line).
#[repr(align(64))]
pub(crate) struct ReleaseSync(AtomicUsize);

impl ReleaseSync {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// The owner's half of the handshake, for every slab whose head it has
    /// marked dead since its last one: after this, [`Handshake::keeps`]
    /// says which must stay. `hazards` are every slot's.
    pub(crate) fn handshake<'h>(&self, hazards: &'h [Hazard]) -> Handshake<'h> {
        // AcqRel: pairs with every publication's RMW (H1).
        self.0.fetch_add(1, Ordering::AcqRel);
        Handshake { hazards }
    }
}

/// The owner's view after a handshake.
pub(crate) struct Handshake<'h> {
    hazards: &'h [Hazard],
}

impl Handshake<'_> {
    /// Whether the slab at `base`, marked dead before the handshake, must
    /// stay: a slot's hazard names it, or `is_queued()` (asked after the
    /// handshake: a remote free whose hazard has moved on is seen in full,
    /// its push included) says a remote free has queued it.
    pub(crate) fn keeps(&self, base: usize, is_queued: impl FnOnce() -> bool) -> bool {
        self.hazards
            .iter()
            .any(|h| h.0.load(Ordering::Acquire) == base)
            || is_queued()
    }
}

/// A slot's hazard: the base of the slab whose header it last touched in a
/// remote free, or 0 (H1).
pub(crate) struct Hazard(AtomicUsize);

impl Hazard {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Publishes that this slot is about to touch the header of the slab at
    /// `base`, owned by another CPU. The caller then checks that the slab
    /// is live (its head's page metadata) and touches the header only if
    /// it is (H1). Free when the hazard names `base` already.
    #[inline]
    pub(crate) fn cover(&self, sync: &ReleaseSync, base: usize) {
        if self.0.load(Ordering::Relaxed) != base {
            // Release: an owner that reads this value sees everything this
            // slot did before, in particular that it finished with the
            // slab its hazard named until now.
            self.0.store(base, Ordering::Release);
            // AcqRel: pairs with the owners' handshakes (H1).
            sync.0.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets the slab the hazard names (the slot is drained or idle):
    /// its owner may then release it.
    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// [`Self::clear`], returning the slab base it named (0 for none).
    pub(crate) fn take(&self) -> usize {
        self.0.swap(0, Ordering::Release)
    }
}
