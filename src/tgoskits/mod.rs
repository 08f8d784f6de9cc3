//! tgoskits binding (feature `tgoskits`): the [`Platform`] of a kernel of
//! the tgoskits ArceOS line (the `ax-*` crates: ax-std 0.7, ax-runtime
//! 0.13, ax-hal 0.8, ax-alloc 0.9), beside the 0.3 line's
//! [`arceos`](crate::arceos) binding.
//!
//! - CPU pinning: an `ax_sync::PreemptIrqSaveGuard`, so neither preemption
//!   nor a local interrupt can run another allocator call on this CPU while
//!   the core touches its slot;
//! - the CPU id: a per-CPU variable in the CPU's ax-percpu area, bound once
//!   per CPU by [`bind_current_cpu`] (ax-alloc's `init_percpu_slab`, which
//!   ax-runtime calls at CPU bring-up) to the index of that area; until a
//!   CPU is bound its calls take the shared slot;
//! - the CPU count: the line's `SMP` build setting (the environment
//!   variable ax-hal, ax-runtime and axplat-dyn read at build time;
//!   default 16, as ax-hal's `CPU_CAPACITY`), see [`MAX_CPUS`];
//! - an IRQ-safe lock, [`IrqSafeLock`], for the buddy and the shared slot;
//! - virtual-to-physical translation through a registered translator,
//!   [`set_virt_to_phys`] (ax-alloc registers `ax_plat::mem::virt_to_phys`;
//!   a hypervisor may register its own).
//!
//! ax-plat is not a dependency of this crate: it pulls rdrive and acpi,
//! which need a nightly compiler even on the host, while ax-percpu and
//! ax-sync build on stable; ax-alloc, which depends on ax-plat anyway,
//! registers the translation. ax-hal is above ax-alloc in the stack, so it
//! cannot be used here (as on the 0.3 line axhal is above axalloc).

use crate::platform::Platform;
use crate::sync::{AtomicPtr, Ordering, RawLock, SpinLock};
use ax_sync::PreemptIrqSaveGuard;
use memory_addr::{PhysAddr, VirtAddr};

/// Page size of every platform of the line.
pub const PAGE_SIZE: usize = 0x1000;

/// The global allocator of a tgoskits kernel.
pub type TgoskitsHeap = crate::GlobalAllocator<PAGE_SIZE, TgoskitsPlatform>;

/// CPU capacity used when `SMP` is not set at build time (ax-hal's default).
pub const DEFAULT_MAX_CPUS: usize = 16;

/// The number of CPU slots: the `SMP` environment variable at build time
/// (decimal or `0x` hex, `_` allowed, as ax-hal parses it), else
/// [`DEFAULT_MAX_CPUS`]. A malformed or zero value fails the build.
///
/// `option_env!` is tracked by cargo, so a change of `SMP` rebuilds this
/// crate as it rebuilds ax-hal. CPUs whose index is at or beyond it (a
/// machine with more CPUs than the kernel was built for; ax-runtime parks
/// them) would take the shared slot.
pub const MAX_CPUS: usize = match option_env!("SMP") {
    Some(smp) => parse_cpu_count(smp),
    None => DEFAULT_MAX_CPUS,
};

/// Parses `SMP` at compile time (see [`MAX_CPUS`]).
const fn parse_cpu_count(s: &str) -> usize {
    let b = s.as_bytes();
    let (radix, mut i) = if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
        (16, 2)
    } else {
        (10, 0)
    };
    let mut value: usize = 0;
    let mut digits = 0;
    while i < b.len() {
        let d = match b[i] {
            b'_' => {
                i += 1;
                continue;
            }
            c @ b'0'..=b'9' => (c - b'0') as usize,
            c @ b'a'..=b'f' if radix == 16 => (c - b'a' + 10) as usize,
            c @ b'A'..=b'F' if radix == 16 => (c - b'A' + 10) as usize,
            _ => panic!("SMP is not a number"),
        };
        value = match value.checked_mul(radix) {
            Some(v) => match v.checked_add(d) {
                Some(v) => v,
                None => panic!("SMP is too large"),
            },
            None => panic!("SMP is too large"),
        };
        digits += 1;
        i += 1;
    }
    assert!(digits > 0 && value > 0, "SMP must be a positive number");
    value
}

/// Value of [`SLOT_ID`] on a CPU that has not been bound.
const UNBOUND: usize = usize::MAX;

/// The CPU slot of this CPU, [`UNBOUND`] until [`bind_current_cpu`] runs
/// on it. Written once per CPU, on that CPU, with IRQs and preemption off;
/// read only by the CPU itself, pinned (ax-percpu keeps primitive per-CPU
/// values in their atomic representation, so an interrupt reading it on
/// the same CPU is no data race).
#[ax_percpu::def_percpu]
static SLOT_ID: usize = UNBOUND;

/// Why [`bind_current_cpu`] refused to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// This CPU's ax-percpu area is not installed yet.
    NoCpuArea,
    /// The id given is not the index of this CPU's area.
    WrongCpu {
        /// The id the caller named.
        given: usize,
        /// The index of the area the CPU runs on.
        area: usize,
    },
    /// The CPU's index is at or beyond [`MAX_CPUS`]: it keeps the shared slot.
    BeyondCapacity(usize),
    /// This CPU was bound before (to this id).
    AlreadyBound(usize),
}

impl core::fmt::Display for BindError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NoCpuArea => f.write_str("the CPU's per-CPU area is not installed"),
            Self::WrongCpu { given, area } => {
                write!(f, "CPU id {given} given on the CPU of per-CPU area {area}")
            }
            Self::BeyondCapacity(id) => {
                write!(f, "CPU {id} is beyond the {MAX_CPUS} CPU slots (SMP)")
            }
            Self::AlreadyBound(id) => write!(f, "CPU {id} is bound already"),
        }
    }
}

/// Gives the calling CPU its own slot: from now on its allocator calls use
/// slot `cpu_id` instead of the shared one. ax-alloc's `init_percpu_slab`
/// calls it at CPU bring-up (before the heap exists on the primary CPU).
///
/// `cpu_id` must be the index of the ax-percpu area this CPU runs on (the
/// id ax-plat's `this_cpu_id` returns), so that two CPUs can never share a
/// slot; anything else is refused and the CPU stays on the shared slot,
/// which is always sound.
///
/// # Errors
///
/// See [`BindError`]; nothing changes on error.
pub fn bind_current_cpu(cpu_id: usize) -> Result<(), BindError> {
    let _guard = PreemptIrqSaveGuard::new();
    // SAFETY: the guard keeps this context on its CPU (no preemption, no
    // local IRQ) for the whole callback.
    let bound = unsafe {
        ax_percpu::with_cpu_pin(|pin| {
            let area = ax_percpu::current_cpu_index(pin).as_usize();
            if area != cpu_id {
                return Err(BindError::WrongCpu {
                    given: cpu_id,
                    area,
                });
            }
            if area >= MAX_CPUS {
                return Err(BindError::BeyondCapacity(area));
            }
            let old = SLOT_ID.read_current(pin);
            if old != UNBOUND {
                return Err(BindError::AlreadyBound(old));
            }
            SLOT_ID.write_current(pin, area);
            Ok(())
        })
    };
    bound.map_err(|_| BindError::NoCpuArea)?
}

/// The slot id bound on the current CPU, or [`UNBOUND`] (also when the CPU
/// has no per-CPU area yet, early in its bring-up).
#[inline(always)]
fn current_slot_id() -> usize {
    // SAFETY: callers hold a `CpuPin` of this module (IRQs and preemption
    // off), so the context stays on its CPU for the whole callback.
    unsafe { ax_percpu::with_cpu_pin(|pin| SLOT_ID.read_current(pin)) }.unwrap_or(UNBOUND)
}

/// Keeps the current context on its CPU: IRQs and preemption stay off while
/// it lives, and are restored on drop.
pub struct CpuPin {
    _guard: PreemptIrqSaveGuard,
}

/// Lock for the allocator's shared state (the buddy, the shared slot):
/// spins with local IRQs and preemption off (`ax_sync::PreemptIrqSaveGuard`,
/// the line's guard), so it is safe from any context, interrupt handlers
/// included.
///
/// The spinning itself is the core's test-and-test-and-set
/// [`SpinLock`](crate::sync::SpinLock) rather than `ax_sync::SpinLock`:
/// every instance would share one lockdep class (`RawLock::UNLOCKED` is a
/// single constant), and the core nests the shared slot's lock around the
/// buddy's (lock order 1, 2), which lockdep would take for recursion.
pub struct IrqSafeLock(SpinLock);

// SAFETY: `SpinLock` admits one holder at a time; IRQs and preemption are
// off on the holder's CPU from before it takes the lock until after it
// releases it, so no handler on that CPU can wait for it.
unsafe impl RawLock for IrqSafeLock {
    const UNLOCKED: Self = Self(SpinLock::UNLOCKED);

    #[inline]
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        // Dropped after `with` returns, so after the lock is released.
        let _guard = PreemptIrqSaveGuard::new();
        self.0.with(f)
    }
}

/// A translation of kernel virtual addresses of managed memory to physical
/// ones (see [`set_virt_to_phys`]).
///
/// Raw `usize`: the line's address types come from ax-memory-addr (0.7),
/// a different crate from the core's memory_addr 0.4, so ax-alloc's
/// `ax_plat::mem::virt_to_phys` is adapted with `as_usize`/`from` on its
/// side and [`TgoskitsPlatform`] wraps the result in the core's
/// [`PhysAddr`] on this side.
pub type VirtToPhys = fn(usize) -> usize;

/// The registered [`VirtToPhys`], as a pointer; null while none is.
static VIRT_TO_PHYS: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Registers the translation used for every later `virt_to_phys` of the
/// core: ax-alloc registers `ax_plat::mem::virt_to_phys`, a hypervisor its
/// own. Call it before the allocator's `init`: a region is split at the
/// lowmem limit (4 GiB, for DMA32) by the physical address it has when it
/// is added.
///
/// Without a translation every address counts as high memory (physical
/// address `usize::MAX`): no page is lowmem, so `alloc_pages_lowmem` fails
/// rather than hand out memory whose physical address is unknown.
///
/// The translation runs under the allocator's buddy lock: it must not
/// allocate or take the allocator's locks (the [`Platform`] contract).
pub fn set_virt_to_phys(translate: VirtToPhys) {
    VIRT_TO_PHYS.store(translate as *mut (), Ordering::Release);
}

/// The tgoskits platform.
pub struct TgoskitsPlatform;

// SAFETY: while a `CpuPin` lives, local interrupts and preemption are off on
// this CPU, so no other context runs on it until the pin drops (an
// interrupt cannot arrive; nested contexts are excluded altogether). A CPU
// reads its slot id from its own ax-percpu area, where `bind_current_cpu`
// stored the index of that very area, and areas have distinct indices, so
// two CPUs never hold the same id; every id is below MAX_CPUS (else
// `None`). `IrqSafeLock` is a spin lock that masks interrupts. `cpu_id`,
// `cpu_id_hint` and `virt_to_phys` neither allocate nor lock (the
// registered translation is bound by `set_virt_to_phys`'s contract).
unsafe impl Platform for TgoskitsPlatform {
    type Lock = IrqSafeLock;
    type Pin = CpuPin;

    #[inline]
    fn pin() -> CpuPin {
        CpuPin {
            _guard: PreemptIrqSaveGuard::new(),
        }
    }

    #[inline]
    fn cpu_id(_pin: &CpuPin) -> Option<usize> {
        let id = current_slot_id();
        (id < MAX_CPUS).then_some(id)
    }

    /// One per-CPU load: [`UNBOUND`] (beyond every slot) on a CPU that has
    /// no slot.
    #[inline(always)]
    fn cpu_id_hint(_pin: &CpuPin) -> usize {
        current_slot_id()
    }

    fn max_cpus() -> usize {
        MAX_CPUS
    }

    /// The registered translation, converted at the seam: the line's
    /// address types are ax-memory-addr's, not the core's memory_addr 0.4.
    fn virt_to_phys(vaddr: VirtAddr) -> PhysAddr {
        let f = VIRT_TO_PHYS.load(Ordering::Acquire);
        if f.is_null() {
            return PhysAddr::from_usize(usize::MAX);
        }
        // SAFETY: only `set_virt_to_phys` stores here, a `VirtToPhys` cast
        // to a pointer; function and data pointers have one size here.
        let translate = unsafe { core::mem::transmute::<*mut (), VirtToPhys>(f) };
        PhysAddr::from_usize(translate(vaddr.as_usize()))
    }
}

/// `[start, start + size)` as the byte slice the allocator takes.
///
/// # Safety
///
/// The range is valid, writable memory that nothing else uses, for as long
/// as the allocator lives.
pub unsafe fn region<'a>(start: usize, size: usize) -> &'a mut [u8] {
    // SAFETY: caller contract.
    unsafe { core::slice::from_raw_parts_mut(core::ptr::with_exposed_provenance_mut(start), size) }
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_count;

    #[test]
    fn smp_values_parse_as_ax_hal_parses_them() {
        assert_eq!(parse_cpu_count("4"), 4);
        assert_eq!(parse_cpu_count("1_024"), 1024);
        assert_eq!(parse_cpu_count("0x10"), 16);
    }

    #[test]
    #[should_panic(expected = "SMP is not a number")]
    fn a_malformed_smp_is_refused() {
        parse_cpu_count("4x");
    }
}
