//! Workload l: a larson-style server. [`SERVER_THREADS`] threads share one pool of
//! `live_blocks` slots, each holding a live object of a random size ([`server_size`]). A
//! replacement takes the object out of a random slot, checks and frees it, allocates an object
//! of a new random size and puts it back. Any thread may pick any slot, so about half of the
//! frees are of objects another thread allocated, and objects migrate between threads as in a
//! server whose requests are handled by whichever worker is free.
//!
//! Reported as ns per replacement (one free plus one alloc): the round's wall-clock time over
//! all threads' replacements (`l`), and the threads' summed CPU time (`l cpu`) over the same.
//! The threads live as long as the run and are pinned to distinct CPUs, like d/e's.

use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::{
    sync::{
        Arc,
        mpsc::{Receiver, Sender, SyncSender, channel, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{Block, Config, SCRIPT_LEN, TimedRun, alloc_tagged, free_checked};
use crate::{
    allocators::BenchAlloc,
    rng::Rng,
    timing::{pin_current_thread, thread_cpu_time},
};

/// Threads replacing objects in the shared pool.
pub const SERVER_THREADS: usize = 2;

/// Object size of l: mostly small, some up to the slab range's top. Seven in eight are
/// uniform in 8..=256 bytes, the rest uniform in 257..=2048.
fn server_size(rng: &mut Rng) -> usize {
    if rng.range(0, 8) < 7 {
        rng.range_inclusive(8, 256)
    } else {
        rng.range_inclusive(257, 2048)
    }
}

/// One slot of the pool. A thread owns the slot's object from the moment its swap of `ptr`
/// to null returns non-null until it stores a new non-null `ptr`; `size_bytes` and `tag` are
/// written before that release store and read after that acquire swap, so plain relaxed
/// accesses suffice.
struct Slot {
    ptr: AtomicPtr<u8>,
    size_bytes: AtomicUsize,
    tag: AtomicU64,
}

/// The shared pool.
struct Pool {
    slots: Box<[Slot]>,
}

impl Pool {
    fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots)
                .map(|_| Slot {
                    ptr: AtomicPtr::new(core::ptr::null_mut()),
                    size_bytes: AtomicUsize::new(0),
                    tag: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Takes the object of slot `index`, or of the next slot that holds one when another
    /// thread is replacing that object right now; returns the slot taken and its object.
    #[inline(always)]
    fn take(&self, mut index: usize) -> (usize, Block) {
        loop {
            let slot = &self.slots[index];
            let ptr = slot.ptr.swap(core::ptr::null_mut(), Ordering::Acquire);
            if !ptr.is_null() {
                let block = Block {
                    ptr,
                    size_bytes: slot.size_bytes.load(Ordering::Relaxed),
                    tag: slot.tag.load(Ordering::Relaxed),
                };
                return (index, block);
            }
            index = (index + 1) % self.slots.len();
        }
    }

    /// Puts `block` into slot `index`, which the caller owns (it took or never filled it).
    #[inline(always)]
    fn put(&self, index: usize, block: Block) {
        let slot = &self.slots[index];
        slot.size_bytes.store(block.size_bytes, Ordering::Relaxed);
        slot.tag.store(block.tag, Ordering::Relaxed);
        slot.ptr.store(block.ptr, Ordering::Release);
    }
}

/// A precomputed script of one thread: which slot to replace and with what size.
fn server_script(seed: u64, slots: usize) -> Vec<(u32, u32)> {
    let mut rng = Rng::new(seed);
    (0..SCRIPT_LEN)
        .map(|_| (rng.range(0, slots) as u32, server_size(&mut rng) as u32))
        .collect()
}

/// One worker thread: fills its share of the pool (slots `index`, `index + SERVER_THREADS`,
/// …), reports that on `done`, then runs each round ordered on `orders` and reports its CPU
/// time for it; frees its share of the pool once `orders` closes.
fn worker<A: BenchAlloc>(
    alloc: &A,
    pool: &Pool,
    index: usize,
    seed: u64,
    orders: &Receiver<usize>,
    done: &Sender<Duration>,
) {
    pin_current_thread(index);
    let thread_seed = seed ^ (index as u64) << 32;
    let script = server_script(thread_seed, pool.slots.len());
    let mut fill_rng = Rng::new(thread_seed ^ 0xF111);
    // Ids step by the thread count, so no two threads ever tag two objects alike.
    let mut next_id = index as u64;
    for slot in (index..pool.slots.len()).step_by(SERVER_THREADS) {
        // SAFETY: non-zero size; the object goes into a slot this thread alone fills.
        pool.put(slot, unsafe {
            alloc_tagged(alloc, server_size(&mut fill_rng), next_id)
        });
        next_id += SERVER_THREADS as u64;
    }
    done.send(Duration::ZERO).expect("run alive");
    let mut cursor = 0;
    while let Ok(replacements) = orders.recv() {
        let cpu_start = thread_cpu_time();
        for _ in 0..replacements {
            let (slot, size_bytes) = script[cursor];
            cursor = (cursor + 1) % SCRIPT_LEN;
            let (slot, old) = pool.take(slot as usize);
            // SAFETY: `take` made this thread the object's only owner; it is freed once,
            // here, and the slot gets the fresh object.
            unsafe {
                free_checked(alloc, old);
                pool.put(slot, alloc_tagged(alloc, size_bytes as usize, next_id));
            }
            next_id += SERVER_THREADS as u64;
        }
        done.send(thread_cpu_time() - cpu_start).expect("run alive");
    }
    // Between rounds every slot holds an object; each thread frees its own share.
    for slot in (index..pool.slots.len()).step_by(SERVER_THREADS) {
        let ptr = pool.slots[slot]
            .ptr
            .swap(core::ptr::null_mut(), Ordering::Acquire);
        if ptr.is_null() {
            continue; // Lost with a thread that panicked mid-round.
        }
        let block = Block {
            ptr,
            size_bytes: pool.slots[slot].size_bytes.load(Ordering::Relaxed),
            tag: pool.slots[slot].tag.load(Ordering::Relaxed),
        };
        // SAFETY: the swap made this thread the object's only owner.
        unsafe { free_checked(alloc, block) };
    }
}

/// l for one allocator: the worker threads and the channels that drive them.
pub struct Server<A: BenchAlloc> {
    /// Work orders, one queue per worker: replacements in the next round. Dropping them stops
    /// the workers.
    orders: Vec<SyncSender<usize>>,
    /// CPU time of each worker's last round, one queue per worker, so a worker that died is
    /// noticed (its queue closes) instead of waited for.
    done: Vec<Receiver<Duration>>,
    last_cpu_time: Option<Duration>,
    threads: Vec<JoinHandle<()>>,
    /// Keeps the allocator alive until the threads have been joined.
    _alloc: Arc<A>,
}

impl<A: BenchAlloc> Server<A> {
    pub fn new(cfg: &Config) -> Self {
        let alloc = Arc::new(A::create(cfg.arena_bytes));
        let pool = Arc::new(Pool::new(cfg.live_blocks));
        let seed = cfg.seed ^ 0x1A;
        let mut orders = Vec::with_capacity(SERVER_THREADS);
        let mut done = Vec::with_capacity(SERVER_THREADS);
        let mut threads = Vec::with_capacity(SERVER_THREADS);
        for index in 0..SERVER_THREADS {
            let (order_tx, order_rx) = sync_channel::<usize>(1);
            let (done_tx, done_rx) = channel::<Duration>();
            let (alloc, pool) = (Arc::clone(&alloc), Arc::clone(&pool));
            threads.push(std::thread::spawn(move || {
                worker(&*alloc, &pool, index, seed, &order_rx, &done_tx);
            }));
            orders.push(order_tx);
            done.push(done_rx);
        }
        for filled in &done {
            filled.recv().expect("server worker alive");
        }
        Self {
            orders,
            done,
            last_cpu_time: None,
            threads,
            _alloc: alloc,
        }
    }
}

impl<A: BenchAlloc> TimedRun for Server<A> {
    fn round(&mut self, ops: usize) -> (Duration, usize) {
        let per_thread = ops.div_ceil(SERVER_THREADS);
        let start = Instant::now();
        for order in &self.orders {
            order.send(per_thread).expect("server worker alive");
        }
        let mut cpu = Duration::ZERO;
        for done in &self.done {
            cpu += done.recv().expect("server worker alive");
        }
        let wall = start.elapsed();
        self.last_cpu_time = Some(cpu);
        (wall, per_thread * SERVER_THREADS)
    }

    fn last_round_cpu_time(&self) -> Option<Duration> {
        self.last_cpu_time
    }
}

impl<A: BenchAlloc> Drop for Server<A> {
    fn drop(&mut self) {
        // Closing the order queues ends every worker, which frees its share of the pool.
        self.orders.clear();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("{}: a server worker panicked", A::NAME);
            }
        }
    }
}
