//! A concurrent bump arena: the memory of the lock-free memtable variants
//! (`enhanced_skiplist`, `hash_skiplist`, `hash_linked_list`, `rotating_skiplist`).
//!
//! The arena owns a list of blocks. Allocation bumps an atomic offset inside the current block
//! (one `fetch_add`, no lock); only when the block is full does one thread take the block mutex
//! and install a new block. Requests larger than a quarter of the current block get a dedicated
//! block of their own, so big keys or values never waste more than a quarter of a block. Nothing is
//! freed individually: every block lives until the arena is dropped, which is what makes the
//! lock-free structures built on it safe without epoch-based reclamation (a pointer read from
//! any node stays valid for as long as the memtable lives).
//!
//! ## Invariants
//!
//! * Every returned pointer is aligned to [`ALIGN`] and points to `size` bytes that no other
//!   allocation overlaps and that stay valid until the arena is dropped.
//! * Blocks grow from [`FIRST_BLOCK_BYTES`] by doubling up to [`MAX_BLOCK_BYTES`], so a small
//!   memtable reserves little while a large one takes the slow path rarely.
//!
//! ## Memory accounting
//!
//! [`Arena::memory_bytes`] is the bytes handed out (rounded up to [`ALIGN`]) plus the unusable
//! tail of every retired block, so it grows with every allocation and ends within one block of
//! what the arena has reserved from the system allocator.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Alignment of every allocation (enough for `u64` and atomic pointers).
pub const ALIGN: usize = 8;
/// Size of the first block.
pub const FIRST_BLOCK_BYTES: usize = 4 * 1024;
/// Largest regular block; blocks double in size up to this.
pub const MAX_BLOCK_BYTES: usize = 64 * 1024;

const _: () = assert!(FIRST_BLOCK_BYTES <= MAX_BLOCK_BYTES);
const _: () = assert!(MAX_BLOCK_BYTES.is_power_of_two() && FIRST_BLOCK_BYTES.is_power_of_two());

/// One contiguous allocation from the system allocator.
struct Block {
    base: NonNull<u8>,
    capacity: usize,
    /// Bytes claimed so far; may run past `capacity` when racing allocations overflow it.
    offset: AtomicUsize,
}

// SAFETY: a block is plain memory; the arena hands out disjoint ranges of it, and the base
// pointer itself is only read after construction and freed once, in `Drop`.
unsafe impl Send for Block {}
// SAFETY: as above; the only shared mutable state is the atomic `offset`.
unsafe impl Sync for Block {}

impl Block {
    /// A heap-allocated block, returned as a raw pointer owned by the caller (freed with
    /// `Box::from_raw`). A raw pointer rather than a `Box`, so that moving the owner never
    /// invalidates the pointers handed out to other threads.
    fn new(capacity: usize) -> NonNull<Block> {
        debug_assert!(capacity > 0 && capacity.is_multiple_of(ALIGN));
        let layout = Layout::from_size_align(capacity, ALIGN).expect("block layout is valid");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(base) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        NonNull::from(Box::leak(Box::new(Block {
            base,
            capacity,
            offset: AtomicUsize::new(0),
        })))
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, ALIGN).expect("block layout is valid");
        // SAFETY: `base` was allocated in `Block::new` with exactly this layout and is freed
        // only here.
        unsafe { dealloc(self.base.as_ptr(), layout) };
    }
}

/// The concurrent bump arena (see the module docs).
pub struct Arena {
    /// The block regular allocations bump into; always one of `blocks`.
    current: AtomicPtr<Block>,
    /// Every block ever allocated (regular and dedicated), owned by the arena and freed in
    /// `Drop`; the mutex also guards installing a new block.
    blocks: Mutex<Vec<NonNull<Block>>>,
    memory_bytes: AtomicUsize,
}

// SAFETY: `current` and `blocks` point to blocks owned by the arena and freed only when it
// is dropped; blocks are `Send + Sync` themselves.
unsafe impl Send for Arena {}
// SAFETY: as above; all shared mutation goes through atomics or the mutex.
unsafe impl Sync for Arena {}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("memory_bytes", &self.memory_bytes())
            .field("blocks", &self.blocks.lock().len())
            .finish()
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    /// An arena with one small block.
    pub fn new() -> Self {
        let first = Block::new(FIRST_BLOCK_BYTES);
        Arena {
            current: AtomicPtr::new(first.as_ptr()),
            blocks: Mutex::new(vec![first]),
            memory_bytes: AtomicUsize::new(0),
        }
    }

    /// Allocates `size` bytes aligned to [`ALIGN`]. The memory is uninitialised and stays valid
    /// until the arena is dropped.
    pub fn alloc(&self, size: usize) -> NonNull<u8> {
        let size = size.max(1).next_multiple_of(ALIGN);
        loop {
            let current = self.current.load(Ordering::Acquire);
            // SAFETY: `current` always points to a block owned by `self.blocks`, and blocks are
            // only freed when the arena is dropped.
            let block = unsafe { &*current };
            if size > block.capacity / 4 {
                return self.alloc_dedicated(size);
            }
            let offset = block.offset.fetch_add(size, Ordering::Relaxed);
            if offset <= block.capacity && block.capacity - offset >= size {
                self.memory_bytes.fetch_add(size, Ordering::Relaxed);
                debug_assert!(offset.is_multiple_of(ALIGN));
                // SAFETY: `offset + size <= capacity`, so the range lies inside the block, and
                // the `fetch_add` gave this range to this caller alone.
                return unsafe { NonNull::new_unchecked(block.base.as_ptr().add(offset)) };
            }
            self.install_next_block(current);
        }
    }

    /// Bytes handed out plus retired block tails (see the module docs).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// Replaces the full block `seen` with a new one, unless another thread already did.
    fn install_next_block(&self, seen: *mut Block) {
        let mut blocks = self.blocks.lock();
        if self.current.load(Ordering::Acquire) != seen {
            return;
        }
        // SAFETY: `seen` is the current block, owned by `blocks`.
        let old = unsafe { &*seen };
        let used = old.offset.load(Ordering::Relaxed).min(old.capacity);
        self.memory_bytes
            .fetch_add(old.capacity - used, Ordering::Relaxed);
        let capacity = (old.capacity * 2).min(MAX_BLOCK_BYTES);
        let block = Block::new(capacity);
        blocks.push(block);
        self.current.store(block.as_ptr(), Ordering::Release);
    }

    fn alloc_dedicated(&self, size: usize) -> NonNull<u8> {
        let block = Block::new(size);
        // SAFETY: the block was just created and is not shared yet.
        let base = unsafe { block.as_ref() }.base;
        self.blocks.lock().push(block);
        self.memory_bytes.fetch_add(size, Ordering::Relaxed);
        base
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for block in self.blocks.get_mut().drain(..) {
            // SAFETY: every pointer in `blocks` came from `Block::new` (a leaked box), is
            // stored once, and nothing uses arena memory after the arena is dropped.
            drop(unsafe { Box::from_raw(block.as_ptr()) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_disjoint_and_counted() {
        let arena = Arena::new();
        let mut ranges = Vec::new();
        for size in [1usize, 7, 8, 24, 100, 5_000, 20_000, 3, 64 * 1024] {
            let before = arena.memory_bytes();
            let ptr = arena.alloc(size);
            assert_eq!(ptr.as_ptr() as usize % ALIGN, 0);
            assert!(arena.memory_bytes() >= before + size);
            // SAFETY: the arena gave us `size` writable bytes.
            unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0xAB, size) };
            ranges.push((ptr.as_ptr() as usize, size));
        }
        ranges.sort();
        for pair in ranges.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "overlap: {pair:?}");
        }
    }

    #[test]
    fn concurrent_allocations_do_not_overlap() {
        let arena = Arena::new();
        let per_thread = 2_000;
        let all: Vec<Vec<(usize, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let arena = &arena;
                    scope.spawn(move || {
                        (0..per_thread)
                            .map(|i| {
                                let size = 8 + (i * 7 + t) % 200;
                                (arena.alloc(size).as_ptr() as usize, size)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ranges: Vec<(usize, usize)> = all.into_iter().flatten().collect();
        ranges.sort();
        for pair in ranges.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "overlap: {pair:?}");
        }
    }
}
