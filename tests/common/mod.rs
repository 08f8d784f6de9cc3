//! Shared test helpers: leaked, aligned arenas (so Miri tracks provenance).
#![allow(dead_code)]

use buddy_slab_allocator::sync::SpinLock;
use buddy_slab_allocator::{GlobalAllocator, LOWMEM_LIMIT, PhysAddr, Platform, VirtAddr};
use core::cell::Cell;
use core::ptr::NonNull;
use std::alloc::{Layout, alloc_zeroed};
use std::sync::OnceLock;

pub const PAGE: usize = 4096;

/// CPU slots of [`SwitchCpus`].
pub const CPUS: usize = 2;

std::thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// A platform whose current CPU each test thread sets itself
/// ([`on_cpu`]), so one thread can act as several CPUs (remote frees,
/// page caches of two CPUs) or as a CPU past the configured count. Sound
/// because every test using it drives its heap from one thread and
/// switches CPU only between calls.
pub struct SwitchCpus;

// SAFETY: see above: a CPU id of a given heap is only used by the one test
// thread that owns the heap, never while a pin is held across a switch.
unsafe impl Platform for SwitchCpus {
    type Lock = SpinLock;
    type Pin = ();
    fn pin() {}
    fn cpu_id(_: &()) -> Option<usize> {
        Some(CPU.with(Cell::get))
    }
    fn max_cpus() -> usize {
        CPUS
    }
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        PhysAddr::from_usize(vaddr.as_usize())
    }
}

/// Makes the calling thread CPU `cpu` of [`SwitchCpus`].
pub fn on_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu));
}

/// A leaked arena of `bytes` bytes aligned to `align`, starting `offset`
/// bytes past that alignment (to test unaligned region starts).
pub fn arena(bytes: usize, align: usize, offset: usize) -> &'static mut [u8] {
    let layout = Layout::from_size_align(bytes + offset, align).unwrap();
    // SAFETY: layout has a non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null());
    // SAFETY: p is a fresh allocation of bytes + offset bytes, leaked.
    unsafe { std::slice::from_raw_parts_mut(p.add(offset), bytes) }
}

/// Bytes moved per memory access by `fill` and `check`: one access per
/// chunk, not per byte, because Miri tracks borrow stacks and data-race
/// clocks per range of an allocation, and a byte-wise loop splits the
/// arena's ranges byte by byte (quadratic under Miri). The pattern is made
/// of words for the same reason: Miri interprets every instruction.
const CHUNK_WORDS: usize = 32;

/// The pattern of `tag` for the chunk starting at word `first`: word `k`
/// of a block is `(tag + k) * odd constant`, distinct per word and tag.
fn pattern(tag: u64, first: usize) -> [u64; CHUNK_WORDS] {
    core::array::from_fn(|k| {
        tag.wrapping_add((first + k) as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

/// The first `n` bytes of `words`.
fn bytes(words: &[u64; CHUNK_WORDS], n: usize) -> &[u8] {
    // SAFETY: n ≤ the array's size in bytes; any u64 is valid bytes.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), n) }
}

/// Fills `len` bytes at `p` with a pattern derived from `tag`.
pub fn fill(p: *mut u8, len: usize, tag: u64) {
    for start in (0..len).step_by(CHUNK_WORDS * 8) {
        let n = (CHUNK_WORDS * 8).min(len - start);
        let want = pattern(tag, start / 8);
        // SAFETY: caller passes a live block of len bytes.
        unsafe {
            p.add(start)
                .copy_from_nonoverlapping(bytes(&want, n).as_ptr(), n)
        };
    }
}

/// Checks the pattern written by `fill`.
pub fn check(p: *const u8, len: usize, tag: u64) {
    for start in (0..len).step_by(CHUNK_WORDS * 8) {
        let n = (CHUNK_WORDS * 8).min(len - start);
        let want = pattern(tag, start / 8);
        let mut got = [0u64; CHUNK_WORDS];
        // SAFETY: caller passes a live block of len bytes; `got` has room
        // for n bytes.
        unsafe {
            p.add(start)
                .copy_to_nonoverlapping(got.as_mut_ptr().cast::<u8>(), n)
        };
        let (got, want) = (bytes(&got, n), bytes(&want, n));
        if got != want {
            let i = got.iter().zip(want).position(|(g, w)| g != w).unwrap();
            panic!(
                "block {p:p} byte {} of {len} corrupted (tag {tag})",
                start + i
            );
        }
    }
}

/// Simple deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A block pointer handed to another thread (the allocation moves with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sent(pub NonNull<u8>);

// SAFETY: the pointer is only an allocation being handed over; the
// receiving thread becomes its only user.
unsafe impl Send for Sent {}

/// Bytes of [`low_half_heap`]'s arena.
pub const LOW_HALF_ARENA: usize = if cfg!(miri) { 2 << 20 } else { 8 << 20 };
static LOW_HALF_BASE: OnceLock<usize> = OnceLock::new();

/// One CPU (the test's thread), whose arena's first half maps physically
/// below the lowmem limit and the second half above it.
pub struct LowHalf;

// SAFETY: one heap per test binary ([`low_half_heap`] sets the base once),
// driven by one test thread, so CPU 0's slot has one user.
unsafe impl Platform for LowHalf {
    type Lock = SpinLock;
    type Pin = ();
    fn pin() {}
    fn cpu_id(_: &()) -> Option<usize> {
        Some(0)
    }
    fn max_cpus() -> usize {
        1
    }
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        let offset = vaddr.as_usize() - LOW_HALF_BASE.get().unwrap();
        PhysAddr::from_usize(LOWMEM_LIMIT.as_usize() - LOW_HALF_ARENA / 2 + offset)
    }
}

/// The one [`LowHalf`] heap of a test binary, over a leaked arena.
pub fn low_half_heap() -> Box<GlobalAllocator<PAGE, LowHalf>> {
    let region = arena(LOW_HALF_ARENA, PAGE, 0);
    LOW_HALF_BASE
        .set(region.as_ptr().addr())
        .expect("one LowHalf heap per test binary");
    let heap = Box::new(GlobalAllocator::<PAGE, LowHalf>::new());
    // SAFETY: a leaked arena, handed over for good; the boxed allocator is
    // not moved.
    unsafe { heap.init(region).unwrap() };
    heap
}
