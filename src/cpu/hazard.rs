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
//!   store, then a read-modify-write of the slab's [`ReleaseSync`] shard)
//!   *before* the freeing CPU checks, in the slab head's page metadata
//!   (which is never freed), that the slab is live; it touches the header
//!   only if it is. A CPU freeing into the same slab again finds its
//!   hazard already there and pays nothing more.
//! - the owner, before it releases a slab, marks its head dead, then calls
//!   [`ReleaseSync::may_release`]: a read-modify-write of the same shard,
//!   then an acquire load of every slot's hazard. It releases only if no
//!   hazard names the slab (and the slab is not queued, checked after),
//!   else it keeps the slab as an empty one and marks it live again.
//!
//! Why it holds (R: the remote CPU, O: the owner; H1 below): both sides
//! read-modify-write the shard, so their two RMWs are ordered. If R's comes
//! first, O's acquires it and O's load of R's hazard sees the slab (or a
//! later hazard of R's, a release store made after R's free was done):
//! O keeps the slab, or R is finished with it. If O's comes first, R's
//! acquires it and R's check sees the dead mark (or a later state of the
//! page): R refuses. A later life of the same slab address uses the same
//! shard, so a hazard that stayed published covers it too. Only RMWs and
//! release/acquire pairs are involved, no SeqCst fence, so the loom model
//! (tests/loom.rs) checks it as it is.
//!
//! Invariant H1: while a slot's hazard names a slab base, the slot touches
//! that slab's header only after a check of its head that follows the
//! RMW of the hazard's publication. A hazard pins at most one slab, so a
//! stale one delays the release of at most one slab per CPU slot.
#![deny(unsafe_code)]

use crate::buddy::page_meta::PageMeta;
use crate::sync::{AtomicUsize, Ordering};

/// The remote side of H1: publishes `hazard` for the slab at `base`, then
/// runs `touch` (which may read and write the slab's header) only if the
/// slab's head page `head` shows it live, a slab of `order` owned by
/// `owner`. `None` if it does not: the slab is being released, or is no
/// slab (any more).
#[inline(always)]
pub(crate) fn touch_remote_slab<R>(
    hazard: &Hazard,
    sync: &ReleaseSync,
    base: usize,
    head: &PageMeta,
    (order, owner): (u32, usize),
    touch: impl FnOnce() -> R,
) -> Option<R> {
    hazard.cover(sync, base);
    head.is_live_slab(order, owner).then(touch)
}

/// The owner side of H1: marks the slab at `base` (head page `head`, a
/// live slab of `order` owned by `owner`) dead, and says whether it may go
/// back to the page allocator: no slot's hazard names it, and
/// `is_queued()`, asked after the handshake, says no remote free has
/// queued it. If not, the slab is marked live again and the caller keeps
/// it.
pub(crate) fn try_release<'h>(
    sync: &ReleaseSync,
    hazards: impl IntoIterator<Item = &'h Hazard>,
    base: usize,
    head: &PageMeta,
    (order, owner): (u32, usize),
    is_queued: impl FnOnce() -> bool,
) -> bool {
    head.mark_slab_dead(order, owner);
    if sync.may_release(base, hazards) && !is_queued() {
        return true;
    }
    head.mark_slab_live(order, owner);
    false
}

/// Shards of [`ReleaseSync`]: one cache line each.
const SHARDS: usize = 16;

#[repr(align(64))]
struct Shard(AtomicUsize);

/// The words slab releases and hazard publications synchronise on, one
/// set per allocator, sharded by slab address (every life of a slab
/// address maps to the same shard).
pub(crate) struct ReleaseSync {
    shards: [Shard; SHARDS],
}

impl ReleaseSync {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            shards: [const { Shard(AtomicUsize::new(0)) }; SHARDS],
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            shards: core::array::from_fn(|_| Shard(AtomicUsize::new(0))),
        }
    }

    #[inline]
    fn shard(&self, base: usize) -> &AtomicUsize {
        // Slabs are at least a page apart: the page number picks the shard
        // (its low bits, mixed with higher ones for larger pages and slabs).
        let page = base >> 12;
        &self.shards[(page ^ page >> 6) % SHARDS].0
    }

    /// Whether the owner of the slab at `base`, having marked its head
    /// dead, may return it to the page allocator: no slot's hazard names
    /// it. Call with every slot's hazard.
    fn may_release<'h>(&self, base: usize, hazards: impl IntoIterator<Item = &'h Hazard>) -> bool {
        // AcqRel: pairs with every publication's RMW of this shard (H1).
        self.shard(base).fetch_add(1, Ordering::AcqRel);
        hazards
            .into_iter()
            .all(|h| h.0.load(Ordering::Acquire) != base)
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
            // AcqRel: pairs with `may_release`'s RMW of this shard.
            sync.shard(base).fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Forgets the slab the hazard names (the slot is drained or idle):
    /// its owner may then release it.
    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }
}
