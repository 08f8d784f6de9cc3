//! The configuration file reaches the build: `make config-test` builds this
//! test twice, with configs/default.toml (48 classes) and with
//! BUDDY_SLAB_CONFIG=configs/seed-classes.toml and
//! BSA_EXPECT_CLASSES=9, and each build must see its own file (its size
//! classes and its slab waste fraction); a third build adds a kernel
//! axconfig with tables of knobs (`kernel_config_tables_override_the_knobs`).

use buddy_slab_allocator::SlabAllocator;
use core::alloc::Layout;

#[test]
fn size_classes_come_from_the_selected_file() {
    let expect: usize = option_env!("BSA_EXPECT_CLASSES").map_or(48, |v| v.parse().unwrap());
    let table = SlabAllocator::<4096>::default_table();
    assert_eq!(table.len(), expect);
    // A 100-byte request lands in the first class ≥ 100 of that file.
    let class = table
        .class_for(Layout::from_size_align(100, 8).unwrap())
        .unwrap();
    assert_eq!(
        table.object_bytes(class),
        if expect == 9 { 128 } else { 104 }
    );
    // The seed set stays selectable at run time whatever the file says.
    assert_eq!(SlabAllocator::<4096>::seed_table().len(), 9);
}

#[test]
fn slab_sizes_follow_the_selected_waste_fraction() {
    // 64-byte objects: 2 pages (124 objects, 256 B of waste = 1/32) under
    // default.toml's max-waste-fraction 32, 4 pages (252 objects, 1/64)
    // under seed-classes.toml's 64 (which the kernel config sets back to 32).
    let seed_file = option_env!("BSA_EXPECT_CLASSES") == Some("9")
        && option_env!("BSA_EXPECT_KERNEL").is_none();
    let table = SlabAllocator::<4096>::default_table();
    let class = table
        .class_for(Layout::from_size_align(64, 8).unwrap())
        .unwrap();
    let (order, objects) = if seed_file { (2, 252) } else { (1, 124) };
    assert_eq!(table.slab_order(class), order);
    assert_eq!(table.objects_per_slab(class), objects);
}

/// Under `BSA_EXPECT_KERNEL`, built with AX_CONFIG_PATH =
/// tests/config-layers/kernel.axconfig.toml over seed-classes.toml: the
/// platform's file, the crate file and the kernel's tables each override
/// their keys, in that order, and every other knob keeps its default.
#[test]
fn kernel_config_tables_override_the_knobs() {
    use buddy_slab_allocator::config;
    if option_env!("BSA_EXPECT_KERNEL").is_none() {
        assert_eq!(config::arceos::BOOT_MAPPED_BYTES, 1 << 30);
        assert_eq!(config::cpu::PAGE_CACHE_HIGH, 64);
        assert_eq!(config::MAX_SECTIONS, 32);
        return;
    }
    // configs/platforms/x86-pc.toml
    assert_eq!(config::arceos::BOOT_MAPPED_BYTES, 512 << 30);
    // The kernel's tables, the last one with an untyped value.
    assert_eq!(config::MAX_SECTIONS, 16);
    assert_eq!(config::slab::MAX_WASTE_FRACTION, 32);
    assert_eq!(config::cpu::PAGE_CACHE_HIGH, 32);
    // BUDDY_SLAB_CONFIG where the kernel says nothing, defaults elsewhere.
    assert_eq!(config::slab::SIZE_CLASSES.len(), 9);
    assert_eq!(config::cpu::PAGE_CACHE_BATCH, 16);
}
