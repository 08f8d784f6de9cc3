//! More threads than CPU slots (in its own test binary, so it cannot take
//! the slots that the remote-free tests in tests/global.rs rely on).

mod common;
use buddy_slab_allocator::GlobalAllocator;
use common::{PAGE, arena, check, fill};
use core::alloc::Layout;

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn many_threads_beyond_cpu_slots_stay_sound() {
    let h = Box::new(GlobalAllocator::<PAGE>::new());
    // SAFETY: leaked arena; boxed allocator.
    unsafe { h.init(arena(64 << 20, PAGE, 0)).unwrap() };
    std::thread::scope(|s| {
        for t in 0..40u64 {
            let h = &h;
            s.spawn(move || {
                let mut v = Vec::new();
                for i in 0..500u64 {
                    let size = 8 + ((i * 37 + t) % 2000) as usize;
                    let p = h.alloc(l(size, 8)).unwrap();
                    fill(p.as_ptr(), size, t << 20 | i);
                    v.push((p, size, t << 20 | i));
                }
                for (p, size, tag) in v {
                    check(p.as_ptr(), size, tag);
                    // SAFETY: allocated above.
                    unsafe { h.dealloc(p, l(size, 8)) };
                }
            });
        }
    });
    assert_eq!(h.stats().invalid_frees, 0);
    assert_eq!(h.stats().live_objects, 0);
}
