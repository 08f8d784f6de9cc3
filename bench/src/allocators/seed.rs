//! The published seed, `buddy-slab-allocator` 0.6.1, set up as its README and its own tests
//! do: a host spin-lock provider for `ax-sync` (no IRQ masking on the host), a static slab
//! pool of [`SEED_CPU_SLOTS`] `PerCpuSlab`s, and a thread-local CPU id.
//!
//! The seed is a process-wide singleton (`GlobalAllocator::init` refuses a second live
//! instance) and its slab pool is a global hook, so only one [`SeedBench`] may exist at a time;
//! `create` resets the per-CPU slabs, which is sound because no other instance is live then.

use core::{
    alloc::Layout,
    cell::Cell,
    panic::Location,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};
use std::sync::OnceLock;

use ax_sync::interface::{AcquireResult, ContextState, LockMetadata};
use seed::{GlobalAllocator, PerCpuSlab, SlabPoolTrait, SlabTrait, interface::BuddySlabIf};

use super::{BenchAlloc, PAGE_BYTES};
use crate::arena::Arena;

/// Number of per-CPU slab slots in the host slab pool. Threads take slots round-robin, so any
/// 64 consecutively started threads have distinct CPU ids (the harness runs at most 3 at once).
pub const SEED_CPU_SLOTS: usize = 64;

/// ax-sync spin-lock backend for the host: a plain test-and-set lock, no IRQ or preemption
/// control (the kernel runtime links the real one).
struct HostSpinOps;

#[ax_crate_interface::impl_interface]
impl ax_sync::interface::SpinOps for HostSpinOps {
    fn acquire(
        locked: &AtomicBool,
        _metadata: &LockMetadata,
        _lock_addr: usize,
        _context: u8,
        _subclass: u32,
        _caller: &'static Location<'static>,
    ) -> ContextState {
        while locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        ContextState::new(0, 0)
    }

    fn try_acquire(
        locked: &AtomicBool,
        _metadata: &LockMetadata,
        _lock_addr: usize,
        _context: u8,
        _subclass: u32,
        _caller: &'static Location<'static>,
    ) -> AcquireResult {
        let acquired = locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        AcquireResult::new(acquired, ContextState::new(0, 0))
    }

    fn release(locked: &AtomicBool, _lock_addr: usize, _context: u8, _state: ContextState) {
        locked.store(false, Ordering::Release);
    }

    fn force_release(locked: &AtomicBool, _lock_addr: usize, _context: u8) {
        locked.store(false, Ordering::Release);
    }

    fn is_locked(locked: &AtomicBool) -> bool {
        locked.load(Ordering::Acquire)
    }
}

/// Next CPU slot to hand to a thread that has none yet.
static NEXT_CPU_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's seed CPU id, taken on first use.
    static CPU_SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The calling thread's seed CPU id.
fn current_cpu_slot() -> usize {
    CPU_SLOT.with(|slot| match slot.get() {
        Some(cpu) => cpu,
        None => {
            let cpu = NEXT_CPU_SLOT.fetch_add(1, Ordering::Relaxed) % SEED_CPU_SLOTS;
            slot.set(Some(cpu));
            cpu
        }
    })
}

/// The host slab pool: one `PerCpuSlab` per slot, selected by the thread's slot.
struct HostSlabPool {
    slabs: Box<[PerCpuSlab<PAGE_BYTES>]>,
}

impl SlabPoolTrait for HostSlabPool {
    fn current_slab(&self) -> &dyn SlabTrait {
        &self.slabs[current_cpu_slot()]
    }

    fn owner_slab(&self, cpu_idx: usize) -> &dyn SlabTrait {
        &self.slabs[cpu_idx]
    }
}

fn host_slab_pool() -> &'static HostSlabPool {
    static POOL: OnceLock<HostSlabPool> = OnceLock::new();
    POOL.get_or_init(|| HostSlabPool {
        slabs: (0..SEED_CPU_SLOTS)
            .map(|cpu| PerCpuSlab::new(cpu as u16))
            .collect(),
    })
}

struct HostBuddySlabIf;

#[ax_crate_interface::impl_interface]
impl BuddySlabIf for HostBuddySlabIf {
    fn virt_to_phys(vaddr: usize) -> usize {
        vaddr
    }

    fn slab_pool() -> &'static dyn SlabPoolTrait {
        host_slab_pool()
    }
}

/// The seed over one arena. At most one instance may exist at a time.
pub struct SeedBench {
    /// Boxed so its address is stable (the seed's buddy must not move after init).
    heap: Box<GlobalAllocator<PAGE_BYTES>>,
    arena: Arena,
}

impl BenchAlloc for SeedBench {
    const NAME: &'static str = "seed-0.6.1";
    const HAS_PAGE_API: bool = true;

    fn create(arena_bytes: usize) -> Self {
        let mut arena = Arena::new(arena_bytes);
        // Slabs left by a previous (dropped) instance point into an unmapped arena: forget them.
        for slab in host_slab_pool().slabs.iter() {
            slab.reset();
        }
        let heap = Box::new(GlobalAllocator::<PAGE_BYTES>::new());
        // SAFETY: the arena is used by this allocator alone and outlives it (field order).
        unsafe { heap.init(arena.as_mut_slice()) }
            .expect("seed init failed (is another SeedBench alive?)");
        Self { heap, arena }
    }

    fn arena_bytes(&self) -> Option<usize> {
        Some(self.arena.len_bytes())
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap
            .alloc(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract: `ptr` is a live non-null block of this allocator.
        unsafe {
            self.heap
                .dealloc(core::ptr::NonNull::new_unchecked(ptr), layout)
        }
    }

    fn alloc_pages(&self, count: usize, align_bytes: usize) -> Option<usize> {
        self.heap.alloc_pages(count, align_bytes).ok()
    }

    unsafe fn dealloc_pages(&self, addr: usize, count: usize) {
        self.heap.dealloc_pages(addr, count);
    }
}
