//! buddy-slab-allocator (skeleton; the core lands in the next commits).
#![no_std]
