//! `vector`: an append-only vector, sorted once when read or flushed (RocksDB's `VectorRep`).
//!
//! * Structure: entry records are appended to a [`ChunkedBytes`] store; an index vector holds
//!   one slot per entry (the first 8 key bytes, big-endian, for cheap comparisons, and the
//!   record location). The index is split in a sorted part and an unsorted tail of entries
//!   appended since the last read.
//! * Complexity: insert amortised O(1) (two appends, no comparison) — the fastest bulk load.
//!   The first read after inserts sorts the tail (O(k log k), O(k) when the tail is already in
//!   order) and merges it into the sorted part (O(n)); later reads are O(log n) for get and a
//!   seek, then O(1) per entry. Interleaving single inserts with reads therefore costs O(n) per
//!   read: the variant is for load-then-read phases (bulk ingest, then flush).
//! * Correctness at any time: every read first makes the whole index sorted, so `get` and
//!   `visit_from` see every entry inserted before they started.
//! * Concurrency: one `RwLock`. Inserts take it exclusively; a read takes it shared, and when
//!   the tail is not empty first exclusively to sort, then downgrades to shared (so readers
//!   never see a half-sorted index and the sort runs once, not once per reader).
//! * Memory: record bytes plus 16 bytes of index per entry, added on every insert (vector and
//!   chunk slack not counted). Sorting allocates a temporary merge buffer of the index size.

use std::cmp::Ordering;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::chunked::{ChunkedBytes, Loc};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// Index bytes per entry: key prefix and record location.
pub const SLOT_BYTES: usize = 16;

/// One index slot: the first 8 key bytes (zero padded, big-endian) and the record location.
#[derive(Debug, Clone, Copy)]
struct Slot {
    prefix: u64,
    loc: Loc,
}

fn key_prefix(key: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = key.len().min(8);
    buf[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(buf)
}

#[derive(Debug, Default)]
struct State {
    records: ChunkedBytes,
    slots: Vec<Slot>,
    /// `slots[..sorted]` is in internal-key order.
    sorted: usize,
    memory_bytes: usize,
}

impl State {
    /// Orders two slots in internal-key order (key ascending, sequence descending).
    fn cmp_slots(&self, a: Slot, b: Slot) -> Ordering {
        a.prefix.cmp(&b.prefix).then_with(|| {
            let ra = self.records.entry(a.loc);
            let rb = self.records.entry(b.loc);
            ra.key.cmp(rb.key).then_with(|| rb.seq.cmp(&ra.seq))
        })
    }

    /// Orders a slot against `(key, seq)`.
    fn cmp_slot_to(&self, slot: Slot, prefix: u64, key: &[u8], seq: SeqNo) -> Ordering {
        slot.prefix.cmp(&prefix).then_with(|| {
            let record = self.records.entry(slot.loc);
            record.key.cmp(key).then_with(|| seq.cmp(&record.seq))
        })
    }

    /// Sorts the unsorted tail and merges it into the sorted part.
    fn sort_tail(&mut self) {
        if self.sorted == self.slots.len() {
            return;
        }
        let mut tail = self.slots.split_off(self.sorted);
        if !tail.is_sorted_by(|a, b| self.cmp_slots(*a, *b).is_lt()) {
            tail.sort_unstable_by(|a, b| self.cmp_slots(*a, *b));
        }
        let appends = self
            .slots
            .last()
            .is_none_or(|last| self.cmp_slots(*last, tail[0]).is_lt());
        if appends {
            self.slots.extend_from_slice(&tail);
        } else {
            let head = std::mem::take(&mut self.slots);
            let mut merged = Vec::with_capacity(head.len() + tail.len());
            let (mut i, mut j) = (0, 0);
            while i < head.len() && j < tail.len() {
                if self.cmp_slots(head[i], tail[j]).is_lt() {
                    merged.push(head[i]);
                    i += 1;
                } else {
                    merged.push(tail[j]);
                    j += 1;
                }
            }
            merged.extend_from_slice(&head[i..]);
            merged.extend_from_slice(&tail[j..]);
            self.slots = merged;
        }
        self.sorted = self.slots.len();
        debug_assert!(
            self.slots
                .windows(2)
                .all(|w| self.cmp_slots(w[0], w[1]).is_lt())
        );
    }

    /// Index of the first slot at or after `(key, seq)`; the index must be sorted.
    fn seek(&self, key: &[u8], seq: SeqNo) -> usize {
        debug_assert_eq!(self.sorted, self.slots.len());
        let prefix = key_prefix(key);
        self.slots
            .partition_point(|slot| self.cmp_slot_to(*slot, prefix, key, seq).is_lt())
    }
}

/// The `vector` memtable (see the module docs).
#[derive(Debug, Default)]
pub struct VectorMemtable {
    state: RwLock<State>,
}

impl VectorMemtable {
    /// An empty memtable.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state with a fully sorted index, shared.
    fn sorted_state(&self) -> RwLockReadGuard<'_, State> {
        let state = self.state.read();
        if state.sorted == state.slots.len() {
            return state;
        }
        drop(state);
        let mut state = self.state.write();
        state.sort_tail();
        RwLockWriteGuard::downgrade(state)
    }
}

impl Memtable for VectorMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::Vector
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let mut state = self.state.write();
        let used_before = state.records.used_bytes();
        let loc = state.records.push_entry(key, seq, op, value);
        state.slots.push(Slot {
            prefix: key_prefix(key),
            loc,
        });
        state.memory_bytes += state.records.used_bytes() - used_before + SLOT_BYTES;
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        let state = self.sorted_state();
        let slot = state.slots.get(state.seek(key, read_seq))?;
        let record = state.records.entry(slot.loc);
        (record.key == key).then(|| MemtableEntry {
            seq: record.seq,
            op: record.op,
            value: record.value.to_vec(),
        })
    }

    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        let state = self.sorted_state();
        for slot in &state.slots[state.seek(key, seq)..] {
            let record = state.records.entry(slot.loc);
            let entry = EntryRef {
                key: record.key,
                seq: record.seq,
                op: record.op,
                value: record.value,
            };
            if !visitor(entry) {
                return;
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.state.read().memory_bytes
    }

    fn len(&self) -> usize {
        self.state.read().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_between_insert_batches_see_everything() {
        let table = VectorMemtable::new();
        let mut seq = 0;
        for batch in 0..5u32 {
            for i in 0..100u32 {
                seq += 1;
                // Descending within a batch, interleaved across batches.
                let key = format!("k{:04}", (99 - i) * 5 + batch);
                table.insert(key.as_bytes(), seq, OpKind::Put, b"v");
            }
            let mut count = 0;
            let mut last: Option<Vec<u8>> = None;
            table.visit_from(b"", SeqNo::MAX, &mut |e| {
                assert!(last.as_deref().is_none_or(|l| l < e.key));
                last = Some(e.key.to_vec());
                count += 1;
                true
            });
            assert_eq!(count, (batch as usize + 1) * 100);
        }
        assert_eq!(
            table.get(b"k0003", SeqNo::MAX).map(|e| e.seq),
            Some(3 * 100 + 100)
        );
    }
}
