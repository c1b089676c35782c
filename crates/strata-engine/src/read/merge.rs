//! The k-way merge of sorted runs with per-key deduplication (see the parent module docs).
//!
//! Invariants: runs are given newest first but ties between runs are broken by sequence number
//! (unique across the database), so the order of the output never depends on run order; the
//! merge never reorders the rows of one run; output batches grow from `FIRST_BATCH_ROWS` to
//! `batch_rows` rows (all but the last reach the current target), so a short scan decodes
//! little.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;

use super::runs::RunIter;
use crate::codec::ByteRows;
use crate::error::Result;
use crate::sst::KeyedBatch;
use crate::types::{OpKind, SeqNo};

/// Rows of the first output batch.
pub const FIRST_BATCH_ROWS: usize = 256;

/// Which versions the merge keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dedup {
    /// The newest version of each key with `seq <= read_seq`; keys whose newest version is a
    /// tombstone are left out (what a read sees).
    Latest {
        /// The read's sequence number.
        read_seq: SeqNo,
    },
    /// Every version with `seq <= read_seq`, tombstones included (version scans).
    All {
        /// The read's sequence number.
        read_seq: SeqNo,
    },
    /// The newest version of each key plus every older version some snapshot in `snapshots`
    /// still sees (flush and compaction). With `drop_tombstones` (nothing older can exist
    /// outside the merge), a tombstone that is the oldest version kept is dropped too.
    Retain {
        /// Live snapshot sequence numbers, ascending.
        snapshots: Vec<SeqNo>,
        /// True when the merge's output is the bottom of the tree for its keys.
        drop_tombstones: bool,
    },
}

struct Cursor {
    iter: RunIter,
    batch: Option<KeyedBatch>,
    row: usize,
    serial: u64,
}

impl Cursor {
    #[inline]
    fn key(&self) -> Option<&[u8]> {
        self.batch.as_ref().map(|b| b.keys.get(self.row))
    }

    #[inline]
    fn seq(&self) -> SeqNo {
        self.batch.as_ref().map_or(0, |b| b.seq(self.row))
    }

    /// Loads batches until the cursor points at a row or the run is exhausted.
    fn fill(&mut self, serials: &mut u64) -> Result<()> {
        while self.batch.as_ref().is_none_or(|b| self.row >= b.num_rows()) {
            match self.iter.next() {
                Some(batch) => {
                    self.batch = Some(batch?);
                    self.row = 0;
                    *serials += 1;
                    self.serial = *serials;
                }
                None => {
                    self.batch = None;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

struct Piece {
    batch: KeyedBatch,
    serial: u64,
    start: usize,
    len: usize,
}

/// Output rows collected as slices of input batches.
struct Output {
    pieces: Vec<Piece>,
    rows: usize,
    with_keys: bool,
}

impl Output {
    fn push(&mut self, batch: &KeyedBatch, serial: u64, start: usize, len: usize) {
        debug_assert!(len > 0 && start + len <= batch.num_rows());
        self.rows += len;
        if let Some(last) = self.pieces.last_mut()
            && last.serial == serial
            && last.start + last.len == start
        {
            last.len += len;
            return;
        }
        self.pieces.push(Piece {
            batch: batch.clone(),
            serial,
            start,
            len,
        });
    }

    fn take(&mut self, schema: &mut Option<SchemaRef>) -> Result<Option<KeyedBatch>> {
        if self.pieces.is_empty() {
            return Ok(None);
        }
        let pieces = std::mem::take(&mut self.pieces);
        self.rows = 0;
        let first = &pieces[0].batch;
        let (seq_column, op_column) = (first.seq_column, first.op_column);
        let schema = schema.get_or_insert_with(|| first.batch.schema()).clone();
        let batch = if pieces.len() == 1 {
            let p = &pieces[0];
            p.batch.batch.slice(p.start, p.len)
        } else {
            let slices: Vec<RecordBatch> = pieces
                .iter()
                .map(|p| p.batch.batch.slice(p.start, p.len))
                .collect();
            concat_batches(&schema, &slices)?
        };
        let keys = if self.with_keys {
            if pieces.len() == 1
                && pieces[0].start == 0
                && pieces[0].len == pieces[0].batch.keys.len()
            {
                Arc::clone(&pieces[0].batch.keys)
            } else {
                let bytes: usize = pieces.iter().map(|p| p.len * 16).sum();
                let mut keys = ByteRows::with_capacity(batch.num_rows(), bytes);
                for p in &pieces {
                    (p.start..p.start + p.len).for_each(|i| keys.push(p.batch.keys.get(i)));
                }
                Arc::new(keys)
            }
        } else {
            Arc::new(ByteRows::default())
        };
        Ok(Some(KeyedBatch {
            batch,
            keys,
            seq_column,
            op_column,
            clean: false,
        }))
    }
}

/// The merge of several runs into one deduplicated stream (see the module docs).
pub struct MergeIter {
    cursors: Vec<Cursor>,
    dedup: Dedup,
    batch_rows: usize,
    /// Rows of the next output batch: starts small (a short scan reads little) and doubles
    /// up to `batch_rows`.
    target_rows: usize,
    out: Output,
    schema: Option<SchemaRef>,
    /// The key whose fate is decided (its newest visible version was seen).
    decided: Vec<u8>,
    has_decided: bool,
    /// Retain mode: versions kept for the current key, not yet emitted.
    group: Vec<(KeyedBatch, u64, usize)>,
    group_key: Vec<u8>,
    group_prev_seq: Option<SeqNo>,
    serials: u64,
    started: bool,
    failed: bool,
    rows_dropped: u64,
    rows_dropped_reported: u64,
}

impl std::fmt::Debug for MergeIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeIter")
            .field("runs", &self.cursors.len())
            .field("dedup", &self.dedup)
            .finish_non_exhaustive()
    }
}

impl MergeIter {
    /// Merges `runs` (each in internal order). With `with_keys` the output batches carry their
    /// encoded keys (flush and compaction need them; reads do not).
    pub fn new(runs: Vec<RunIter>, dedup: Dedup, batch_rows: usize, with_keys: bool) -> Self {
        MergeIter {
            cursors: runs
                .into_iter()
                .map(|iter| Cursor {
                    iter,
                    batch: None,
                    row: 0,
                    serial: 0,
                })
                .collect(),
            dedup,
            batch_rows: batch_rows.max(1),
            target_rows: FIRST_BATCH_ROWS.min(batch_rows.max(1)),
            out: Output {
                pieces: Vec::new(),
                rows: 0,
                with_keys,
            },
            schema: None,
            decided: Vec::new(),
            has_decided: false,
            group: Vec::new(),
            group_key: Vec::new(),
            group_prev_seq: None,
            serials: 0,
            started: false,
            failed: false,
            rows_dropped: 0,
            rows_dropped_reported: 0,
        }
    }

    /// Number of runs merged.
    pub fn runs(&self) -> usize {
        self.cursors.len()
    }

    /// Rows left out so far (older versions, tombstones, versions newer than the read).
    pub fn rows_dropped(&self) -> u64 {
        self.rows_dropped
    }

    /// Rows dropped since the last call (for metrics).
    pub(crate) fn take_rows_dropped_unreported(&mut self) -> u64 {
        let new = self.rows_dropped - self.rows_dropped_reported;
        self.rows_dropped_reported = self.rows_dropped;
        new
    }

    /// The cursor with the smallest (key, newest sequence), and the first row of that
    /// cursor's batch that another cursor may interleave with (its rows before that are a
    /// segment no other run can split).
    fn pick(&self) -> Option<(usize, usize)> {
        let mut best: Option<usize> = None;
        let mut second: Option<usize> = None;
        for (i, cursor) in self.cursors.iter().enumerate() {
            let Some(key) = cursor.key() else { continue };
            match best {
                None => best = Some(i),
                Some(b) => {
                    let best_key = self.cursors[b].key().unwrap_or_default();
                    let better =
                        key < best_key || (key == best_key && cursor.seq() > self.cursors[b].seq());
                    let (winner, loser) = if better { (i, b) } else { (b, i) };
                    best = Some(winner);
                    let loser_key = self.cursors[loser].key().unwrap_or_default();
                    if second.is_none_or(|s| loser_key < self.cursors[s].key().unwrap_or_default())
                    {
                        second = Some(loser);
                    }
                }
            }
        }
        let best = best?;
        let cursor = &self.cursors[best];
        let batch = cursor.batch.as_ref()?;
        let end = match second.and_then(|s| self.cursors[s].key()) {
            None => batch.num_rows(),
            Some(bound) => batch.keys.partition_point(cursor.row, |k| k < bound),
        };
        Some((best, end))
    }

    /// The next output batch, or `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<KeyedBatch>> {
        if self.failed {
            return Ok(None);
        }
        let result = self.next_batch_inner();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn next_batch_inner(&mut self) -> Result<Option<KeyedBatch>> {
        if !self.started {
            self.started = true;
            for cursor in &mut self.cursors {
                cursor.fill(&mut self.serials)?;
            }
        }
        loop {
            if self.out.rows >= self.target_rows {
                self.target_rows = (self.target_rows * 2).min(self.batch_rows);
                return self.out.take(&mut self.schema);
            }
            let Some((m, segment_end)) = self.pick() else {
                self.finish_group();
                return self.out.take(&mut self.schema);
            };
            let row = self.cursors[m].row;
            // A tie with another run (segment_end == row) is handled one row at a time.
            let end = match self.dedup {
                Dedup::Retain { .. } => row + 1,
                _ => segment_end.max(row + 1),
            };
            match &self.dedup {
                Dedup::Latest { read_seq } => {
                    let read_seq = *read_seq;
                    self.latest_segment(m, row, end, read_seq)
                }
                Dedup::All { read_seq } => {
                    let read_seq = *read_seq;
                    self.all_segment(m, row, end, read_seq)
                }
                Dedup::Retain { .. } => self.retain_row(m, row),
            }
            self.cursors[m].row = end;
            self.cursors[m].fill(&mut self.serials)?;
        }
    }

    fn latest_segment(&mut self, m: usize, start: usize, end: usize, read_seq: SeqNo) {
        let cursor = &self.cursors[m];
        let serial = cursor.serial;
        let Some(batch) = cursor.batch.as_ref() else {
            return;
        };
        let keys = Arc::clone(&batch.keys);
        if batch.clean && !(self.has_decided && keys.get(start) == self.decided.as_slice()) {
            self.out.push(batch, serial, start, end - start);
            self.decided.clear();
            self.decided.extend_from_slice(keys.get(end - 1));
            self.has_decided = true;
            return;
        }
        let mut run: Option<usize> = None;
        for i in start..end {
            let key = keys.get(i);
            let already_decided = self.has_decided && key == self.decided.as_slice();
            let keep = if already_decided || batch.seq(i) > read_seq {
                false
            } else {
                self.decided.clear();
                self.decided.extend_from_slice(key);
                self.has_decided = true;
                batch.op(i) == OpKind::Put
            };
            match (keep, run) {
                (true, None) => run = Some(i),
                (false, Some(s)) => {
                    self.out.push(batch, serial, s, i - s);
                    run = None;
                }
                _ => {}
            }
            if !keep {
                self.rows_dropped += 1;
            }
        }
        if let Some(s) = run {
            self.out.push(batch, serial, s, end - s);
        }
    }

    fn all_segment(&mut self, m: usize, start: usize, end: usize, read_seq: SeqNo) {
        let cursor = &self.cursors[m];
        let serial = cursor.serial;
        let Some(batch) = cursor.batch.as_ref() else {
            return;
        };
        let mut run: Option<usize> = None;
        for i in start..end {
            let keep = batch.clean || batch.seq(i) <= read_seq;
            match (keep, run) {
                (true, None) => run = Some(i),
                (false, Some(s)) => {
                    self.out.push(batch, serial, s, i - s);
                    run = None;
                }
                _ => {}
            }
            if !keep {
                self.rows_dropped += 1;
            }
        }
        if let Some(s) = run {
            self.out.push(batch, serial, s, end - s);
        }
    }

    fn retain_row(&mut self, m: usize, row: usize) {
        let Dedup::Retain {
            drop_tombstones, ..
        } = self.dedup
        else {
            return;
        };
        let (batch, serial) = match &self.cursors[m].batch {
            Some(batch) => (batch.clone(), self.cursors[m].serial),
            None => return,
        };
        let key = batch.keys.get(row);
        if self.group_prev_seq.is_none() || key != self.group_key.as_slice() {
            self.finish_group_with(drop_tombstones);
            self.group_key.clear();
            self.group_key.extend_from_slice(key);
        }
        let seq = batch.seq(row);
        let keep = match self.group_prev_seq {
            None => true,
            Some(newer) => self.snapshot_sees(seq, newer),
        };
        self.group_prev_seq = Some(seq);
        if keep {
            self.group.push((batch, serial, row));
        } else {
            self.rows_dropped += 1;
        }
    }

    /// True when a live snapshot sees the version with sequence `seq` whose next newer
    /// version has sequence `newer`: some snapshot lies in `[seq, newer)`.
    fn snapshot_sees(&self, seq: SeqNo, newer: SeqNo) -> bool {
        let Dedup::Retain { snapshots, .. } = &self.dedup else {
            return false;
        };
        let first = snapshots.partition_point(|s| *s < seq);
        snapshots.get(first).is_some_and(|s| *s < newer)
    }

    fn finish_group(&mut self) {
        if let Dedup::Retain {
            drop_tombstones, ..
        } = self.dedup
        {
            self.finish_group_with(drop_tombstones);
        }
    }

    /// Emits the versions kept for the current key and starts a new group.
    fn finish_group_with(&mut self, drop_tombstones: bool) {
        self.group_prev_seq = None;
        if drop_tombstones {
            while self
                .group
                .last()
                .is_some_and(|(b, _, r)| b.op(*r) == OpKind::Delete)
            {
                self.group.pop();
                self.rows_dropped += 1;
            }
        }
        for (batch, serial, row) in self.group.drain(..) {
            self.out.push(&batch, serial, row, 1);
        }
    }
}

impl Iterator for MergeIter {
    type Item = Result<KeyedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}
