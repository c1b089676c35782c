use std::path::Path;

use super::*;

fn payload(entries: &[(u32, OpKind, &[u8], &[u8])]) -> BatchPayload {
    let mut p = BatchPayload::new();
    for (table, op, key, value) in entries {
        p.push(*table, *op, key, value);
    }
    p.seal();
    p
}

/// Writes records with 1, 2, 3, ... entries and returns the segment path and the records.
fn write_segment(dir: &Path, records: usize) -> (std::path::PathBuf, Vec<(u64, u32)>) {
    let wal = Wal::create(dir, 1, Vec::new(), 1 << 20, None).unwrap();
    let mut seq = 1;
    let mut written = Vec::new();
    for r in 0..records {
        let entries: Vec<(u32, OpKind, Vec<u8>, Vec<u8>)> = (0..=r)
            .map(|i| {
                let op = if i % 3 == 2 {
                    OpKind::Delete
                } else {
                    OpKind::Put
                };
                let value = if op == OpKind::Put {
                    vec![i as u8; i]
                } else {
                    vec![]
                };
                (7, op, format!("key-{r}-{i}").into_bytes(), value)
            })
            .collect();
        let borrowed: Vec<(u32, OpKind, &[u8], &[u8])> = entries
            .iter()
            .map(|(t, o, k, v)| (*t, *o, k.as_slice(), v.as_slice()))
            .collect();
        let p = payload(&borrowed);
        let mut framed = Vec::new();
        p.frame_into(seq, &mut framed);
        wal.append(&framed, seq + u64::from(p.count()) - 1, true)
            .unwrap();
        written.push((seq, p.count()));
        seq += u64::from(p.count());
    }
    (dir.join(segment_file_name(1)), written)
}

fn replay(path: &Path, newest: bool) -> Result<(SegmentReplay, Vec<(u64, u32)>)> {
    let mut seen = Vec::new();
    let result = read_segment(path, newest, |record| {
        let entries = decode_entries(record.payload, record.count)?;
        assert_eq!(entries.len() as u32, record.count);
        seen.push((record.first_seq, record.count));
        Ok(())
    })?;
    Ok((result, seen))
}

#[test]
fn records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = write_segment(dir.path(), 5);
    let (result, seen) = replay(&path, true).unwrap();
    assert_eq!(seen, written);
    assert_eq!(result.torn_bytes, 0);
    assert_eq!(result.max_seq, 15);
    assert_eq!(result.valid_bytes, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn entries_decode_exactly() {
    let p = payload(&[
        (1, OpKind::Put, b"k1", b"v1"),
        (300, OpKind::Delete, b"", b""),
    ]);
    let mut framed = Vec::new();
    p.frame_into(9, &mut framed);
    let entries = decode_entries(&framed[RECORD_HEADER_LEN..], 2).unwrap();
    assert_eq!(
        entries,
        vec![
            WalEntry {
                table: 1,
                op: OpKind::Put,
                key: b"k1",
                value: b"v1"
            },
            WalEntry {
                table: 300,
                op: OpKind::Delete,
                key: b"",
                value: b""
            },
        ]
    );
}

#[test]
fn every_truncation_of_the_newest_segment_is_a_clean_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = write_segment(dir.path(), 4);
    let full = std::fs::read(&path).unwrap();
    for cut in SEGMENT_HEADER_LEN..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let (result, seen) = replay(&path, true).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(seen, written[..seen.len()].to_vec(), "cut {cut}");
        assert_eq!(result.valid_bytes + result.torn_bytes, cut as u64);
    }
}

#[test]
fn torn_tail_in_an_older_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_segment(dir.path(), 3);
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 3]).unwrap();
    let err = replay(&path, false).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn zeroed_tail_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = write_segment(dir.path(), 3);
    let mut full = std::fs::read(&path).unwrap();
    full.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&path, &full).unwrap();
    let (result, seen) = replay(&path, true).unwrap();
    assert_eq!(seen, written);
    assert_eq!(result.torn_bytes, 4096);
}

#[test]
fn a_flipped_byte_anywhere_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_segment(dir.path(), 4);
    let full = std::fs::read(&path).unwrap();
    for position in 0..full.len() {
        let mut damaged = full.clone();
        damaged[position] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        match replay(&path, true) {
            Err(e) => assert!(e.is_corruption(), "flip at {position}: {e}"),
            Ok((result, seen)) => panic!("flip at {position} went unnoticed: {result:?} {seen:?}"),
        }
    }
}

/// Appends one synced record of `entries` numbered from `first_seq` to segment 1 in `dir`
/// (created by `write_segment`); returns the record's offset.
fn append_record(dir: &Path, first_seq: u64, entries: &[(u32, OpKind, &[u8], &[u8])]) -> u64 {
    let path = dir.join(segment_file_name(1));
    let offset = std::fs::metadata(&path).unwrap().len();
    let p = payload(entries);
    let mut framed = Vec::new();
    p.frame_into(first_seq, &mut framed);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, &framed).unwrap();
    file.sync_all().unwrap();
    offset
}

/// Three records from `write_segment`, then a last record whose payload ends in zero bytes
/// (an integer 0 as the last value), as a row encoding often does. Returns the path, the
/// records before the last one, the last record's offset and the offsets of its key and
/// value bytes.
fn segment_ending_in_zeros(
    dir: &Path,
) -> (std::path::PathBuf, Vec<(u64, u32)>, usize, usize, usize) {
    let (path, written) = write_segment(dir, 3);
    let key = b"last-key";
    let value = [7u8, 0, 0, 0, 0, 0, 0, 0, 0];
    let offset = append_record(dir, 7, &[(5, OpKind::Put, key, &value)]) as usize;
    let full = std::fs::read(&path).unwrap();
    assert_eq!(full.last(), Some(&0), "the last payload ends in zeros");
    // Payload: op, table id, key length, key, value length, value.
    let key_at = offset + RECORD_HEADER_LEN + 3;
    assert_eq!(&full[key_at..key_at + key.len()], key);
    let value_at = key_at + key.len() + 1;
    assert_eq!(&full[value_at..], &value);
    (path, written, offset, key_at, value_at)
}

fn assert_corruption_at(err: Error, path: &Path, at: usize) {
    match &err {
        Error::Corruption { file, offset, .. } => {
            assert_eq!(file, path, "{err}");
            assert_eq!(*offset, at as u64, "{err}");
        }
        other => panic!("expected corruption at {at}, got {other}"),
    }
}

#[test]
fn a_damaged_last_record_is_corruption_even_when_its_payload_ends_in_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written, offset, key_at, value_at) = segment_ending_in_zeros(dir.path());
    let full = std::fs::read(&path).unwrap();
    // It replays whole as written.
    let (result, seen) = replay(&path, true).unwrap();
    assert_eq!(seen.len(), written.len() + 1);
    assert_eq!(result.torn_bytes, 0);
    let damages = [
        ("key byte", key_at + 2),
        ("first value byte", value_at),
        ("a zero byte of the value", value_at + 4),
        ("payload checksum", offset + 5),
        ("header checksum", offset + 21),
        ("length", offset),
        ("sequence number", offset + 9),
    ];
    for (what, position) in damages {
        let mut damaged = full.clone();
        damaged[position] ^= 0x10;
        std::fs::write(&path, &damaged).unwrap();
        let err = replay(&path, true).expect_err(what);
        assert_corruption_at(err, &path, offset);
    }
    // A zero-filled end of a record the file holds whole cannot be told from a payload that
    // ends in zeros and was damaged: also corruption.
    let mut zeroed = full.clone();
    let len = zeroed.len();
    zeroed[len - 12..].fill(0);
    std::fs::write(&path, &zeroed).unwrap();
    assert_corruption_at(replay(&path, true).unwrap_err(), &path, offset);
}

#[test]
fn records_cut_short_or_never_written_are_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written, offset, _, _) = segment_ending_in_zeros(dir.path());
    let full = std::fs::read(&path).unwrap();
    let payload_at = offset + RECORD_HEADER_LEN;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("cut inside the header", full[..offset + 10].to_vec()),
        ("header only", full[..payload_at].to_vec()),
        ("cut inside the payload", full[..payload_at + 5].to_vec()),
        (
            "cut inside the trailing zeros",
            full[..full.len() - 3].to_vec(),
        ),
    ];
    // The file has the record's length (or more), but only zeros past the header: the
    // payload never reached the disk.
    let mut header_then_zeros = full.clone();
    header_then_zeros[payload_at..].fill(0);
    cases.push((
        "header, then zeros of the payload's length",
        header_then_zeros.clone(),
    ));
    header_then_zeros.extend_from_slice(&[0u8; 4096]);
    cases.push(("header, then a zero-extended file", header_then_zeros));
    let mut partial_header = full.clone();
    partial_header[offset + 8..].fill(0);
    cases.push(("part of the header, then zeros", partial_header));
    let mut zero_record = full.clone();
    zero_record[offset..].fill(0);
    cases.push(("the whole record zeros", zero_record));
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let (result, seen) = replay(&path, true).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(seen, written, "{what}");
        assert_eq!(result.valid_bytes, offset as u64, "{what}");
        assert_eq!(result.torn_bytes, (bytes.len() - offset) as u64, "{what}");
        // In a closed segment, the same bytes are corruption.
        let err = replay(&path, false).unwrap_err();
        assert_corruption_at(err, &path, offset);
    }
    // A zero tail after the last complete record.
    let mut zero_tail = full.clone();
    zero_tail.extend_from_slice(&[0u8; 100]);
    std::fs::write(&path, &zero_tail).unwrap();
    let (result, seen) = replay(&path, true).unwrap();
    assert_eq!(seen.len(), written.len() + 1);
    assert_eq!(result.valid_bytes, full.len() as u64);
    assert_eq!(result.torn_bytes, 100);
}

#[test]
fn segment_names_round_trip() {
    assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
    assert_eq!(parse_segment_file_name("42.wal"), None);
    assert_eq!(parse_segment_file_name("00000000000000000042.log"), None);
}

#[test]
fn failed_append_leaves_no_partial_record() {
    use crate::fault::{FaultInjector, IoOp};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let wal = Wal::create(
        dir.path(),
        1,
        Vec::new(),
        1 << 20,
        Some(Arc::clone(&faults)),
    )
    .unwrap();
    let p = payload(&[(1, OpKind::Put, b"a", b"1")]);
    let mut framed = Vec::new();
    p.frame_into(1, &mut framed);
    wal.append(&framed, 1, true).unwrap();
    faults.fail_once_after(&[IoOp::WalWrite], 0, std::io::ErrorKind::StorageFull);
    let mut second = Vec::new();
    p.frame_into(2, &mut second);
    assert!(wal.append(&second, 2, true).is_err());
    let mut third = Vec::new();
    p.frame_into(2, &mut third);
    wal.append(&third, 2, true).unwrap();
    let (_, seen) = replay(&dir.path().join(segment_file_name(1)), true).unwrap();
    assert_eq!(seen, vec![(1, 1), (2, 1)]);
}

#[test]
fn rotation_and_deletion_below_floor() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), 1, Vec::new(), 1 << 20, None).unwrap();
    let p = payload(&[(1, OpKind::Put, b"a", b"1")]);
    for seq in 1..=3u64 {
        let mut framed = Vec::new();
        p.frame_into(seq, &mut framed);
        wal.append(&framed, seq, false).unwrap();
        wal.rotate().unwrap();
    }
    assert_eq!(wal.segment_ids(), vec![1, 2, 3, 4]);
    // Rotating an empty open segment is a no-op.
    wal.rotate().unwrap();
    assert_eq!(wal.segment_ids(), vec![1, 2, 3, 4]);
    assert_eq!(wal.delete_segments_below(3).unwrap(), 2);
    assert_eq!(wal.segment_ids(), vec![3, 4]);
    assert!(!dir.path().join(segment_file_name(1)).exists());
    assert!(dir.path().join(segment_file_name(3)).exists());
}

#[test]
fn empty_newest_segments_are_dropped_so_a_torn_tail_stays_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = write_segment(dir.path(), 3);
    let full = std::fs::read(&path).unwrap();
    // Segment 1 ends in a torn record; an open that failed left segment 2 (header only), one
    // killed while creating its segment left segment 3 (a partial header), and segment 4 has
    // a torn first record.
    std::fs::write(&path, &full[..full.len() - 4]).unwrap();
    std::fs::write(dir.path().join(segment_file_name(2)), segment_header()).unwrap();
    std::fs::write(
        dir.path().join(segment_file_name(3)),
        &segment_header()[..5],
    )
    .unwrap();
    let mut torn_first = segment_header().to_vec();
    torn_first.extend_from_slice(&full[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + 30]);
    std::fs::write(dir.path().join(segment_file_name(4)), &torn_first).unwrap();
    assert!(
        replay(&path, false).is_err(),
        "a torn tail in an older segment"
    );
    let left = drop_empty_newest_segments(dir.path(), vec![1, 2, 3, 4]).unwrap();
    assert_eq!(left, vec![1]);
    for id in 2..=4 {
        assert!(!dir.path().join(segment_file_name(id)).exists());
    }
    let (result, seen) = replay(&path, true).unwrap();
    assert_eq!(seen, written[..2].to_vec());
    assert!(result.torn_bytes > 0);
    // A segment with a record, or with damage, is kept.
    let mut damaged = segment_header().to_vec();
    damaged.extend_from_slice(&full[SEGMENT_HEADER_LEN..]);
    damaged[SEGMENT_HEADER_LEN + 30] ^= 1;
    std::fs::write(dir.path().join(segment_file_name(2)), &damaged).unwrap();
    assert_eq!(
        drop_empty_newest_segments(dir.path(), vec![1, 2]).unwrap(),
        vec![1, 2]
    );
    std::fs::write(dir.path().join(segment_file_name(2)), &full).unwrap();
    assert_eq!(
        drop_empty_newest_segments(dir.path(), vec![1, 2]).unwrap(),
        vec![1, 2]
    );
    // Every segment empty: none left.
    std::fs::write(&path, segment_header()).unwrap();
    std::fs::write(dir.path().join(segment_file_name(2)), segment_header()).unwrap();
    assert!(
        drop_empty_newest_segments(dir.path(), vec![1, 2])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_newest_segment_of_zeros_is_torn_and_an_older_one_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(segment_file_name(1));
    for len in [SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN + 4096] {
        std::fs::write(&path, vec![0u8; len]).unwrap();
        let (result, seen) = replay(&path, true).unwrap();
        assert!(seen.is_empty());
        assert_eq!((result.valid_bytes, result.torn_bytes), (0, len as u64));
        assert!(replay(&path, false).unwrap_err().is_corruption());
        assert!(
            drop_empty_newest_segments(dir.path(), vec![1])
                .unwrap()
                .is_empty()
        );
        assert!(!path.exists());
    }
    // A segment header over zeros that is not all zeros is damage.
    let mut damaged = vec![0u8; SEGMENT_HEADER_LEN + 64];
    damaged[3] = 1;
    std::fs::write(&path, &damaged).unwrap();
    assert!(replay(&path, true).unwrap_err().is_corruption());
}
