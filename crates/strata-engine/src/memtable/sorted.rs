//! `sorted`: a `BTreeMap` keyed by internal key, behind a reader-writer lock.
//!
//! * Insert O(log n), get O(log n), ordered iteration O(1) per entry after an O(log n) seek.
//! * Concurrency: one `RwLock`; inserts take it exclusively, reads and visits share it (a visit
//!   holds the read lock while its visitor runs, so visitors must be short; the engine copies
//!   entries out in bounded chunks).
//! * Memory: every entry owns two heap allocations (internal key, value); accounting adds the
//!   bytes of both plus [`ENTRY_OVERHEAD_BYTES`] for the B-tree slot and allocator headers.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::internal_key::{InternalKey, InternalKeyRef, with_internal_key};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// Structure overhead charged per entry: B-tree slot (key 16 B + value 24 B, nodes about two
/// thirds full) plus two allocator headers.
pub const ENTRY_OVERHEAD_BYTES: usize = 96;

/// The map: internal key to operation and value.
type Map = BTreeMap<InternalKey, (OpKind, Box<[u8]>)>;

/// The `sorted` memtable (see the module docs).
#[derive(Debug, Default)]
pub struct SortedMemtable {
    map: RwLock<Map>,
    memory_bytes: AtomicUsize,
    len: AtomicUsize,
}

impl SortedMemtable {
    /// An empty memtable.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Memtable for SortedMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::Sorted
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let internal = InternalKey::new(key, seq);
        let bytes = internal.heap_bytes() + value.len() + ENTRY_OVERHEAD_BYTES;
        let previous = self.map.write().insert(internal, (op, value.into()));
        debug_assert!(previous.is_none(), "(key, seq) inserted twice");
        self.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        let map = self.map.read();
        with_internal_key(key, read_seq, |start| {
            let (found, (op, value)) = map
                .range::<InternalKeyRef, _>((Bound::Included(start), Bound::Unbounded))
                .next()?;
            (found.user_key() == key).then(|| MemtableEntry {
                seq: found.seq(),
                op: *op,
                value: value.to_vec(),
            })
        })
    }

    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        let map = self.map.read();
        with_internal_key(key, seq, |start| {
            for (k, (op, value)) in
                map.range::<InternalKeyRef, _>((Bound::Included(start), Bound::Unbounded))
            {
                let entry = EntryRef {
                    key: k.user_key(),
                    seq: k.seq(),
                    op: *op,
                    value,
                };
                if !visitor(entry) {
                    break;
                }
            }
        });
    }

    fn memory_bytes(&self) -> usize {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}
