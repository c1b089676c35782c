//! Memtables: the in-memory, sorted write buffer of a table.
//!
//! Every write lands in the table's *active* memtable after its WAL record is durable. When the
//! active memtable passes its size budget it becomes *immutable* and a background flush writes
//! it to an L0 SST. All variants implement one trait, [`Memtable`], and are chosen at runtime by
//! name through [`MemtableKind`].
//!
//! ## Contract (checked by `conformance` (the tests module) for every variant)
//!
//! * Entries are `(key, seq, op, value)`; the engine never inserts the same `(key, seq)` twice
//!   and sequence number `0` is never used for a write (it is reserved as a search sentinel).
//! * Iteration order is *internal key order*: key ascending (bytewise), then sequence number
//!   descending, so the newest version of a key comes first.
//! * `get(key, read_seq)` returns the newest version with `seq <= read_seq`, tombstones included
//!   (the caller decides what a tombstone means).
//! * `visit_from(key, seq, f)` calls `f` for every entry at or after the internal position
//!   `(key, seq)` in internal order, until `f` returns `false`. The visitor must not call back
//!   into the same memtable.
//! * Inserts and reads may run concurrently from many threads (`&self` methods); variants that
//!   are not lock-free guard themselves with a lock, and say so in their module docs.
//! * `memory_bytes` grows with every insert and is what the engine's budgets use.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::types::{OpKind, SeqNo};

pub mod arena;
pub mod b_skiplist;
pub mod chunked;
pub mod enhanced_skiplist;
pub mod hash_linked_list;
pub mod hash_skiplist;
pub mod internal_key;
pub mod linked_list;
pub mod node;
pub mod prefix;
pub mod rotating_skiplist;
pub mod skiplist;
pub mod sorted;
pub mod trie;
pub mod vector;

#[cfg(test)]
pub mod conformance;

pub use internal_key::{InternalKey, InternalKeyRef};

/// One stored version, as returned by [`Memtable::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemtableEntry {
    /// Sequence number of the write.
    pub seq: SeqNo,
    /// Put or delete.
    pub op: OpKind,
    /// Encoded value columns (empty for a delete).
    pub value: Vec<u8>,
}

/// A borrowed view of one entry during [`Memtable::visit_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Encoded primary key.
    pub key: &'a [u8],
    /// Sequence number of the write.
    pub seq: SeqNo,
    /// Put or delete.
    pub op: OpKind,
    /// Encoded value columns (empty for a delete).
    pub value: &'a [u8],
}

/// The interface every memtable variant implements. See the module docs for the contract.
pub trait Memtable: Send + Sync + fmt::Debug {
    /// Which variant this is.
    fn kind(&self) -> MemtableKind;

    /// Inserts one version of `key`.
    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]);

    /// The newest version of `key` with `seq <= read_seq`.
    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry>;

    /// Visits entries in internal order from the position `(key, seq)` (the first entry whose
    /// key is greater than `key`, or equal with a sequence number `<= seq`) until `visitor`
    /// returns `false`.
    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool);

    /// Approximate bytes of memory held by this memtable (data plus structure overhead).
    fn memory_bytes(&self) -> usize;

    /// Number of entries (versions, not distinct keys).
    fn len(&self) -> usize;

    /// True when nothing was inserted.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The memtable variants, selectable by name (`"sorted"`, `"skiplist"`, ...).
///
/// | name | structure | concurrent inserts |
/// |---|---|---|
/// | `sorted` | `BTreeMap` | no (one `RwLock`) |
/// | `skiplist` | crossbeam skip list | yes (lock-free) |
/// | `enhanced_skiplist` | arena skip list, entries inline | yes (lock-free) |
/// | `hash_skiplist` | prefix-hash buckets of arena skip lists | yes (lock-free) |
/// | `hash_linked_list` | prefix-hash buckets of sorted lists | yes (lock-free) |
/// | `linked_list` | one sorted list, O(n) insert | no (one `RwLock`) |
/// | `vector` | append-only vector, sorted on read | no (one `RwLock`) |
/// | `trie` | adaptive radix trie | no (one `RwLock`) |
/// | `rotating_skiplist` | rotating skip list (wheels) | yes (lock-free) |
/// | `b_skiplist` | skip list of sorted blocks | no (one `RwLock`) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MemtableKind {
    /// A `BTreeMap` behind a reader-writer lock.
    Sorted,
    /// A concurrent lock-free skip list (crossbeam-skiplist).
    #[default]
    SkipList,
    /// An arena-allocated lock-free skip list with keys and values inline (RocksDB's
    /// `InlineSkipList`).
    EnhancedSkipList,
    /// Keys hashed by a fixed-length prefix into buckets, each an arena skip list
    /// (RocksDB's `HashSkipList`).
    HashSkipList,
    /// Keys hashed by a fixed-length prefix into buckets, each a sorted linked list
    /// (RocksDB's `HashLinkList`).
    HashLinkedList,
    /// One sorted linked list: O(n) insert, minimal memory; for small tables.
    LinkedList,
    /// An append-only vector sorted once when read or flushed (RocksDB's `VectorRep`).
    Vector,
    /// A byte-wise adaptive radix trie.
    Trie,
    /// The rotating skip list of Dick, Fekete and Gramoli (wheels, lazy index maintenance).
    RotatingSkipList,
    /// A skip list whose nodes are blocks of many sorted entries.
    BSkipList,
}

impl MemtableKind {
    /// Every variant, in documentation order.
    pub const ALL: &'static [MemtableKind] = &[
        MemtableKind::Sorted,
        MemtableKind::SkipList,
        MemtableKind::EnhancedSkipList,
        MemtableKind::HashSkipList,
        MemtableKind::HashLinkedList,
        MemtableKind::LinkedList,
        MemtableKind::Vector,
        MemtableKind::Trie,
        MemtableKind::RotatingSkipList,
        MemtableKind::BSkipList,
    ];

    /// The variant's name as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            MemtableKind::Sorted => "sorted",
            MemtableKind::SkipList => "skiplist",
            MemtableKind::EnhancedSkipList => "enhanced_skiplist",
            MemtableKind::HashSkipList => "hash_skiplist",
            MemtableKind::HashLinkedList => "hash_linked_list",
            MemtableKind::LinkedList => "linked_list",
            MemtableKind::Vector => "vector",
            MemtableKind::Trie => "trie",
            MemtableKind::RotatingSkipList => "rotating_skiplist",
            MemtableKind::BSkipList => "b_skiplist",
        }
    }

    /// True for variants whose inserts and reads run in parallel without a global lock.
    pub fn is_concurrent(self) -> bool {
        matches!(
            self,
            MemtableKind::SkipList
                | MemtableKind::EnhancedSkipList
                | MemtableKind::HashSkipList
                | MemtableKind::HashLinkedList
                | MemtableKind::RotatingSkipList
        )
    }

    /// Creates an empty memtable of this variant (hash variants with their default prefix
    /// length and bucket count).
    pub fn create(self) -> Arc<dyn Memtable> {
        match self {
            MemtableKind::Sorted => Arc::new(sorted::SortedMemtable::new()),
            MemtableKind::SkipList => Arc::new(skiplist::SkipListMemtable::new()),
            MemtableKind::EnhancedSkipList => {
                Arc::new(enhanced_skiplist::EnhancedSkipListMemtable::new())
            }
            MemtableKind::HashSkipList => Arc::new(hash_skiplist::HashSkipListMemtable::new()),
            MemtableKind::HashLinkedList => {
                Arc::new(hash_linked_list::HashLinkedListMemtable::new())
            }
            MemtableKind::LinkedList => Arc::new(linked_list::LinkedListMemtable::new()),
            MemtableKind::Vector => Arc::new(vector::VectorMemtable::new()),
            MemtableKind::Trie => Arc::new(trie::TrieMemtable::new()),
            MemtableKind::RotatingSkipList => {
                Arc::new(rotating_skiplist::RotatingSkipListMemtable::new())
            }
            MemtableKind::BSkipList => Arc::new(b_skiplist::BSkipListMemtable::new()),
        }
    }
}

impl fmt::Display for MemtableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MemtableKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        MemtableKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = MemtableKind::ALL.iter().map(|k| k.name()).collect();
                Error::InvalidArgument(format!(
                    "unknown memtable kind '{s}'; valid kinds: {}",
                    names.join(", ")
                ))
            })
    }
}

impl serde::Serialize for MemtableKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for MemtableKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_display() {
        for kind in MemtableKind::ALL {
            assert_eq!(kind.name().parse::<MemtableKind>().unwrap(), *kind);
            assert_eq!(kind.to_string(), kind.name());
            assert_eq!(kind.create().kind(), *kind);
        }
        assert_eq!(
            "SkipList".parse::<MemtableKind>().unwrap(),
            MemtableKind::SkipList
        );
        assert_eq!(
            "hash-linked-list".parse::<MemtableKind>().unwrap(),
            MemtableKind::HashLinkedList
        );
        let err = "skiplits".parse::<MemtableKind>().unwrap_err().to_string();
        assert!(
            err.contains(
                "valid kinds: sorted, skiplist, enhanced_skiplist, hash_skiplist, \
                 hash_linked_list, linked_list, vector, trie, rotating_skiplist, b_skiplist"
            ),
            "{err}"
        );
        assert_eq!(MemtableKind::ALL.len(), 10);
        let concurrent: Vec<&str> = MemtableKind::ALL
            .iter()
            .filter(|k| k.is_concurrent())
            .map(|k| k.name())
            .collect();
        assert_eq!(
            concurrent,
            [
                "skiplist",
                "enhanced_skiplist",
                "hash_skiplist",
                "hash_linked_list",
                "rotating_skiplist"
            ]
        );
    }

    #[test]
    fn every_variant_passes_conformance() {
        for kind in MemtableKind::ALL {
            conformance::run_all(*kind);
        }
    }
}
