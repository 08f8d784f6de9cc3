//! The slab header: bookkeeping at the end of every slab.
//!
//! A slab is a naturally aligned buddy block of `PAGE_SIZE << order` bytes.
//! Objects start at its base (so an object is aligned to every power of two
//! dividing its size); the header takes the last [`HEADER_BYTES`] bytes.
//!
//! ```text
//! base                                              base + slab bytes
//! | obj 0 | obj 1 | ... | obj n-1 | tail waste | SlabHeader (256 B) |
//! ```
//!
//! Fields are grouped by who touches them (one cache line each):
//! owner-only (`Cell`s, touched only by the CPU that owns the slab),
//! immutable while the slab lives (read by any CPU), and remote (atomics
//! written by other CPUs). All access goes through `&SlabHeader`, never
//! `&mut`, so a remote CPU's shared reference never aliases a unique one.

use super::size_class::{MAX_OBJECTS, exact_index};
use crate::debug;
use crate::sync::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use core::cell::Cell;
use core::ptr;

/// Unlinked objects `pop` moves to the free list per bitmap scan (S1).
/// 32 rather than 8: a quarter of the out-of-line scans for a slab whose
/// objects all came back as remote frees (d 5 %, e 2 % faster, a, b and g
/// unchanged in one run against 8); 2 was 40 % slower on d.
const LINK_BATCH: usize = 32;

/// S4: in `remote_summary`, the slab is on (or about to be pushed to) its
/// owner's pending stack; bits `0..BITMAP_WORDS` name the words to take.
const PUSHED: u32 = 1 << 31;

/// Bytes reserved for the header at the end of each slab.
pub const HEADER_BYTES: usize = core::mem::size_of::<SlabHeader>();
const BITMAP_WORDS: usize = MAX_OBJECTS / 64;
const MAGIC: usize = 0x5ab1_ead5_5ab1_ead5_u64 as usize;

/// Where a slab is in its owner's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlabState {
    /// The class's current slab: allocations pop its free list.
    Active,
    /// On the class's partial list: some objects free.
    Partial,
    /// On no list: no object free locally.
    Full,
    /// On the class's empty list: every object free.
    Empty,
}

/// Slab bookkeeping. Invariants (checked by `check`):
/// - S1: `free_head` lists objects whose alloc bit is clear, each once,
///   all inside `[base, base + nr_objects * object_bytes)` at object
///   boundaries; the other free objects (clear bit, not listed) number
///   `unlinked`. While the list is empty every free object is unlinked, so
///   `pop` takes the lowest clear bit. Remote frees are absorbed as
///   unlinked objects: the owner flips bits instead of writing a link into
///   each object (whose cache line the freeing CPU holds).
/// - S2: `nr_allocated` = number of set alloc bits = objects handed out and
///   not yet freed locally or absorbed from the remote bitmap.
/// - S3: a remote bit is set only for an object whose alloc bit is set. A
///   violation is a double free (a remote free of a free object, or a
///   local free of an object with a remote free pending): if the object is
///   on the free list, `pop` refuses it and `repair` takes it off (it
///   counts as allocated until the stray bit is absorbed, which frees it
///   again); else `absorb_remote` finds the bit; either counts it once.
///   Local frees do not read the remote bitmap, so the owner never pulls
///   in the line remote CPUs write to free.
/// - S5: `magic == MAGIC ^ base` while the slab is live.
/// - S4 (remote frees, *epochs*): a remote word is non-zero exactly while
///   its *epoch* is open. The remote free whose `fetch_or` finds the word
///   zero opens the epoch and is responsible for delivering it: in a slab
///   of at most 64 objects (one word) it pushes the slab on the owner's
///   pending stack at once; otherwise it first sets the word's bit and
///   [`PUSHED`] in `remote_summary` and pushes only if `PUSHED` was clear.
///   Only the owner clears a remote word, with the `swap` to 0 that takes
///   it and closes its epoch, and only after taking a summary that names
///   it (one-word slabs: after popping the slab); so while a responsible
///   free is between its two steps its object stays live in the owner's
///   view and the slab cannot be released. A slab with `PUSHED` or a
///   non-zero remote word is never released (`is_queued`): it is on the
///   pending stack or about to be.
///
/// Remote frees cost one atomic read-modify-write, two (plus the push)
/// for the free that opens an epoch.
#[repr(C, align(64))]
pub(crate) struct SlabHeader {
    // --- cache line 0: what every local alloc and free reads ---
    // owner-only
    free_head: Cell<*mut u8>,
    nr_allocated: Cell<u32>,
    pub(super) state: Cell<SlabState>,
    /// Free objects not on the free list (S1).
    unlinked: Cell<u16>,
    // immutable while the slab lives
    /// The slab's first byte, with the provenance of the memory it was
    /// carved from: `absorb_remote` derives object pointers from it.
    base: AtomicPtr<u8>,
    magic: AtomicUsize,
    /// C4's inverse of `object_bytes`: `index_of` without a division.
    inverse: AtomicUsize,
    object_bytes: AtomicU32,
    /// `object_bytes.trailing_zeros()`, for `index_of`.
    shift: AtomicU32,
    nr_objects: AtomicU32,
    /// `class | order << 8`.
    class_order: AtomicU32,
    owner_cpu: AtomicU32,
    /// `PAGE_SIZE << order`, what the fast paths count as empty bytes.
    slab_bytes: AtomicU32,
    // --- cache line 1: owner-only alloc bitmap ---
    alloc_bits: CacheLine<[Cell<u64>; BITMAP_WORDS]>,
    // --- cache line 2: written by remote CPUs ---
    remote_bits: CacheLine<[AtomicU64; BITMAP_WORDS]>,
    // --- cache line 3: slow paths (remote queueing, list links) ---
    _line3: Align64,
    /// S4: `PUSHED` and the words whose epochs wait for the owner.
    remote_summary: AtomicU32,
    pending_next: AtomicPtr<SlabHeader>,
    pub(super) next: Cell<*mut SlabHeader>,
    pub(super) prev: Cell<*mut SlabHeader>,
}

/// Hints the CPU to bring the cache line at `addr` into L1. The hint
/// instructions never fault and have no architectural effect, so `addr`
/// may be null or a corrupted link: it is not dereferenced. A no-op where
/// the base ISA has no such hint (riscv64gc) and under Miri.
#[inline(always)]
fn prefetch(addr: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: PREFETCHT0 reads no register but `addr`, writes nothing and
    // cannot fault.
    unsafe {
        core::arch::asm!("prefetcht0 [{0}]", in(reg) addr, options(nostack, preserves_flags, readonly));
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: PRFM reads no register but `addr`, writes nothing and cannot
    // fault.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) addr, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri))))]
    let _ = addr;
}

/// Starts a new cache line: local allocs and frees touch lines 0 and 1,
/// remote CPUs write line 2, so they do not false-share with the owner.
#[repr(C, align(64))]
struct CacheLine<T>(T);

/// `T` alone on its cache line (what other CPUs write, kept away from
/// what its owner writes).
#[repr(C, align(64))]
pub(crate) struct OwnLine<T>(pub(crate) T);

impl<T> core::ops::Deref for OwnLine<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::Deref for CacheLine<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Zero-sized: moves the next field to a cache-line boundary.
#[repr(C, align(64))]
struct Align64;

// loom's atomics are larger than the real ones: the layout holds for
// real builds only.
#[cfg(not(loom))]
const _: () = {
    assert!(HEADER_BYTES == 256, "four cache lines");
    assert!(core::mem::offset_of!(SlabHeader, remote_summary) == 192);
    assert!(core::mem::offset_of!(SlabHeader, alloc_bits) == 64);
    assert!(core::mem::offset_of!(SlabHeader, remote_bits) == 128);
};

/// Geometry given to a new slab.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlabGeometry {
    pub(crate) class: u8,
    pub(crate) order: u32,
    /// `PAGE_SIZE << order`.
    pub(crate) slab_bytes: usize,
    pub(crate) object_bytes: usize,
    pub(crate) nr_objects: usize,
    /// `size_inverse(object_bytes)` (C4).
    pub(crate) inverse: usize,
}

/// What made [`SlabHeader::pop`] refuse although the slab has free objects;
/// found and fixed by [`SlabHeader::repair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderFault {
    /// The free list named something that is not a free object (a write
    /// after free): dropped, its objects found through their alloc bits.
    CorruptFreeList,
    /// The object on top of the free list had a remote bit: a remote double
    /// free of a free object (S3). The bit is dropped.
    StrayRemoteFree(*mut u8),
    /// Free objects were counted that the alloc bits do not have.
    LostUnlinked,
}

/// Why an object free was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreeFault {
    /// Outside the slab's objects or not at an object boundary.
    NotAnObject,
    /// The object is not allocated (double free).
    DoubleFree,
    /// The object is from a slab of another class than the layout says.
    WrongClass,
}

impl SlabHeader {
    /// Header address of the slab at `base` of `slab_bytes`.
    #[inline]
    pub(crate) const fn addr_for(base: usize, slab_bytes: usize) -> usize {
        base + slab_bytes - HEADER_BYTES
    }

    /// Formats a fresh slab: header written, every object free and unlinked.
    /// Object pointers are derived from `base`, so they carry its
    /// provenance.
    ///
    /// # Safety
    /// `[base, base + (PAGE << order))` is writable memory owned by the
    /// caller, aligned to its size, reachable through `base`'s provenance,
    /// and `hdr` is `addr_for(base, bytes)`; `geo` satisfies C3.
    pub(crate) unsafe fn init(
        hdr: *mut SlabHeader,
        base: *mut u8,
        geo: &SlabGeometry,
        owner_cpu: usize,
    ) {
        // Every object starts unlinked (S1): `pop` links them a batch at a
        // time, lowest first, so a new slab costs no write per object.
        if debug::ENABLED {
            for i in 0..geo.nr_objects {
                let obj = base.wrapping_add(i * geo.object_bytes);
                // SAFETY: obj is a free object inside the slab (C3); the
                // caller owns the memory.
                unsafe { debug::fill(obj, debug::red_zone(0, geo.object_bytes), debug::POISON) };
            }
        }
        // SAFETY: hdr is the slab's last HEADER_BYTES bytes, 64-aligned
        // (slab size and HEADER_BYTES are multiples of 64); caller owns it.
        unsafe {
            hdr.write(SlabHeader {
                free_head: Cell::new(ptr::null_mut()),
                next: Cell::new(ptr::null_mut()),
                prev: Cell::new(ptr::null_mut()),
                nr_allocated: Cell::new(0),
                state: Cell::new(SlabState::Empty),
                unlinked: Cell::new(geo.nr_objects as u16),
                base: AtomicPtr::new(base),
                magic: AtomicUsize::new(MAGIC ^ base.addr()),
                inverse: AtomicUsize::new(geo.inverse),
                object_bytes: AtomicU32::new(geo.object_bytes as u32),
                shift: AtomicU32::new(geo.object_bytes.trailing_zeros()),
                nr_objects: AtomicU32::new(geo.nr_objects as u32),
                class_order: AtomicU32::new(geo.class as u32 | (geo.order << 8)),
                owner_cpu: AtomicU32::new(owner_cpu as u32),
                slab_bytes: AtomicU32::new(geo.slab_bytes as u32),
                alloc_bits: CacheLine([const { Cell::new(0) }; BITMAP_WORDS]),
                #[cfg(not(loom))]
                remote_bits: CacheLine([const { AtomicU64::new(0) }; BITMAP_WORDS]),
                #[cfg(loom)]
                remote_bits: CacheLine(core::array::from_fn(|_| AtomicU64::new(0))),
                _line3: Align64,
                remote_summary: AtomicU32::new(0),
                pending_next: AtomicPtr::new(ptr::null_mut()),
            });
        }
    }

    /// Whether the header at this address belongs to a live slab at `base`
    /// (S5).
    #[inline]
    pub(crate) fn is_live_at(&self, base: usize) -> bool {
        self.magic.load(Ordering::Relaxed) == MAGIC ^ base
            && self.base.load(Ordering::Relaxed).addr() == base
    }

    /// Marks the slab dead before its memory goes back to the buddy.
    pub(crate) fn kill(&self) {
        self.magic.store(0, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn base(&self) -> usize {
        self.base.load(Ordering::Relaxed).addr()
    }

    /// The slab's first byte, as the pointer the slab was formatted with.
    #[inline]
    pub(crate) fn base_ptr(&self) -> *mut u8 {
        self.base.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn class(&self) -> u8 {
        self.class_order.load(Ordering::Relaxed) as u8
    }

    #[inline]
    pub(crate) fn order(&self) -> u32 {
        self.class_order.load(Ordering::Relaxed) >> 8
    }

    #[inline]
    pub(crate) fn slab_bytes(&self) -> usize {
        self.slab_bytes.load(Ordering::Relaxed) as usize
    }

    #[inline]
    pub(crate) fn owner_cpu(&self) -> usize {
        self.owner_cpu.load(Ordering::Relaxed) as usize
    }

    #[inline]
    pub(crate) fn object_bytes(&self) -> usize {
        self.object_bytes.load(Ordering::Relaxed) as usize
    }

    #[inline]
    pub(crate) fn nr_objects(&self) -> usize {
        self.nr_objects.load(Ordering::Relaxed) as usize
    }

    /// Whether the remote bits fit one word: a free that opens the epoch
    /// then pushes without the summary (S4).
    #[inline]
    fn single_word(&self) -> bool {
        self.nr_objects() <= 64
    }

    #[inline]
    pub(crate) fn nr_allocated(&self) -> usize {
        self.nr_allocated.get() as usize
    }

    /// Whether the free list is empty and unlinked objects remain: `pop`
    /// would link them.
    #[inline]
    pub(crate) fn needs_linking(&self) -> bool {
        self.free_head.get().is_null() && self.unlinked.get() != 0
    }

    #[inline]
    pub(crate) fn has_free(&self) -> bool {
        !self.free_head.get().is_null() || self.unlinked.get() != 0
    }

    /// The object at index `idx`, with the slab's provenance.
    #[inline]
    fn object_at(&self, idx: usize) -> *mut u8 {
        self.base_ptr().wrapping_add(idx * self.object_bytes())
    }

    /// Object index of `obj`, if it is an object boundary of this slab.
    #[inline(always)]
    fn index_of(&self, obj: usize) -> Result<usize, FreeFault> {
        let off = obj.wrapping_sub(self.base());
        // C4: below `nr_objects` exactly for the object boundaries, so one
        // compare checks both the bounds and the boundary.
        let idx = exact_index(
            off,
            self.inverse.load(Ordering::Relaxed),
            self.shift.load(Ordering::Relaxed),
        );
        if idx >= self.nr_objects() {
            return Err(FreeFault::NotAnObject);
        }
        Ok(idx)
    }

    /// Pops a free object (owner only): the head of the free list, else
    /// the lowest unlinked one (S1). Returns `None` when the slab has no
    /// free object, and also, changing nothing, when what it finds breaks
    /// S1 or S3 (a corrupted free list, a stray remote bit): then
    /// [`Self::has_free`] still holds and [`Self::repair`] fixes it. So the
    /// fast path never handles a fault; its caller's slow path does.
    #[inline]
    pub(crate) fn pop(&self) -> Option<*mut u8> {
        if self.free_head.get().is_null() {
            return self.pop_unlinked();
        }
        self.pop_listed()
    }

    /// [`Self::pop`] for the fast path: the head of the free list only, so
    /// it calls nothing and its caller needs no stack frame. `None`,
    /// changing nothing, also while the list is empty (then `pop` links
    /// unlinked objects).
    #[inline(always)]
    pub(crate) fn pop_listed(&self) -> Option<*mut u8> {
        let obj = self.free_head.get();
        if obj.is_null() {
            return None;
        }
        let idx = self.index_of(obj as usize).ok()?;
        let (w, bit) = word_bit(idx);
        let word = self.alloc_bits[w].get();
        // S3: a remote bit on a free object is a remote double free; once
        // the object is handed out it would pass for a valid free of the
        // new allocation, so `repair` must drop it first.
        if word & bit != 0 || self.remote_bits[w].load(Ordering::Relaxed) & bit != 0 {
            return None;
        }
        // SAFETY: obj is a free object of this slab (S1, checked above); its
        // first word holds the free-list link.
        let next = unsafe { obj.cast::<*mut u8>().read() };
        // The next pop reads `next`'s link, and the caller will write into
        // it: start the miss now, while it is many operations away.
        prefetch(next);
        self.free_head.set(next);
        self.alloc_bits[w].set(word | bit);
        self.nr_allocated.set(self.nr_allocated.get() + 1);
        Some(obj)
    }

    /// Links up to [`LINK_BATCH`] of the lowest unlinked objects into the
    /// free list and pops the first; only called with the list empty, when
    /// every clear alloc bit is an unlinked object (S1). One bitmap scan
    /// per batch; each link is written just before its object is handed
    /// out, when its cache line is needed anyway.
    #[inline(never)]
    fn pop_unlinked(&self) -> Option<*mut u8> {
        let unlinked = self.unlinked.get() as usize;
        if unlinked == 0 {
            return None;
        }
        let n = self.nr_objects();
        let mut batch = [0usize; LINK_BATCH];
        let mut got = 0;
        'scan: for w in 0..BITMAP_WORDS.min(n.div_ceil(64)) {
            for b in set_bits(!self.alloc_bits[w].get() & object_mask(n, w)) {
                batch[got] = w * 64 + b;
                got += 1;
                if got == LINK_BATCH || got == unlinked {
                    break 'scan;
                }
            }
        }
        if got == 0 {
            // Counted but not there (S1 broken): `repair` resets the count.
            return None;
        }
        let mut next = ptr::null_mut::<u8>();
        for &idx in batch[..got].iter().rev() {
            let obj = self.object_at(idx);
            // SAFETY: a free object of this slab (clear alloc bit, index
            // below nr_objects): the owner links it.
            unsafe { obj.cast::<*mut u8>().write(next) };
            next = obj;
        }
        self.free_head.set(next);
        self.unlinked.set((unlinked - got) as u16);
        self.pop_listed()
    }

    /// Fixes what made [`Self::pop`] refuse while [`Self::has_free`] holds
    /// (owner only) and says what it was; `None` if nothing was wrong.
    /// Each call removes one cause, so `pop` and `repair` in turn end.
    #[cold]
    pub(crate) fn repair(&self) -> Option<HeaderFault> {
        let obj = self.free_head.get();
        if obj.is_null() {
            if self.unlinked.get() == 0 {
                return None;
            }
            // `pop_unlinked` found none of the objects it counted.
            self.unlinked.set(0);
            return Some(HeaderFault::LostUnlinked);
        }
        if let Ok(idx) = self.index_of(obj as usize) {
            let (w, bit) = word_bit(idx);
            let word = self.alloc_bits[w].get();
            if word & bit == 0 {
                if self.remote_bits[w].load(Ordering::Relaxed) & bit == 0 {
                    return None;
                }
                // A stray remote free of this free object (S3). Its bit
                // keeps the word's epoch open (S4), so it stays: the object
                // is taken off the free list and counted allocated until the
                // bit is absorbed, which frees it again.
                // SAFETY: obj is a free object of this slab (S1): its first
                // word holds the free-list link.
                self.free_head.set(unsafe { obj.cast::<*mut u8>().read() });
                self.alloc_bits[w].set(word | bit);
                self.nr_allocated.set(self.nr_allocated.get() + 1);
                return Some(HeaderFault::StrayRemoteFree(obj));
            }
        }
        // A corrupted free list: every free object is now unlinked (S1).
        self.free_head.set(ptr::null_mut());
        self.unlinked
            .set((self.nr_objects() - self.nr_allocated()) as u16);
        Some(HeaderFault::CorruptFreeList)
    }

    /// Frees `obj` on the owner CPU.
    ///
    /// # Safety
    /// `obj` was validated by `index_of` as an object of this slab, the
    /// caller is the owner, and the object is no longer used by the caller.
    #[inline(always)]
    pub(crate) unsafe fn free_local(&self, obj: *mut u8) -> Result<(), FreeFault> {
        let idx = self.index_of(obj as usize)?;
        let (w, bit) = word_bit(idx);
        let word = self.alloc_bits[w].get();
        // A remote free of the same object still pending is caught later,
        // by `pop` or `absorb_remote` (S3): checking here would read the
        // remote bitmap's line on every local free.
        if word & bit == 0 {
            return Err(FreeFault::DoubleFree);
        }
        // Clears the bit, which is set: no mask to invert.
        self.alloc_bits[w].set(word ^ bit);
        // SAFETY: obj is an allocated object of this slab (bit was set) that
        // the caller gives back; its first word becomes the free-list link.
        unsafe { obj.cast::<*mut u8>().write(self.free_head.get()) };
        self.poison(obj);
        self.free_head.set(obj);
        self.nr_allocated.set(self.nr_allocated.get() - 1);
        Ok(())
    }

    /// Records a free of `obj` from a CPU other than the owner.
    /// Returns `Ok(true)` if the caller must push the slab on the owner's
    /// pending stack.
    ///
    /// One `fetch_or` publishes the free; only the free that opens its
    /// word's epoch touches the header again (S4), and while it does, its
    /// own object keeps the slab alive.
    #[inline]
    pub(crate) fn free_remote(&self, obj: *mut u8) -> Result<bool, FreeFault> {
        let idx = self.index_of(obj as usize)?;
        let (w, bit) = word_bit(idx);
        // Release: our last uses of the object happen before the owner's
        // Acquire swap that takes the bit.
        let prev = self.remote_bits[w].fetch_or(bit, Ordering::AcqRel);
        if prev & bit != 0 {
            // Nothing changed.
            return Err(FreeFault::DoubleFree);
        }
        if prev != 0 {
            // The word's epoch is open: another free is delivering it (S4).
            return Ok(false);
        }
        if self.single_word() {
            return Ok(true);
        }
        // AcqRel: the owner that takes this summary (Acquire) then sees
        // our bit when it swaps the word.
        let summary = self
            .remote_summary
            .fetch_or(PUSHED | 1 << w, Ordering::AcqRel);
        Ok(summary & PUSHED == 0)
    }

    /// Moves the remote frees the slab was pushed for to the local free
    /// list (owner only; the slab came off the pending stack, S4). Calls
    /// `on_double` with each object whose remote free was a double free
    /// (an S3 violation) and returns how many there were.
    pub(crate) fn absorb_remote(&self, mut on_double: impl FnMut(*mut u8)) -> usize {
        let words = if self.single_word() {
            1
        } else {
            // Acquire: see the bits of every word the summary names.
            self.remote_summary.swap(0, Ordering::AcqRel) & !PUSHED
        };
        let mut doubles = 0;
        for w in set_bits(words.into()) {
            let w = w % BITMAP_WORDS;
            let found = self.absorb_word(w);
            doubles += found.count_ones() as usize;
            for b in set_bits(found) {
                on_double(self.object_at(w * 64 + b));
            }
        }
        doubles
    }

    /// Takes remote word `w`, closing its epoch (S4), and frees its
    /// objects as unlinked (S1): bit operations only, no object is touched
    /// (except to poison it under debug checks). Returns the bits of the
    /// double frees found.
    fn absorb_word(&self, w: usize) -> u64 {
        // Acquire: the freeing CPUs' last uses of the objects happen before
        // we reuse them.
        let bits = self.remote_bits[w].swap(0, Ordering::AcqRel);
        let alloc = self.alloc_bits[w].get();
        let (freed, doubles) = (bits & alloc, bits & !alloc);
        self.alloc_bits[w].set(alloc & !freed);
        let n = freed.count_ones();
        self.nr_allocated.set(self.nr_allocated.get() - n);
        self.unlinked.set(self.unlinked.get() + n as u16);
        if debug::ENABLED {
            for b in set_bits(freed) {
                self.poison(self.object_at(w * 64 + b));
            }
        }
        doubles
    }

    /// Debug checks: poisons the free object `obj` past its link word.
    #[inline]
    fn poison(&self, obj: *mut u8) {
        if debug::ENABLED {
            // SAFETY: callers pass an object they just linked on the free
            // list: it belongs to the owner, who is the caller.
            unsafe { debug::fill(obj, debug::red_zone(0, self.object_bytes()), debug::POISON) };
        }
    }

    /// Debug checks: offset of the first byte of the just popped `obj` whose
    /// poison changed (owner only).
    #[inline]
    pub(crate) fn poison_mismatch(&self, obj: *mut u8) -> Option<usize> {
        // SAFETY: `obj` was just popped by the owner (the caller): nobody
        // else reads or writes it yet.
        unsafe { debug::scan(obj, debug::red_zone(0, self.object_bytes()), debug::POISON) }
    }

    /// Whether `obj` is an object of this slab that is allocated and has no
    /// pending remote free (owner only).
    #[inline]
    pub(crate) fn is_allocated(&self, obj: *mut u8) -> bool {
        self.index_of(obj as usize).is_ok_and(|idx| {
            let (w, bit) = word_bit(idx);
            self.alloc_bits[w].get() & bit != 0
                && self.remote_bits[w].load(Ordering::Relaxed) & bit == 0
        })
    }

    /// Whether the slab is on (or about to be pushed to) its owner's
    /// pending stack (S4): then it must not be released.
    #[inline]
    pub(crate) fn is_queued(&self) -> bool {
        self.remote_summary.load(Ordering::SeqCst) & PUSHED != 0
            || self
                .remote_bits
                .iter()
                .any(|word| word.load(Ordering::SeqCst) != 0)
    }

    /// Checks S1 and S2; panics on a violation.
    pub(crate) fn check(&self) {
        let mut free = 0;
        let mut seen = [0u64; BITMAP_WORDS];
        let mut cur = self.free_head.get();
        while !cur.is_null() {
            let idx = self
                .index_of(cur as usize)
                .expect("S1: free object outside the slab");
            assert_eq!(
                self.alloc_bits[idx / 64].get() & (1 << (idx % 64)),
                0,
                "S1: free object has its alloc bit"
            );
            assert_eq!(
                seen[idx / 64] & (1 << (idx % 64)),
                0,
                "S1: object twice on the free list"
            );
            seen[idx / 64] |= 1 << (idx % 64);
            free += 1;
            // SAFETY: cur is a free object of this slab (checked above).
            cur = unsafe { cur.cast::<*mut u8>().read() };
        }
        let allocated: u32 = self.alloc_bits.iter().map(|w| w.get().count_ones()).sum();
        assert_eq!(allocated as usize, self.nr_allocated(), "S2");
        assert_eq!(
            free + self.unlinked.get() as usize + self.nr_allocated(),
            self.nr_objects(),
            "S1: objects lost"
        );
    }
}

/// The bits of bitmap word `w` that stand for objects of a slab of
/// `nr_objects`.
#[inline]
fn object_mask(nr_objects: usize, w: usize) -> u64 {
    let n = nr_objects.saturating_sub(w * 64).min(64);
    if n == 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The positions of the set bits of `word`, lowest first.
#[inline]
fn set_bits(mut word: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        (word != 0).then(|| {
            let b = word.trailing_zeros() as usize;
            word &= word - 1;
            b
        })
    })
}

/// Bitmap word and bit of object `idx`. `idx < MAX_OBJECTS` (from
/// `index_of`, C3), so the `%` changes nothing but drops a bounds check.
#[inline(always)]
fn word_bit(idx: usize) -> (usize, u64) {
    ((idx / 64) % BITMAP_WORDS, 1u64 << (idx % 64))
}

/// Lock-free stack of slabs with remote frees, one per CPU slot.
/// Remote CPUs push (CAS); the owner takes the whole stack (swap), so there
/// is no ABA.
pub(crate) struct PendingSlabs {
    head: AtomicPtr<SlabHeader>,
}

impl PendingSlabs {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes `hdr`, which `free_remote` told us to queue (S4).
    pub(crate) fn push(&self, hdr: &SlabHeader) {
        let node = ptr::from_ref(hdr).cast_mut();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            hdr.pending_next.store(head, Ordering::Relaxed);
            // Release: the remote bit set before is visible to the owner
            // that takes this node.
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Whether nothing is pending (a cheap check before `take_all`).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Takes every pending slab; call `f` on each.
    pub(crate) fn take_all(&self, mut f: impl FnMut(&SlabHeader)) {
        let mut cur = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY: a queued slab is never released (S4), so its header is
            // live; the Acquire swap orders the pusher's writes before this.
            let hdr = unsafe { &*cur };
            cur = hdr.pending_next.load(Ordering::Relaxed);
            f(hdr);
        }
    }
}
