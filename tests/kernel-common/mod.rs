//! The in-kernel suite's files shared by both ArceOS lines' apps,
//! tests/kernel (0.3 line) and tests/kernel-tgoskits: each includes this
//! directory as `mod common` and supplies, as `crate::line`, what differs
//! between the lines (crate names, how the heap's usage is counted, the
//! diagnostic prefix). Tests only one line has stay in that app's source.

// First: its `ensure!` serves the modules after it, and the app's own.
#[macro_use]
pub mod util;
#[cfg(feature = "bench")]
pub mod bench;
pub mod heap_tests;
pub mod page_tests;
