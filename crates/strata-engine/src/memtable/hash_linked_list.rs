//! `hash_linked_list`: keys hashed by a configurable fixed-length prefix into buckets, each
//! bucket a sorted singly linked list (RocksDB's `HashLinkList`).
//!
//! * Structure: a fixed array of bucket heads (a power of two, default
//!   [`super::prefix::DEFAULT_BUCKETS`]); each head starts a list of arena
//!   [`node`](super::node)s with one `next` link, in internal-key order. Entries of colliding
//!   prefixes share a list. A [`PrefixIndex`] (an arena skip list) holds the distinct prefixes
//!   in order.
//! * Complexity: insert and get O(1) to find the bucket plus O(b) along a bucket of b entries,
//!   so it suits many prefixes with few entries (versions) each; a scan inside one prefix
//!   O(b) to the start, then O(1) per entry.
//! * Ordered iteration: walk the prefix index and, for each prefix, walk its bucket to the
//!   prefix's first entry and on while the prefix holds (see [`prefix`](super::prefix)):
//!   O(P * b + n) for a full pass over P prefixes, O(b + log P) for a seek. With one prefix per
//!   bucket that is O(n).
//! * Concurrency: lock-free. An insert walks its bucket to the predecessor link and links the
//!   new node with one compare-and-swap; on failure it continues from the same predecessor
//!   (nodes are only added, so it stays a lower bound). Readers follow acquire loads.
//! * Memory: one arena allocation per entry (24 B header + one 8 B link + key + value, rounded
//!   to 8 B), the prefix index (arena), and 8 B per bucket head.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::arena::Arena;
use super::node::{Node, NodeRef};
use super::prefix::{
    DEFAULT_BUCKETS, DEFAULT_PREFIX_LEN, PrefixHasher, PrefixIndex, neighbour_has_prefix,
    visit_groups,
};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// The `hash_linked_list` memtable (see the module docs).
#[derive(Debug)]
pub struct HashLinkedListMemtable {
    hasher: PrefixHasher,
    /// Bucket heads: null or the first node of the bucket's list.
    buckets: Box<[AtomicPtr<Node>]>,
    index: PrefixIndex,
    /// Owns every node of the buckets and the index.
    arena: Arena,
    len: AtomicUsize,
}

// The raw pointers in `buckets` point into `arena`, which lives as long as the memtable.
// `AtomicPtr` is already `Send + Sync`, so no manual impl is needed.

impl Default for HashLinkedListMemtable {
    fn default() -> Self {
        Self::new()
    }
}

impl HashLinkedListMemtable {
    /// An empty memtable with the default prefix length and bucket count.
    pub fn new() -> Self {
        Self::with_options(DEFAULT_PREFIX_LEN, DEFAULT_BUCKETS)
    }

    /// An empty memtable hashing the first `prefix_len` bytes of each key into `buckets`
    /// buckets (rounded up to a power of two). Panics when `prefix_len` is 0.
    pub fn with_options(prefix_len: usize, buckets: usize) -> Self {
        let hasher = PrefixHasher::new(prefix_len, buckets);
        let arena = Arena::new();
        let index = PrefixIndex::new(&arena);
        HashLinkedListMemtable {
            buckets: (0..hasher.buckets())
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            hasher,
            index,
            arena,
            len: AtomicUsize::new(0),
        }
    }

    /// Number of distinct prefixes stored.
    pub fn prefix_count(&self) -> usize {
        self.index.len()
    }

    fn head_of(&self, key: &[u8]) -> &AtomicPtr<Node> {
        &self.buckets[self.hasher.bucket(self.hasher.prefix(key))]
    }

    #[inline]
    fn load<'a>(&'a self, link: &'a AtomicPtr<Node>) -> Option<NodeRef<'a>> {
        // SAFETY: bucket heads and node links only hold null or nodes allocated from
        // `self.arena`, which lives as long as `self`.
        unsafe { NodeRef::from_raw(link.load(Ordering::Acquire)) }
    }

    /// From `link` (a bucket head or a node's `next`), the last link whose successor does not
    /// sort before `(key, seq)`: returns the predecessor node (None for the head), the link to
    /// swing and the successor.
    fn walk<'a>(
        &'a self,
        mut prev: Option<NodeRef<'a>>,
        mut link: &'a AtomicPtr<Node>,
        key: &[u8],
        seq: SeqNo,
    ) -> (
        Option<NodeRef<'a>>,
        &'a AtomicPtr<Node>,
        Option<NodeRef<'a>>,
    ) {
        loop {
            match self.load(link) {
                Some(node) if node.is_before(key, seq) => {
                    prev = Some(node);
                    link = node.link(0);
                }
                next => return (prev, link, next),
            }
        }
    }

    fn seek(&self, key: &[u8], seq: SeqNo) -> Option<NodeRef<'_>> {
        self.walk(None, self.head_of(key), key, seq).2
    }
}

impl Memtable for HashLinkedListMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::HashLinkedList
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let prefix = self.hasher.prefix(key);
        let (mut prev, mut link, mut next) = self.walk(None, self.head_of(key), key, seq);
        debug_assert!(
            next.is_none_or(|n| !n.cmp_to(key, seq).is_eq()),
            "(key, seq) inserted twice"
        );
        if !neighbour_has_prefix(&self.hasher, prefix, prev, next) {
            self.index.ensure(&self.arena, prefix);
        }
        let node = NodeRef::alloc(&self.arena, 1, key, seq, op, value);
        loop {
            let next_ptr = next.map_or(std::ptr::null_mut(), |n| n.as_ptr());
            node.link(0).store(next_ptr, Ordering::Relaxed);
            // Release: publishes the node's contents and its `next` link.
            match link.compare_exchange(
                next_ptr,
                node.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(_) => (prev, link, next) = self.walk(prev, link, key, seq),
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
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
        visit_groups(
            &self.hasher,
            &self.index,
            key,
            seq,
            |k, s| self.seek(k, s),
            visitor,
        );
    }

    fn memory_bytes(&self) -> usize {
        self.arena.memory_bytes() + std::mem::size_of_val(&*self.buckets)
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memtable::conformance::{Subject, concurrent_insert_and_read, run_all_with};

    #[test]
    fn conformance_with_short_prefixes_and_colliding_buckets() {
        for (prefix_len, buckets) in [(1, 1), (2, 3), (3, 64), (16, 2)] {
            run_all_with(&Subject::new(
                format!("hash_linked_list(prefix {prefix_len}, buckets {buckets})"),
                move || Arc::new(HashLinkedListMemtable::with_options(prefix_len, buckets)),
            ));
        }
    }

    #[test]
    fn concurrent_inserts_into_one_bucket() {
        // Every key in one list: the compare-and-swap retry path is exercised constantly.
        concurrent_insert_and_read(
            &Subject::new("hash_linked_list(one bucket)", || {
                Arc::new(HashLinkedListMemtable::with_options(3, 1))
            }),
            2,
            1_500,
        );
    }
}
