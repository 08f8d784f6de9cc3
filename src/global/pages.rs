//! Page runs: allocation, frees, in-place resizing, and the locked buddy
//! as the per-CPU page caches' source.

use super::GlobalAllocator;
use crate::buddy::{PageMeta, SectionCache};
use crate::cpu::{PageCache, PageSource, SlotRef};
use crate::error::{AllocError, AllocResult};
use crate::fault::FreeRejection;
use crate::platform::Platform;
use crate::sync::{AtomicUsize, Ordering};
use core::ptr::NonNull;
use memory_addr::{PhysAddr, VirtAddr};

impl<const PAGE_SIZE: usize, P: Platform> PageSource for GlobalAllocator<PAGE_SIZE, P> {
    #[inline(always)]
    fn meta<'s>(&'s self, sections: &mut SectionCache, addr: usize) -> Option<&'s PageMeta> {
        sections.meta(&self.map, addr, Self::PAGE_SHIFT)
    }

    fn refill(
        &self,
        order: u32,
        cpu: usize,
        out: &mut [usize],
        publish: impl FnOnce(usize),
    ) -> (usize, usize) {
        self.buddy.with(|b| {
            let n = b.alloc_cached_blocks(order, cpu, out);
            publish(n);
            (n, b.total_pages())
        })
    }

    fn flush(&self, order: u32, blocks: &[usize], publish: impl FnOnce()) -> Option<usize> {
        self.buddy.with(|b| {
            let refused = b.free_cached_blocks(order, blocks);
            publish();
            refused
        })
    }

    fn growing_cpus(&self) -> &AtomicUsize {
        &self.growing_cpus
    }
}

impl<const PAGE_SIZE: usize, P: Platform> GlobalAllocator<PAGE_SIZE, P> {
    /// Allocates `count` contiguous pages aligned to `align_bytes` (0 or a
    /// power of two). Small power-of-two runs come from the CPU's page cache.
    ///
    /// # Errors
    /// `InvalidParam`, `NoMemory`.
    #[inline]
    pub fn alloc_pages(&self, count: usize, align_bytes: usize) -> AllocResult<usize> {
        match self.alloc_pages_fast(count, align_bytes) {
            Some(addr) => Ok(addr),
            None => self
                .alloc_pages_ptr(count, align_bytes)
                .map(|p| p.as_ptr().addr()),
        }
    }

    /// The fast path: a block from the current CPU's page cache. `None`
    /// (nothing changed) when the request is not cacheable or the cache of
    /// its order is empty or corrupted.
    #[inline(always)]
    fn alloc_pages_fast(&self, count: usize, align_bytes: usize) -> Option<usize> {
        let order = PageCache::order_for(count, align_bytes >> Self::PAGE_SHIFT)?;
        if !(align_bytes == 0 || align_bytes.is_power_of_two()) {
            return None;
        }
        self.on_own_slot(|s| {
            if !s.slot.pending.is_empty() {
                return None;
            }
            // No reclaim check here: taking blocks shrinks the cache; the
            // free fast path, which grows it, checks.
            let (slot, local) = (s.slot, &mut *s.local);
            let sections = &mut local.sections;
            let addr = local
                .pages
                .pop_fast(order, |a| sections.meta(&self.map, a, Self::PAGE_SHIFT))?;
            slot.counters
                .pages
                .cached_bytes
                .set(local.pages.pages() << Self::PAGE_SHIFT);
            Some(addr)
        })
    }

    /// [`Self::alloc_pages`], returning a pointer to the run that carries the
    /// provenance of the region it lies in: what a caller needs to use the
    /// pages under strict provenance (free them with
    /// [`Self::dealloc_pages`] at `ptr.addr()`).
    ///
    /// # Errors
    /// `InvalidParam`, `NoMemory`.
    pub fn alloc_pages_ptr(&self, count: usize, align_bytes: usize) -> AllocResult<NonNull<u8>> {
        if count == 0 || !(align_bytes == 0 || align_bytes.is_power_of_two()) {
            return Err(AllocError::InvalidParam);
        }
        if let Some(order) = PageCache::order_for(count, align_bytes >> Self::PAGE_SHIFT)
            && let Some(Some(ptr)) = self.with_slot(|s, id| {
                self.visit(s, id);
                self.honour_reclaim(s, id);
                let addr = s.pages(self, self.budget_pages()).alloc(order)?;
                s.local.sections.meta(&self.map, addr, Self::PAGE_SHIFT)?;
                NonNull::new(s.local.sections.ptr_at(addr))
            })
        {
            return Ok(ptr);
        }
        let attempt = || self.buddy.with(|b| b.alloc_pages_ptr(count, align_bytes));
        attempt()
            .or_else(|_| {
                self.reclaim_here();
                attempt()
            })
            .or_else(|e| self.retry_after_remote_drain(e, attempt))
    }

    /// Allocates `count` pages below the lowmem (DMA32) limit.
    ///
    /// # Errors
    /// `InvalidParam`, `NoMemory`.
    pub fn alloc_pages_lowmem(&self, count: usize, align_bytes: usize) -> AllocResult<usize> {
        let attempt = || {
            let (result, faults) = self
                .buddy
                .with(|b| (b.alloc_pages_lowmem(count, align_bytes), b.take_faults()));
            faults.report();
            result
        };
        attempt()
            .or_else(|e| {
                if e != AllocError::NoMemory {
                    return Err(e);
                }
                // Lowmem pages may sit in CPU caches: reclaim, then retry.
                self.reclaim_here();
                attempt()
            })
            .or_else(|e| self.retry_after_remote_drain(e, attempt))
    }

    /// Allocates exactly the pages at `[addr, addr + count * PAGE_SIZE)`.
    ///
    /// # Errors
    /// `InvalidParam`, `NotAllocated` (outside managed memory), `NoMemory`
    /// (a page in the range is in use).
    pub fn alloc_pages_at(&self, addr: usize, count: usize) -> AllocResult<usize> {
        let attempt = || self.buddy.with(|b| b.alloc_pages_at(addr, count));
        attempt()
            .or_else(|e| {
                if e != AllocError::NoMemory {
                    return Err(e);
                }
                // Pages in the range may sit in a CPU's page cache or in empty
                // slabs: reclaim, then try once more.
                self.reclaim_here();
                attempt()
            })
            .or_else(|e| self.retry_after_remote_drain(e, attempt))
    }

    /// Frees a run from `alloc_pages` (or `_lowmem`, `_at`).
    ///
    /// # Errors
    /// `NotAllocated` for a double free, a foreign address, an address
    /// inside a run or a wrong `count`; nothing changes then (the free is
    /// counted and reported).
    ///
    /// # Safety
    /// The caller owns the run and does not use it afterwards.
    #[inline]
    pub unsafe fn dealloc_pages(&self, addr: usize, count: usize) -> AllocResult {
        if self.dealloc_pages_fast(addr, count) {
            return Ok(());
        }
        // SAFETY: forwarded caller contract; the fast path changed nothing.
        unsafe { self.dealloc_pages_slow(addr, count) }
    }

    /// The fast path: a run that is a cacheable block goes to the current
    /// CPU's page cache if it has room. `false`, with nothing changed, for
    /// anything else (bad frees included: the slow path reports them).
    #[inline(always)]
    fn dealloc_pages_fast(&self, addr: usize, count: usize) -> bool {
        let Some(order) = PageCache::order_for(count, 1) else {
            return false;
        };
        if !addr.is_multiple_of(PAGE_SIZE << order) {
            return false;
        }
        self.on_own_slot(|s| {
            let (slot, local) = (s.slot, &mut *s.local);
            if local.pages.is_full(order)
                || !local.pages.can_cache(addr)
                || self.reclaim_pending(local)
            {
                return None;
            }
            let sections = &mut local.sections;
            // Exactly one of two racing frees claims the run (`claim_run`).
            let run = sections
                .meta(&self.map, addr, Self::PAGE_SHIFT)?
                .claim_run(count)?;
            local.pages.push(order, addr, run, |a| {
                sections.meta(&self.map, a, Self::PAGE_SHIFT)
            });
            slot.counters
                .pages
                .cached_bytes
                .set(local.pages.pages() << Self::PAGE_SHIFT);
            Some(())
        })
        .is_some()
    }

    /// # Safety
    /// As `dealloc_pages`.
    #[inline(never)]
    unsafe fn dealloc_pages_slow(&self, addr: usize, count: usize) -> AllocResult {
        let done = self.with_slot(|s, id| {
            self.visit(s, id);
            let result = s
                .local
                .sections
                .meta(&self.map, addr, Self::PAGE_SHIFT)
                .ok_or(FreeRejection::NotManaged)
                .and_then(|meta| self.free_run(s, id, meta, addr, count));
            if let Err(why) = result {
                super::object::reject(s, id, why, addr, count);
            }
            result
        });
        match done {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(AllocError::NotAllocated),
            None => {
                self.invalid_frees.fetch_add(1, Ordering::Relaxed);
                Err(AllocError::NotAllocated)
            }
        }
    }

    /// The typed form of [`Self::alloc_pages`]: the run's start as a
    /// [`VirtAddr`]. To touch the pages under strict provenance use
    /// [`Self::alloc_pages_ptr`] instead (a `VirtAddr` is an integer).
    ///
    /// # Errors
    /// As [`Self::alloc_pages`].
    #[inline]
    pub fn alloc_pages_vaddr(&self, count: usize, align_bytes: usize) -> AllocResult<VirtAddr> {
        self.alloc_pages(count, align_bytes)
            .map(VirtAddr::from_usize)
    }

    /// The typed form of [`Self::alloc_pages_lowmem`]: every page of the run
    /// lies physically below [`Self::lowmem_limit`] by the platform's
    /// [`Platform::virt_to_phys`] (which gives the run's [`PhysAddr`], e.g.
    /// for a DMA32 device).
    ///
    /// # Errors
    /// As [`Self::alloc_pages_lowmem`].
    pub fn alloc_pages_lowmem_vaddr(
        &self,
        count: usize,
        align_bytes: usize,
    ) -> AllocResult<VirtAddr> {
        self.alloc_pages_lowmem(count, align_bytes)
            .map(VirtAddr::from_usize)
    }

    /// The typed form of [`Self::alloc_pages_at`]: exactly the pages at
    /// `[start, start + count * PAGE_SIZE)`; returns `start`.
    ///
    /// # Errors
    /// `InvalidParam` (`start` not page aligned, `count` 0 or too large),
    /// `NotAllocated` (outside managed memory), `NoMemory` (a page in the
    /// range is in use).
    pub fn alloc_pages_at_vaddr(&self, start: VirtAddr, count: usize) -> AllocResult<VirtAddr> {
        self.alloc_pages_at(start.as_usize(), count)
            .map(VirtAddr::from_usize)
    }

    /// The typed form of [`Self::dealloc_pages`].
    ///
    /// # Errors
    /// As [`Self::dealloc_pages`]: `NotAllocated` for a bad free, which
    /// changes nothing.
    ///
    /// # Safety
    /// As [`Self::dealloc_pages`]: `start` and `count` are a run from this
    /// allocator (`alloc_pages*`), the caller owns it and does not use it
    /// afterwards.
    #[inline]
    pub unsafe fn dealloc_pages_vaddr(&self, start: VirtAddr, count: usize) -> AllocResult {
        // SAFETY: forwarded caller contract (the same run as a `usize`).
        unsafe { self.dealloc_pages(start.as_usize(), count) }
    }

    /// The physical address below which pages count as lowmem: the
    /// `lowmem-limit` knob, [`LOWMEM_LIMIT`](crate::LOWMEM_LIMIT).
    pub const fn lowmem_limit(&self) -> PhysAddr {
        crate::buddy::LOWMEM_LIMIT
    }

    /// Frees the run at `addr` (page metadata `meta`) of `count` pages: into
    /// slot `id`'s page cache if it is a cacheable block, else to the buddy.
    pub(super) fn free_run(
        &self,
        s: &mut SlotRef<'_, PAGE_SIZE>,
        id: usize,
        meta: &PageMeta,
        addr: usize,
        count: usize,
    ) -> Result<(), FreeRejection> {
        // Claiming (Allocated → Claimed) makes exactly one of two racing
        // frees win; from here the run is ours.
        let claimed = addr
            .is_multiple_of(PAGE_SIZE)
            .then(|| meta.claim_run(count))
            .flatten();
        let Some(run) = claimed else {
            return Err(if meta.kind() == crate::buddy::PageKind::Allocated {
                FreeRejection::WrongPageCount
            } else {
                FreeRejection::NotAllocated
            });
        };
        // Only naturally aligned runs are cached (a run grown in place may
        // not be), so a cached block honours any alignment up to its size.
        if let Some(order) = PageCache::order_for(count, 1)
            .filter(|&o| addr.is_multiple_of(PAGE_SIZE << o) && s.local.pages.can_cache(addr))
        {
            self.honour_reclaim(s, id);
            s.pages(self, self.budget_pages()).free(order, addr, run);
            return Ok(());
        }
        self.buddy
            .with(|b| b.free_claimed(addr, run))
            .map_err(|_| FreeRejection::NotAllocated)
    }

    /// Resizes the run at `ptr` from `old_size` to `new_size` bytes in
    /// place, if the pages after it allow; says whether it did.
    pub(super) fn resize_run(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
        let (old_pages, new_pages) = (old_size.div_ceil(PAGE_SIZE), new_size.div_ceil(PAGE_SIZE));
        if old_pages == new_pages {
            return true;
        }
        let addr = ptr.as_ptr().addr();
        let mut sections = SectionCache::new();
        // Claim the run so a racing free cannot touch it meanwhile.
        let Some(run) = sections
            .meta(&self.map, addr, Self::PAGE_SHIFT)
            .and_then(|meta| meta.claim_run(old_pages))
        else {
            return false;
        };
        match self.buddy.with(|b| b.resize_claimed(addr, run, new_pages)) {
            Ok(run) => {
                run.unclaim();
                true
            }
            Err((run, _)) => {
                run.unclaim();
                false
            }
        }
    }
}
