//! loom model of the remote-free path: the real `SlabHeader::free_remote`,
//! `PendingSlabs::push` / `take_all` and `absorb_remote`, with loom's
//! atomics, under every interleaving loom explores.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom`
//! (`make loom`). `LOOM_MAX_PREEMPTIONS` bounds the search (default 5 here).
#![cfg(loom)]

use buddy_slab_allocator::loom_model::{
    Hazards, Owners, Pending, ReleaseSync, Slab, SlabHead, touch_remote_slab,
    touch_remote_slab_unprotected, try_release,
};
use loom::sync::Arc;
use loom::thread;
use std::alloc::{Layout, alloc_zeroed};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Executions explored, printed per test (`--nocapture`).
static ITERATIONS: AtomicUsize = AtomicUsize::new(0);

fn report(test: &str) {
    println!("loom: {test}: {} executions", ITERATIONS.swap(0, Relaxed));
}

const SLAB_BYTES: usize = 4096;

/// The two shapes of the remote-free protocol (`SlabHeader` S4): a slab
/// of at most 63 objects has one remote word, and the free that opens its
/// epoch pushes the slab at once; larger slabs go through the remote
/// summary first.
#[derive(Clone, Copy)]
struct Geometry {
    object_bytes: usize,
    nr_objects: usize,
}

const SINGLE_WORD: Geometry = Geometry {
    object_bytes: 64,
    nr_objects: 4,
};
const MULTI_WORD: Geometry = Geometry {
    object_bytes: 8,
    nr_objects: 130,
};

/// Owner, before any other thread exists: allocates every object, keeps
/// `n` of them as far apart as the slab allows (so a multi-word slab's
/// remote frees land in different words), frees the rest locally.
fn spread_objects(slab: Slab, n: usize) -> Vec<usize> {
    // SAFETY: the calling thread is the slab's only user so far.
    let all: Vec<usize> = core::iter::from_fn(|| unsafe { slab.alloc() }).collect();
    assert!(n >= 2 && all.len() >= n);
    let picks: Vec<usize> = (0..n).map(|i| i * (all.len() - 1) / (n - 1)).collect();
    for (i, &obj) in all.iter().enumerate() {
        if !picks.contains(&i) {
            // SAFETY: as above.
            assert!(unsafe { slab.free_local(obj) });
        }
    }
    picks.into_iter().map(|i| all[i]).collect()
}

/// A leaked, slab-aligned block: the model's slab memory.
fn slab_memory() -> usize {
    let layout = Layout::from_size_align(SLAB_BYTES, SLAB_BYTES).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null());
    p as usize
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(5);
    }
    // The multi-word slab's final re-allocation of all 64 objects loads a
    // remote word per pop: loom counts each load as a branch.
    b.max_branches = 10_000;
    b
}

/// What the owner does with one slab taken from its pending stack: absorb
/// the remote frees, then decide as `slab_emptied` does (release only if
/// empty and not queued, S4).
///
/// # Safety
/// Owner thread only.
unsafe fn owner_absorb(slab: Slab, absorbed_faults: &mut usize, released: &mut bool) {
    assert!(
        slab.is_live(),
        "S4: a released slab was on the pending stack"
    );
    // SAFETY: owner thread (caller contract).
    unsafe {
        *absorbed_faults += slab.absorb_remote();
        slab.check();
        if slab.nr_allocated() == 0 && !slab.is_queued() {
            slab.release();
            *released = true;
        }
    }
}

/// Two remote CPUs free every object of one slab (three objects, one of them
/// by each, plus one more by the first) while the owner absorbs and decides
/// whether to release it. No object may be lost or freed twice, and a slab
/// that is queued (or about to be pushed) must never be released.
#[test]
fn remote_frees_race_owner_absorb_and_release() {
    remote_frees_race(SINGLE_WORD);
    report("remote_frees_race_owner_absorb_and_release (single word)");
    remote_frees_race(MULTI_WORD);
    report("remote_frees_race_owner_absorb_and_release (multi word)");
}

/// The body of `remote_frees_race_owner_absorb_and_release`.
fn remote_frees_race(geo: Geometry) {
    let Geometry {
        object_bytes,
        nr_objects,
    } = geo;
    let base = slab_memory();
    builder().check(move || {
        ITERATIONS.fetch_add(1, Relaxed);
        // SAFETY: the leaked block is aligned, writable and ours; each
        // model iteration formats it anew.
        let slab = unsafe { Slab::format(base, SLAB_BYTES, object_bytes, nr_objects) };
        let objs = spread_objects(slab, 3);
        let pending = Arc::new(Pending::new());

        let remote = |mine: Vec<usize>| {
            let pending = pending.clone();
            thread::spawn(move || {
                for obj in mine {
                    match slab.free_remote(obj) {
                        Some(true) => pending.push(slab),
                        Some(false) => {}
                        None => panic!("a valid remote free was rejected"),
                    }
                }
            })
        };
        let r1 = remote(vec![objs[0], objs[1]]);
        let r2 = remote(vec![objs[2]]);

        let (mut faults, mut released) = (0, false);
        // The owner's slow path, concurrent with the remote frees.
        // SAFETY: owner thread.
        pending.take_all(|s| unsafe { owner_absorb(s, &mut faults, &mut released) });
        r1.join().unwrap();
        r2.join().unwrap();
        // Afterwards the owner absorbs whatever is still pending.
        // SAFETY: owner thread.
        pending.take_all(|s| unsafe { owner_absorb(s, &mut faults, &mut released) });

        // Wake-up delivery: every remote free reached the owner through the
        // pending stack (the epoch flags and the summary are read-modify-
        // writes, so this rests on coherence alone, not on a SeqCst total
        // order, which loom models as AcqRel only, tokio-rs/loom#180).
        if !released {
            // SAFETY: owner thread; the remote threads have exited.
            assert_eq!(
                unsafe { slab.nr_allocated() },
                0,
                "a remote free was not delivered through the pending stack"
            );
        }
        if !released {
            // SAFETY: owner thread; the remote threads have exited.
            unsafe {
                faults += slab.absorb_remote();
                slab.check();
                assert_eq!(slab.nr_allocated(), 0, "a remote free was lost");
            }
        }
        assert_eq!(
            faults, 0,
            "a valid remote free was counted as a double free"
        );
        // The objects are handed out again, each once.
        if !released {
            // SAFETY: owner thread.
            let mut again: Vec<usize> = (0..nr_objects)
                .map(|_| unsafe { slab.alloc() }.unwrap())
                .collect();
            again.sort_unstable();
            again.dedup();
            assert_eq!(again.len(), nr_objects, "an object was handed out twice");
            // SAFETY: owner thread.
            assert_eq!(unsafe { slab.alloc() }, None);
        }
    });
}

/// Two remote CPUs free the same object while the owner absorbs: exactly one
/// free is accepted (rejected at `free_remote` or counted when absorbed),
/// and the object is on the free list once.
#[test]
fn racing_remote_double_free_is_caught_once() {
    racing_remote_double_free(SINGLE_WORD);
    report("racing_remote_double_free_is_caught_once (single word)");
    racing_remote_double_free(MULTI_WORD);
    report("racing_remote_double_free_is_caught_once (multi word)");
}

fn racing_remote_double_free(geo: Geometry) {
    let base = slab_memory();
    builder().check(move || {
        ITERATIONS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        let slab = unsafe { Slab::format(base, SLAB_BYTES, geo.object_bytes, geo.nr_objects) };
        let spread = spread_objects(slab, 2);
        let (a, keep) = (spread[1], spread[0]);
        let pending = Arc::new(Pending::new());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let pending = pending.clone();
                thread::spawn(move || match slab.free_remote(a) {
                    Some(true) => {
                        pending.push(slab);
                        1
                    }
                    Some(false) => 1,
                    None => 0,
                })
            })
            .collect();
        let (mut faults, mut released) = (0, false);
        // SAFETY: owner thread.
        pending.take_all(|s| unsafe { owner_absorb(s, &mut faults, &mut released) });
        let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // SAFETY: owner thread.
        pending.take_all(|s| unsafe { owner_absorb(s, &mut faults, &mut released) });
        assert!(!released, "a slab with a live object was released");
        assert_eq!(
            accepted - faults,
            1,
            "the object must be freed exactly once"
        );
        // SAFETY: owner thread; remote threads joined.
        unsafe {
            slab.check();
            assert_eq!(slab.nr_allocated(), 1, "only `keep` is live");
            assert!(!slab.free_local(a), "a second local free must be rejected");
            assert!(slab.free_local(keep));
        }
    });
}

/// The owner releases an empty slab while another CPU makes a (double)
/// remote free of one of its objects, which is already free, so nothing
/// keeps the slab alive. With the release handshake (`cpu::hazard`, H1)
/// the remote free either finds the slab dead and touches nothing, or the
/// owner keeps the slab: the remote free never touches the slab's memory
/// after its release (modelled by a loom cell the page allocator's next
/// user writes once the slab is released, and the remote free reads where
/// it touches the header), and a released slab is never on the pending
/// stack.
#[test]
fn a_late_remote_free_never_touches_a_released_slab() {
    late_remote_free(false);
    report("a_late_remote_free_never_touches_a_released_slab");
}

/// The mutant: the same remote free checks the slab's head but publishes
/// no hazard first. loom must find the interleaving where it touches the
/// slab after the owner released it (a causality violation on the cell),
/// so the model above can see this race.
#[test]
#[should_panic(expected = "Causality violation")]
fn the_model_catches_a_late_remote_free_without_the_hazard() {
    late_remote_free(true);
}

fn late_remote_free(mutant: bool) {
    let base = slab_memory();
    builder().check(move || {
        ITERATIONS.fetch_add(1, Relaxed);
        // SAFETY: the leaked block is aligned, writable and ours; each
        // model iteration formats it anew.
        let slab = unsafe { Slab::format(base, SLAB_BYTES, 64, 4) };
        // The owner hands an object out and frees it: the slab is empty.
        // SAFETY: the only thread so far.
        let x = unsafe { slab.alloc() }.unwrap();
        // SAFETY: as above.
        assert!(unsafe { slab.free_local(x) });
        let head = Arc::new(SlabHead::live(0, 0));
        let sync = Arc::new(ReleaseSync::new());
        let hazards = Arc::new(Hazards::new(2));
        let pending = Arc::new(Pending::new());
        // The slab's memory as the page allocator's next user sees it.
        let memory = Arc::new(loom::cell::UnsafeCell::new(0u64));

        let remote = {
            let (head, sync, hazards, pending, memory) = (
                head.clone(),
                sync.clone(),
                hazards.clone(),
                pending.clone(),
                memory.clone(),
            );
            thread::spawn(move || {
                let touch = || {
                    // Where the real free reads and writes the header.
                    // SAFETY: a plain read; loom checks it is not racing
                    // the release's write.
                    memory.with(|p| unsafe { p.read() });
                    if slab.free_remote(x) == Some(true) {
                        pending.push(slab);
                    }
                };
                if mutant {
                    touch_remote_slab_unprotected(&head, touch);
                } else {
                    touch_remote_slab(&hazards, 1, &sync, base, &head, touch);
                }
            })
        };
        let released = try_release(&sync, &hazards, base, &head, slab);
        if released {
            // The slab's memory is someone else's now.
            // SAFETY: loom checks no access races this write.
            memory.with_mut(|p| unsafe { p.write(1) });
        }
        remote.join().unwrap();
        let mut queued = 0;
        pending.take_all(|_| queued += 1);
        if released {
            assert_eq!(queued, 0, "a released slab was on the pending stack");
        }
    });
}

/// D1 (`cpu::handoff`): the owner of slot 0 gives it up (a thread exits:
/// it absorbs what is queued, clears its bit, and looks again) while two
/// remote CPUs free the same object of its slab, one of them a double free.
/// Whoever finds the slot idle with a slab queued drains it. Nothing is
/// stranded: afterwards nothing is queued, the object was freed exactly
/// once, and the other object is still allocated.
#[test]
fn a_free_into_a_slot_being_given_up_is_never_stranded() {
    idle_handoff(false);
    report("a_free_into_a_slot_being_given_up_is_never_stranded");
}

/// The model finds the stranded free when the owner gives its slot up
/// without looking at its pending stack again.
#[test]
#[should_panic(expected = "stranded")]
fn the_model_catches_a_give_up_that_does_not_look_again() {
    idle_handoff(true);
}

fn idle_handoff(mutant: bool) {
    use loom::sync::atomic::AtomicUsize as LoomUsize;
    let base = slab_memory();
    let mut builder = builder();
    // Three threads: bound 5 explores 1.8 million executions (six minutes);
    // 3 explores 20 thousand and still finds both mutants (the missing
    // second look, and the fences taken out of `cpu::handoff`).
    builder.preemption_bound = builder.preemption_bound.map(|b| b.min(3));
    builder.check(move || {
        ITERATIONS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        let slab = unsafe {
            Slab::format(
                base,
                SLAB_BYTES,
                SINGLE_WORD.object_bytes,
                SINGLE_WORD.nr_objects,
            )
        };
        let spread = spread_objects(slab, 2);
        let (a, keep) = (spread[1], spread[0]);
        let pending = Arc::new(Pending::new());
        let owners = Arc::new(Owners::new());
        let doubles = Arc::new(LoomUsize::new(0));
        assert!(owners.claim(0), "the owner holds its slot");
        // What a drain does with the slab: absorb its remote frees. Only
        // the slot's owner of the moment runs it (the claim, D1).
        let absorb = |pending: &Pending, doubles: &LoomUsize| {
            pending.take_all(|s| {
                // SAFETY: the caller owns the slot.
                let found = unsafe { s.absorb_remote() };
                doubles.fetch_add(found, Relaxed);
            });
        };
        let freers: Vec<_> = (0..2)
            .map(|_| {
                let (pending, owners, doubles) = (pending.clone(), owners.clone(), doubles.clone());
                thread::spawn(move || match slab.free_remote(a) {
                    Some(push) => {
                        if push {
                            pending.push(slab);
                            if owners.idle_after_queueing(0) {
                                owners.drain_while_idle(0, &pending, || absorb(&pending, &doubles));
                            }
                        }
                        1
                    }
                    None => 0,
                })
            })
            .collect();
        // The owner gives the slot up.
        absorb(&pending, &doubles);
        owners.release(0);
        if !mutant {
            owners.drain_while_idle(0, &pending, || absorb(&pending, &doubles));
        }
        let accepted: usize = freers.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(pending.is_empty(), "a queued slab was stranded");
        assert!(owners.claim(0), "every drainer gave the slot back");
        // SAFETY: we own the slot again; every other thread has exited.
        unsafe {
            assert!(!slab.is_queued(), "a queued slab was stranded");
            slab.check();
            assert_eq!(slab.nr_allocated(), 1, "the object was freed once");
        }
        assert_eq!(accepted - doubles.load(Relaxed), 1, "freed exactly once");
        let _ = keep;
    });
}
