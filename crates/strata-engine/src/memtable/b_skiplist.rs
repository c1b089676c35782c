//! `b_skiplist`: a block-based skip list (B-skiplist) whose nodes are blocks of up to
//! [`BLOCK_CAPACITY`] sorted entries.
//!
//! * Structure: blocks live in one vector and link to each other by index. Each block holds a
//!   sorted array of 24-byte slots (key offset and length, sequence number, value location)
//!   and a small buffer with the key bytes of its own slots; values go to a shared
//!   [`ChunkedBytes`] store. The skip list is built over blocks, not entries: every block has a
//!   tower of next-block links (random height, p = 1/4, at most [`MAX_LEVEL`]), and searches
//!   compare against each block's first entry. A head block with no entries starts every level.
//! * Complexity: a search visits expected O(log(n / B)) blocks, then binary-searches one block
//!   (O(log B)); an insert adds an O(B) shift inside the block. A full block splits in two
//!   halves, except when the new entry goes to its end (ascending loads), where a new block is
//!   started instead, so sequential loads fill blocks completely. Ordered iteration reads
//!   slots contiguously, block after block: O(1) per entry with one pointer chase per B entries
//!   instead of one per entry, which is what makes scans cache-friendly.
//! * Concurrency: one `RwLock`; inserts take it exclusively, reads and visits share it (a
//!   visit holds it while its visitor runs).
//! * Memory: per block its struct, the slot array reserved at full capacity and the tower;
//!   per entry its key bytes and its value record. `memory_bytes` adds these as they are
//!   allocated (key-buffer slack not counted).

use std::cmp::Ordering;
use std::mem::size_of;

use parking_lot::RwLock;

use super::chunked::{ChunkedBytes, Loc};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// Entries per block.
pub const BLOCK_CAPACITY: usize = 64;
/// Tallest tower.
pub const MAX_LEVEL: usize = 12;

const HEAD: u32 = 0;
const NIL: u32 = u32::MAX;
/// Top bit of `Slot::key_len_op`: the entry is a delete.
const DELETE_BIT: u32 = 1 << 31;

/// One entry inside a block.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key_offset: u32,
    /// Key length, with [`DELETE_BIT`] for tombstones.
    key_len_op: u32,
    seq: SeqNo,
    value: Loc,
}

const _: () = assert!(size_of::<Slot>() == 24);

impl Slot {
    fn key_len(self) -> usize {
        (self.key_len_op & !DELETE_BIT) as usize
    }

    fn op(self) -> OpKind {
        if self.key_len_op & DELETE_BIT != 0 {
            OpKind::Delete
        } else {
            OpKind::Put
        }
    }
}

#[derive(Debug)]
struct Block {
    /// Sorted in internal-key order; never empty except in the head block.
    slots: Vec<Slot>,
    /// Key bytes of `slots`.
    keys: Vec<u8>,
    /// Next block per level (`NIL` at the end); the tower height is `next.len()`.
    next: Vec<u32>,
}

impl Block {
    fn with_height(height: usize) -> Self {
        Block {
            slots: Vec::with_capacity(BLOCK_CAPACITY),
            keys: Vec::new(),
            next: vec![NIL; height],
        }
    }

    #[inline]
    fn key(&self, slot: Slot) -> &[u8] {
        let start = slot.key_offset as usize;
        &self.keys[start..start + slot.key_len()]
    }

    #[inline]
    fn cmp_slot_to(&self, slot: Slot, key: &[u8], seq: SeqNo) -> Ordering {
        self.key(slot).cmp(key).then_with(|| seq.cmp(&slot.seq))
    }

    /// Position of the first slot at or after `(key, seq)`.
    fn position(&self, key: &[u8], seq: SeqNo) -> usize {
        self.slots
            .partition_point(|slot| self.cmp_slot_to(*slot, key, seq).is_lt())
    }

    /// A slot for `key` whose bytes are appended to this block's key buffer.
    fn make_slot(&mut self, key: &[u8], seq: SeqNo, op: OpKind, value: Loc) -> Slot {
        let key_offset = u32::try_from(self.keys.len()).expect("block key buffer below 4 GiB");
        let key_len = u32::try_from(key.len())
            .ok()
            .filter(|len| len & DELETE_BIT == 0)
            .expect("keys are shorter than 2 GiB");
        self.keys.extend_from_slice(key);
        Slot {
            key_offset,
            key_len_op: key_len | if op == OpKind::Delete { DELETE_BIT } else { 0 },
            seq,
            value,
        }
    }

    /// Rebuilds the key buffer so it holds exactly the keys of `slots`.
    fn repack(&mut self, keys_from: &Block) {
        let mut keys = Vec::with_capacity(self.slots.iter().map(|s| s.key_len()).sum());
        for slot in &mut self.slots {
            let start = slot.key_offset as usize;
            let bytes = &keys_from.keys[start..start + slot.key_len()];
            slot.key_offset = u32::try_from(keys.len()).expect("block key buffer below 4 GiB");
            keys.extend_from_slice(bytes);
        }
        self.keys = keys;
    }
}

#[derive(Debug)]
struct BSkipList {
    blocks: Vec<Block>,
    values: ChunkedBytes,
    /// Levels in use (at least 1).
    height: usize,
    rng: u64,
    len: usize,
    memory_bytes: usize,
}

impl BSkipList {
    fn new() -> Self {
        BSkipList {
            blocks: vec![Block::with_height(MAX_LEVEL)],
            values: ChunkedBytes::new(),
            height: 1,
            rng: 0x2545_F491_4F6C_DD1D,
            len: 0,
            memory_bytes: size_of::<Block>() + MAX_LEVEL * size_of::<u32>(),
        }
    }

    fn random_height(&mut self) -> usize {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (1 + (z.trailing_zeros() / 2) as usize).min(MAX_LEVEL)
    }

    /// True when block `b`'s first entry sorts before `(key, seq)`.
    fn first_is_before(&self, b: u32, key: &[u8], seq: SeqNo) -> bool {
        let block = &self.blocks[b as usize];
        debug_assert!(!block.slots.is_empty());
        block.cmp_slot_to(block.slots[0], key, seq).is_lt()
    }

    /// The last block whose first entry sorts before `(key, seq)` (the head when none does),
    /// recording the last such block per level in `update`.
    fn descend(&self, key: &[u8], seq: SeqNo, update: &mut [u32; MAX_LEVEL]) -> u32 {
        let mut x = HEAD;
        for level in (0..self.height).rev() {
            loop {
                let next = self.blocks[x as usize].next[level];
                if next != NIL && self.first_is_before(next, key, seq) {
                    x = next;
                } else {
                    break;
                }
            }
            update[level] = x;
        }
        x
    }

    /// The first entry at or after `(key, seq)`: block and position.
    fn seek(&self, key: &[u8], seq: SeqNo) -> Option<(u32, usize)> {
        let mut update = [HEAD; MAX_LEVEL];
        let mut block = self.descend(key, seq, &mut update);
        if block == HEAD {
            block = self.blocks[HEAD as usize].next[0];
        }
        if block == NIL {
            return None;
        }
        let position = self.blocks[block as usize].position(key, seq);
        if position < self.blocks[block as usize].slots.len() {
            return Some((block, position));
        }
        let next = self.blocks[block as usize].next[0];
        (next != NIL).then_some((next, 0))
    }

    fn insert(&mut self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let used_before = self.values.used_bytes();
        let value = self.values.push_value(value);
        self.memory_bytes += self.values.used_bytes() - used_before + key.len();
        self.len += 1;

        let mut update = [HEAD; MAX_LEVEL];
        let mut target = self.descend(key, seq, &mut update);
        if target == HEAD {
            target = self.blocks[HEAD as usize].next[0];
            if target == NIL {
                let block = self.new_block();
                let slot = self.blocks[block as usize].make_slot(key, seq, op, value);
                self.blocks[block as usize].slots.push(slot);
                self.link_after(block, &update);
                return;
            }
        }
        let position = self.blocks[target as usize].position(key, seq);
        debug_assert!(
            self.blocks[target as usize]
                .slots
                .get(position)
                .is_none_or(|s| !self.blocks[target as usize]
                    .cmp_slot_to(*s, key, seq)
                    .is_eq()),
            "(key, seq) inserted twice"
        );
        let (block, position) = if self.blocks[target as usize].slots.len() < BLOCK_CAPACITY {
            (target, position)
        } else if position == BLOCK_CAPACITY {
            // Appending to a full block: start the next one (keeps ascending loads dense).
            let block = self.new_block();
            let slot = self.blocks[block as usize].make_slot(key, seq, op, value);
            self.blocks[block as usize].slots.push(slot);
            self.link_after(block, &update_from(target, &update));
            return;
        } else {
            self.split(target, &update, position)
        };
        let block = &mut self.blocks[block as usize];
        let slot = block.make_slot(key, seq, op, value);
        block.slots.insert(position, slot);
        debug_assert!(block.slots.len() <= BLOCK_CAPACITY);
    }

    /// Moves the upper half of full block `target` into a new block linked after it; returns
    /// the block and position where the entry that was going to `position` goes now.
    fn split(&mut self, target: u32, update: &[u32; MAX_LEVEL], position: usize) -> (u32, usize) {
        let half = BLOCK_CAPACITY / 2;
        let block = self.new_block();
        let upper: Vec<Slot> = self.blocks[target as usize].slots.drain(half..).collect();
        self.blocks[block as usize].slots.extend(upper);
        let (low, high) = two_mut(&mut self.blocks, target as usize, block as usize);
        high.repack(low);
        let snapshot = Block {
            slots: Vec::new(),
            keys: std::mem::take(&mut low.keys),
            next: Vec::new(),
        };
        low.repack(&snapshot);
        self.link_after(block, &update_from(target, update));
        if position <= half {
            (target, position)
        } else {
            (block, position - half)
        }
    }

    /// Allocates an empty block with a random tower.
    fn new_block(&mut self) -> u32 {
        let height = self.random_height();
        let id = u32::try_from(self.blocks.len()).expect("fewer than 2^32 - 1 blocks");
        debug_assert!(id != NIL);
        self.blocks.push(Block::with_height(height));
        self.memory_bytes +=
            size_of::<Block>() + BLOCK_CAPACITY * size_of::<Slot>() + height * size_of::<u32>();
        id
    }

    /// Links `block` (non-empty) into every level of its tower; `preds[level]` is a block at
    /// or before its predecessor on that level.
    fn link_after(&mut self, block: u32, preds: &[u32; MAX_LEVEL]) {
        let height = self.blocks[block as usize].next.len();
        let first = self.blocks[block as usize].slots[0];
        for (level, pred) in preds.iter().enumerate().take(height) {
            let mut prev = if level < self.height { *pred } else { HEAD };
            loop {
                let next = self.blocks[prev as usize].next[level];
                if next == NIL || next == block {
                    break;
                }
                let first_block = &self.blocks[block as usize];
                let key = first_block.key(first);
                if !self.first_is_before(next, key, first.seq) {
                    break;
                }
                prev = next;
            }
            let next = self.blocks[prev as usize].next[level];
            self.blocks[block as usize].next[level] = next;
            self.blocks[prev as usize].next[level] = block;
        }
        self.height = self.height.max(height);
    }
}

/// Predecessors for a block inserted right after `target`: `target` itself on the levels it
/// reaches, the recorded ones elsewhere (they are at or before `target`).
fn update_from(target: u32, update: &[u32; MAX_LEVEL]) -> [u32; MAX_LEVEL] {
    let mut preds = *update;
    preds[0] = target;
    preds
}

/// Two distinct mutable elements of a slice.
fn two_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert!(a < b, "indices must be ascending and distinct");
    let (left, right) = items.split_at_mut(b);
    (&mut left[a], &mut right[0])
}

/// The `b_skiplist` memtable (see the module docs).
#[derive(Debug)]
pub struct BSkipListMemtable {
    list: RwLock<BSkipList>,
}

impl Default for BSkipListMemtable {
    fn default() -> Self {
        Self::new()
    }
}

impl BSkipListMemtable {
    /// An empty memtable.
    pub fn new() -> Self {
        BSkipListMemtable {
            list: RwLock::new(BSkipList::new()),
        }
    }

    /// Number of blocks, head excluded (for tests and diagnostics).
    pub fn block_count(&self) -> usize {
        self.list.read().blocks.len() - 1
    }
}

impl Memtable for BSkipListMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::BSkipList
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        self.list.write().insert(key, seq, op, value);
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        let list = self.list.read();
        let (block, position) = list.seek(key, read_seq)?;
        let block = &list.blocks[block as usize];
        let slot = block.slots[position];
        (block.key(slot) == key).then(|| MemtableEntry {
            seq: slot.seq,
            op: slot.op(),
            value: list.values.value(slot.value).to_vec(),
        })
    }

    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        let list = self.list.read();
        let Some((mut block_id, mut position)) = list.seek(key, seq) else {
            return;
        };
        while block_id != NIL {
            let block = &list.blocks[block_id as usize];
            for slot in &block.slots[position..] {
                let entry = EntryRef {
                    key: block.key(*slot),
                    seq: slot.seq,
                    op: slot.op(),
                    value: list.values.value(slot.value),
                };
                if !visitor(entry) {
                    return;
                }
            }
            block_id = block.next[0];
            position = 0;
        }
    }

    fn memory_bytes(&self) -> usize {
        self.list.read().memory_bytes
    }

    fn len(&self) -> usize {
        self.list.read().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_keys(table: &BSkipListMemtable) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        table.visit_from(b"", SeqNo::MAX, &mut |e| {
            keys.push(e.key.to_vec());
            true
        });
        keys
    }

    #[test]
    fn ascending_loads_fill_blocks() {
        let table = BSkipListMemtable::new();
        for i in 0..(BLOCK_CAPACITY as u32 * 10) {
            table.insert(&i.to_be_bytes(), 1, OpKind::Put, b"");
        }
        assert_eq!(table.block_count(), 10);
        assert_eq!(all_keys(&table).len(), BLOCK_CAPACITY * 10);
    }

    #[test]
    fn descending_and_middle_inserts_split_blocks() {
        let table = BSkipListMemtable::new();
        let n = BLOCK_CAPACITY as u32 * 8;
        for i in (0..n).rev() {
            table.insert(&(i * 2).to_be_bytes(), 1, OpKind::Put, b"");
        }
        for i in 0..n {
            table.insert(&(i * 2 + 1).to_be_bytes(), 1, OpKind::Delete, b"");
        }
        let keys = all_keys(&table);
        let want: Vec<Vec<u8>> = (0..n * 2).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys, want);
        assert!(table.block_count() >= 16, "{}", table.block_count());
        assert_eq!(
            table.get(&7u32.to_be_bytes(), SeqNo::MAX).map(|e| e.op),
            Some(OpKind::Delete)
        );
    }
}
