//! `enhanced_skiplist`: an arena-allocated, lock-free skip list with keys and values stored
//! inline in the arena, in the manner of RocksDB's `InlineSkipList`.
//!
//! * Structure: every entry is one [`node`](super::node) in an [`Arena`]: header, a tower of
//!   `height` next pointers, then key and value bytes. Heights are geometric with branching
//!   factor [`BRANCHING`] (p = 1/4) and at most [`MAX_HEIGHT`] levels. The head is a node with a
//!   full tower and no key. No node is ever removed, so there is no reclamation scheme: the
//!   arena frees everything at once when the memtable is dropped.
//! * Complexity: insert and get expected O(log n) comparisons; ordered iteration O(1) per entry
//!   (one pointer per step along level 0) after an O(log n) seek.
//! * Concurrency: lock-free. Inserts find the predecessor and successor on every level (the
//!   splice) and link the new node bottom-up with one compare-and-swap per level; a failed CAS
//!   recomputes the splice of that level only, starting from the old predecessor (nodes only
//!   get added, so it is still a lower bound). A node is published by the release CAS at
//!   level 0, after its header, key, value and next pointers are written; readers follow
//!   links with acquire loads. Reads never wait and see every insert that completed before
//!   they started.
//! * Memory: one arena allocation per entry (24 B header + 8 B per tower level, on average
//!   about 10.7 B, + key + value, rounded to 8 B) and no allocator headers; [`memory_bytes`]
//!   is the arena's accounting (bytes handed out plus retired block tails).
//!
//! [`InlineSkipList`] is the reusable core; `hash_skiplist` builds its buckets and its prefix
//! index from it inside one shared arena.
//!
//! [`memory_bytes`]: super::Memtable::memory_bytes

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::arena::Arena;
use super::node::NodeRef;
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// Tallest tower.
pub const MAX_HEIGHT: usize = 12;
/// One node in `BRANCHING` on a level also reaches the next level.
pub const BRANCHING: u32 = 4;

/// A random tower height: 1 + geometric(1 - 1/4), capped at [`MAX_HEIGHT`].
fn random_height() -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    fn seed() -> u64 {
        // Each thread gets a distinct, deterministic stream (no OS randomness needed).
        static NEXT: AtomicU64 = AtomicU64::new(0x853C_49E6_748F_EA9B);
        NEXT.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
    }
    let bits = STATE.with(|state| {
        let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    });
    // Two zero bits per extra level: P(height > h) = 4^-h.
    let extra = (bits.trailing_zeros() / BRANCHING.trailing_zeros()) as usize;
    (1 + extra).min(MAX_HEIGHT)
}

/// The lock-free skip list over arena nodes; owns no memory itself.
///
/// Invariant: every node reachable from `head` (and `head` itself) was allocated from the
/// arena passed to [`InlineSkipList::new`] and [`InlineSkipList::insert`], and that arena
/// outlives the list. The memtables keep both in one struct to guarantee it.
pub struct InlineSkipList {
    head: NonNull<super::node::Node>,
    /// Levels in use (1..=MAX_HEIGHT); only grows.
    height: AtomicUsize,
}

// SAFETY: the list only holds a pointer into arena memory that outlives it (type invariant);
// every shared mutation goes through atomics.
unsafe impl Send for InlineSkipList {}
// SAFETY: as above.
unsafe impl Sync for InlineSkipList {}

impl std::fmt::Debug for InlineSkipList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineSkipList")
            .field("height", &self.height.load(Ordering::Relaxed))
            .finish()
    }
}

/// Where a new entry goes on one level: its predecessor and successor.
type Splice<'a> = (NodeRef<'a>, Option<NodeRef<'a>>);

impl InlineSkipList {
    /// An empty list whose head lives in `arena`.
    pub fn new(arena: &Arena) -> Self {
        let head = NodeRef::alloc(arena, MAX_HEIGHT, b"", 0, OpKind::Put, b"");
        InlineSkipList {
            head: NonNull::new(head.as_ptr()).expect("arena pointers are non-null"),
            height: AtomicUsize::new(1),
        }
    }

    #[inline]
    fn head(&self) -> NodeRef<'_> {
        // SAFETY: the head was allocated in `new` from the arena that outlives the list.
        unsafe { NodeRef::from_ptr(self.head) }
    }

    #[inline]
    fn next<'a>(&'a self, node: NodeRef<'a>, level: usize) -> Option<NodeRef<'a>> {
        // SAFETY: links only ever hold null or nodes from the list's arena (type invariant).
        unsafe { NodeRef::from_raw(node.link(level).load(Ordering::Acquire)) }
    }

    /// Walks right on `level` from `start` (which sorts before the target or is the head)
    /// to the last node before `(key, seq)`.
    #[inline]
    fn splice_at<'a>(
        &'a self,
        mut prev: NodeRef<'a>,
        level: usize,
        key: &[u8],
        seq: SeqNo,
    ) -> Splice<'a> {
        loop {
            match self.next(prev, level) {
                Some(next) if next.is_before(key, seq) => prev = next,
                next => return (prev, next),
            }
        }
    }

    /// The first node at or after `(key, seq)` in internal order.
    pub fn seek(&self, key: &[u8], seq: SeqNo) -> Option<NodeRef<'_>> {
        let mut prev = self.head();
        let top = self.height.load(Ordering::Acquire);
        for level in (1..top).rev() {
            prev = self.splice_at(prev, level, key, seq).0;
        }
        self.splice_at(prev, 0, key, seq).1
    }

    /// The first node.
    pub fn first(&self) -> Option<NodeRef<'_>> {
        self.next(self.head(), 0)
    }

    /// The node after `node` in internal order.
    #[inline]
    pub fn successor<'a>(&'a self, node: NodeRef<'a>) -> Option<NodeRef<'a>> {
        self.next(node, 0)
    }

    /// Inserts `(key, seq)`. `before_link` sees the level-0 neighbours (predecessor, `None`
    /// for the head, and successor) computed before the node is linked, so a caller can keep a
    /// side index consistent. With `unique`, nothing is inserted (and `false` returned) when
    /// an entry with the same `(key, seq)` exists.
    #[allow(clippy::too_many_arguments)]
    pub fn insert<'a>(
        &'a self,
        arena: &'a Arena,
        key: &[u8],
        seq: SeqNo,
        op: OpKind,
        value: &[u8],
        unique: bool,
        before_link: impl FnOnce(Option<NodeRef<'a>>, Option<NodeRef<'a>>),
    ) -> bool {
        let height = random_height();
        let mut top = self.height.load(Ordering::Relaxed);
        while height > top {
            match self.height.compare_exchange_weak(
                top,
                height,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => top = height,
                Err(now) => top = now,
            }
        }
        let head = self.head();
        let mut splices: [Splice<'a>; MAX_HEIGHT] = [(head, None); MAX_HEIGHT];
        let mut prev = head;
        for level in (0..top).rev() {
            splices[level] = self.splice_at(prev, level, key, seq);
            prev = splices[level].0;
        }
        let is_same = |n: Option<NodeRef<'_>>| n.is_some_and(|n| n.cmp_to(key, seq).is_eq());
        if unique && is_same(splices[0].1) {
            return false;
        }
        debug_assert!(!is_same(splices[0].1), "(key, seq) inserted twice");
        let (prev0, next0) = splices[0];
        before_link((prev0 != head).then_some(prev0), next0);

        let node = NodeRef::alloc(arena, height, key, seq, op, value);
        for (level, splice) in splices.iter_mut().enumerate().take(height) {
            loop {
                let (prev, next) = *splice;
                let next_ptr = next.map_or(std::ptr::null_mut(), |n| n.as_ptr());
                node.link(level).store(next_ptr, Ordering::Relaxed);
                // Release: publishes the node's contents (and its link at this level).
                if prev
                    .link(level)
                    .compare_exchange(
                        next_ptr,
                        node.as_ptr(),
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    break;
                }
                *splice = self.splice_at(prev, level, key, seq);
                if level == 0 && unique && is_same(splice.1) {
                    // Lost a race with an identical entry; the node stays unused in the arena.
                    return false;
                }
            }
        }
        true
    }
}

/// The `enhanced_skiplist` memtable (see the module docs).
#[derive(Debug)]
pub struct EnhancedSkipListMemtable {
    list: InlineSkipList,
    /// Owns every node of `list`; declared after it (the list has no destructor anyway).
    arena: Arena,
    len: AtomicUsize,
}

impl Default for EnhancedSkipListMemtable {
    fn default() -> Self {
        Self::new()
    }
}

impl EnhancedSkipListMemtable {
    /// An empty memtable.
    pub fn new() -> Self {
        let arena = Arena::new();
        let list = InlineSkipList::new(&arena);
        EnhancedSkipListMemtable {
            list,
            arena,
            len: AtomicUsize::new(0),
        }
    }
}

impl Memtable for EnhancedSkipListMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::EnhancedSkipList
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        self.list
            .insert(&self.arena, key, seq, op, value, false, |_, _| {});
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        let node = self.list.seek(key, read_seq)?;
        (node.key() == key).then(|| MemtableEntry {
            seq: node.seq(),
            op: node.op(),
            value: node.value().to_vec(),
        })
    }

    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        let mut cursor = self.list.seek(key, seq);
        while let Some(node) = cursor {
            if !visitor(node.entry()) {
                return;
            }
            cursor = self.list.successor(node);
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

    #[test]
    fn heights_are_geometric() {
        let mut counts = [0usize; MAX_HEIGHT + 1];
        for _ in 0..40_000 {
            counts[random_height()] += 1;
        }
        assert_eq!(counts[0], 0);
        // About 3/4 of the nodes have height 1 and 3/16 height 2.
        assert!((28_000..32_000).contains(&counts[1]), "{counts:?}");
        assert!((6_500..8_500).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn unique_insert_refuses_duplicates() {
        let arena = Arena::new();
        let list = InlineSkipList::new(&arena);
        assert!(list.insert(&arena, b"p", 1, OpKind::Put, b"", true, |_, _| {}));
        assert!(!list.insert(&arena, b"p", 1, OpKind::Put, b"", true, |_, _| {}));
        assert!(list.insert(&arena, b"p", 2, OpKind::Put, b"", true, |_, _| {}));
        let mut neighbours = None;
        list.insert(&arena, b"q", 1, OpKind::Put, b"", true, |prev, next| {
            neighbours = Some((prev.map(|n| n.seq()), next.is_some()));
        });
        // Predecessor is ("p", 1): newer versions sort first.
        assert_eq!(neighbours, Some((Some(1), false)));
    }

    #[test]
    fn memory_is_arena_bytes() {
        let table = EnhancedSkipListMemtable::new();
        let before = table.memory_bytes();
        table.insert(&[7; 16], 1, OpKind::Put, &[1; 100]);
        let grown = table.memory_bytes() - before;
        // Header + at least one link + key + value, rounded to 8 bytes; no other overhead.
        assert!(
            (24 + 8 + 116..=24 + 8 * MAX_HEIGHT + 120).contains(&grown),
            "{grown}"
        );
    }
}
