//! Memory test in the spirit of arceos-apps' `rust/memtest`, run against
//! both kernel heaps (the stock TLSF one and this repository's buddy-slab).
//!
//! Vec growth and sorting, a BTreeMap with String keys, String churn across
//! the slab/page boundary, and boxes of mixed sizes freed in random order.
//! The random numbers come from a fixed-seed generator, so every figure
//! printed here (sums, medians, digests, counts) is the same on every arch
//! and backend, and `expect_*.out` pins them: a heap that corrupts, loses
//! or duplicates memory changes a figure or fails an assertion (a panic,
//! which ends the run without `Memory tests run OK!`). Nothing printed
//! names the backend: the expect files hold for both.

#![no_std]
#![no_main]

#[macro_use]
extern crate axstd as std;
extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use axalloc::{UsageKind, global_allocator};

/// xorshift64* (as in tests/kernel/src/util.rs): deterministic per seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// FNV-1a, continued from `hash` over `bytes`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// As memtest's `test_vec`: 3M random `u32`s, here grown by `push` (a chain
/// of reallocations up to 12 MiB) instead of `with_capacity`, then sorted.
fn test_vec(rng: &mut Rng) {
    const N: usize = 3_000_000;
    let mut v: Vec<u32> = Vec::new();
    let mut sum = 0u64;
    for _ in 0..N {
        let x = rng.next_u64() as u32;
        sum += u64::from(x);
        v.push(x);
    }
    v.sort_unstable();
    assert!(v.windows(2).all(|w| w[0] <= w[1]), "test_vec: not sorted");
    let check: u64 = v.iter().map(|&x| u64::from(x)).sum();
    assert_eq!(check, sum, "test_vec: contents changed");
    println!("test_vec(): {N} elements, sum {sum}, median {}", v[N / 2]);
    println!("test_vec() OK!");
}

/// As memtest's `test_btree_map`: 50k `key_<value>` String keys, every key
/// checked against its value; then every other key removed.
fn test_btree_map(rng: &mut Rng) {
    const N: usize = 50_000;
    let mut m = BTreeMap::new();
    for _ in 0..N {
        let value = rng.next_u64() as u32;
        m.insert(format!("key_{value}"), value);
    }
    for (k, v) in &m {
        let parsed: u32 = k.strip_prefix("key_").and_then(|s| s.parse().ok()).expect("test_btree_map: bad key");
        assert_eq!(parsed, *v, "test_btree_map: key {k}");
    }
    let entries = m.len();
    let doomed: Vec<String> = m.keys().step_by(2).cloned().collect();
    for k in &doomed {
        assert!(m.remove(k).is_some(), "test_btree_map: remove {k}");
    }
    let digest = m.iter().fold(FNV_OFFSET, |h, (k, v)| fnv1a(fnv1a(h, k.as_bytes()), &v.to_le_bytes()));
    println!("test_btree_map(): {entries} entries, {} after removals, digest {digest:#018x}", m.len());
    println!("test_btree_map() OK!");
}

/// A window of 1000 Strings of 0..4096 bytes (across the 2 KiB slab limit),
/// each built by pushes; every replaced String is checked against its
/// recorded digest.
fn test_string(rng: &mut Rng) {
    const ROUNDS: u64 = 40_000;
    const WINDOW: usize = 1000;
    let mut window: Vec<(String, u64)> = Vec::with_capacity(WINDOW);
    let mut checked = 0usize;
    for round in 0..ROUNDS {
        let len = rng.below(4096) as usize;
        let mut s = String::new();
        for j in 0..len {
            s.push((b'a' + ((round as usize + j) % 26) as u8) as char);
        }
        if round % 7 == 0 {
            s = format!("{s}#{round}");
        }
        let digest = fnv1a(FNV_OFFSET, s.as_bytes());
        if window.len() < WINDOW {
            window.push((s, digest));
        } else {
            let i = rng.below(WINDOW as u64) as usize;
            let (old, old_digest) = core::mem::replace(&mut window[i], (s, digest));
            assert_eq!(fnv1a(FNV_OFFSET, old.as_bytes()), old_digest, "test_string: string {i} corrupted");
            checked += 1;
        }
    }
    let mut total = FNV_OFFSET;
    for (s, digest) in &window {
        assert_eq!(fnv1a(FNV_OFFSET, s.as_bytes()), *digest, "test_string: corrupted at the end");
        total = fnv1a(total, &digest.to_le_bytes());
    }
    println!("test_string(): {ROUNDS} strings, {checked} replaced and checked, digest {total:#018x}");
    println!("test_string() OK!");
}

/// 4000 boxed byte slices of 1 B to 64 KiB, each filled with its own
/// pattern, freed in random order with 2000 alive at any time.
fn test_boxes(rng: &mut Rng) {
    const N: u64 = 4000;
    const LIVE: usize = 2000;
    let fill =
        |seed: u64, len: usize| -> Box<[u8]> { (0..len).map(|i| (seed as usize ^ i.wrapping_mul(31)) as u8).collect() };
    let check =
        |b: &[u8], seed: u64| b.iter().enumerate().all(|(i, &x)| x == (seed as usize ^ i.wrapping_mul(31)) as u8);
    let mut live: Vec<(Box<[u8]>, u64)> = Vec::with_capacity(LIVE);
    let mut bytes = 0usize;
    for seed in 0..N {
        let len = match rng.below(100) {
            0..80 => 1 + rng.below(2048) as usize,
            80..97 => 2049 + rng.below(14 * 1024) as usize,
            _ => 16 * 1024 + rng.below(48 * 1024) as usize,
        };
        bytes += len;
        live.push((fill(seed, len), seed));
        if live.len() == LIVE {
            let (b, s) = live.swap_remove(rng.below(LIVE as u64) as usize);
            assert!(check(&b, s), "test_boxes: box {s} ({} bytes) corrupted", b.len());
        }
    }
    while !live.is_empty() {
        let (b, s) = live.swap_remove(rng.below(live.len() as u64) as usize);
        assert!(check(&b, s), "test_boxes: box {s} ({} bytes) corrupted", b.len());
    }
    println!("test_boxes(): {N} boxes, {bytes} bytes");
    println!("test_boxes() OK!");
}

#[unsafe(no_mangle)]
fn main() {
    println!("Running memory tests...");
    let heap = || global_allocator().usages().get(UsageKind::RustHeap);
    let before = heap();

    let mut rng = Rng::new(0xdead_beef);
    test_vec(&mut rng);
    test_btree_map(&mut rng);
    test_string(&mut rng);
    test_boxes(&mut rng);

    // Everything above is freed: the Rust heap is back where it started
    // (nothing else runs meanwhile; a little room for lazily grown kernel
    // state, far below any of the tests' allocations).
    let after = heap();
    assert!(after <= before + 4096, "Rust heap usage {after:#x}, was {before:#x} before the tests");
    println!("heap usage back to baseline");
    println!("Memory tests run OK!");
}
