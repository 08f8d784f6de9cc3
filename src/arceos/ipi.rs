//! Drains on request by inter-processor interrupt (feature `ipi`): when an
//! allocation is still short of memory after a reclaim, every other CPU is
//! interrupted and drains its slot of the heap in the handler, busy and
//! idle CPUs alike (an idle CPU makes no slow path that would honour the
//! reclaim epoch).
//!
//! The handler is registered for axconfig's `IPI_IRQ` with axplat on the
//! first request (after boot, when the interrupt controller is up). If the
//! IRQ already has a handler (axruntime's `ipi` feature registers axipi's),
//! requests are not sent and the epoch alone asks CPUs to drain. A caller
//! with local IRQs off (an IRQ handler, a holder of an IRQ-safe lock) sends
//! none either: it could wait for a CPU that waits for it. A request waits
//! at most `WAIT_NANOS` for the answers: a CPU that runs with IRQs off
//! answers later or not at all, and the allocation goes on without it.
//! Targets are the CPUs the platform runs (`axplat::power::cpu_num`), not
//! `MAX_CPU_NUM`. A platform whose `send_ipi` is unimplemented (axplat-dyn
//! 0.3.0-preview.3 panics there) must not enable the feature.
//!
//! Invariant I1: the handler drains only while `HOOK` holds an instance,
//! and `ACTIVE` counts the handlers between loading `HOOK` and their last
//! use of it; `unregister` clears `HOOK` and then waits for `ACTIVE` to be
//! 0, so no drain runs on an instance once its unregistration returned.

use crate::platform::{DrainHook, Platform};
use axconfig::plat::MAX_CPU_NUM;
use axplat::irq::IpiTarget;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use kspin::SpinNoIrq;

/// The longest a request waits for the other CPUs' answers (the knob
/// `arceos.ipi-wait-us`).
const WAIT_NANOS: u64 = crate::config::arceos::IPI_WAIT_US as u64 * 1000;
/// Drains one interrupt may run: a request made while the handler drained
/// may have lost its interrupt (riscv64 clears the pending bit after the
/// handler), so the handler drains again for it, a few times at most.
const DRAINS_PER_IRQ: usize = 4;

/// The heap the handler drains (one instance: the kernel's global heap).
static HOOK: SpinNoIrq<Option<DrainHook>> = SpinNoIrq::new(None);
/// Handlers between taking `HOOK` and their last use of it (I1).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Requests made so far; a request's number is the count after it.
static REQUESTS: AtomicUsize = AtomicUsize::new(0);
/// The last request each CPU answered.
static ANSWERED: [AtomicUsize; MAX_CPU_NUM] = [const { AtomicUsize::new(0) }; MAX_CPU_NUM];

/// Whether the handler is registered: `UNTRIED`, `BUSY` (being
/// registered), `READY`, or `REFUSED` (the IRQ had a handler).
static HANDLER: AtomicU8 = AtomicU8::new(UNTRIED);
const UNTRIED: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const REFUSED: u8 = 3;

/// Remembers the heap the handler drains (the first registered instance).
pub(super) fn register(hook: DrainHook) {
    let mut h = HOOK.lock();
    if h.is_none() {
        *h = Some(hook);
    }
}

/// Forgets `instance`; once this returns no handler drains it (I1).
pub(super) fn unregister(instance: *const ()) {
    {
        let mut h = HOOK.lock();
        if h.is_some_and(|k| k.instance() == instance) {
            *h = None;
        }
    }
    while ACTIVE.load(Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
}

/// Registers the handler on the first call; whether it is registered.
fn handler_ready() -> bool {
    match HANDLER.compare_exchange(UNTRIED, BUSY, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            let ok = axplat::irq::register(axconfig::devices::IPI_IRQ, on_drain_request);
            HANDLER.store(if ok { READY } else { REFUSED }, Ordering::Release);
            ok
        }
        Err(state) => state == READY,
    }
}

/// Interrupts every other CPU and waits (bounded) for their drains; whether
/// any answered.
pub(super) fn drain_other_cpus() -> bool {
    if !axcpu::asm::irqs_enabled() || HOOK.lock().is_none() || !handler_ready() {
        return false;
    }
    let me = axplat::percpu::this_cpu_id();
    let cpus = axplat::power::cpu_num().min(MAX_CPU_NUM);
    let request = REQUESTS.fetch_add(1, Ordering::AcqRel) + 1;
    let others = || (0..cpus).filter(move |&cpu| cpu != me);
    for cpu in others() {
        axplat::irq::send_ipi(axconfig::devices::IPI_IRQ, IpiTarget::Other { cpu_id: cpu });
    }
    let answered = || {
        others()
            .filter(|&cpu| ANSWERED[cpu].load(Ordering::Acquire) >= request)
            .count()
    };
    let deadline = axplat::time::monotonic_time_nanos() + WAIT_NANOS;
    let want = others().count();
    while answered() < want && axplat::time::monotonic_time_nanos() < deadline {
        core::hint::spin_loop();
    }
    answered() > 0
}

/// The IPI handler: drains this CPU's slot, answers the requests made
/// before each drain began, and drains again for one made meanwhile.
fn on_drain_request() {
    let mut request = REQUESTS.load(Ordering::Acquire);
    for _ in 0..DRAINS_PER_IRQ {
        drain_this_cpu(request);
        let now = REQUESTS.load(Ordering::Acquire);
        if now == request {
            break;
        }
        request = now;
    }
}

/// Drains this CPU's slot of the registered heap and answers `request`.
fn drain_this_cpu(request: usize) {
    ACTIVE.fetch_add(1, Ordering::AcqRel);
    let hook = *HOOK.lock();
    let pin = super::ArceOsPlatform::pin();
    let cpu = super::ArceOsPlatform::cpu_id(&pin);
    let faults = hook.zip(cpu).map(|(hook, cpu)| {
        // SAFETY: the heap is registered, so alive, until `unregister`,
        // which waits for this handler (I1); an interrupt handler runs with
        // IRQs off, so no allocator call is in progress on this CPU (each
        // keeps IRQs off while it holds the slot) and the pin makes this
        // context the slot's owner (O1).
        unsafe { hook.drain(cpu) }
    });
    drop(pin);
    ACTIVE.fetch_sub(1, Ordering::AcqRel);
    if let Some(answered) = cpu.and_then(|cpu| ANSWERED.get(cpu)) {
        answered.fetch_max(request, Ordering::AcqRel);
    }
    if let Some(faults) = faults {
        faults.report();
    }
}
