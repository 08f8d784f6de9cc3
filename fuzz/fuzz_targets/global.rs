//! The `GlobalAllocator` facade against a shadow model, on a platform whose
//! current CPU the input switches (so frees become remote, and CPU ids past
//! the configured count hit the shared slot), with lowmem straddling the
//! 4 GiB limit and deliberately bad frees whose rejections are counted.
#![no_main]

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use buddy_slab_allocator::sync::SpinLock;
use buddy_slab_allocator::{AllocError, GlobalAllocator, PhysAddr, Platform, SlabAllocator, VirtAddr};
use common::{Arena, PAGE, Shadow};
use core::alloc::Layout;
use core::ptr::NonNull;
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const CPUS: usize = 3;
const LOWMEM_LIMIT: usize = 1 << 32;

std::thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}
/// The first region's start, mapped to 256 KiB below the lowmem limit.
static BASE: AtomicUsize = AtomicUsize::new(0);

struct FuzzPlatform;

// SAFETY: the fuzzer runs one input at a time on one thread, and one
// allocator per input: a CPU id is only ever used by that thread, and it
// switches ids only between calls (no pin is held across a switch).
unsafe impl Platform for FuzzPlatform {
    type Lock = SpinLock;
    type Pin = ();
    fn pin() {}
    fn cpu_id(_: &()) -> Option<usize> {
        // Ids ≥ CPUS break the platform contract on purpose: the facade
        // must fall back to the shared slot.
        Some(CPU.with(Cell::get))
    }
    fn max_cpus() -> usize {
        CPUS
    }
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        PhysAddr::from_usize(vaddr.as_usize().wrapping_sub(BASE.load(Relaxed)).wrapping_add(LOWMEM_LIMIT - (256 << 10)))
    }
}

type Heap = GlobalAllocator<PAGE, FuzzPlatform>;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Action {
    Alloc { size: u16, align_shift: u8 },
    AllocLarge { size: u16, align_shift: u8 },
    Free { pick: u16 },
    Realloc { pick: u16, new_size: u16 },
    AllocPages { count: u8, align_shift: u8 },
    AllocPagesLowmem { count: u8 },
    AllocPagesAt { page: u16, count: u8 },
    FreePages { pick: u16 },
    AddRegion { pages: u8, offset: u16 },
    Drain,
    SwitchCpu { cpu: u8 },
    DoubleFree { pick: u8 },
    InteriorFree { pick: u16, offset: u16 },
    ForeignFree { offset: u16 },
    WrongLayoutFree { pick: u16, size: u16 },
    WrongCountFree { pick: u16, extra: u8 },
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// From `alloc` (small or large), freed with `dealloc(layout)`.
    Object(Layout),
    /// From `alloc_pages*`, freed with `dealloc_pages(count)`.
    Pages(usize),
}

fn class_of(layout: Layout) -> Option<u8> {
    SlabAllocator::<PAGE>::default_table()
        .class_for(layout)
        .ok()
        .map(|c| c.index() as u8)
}

fuzz_target!(|actions: Vec<Action>| {
    let arena = Arena::new(2 << 20, PAGE);
    BASE.store(arena.addr() + PAGE, Relaxed);
    let foreign = Arena::new(64 << 10, 64 << 10);
    let mut extra: Vec<Arena> = Vec::new();
    CPU.with(|c| c.set(0));
    let mut heap = Box::new(Heap::new());
    // SAFETY: the arena outlives the heap (dropped after it, below).
    unsafe { heap.init(arena.region(0)).unwrap() };
    let baseline = heap.allocated_bytes();
    let mut m: Shadow<Kind> = Shadow::new();
    let mut freed: Vec<(usize, Kind)> = Vec::new();
    let mut expected_invalid = 0;

    for (n, &action) in actions.iter().take(512).enumerate() {
        match action {
            Action::Alloc { size, align_shift } => {
                let size = (size as usize % 2048) + 1;
                let layout = Layout::from_size_align(size, 1 << (align_shift % 12)).unwrap();
                alloc(&heap, &mut m, layout);
            }
            Action::AllocLarge { size, align_shift } => {
                let size = 2049 + size as usize % (64 << 10);
                let layout = Layout::from_size_align(size, 1 << (align_shift % 17)).unwrap();
                alloc(&heap, &mut m, layout);
            }
            Action::Free { pick } => {
                if let Some((p, _, _, Kind::Object(layout))) = m.pick(pick as usize, |k| matches!(k, Kind::Object(_))) {
                    m.remove(p);
                    // SAFETY: a live block of this heap with this layout.
                    unsafe { heap.dealloc(NonNull::new(p as *mut u8).unwrap(), layout) };
                    remember(&mut freed, p, Kind::Object(layout));
                }
            }
            Action::Realloc { pick, new_size } => {
                if let Some((p, len, tag, Kind::Object(layout))) = m.pick(pick as usize, |k| matches!(k, Kind::Object(_))) {
                    let new_size = new_size as usize % (20 << 10) + 1;
                    m.remove(p);
                    // SAFETY: a live block of this heap with this layout.
                    match unsafe { heap.realloc(NonNull::new(p as *mut u8).unwrap(), layout, new_size) } {
                        Ok(q) => {
                            common::check_prefix(q.as_ptr() as usize, len, len.min(new_size), tag);
                            let nl = Layout::from_size_align(new_size, layout.align()).unwrap();
                            m.insert(q.as_ptr() as usize, new_size, Kind::Object(nl));
                        }
                        Err(e) => {
                            assert_eq!(e, AllocError::NoMemory);
                            m.insert(p, len, Kind::Object(layout));
                        }
                    }
                }
            }
            Action::AllocPages { count, align_shift } => {
                let (count, align) = (count as usize % 24 + 1, PAGE << (align_shift % 6));
                match heap.alloc_pages(count, align) {
                    Ok(a) => {
                        assert_eq!(a % align, 0, "misaligned run");
                        m.insert(a, count * PAGE, Kind::Pages(count));
                    }
                    Err(e) => assert_eq!(e, AllocError::NoMemory),
                }
            }
            Action::AllocPagesLowmem { count } => {
                let count = count as usize % 8 + 1;
                match heap.alloc_pages_lowmem(count, 0) {
                    Ok(a) => {
                        assert!(FuzzPlatform::virt_to_phys(VirtAddr::from_usize(a + count * PAGE - 1)).as_usize() < LOWMEM_LIMIT, "not lowmem");
                        m.insert(a, count * PAGE, Kind::Pages(count));
                    }
                    Err(e) => assert_eq!(e, AllocError::NoMemory),
                }
            }
            Action::AllocPagesAt { page, count } => {
                let count = count as usize % 8 + 1;
                let addr = (arena.addr() + (page as usize % 520) * PAGE) & !(PAGE - 1);
                match heap.alloc_pages_at(addr, count) {
                    Ok(a) => {
                        assert_eq!(a, addr);
                        m.insert(a, count * PAGE, Kind::Pages(count));
                    }
                    Err(e) => {
                        assert!(matches!(e, AllocError::NoMemory | AllocError::NotAllocated), "{e:?}");
                        // Refused only if a page there is not free: some
                        // page is live, cached, metadata or out of range.
                    }
                }
            }
            Action::FreePages { pick } => {
                if let Some((a, _, _, Kind::Pages(count))) = m.pick(pick as usize, |k| matches!(k, Kind::Pages(_))) {
                    m.remove(a);
                    // SAFETY: a live run of this heap.
                    unsafe { heap.dealloc_pages(a, count).unwrap() };
                    remember(&mut freed, a, Kind::Pages(count));
                }
            }
            Action::AddRegion { pages, offset } => {
                let a = Arena::new((pages as usize % 64 + 1) * PAGE + 64, PAGE);
                let offset = offset as usize % 64;
                // SAFETY: the arena is kept until the heap is gone.
                match unsafe { heap.add_region(a.region(offset)) } {
                    Ok(()) => extra.push(a),
                    Err(e) => assert!(matches!(e, AllocError::InvalidParam | AllocError::TooManyRegions), "{e:?}"),
                }
            }
            Action::Drain => heap.drain(),
            Action::SwitchCpu { cpu } => CPU.with(|c| c.set(cpu as usize % (CPUS + 2))),
            Action::DoubleFree { pick } => {
                if freed.is_empty() {
                    continue;
                }
                let (p, kind) = freed[pick as usize % freed.len()];
                if m.covering(p).is_some() {
                    continue; // handed out again since: not a double free
                }
                expected_invalid += 1;
                // SAFETY: a deliberate double free; it must be rejected.
                unsafe {
                    match kind {
                        Kind::Object(layout) => heap.dealloc(NonNull::new(p as *mut u8).unwrap(), layout),
                        Kind::Pages(count) => assert_eq!(heap.dealloc_pages(p, count), Err(AllocError::NotAllocated)),
                    }
                }
            }
            Action::InteriorFree { pick, offset } => {
                if let Some((p, len, _, kind)) = m.pick(pick as usize, |_| true) {
                    if len < 2 {
                        continue;
                    }
                    let q = p + 1 + offset as usize % (len - 1);
                    expected_invalid += 1;
                    // SAFETY: a deliberate interior free; it must be rejected.
                    unsafe {
                        match kind {
                            Kind::Object(layout) => heap.dealloc(NonNull::new(q as *mut u8).unwrap(), layout),
                            Kind::Pages(count) => assert_eq!(heap.dealloc_pages(q, count), Err(AllocError::NotAllocated)),
                        }
                    }
                }
            }
            Action::ForeignFree { offset } => {
                let q = foreign.addr() + (offset as usize % (64 << 10)) / 8 * 8;
                expected_invalid += 1;
                // SAFETY: a deliberate foreign free; it must be rejected.
                unsafe { heap.dealloc(NonNull::new(q as *mut u8).unwrap(), Layout::from_size_align(8, 8).unwrap()) };
            }
            Action::WrongLayoutFree { pick, size } => {
                if let Some((p, _, _, Kind::Object(layout))) = m.pick(pick as usize, |k| matches!(k, Kind::Object(_))) {
                    let wrong = Layout::from_size_align(size as usize % 2048 + 1, 1).unwrap();
                    let small = layout.size() <= 2048 && layout.align() <= 2048;
                    if small && class_of(wrong) == class_of(layout) {
                        continue; // same class: that free would be valid
                    }
                    expected_invalid += 1;
                    // SAFETY: a deliberate free with a wrong layout; it must
                    // be rejected, the block stays live.
                    unsafe { heap.dealloc(NonNull::new(p as *mut u8).unwrap(), wrong) };
                }
            }
            Action::WrongCountFree { pick, extra } => {
                if let Some((a, _, _, Kind::Pages(count))) = m.pick(pick as usize, |k| matches!(k, Kind::Pages(_))) {
                    expected_invalid += 1;
                    let wrong = count + 1 + extra as usize % 4;
                    // SAFETY: a deliberate wrong count; it must be rejected.
                    assert_eq!(unsafe { heap.dealloc_pages(a, wrong) }, Err(AllocError::NotAllocated));
                }
            }
        }
        if n % 8 == 7 {
            heap.check_invariants();
        }
    }

    // Everything back; every CPU's remote frees absorbed; nothing leaked.
    heap.check_invariants();
    let live: Vec<usize> = m.live.keys().copied().collect();
    for p in live {
        let (_, _, kind) = m.remove(p);
        // SAFETY: live blocks of this heap.
        unsafe {
            match kind {
                Kind::Object(layout) => heap.dealloc(NonNull::new(p as *mut u8).unwrap(), layout),
                Kind::Pages(count) => heap.dealloc_pages(p, count).unwrap(),
            }
        }
    }
    heap.drain_all();
    heap.check_invariants();
    let stats = heap.stats();
    assert_eq!(stats.invalid_frees, expected_invalid, "rejected frees miscounted");
    assert_eq!((stats.poison_faults, stats.red_zone_faults), (0, 0), "false corruption report");
    assert_eq!(heap.allocated_bytes(), baseline, "memory leaked");
    drop(heap);
    drop(extra);
});

fn alloc(heap: &Heap, m: &mut Shadow<Kind>, layout: Layout) {
    match heap.alloc(layout) {
        Ok(p) => {
            assert_eq!(p.as_ptr() as usize % layout.align(), 0, "misaligned");
            m.insert(p.as_ptr() as usize, layout.size(), Kind::Object(layout));
        }
        Err(e) => assert_eq!(e, AllocError::NoMemory),
    }
}

fn remember(freed: &mut Vec<(usize, Kind)>, p: usize, kind: Kind) {
    if freed.len() == 16 {
        freed.remove(0);
    }
    freed.push((p, kind));
}
