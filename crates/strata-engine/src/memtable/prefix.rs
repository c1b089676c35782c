//! Prefix hashing and the ordered prefix index shared by the hash variants (`hash_skiplist`,
//! `hash_linked_list`).
//!
//! A key's *prefix* is its first `prefix_len` bytes (the whole key when shorter). Keys with the
//! same prefix go to the same hash bucket, so point reads and scans that stay inside one prefix
//! touch one bucket.
//!
//! ## Ordered iteration over hash buckets
//!
//! Truncating keys to a fixed length preserves order (`a <= b` implies
//! `prefix(a) <= prefix(b)`), so the keys of one prefix form one contiguous range in key order
//! and the ranges of different prefixes are ordered like the prefixes themselves. The
//! [`PrefixIndex`] is a lock-free skip list of the *distinct* prefixes, kept in the same arena.
//! Full ordered iteration walks it and, for each prefix, seeks the prefix's first entry in its
//! bucket and walks that bucket while entries carry the prefix. Cost: one bucket seek per
//! distinct prefix plus O(1) per entry, i.e. O(P * seek + n) for P prefixes, instead of the
//! O(n log n) copy into a fresh sorted structure that RocksDB's hash memtables make for a
//! total-order iterator. A seek at `(key, seq)` costs one bucket seek plus one index seek.
//!
//! ## Invariants
//!
//! * An entry is linked into its bucket only after its prefix is in the index. Inserting does
//!   not look the prefix up every time: entries of one prefix are contiguous in their bucket,
//!   so when the new entry's bucket neighbour has the same prefix, the prefix was indexed
//!   before that neighbour was linked; only the first entry of a prefix (no such neighbour)
//!   pays for the index insert.
//! * Bucket counts are powers of two.

use super::EntryRef;
use super::arena::Arena;
use super::enhanced_skiplist::InlineSkipList;
use super::node::NodeRef;
use crate::types::SeqNo;

/// Default prefix length: the first 8 bytes (for example one `BIGINT` key column, a tenant
/// id, or the leading bytes of a binary key). Configure it for the table's key layout.
pub const DEFAULT_PREFIX_LEN: usize = 8;
/// Default number of hash buckets: small enough that an empty memtable stays well below the
/// smallest memtable size (64 KiB); tables with many prefixes should ask for more.
pub const DEFAULT_BUCKETS: usize = 1024;
/// Largest accepted bucket count.
pub const MAX_BUCKETS: usize = 1 << 24;

/// Prefix extraction and bucket choice.
#[derive(Debug, Clone, Copy)]
pub struct PrefixHasher {
    prefix_len: usize,
    bucket_mask: usize,
}

impl PrefixHasher {
    /// A hasher for `prefix_len`-byte prefixes over `buckets` buckets (rounded up to a power of
    /// two, at least 1, at most [`MAX_BUCKETS`]). Panics when `prefix_len` is 0.
    pub fn new(prefix_len: usize, buckets: usize) -> Self {
        assert!(prefix_len > 0, "prefix length must be at least 1");
        let buckets = buckets.clamp(1, MAX_BUCKETS).next_power_of_two();
        PrefixHasher {
            prefix_len,
            bucket_mask: buckets - 1,
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.bucket_mask + 1
    }

    /// Prefix length in bytes.
    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    /// The prefix of `key`.
    #[inline]
    pub fn prefix<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        &key[..key.len().min(self.prefix_len)]
    }

    /// The bucket of a prefix.
    #[inline]
    pub fn bucket(&self, prefix: &[u8]) -> usize {
        (hash_bytes(prefix) as usize) & self.bucket_mask
    }
}

/// A fast 64-bit hash of a short byte string (8-byte words mixed with the splitmix64
/// finaliser).
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64 ^ (bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
        h = mix(h ^ word);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = mix(h ^ u64::from_le_bytes(buf));
    }
    mix(h)
}

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sequence number stored with every index entry (the index holds one version per prefix).
const INDEX_SEQ: SeqNo = 1;

/// The ordered set of distinct prefixes (see the module docs).
#[derive(Debug)]
pub struct PrefixIndex {
    list: InlineSkipList,
    count: std::sync::atomic::AtomicUsize,
}

impl PrefixIndex {
    /// An empty index in `arena`.
    pub fn new(arena: &Arena) -> Self {
        PrefixIndex {
            list: InlineSkipList::new(arena),
            count: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Adds `prefix` unless present. `arena` must be the arena given to [`PrefixIndex::new`].
    pub fn ensure(&self, arena: &Arena, prefix: &[u8]) {
        if self.list.insert(
            arena,
            prefix,
            INDEX_SEQ,
            crate::types::OpKind::Put,
            b"",
            true,
            |_, _| {},
        ) {
            self.count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True when no prefix was indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first indexed prefix strictly greater than `prefix`.
    pub fn after(&self, prefix: &[u8]) -> Option<NodeRef<'_>> {
        // `(prefix, 0)` sorts after `(prefix, INDEX_SEQ)`: newer sequence numbers come first.
        self.list.seek(prefix, 0)
    }

    /// The indexed prefix after `node`.
    pub fn next<'a>(&'a self, node: NodeRef<'a>) -> Option<NodeRef<'a>> {
        self.list.successor(node)
    }
}

/// True when the bucket neighbours computed for a new entry prove its prefix is indexed.
pub fn neighbour_has_prefix(
    hasher: &PrefixHasher,
    prefix: &[u8],
    prev: Option<NodeRef<'_>>,
    next: Option<NodeRef<'_>>,
) -> bool {
    let same = |n: Option<NodeRef<'_>>| n.is_some_and(|n| hasher.prefix(n.key()) == prefix);
    same(prev) || same(next)
}

/// Ordered visit shared by the hash variants: the rest of the start key's prefix group, then
/// every later group from the index. `seek(prefix_bucket_key, seq)` must return the first
/// entry at or after `(key, seq)` in the bucket of `key`'s prefix; buckets are walked with
/// link 0 (the level-0 / list `next` pointer).
pub fn visit_groups<'a>(
    hasher: &PrefixHasher,
    index: &'a PrefixIndex,
    key: &[u8],
    seq: SeqNo,
    seek: impl Fn(&[u8], SeqNo) -> Option<NodeRef<'a>>,
    visitor: &mut dyn FnMut(EntryRef<'_>) -> bool,
) {
    let start_prefix = hasher.prefix(key);
    if !visit_group(hasher, start_prefix, seek(key, seq), visitor) {
        return;
    }
    let mut group = index.after(start_prefix);
    while let Some(prefix_node) = group {
        let prefix = prefix_node.key();
        if !visit_group(hasher, prefix, seek(prefix, SeqNo::MAX), visitor) {
            return;
        }
        group = index.next(prefix_node);
    }
}

/// Visits from `first` while entries carry `prefix`; false when the visitor stopped.
fn visit_group(
    hasher: &PrefixHasher,
    prefix: &[u8],
    first: Option<NodeRef<'_>>,
    visitor: &mut dyn FnMut(EntryRef<'_>) -> bool,
) -> bool {
    let mut cursor = first;
    while let Some(node) = cursor {
        if hasher.prefix(node.key()) != prefix {
            break;
        }
        if !visitor(node.entry()) {
            return false;
        }
        // SAFETY: bucket links hold null or nodes of the same arena, which outlives `'_`.
        cursor =
            unsafe { NodeRef::from_raw(node.link(0).load(std::sync::atomic::Ordering::Acquire)) };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_buckets() {
        let hasher = PrefixHasher::new(3, 5);
        assert_eq!(hasher.buckets(), 8);
        assert_eq!(hasher.prefix(b"abcdef"), b"abc");
        assert_eq!(hasher.prefix(b"ab"), b"ab");
        assert_eq!(hasher.bucket(b"abc"), hasher.bucket(b"abc"));
        assert!(hasher.bucket(b"xyz") < 8);
        assert_ne!(hash_bytes(b"abc"), hash_bytes(b"abd"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
    }

    #[test]
    fn index_orders_distinct_prefixes() {
        let arena = Arena::new();
        let index = PrefixIndex::new(&arena);
        for p in [b"b".as_ref(), b"a", b"c", b"a", b"ab"] {
            index.ensure(&arena, p);
        }
        assert_eq!(index.len(), 4);
        let mut seen = Vec::new();
        let mut cursor = index.after(b"");
        while let Some(node) = cursor {
            seen.push(node.key().to_vec());
            cursor = index.next(node);
        }
        assert_eq!(
            seen,
            vec![b"a".to_vec(), b"ab".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            index.after(b"ab").map(|n| n.key().to_vec()),
            Some(b"b".to_vec())
        );
    }
}
