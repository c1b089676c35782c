//! `hash_skiplist`: keys hashed by a configurable fixed-length prefix into buckets, each bucket
//! a lock-free arena skip list (RocksDB's `HashSkipList`).
//!
//! * Structure: a fixed array of buckets (a power of two, default
//!   [`super::prefix::DEFAULT_BUCKETS`]); bucket `hash(prefix) & mask` holds,
//!   in internal-key order, every entry whose key starts with that prefix (prefixes that collide
//!   share a bucket, still ordered). Buckets are [`InlineSkipList`]s created on first use, all
//!   allocating from one [`Arena`]. Beside them, a [`PrefixIndex`] (another arena skip list)
//!   holds the distinct prefixes in order.
//! * Complexity: insert and get O(1) to find the bucket plus expected O(log b) in a bucket of b
//!   entries; a scan inside one prefix O(log b) + O(1) per entry.
//! * Ordered iteration (flush, scans that cross prefixes): walk the prefix index and, for each
//!   prefix, seek its first entry in its bucket and follow the bucket while the prefix holds
//!   (see [`prefix`](super::prefix)): O(P log b + n) for a full pass over P prefixes, a seek
//!   costs one bucket seek plus one index seek. Many tiny prefixes (a prefix as long as the
//!   key) make a full pass cost about one skip-list seek per key.
//! * Concurrency: lock-free, like `enhanced_skiplist`; a bucket's skip list is created once
//!   through a `OnceLock` (threads racing to create the same bucket wait for that one
//!   initialisation, never for each other's inserts).
//! * Memory: arena bytes (entries inline, the bucket heads, the prefix index) plus the bucket
//!   array itself.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::arena::Arena;
use super::enhanced_skiplist::InlineSkipList;
use super::prefix::{
    DEFAULT_BUCKETS, DEFAULT_PREFIX_LEN, PrefixHasher, PrefixIndex, neighbour_has_prefix,
    visit_groups,
};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// The `hash_skiplist` memtable (see the module docs).
#[derive(Debug)]
pub struct HashSkipListMemtable {
    hasher: PrefixHasher,
    buckets: Box<[OnceLock<InlineSkipList>]>,
    index: PrefixIndex,
    /// Owns every node of the buckets and the index.
    arena: Arena,
    len: AtomicUsize,
}

impl Default for HashSkipListMemtable {
    fn default() -> Self {
        Self::new()
    }
}

impl HashSkipListMemtable {
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
        HashSkipListMemtable {
            buckets: (0..hasher.buckets()).map(|_| OnceLock::new()).collect(),
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

    fn bucket_of(&self, key: &[u8]) -> &OnceLock<InlineSkipList> {
        &self.buckets[self.hasher.bucket(self.hasher.prefix(key))]
    }
}

impl Memtable for HashSkipListMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::HashSkipList
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let prefix = self.hasher.prefix(key);
        let bucket = self
            .bucket_of(key)
            .get_or_init(|| InlineSkipList::new(&self.arena));
        bucket.insert(&self.arena, key, seq, op, value, false, |prev, next| {
            if !neighbour_has_prefix(&self.hasher, prefix, prev, next) {
                self.index.ensure(&self.arena, prefix);
            }
        });
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        let node = self.bucket_of(key).get()?.seek(key, read_seq)?;
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
            |k, s| self.bucket_of(k).get()?.seek(k, s),
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
    use crate::memtable::conformance::{Subject, run_all_with};

    #[test]
    fn conformance_with_short_prefixes_and_colliding_buckets() {
        for (prefix_len, buckets) in [(1, 1), (2, 3), (3, 64), (16, 2)] {
            run_all_with(&Subject::new(
                format!("hash_skiplist(prefix {prefix_len}, buckets {buckets})"),
                move || Arc::new(HashSkipListMemtable::with_options(prefix_len, buckets)),
            ));
        }
    }

    #[test]
    fn prefixes_are_indexed_once() {
        let table = HashSkipListMemtable::with_options(2, 4);
        for (i, key) in [b"aa1".as_ref(), b"aa2", b"ab", b"a", b"aa3", b"ab9"]
            .iter()
            .enumerate()
        {
            table.insert(key, i as u64 + 1, OpKind::Put, b"");
        }
        assert_eq!(table.prefix_count(), 3, "aa, ab, a");
    }
}
