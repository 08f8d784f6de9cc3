//! The remote-free path, exposed for the loom model in `tests/loom.rs`
//! (compiled only under `--cfg loom`).
//!
//! These are thin wrappers: every operation is the real `SlabHeader` /
//! `PendingSlabs` code the facade runs, with loom's atomics.

use crate::cpu::handoff::{self, OwnerWord};
use crate::slab::header::{PendingSlabs, SlabGeometry, SlabHeader};

/// A slab formatted in caller memory, named by its header address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slab(usize);

// The header is only reached through `&SlabHeader`; its owner-only fields
// are touched only through the `unsafe` owner methods below.
// SAFETY: `Slab` is an address; the methods' contracts keep owner-only
// state on the owner thread.
unsafe impl Send for Slab {}
// SAFETY: as above.
unsafe impl Sync for Slab {}

impl Slab {
    /// Formats `[base, base + slab_bytes)` as a slab of `nr_objects` objects
    /// of `object_bytes`, owned by CPU 0.
    ///
    /// # Safety
    /// The block is writable, aligned to `slab_bytes` (a power of two),
    /// owned by the caller, and holds the objects and the header;
    /// `object_bytes` is a multiple of 8.
    pub unsafe fn format(
        base: usize,
        slab_bytes: usize,
        object_bytes: usize,
        nr_objects: usize,
    ) -> Self {
        let geo = SlabGeometry {
            class: 0,
            order: 0,
            slab_bytes,
            object_bytes,
            nr_objects,
            inverse: crate::slab::size_class::size_inverse(object_bytes),
        };
        let hdr = SlabHeader::addr_for(base, slab_bytes);
        assert!(nr_objects * object_bytes <= hdr - base);
        // The model deals in addresses: the block's provenance was exposed
        // by the caller (an `as` cast of its pointer).
        let base = core::ptr::with_exposed_provenance_mut::<u8>(base);
        // SAFETY: caller contract.
        unsafe { SlabHeader::init(base.with_addr(hdr).cast(), base, &geo, 0) };
        Self(hdr)
    }

    fn hdr(&self) -> &SlabHeader {
        // SAFETY: `format` wrote a header here, in a block whose provenance
        // is exposed; the model never frees it.
        unsafe { &*core::ptr::with_exposed_provenance::<SlabHeader>(self.0) }
    }

    /// Owner: pops a free object.
    ///
    /// # Safety
    /// Called only from the owner thread.
    pub unsafe fn alloc(&self) -> Option<usize> {
        self.hdr().pop().map(|p| p.expose_provenance())
    }

    /// Owner: frees `obj` locally.
    ///
    /// # Safety
    /// Called only from the owner thread.
    pub unsafe fn free_local(&self, obj: usize) -> bool {
        // SAFETY: caller contract; `free_local` validates `obj`.
        unsafe {
            self.hdr()
                .free_local(core::ptr::with_exposed_provenance_mut(obj))
        }
        .is_ok()
    }

    /// Remote CPU: frees `obj`. `Some(true)`: the caller must push the
    /// slab. `None`: rejected (double free or not an object).
    pub fn free_remote(&self, obj: usize) -> Option<bool> {
        self.hdr()
            .free_remote(core::ptr::with_exposed_provenance_mut(obj))
            .ok()
    }

    /// Owner: folds remote frees into the free list; returns the double
    /// frees found.
    ///
    /// # Safety
    /// Called only from the owner thread.
    pub unsafe fn absorb_remote(&self) -> usize {
        self.hdr().absorb_remote(|_| ())
    }

    /// Whether the slab is queued (S4: then it must not be released).
    pub fn is_queued(&self) -> bool {
        self.hdr().is_queued()
    }

    /// Owner: objects allocated.
    ///
    /// # Safety
    /// Called only from the owner thread.
    pub unsafe fn nr_allocated(&self) -> usize {
        self.hdr().nr_allocated()
    }

    /// Owner: checks S1 and S2 (panics on a violation).
    ///
    /// # Safety
    /// Called only from the owner thread.
    pub unsafe fn check(&self) {
        self.hdr().check();
    }

    /// Owner: marks the slab released (as before it returns to the buddy).
    ///
    /// # Safety
    /// Called only from the owner thread.
    pub unsafe fn release(&self) {
        self.hdr().kill();
    }

    /// Whether the slab is live (not released).
    pub fn is_live(&self) -> bool {
        self.hdr().is_live_at(self.hdr().base())
    }
}

/// A CPU's pending stack of slabs with remote frees.
pub struct Pending(PendingSlabs);

impl Pending {
    /// An empty stack.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(PendingSlabs::new())
    }

    /// Remote CPU: pushes `slab` after `free_remote` returned `Ok(true)`.
    pub fn push(&self, slab: Slab) {
        self.0.push(slab.hdr());
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Owner: takes every pending slab.
    pub fn take_all(&self, mut f: impl FnMut(Slab)) {
        self.0
            .take_all(|hdr| f(Slab(core::ptr::from_ref(hdr) as usize)));
    }
}

/// The head page of a slab: its page metadata, which outlives the slab and
/// says whether it is live (the liveness the release handshake checks).
pub struct SlabHead(crate::buddy::page_meta::PageMeta);

impl SlabHead {
    /// The head of a live slab of `order` owned by CPU `owner`.
    pub fn live(order: u32, owner: usize) -> Self {
        Self(crate::buddy::page_meta::PageMeta::new_live_slab_head(
            order, owner,
        ))
    }
}

/// Every CPU slot's hazard.
pub struct Hazards(Vec<crate::cpu::hazard::Hazard>);

impl Hazards {
    /// `slots` hazards, naming no slab.
    pub fn new(slots: usize) -> Self {
        Self(
            (0..slots)
                .map(|_| crate::cpu::hazard::Hazard::new())
                .collect(),
        )
    }
}

/// The words releases and hazards synchronise on.
pub struct ReleaseSync(crate::cpu::hazard::ReleaseSync);

impl ReleaseSync {
    /// Fresh.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::cpu::hazard::ReleaseSync::new())
    }
}

/// Remote CPU: the facade's remote-free step, for the slab at `base`
/// (head `head`, order 0, owner 0) with slot `slot`'s hazard: runs `touch`
/// only if `cover_remote_slab` says the slab is live after the hazard is
/// published.
pub fn touch_remote_slab<R>(
    hazards: &Hazards,
    slot: usize,
    sync: &ReleaseSync,
    base: usize,
    head: &SlabHead,
    touch: impl FnOnce() -> R,
) -> Option<R> {
    crate::cpu::hazard::cover_remote_slab(&hazards.0[slot], &sync.0, base, &head.0, (0, 0))
        .then(touch)
}

/// The mutant the model must catch: `touch_remote_slab` without the hazard
/// (the check of the head alone, then the touch).
pub fn touch_remote_slab_unprotected<R>(head: &SlabHead, touch: impl FnOnce() -> R) -> Option<R> {
    head.0.is_live_slab(0, 0).then(touch)
}

/// Owner: the facade's release step `try_release` for the slab at `base`
/// (head `head`, order 0, owner 0), with every slot's hazard; `true` if the
/// slab may go back to the page allocator.
pub fn try_release(
    sync: &ReleaseSync,
    hazards: &Hazards,
    base: usize,
    head: &SlabHead,
    slab: Slab,
) -> bool {
    crate::cpu::hazard::try_release(&sync.0, &hazards.0, base, &head.0, (0, 0), || {
        slab.is_queued()
    })
}

/// Which slots have an owner (`cpu::handoff::OwnerWord`, as the host
/// platform keeps it), for the idle hand-off (D1).
pub struct Owners(OwnerWord);

impl Owners {
    /// No slot owned.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(OwnerWord::new())
    }

    /// Takes slot `bit` if no context owns it.
    pub fn claim(&self, bit: u32) -> bool {
        self.0.claim(bit)
    }

    /// Gives slot `bit` up (without looking at its pending stack).
    pub fn release(&self, bit: u32) {
        self.0.release(bit);
    }

    /// The freer's check after queueing a slab: slot `bit` has no owner.
    pub fn idle_after_queueing(&self, bit: u32) -> bool {
        self.0.idle_after_queueing(bit)
    }

    /// The hand-off loop the facade runs (`drain_while_idle`): while slot
    /// `bit` can be claimed, runs `drain` as its owner, releases it, and
    /// looks again if it is still idle with something on `pending`.
    pub fn drain_while_idle(&self, bit: u32, pending: &Pending, mut drain: impl FnMut()) {
        handoff::drain_while_idle(
            || {
                if !self.0.claim(bit) {
                    return false;
                }
                drain();
                self.0.release(bit);
                true
            },
            || self.0.idle_after_queueing(bit),
            || pending.0.is_empty(),
        );
    }
}
