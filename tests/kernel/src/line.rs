//! What the files shared with tests/kernel-tgoskits (tests/kernel-common/)
//! take from the ArceOS line: here the 0.3 line (crates axalloc, axhal).

pub use axalloc::{GlobalPage, UsageKind, Usages, global_allocator};
pub use std::os::arceos::modules::axhal::percpu::this_cpu_id;
// Only the benchmark reads the clock.
#[cfg(feature = "bench")]
pub use std::os::arceos::modules::axhal::time::monotonic_time_nanos;

/// Prefix of a diagnostic line: KTAP's, as this suite reports in KTAP.
pub const DIAG: &str = "# ";

/// The usage kinds `heap_bytes` adds up, as the failure messages name them.
pub const HEAP_KINDS: &str = "RustHeap";

/// Heap bytes live: the Rust heap, which task stacks come from on this line.
pub fn heap_bytes(u: &Usages) -> usize {
    u.get(UsageKind::RustHeap)
}
