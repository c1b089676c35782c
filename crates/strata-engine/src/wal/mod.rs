//! The write-ahead log: every write batch is appended here, as one checksummed record, before
//! it is applied to a memtable and acknowledged.
//!
//! The log is a directory of *segments* `wal/<id:020>.wal`. Exactly one segment (the newest) is
//! open for appends; a new one starts when it passes `wal_segment_size_bytes` or when a
//! memtable is switched. A closed segment is synced before the next one starts, so only the
//! newest segment can end in a torn record after a crash. A segment is deleted once every entry
//! in it is in an SST (its `max_seq` is below the flush floor, see `Db`).
//!
//! ## Segment layout (format version 1)
//!
//! ```text
//! +----------------------+------------------+------------------+-----
//! | header (16 bytes)    | record           | record           | ...
//! +----------------------+------------------+------------------+-----
//!
//! header:  0..8   magic  "STRATWAL"
//!          8..12  format version, u32 LE (= 1)
//!          12..16 crc32c of bytes 0..12, u32 LE
//!
//! record:  0..4   payload length N, u32 LE
//!          4..8   crc32c of the payload, u32 LE
//!          8..16  first sequence number, u64 LE
//!          16..20 entry count C, u32 LE
//!          20..24 crc32c of bytes 0..20 (the header checksum), u32 LE
//!          24..   payload: N bytes holding C entries
//!
//! entry:   u8      op (0 = put, 1 = delete)
//!          varint  table id
//!          varint  key length K, then K bytes of key (Strata key encoding, `codec::key`)
//!          varint  value length V, then V bytes (row encoding, `codec::row`); puts only
//! ```
//!
//! Entry `i` of a record has sequence number `first_seq + i`. A record is one write batch:
//! it is replayed whole or not at all.
//!
//! ## Recovery policy
//!
//! Replay reads records from the start of each segment. At the first record that fails a
//! check, the question is whether it is a *torn* write (an append cut off by a crash, which
//! was never acknowledged as durable: `SyncMode::Always` acknowledges only after `fdatasync`,
//! and the other modes promise nothing for a power loss) or *damage* to a record that was
//! written whole (which may have been acknowledged). Only the first may be dropped.
//!
//! What a crash leaves at the end of the newest segment, on the file systems we run on
//! (ext4, XFS, btrfs, tmpfs):
//!
//! * a process kill: every `write` that returned is in the page cache and survives; the one in
//!   progress may have stopped short (a fatal signal can cut a long `write` between pages), so
//!   the file *ends* inside a record (possibly inside its header);
//! * a power loss or kernel crash: the file may also be longer than what reached the disk, the
//!   unwritten blocks reading as zeros (a zero-extended or preallocated tail, or blocks whose
//!   data never made it out), at block granularity and, within one unsynced stretch, in any
//!   order.
//!
//! The records cannot carry proof of their own completeness in the last case (a payload may
//! legitimately end in zero bytes, so "the record ends in zeros" does not show that its end
//! was never written), so the rule only uses what a complete record can never look like. With
//! `pos` the offset of the first record that fails a check, the rest of the newest segment
//! from `pos` is a **torn tail**, truncated with a warning, exactly when
//!
//! 1. it is shorter than a record header (the append stopped inside the header), or
//! 2. the record's header checksum holds and the file ends before the `24 + N` bytes the
//!    header announces (the append stopped inside the payload), or
//! 3. every byte from the payload's start (`pos + 24`) to the end of the file is zero, the
//!    header being valid or not (a zero-extended tail after the last complete record, or a
//!    record of which at most the header reached the disk). A written payload is never all
//!    zeros: every entry starts with its op and a table id, and table ids start at 1, so the
//!    first entry's second byte is non-zero (asserted when a record is framed).
//!
//! Likewise a newest segment shorter than its header, or of nothing but zeros (its header
//! never reached the disk), holds nothing and is cut to nothing.
//!
//! Everything else is [`Error::Corruption`] naming the file and the record's offset, and
//! nothing is truncated: a bad header checksum over a record that is followed by non-zero
//! bytes, a payload checksum mismatch in a record the file holds whole (also in the last
//! record, also when its payload ends in zeros, also when the file ends in zeros that start
//! inside the payload, since that cannot be told from a complete payload that ended in zeros
//! and then was damaged), a malformed payload, sequence numbers that do not increase, a bad
//! segment header, and any torn record in an older segment (a closed segment was synced
//! before the next one started). An acknowledged record is therefore never dropped as if it
//! were torn. The price: a power loss that leaves part of an unsynced payload unwritten
//! (zeros at its end or in its middle, from blocks written back out of order or a file size
//! that reached the disk before the data) stops the open with `Corruption` at that record
//! instead of guessing. A format with an end marker on every record would make a zero-filled
//! end provable (the manifest has one: its JSON payloads end in `}`).
//!
//! "The newest segment" is the newest one holding a record: an open creates its own segment
//! before it replays the others, so an open that fails or is killed leaves an empty segment
//! behind, and the torn tail it did not get to truncate would otherwise sit in an older
//! segment. [`drop_empty_newest_segments`] deletes such segments before the replay. (An empty
//! newest segment can also come from a rotation just before a crash; the segment before it
//! was synced whole then, so reading it as the newest changes nothing unless the file system
//! later cut it short or zeroed its end, which would then be taken for a torn tail.)

mod reader;
mod writer;

pub(crate) use reader::zero_filled_from;
pub use reader::{ReplayedRecord, SegmentReplay, drop_empty_newest_segments, read_segment};
pub use writer::{SegmentInfo, Wal};

use crate::codec::varint::{get_varint, put_varint};
use crate::error::{Error, Result};
use crate::types::{OpKind, TableId};

/// Magic bytes at the start of every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"STRATWAL";
/// Current segment format version.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// Bytes of a record header (length, checksum, first sequence, count).
pub const RECORD_HEADER_LEN: usize = 24;

/// The name of segment `id`.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}.wal")
}

/// Parses a segment file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let id = name.strip_suffix(".wal")?;
    (id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| id.parse().ok())
        .flatten()
}

/// The segment header bytes.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&header[..12]);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The payload of one record: the entries of one write batch, encoded once by the writer
/// (off the commit path) with its checksum precomputed.
#[derive(Debug, Clone, Default)]
pub struct BatchPayload {
    bytes: Vec<u8>,
    count: u32,
    crc: u32,
    /// Distinct tables written, in first-write order.
    tables: Vec<TableId>,
}

impl BatchPayload {
    /// An empty payload.
    pub fn new() -> Self {
        BatchPayload {
            bytes: Vec::new(),
            count: 0,
            crc: crc32c::crc32c(&[]),
            tables: Vec::new(),
        }
    }

    /// Appends one entry.
    pub fn push(&mut self, table: TableId, op: OpKind, key: &[u8], value: &[u8]) {
        debug_assert!(op == OpKind::Put || value.is_empty());
        // Recovery relies on it: a written payload is never all zeros (see the module docs).
        debug_assert!(table != 0, "table ids start at 1");
        if !self.tables.contains(&table) {
            self.tables.push(table);
        }
        self.bytes.push(op.as_u8());
        put_varint(&mut self.bytes, u64::from(table));
        put_varint(&mut self.bytes, key.len() as u64);
        self.bytes.extend_from_slice(key);
        if op == OpKind::Put {
            put_varint(&mut self.bytes, value.len() as u64);
            self.bytes.extend_from_slice(value);
        }
        self.count += 1;
    }

    /// Computes the checksum; call once after the last `push`.
    pub fn seal(&mut self) {
        self.crc = crc32c::crc32c(&self.bytes);
    }

    /// Number of entries.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Encoded bytes of the entries.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The encoded entries.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The distinct tables the entries write.
    pub fn tables(&self) -> &[TableId] {
        &self.tables
    }

    /// Appends the framed record for this payload, numbered from `first_seq`, to `out`.
    pub fn frame_into(&self, first_seq: u64, out: &mut Vec<u8>) {
        debug_assert_eq!(self.crc, crc32c::crc32c(&self.bytes), "payload not sealed");
        debug_assert!(self.count > 0 && first_seq > 0);
        debug_assert!(
            self.bytes.iter().any(|b| *b != 0),
            "an all-zero payload would read as a torn tail"
        );
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[0..4].copy_from_slice(&(self.bytes.len() as u32).to_le_bytes());
        header[4..8].copy_from_slice(&self.crc.to_le_bytes());
        header[8..16].copy_from_slice(&first_seq.to_le_bytes());
        header[16..20].copy_from_slice(&self.count.to_le_bytes());
        let header_crc = crc32c::crc32c(&header[..20]);
        header[20..24].copy_from_slice(&header_crc.to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.bytes);
    }
}

/// One decoded entry of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalEntry<'a> {
    /// The table written.
    pub table: TableId,
    /// Put or delete.
    pub op: OpKind,
    /// Encoded key.
    pub key: &'a [u8],
    /// Encoded value (empty for deletes).
    pub value: &'a [u8],
}

/// Decodes the `count` entries of a payload.
pub fn decode_entries(payload: &[u8], count: u32) -> Result<Vec<WalEntry<'_>>> {
    let bad = |reason: &str| Error::internal(format!("malformed WAL payload: {reason}"));
    let mut entries = Vec::with_capacity(count as usize);
    let mut pos = 0usize;
    for _ in 0..count {
        let op = OpKind::from_u8(*payload.get(pos).ok_or_else(|| bad("truncated entry"))?)
            .ok_or_else(|| bad("unknown op"))?;
        pos += 1;
        let table = get_varint(payload, &mut pos).ok_or_else(|| bad("bad table id"))?;
        let table = TableId::try_from(table).map_err(|_| bad("table id out of range"))?;
        let key_len = get_varint(payload, &mut pos).ok_or_else(|| bad("bad key length"))? as usize;
        let key = payload
            .get(pos..pos + key_len)
            .ok_or_else(|| bad("truncated key"))?;
        pos += key_len;
        let value = if op == OpKind::Put {
            let len =
                get_varint(payload, &mut pos).ok_or_else(|| bad("bad value length"))? as usize;
            let value = payload
                .get(pos..pos + len)
                .ok_or_else(|| bad("truncated value"))?;
            pos += len;
            value
        } else {
            &[][..]
        };
        entries.push(WalEntry {
            table,
            op,
            key,
            value,
        });
    }
    if pos != payload.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
