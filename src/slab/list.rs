//! Intrusive doubly linked lists of slab headers (a class's partial queue
//! and empty stack), linked through the headers' owner-only `next`/`prev`.

use super::header::SlabHeader;
use core::ptr;

/// Intrusive doubly linked list of slab headers, with both ends (the
/// partial list is a queue, the empty list a stack).
pub(super) struct SlabList {
    head: *mut SlabHeader,
    tail: *mut SlabHeader,
}

impl SlabList {
    pub(super) const fn new() -> Self {
        Self {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
        }
    }

    pub(super) fn push(&mut self, hdr: &SlabHeader) {
        let node = ptr::from_ref(hdr).cast_mut();
        hdr.prev.set(ptr::null_mut());
        hdr.next.set(self.head);
        if self.head.is_null() {
            self.tail = node;
        } else {
            // SAFETY: list members are live slabs owned by this allocator.
            unsafe { (*self.head).prev.set(node) };
        }
        self.head = node;
    }

    pub(super) fn push_back(&mut self, hdr: &SlabHeader) {
        let node = ptr::from_ref(hdr).cast_mut();
        hdr.next.set(ptr::null_mut());
        hdr.prev.set(self.tail);
        if self.tail.is_null() {
            self.head = node;
        } else {
            // SAFETY: list members are live slabs owned by this allocator.
            unsafe { (*self.tail).next.set(node) };
        }
        self.tail = node;
    }

    pub(super) fn remove(&mut self, hdr: &SlabHeader) {
        let (prev, next) = (hdr.prev.get(), hdr.next.get());
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: list members are live slabs owned by this allocator.
            unsafe { (*prev).next.set(next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { (*next).prev.set(prev) };
        }
    }

    pub(super) fn pop(&mut self) -> Option<&'static SlabHeader> {
        // SAFETY: list members are live slabs owned by this allocator; their
        // headers stay valid until the allocator hands the slab back.
        let hdr = unsafe { self.head.as_ref()? };
        self.remove(hdr);
        Some(hdr)
    }

    /// For `check_invariants`: checks every member's back link and the
    /// tail, runs `check` on each member, and returns the length.
    pub(super) fn check_links(&self, list: &str, mut check: impl FnMut(&SlabHeader)) -> usize {
        let (mut len, mut last) = (0, ptr::null_mut());
        for hdr in self.iter() {
            assert_eq!(hdr.prev.get(), last, "L1: {list} list links");
            check(hdr);
            last = ptr::from_ref(hdr).cast_mut();
            len += 1;
        }
        assert_eq!(self.tail, last, "L1: {list} list tail");
        len
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &SlabHeader> {
        let mut cur = self.head;
        core::iter::from_fn(move || {
            // SAFETY: as in `pop`.
            let hdr = unsafe { cur.as_ref()? };
            cur = hdr.next.get();
            Some(hdr)
        })
    }
}
