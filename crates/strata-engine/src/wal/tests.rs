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

#[test]
fn a_zero_filled_end_of_the_last_record_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = write_segment(dir.path(), 3);
    let mut full = std::fs::read(&path).unwrap();
    let len = full.len();
    full[len - 5..].fill(0);
    std::fs::write(&path, &full).unwrap();
    let (result, seen) = replay(&path, true).unwrap();
    assert_eq!(seen, written[..2].to_vec());
    assert!(result.torn_bytes > 0);
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
