//! Throughput workloads a–e: rounds of alloc+free pairs, reported as ns per pair.

use core::{alloc::Layout, hint::black_box};
use std::{
    sync::{
        Arc,
        mpsc::{Receiver, SyncSender, channel, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Block, Config, SCRIPT_LEN, TimedRun, alloc_tagged, fill_live, free_all, free_checked,
    replacement_script, small_size,
};
use crate::{
    allocators::{BenchAlloc, PAGE_BYTES},
    check::{check_tag, expect_block, tag_for, write_tag},
    rng::Rng,
    timing::{pin_current_thread, thread_cpu_time},
};

/// Prepares throughput workload `workload` (one of `a`..=`e`) for allocator `A`.
pub fn prepare<A: BenchAlloc>(workload: char, cfg: &Config) -> Box<dyn TimedRun> {
    match workload {
        'a' => Box::new(SmallPairs::<A>::new(cfg)),
        'b' => Box::new(RandomReplacement::<A>::new(cfg)),
        'c' => Box::new(ShuffledPages::<A>::new(cfg)),
        'd' => Box::new(Handover::<A>::new(cfg, false)),
        'e' => Box::new(Handover::<A>::new(cfg, true)),
        _ => unreachable!("not a throughput workload: {workload}"),
    }
}

/// a: 64 B alloc then free, one thread.
struct SmallPairs<A> {
    alloc: A,
    next_id: u64,
}

impl<A: BenchAlloc> SmallPairs<A> {
    fn new(cfg: &Config) -> Self {
        Self {
            alloc: A::create(cfg.arena_bytes),
            next_id: 0,
        }
    }
}

impl<A: BenchAlloc> TimedRun for SmallPairs<A> {
    fn round(&mut self, ops: usize) -> (Duration, usize) {
        let alloc = &self.alloc;
        let first_id = self.next_id;
        let start = Instant::now();
        for id in first_id..first_id + ops as u64 {
            // SAFETY: 64 is non-zero; the block is freed once, right here.
            unsafe {
                let block = alloc_tagged(alloc, 64, id);
                black_box(block.ptr);
                free_checked(alloc, block);
            }
        }
        let elapsed = start.elapsed();
        self.next_id += ops as u64;
        (elapsed, ops)
    }
}

/// b: random 8..2048 B, `live_blocks` live, random replacement (one pair = free a random
/// live block, allocate its replacement).
struct RandomReplacement<A: BenchAlloc> {
    alloc: A,
    live: Vec<Block>,
    script: Vec<(u32, u32)>,
    cursor: usize,
    next_id: u64,
}

impl<A: BenchAlloc> RandomReplacement<A> {
    fn new(cfg: &Config) -> Self {
        let alloc = A::create(cfg.arena_bytes);
        let live = fill_live(&alloc, cfg.seed, cfg.live_blocks);
        let next_id = live.len() as u64;
        let script = replacement_script(cfg.seed ^ 0xB, cfg.live_blocks);
        Self {
            alloc,
            live,
            script,
            cursor: 0,
            next_id,
        }
    }
}

impl<A: BenchAlloc> TimedRun for RandomReplacement<A> {
    fn round(&mut self, ops: usize) -> (Duration, usize) {
        let Self {
            alloc,
            live,
            script,
            cursor,
            next_id,
        } = self;
        let start = Instant::now();
        for _ in 0..ops {
            let (slot, size_bytes) = script[*cursor];
            *cursor = (*cursor + 1) % SCRIPT_LEN;
            let slot = &mut live[slot as usize];
            // SAFETY: the slot's block is live; it is replaced by a fresh one right away.
            unsafe {
                free_checked(alloc, *slot);
                *slot = alloc_tagged(alloc, size_bytes as usize, *next_id);
            }
            *next_id += 1;
        }
        (start.elapsed(), ops)
    }
}

impl<A: BenchAlloc> Drop for RandomReplacement<A> {
    fn drop(&mut self) {
        free_all(&self.alloc, &mut self.live);
    }
}

/// Free orders precomputed for c, used in rotation so shuffling is not timed.
const PAGE_FREE_ORDERS: usize = 8;

/// c: `live_pages` single 4 KiB pages (4 KiB-aligned) allocated, then freed in a shuffled
/// order; through the page API where the allocator has one, else `Layout(4096, 4096)`. One
/// pair = one page allocated and freed; a round is a multiple of `live_pages` pairs.
struct ShuffledPages<A> {
    alloc: A,
    pages: Vec<Block>,
    orders: Vec<Vec<u32>>,
    round_index: usize,
    next_id: u64,
}

impl<A: BenchAlloc> ShuffledPages<A> {
    fn new(cfg: &Config) -> Self {
        let mut rng = Rng::new(cfg.seed ^ 0xC);
        let orders = (0..PAGE_FREE_ORDERS)
            .map(|_| {
                let mut order: Vec<u32> = (0..cfg.live_pages as u32).collect();
                rng.shuffle(&mut order);
                order
            })
            .collect();
        Self {
            alloc: A::create(cfg.arena_bytes),
            pages: vec![Block::EMPTY; cfg.live_pages],
            orders,
            round_index: 0,
            next_id: 0,
        }
    }
}

impl<A: BenchAlloc> TimedRun for ShuffledPages<A> {
    fn round(&mut self, ops: usize) -> (Duration, usize) {
        let page_layout = Layout::from_size_align(PAGE_BYTES, PAGE_BYTES).expect("valid layout");
        let live_pages = self.pages.len();
        let rounds = ops.div_ceil(live_pages);
        let Self {
            alloc,
            pages,
            orders,
            round_index,
            next_id,
        } = self;
        let start = Instant::now();
        for _ in 0..rounds {
            for page in pages.iter_mut() {
                let ptr = if A::HAS_PAGE_API {
                    alloc
                        .alloc_pages(1, PAGE_BYTES)
                        .map_or(core::ptr::null_mut(), |addr| addr as *mut u8)
                } else {
                    // SAFETY: non-zero size.
                    unsafe { alloc.alloc(page_layout) }
                };
                expect_block(ptr, page_layout, A::NAME);
                let tag = tag_for(*next_id);
                *next_id += 1;
                // SAFETY: a fresh 4 KiB block.
                unsafe { write_tag(ptr, PAGE_BYTES, tag) };
                *page = Block {
                    ptr,
                    size_bytes: PAGE_BYTES,
                    tag,
                };
            }
            for &index in &orders[*round_index % PAGE_FREE_ORDERS] {
                let page = pages[index as usize];
                // SAFETY: every page of this round is live and freed exactly once, here.
                unsafe {
                    check_tag(page.ptr, PAGE_BYTES, page.tag, A::NAME);
                    if A::HAS_PAGE_API {
                        alloc.dealloc_pages(page.ptr as usize, 1);
                    } else {
                        alloc.dealloc(page.ptr, page_layout);
                    }
                }
            }
            *round_index += 1;
        }
        (start.elapsed(), rounds * live_pages)
    }
}

/// One batch of blocks travelling from producer to consumer.
struct Batch {
    blocks: Vec<Block>,
    /// When the producer started the round this batch belongs to.
    round_start: Instant,
    /// On the round's last batch: the producer's CPU time for the round (the consumer then
    /// reports the round's wall-clock and total CPU time).
    producer_cpu_time: Option<Duration>,
}

/// Batches that may be in flight between producer and consumer. Small on purpose: a deep
/// queue lets the producer run far ahead, which changes what is measured (the seed's figure
/// roughly doubles at depth 64 as its full-slab walks grow).
const HANDOVER_QUEUE_DEPTH: usize = 4;

/// CPUs the d/e threads are pinned to (distinct, so every remote free crosses cores).
const PRODUCER_CPU: usize = 0;
const CONSUMER_CPU: usize = 1;

/// d/e: a producer thread allocates batches of `batch_objects` blocks and hands each batch to
/// a consumer thread, which checks and frees every block (so every free is remote). The two
/// threads run concurrently (pipelined through a queue of [`HANDOVER_QUEUE_DEPTH`] batches);
/// a round's wall-clock time runs from the producer's first allocation to the consumer's last
/// free, and its CPU time is the sum of both threads' CPU time (`CLOCK_THREAD_CPUTIME_ID`)
/// for the round: pipelining hides up to half of the work from the wall clock, not from the
/// CPU time.
/// The threads live as long as the run, so each keeps its CPU slot across rounds.
struct Handover<A: BenchAlloc> {
    /// Work orders for the producer: batches in the next round. Dropping it stops both threads.
    round_tx: Option<SyncSender<usize>>,
    /// Round wall-clock times and CPU times (both threads) reported by the consumer.
    done_rx: Receiver<(Duration, Duration)>,
    last_cpu_time: Option<Duration>,
    batch_objects: usize,
    threads: Vec<JoinHandle<()>>,
    /// Keeps the allocator alive until the threads have been joined.
    _alloc: Arc<A>,
}

impl<A: BenchAlloc> Handover<A> {
    fn new(cfg: &Config, random_sizes: bool) -> Self {
        let alloc = Arc::new(A::create(cfg.arena_bytes));
        let batch_objects = cfg.batch_objects;
        let seed = cfg.seed ^ if random_sizes { 0xE } else { 0xD };
        let (round_tx, round_rx) = sync_channel::<usize>(0);
        let (full_tx, full_rx) = sync_channel::<Batch>(HANDOVER_QUEUE_DEPTH);
        let (empty_tx, empty_rx) = channel::<Vec<Block>>();
        let (done_tx, done_rx) = channel::<(Duration, Duration)>();
        for _ in 0..HANDOVER_QUEUE_DEPTH + 2 {
            empty_tx
                .send(Vec::with_capacity(batch_objects))
                .expect("queue open");
        }
        let producer_alloc = Arc::clone(&alloc);
        let producer = std::thread::spawn(move || {
            pin_current_thread(PRODUCER_CPU);
            let alloc = &*producer_alloc;
            let mut rng = Rng::new(seed);
            let mut next_id = 0u64;
            while let Ok(batches) = round_rx.recv() {
                let round_start = Instant::now();
                let cpu_start = thread_cpu_time();
                for batch_index in 0..batches {
                    let mut blocks = empty_rx.recv().expect("consumer alive");
                    for _ in 0..batch_objects {
                        let size_bytes = if random_sizes {
                            small_size(&mut rng)
                        } else {
                            64
                        };
                        // SAFETY: non-zero size; the block goes to the consumer, who frees it.
                        blocks.push(unsafe { alloc_tagged(alloc, size_bytes, next_id) });
                        next_id += 1;
                    }
                    let producer_cpu_time =
                        (batch_index + 1 == batches).then(|| thread_cpu_time() - cpu_start);
                    full_tx
                        .send(Batch {
                            blocks,
                            round_start,
                            producer_cpu_time,
                        })
                        .expect("consumer alive");
                }
            }
        });
        let consumer_alloc = Arc::clone(&alloc);
        let consumer = std::thread::spawn(move || {
            pin_current_thread(CONSUMER_CPU);
            let alloc = &*consumer_alloc;
            // CPU time when the consumer started on the current round's first batch.
            let mut round_cpu_start: Option<Duration> = None;
            while let Ok(mut batch) = full_rx.recv() {
                let cpu_start = *round_cpu_start.get_or_insert_with(thread_cpu_time);
                for block in batch.blocks.drain(..) {
                    // SAFETY: the producer handed this live block over; it is freed once, here.
                    unsafe { free_checked(alloc, block) };
                }
                // The producer may have stopped already; a closed return queue is fine.
                let _ = empty_tx.send(batch.blocks);
                if let Some(producer_cpu_time) = batch.producer_cpu_time {
                    let wall = batch.round_start.elapsed();
                    let cpu = producer_cpu_time + (thread_cpu_time() - cpu_start);
                    round_cpu_start = None;
                    done_tx.send((wall, cpu)).expect("run alive");
                }
            }
        });
        Self {
            round_tx: Some(round_tx),
            done_rx,
            last_cpu_time: None,
            batch_objects,
            threads: vec![producer, consumer],
            _alloc: alloc,
        }
    }
}

impl<A: BenchAlloc> TimedRun for Handover<A> {
    fn round(&mut self, ops: usize) -> (Duration, usize) {
        let batches = ops.div_ceil(self.batch_objects).max(2);
        let round_tx = self.round_tx.as_ref().expect("threads running");
        round_tx.send(batches).expect("producer alive");
        let (wall, cpu) = self.done_rx.recv().expect("consumer alive");
        self.last_cpu_time = Some(cpu);
        (wall, batches * self.batch_objects)
    }

    fn last_round_cpu_time(&self) -> Option<Duration> {
        self.last_cpu_time
    }
}

impl<A: BenchAlloc> Drop for Handover<A> {
    fn drop(&mut self) {
        // Closing the work queue ends the producer, which closes the batch queue and ends the
        // consumer once it has freed everything in flight.
        self.round_tx = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("{}: a handover thread panicked", A::NAME);
            }
        }
    }
}
