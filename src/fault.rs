//! Faults as values: what a bad free or a corrupted structure looks like,
//! recorded where it is found and reported once nothing is held.
//!
//! No layer below the facade logs. A CPU slot, a lock or a half-updated
//! list may be held where a fault is found, and a logger that allocates
//! would re-enter the heap there. So buddy/, slab/ and cpu/ record a
//! [`Fault`] in the owner's [`FaultLog`] (or return it), and the facade
//! takes the records out while it still owns the slot and reports them
//! after the pin and every lock are released.
#![deny(unsafe_code)]

use core::fmt;

/// Records a slot keeps between two reports; more are counted, not kept.
pub const FAULT_LOG_LEN: usize = 4;

/// Why a free was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeRejection {
    /// The address is not in managed memory.
    NotManaged,
    /// Not the start of a live allocation of the kind the call names (a
    /// run freed as an object, an address inside a run, a free page).
    NotAllocated,
    /// The layout names another size class than the object's slab.
    WrongClass,
    /// Inside a slab but not at an object boundary, or a reserved slot.
    NotAnObject,
    /// The object is already free (a double free), found locally.
    DoubleFree,
    /// The object is already free or already being freed by another CPU
    /// (a double free), found remotely.
    RemoteDoubleFree,
    /// The page count does not match the run.
    WrongPageCount,
    /// The allocator has not been initialised.
    Uninitialised,
}

impl FreeRejection {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotManaged => "not in managed memory",
            Self::NotAllocated => "not the start of a live allocation of this kind",
            Self::WrongClass => "layout of another size class",
            Self::NotAnObject => "not an object boundary of its slab",
            Self::DoubleFree => "double free",
            Self::RemoteDoubleFree => "double free (remote)",
            Self::WrongPageCount => "page count does not match the run",
            Self::Uninitialised => "allocator not initialised",
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A free was refused; nothing changed.
    RejectedFree(FreeRejection),
    /// A remote free of an object that was already free, found when its
    /// owner absorbed it or handed the object out again (the stray remote
    /// bit is dropped).
    StrayRemoteFree,
    /// A slab's free list named something that is not a free object of
    /// the slab (a write after free): the list was dropped and its objects
    /// are found through their alloc bits.
    CorruptFreeList,
    /// A slab counted free objects it did not have (its count was reset).
    LostUnlinked,
    /// A page-cache list named a block that is not one of this CPU's cached
    /// blocks (page metadata overwritten): the list of `order` was dropped
    /// with `blocks` blocks, which leak rather than be handed out twice.
    PageCacheDropped {
        /// Order of the list.
        order: u8,
        /// Blocks it held.
        blocks: u32,
    },
    /// The buddy refused a block the facade handed back (tag mismatch).
    BuddyRefused,
    /// Debug checks: a free object's poison changed at `offset` (a write
    /// after free).
    UseAfterFree {
        /// First changed byte.
        offset: u32,
    },
    /// Debug checks: the red zone past the requested size changed at
    /// `offset` (an overflow, or a free with a smaller layout).
    RedZone {
        /// First changed byte.
        offset: u32,
    },
    /// A lowmem section mapped a block above the lowmem limit; the block
    /// was not handed out.
    LowmemAboveLimit,
    /// A CPU slot was entered while in use on the same CPU (an interrupt or
    /// platform code re-entered the allocator); the shared slot served it.
    Reentered,
}

/// One fault: what, where, and who found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The address involved (object, run, slab or block).
    pub addr: usize,
    /// The size involved: a layout's bytes, a page count, an object size;
    /// 0 when none applies.
    pub size: usize,
    /// The CPU slot that found it.
    pub cpu: u32,
}

impl Fault {
    /// A fault of `kind` at `addr` involving `size`, found by slot `cpu`.
    pub const fn new(kind: FaultKind, addr: usize, size: usize, cpu: usize) -> Self {
        Self {
            kind,
            addr,
            size,
            cpu: cpu as u32,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (addr, size, cpu) = (self.addr, self.size, self.cpu);
        match self.kind {
            FaultKind::RejectedFree(why) => write!(
                f,
                "free of {addr:#x} ({size} bytes or pages) rejected on cpu {cpu}: {}",
                why.as_str()
            ),
            FaultKind::StrayRemoteFree => write!(
                f,
                "double free of object {addr:#x} ({size} B class) from another cpu, \
                 found by its owner, cpu {cpu}"
            ),
            FaultKind::CorruptFreeList => write!(
                f,
                "free list of slab {addr:#x} ({size} B objects) corrupted (write after free?), \
                 found on cpu {cpu}; its objects are found through their alloc bits"
            ),
            FaultKind::LostUnlinked => write!(
                f,
                "slab {addr:#x} ({size} B objects) counted free objects it did not have (cpu {cpu})"
            ),
            FaultKind::PageCacheDropped { order, blocks } => write!(
                f,
                "page cache of cpu {cpu}, order {order}, names {addr:#x}, not one of its cached \
                 blocks: list of {blocks} blocks dropped (leaked, not reused)"
            ),
            FaultKind::BuddyRefused => write!(
                f,
                "the buddy refused block {addr:#x} ({size} pages) from cpu {cpu}: not in the \
                 state it was handed over in"
            ),
            FaultKind::UseAfterFree { offset } => write!(
                f,
                "debug: use after free at {addr:#x}+{offset} ({size} B object), found on cpu {cpu}"
            ),
            FaultKind::RedZone { offset } => write!(
                f,
                "debug: red zone overwritten at {addr:#x}+{offset} ({size} B object, overflow or \
                 wrong layout), found on cpu {cpu}"
            ),
            FaultKind::LowmemAboveLimit => write!(
                f,
                "lowmem block {addr:#x} ({size} pages) maps above the lowmem limit; not handed out"
            ),
            FaultKind::Reentered => write!(
                f,
                "cpu slot {cpu} re-entered while in use; the shared slot served the call"
            ),
        }
    }
}

/// A slot's faults since its last report: kept in order, at most
/// [`FAULT_LOG_LEN`]; later ones are only counted in `dropped`.
///
/// Owner-only, like the rest of the slot's local state.
#[derive(Debug, Clone, Copy)]
pub struct FaultLog {
    records: [Fault; FAULT_LOG_LEN],
    len: usize,
    dropped: usize,
}

const NO_FAULT: Fault = Fault::new(FaultKind::Reentered, 0, 0, 0);

impl Default for FaultLog {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultLog {
    /// An empty log.
    pub const fn new() -> Self {
        Self {
            records: [NO_FAULT; FAULT_LOG_LEN],
            len: 0,
            dropped: 0,
        }
    }

    /// Records `fault` (or counts it, when full).
    #[cold]
    pub fn push(&mut self, fault: Fault) {
        if self.len < FAULT_LOG_LEN {
            self.records[self.len] = fault;
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// Whether nothing is recorded (`dropped` grows only once the records
    /// are full, so `len` alone says it).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The recorded faults, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Fault> {
        self.records[..self.len].iter()
    }

    /// Faults found after the log was full.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Adds what `other` recorded (and dropped) to this log.
    pub fn append(&mut self, other: &FaultLog) {
        for fault in other.iter() {
            self.push(*fault);
        }
        self.dropped += other.dropped;
    }

    /// Takes everything recorded, leaving the log empty.
    #[inline]
    pub fn take(&mut self) -> Self {
        core::mem::take(self)
    }

    /// Logs every record (`log::error!`) and the count of dropped ones.
    ///
    /// Call only with no CPU pinned and no allocator lock held: a logger
    /// may allocate.
    #[cold]
    pub fn report(&self) {
        for fault in self.iter() {
            log::error!("buddy-slab: {fault}");
        }
        if self.dropped > 0 {
            log::error!(
                "buddy-slab: {} more faults found before this report",
                self.dropped
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_records_and_counts_the_rest() {
        let mut log = FaultLog::new();
        assert!(log.is_empty());
        for i in 0..FAULT_LOG_LEN + 3 {
            log.push(Fault::new(FaultKind::StrayRemoteFree, i, 8, 1));
        }
        let taken = log.take();
        assert!(log.is_empty());
        assert_eq!(taken.iter().count(), FAULT_LOG_LEN);
        assert_eq!(taken.iter().next().unwrap().addr, 0);
        assert_eq!(taken.dropped(), 3);
        assert!(format!("{}", taken.iter().next().unwrap()).contains("double free"));
    }
}
