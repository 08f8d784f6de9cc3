//! Pre-faulted, 2 MiB-aligned memory arenas handed to the arena allocators.
//!
//! Every arena allocator gets its own [`Arena`]: a fresh anonymous `mmap` mapping, populated
//! (`MAP_POPULATE`) so no benchmark pays page faults, and aligned to 2 MiB so that no allocator
//! loses memory to its own alignment of the region start (the seed aligns its heap to 2 MiB).
//! The mapping is unmapped when the arena is dropped; the allocator that used it must be
//! dropped (or never used again) before that.

use core::ptr::NonNull;

/// Alignment of every arena's first byte.
pub const ARENA_ALIGN_BYTES: usize = 2 * 1024 * 1024;

/// One exclusively owned, pre-faulted memory region.
pub struct Arena {
    /// Start of the whole mapping (for `munmap`).
    mapping: NonNull<u8>,
    /// Length of the whole mapping in bytes (for `munmap`).
    mapping_bytes: usize,
    /// First byte of the aligned arena inside the mapping.
    start: NonNull<u8>,
    /// Usable arena length in bytes.
    len_bytes: usize,
}

// SAFETY: the arena is plain memory owned by this value alone; moving the owner between
// threads does not change who may access it.
unsafe impl Send for Arena {}
// SAFETY: `Arena` hands out its memory only through `&mut self`/raw pointers whose use is
// the caller's responsibility; shared references expose only the address and length.
unsafe impl Sync for Arena {}

impl Arena {
    /// Maps, aligns and pre-faults a new arena of `len_bytes` bytes (rounded up to 4 KiB).
    ///
    /// # Panics
    /// Panics if the kernel refuses the mapping (the harness cannot run without it).
    pub fn new(len_bytes: usize) -> Self {
        let len_bytes = len_bytes.next_multiple_of(4096);
        let mapping_bytes = len_bytes + ARENA_ALIGN_BYTES;
        // SAFETY: an anonymous private mapping at a kernel-chosen address aliases nothing.
        let raw = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                mapping_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert!(
            raw != libc::MAP_FAILED,
            "mmap of {mapping_bytes} bytes failed"
        );
        let mapping = NonNull::new(raw.cast::<u8>()).expect("mmap returned null");
        let offset_bytes = mapping.as_ptr().align_offset(ARENA_ALIGN_BYTES);
        // SAFETY: `offset_bytes < ARENA_ALIGN_BYTES`, so `start..start+len_bytes` lies inside
        // the mapping of `len_bytes + ARENA_ALIGN_BYTES` bytes.
        let start = unsafe { mapping.add(offset_bytes) };
        let mut arena = Self {
            mapping,
            mapping_bytes,
            start,
            len_bytes,
        };
        arena.prefault();
        arena
    }

    /// Writes one byte per 4 KiB page so every page is resident and private even where
    /// `MAP_POPULATE` was only advisory.
    fn prefault(&mut self) {
        let base = self.start.as_ptr();
        for offset in (0..self.len_bytes).step_by(4096) {
            // SAFETY: `offset < len_bytes`, inside the arena this value owns exclusively.
            unsafe { base.add(offset).write_volatile(0) };
        }
    }

    /// Start address of the arena.
    pub fn start(&self) -> *mut u8 {
        self.start.as_ptr()
    }

    /// Arena length in bytes.
    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// The arena as a mutable byte slice, for allocator `init` functions.
    ///
    /// The borrow ends when `init` returns; allocators keep using the memory afterwards
    /// through the raw pointers their (unsafe) `init` contract lets them keep, which is sound
    /// because every owner drops its allocator before its arena and touches the arena
    /// through nothing else.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the region is mapped read-write for the life of `self` and `&mut self`
        // guarantees no other reference to it exists.
        unsafe { core::slice::from_raw_parts_mut(self.start.as_ptr(), self.len_bytes) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `mapping`/`mapping_bytes` are exactly what `mmap` returned; the allocator
        // that used the arena has been dropped before its arena (field order in the owners).
        unsafe { libc::munmap(self.mapping.as_ptr().cast(), self.mapping_bytes) };
    }
}
