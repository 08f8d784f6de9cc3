//! A size-class table built for 16 KiB pages places objects beyond the end
//! of a 4 KiB page's slab: an allocator refuses it at compile time.
#![forbid(unsafe_code)]

use buddy_slab_allocator::SlabAllocator;

fn main() {
    let table = SlabAllocator::<16384>::default_table();
    let _slab = SlabAllocator::<4096>::with_table(table, 0);
}
