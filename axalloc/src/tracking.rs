//! Tracking of memory usage, enabled with the `tracking` feature.
//!
//! While tracking is enabled, every allocation made through
//! [`GlobalAlloc`](core::alloc::GlobalAlloc) (the Rust heap of the kernel)
//! gets a record — its layout, a backtrace and a generation number — that
//! lives until the block is freed. The functions and [`AllocationInfo`]
//! are those of the published crate. This file serves both ArceOS lines
//! (axalloc 0.3 and, through `#[path]`, the tgoskits line's ax-alloc 0.9);
//! each crate's `tracking_line` module supplies what differs: the IRQ and
//! preemption guard, the bucket lock and the per-CPU flag.
//!
//! # Records without recursion
//!
//! - A record is made *after* the backend has served the allocation and
//!   before the pointer is returned, and dropped *before* the backend takes
//!   the block back: no record is made, and no tracking lock taken, inside
//!   the allocator's critical sections, and no record can name a block
//!   that another CPU is already reusing.
//! - While a record is made or dropped (or the records are visited), a
//!   per-CPU flag, `IN_TRACKING`, marks the CPU as inside tracking, with
//!   IRQs and preemption off so that no other context on the CPU can see
//!   it. Allocations and frees made meanwhile — a backtrace's frames, a
//!   visitor's own work — are served untracked: tracking never recurses.
//! - A record's memory comes from the same allocator through its untracked
//!   [`GlobalAllocator::alloc`], before any tracking lock is taken; it
//!   counts as [`UsageKind::RustHeap`](crate::UsageKind) usage, as the
//!   published crate's `BTreeMap` nodes do. If there is no memory for it,
//!   the allocation stands and goes unrecorded.
//! - Records are spread over `NR_BUCKETS` (1024) chains by address, each with
//!   its own lock, held only to link or unlink a record.
//!
//! The published crate instead holds one IRQ-safe lock over the backend
//! call, the backtrace capture and a `BTreeMap` insert that allocates
//! under that lock, serialising every tracked allocation of every CPU, and
//! leaves the record of a block freed while tracking is disabled (or
//! panics in [`allocations_in`] then). Here a record goes when its block
//! is freed, enabled or not, and a free whose layout is not the record's
//! (a bad free) leaves the record in place.
//!
//! # Lock order
//!
//! 1. the CPU inside tracking (`InTracking`: IRQs and preemption off, by
//!    the line's `IrqGuard`);
//! 2. one bucket lock (the line's `BucketLock`, taken without touching IRQs:
//!    they are off already);
//! 3. the backend's locks, only from an [`allocations_in`] visitor.
//!
//! # Limits
//!
//! Memory a visitor frees while the records are visited keeps its record
//! (the visitor runs inside tracking); a later allocation at the same
//! address replaces it.

use core::alloc::Layout;
use core::ops::Range;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use axbacktrace::Backtrace;

use crate::GlobalAllocator;
use crate::tracking_line::{
    BucketGuard, BucketLock, CRATE_NAME, IrqGuard, lock_bucket, swap_in_tracking,
};

/// Whether new allocations are recorded.
static TRACKING_ENABLED: AtomicBool = AtomicBool::new(false);

/// The generation the next record gets.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Records in the chains. Frees look for a record only while it is not
/// zero, tracking enabled or not. A free of a recorded block sees it
/// non-zero: the record was counted before the block was handed out, and
/// the free follows that (happens-before through whoever passed the
/// pointer on), so `Relaxed` is enough.
static NR_RECORDS: AtomicUsize = AtomicUsize::new(0);

/// Metadata for each allocation made by the global allocator.
#[derive(Debug)]
pub struct AllocationInfo {
    /// Layout of the allocation.
    pub layout: Layout,
    /// Backtrace at the time of allocation.
    pub backtrace: Backtrace,
    /// Generation at which the allocation was made.
    pub generation: u64,
}

/// Enables allocation tracking.
pub fn enable_tracking() {
    TRACKING_ENABLED.store(true, Ordering::SeqCst);
}

/// Disables allocation tracking. Records already made stay until their
/// blocks are freed.
pub fn disable_tracking() {
    TRACKING_ENABLED.store(false, Ordering::SeqCst);
}

/// Returns whether allocation tracking is enabled.
pub fn tracking_enabled() -> bool {
    TRACKING_ENABLED.load(Ordering::SeqCst)
}

/// Returns the current generation of the global allocator.
///
/// The generation is incremented every time a new allocation is recorded.
/// It can be utilized to track the changes in the allocation state over
/// time.
///
/// See [`allocations_in`].
pub fn current_generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

/// Visits all live recorded allocations whose generation lies in `range`
/// (in no particular order).
///
/// The visitor runs with IRQs and preemption off and one bucket lock held,
/// on a CPU inside tracking: it may allocate and free (untracked), but a
/// call to `allocations_in` from inside a visitor visits nothing.
pub fn allocations_in(range: Range<u64>, mut visitor: impl FnMut(&AllocationInfo)) {
    let Some(inside) = InTracking::enter() else {
        warn!(
            "{CRATE_NAME}: allocations_in called inside tracking (from a visitor?): nothing visited"
        );
        return;
    };
    for bucket in &BUCKETS {
        let chain = inside.lock(bucket);
        let mut next = chain.0;
        while let Some(node) = next {
            // SAFETY: a node of a chain whose lock we hold: a live `Node`
            // that only this chain owns (C1), not unlinked while we hold
            // the lock.
            let node = unsafe { node.as_ref() };
            if range.contains(&node.info.generation) {
                visitor(&node.info);
            }
            next = node.next;
        }
    }
}

/// Records `ptr`, just allocated from `heap` with `layout` through
/// `GlobalAlloc` and not handed out yet.
pub(crate) fn on_alloc(heap: &GlobalAllocator, ptr: NonNull<u8>, layout: Layout) {
    if !tracking_enabled() {
        return;
    }
    // Inside tracking already: an allocation made for a record, or by a
    // visitor. Untracked.
    let Some(inside) = InTracking::enter() else {
        return;
    };
    let generation = GENERATION.fetch_add(1, Ordering::SeqCst);
    let info = AllocationInfo {
        layout,
        // May allocate (axbacktrace's `dwarf` feature): untracked, above.
        backtrace: Backtrace::capture(),
        generation,
    };
    let Ok(memory) = heap.alloc(Layout::new::<Node>()) else {
        // No memory for the record: the allocation stands, unrecorded.
        return;
    };
    let node = memory.cast::<Node>();
    let addr = ptr.as_ptr() as usize;
    let stale = {
        let mut chain = inside.lock(bucket_of(addr));
        let stale = chain.unlink(addr, None);
        // SAFETY: fresh memory from `heap` with `Node`'s layout; it becomes
        // a node owned by this chain (C1).
        unsafe {
            node.write(Node {
                addr,
                info,
                next: chain.0,
            })
        };
        chain.0 = Some(node);
        stale
    };
    match stale {
        // SAFETY: unlinked under the lock: ours alone; it names `addr`,
        // which `heap` manages, so `heap` allocated it (C2).
        Some(stale) => unsafe { free_node(&inside, heap, stale) },
        None => {
            NR_RECORDS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Drops the record of `ptr`, which is about to be freed to `heap` with
/// `layout` (before the backend has it back).
pub(crate) fn on_dealloc(heap: &GlobalAllocator, ptr: NonNull<u8>, layout: Layout) {
    if NR_RECORDS.load(Ordering::Relaxed) == 0 {
        return;
    }
    // Inside tracking: a record's own memory, or a visitor's free.
    let Some(inside) = InTracking::enter() else {
        return;
    };
    let addr = ptr.as_ptr() as usize;
    let node = inside.lock(bucket_of(addr)).unlink(addr, Some(layout));
    if let Some(node) = node {
        NR_RECORDS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: unlinked under the lock: ours alone; it names `addr`,
        // which `heap` manages, so `heap` allocated it (C2).
        unsafe { free_node(&inside, heap, node) };
    }
}

/// Drops a record and gives its memory back to `heap`. Its backtrace's
/// frames are freed inside tracking (`_inside`), so untracked.
///
/// # Safety
///
/// - `node` is a live `Node` reachable from no chain, and nothing else
///   refers to it;
/// - `heap` allocated its memory (with `Node`'s layout).
unsafe fn free_node(_inside: &InTracking, heap: &GlobalAllocator, node: NonNull<Node>) {
    // SAFETY: a live, unreferenced `Node` (caller contract).
    unsafe { node.drop_in_place() };
    heap.dealloc(node.cast(), Layout::new::<Node>());
}

/// This CPU inside tracking: IRQs and preemption off, the line's per-CPU
/// flag set. At most one exists per CPU at a time (`enter` refuses a
/// second).
struct InTracking {
    /// Keeps IRQs and preemption off; released after `drop` clears the flag.
    _irq: IrqGuard,
}

impl InTracking {
    /// Enters tracking on this CPU; `None` if it is inside already (or the
    /// line cannot tell yet: a CPU without its per-CPU area).
    fn enter() -> Option<Self> {
        let irq = IrqGuard::new();
        // SAFETY: IRQs and preemption are off until `irq` drops.
        if !unsafe { swap_in_tracking(true) } {
            // Not `then_some(Self { .. })`: a refused `Self` would still be
            // built, and its drop would clear the flag of the CPU's outer
            // `InTracking`.
            return None;
        }
        Some(Self { _irq: irq })
    }

    /// Locks `bucket` without touching IRQs or preemption, which are off
    /// while `self` lives.
    fn lock<'a>(&'a self, bucket: &'a BucketLock<Chain>) -> BucketGuard<'a, Chain> {
        // SAFETY: IRQs and preemption are off while `self` lives, and the
        // guard borrows `self`, so no context on this CPU takes a bucket
        // lock until it drops; no bucket lock is taken inside another (lock
        // order above).
        unsafe { lock_bucket(bucket) }
    }
}

impl Drop for InTracking {
    fn drop(&mut self) {
        // SAFETY: IRQs and preemption are still off (`_irq` drops after
        // this).
        unsafe { swap_in_tracking(false) };
    }
}

/// A recorded allocation.
struct Node {
    /// The address of the block.
    addr: usize,
    info: AllocationInfo,
    /// The next node of the chain.
    next: Option<NonNull<Node>>,
}

/// The records of one bucket, a singly linked list through `Node::next`.
///
/// - C1: every node reachable from the chain is a live `Node`, owned by the
///   chain alone (no other chain or reference reaches it), and is touched
///   only under the bucket's lock.
/// - C2: a node's memory comes from the allocator that manages its `addr`
///   (allocators manage disjoint memory, so that is the allocator that
///   frees the block).
/// - C3: no two nodes of a chain have the same `addr`.
struct Chain(Option<NonNull<Node>>);

// SAFETY: the chain owns its nodes (C1), so moving it to another CPU moves
// them with it; they are only touched under the bucket's lock.
unsafe impl Send for Chain {}

impl Chain {
    /// Unlinks and returns the node of `addr`, if there is one and, when
    /// `layout` is given, it records that layout.
    fn unlink(&mut self, addr: usize, layout: Option<Layout>) -> Option<NonNull<Node>> {
        let mut link = &mut self.0;
        while let Some(mut node) = *link {
            // SAFETY: a node of this chain, which we hold locked (`&mut
            // self`): a live `Node` no one else refers to (C1).
            let current = unsafe { node.as_mut() };
            if current.addr == addr {
                if layout.is_some_and(|layout| layout != current.info.layout) {
                    return None;
                }
                *link = current.next;
                return Some(node);
            }
            link = &mut current.next;
        }
        None
    }
}

/// Number of record chains (a power of two). 1024 chains keep chains short
/// for tens of thousands of live records, in 16 KiB of static memory.
const NR_BUCKETS: usize = 1024;

static BUCKETS: [BucketLock<Chain>; NR_BUCKETS] =
    [const { BucketLock::new(Chain(None)) }; NR_BUCKETS];

/// The chain of `addr`: Fibonacci hashing of the address without its low
/// four bits (allocations are at least 16-byte apart in practice).
fn bucket_of(addr: usize) -> &'static BucketLock<Chain> {
    const SHIFT: u32 = u64::BITS - NR_BUCKETS.trailing_zeros();
    let hash = ((addr >> 4) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> SHIFT;
    &BUCKETS[hash as usize]
}
