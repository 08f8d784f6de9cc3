//! The compile-time knobs of this build: `configs/default.toml` (or the file
//! named by `BUDDY_SLAB_CONFIG`), overridden by the platform's defaults under
//! `configs/platforms/` and by the kernel's axconfig tables `[buddy-slab]` and
//! `[buddy-slab-<table>]` (see build.rs), read by `axconfig_macros`.
#![deny(unsafe_code)]
#![allow(missing_docs, clippy::unreadable_literal)]

axconfig_macros::include_configs!(
    path_env = "BUDDY_SLAB_KNOBS",
    fallback = "configs/default.toml"
);

/// Number of buddy orders (`0..=MAX_ORDER`).
pub const NR_ORDERS: usize = MAX_ORDER + 1;

const _: () = {
    assert!(
        MAX_ORDER <= 31,
        "max-order must fit the 32-bit order bitmap"
    );
    assert!(MAX_SECTIONS >= 1 && MAX_SECTIONS <= 255);
    assert!(slab::MAX_SLAB_ORDER <= 6);
    assert!(slab::MAX_WASTE_FRACTION >= 1);
    assert!(cpu::PAGE_CACHE_ORDERS <= 8);
    assert!(cpu::PAGE_CACHE_BATCH >= 1 && cpu::PAGE_CACHE_HIGH >= 1);
    assert!(cpu::IDLE_BUDGET_FRACTION >= 1);
    assert!(cpu::DECAY_CALLS >= 1 && cpu::DECAY_CALLS <= u32::MAX as usize);
    assert!(cpu::HOST_MAX_CPUS >= 1);
    assert!(arceos::BOOT_MAPPED_BYTES.is_power_of_two());
};
