//! Reading WAL segments back during recovery (see the policy in the parent module).

use std::path::Path;

use super::{FORMAT_VERSION, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
use crate::error::{Error, Result};
use crate::types::SeqNo;

/// One record handed to the replay visitor.
#[derive(Debug, Clone, Copy)]
pub struct ReplayedRecord<'a> {
    /// Sequence number of the first entry.
    pub first_seq: SeqNo,
    /// Number of entries.
    pub count: u32,
    /// The encoded entries (`super::decode_entries`).
    pub payload: &'a [u8],
    /// Byte offset of the record in its segment.
    pub offset: u64,
}

/// What replaying one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReplay {
    /// Records replayed.
    pub records: u64,
    /// Highest sequence number seen (0 if none).
    pub max_seq: SeqNo,
    /// Length of the valid prefix of the file.
    pub valid_bytes: u64,
    /// Bytes after the valid prefix that were a torn tail (0 if none).
    pub torn_bytes: u64,
}

/// Reads every record of the segment at `path`, calling `visit` for each, in order.
///
/// `is_newest` says whether this is the newest segment, the only one allowed a torn tail.
/// The file is not modified; the caller truncates a torn tail.
pub fn read_segment(
    path: &Path,
    is_newest: bool,
    mut visit: impl FnMut(ReplayedRecord<'_>) -> Result<()>,
) -> Result<SegmentReplay> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let corrupt = |offset: usize, reason: &str| Error::corruption(path, offset as u64, reason);
    let mut replay = SegmentReplay {
        records: 0,
        max_seq: 0,
        valid_bytes: 0,
        torn_bytes: 0,
    };
    // Where the run of zeros that ends the file starts.
    let zeros_from = zero_filled_from(&bytes);
    if is_newest && zeros_from == 0 {
        // Not even the segment header reached the disk (a crash while the segment was
        // created, its length extended but no data written): nothing in it was written.
        if !bytes.is_empty() {
            tracing::warn!(
                file = %path.display(),
                bytes = bytes.len(),
                "truncating torn WAL tail: a segment of zeros"
            );
        }
        replay.torn_bytes = bytes.len() as u64;
        return Ok(replay);
    }
    if bytes.len() < SEGMENT_HEADER_LEN {
        // A crash while the segment was being created: only acceptable for the newest one.
        if is_newest && bytes.iter().all(|b| *b == 0 || SEGMENT_MAGIC.contains(b)) {
            replay.torn_bytes = bytes.len() as u64;
            return Ok(replay);
        }
        return Err(corrupt(0, "segment shorter than its header"));
    }
    let header = &bytes[..SEGMENT_HEADER_LEN];
    let header_crc = u32::from_le_bytes(header[12..16].try_into().unwrap_or_default());
    if &header[..8] != SEGMENT_MAGIC || crc32c::crc32c(&header[..12]) != header_crc {
        return Err(corrupt(0, "bad segment header (magic or checksum)"));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(corrupt(8, &format!("unknown WAL format version {version}")));
    }
    let mut pos = SEGMENT_HEADER_LEN;
    replay.valid_bytes = pos as u64;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let torn = |reason: &str| -> Result<SegmentReplay> {
            if is_newest {
                let mut done = replay.clone();
                done.torn_bytes = rest.len() as u64;
                tracing::warn!(
                    file = %path.display(),
                    offset = pos,
                    bytes = rest.len(),
                    "truncating torn WAL tail: {reason}"
                );
                Ok(done)
            } else {
                Err(corrupt(pos, &format!("{reason} in a closed segment")))
            }
        };
        // The rule of the parent module: a record is torn only if it provably never reached
        // the file whole (it ends early, or nothing of its payload is there); any other failed
        // check is damage, wherever the record is.
        if rest.len() < RECORD_HEADER_LEN {
            return torn("record header cut short");
        }
        // Nothing but zeros from the payload's start to the end of the file: no payload byte
        // was written (a written payload always holds a non-zero byte).
        let no_payload_written = zeros_from <= pos + RECORD_HEADER_LEN;
        let field = |range: std::ops::Range<usize>| -> u64 {
            let mut buf = [0u8; 8];
            buf[..range.len()].copy_from_slice(&rest[range]);
            u64::from_le_bytes(buf)
        };
        if crc32c::crc32c(&rest[..20]) != field(20..24) as u32 {
            if no_payload_written {
                return torn("zeros after a partial or zeroed record header");
            }
            return Err(corrupt(pos, "record header checksum mismatch"));
        }
        let len = field(0..4) as usize;
        let end = RECORD_HEADER_LEN + len;
        if rest.len() < end {
            return torn("record cut short before the end its header announces");
        }
        let payload = &rest[RECORD_HEADER_LEN..end];
        if crc32c::crc32c(payload) != field(4..8) as u32 {
            if no_payload_written {
                return torn("record header written, payload and the rest of the file zeros");
            }
            // The file holds the whole record: damage, even in the last record and even when
            // the file ends in zeros (a payload may end in zero bytes).
            return Err(corrupt(pos, "record payload checksum mismatch"));
        }
        let first_seq = field(8..16);
        let count = field(16..20) as u32;
        if count == 0 || first_seq == 0 {
            return Err(corrupt(pos, "record with no entries or sequence 0"));
        }
        let last_seq = first_seq
            .checked_add(u64::from(count) - 1)
            .ok_or_else(|| corrupt(pos, "sequence number overflow"))?;
        if last_seq <= replay.max_seq {
            return Err(corrupt(pos, "sequence numbers go backwards"));
        }
        visit(ReplayedRecord {
            first_seq,
            count,
            payload,
            offset: pos as u64,
        })
        .map_err(|e| match e {
            Error::Internal(reason) => corrupt(pos, &reason),
            other => other,
        })?;
        replay.records += 1;
        replay.max_seq = last_seq;
        pos += end;
        replay.valid_bytes = pos as u64;
    }
    Ok(replay)
}

/// The offset in `bytes` from which every byte to the end is zero (`bytes.len()` if the last
/// byte is not zero, 0 if all are zero).
pub(crate) fn zero_filled_from(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1)
}

/// Deletes the newest segments (by id) that hold no record: those an open created before it
/// failed or was interrupted, or a rotation created just before a crash. Returns the ids left,
/// oldest first, so the newest of them is the one that may end in a torn tail.
///
/// Without this, a torn tail the open was about to truncate would sit in a segment that is no
/// longer the newest, and every later open would refuse it as corruption. A segment counts as
/// empty only when replaying it as the newest finds no record and no corruption (at most a
/// torn tail): nothing in it was ever acknowledged.
pub fn drop_empty_newest_segments(dir: &Path, mut ids: Vec<u64>) -> Result<Vec<u64>> {
    debug_assert!(ids.is_sorted());
    let mut deleted = false;
    while let Some(&id) = ids.last() {
        let path = dir.join(super::segment_file_name(id));
        if holds_a_complete_first_record(&path)? {
            break;
        }
        match read_segment(&path, true, |_| Ok(())) {
            Ok(replay) if replay.records == 0 => {}
            // Records, or damage the replay will report.
            _ => break,
        }
        tracing::info!(file = %path.display(), "deleting a WAL segment that holds no record");
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        deleted = true;
        ids.pop();
    }
    if deleted {
        crate::fsutil::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(ids)
}

/// True when the segment's first record has a valid header and the file holds all of it (its
/// payload is not checked): reads only the segment and record headers, so a full segment is
/// not read twice at open.
fn holds_a_complete_first_record(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = [0u8; SEGMENT_HEADER_LEN + RECORD_HEADER_LEN];
    if len < head.len() as u64 {
        return Ok(false);
    }
    file.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
    let record = &head[SEGMENT_HEADER_LEN..];
    let word =
        |i: usize| u32::from_le_bytes([record[i], record[i + 1], record[i + 2], record[i + 3]]);
    if crc32c::crc32c(&record[..20]) != word(20) {
        return Ok(false);
    }
    Ok(len >= (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN) as u64 + u64::from(word(0)))
}
