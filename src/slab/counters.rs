//! A CPU's slab counters: written by the owner only, read by anyone.

use super::{ClassStats, MAX_CLASSES, SizeClass, SizeClassTable, SlabStats};
use crate::stats::Counter;

/// One class's counters: written by the owner only (a relaxed load and
/// store, no read-modify-write), read by anyone.
pub(super) struct ClassCounters {
    pub(super) nr_slabs: Counter,
    /// Slabs on `empty`.
    pub(super) nr_empty: Counter,
    pub(super) live_objects: Counter,
}

impl ClassCounters {
    const fn new() -> Self {
        Self {
            nr_slabs: Counter::new(),
            nr_empty: Counter::new(),
            live_objects: Counter::new(),
        }
    }
}

/// A CPU's slab counters, readable from any CPU.
///
/// Invariant L2: `nr_slabs` counts the slabs of L1 per class, `nr_empty`
/// those on `empty`, `live_objects` the objects handed out and not freed
/// (remote frees count once absorbed).
pub(crate) struct SlabCounters {
    classes: [ClassCounters; MAX_CLASSES],
    /// Invariant L3: the size of the slabs this CPU holds that have no
    /// live object: those on `empty` lists and empty active slabs (a
    /// partial or full slab always has one).
    pub(super) empty_bytes: Counter,
    pub(super) invalid_frees: Counter,
    pub(super) poison_faults: Counter,
    pub(super) red_zone_faults: Counter,
}

impl SlabCounters {
    pub(crate) const fn new() -> Self {
        Self {
            classes: [const { ClassCounters::new() }; MAX_CLASSES],
            empty_bytes: Counter::new(),
            invalid_frees: Counter::new(),
            poison_faults: Counter::new(),
            red_zone_faults: Counter::new(),
        }
    }

    #[inline(always)]
    pub(super) fn class(&self, class: SizeClass) -> &ClassCounters {
        debug_assert!(class.index() < MAX_CLASSES);
        // SAFETY: C5: every `SizeClass` indexes a table of at most
        // MAX_CLASSES classes, the length of `classes`.
        unsafe { self.classes.get_unchecked(class.index()) }
    }

    /// Statistics of `class` of a table for pages of `PAGE_SIZE`.
    pub(crate) fn class_stats<const PAGE_SIZE: usize>(
        &self,
        table: &SizeClassTable<PAGE_SIZE>,
        class: SizeClass,
    ) -> ClassStats {
        let c = self.class(class);
        ClassStats {
            object_bytes: table.object_bytes(class),
            slabs: c.nr_slabs.get(),
            empty_slabs: c.nr_empty.get(),
            live_objects: c.live_objects.get(),
        }
    }

    /// Totals over every class of `table`.
    pub(crate) fn stats<const PAGE_SIZE: usize>(
        &self,
        table: &SizeClassTable<PAGE_SIZE>,
    ) -> SlabStats {
        let mut s = SlabStats {
            empty_bytes: self.empty_bytes.get(),
            invalid_frees: self.invalid_frees.get(),
            poison_faults: self.poison_faults.get(),
            red_zone_faults: self.red_zone_faults.get(),
            ..SlabStats::default()
        };
        for class in table.classes() {
            let c = self.class(class);
            s.slabs += c.nr_slabs.get();
            s.slab_bytes += c.nr_slabs.get() * (PAGE_SIZE << table.slab_order(class));
            s.live_objects += c.live_objects.get();
        }
        s
    }

    /// Bytes of slabs without a live object (L3).
    #[inline(always)]
    pub(crate) fn empty_bytes(&self) -> usize {
        self.empty_bytes.get()
    }

    /// Counts a free the facade rejected before it reached a slab.
    pub(crate) fn count_rejected_free(&self) {
        self.invalid_frees.add(1);
    }
}
