#![doc = include_str!("../README.md")]
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(all(feature = "arceos", not(loom)))]
pub mod arceos;
#[cfg(all(feature = "tgoskits", not(loom)))]
pub mod tgoskits;
// Under `cfg(loom)` only the lock-free remote-free path is compiled (its
// atomics come from loom, which has no `const` constructors): the slab
// header, the pending stack, page metadata, the release handshake, the
// idle hand-off and the counters, driven by tests/loom.rs through
// `loom_model`.
#[cfg(not(loom))]
pub mod buddy;
#[cfg(loom)]
mod buddy {
    #[path = "page_meta.rs"]
    pub(crate) mod page_meta;
}
pub mod config;
#[cfg(not(loom))]
mod cpu;
#[cfg(loom)]
mod cpu {
    #[path = "handoff.rs"]
    pub(crate) mod handoff;
    #[path = "hazard.rs"]
    pub(crate) mod hazard;
}
pub mod debug;
mod error;
pub mod fault;
#[cfg(not(loom))]
mod global;
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_model;
#[cfg(not(loom))]
pub mod platform;
#[cfg(not(loom))]
pub mod slab;
#[cfg(loom)]
mod slab {
    #[path = "header.rs"]
    pub(crate) mod header;
    #[path = "size_class.rs"]
    pub(crate) mod size_class;
}
mod stats;
pub mod sync;

#[cfg(not(loom))]
pub use buddy::{BuddyAllocator, LOWMEM_LIMIT, ManagedSection};
pub use error::{AllocError, AllocResult};
// ArceOS's address types (memory_addr 0.4, the version axhal 0.3 uses), for
// the typed page API and `Platform::virt_to_phys`.
pub use fault::{Fault, FaultKind, FaultLog, FreeRejection};
#[cfg(not(loom))]
pub use global::{CpuStats, DefaultPlatform, GlobalAllocator, GlobalStats};
pub use memory_addr::{self, MemoryAddr, PhysAddr, VirtAddr};
#[cfg(not(loom))]
pub use platform::Platform;
#[cfg(not(loom))]
pub use slab::{
    ClassStats, SizeClass, SizeClassTable, SlabAllocResult, SlabAllocator, SlabDeallocResult,
    SlabStats,
};
pub use stats::Counter;
