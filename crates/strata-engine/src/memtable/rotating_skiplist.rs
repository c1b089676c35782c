//! `rotating_skiplist`: the rotating skip list of Dick, Fekete and Gramoli ("A Skip List for
//! Multicore", 2017), adapted to an insert-only memtable without a background thread.
//!
//! ## Structure
//!
//! * The *node level* is a sorted, lock-free singly linked list of arena
//!   [`node`](super::node)s holding the entries inline. It alone decides membership: an entry
//!   is present once it is linked there.
//! * *Index levels* 1, 2, ... sit above it. Instead of a tower of separate index nodes, every
//!   indexed node owns a *wheel*: one contiguous array (in the arena) of its next pointers on
//!   each index level it belongs to. The head's wheel has [`MAX_LEVELS`] slots.
//! * Wheels are addressed through a global rotation offset `zero`: index level `l` of a node
//!   lives in wheel slot `(zero + l - 1) mod capacity` (capacities are powers of two). Removing
//!   the lowest index level ([`RotatingSkipListMemtable::lower_index_level`]) clears that level's
//!   slots and increments `zero` — the wheels *rotate*, so every other level shifts down
//!   without touching any other pointer. The paper does this when deletions leave the index too
//!   tall; a memtable never deletes (tombstones are entries), so it is available but never
//!   triggered by the memtable itself.
//! * Index maintenance is deterministic and lazy, as in the paper: a node is raised to level
//!   `l + 1` when it, its predecessor and its successor on level `l` all have height `l`, which
//!   keeps about every second node of a level on the next one. New entries join the node level
//!   only. The paper runs maintenance in a background thread; here it runs on inserts: an
//!   insert whose search walked at least [`RUN_TRIGGER`] nodes of one height on some level
//!   afterwards tries the maintenance lock and, if it gets it, raises along the path it
//!   searched. Nobody waits for that lock (`try_lock`), and only its holder writes wheels.
//!
//! ## Complexity
//!
//! Search (insert, get, seek) is O(log n) expected: runs stay below [`RUN_TRIGGER`] on the
//! paths inserts take (a region that stops receiving inserts may keep runs up to about twice
//! that on upper levels until the next insert passes). Maintenance is amortised O(1) per
//! insert. Ordered iteration follows the node level: O(1) per entry after a seek.
//!
//! ## Concurrency
//!
//! Lock-free inserts and reads: an insert links its node with one compare-and-swap on the node
//! level (retrying from the same predecessor on failure). Index pointers are only written by
//! the maintenance-lock holder with release stores, and only ever point to a node with a
//! greater key that is already in the node level, so a search that follows any index pointer
//! (even a stale one read before a rotation or a wheel growth) still ends at the right place
//! after its final walk on the node level. Wheels that grow are copied, never freed before
//! the memtable, so concurrent readers of the old copy stay safe.
//!
//! ## Memory
//!
//! Arena bytes: per entry a 24 B header, two 8 B links (next, wheel) and the key and value;
//! per indexed node a wheel of 8 B plus 8 B per slot, doubled (and copied) as the node rises.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::arena::Arena;
use super::node::{Node, NodeRef};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// Index levels the head's wheel can hold.
pub const MAX_LEVELS: usize = 32;
/// A search that walks this many nodes of one height on one level triggers maintenance.
pub const RUN_TRIGGER: usize = 4;
/// Nodes one maintenance pass examines per level, at most.
pub const RAISE_SCAN_LIMIT: usize = 1024;

const _: () = assert!(MAX_LEVELS.is_power_of_two());

/// Node link slots: the node-level `next` and the wheel pointer.
const NEXT: usize = 0;
const WHEEL: usize = 1;

/// A wheel in the arena: an 8-byte capacity, then `capacity` next pointers.
#[derive(Clone, Copy)]
struct Wheel<'a> {
    ptr: NonNull<u8>,
    _arena: PhantomData<&'a Arena>,
}

const WHEEL_HEADER_BYTES: usize = 8;

impl<'a> Wheel<'a> {
    /// A wheel with `capacity` null slots (`capacity` a power of two).
    fn alloc(arena: &'a Arena, capacity: usize) -> Wheel<'a> {
        debug_assert!(capacity.is_power_of_two() && capacity <= MAX_LEVELS);
        let ptr = arena.alloc(WHEEL_HEADER_BYTES + capacity * size_of::<AtomicPtr<Node>>());
        // SAFETY: the arena returned enough aligned, exclusively owned bytes for the header
        // and `capacity` slots, written here before the wheel is published.
        unsafe {
            ptr.as_ptr().cast::<u64>().write(capacity as u64);
            let slots = ptr
                .as_ptr()
                .add(WHEEL_HEADER_BYTES)
                .cast::<AtomicPtr<Node>>();
            for i in 0..capacity {
                slots.add(i).write(AtomicPtr::new(std::ptr::null_mut()));
            }
        }
        Wheel {
            ptr,
            _arena: PhantomData,
        }
    }

    fn capacity(self) -> usize {
        // SAFETY: the header was written in `alloc` before publication and never changes.
        unsafe { self.ptr.as_ptr().cast::<u64>().read() as usize }
    }

    /// The slot of index level `level` (1-based) at rotation `zero`.
    fn slot(self, level: usize, zero: usize) -> &'a AtomicPtr<Node> {
        debug_assert!(level >= 1 && level <= self.capacity());
        let index = zero.wrapping_add(level - 1) & (self.capacity() - 1);
        // SAFETY: `index < capacity`, so the slot lies inside the wheel's allocation; it was
        // initialised in `alloc` and lives as long as the arena.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(WHEEL_HEADER_BYTES)
                .cast::<AtomicPtr<Node>>()
                .add(index)
        }
    }
}

/// The `rotating_skiplist` memtable (see the module docs).
pub struct RotatingSkipListMemtable {
    head: NonNull<Node>,
    /// Index levels in use (0 = only the node level).
    levels: AtomicUsize,
    /// Rotation offset of every wheel.
    zero: AtomicUsize,
    /// Held by the one thread maintaining the index (wheels, node heights, `levels`, `zero`).
    maintenance: Mutex<()>,
    /// Owns every node and wheel.
    arena: Arena,
    len: AtomicUsize,
}

// SAFETY: `head` and every pointer reachable from it point into `arena`, owned by the same
// struct; shared mutation goes through atomics, and wheels are written only by the holder of
// `maintenance`.
unsafe impl Send for RotatingSkipListMemtable {}
// SAFETY: as above.
unsafe impl Sync for RotatingSkipListMemtable {}

impl std::fmt::Debug for RotatingSkipListMemtable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingSkipListMemtable")
            .field("len", &self.len())
            .field("levels", &self.levels.load(Ordering::Relaxed))
            .field("zero", &self.zero.load(Ordering::Relaxed))
            .finish()
    }
}

/// Where a search entered each level and how many nodes it walked there.
struct Path<'a> {
    zero: usize,
    top: usize,
    starts: [NodeRef<'a>; MAX_LEVELS + 1],
    runs: [usize; MAX_LEVELS + 1],
}

impl Default for RotatingSkipListMemtable {
    fn default() -> Self {
        Self::new()
    }
}

impl RotatingSkipListMemtable {
    /// An empty memtable.
    pub fn new() -> Self {
        let arena = Arena::new();
        let head = NodeRef::alloc(&arena, 2, b"", 0, OpKind::Put, b"");
        let wheel = Wheel::alloc(&arena, MAX_LEVELS);
        head.link(WHEEL)
            .store(wheel.ptr.as_ptr().cast::<Node>(), Ordering::Release);
        head.aux().store(u32::MAX, Ordering::Relaxed);
        RotatingSkipListMemtable {
            head: NonNull::new(head.as_ptr()).expect("arena pointers are non-null"),
            levels: AtomicUsize::new(0),
            zero: AtomicUsize::new(0),
            maintenance: Mutex::new(()),
            arena,
            len: AtomicUsize::new(0),
        }
    }

    /// Index levels in use.
    pub fn index_levels(&self) -> usize {
        self.levels.load(Ordering::Acquire)
    }

    #[inline]
    fn head(&self) -> NodeRef<'_> {
        // SAFETY: the head was allocated from `self.arena` in `new`.
        unsafe { NodeRef::from_ptr(self.head) }
    }

    #[inline]
    fn load<'a>(&'a self, link: &'a AtomicPtr<Node>) -> Option<NodeRef<'a>> {
        // SAFETY: node links and wheel slots only hold null or nodes of `self.arena`.
        unsafe { NodeRef::from_raw(link.load(Ordering::Acquire)) }
    }

    #[inline]
    fn wheel<'a>(&'a self, node: NodeRef<'a>) -> Option<Wheel<'a>> {
        let raw = node.link(WHEEL).load(Ordering::Acquire);
        NonNull::new(raw.cast::<u8>()).map(|ptr| Wheel {
            ptr,
            _arena: PhantomData,
        })
    }

    /// Height of a node: index levels it belongs to (the head counts as infinitely tall).
    #[inline]
    fn height(&self, node: NodeRef<'_>) -> usize {
        node.aux().load(Ordering::Acquire) as usize
    }

    /// The successor of `node` on `level` (0 = node level).
    #[inline]
    fn next_on<'a>(&'a self, node: NodeRef<'a>, level: usize, zero: usize) -> Option<NodeRef<'a>> {
        if level == 0 {
            return self.load(node.link(NEXT));
        }
        let wheel = self.wheel(node)?;
        if level > wheel.capacity() {
            return None;
        }
        self.load(wheel.slot(level, zero))
    }

    /// Searches `(key, seq)`: returns the node-level predecessor and successor and the path.
    fn search(&self, key: &[u8], seq: SeqNo) -> (NodeRef<'_>, Option<NodeRef<'_>>, Path<'_>) {
        let zero = self.zero.load(Ordering::Acquire);
        let top = self.levels.load(Ordering::Acquire).min(MAX_LEVELS);
        let head = self.head();
        let mut path = Path {
            zero,
            top,
            starts: [head; MAX_LEVELS + 1],
            runs: [0; MAX_LEVELS + 1],
        };
        let mut x = head;
        for level in (0..=top).rev() {
            path.starts[level] = x;
            loop {
                match self.next_on(x, level, zero) {
                    Some(next) if next.is_before(key, seq) => {
                        x = next;
                        path.runs[level] += 1;
                    }
                    next if level == 0 => return (x, next, path),
                    _ => break,
                }
            }
        }
        unreachable!("the loop returns on the node level")
    }

    /// Walks the node level from `prev` to the last node before `(key, seq)`.
    fn walk<'a>(
        &'a self,
        mut prev: NodeRef<'a>,
        key: &[u8],
        seq: SeqNo,
    ) -> (NodeRef<'a>, Option<NodeRef<'a>>) {
        loop {
            match self.load(prev.link(NEXT)) {
                Some(next) if next.is_before(key, seq) => prev = next,
                next => return (prev, next),
            }
        }
    }

    /// Index maintenance along a search path (see the module docs). Runs only if the
    /// maintenance lock is free.
    fn maintain(&self, path: &Path<'_>) {
        let Some(_guard) = self.maintenance.try_lock() else {
            return;
        };
        if self.zero.load(Ordering::Acquire) != path.zero {
            return; // The index rotated since the search; its path is stale.
        }
        let mut top = self.levels.load(Ordering::Acquire);
        for level in 0..=path.top.min(MAX_LEVELS - 1) {
            let start = path.starts[level];
            if start != self.head() && self.height(start) <= level {
                continue;
            }
            if self.raise_run(level, start, path.zero, top) && level + 1 > top {
                top = level + 1;
                self.levels.store(top, Ordering::Release);
            }
        }
    }

    /// Raises every second node of the run of height-`level` nodes after `start` on `level`,
    /// if the run is at least [`RUN_TRIGGER`] long. Returns whether a node was raised. Caller
    /// holds the maintenance lock.
    fn raise_run(&self, level: usize, start: NodeRef<'_>, zero: usize, top: usize) -> bool {
        let mut run = 0;
        let mut cursor = self.next_on(start, level, zero);
        while let Some(node) = cursor {
            if self.height(node) != level || run >= RUN_TRIGGER {
                break;
            }
            run += 1;
            cursor = self.next_on(node, level, zero);
        }
        if run < RUN_TRIGGER {
            return false;
        }
        let mut raised = false;
        let mut above_prev = start;
        let mut prev_height = usize::MAX;
        let mut cursor = self.next_on(start, level, zero);
        let mut steps = 0;
        while let Some(node) = cursor {
            let height = self.height(node);
            if height > level || steps >= RAISE_SCAN_LIMIT {
                break;
            }
            let next = self.next_on(node, level, zero);
            let next_low = next.is_some_and(|n| self.height(n) <= level);
            if prev_height <= level && height == level && next_low {
                self.raise(node, level + 1, above_prev, zero, top);
                above_prev = node;
                prev_height = level + 1;
                raised = true;
            } else {
                prev_height = height;
            }
            cursor = next;
            steps += 1;
        }
        raised
    }

    /// Links `node` into index level `level` right after `above_prev` (its predecessor there).
    fn raise<'a>(
        &'a self,
        node: NodeRef<'a>,
        level: usize,
        above_prev: NodeRef<'a>,
        zero: usize,
        top: usize,
    ) {
        debug_assert_eq!(self.height(node), level - 1);
        let above_next = if above_prev == self.head() && level > top {
            None // A new top level: the head's slot may hold a stale pointer from a rotation.
        } else {
            self.next_on(above_prev, level, zero)
        };
        debug_assert!(above_next.is_none_or(|n| node.cmp_to(n.key(), n.seq()).is_lt()));
        let wheel = self.wheel_with_capacity(node, level, zero);
        let next_ptr = above_next.map_or(std::ptr::null_mut(), |n| n.as_ptr());
        wheel.slot(level, zero).store(next_ptr, Ordering::Release);
        let above_wheel = self
            .wheel(above_prev)
            .expect("a node on a level above has a wheel");
        above_wheel
            .slot(level, zero)
            .store(node.as_ptr(), Ordering::Release);
        node.aux().store(level as u32, Ordering::Release);
    }

    /// `node`'s wheel, replaced by a copy twice as large (or more) when it has fewer than
    /// `level` slots. Caller holds the maintenance lock.
    fn wheel_with_capacity<'a>(
        &'a self,
        node: NodeRef<'a>,
        level: usize,
        zero: usize,
    ) -> Wheel<'a> {
        let old = self.wheel(node);
        let capacity = old.map_or(0, |w| w.capacity());
        if level <= capacity {
            return old.expect("capacity is positive");
        }
        let mut new_capacity = capacity.max(1);
        while new_capacity < level {
            new_capacity *= 2;
        }
        let wheel = Wheel::alloc(&self.arena, new_capacity.min(MAX_LEVELS));
        if let Some(old) = old {
            for l in 1..=self.height(node).min(capacity) {
                let next = old.slot(l, zero).load(Ordering::Acquire);
                wheel.slot(l, zero).store(next, Ordering::Relaxed);
            }
        }
        // Release: publishes the wheel's header and copied slots.
        node.link(WHEEL)
            .store(wheel.ptr.as_ptr().cast::<Node>(), Ordering::Release);
        wheel
    }

    /// Removes the lowest index level by rotating the wheels: clears every level-1 pointer,
    /// lowers the heights of the nodes on it and increments the rotation offset, so level
    /// `l + 1` becomes level `l` without moving any other pointer. Returns false when there
    /// is no index level. Waits for the maintenance lock.
    pub fn lower_index_level(&self) -> bool {
        let _guard = self.maintenance.lock();
        let top = self.levels.load(Ordering::Acquire);
        if top == 0 {
            return false;
        }
        let zero = self.zero.load(Ordering::Acquire);
        let head = self.head();
        let mut cursor = self.next_on(head, 1, zero);
        while let Some(node) = cursor {
            cursor = self.next_on(node, 1, zero);
            let wheel = self.wheel(node).expect("an indexed node has a wheel");
            wheel
                .slot(1, zero)
                .store(std::ptr::null_mut(), Ordering::Release);
            node.aux().fetch_sub(1, Ordering::AcqRel);
        }
        let head_wheel = self.wheel(head).expect("the head has a wheel");
        head_wheel
            .slot(1, zero)
            .store(std::ptr::null_mut(), Ordering::Release);
        self.zero.store(zero.wrapping_add(1), Ordering::Release);
        self.levels.store(top - 1, Ordering::Release);
        true
    }

    fn seek(&self, key: &[u8], seq: SeqNo) -> Option<NodeRef<'_>> {
        self.search(key, seq).1
    }
}

impl Memtable for RotatingSkipListMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::RotatingSkipList
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let (mut prev, mut next, path) = self.search(key, seq);
        debug_assert!(
            next.is_none_or(|n| !n.cmp_to(key, seq).is_eq()),
            "(key, seq) inserted twice"
        );
        let node = NodeRef::alloc(&self.arena, 2, key, seq, op, value);
        loop {
            let next_ptr = next.map_or(std::ptr::null_mut(), |n| n.as_ptr());
            node.link(NEXT).store(next_ptr, Ordering::Relaxed);
            // Release: publishes the node's contents and its `next` link.
            match prev.link(NEXT).compare_exchange(
                next_ptr,
                node.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(_) => (prev, next) = self.walk(prev, key, seq),
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        if path.runs.iter().any(|run| *run >= RUN_TRIGGER) {
            self.maintain(&path);
        }
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        let node = self.seek(key, read_seq)?;
        (node.key() == key).then(|| MemtableEntry {
            seq: node.seq(),
            op: node.op(),
            value: node.value().to_vec(),
        })
    }

    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        let mut cursor = self.seek(key, seq);
        while let Some(node) = cursor {
            if !visitor(node.entry()) {
                return;
            }
            cursor = self.load(node.link(NEXT));
        }
    }

    fn memory_bytes(&self) -> usize {
        self.arena.memory_bytes()
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memtable::conformance::{Subject, run_all_with};
    use crate::types::MAX_SEQ;

    /// Nodes per index level, bottom (the node level) first.
    fn level_sizes(table: &RotatingSkipListMemtable) -> Vec<usize> {
        let zero = table.zero.load(Ordering::Acquire);
        (0..=table.index_levels())
            .map(|level| {
                let mut count = 0;
                let mut cursor = table.next_on(table.head(), level, zero);
                let mut last: Option<NodeRef<'_>> = None;
                while let Some(node) = cursor {
                    if let Some(prev) = last {
                        assert!(prev.cmp_to(node.key(), node.seq()).is_lt());
                    }
                    assert!(level == 0 || table.height(node) >= level);
                    last = Some(node);
                    count += 1;
                    cursor = table.next_on(node, level, zero);
                }
                count
            })
            .collect()
    }

    #[test]
    fn index_levels_halve_for_ascending_and_random_loads() {
        for shuffled in [false, true] {
            let table = RotatingSkipListMemtable::new();
            let mut keys: Vec<u32> = (0..20_000).collect();
            if shuffled {
                let mut rng = crate::memtable::conformance::SplitMix(3);
                for i in (1..keys.len()).rev() {
                    keys.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            for (i, k) in keys.iter().enumerate() {
                table.insert(&k.to_be_bytes(), i as u64 + 1, OpKind::Put, b"");
            }
            let sizes = level_sizes(&table);
            assert_eq!(sizes[0], 20_000);
            assert!(sizes.len() >= 8, "too few levels: {sizes:?}");
            // Each level keeps a fraction of the one below: enough to make searches
            // logarithmic, not so many that it degenerates into a list.
            for pair in sizes.windows(2).take(6) {
                assert!(pair[1] * 2 <= pair[0] + 2, "{sizes:?}");
                assert!(pair[1] * 8 >= pair[0], "{sizes:?}");
            }
        }
    }

    #[test]
    fn rotation_removes_the_lowest_level_and_keeps_reads_right() {
        let table = RotatingSkipListMemtable::new();
        for i in 0..5_000u32 {
            table.insert(&(i * 2).to_be_bytes(), 1, OpKind::Put, &i.to_le_bytes());
        }
        let before = level_sizes(&table);
        assert!(table.lower_index_level());
        assert!(table.lower_index_level());
        let after = level_sizes(&table);
        assert_eq!(after.len() + 2, before.len());
        assert_eq!(after[0], before[0]);
        assert_eq!(
            &after[1..],
            &before[3..],
            "upper levels shift down unchanged"
        );
        for i in (0..5_000u32).step_by(7) {
            let got = table.get(&(i * 2).to_be_bytes(), MAX_SEQ).unwrap();
            assert_eq!(got.value, i.to_le_bytes());
            assert!(table.get(&(i * 2 + 1).to_be_bytes(), MAX_SEQ).is_none());
        }
        // Inserts after the rotation rebuild the low levels.
        for i in 0..5_000u32 {
            table.insert(&(i * 2 + 1).to_be_bytes(), 2, OpKind::Put, b"");
        }
        let sizes = level_sizes(&table);
        assert_eq!(sizes[0], 10_000);
        assert!(sizes[1] >= 1_000, "{sizes:?}");
        while table.lower_index_level() {}
        assert_eq!(level_sizes(&table), vec![10_000]);
        // Wheels addressed at a rotation offset that wraps every capacity.
        run_all_with(&Subject::new("rotating_skiplist(zero 7)", || {
            let table = RotatingSkipListMemtable::new();
            table.zero.store(7, Ordering::Release);
            std::sync::Arc::new(table)
        }));
    }
}
