//! Append-only chunked byte storage for the lock-guarded variants (`linked_list`, `vector`,
//! `trie`, `b_skiplist`): entries and values are copied into large chunks instead of getting
//! one heap allocation each, and are addressed by a [`Loc`] (chunk and offset packed in a
//! `u64`).
//!
//! ## Invariants
//!
//! * Chunks are allocated with a fixed capacity and never grow, so a stored record never moves;
//!   a record never straddles two chunks (one larger than a chunk gets a chunk of its own).
//! * Chunk capacities double from [`FIRST_CHUNK_BYTES`] up to [`MAX_CHUNK_BYTES`], so a small
//!   memtable reserves little.
//!
//! ## Record formats
//!
//! * entry: `varint key_len | varint value_len | op u8 | seq u64 LE | key | value`
//!   ([`ChunkedBytes::push_entry`], [`ChunkedBytes::entry`]);
//! * value: `varint len | bytes` ([`ChunkedBytes::push_value`], [`ChunkedBytes::value`]).
//!
//! Memory accounting: [`ChunkedBytes::used_bytes`] counts the bytes written (it grows with
//! every push); [`ChunkedBytes::reserved_bytes`] counts chunk capacities.

use crate::types::{OpKind, SeqNo};

/// Capacity of the first chunk.
pub const FIRST_CHUNK_BYTES: usize = 1024;
/// Largest regular chunk.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Where a record starts: `chunk << 32 | offset`.
pub type Loc = u64;

/// One decoded entry record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The user key.
    pub key: &'a [u8],
    /// Sequence number.
    pub seq: SeqNo,
    /// Put or delete.
    pub op: OpKind,
    /// Value bytes.
    pub value: &'a [u8],
}

/// The chunked store (see the module docs).
#[derive(Debug, Default)]
pub struct ChunkedBytes {
    chunks: Vec<Vec<u8>>,
    /// Capacity of the last regular chunk.
    regular_capacity: usize,
    /// Index of the chunk regular records go to (dedicated chunks are skipped).
    current: usize,
    used_bytes: usize,
    reserved_bytes: usize,
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[inline]
fn get_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
        debug_assert!(shift < 64, "varint too long");
    }
}

impl ChunkedBytes {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes written so far.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Bytes reserved by chunks.
    pub fn reserved_bytes(&self) -> usize {
        self.reserved_bytes
    }

    /// A chunk with room for `len` more bytes, returning its index.
    fn chunk_for(&mut self, len: usize) -> usize {
        if let Some(chunk) = self.chunks.get(self.current)
            && chunk.capacity() - chunk.len() >= len
        {
            return self.current;
        }
        let next_regular = if self.regular_capacity == 0 {
            FIRST_CHUNK_BYTES
        } else {
            (self.regular_capacity * 2).min(MAX_CHUNK_BYTES)
        };
        if len > next_regular / 4 {
            // Dedicated chunk: leaves the current regular chunk in place.
            self.chunks.push(Vec::with_capacity(len));
            self.reserved_bytes += len;
            return self.chunks.len() - 1;
        }
        self.regular_capacity = next_regular;
        self.chunks.push(Vec::with_capacity(next_regular));
        self.reserved_bytes += next_regular;
        self.current = self.chunks.len() - 1;
        self.current
    }

    fn loc(chunk: usize, offset: usize) -> Loc {
        let chunk = u32::try_from(chunk).expect("fewer than 2^32 chunks");
        let offset = u32::try_from(offset).expect("chunks are smaller than 4 GiB");
        (u64::from(chunk) << 32) | u64::from(offset)
    }

    fn bytes_at(&self, loc: Loc) -> &[u8] {
        &self.chunks[(loc >> 32) as usize][(loc as u32) as usize..]
    }

    /// Appends an entry record.
    pub fn push_entry(&mut self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) -> Loc {
        let len = varint_len(key.len() as u64)
            + varint_len(value.len() as u64)
            + 1
            + 8
            + key.len()
            + value.len();
        let chunk_index = self.chunk_for(len);
        let chunk = &mut self.chunks[chunk_index];
        let offset = chunk.len();
        put_varint(chunk, key.len() as u64);
        put_varint(chunk, value.len() as u64);
        chunk.push(op.as_u8());
        chunk.extend_from_slice(&seq.to_le_bytes());
        chunk.extend_from_slice(key);
        chunk.extend_from_slice(value);
        debug_assert_eq!(chunk.len() - offset, len);
        debug_assert!(chunk.len() <= chunk.capacity());
        self.used_bytes += len;
        Self::loc(chunk_index, offset)
    }

    /// The entry record at `loc` (from [`ChunkedBytes::push_entry`]).
    #[inline]
    pub fn entry(&self, loc: Loc) -> Record<'_> {
        let bytes = self.bytes_at(loc);
        let mut pos = 0;
        let key_len = get_varint(bytes, &mut pos) as usize;
        let value_len = get_varint(bytes, &mut pos) as usize;
        let op = OpKind::from_u8(bytes[pos]).expect("entry records hold a valid op byte");
        let seq = SeqNo::from_le_bytes(
            bytes[pos + 1..pos + 9]
                .try_into()
                .expect("the slice is 8 bytes"),
        );
        let key_start = pos + 9;
        Record {
            key: &bytes[key_start..key_start + key_len],
            seq,
            op,
            value: &bytes[key_start + key_len..key_start + key_len + value_len],
        }
    }

    /// Only the key of the entry record at `loc`.
    #[inline]
    pub fn entry_key(&self, loc: Loc) -> &[u8] {
        let bytes = self.bytes_at(loc);
        let mut pos = 0;
        let key_len = get_varint(bytes, &mut pos) as usize;
        let _value_len = get_varint(bytes, &mut pos);
        &bytes[pos + 9..pos + 9 + key_len]
    }

    /// Appends a value record.
    pub fn push_value(&mut self, value: &[u8]) -> Loc {
        let len = varint_len(value.len() as u64) + value.len();
        let chunk_index = self.chunk_for(len);
        let chunk = &mut self.chunks[chunk_index];
        let offset = chunk.len();
        put_varint(chunk, value.len() as u64);
        chunk.extend_from_slice(value);
        debug_assert!(chunk.len() <= chunk.capacity());
        self.used_bytes += len;
        Self::loc(chunk_index, offset)
    }

    /// The value record at `loc` (from [`ChunkedBytes::push_value`]).
    #[inline]
    pub fn value(&self, loc: Loc) -> &[u8] {
        let bytes = self.bytes_at(loc);
        let mut pos = 0;
        let len = get_varint(bytes, &mut pos) as usize;
        &bytes[pos..pos + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_never_move() {
        let mut store = ChunkedBytes::new();
        let big = vec![9u8; 300_000];
        let mut locs = Vec::new();
        for i in 0..2_000u32 {
            let key = i.to_be_bytes();
            let value = vec![i as u8; (i % 300) as usize];
            locs.push((i, store.push_entry(&key, u64::from(i), OpKind::Put, &value)));
        }
        let big_loc = store.push_entry(b"big", 7, OpKind::Delete, &big);
        let value_loc = store.push_value(b"just a value");
        for (i, loc) in locs {
            let record = store.entry(loc);
            assert_eq!(record.key, i.to_be_bytes());
            assert_eq!(record.seq, u64::from(i));
            assert_eq!(record.value.len(), (i % 300) as usize);
            assert_eq!(store.entry_key(loc), i.to_be_bytes());
        }
        let record = store.entry(big_loc);
        assert_eq!(
            (record.key, record.op, record.value.len()),
            (b"big".as_ref(), OpKind::Delete, big.len())
        );
        assert_eq!(store.value(value_loc), b"just a value");
        assert!(store.used_bytes() <= store.reserved_bytes());
    }
}
