//! Run sources: a memtable or a list of non-overlapping SST files, read as a stream of
//! [`KeyedBatch`]es in internal order within a key range.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use crate::codec::ByteRows;
use crate::error::Result;
use crate::memtable::EntryRef;
use crate::schema::TableSchema;
use crate::sst::{KeyedBatch, SstScan};
use crate::types::{MAX_SEQ, OpKind, SeqNo};
use crate::version::{MemtableSlot, SstHandle};

use super::KeyRange;

/// A stream of batches of one run.
pub type RunIter = Box<dyn Iterator<Item = Result<KeyedBatch>> + Send>;

/// A run over one memtable, copied out in chunks (growing from a small first chunk to
/// `chunk_rows` entries; the memtable's lock, if it has one, is held only while a chunk is
/// copied). Entries newer than `read_seq` are skipped at the source.
pub fn memtable_run(
    slot: Arc<MemtableSlot>,
    schema: Arc<TableSchema>,
    range: KeyRange,
    columns: Vec<usize>,
    read_seq: SeqNo,
    chunk_rows: usize,
) -> RunIter {
    let position = match &range.lower {
        Bound::Unbounded => Some((Vec::new(), MAX_SEQ)),
        Bound::Included(k) => Some((k.clone(), MAX_SEQ)),
        // Sequence 0 is never written, so (k, 0) is the position just after every version of k.
        Bound::Excluded(k) => Some((k.clone(), 0)),
    };
    let seq_column = columns
        .iter()
        .position(|c| *c == schema.seq_index())
        .unwrap_or_default();
    let op_column = columns
        .iter()
        .position(|c| *c == schema.op_index())
        .unwrap_or_default();
    Box::new(MemtableRun {
        slot,
        schema,
        range,
        columns,
        read_seq,
        chunk_rows: super::merge::FIRST_BATCH_ROWS.min(chunk_rows.max(1)),
        chunk_rows_max: chunk_rows.max(1),
        position,
        seq_column,
        op_column,
    })
}

struct MemtableRun {
    slot: Arc<MemtableSlot>,
    schema: Arc<TableSchema>,
    range: KeyRange,
    columns: Vec<usize>,
    read_seq: SeqNo,
    /// Entries copied per chunk: doubles from a small first chunk up to `chunk_rows_max`.
    chunk_rows: usize,
    chunk_rows_max: usize,
    /// Where the next chunk starts; `None` when done.
    position: Option<(Vec<u8>, SeqNo)>,
    seq_column: usize,
    op_column: usize,
}

impl MemtableRun {
    fn next_chunk(&mut self) -> Result<Option<KeyedBatch>> {
        loop {
            let Some((start_key, start_seq)) = self.position.take() else {
                return Ok(None);
            };
            let mut keys = ByteRows::with_capacity(self.chunk_rows, self.chunk_rows * 16);
            let mut values = ByteRows::with_capacity(self.chunk_rows, self.chunk_rows * 32);
            let mut seqs = Vec::with_capacity(self.chunk_rows);
            let mut ops = Vec::with_capacity(self.chunk_rows);
            let mut visited = 0usize;
            let mut last: Option<(Vec<u8>, SeqNo)> = None;
            let mut past_end = false;
            let mut clean = true;
            let read_seq = self.read_seq;
            let range = &self.range;
            let limit = self.chunk_rows;
            self.chunk_rows = (self.chunk_rows * 2).min(self.chunk_rows_max);
            self.slot
                .memtable
                .visit_from(&start_key, start_seq, &mut |e: EntryRef<'_>| {
                    if !range.contains(e.key) {
                        // Keys only grow: past the upper bound means done.
                        past_end = true;
                        return false;
                    }
                    visited += 1;
                    if e.seq <= read_seq {
                        if !keys.is_empty() && keys.get(keys.len() - 1) == e.key {
                            clean = false;
                        }
                        if e.op == OpKind::Delete {
                            clean = false;
                        }
                        keys.push(e.key);
                        values.push(e.value);
                        seqs.push(e.seq);
                        ops.push(e.op);
                    }
                    if visited >= limit {
                        last = Some((e.key.to_vec(), e.seq));
                        return false;
                    }
                    true
                });
            // Resume just after the last visited entry, unless the memtable or range ended.
            if !past_end && let Some((key, seq)) = last {
                self.position = Some((key, seq.saturating_sub(1)));
            }
            if keys.is_empty() {
                if self.position.is_none() {
                    return Ok(None);
                }
                continue;
            }
            let batch = self.schema.decode_entries(
                keys.iter(),
                values.iter(),
                &seqs,
                &ops,
                &self.columns,
            )?;
            return Ok(Some(KeyedBatch {
                batch,
                keys: Arc::new(keys),
                seq_column: self.seq_column,
                op_column: self.op_column,
                clean,
            }));
        }
    }
}

impl Iterator for MemtableRun {
    type Item = Result<KeyedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_chunk() {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => None,
            Err(e) => {
                self.position = None;
                Some(Err(e))
            }
        }
    }
}

/// A run over SST files that do not overlap, in key order.
pub fn sst_run(
    files: Vec<Arc<SstHandle>>,
    range: KeyRange,
    columns: Vec<usize>,
    read_seq: SeqNo,
) -> RunIter {
    sst_run_with_batch_rows(files, range, columns, read_seq, crate::sst::SCAN_BATCH_ROWS)
}

/// Like [`sst_run`], reading in batches of `batch_rows` rows.
pub fn sst_run_with_batch_rows(
    files: Vec<Arc<SstHandle>>,
    range: KeyRange,
    columns: Vec<usize>,
    read_seq: SeqNo,
    batch_rows: usize,
) -> RunIter {
    Box::new(SstRun {
        files: files.into(),
        current: None,
        range,
        columns,
        read_seq,
        batch_rows,
        failed: false,
    })
}

struct SstRun {
    files: VecDeque<Arc<SstHandle>>,
    current: Option<(SstScan, bool)>,
    range: KeyRange,
    columns: Vec<usize>,
    read_seq: SeqNo,
    batch_rows: usize,
    failed: bool,
}

impl SstRun {
    fn next_batch(&mut self) -> Result<Option<KeyedBatch>> {
        loop {
            if let Some((scan, newer_than_read)) = self.current.as_mut() {
                match scan.next() {
                    Some(Ok(mut batch)) => {
                        if *newer_than_read {
                            batch.clean = false;
                        }
                        return Ok(Some(batch));
                    }
                    Some(Err(e)) => return Err(e),
                    None => self.current = None,
                }
            }
            let Some(file) = self.files.pop_front() else {
                return Ok(None);
            };
            let reader = file.reader()?;
            let (lower, upper) = self.range.bounds();
            let scan =
                reader.scan_with_batch_rows(lower, upper, self.columns.clone(), self.batch_rows)?;
            let newer_than_read = file.meta().max_seq > self.read_seq;
            self.current = Some((scan, newer_than_read));
        }
    }
}

impl Iterator for SstRun {
    type Item = Result<KeyedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_batch().transpose();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}
