//! `linked_list`: one sorted singly linked list, for small tables.
//!
//! * Structure: entry records live in a [`ChunkedBytes`] store; the list itself is two
//!   parallel vectors indexed by node number, `next: Vec<u32>` and `loc: Vec<Loc>` (12 bytes
//!   per entry, no per-node allocation), plus the head index. A *finger* remembers the last
//!   inserted node.
//! * Complexity: insert O(n): it walks from the head (or from the finger, when the new entry
//!   sorts after it, which makes ascending loads O(1) per insert); get O(n); a visit O(n) to
//!   the start, then O(1) per entry. Meant for small tables (a few thousand entries), where
//!   the minimal memory matters more than the linear walks.
//! * Concurrency: one `RwLock` around the whole list; inserts take it exclusively, gets and
//!   visits share it (a visit holds it while its visitor runs).
//! * Memory: record bytes (key, value, 11+ header bytes) plus 12 bytes of links per entry;
//!   `memory_bytes` adds exactly that per insert. Vector and chunk slack are not counted (at
//!   most about one chunk and half the link vectors).

use parking_lot::RwLock;

use super::chunked::{ChunkedBytes, Loc};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// End of list.
const NIL: u32 = u32::MAX;

/// Link bytes per entry: one `u32` next index and one `u64` record location.
pub const LINK_BYTES: usize = 4 + 8;

#[derive(Debug, Default)]
struct List {
    records: ChunkedBytes,
    next: Vec<u32>,
    loc: Vec<Loc>,
    /// First node, `NIL` when empty (set in `new`).
    head: u32,
    /// The node inserted last, `NIL` before the first insert.
    finger: u32,
    memory_bytes: usize,
}

impl List {
    fn is_before(&self, node: u32, key: &[u8], seq: SeqNo) -> bool {
        let record = self.records.entry(self.loc[node as usize]);
        record
            .key
            .cmp(key)
            .then_with(|| seq.cmp(&record.seq))
            .is_lt()
    }

    fn next_of(&self, node: u32) -> u32 {
        self.next[node as usize]
    }

    /// The last node sorting before `(key, seq)`, or `NIL` when none does.
    fn predecessor(&self, key: &[u8], seq: SeqNo) -> u32 {
        let mut prev = NIL;
        let mut cursor = self.head;
        if self.finger != NIL && self.is_before(self.finger, key, seq) {
            prev = self.finger;
            cursor = self.next_of(self.finger);
        }
        while cursor != NIL && self.is_before(cursor, key, seq) {
            prev = cursor;
            cursor = self.next_of(cursor);
        }
        prev
    }

    /// The first node at or after `(key, seq)`, or `NIL`.
    fn seek(&self, key: &[u8], seq: SeqNo) -> u32 {
        let mut cursor = self.head;
        while cursor != NIL && self.is_before(cursor, key, seq) {
            cursor = self.next_of(cursor);
        }
        cursor
    }

    fn insert(&mut self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let prev = self.predecessor(key, seq);
        let used_before = self.records.used_bytes();
        let loc = self.records.push_entry(key, seq, op, value);
        let node = u32::try_from(self.loc.len()).expect("fewer than 2^32 - 1 entries");
        debug_assert!(node != NIL);
        let successor = if prev == NIL {
            std::mem::replace(&mut self.head, node)
        } else {
            std::mem::replace(&mut self.next[prev as usize], node)
        };
        self.next.push(successor);
        self.loc.push(loc);
        self.finger = node;
        self.memory_bytes += self.records.used_bytes() - used_before + LINK_BYTES;
    }
}

/// The `linked_list` memtable (see the module docs).
#[derive(Debug)]
pub struct LinkedListMemtable {
    list: RwLock<List>,
}

impl Default for LinkedListMemtable {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkedListMemtable {
    /// An empty memtable.
    pub fn new() -> Self {
        LinkedListMemtable {
            list: RwLock::new(List {
                head: NIL,
                finger: NIL,
                ..List::default()
            }),
        }
    }
}

impl Memtable for LinkedListMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::LinkedList
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        self.list.write().insert(key, seq, op, value);
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        let list = self.list.read();
        let node = list.seek(key, read_seq);
        if node == NIL {
            return None;
        }
        let record = list.records.entry(list.loc[node as usize]);
        (record.key == key).then(|| MemtableEntry {
            seq: record.seq,
            op: record.op,
            value: record.value.to_vec(),
        })
    }

    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        let list = self.list.read();
        let mut cursor = list.seek(key, seq);
        while cursor != NIL {
            let record = list.records.entry(list.loc[cursor as usize]);
            let entry = EntryRef {
                key: record.key,
                seq: record.seq,
                op: record.op,
                value: record.value,
            };
            if !visitor(entry) {
                return;
            }
            cursor = list.next_of(cursor);
        }
    }

    fn memory_bytes(&self) -> usize {
        self.list.read().memory_bytes
    }

    fn len(&self) -> usize {
        self.list.read().loc.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascending_inserts_use_the_finger() {
        let table = LinkedListMemtable::new();
        for i in 0..3_000u32 {
            table.insert(&i.to_be_bytes(), 1, OpKind::Put, b"");
        }
        // Out of order after the run: walks from the head.
        table.insert(&5u32.to_be_bytes(), 2, OpKind::Put, b"x");
        let mut keys = Vec::new();
        table.visit_from(b"", SeqNo::MAX, &mut |e| {
            keys.push((e.key.to_vec(), e.seq));
            true
        });
        assert_eq!(keys.len(), 3_001);
        assert_eq!(keys[5], (5u32.to_be_bytes().to_vec(), 2));
        assert_eq!(keys[6], (5u32.to_be_bytes().to_vec(), 1));
        assert!(
            keys.windows(2).all(
                |w| (&w[0].0, std::cmp::Reverse(w[0].1)) < (&w[1].0, std::cmp::Reverse(w[1].1))
            )
        );
    }
}
