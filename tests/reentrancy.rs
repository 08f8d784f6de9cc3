//! The heap as `#[global_allocator]` with a logger that allocates and keeps
//! every message, driven at trace level through every path that reports a
//! fault or logs: local and remote double frees, remote double frees of free
//! objects (reported when the owner reuses them), a write after free that
//! corrupts a free list, foreign and interior frees, hot-add, OOM and
//! reclaim.
//!
//! Nothing the allocator does while a CPU is pinned or a lock is held may
//! log: a logging call there re-enters the heap (a second user of the same
//! CPU slot, or the buddy lock taken twice). This test fails on either:
//! - an object handed out twice: every block the heap hands out, to anyone
//!   (the test, the logger, the test harness), is entered in a shadow set
//!   of live blocks that panics on a duplicate, and the logger's stored
//!   lines are checked at the end (a block handed out twice shows up as a
//!   line overwritten by test data);
//! - a deadlock: a watchdog aborts the process after 60 s.
//!
//! One test in its own binary: the global allocator and the logger are
//! process-wide.

use buddy_slab_allocator::GlobalAllocator;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const ARENA_BYTES: usize = 96 << 20;
const EXTRA_BYTES: usize = 8 << 20;

static HEAP: GlobalAllocator<PAGE> = GlobalAllocator::new();

/// `[start, end)` of every region given to `HEAP` (the arena, the hot-added
/// region): frees of addresses inside go to `HEAP`, others to `System`.
static REGIONS: [(AtomicUsize, AtomicUsize); 2] = [
    (AtomicUsize::new(0), AtomicUsize::new(0)),
    (AtomicUsize::new(0), AtomicUsize::new(0)),
];
/// Set once `HEAP` is initialised: new allocations then come from it.
static READY: AtomicBool = AtomicBool::new(false);

fn in_heap(addr: usize) -> bool {
    REGIONS.iter().any(|(s, e)| {
        let (s, e) = (s.load(Ordering::Acquire), e.load(Ordering::Acquire));
        s <= addr && addr < e
    })
}

/// Live blocks `HEAP` handed out, by start address: an open-addressing
/// table in static memory, so that checking takes no allocation.
mod shadow {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const SLOTS: usize = 1 << 20;
    const EMPTY: usize = 0;
    const GONE: usize = 1;
    static TABLE: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(EMPTY) }; SLOTS];
    static LOCK: AtomicBool = AtomicBool::new(false);
    pub static DUPLICATES: AtomicUsize = AtomicUsize::new(0);

    fn locked<R>(f: impl FnOnce() -> R) -> R {
        while LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        let r = f();
        LOCK.store(false, Ordering::Release);
        r
    }

    fn start(addr: usize) -> usize {
        (addr >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44
    }

    /// Records `addr` as live; counts it if it already is (a block handed
    /// out twice).
    pub fn insert(addr: usize) {
        locked(|| {
            let mut i = start(addr) % SLOTS;
            let mut free = None;
            loop {
                match TABLE[i].load(Ordering::Relaxed) {
                    EMPTY => break,
                    GONE => free = free.or(Some(i)),
                    a if a == addr => {
                        DUPLICATES.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    _ => {}
                }
                i = (i + 1) % SLOTS;
            }
            TABLE[free.unwrap_or(i)].store(addr, Ordering::Relaxed);
        });
    }

    /// Forgets `addr` (absent for a deliberate double free: ignored).
    pub fn remove(addr: usize) {
        locked(|| {
            let mut i = start(addr) % SLOTS;
            loop {
                match TABLE[i].load(Ordering::Relaxed) {
                    EMPTY => return,
                    a if a == addr => {
                        TABLE[i].store(GONE, Ordering::Relaxed);
                        return;
                    }
                    _ => i = (i + 1) % SLOTS,
                }
            }
        });
    }
}

/// The process's allocator: `System` until `HEAP` is ready, then `HEAP`;
/// frees go to whichever allocator owns the address.
struct Routed;

// SAFETY: each block comes from `System` or `HEAP` and goes back to the one
// that handed it out (decided by address, `in_heap`).
unsafe impl GlobalAlloc for Routed {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !READY.load(Ordering::Acquire) {
            // SAFETY: forwarded.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: forwarded.
        let p = unsafe { GlobalAlloc::alloc(&HEAP, layout) };
        if !p.is_null() {
            shadow::insert(p.addr());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_heap(ptr.addr()) {
            shadow::remove(ptr.addr());
            // SAFETY: forwarded: the block came from HEAP.
            unsafe { GlobalAlloc::dealloc(&HEAP, ptr, layout) }
        } else {
            // SAFETY: forwarded: the block came from System.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_heap(ptr.addr()) {
            // SAFETY: forwarded.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: forwarded.
        let new = unsafe { GlobalAlloc::realloc(&HEAP, ptr, layout, new_size) };
        if !new.is_null() {
            shadow::remove(ptr.addr());
            shadow::insert(new.addr());
        }
        new
    }
}

#[global_allocator]
static ROUTED: Routed = Routed;

/// Keeps every message in heap memory, as a kernel's log buffer would; each
/// message also takes a 64 KiB scratch buffer (past the page cache), so that a log call under
/// the buddy lock needs the buddy.
struct KeepAll;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

std::thread_local! {
    static IN_LOGGER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
/// Messages logged while this thread was already inside the logger (the
/// heap reporting from inside an allocation the logger made).
static NESTED: AtomicUsize = AtomicUsize::new(0);

impl log::Log for KeepAll {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        if IN_LOGGER.with(|f| f.replace(true)) {
            NESTED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let scratch = vec![0x5au8; 16 * PAGE];
        let line = format!("[{}] {}", record.level(), record.args());
        assert!(scratch.iter().all(|&b| b == 0x5a));
        drop(scratch);
        LINES.lock().unwrap().push(line);
        IN_LOGGER.with(|f| f.set(false));
    }

    fn flush(&self) {}
}

static LOGGER: KeepAll = KeepAll;

fn l(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// `HEAP.alloc`, entered in the shadow set.
fn halloc(size: usize) -> NonNull<u8> {
    let p = HEAP.alloc(l(size)).unwrap();
    shadow::insert(p.as_ptr().addr());
    p
}

/// `HEAP.dealloc` of a block from `halloc`.
///
/// # Safety
/// `p` is live, from `halloc(size)`.
unsafe fn hfree(p: NonNull<u8>, size: usize) {
    shadow::remove(p.as_ptr().addr());
    // SAFETY: caller contract.
    unsafe { HEAP.dealloc(p, l(size)) };
}

/// A region from `System` for `HEAP`, recorded for routing.
fn region(index: usize, bytes: usize) -> &'static mut [u8] {
    let layout = Layout::from_size_align(bytes, PAGE).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { System.alloc_zeroed(layout) };
    assert!(!p.is_null());
    REGIONS[index].0.store(p.addr(), Ordering::Release);
    REGIONS[index].1.store(p.addr() + bytes, Ordering::Release);
    // SAFETY: a fresh allocation of `bytes` bytes, never freed.
    unsafe { std::slice::from_raw_parts_mut(p, bytes) }
}

fn setup() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: the region is ours alone for the process's life; HEAP is
        // a static.
        unsafe { HEAP.init(region(0, ARENA_BYTES)).unwrap() };
        READY.store(true, Ordering::Release);
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Fills `size` bytes at `p` with a byte that no log line contains.
fn scribble(p: NonNull<u8>, size: usize) {
    // SAFETY: a live block of at least `size` bytes.
    unsafe { p.as_ptr().write_bytes(0xee, size) };
}

fn watchdog() {
    std::thread::spawn(|| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("reentrancy: no progress for 60 s: deadlock in the heap");
        std::process::abort();
    });
}

/// A remote CPU: runs `f` on a thread of its own (its own CPU slot).
fn remotely(f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(f);
    });
}

#[derive(Clone, Copy)]
struct Sent(NonNull<u8>);
// SAFETY: an address handed to another thread for a (deliberately bad) free.
unsafe impl Send for Sent {}

#[test]
fn an_allocating_logger_never_sees_a_pinned_or_locked_heap() {
    setup();
    watchdog();
    let mut expected_rejects = 0;
    let mut keep = Vec::new();

    // Local double free, for many classes.
    for size in (8..=512).step_by(8) {
        let p = halloc(size);
        // SAFETY: the second free is deliberate.
        unsafe {
            hfree(p, size);
            HEAP.dealloc(p, l(size));
        }
        expected_rejects += 1;
    }

    // Remote double free of a live object, and a remote double free of a
    // free object, which the owner finds when it hands the object out
    // again: for every class up to 512 B, so that one of them is the class
    // the logger's own allocations use.
    for size in (8..=512).step_by(8) {
        let p = Sent(halloc(size));
        remotely(move || {
            let p = p;
            // SAFETY: deliberate: the second free is a double free.
            unsafe {
                hfree(p.0, size);
                HEAP.dealloc(p.0, l(size));
            }
        });
        expected_rejects += 1;
        let q = halloc(size);
        // SAFETY: a valid local free: `q` is back on its free list.
        unsafe { hfree(q, size) };
        let q = Sent(q);
        remotely(move || {
            let q = q;
            // SAFETY: deliberate double free of a free object.
            unsafe { HEAP.dealloc(q.0, l(size)) };
        });
        expected_rejects += 1;
        // The owner reuses the object: it must drop the stray remote bit
        // (and report it) before it hands the object out.
        for _ in 0..4 {
            let r = halloc(size);
            scribble(r, size);
            keep.push((r, size));
        }
    }

    // A write after free: the freed object's link word is overwritten, so
    // the class's free list is corrupted; the next allocations find it.
    for size in [16, 48, 64, 96, 128, 256] {
        let a = halloc(size);
        let b = halloc(size);
        // SAFETY: valid frees.
        unsafe {
            hfree(b, size);
            hfree(a, size);
        }
        // SAFETY: deliberate write after free into the link word.
        unsafe { a.as_ptr().cast::<usize>().write(0x0bad_0bad_0bad_0bad) };
        for _ in 0..8 {
            let r = halloc(size);
            scribble(r, size);
            keep.push((r, size));
        }
    }

    // Foreign and interior frees.
    let mut local = [0u64; 8];
    let p = halloc(100);
    let run = halloc(3 * PAGE);
    // SAFETY: each a deliberate bad free, then the two valid ones.
    unsafe {
        HEAP.dealloc(NonNull::from(&mut local).cast(), l(8));
        HEAP.dealloc(p.add(8), l(100));
        HEAP.dealloc(run.add(PAGE), l(2 * PAGE));
        assert!(HEAP.dealloc_pages(run.as_ptr().addr(), 2).is_err());
        hfree(p, 100);
        hfree(run, 3 * PAGE);
    }
    expected_rejects += 4;

    // Hot-add (the buddy logs what it adds).
    // SAFETY: a region of our own for the process's life.
    unsafe { HEAP.add_region(region(1, EXTRA_BYTES)).unwrap() };

    // OOM and reclaim: take 1 MiB runs until none is left, then give them
    // back. Allocations straight from HEAP: a failure is an error here, not
    // an abort.
    let mut runs = Vec::with_capacity(256);
    while let Ok(r) = HEAP.alloc(l(1 << 20)) {
        shadow::insert(r.as_ptr().addr());
        runs.push(r);
    }
    assert!(runs.len() > 64, "the heap held {} MiB", runs.len());
    assert!(HEAP.alloc(l(1 << 30)).is_err());
    for r in runs {
        // SAFETY: allocated above.
        unsafe { hfree(r, 1 << 20) };
    }
    HEAP.drain();

    for (r, size) in keep {
        // SAFETY: allocated above with this size.
        unsafe { hfree(r, size) };
    }

    // What the heap reported arrived, and nothing it handed out was handed
    // out twice.
    let stats = HEAP.stats();
    assert!(
        stats.invalid_frees >= expected_rejects,
        "{} rejected frees counted, at least {expected_rejects} expected",
        stats.invalid_frees
    );
    assert_eq!(
        shadow::DUPLICATES.load(Ordering::Relaxed),
        0,
        "a live block was handed out again"
    );
    let lines = LINES.lock().unwrap();
    for line in lines.iter() {
        assert!(
            line.starts_with('[') && line.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "a log line was overwritten: {:?}",
            line.as_bytes()
        );
    }
    let reported = lines.iter().filter(|l| l.starts_with("[ERROR]")).count();
    assert!(
        reported >= expected_rejects,
        "{reported} faults reported, at least {expected_rejects} expected"
    );
    assert!(
        lines.iter().any(|l| l.contains("free list")),
        "the write after free was reported"
    );
    drop(lines);
    HEAP.check_invariants();
}
