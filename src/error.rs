//! Typed errors of every layer.
#![deny(unsafe_code)]

use core::fmt;

/// Why an allocator call failed.
///
/// The first four variants match ArceOS `axallocator::AllocError`, so the
/// binding maps them one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllocError {
    /// A parameter is malformed: zero size, size or alignment out of range,
    /// an address that is not page aligned, a region too small to manage.
    InvalidParam,
    /// A region overlaps memory that is already managed.
    MemoryOverlap,
    /// No free block large enough (after caches were reclaimed).
    NoMemory,
    /// The address was not handed out by this allocator in the form named:
    /// a double free, a foreign pointer, or a layout / page count that does
    /// not match the allocation.
    NotAllocated,
    /// The fixed table of managed sections is full.
    TooManyRegions,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidParam => "invalid parameter",
            Self::MemoryOverlap => "region overlaps managed memory",
            Self::NoMemory => "out of memory",
            Self::NotAllocated => "address was not allocated in this form (double or foreign free)",
            Self::TooManyRegions => "too many managed regions",
        })
    }
}

impl core::error::Error for AllocError {}

/// Shorthand used across the crate.
pub type AllocResult<T = ()> = Result<T, AllocError>;
