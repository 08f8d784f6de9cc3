//! What the files shared with tests/kernel (tests/kernel-common/) take from
//! the ArceOS line: here the tgoskits line (crates ax-alloc, ax-hal).

pub use ax_alloc::{GlobalPage, UsageKind, Usages, global_allocator};
pub use std::os::arceos::modules::ax_hal::percpu::this_cpu_id;
// Only the benchmark reads the clock.
#[cfg(feature = "bench")]
pub use std::os::arceos::modules::ax_hal::time::monotonic_time_nanos;

/// Prefix of a diagnostic line: an indent under `test NAME ... ok`.
pub const DIAG: &str = "    ";

/// The usage kinds `heap_bytes` adds up, as the failure messages name them.
pub const HEAP_KINDS: &str = "RustHeap + TaskStack";

/// Heap bytes live: the Rust heap plus task stacks, which this line takes
/// as `TaskStack` pages when they have guard pages.
pub fn heap_bytes(u: &Usages) -> usize {
    u.get(UsageKind::RustHeap) + u.get(UsageKind::TaskStack)
}
