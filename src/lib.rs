#![doc = include_str!("../README.md")]
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(feature = "arceos")]
pub mod arceos;
pub mod buddy;
mod config;
mod cpu;
mod error;
mod global;
pub mod platform;
pub mod slab;
mod stats;
pub mod sync;

pub use buddy::{BuddyAllocator, ManagedSection};
pub use error::{AllocError, AllocResult};
pub use global::{CpuStats, DefaultPlatform, GlobalAllocator, GlobalStats};
pub use platform::Platform;
pub use slab::{
    ClassStats, SizeClass, SizeClassTable, SlabAllocResult, SlabAllocator, SlabDeallocResult,
    SlabStats,
};
pub use stats::Counter;
