//! `skiplist`: a lock-free concurrent skip list (crossbeam-skiplist's `SkipMap`) keyed by
//! internal key.
//!
//! * Insert, get: expected O(log n); ordered iteration O(1) per entry after an O(log n) seek.
//! * Concurrency: lock-free; inserts, gets and visits from any number of threads proceed in
//!   parallel (epoch-based reclamation). A visit sees every entry inserted before it started
//!   and possibly some inserted during it; the engine filters by sequence number.
//! * Memory: each node is one allocation holding the key and value handles and its tower;
//!   key and value bytes are two more allocations. Accounting adds the bytes of both plus
//!   [`ENTRY_OVERHEAD_BYTES`].

use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::internal_key::{InternalKey, InternalKeyRef, with_internal_key};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// The bare container behind this variant, re-exported so that benchmarks can measure it as a
/// reference line without depending on crossbeam themselves.
pub use crossbeam_skiplist::SkipMap;

/// Structure overhead charged per entry: node header and average tower (about 80 B), the two
/// boxed slices' handles, and allocator headers.
pub const ENTRY_OVERHEAD_BYTES: usize = 112;

/// The `skiplist` memtable (see the module docs).
#[derive(Debug, Default)]
pub struct SkipListMemtable {
    map: SkipMap<InternalKey, (OpKind, Box<[u8]>)>,
    memory_bytes: AtomicUsize,
}

impl SkipListMemtable {
    /// An empty memtable.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Memtable for SkipListMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::SkipList
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let internal = InternalKey::new(key, seq);
        let bytes = internal.heap_bytes() + value.len() + ENTRY_OVERHEAD_BYTES;
        self.map.insert(internal, (op, value.into()));
        self.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        with_internal_key(key, read_seq, |start| {
            let entry = self.map.lower_bound(Bound::Included(start))?;
            let (op, value) = entry.value();
            (entry.key().user_key() == key).then(|| MemtableEntry {
                seq: entry.key().seq(),
                op: *op,
                value: value.to_vec(),
            })
        })
    }

    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        with_internal_key(key, seq, |start| {
            for entry in self
                .map
                .range::<InternalKeyRef, _>((Bound::Included(start), Bound::Unbounded))
            {
                let (op, value) = entry.value();
                let visited = EntryRef {
                    key: entry.key().user_key(),
                    seq: entry.key().seq(),
                    op: *op,
                    value,
                };
                if !visitor(visited) {
                    break;
                }
            }
        });
    }

    fn memory_bytes(&self) -> usize {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}
