//! The read path: key ranges, sorted runs, and the merge that turns the memtables and SSTs of
//! one pinned [`SuperVersion`] into the rows visible at a sequence number.
//!
//! ## Sorted runs
//!
//! A *run* is a source whose rows are in internal order (key ascending, sequence descending):
//! one memtable, one L0 file, or one whole level of L1+ (its files do not overlap, so they are
//! read one after the other). A scan merges runs, not files, so the merge fan-in is the number
//! of memtables plus L0 files plus levels, whatever the number of files.
//!
//! ## The merge ([`merge::MergeIter`])
//!
//! A k-way merge over the runs' cursors. At each step it takes the run with the smallest
//! current key; every row of that run below the next-smallest key of any other run forms a
//! *segment* that no other run can interleave with, and is handled in bulk: copied as one slice
//! when it is clean (no tombstones, no older versions, nothing newer than the read sequence),
//! otherwise filtered row by row. A key range covered by one run therefore streams as slices of
//! the run's own batches. Equal keys in several runs are handled one row at a time, newest
//! sequence first.
//!
//! Dedup modes: the newest visible version of each key with tombstones hidden (reads), every
//! version (version scans), or the versions some snapshot still needs (flush and compaction).

pub mod merge;
pub mod plan;
pub(crate) mod plan_cache;
mod runs;

use std::ops::Bound;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};

pub use merge::{Dedup, MergeIter};
pub use plan::{BaseFile, BaseScan, Overlay, OverlayRows};
pub use runs::{RunIter, memtable_run, sst_run, sst_run_with_batch_rows};

use crate::codec::{KeyValue, prefix_successor};
use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::types::{FileId, SeqNo};
use crate::version::{SstHandle, SuperVersion};

/// A range of encoded primary keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound.
    pub lower: Bound<Vec<u8>>,
    /// Upper bound.
    pub upper: Bound<Vec<u8>>,
}

impl Default for KeyRange {
    fn default() -> Self {
        KeyRange::all()
    }
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    /// Exactly one encoded key.
    pub fn point(key: Vec<u8>) -> Self {
        KeyRange {
            lower: Bound::Included(key.clone()),
            upper: Bound::Included(key),
        }
    }

    /// A range between two encoded bounds.
    pub fn new(lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Self {
        KeyRange { lower, upper }
    }

    /// Every key starting with the encoded prefix `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> Self {
        let upper = match prefix_successor(&prefix) {
            Some(next) => Bound::Excluded(next),
            None => Bound::Unbounded,
        };
        KeyRange {
            lower: Bound::Included(prefix),
            upper,
        }
    }

    /// A range given by typed key values. A bound may list fewer values than the key has
    /// columns; it then bounds the key prefix (`upper = Included(["a"])` includes every key
    /// whose first column is `"a"`).
    pub fn from_values(
        schema: &TableSchema,
        lower: Bound<&[KeyValue]>,
        upper: Bound<&[KeyValue]>,
    ) -> Result<Self> {
        let arity = schema.key_codec().arity();
        let encode = |values: &[KeyValue]| schema.key_codec().encode_values(values);
        let lower = match lower {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(v) => Bound::Included(encode(v)?),
            // Excluding a prefix excludes every key that starts with it.
            Bound::Excluded(v) if v.len() < arity => match prefix_successor(&encode(v)?) {
                Some(next) => Bound::Included(next),
                None => return Ok(KeyRange::empty()),
            },
            Bound::Excluded(v) => Bound::Excluded(encode(v)?),
        };
        let upper = match upper {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(v) if v.len() < arity => match prefix_successor(&encode(v)?) {
                Some(next) => Bound::Excluded(next),
                None => Bound::Unbounded,
            },
            Bound::Included(v) => Bound::Included(encode(v)?),
            Bound::Excluded(v) => Bound::Excluded(encode(v)?),
        };
        Ok(KeyRange { lower, upper })
    }

    /// A range that holds no key.
    pub fn empty() -> Self {
        KeyRange {
            lower: Bound::Excluded(Vec::new()),
            upper: Bound::Excluded(Vec::new()),
        }
    }

    /// True when no key can be in the range.
    pub fn is_empty(&self) -> bool {
        match (&self.lower, &self.upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u))
            | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        }
    }

    /// True when `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.lower {
            Bound::Unbounded => true,
            Bound::Included(l) => key >= l.as_slice(),
            Bound::Excluded(l) => key > l.as_slice(),
        };
        let below = match &self.upper {
            Bound::Unbounded => true,
            Bound::Included(u) => key <= u.as_slice(),
            Bound::Excluded(u) => key < u.as_slice(),
        };
        above && below
    }

    /// True when the range intersects `[min, max]`.
    pub fn overlaps(&self, min: &[u8], max: &[u8]) -> bool {
        !self.starts_after(max) && !self.ends_before(min) && !self.is_empty()
    }

    /// True when every key of the range is greater than `key`.
    pub fn starts_after(&self, key: &[u8]) -> bool {
        match &self.lower {
            Bound::Unbounded => false,
            Bound::Included(l) => key < l.as_slice(),
            Bound::Excluded(l) => key <= l.as_slice(),
        }
    }

    /// True when every key of the range is less than `key`.
    pub fn ends_before(&self, key: &[u8]) -> bool {
        match &self.upper {
            Bound::Unbounded => false,
            Bound::Included(u) => key > u.as_slice(),
            Bound::Excluded(u) => key >= u.as_slice(),
        }
    }

    /// The keys in both `self` and `other` (possibly an empty range: see
    /// [`KeyRange::is_empty`]).
    pub fn intersect(&self, other: &KeyRange) -> KeyRange {
        // The tighter lower bound: the larger key; at equal keys, exclusion is tighter.
        let lower = match (&self.lower, &other.lower) {
            (Bound::Unbounded, b) | (b, Bound::Unbounded) => b.clone(),
            (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.max(y).clone()),
            (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.max(y).clone()),
            (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
                if i > e {
                    Bound::Included(i.clone())
                } else {
                    Bound::Excluded(e.clone())
                }
            }
        };
        // The tighter upper bound: the smaller key; at equal keys, exclusion is tighter.
        let upper = match (&self.upper, &other.upper) {
            (Bound::Unbounded, b) | (b, Bound::Unbounded) => b.clone(),
            (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.min(y).clone()),
            (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.min(y).clone()),
            (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
                if i < e {
                    Bound::Included(i.clone())
                } else {
                    Bound::Excluded(e.clone())
                }
            }
        };
        KeyRange { lower, upper }
    }

    /// The bounds as borrowed slices.
    pub fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (as_ref(&self.lower), as_ref(&self.upper))
    }
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// What a scan returns.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// User columns to return, by index into the user schema, in output order (`None`: all).
    pub projection: Option<Vec<usize>>,
    /// Return every stored version with its `_seq` and `_op` (tombstones included) instead of
    /// the newest visible row per key.
    pub versions: bool,
    /// On a table without a primary key, return the hidden `_rowid` column after the user
    /// columns of each newest live row (no effect on a version scan, which returns it anyway;
    /// an error on a table with a primary key).
    pub row_ids: bool,
    /// Stop after this many rows.
    pub limit: Option<usize>,
    /// Rows per output batch.
    pub batch_rows: usize,
    /// SST files to leave out (a caller that reads them directly, e.g. with another Parquet
    /// reader, because no other source holds their keys).
    pub exclude_files: Vec<FileId>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            projection: None,
            versions: false,
            row_ids: false,
            limit: None,
            batch_rows: 8192,
            exclude_files: Vec::new(),
        }
    }
}

impl ScanOptions {
    /// Returns only the user columns `projection`.
    pub fn with_projection(mut self, projection: Vec<usize>) -> Self {
        self.projection = Some(projection);
        self
    }

    /// Returns every version with `_seq` and `_op`.
    pub fn with_versions(mut self) -> Self {
        self.versions = true;
        self
    }

    /// Returns the hidden `_rowid` after the user columns (tables without a primary key).
    pub fn with_row_ids(mut self) -> Self {
        self.row_ids = true;
        self
    }

    /// Stops after `limit` rows.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// The storage columns a scan must read for `options`, and how to map them to its output.
#[derive(Debug, Clone)]
pub(crate) struct ScanColumns {
    /// Storage columns read (ascending): requested ones plus keys, `_seq`, `_op`.
    pub read: Vec<usize>,
    /// For each output column, its position in `read`.
    pub output: Vec<usize>,
    /// The output schema.
    pub schema: SchemaRef,
}

impl ScanColumns {
    pub(crate) fn new(schema: &TableSchema, options: &ScanOptions) -> Result<Self> {
        let user_columns = schema.user_schema().fields().len();
        let projection: Vec<usize> = match &options.projection {
            Some(p) => {
                if let Some(bad) = p.iter().find(|i| **i >= user_columns) {
                    return Err(Error::InvalidArgument(format!(
                        "projection column {bad} out of range (table has {user_columns})"
                    )));
                }
                p.clone()
            }
            None => (0..user_columns).collect(),
        };
        if options.row_ids && !schema.has_hidden_rowid() {
            return Err(Error::InvalidArgument(
                "row ids were asked of a table with a primary key (only tables without one \
                 have a hidden _rowid)"
                    .into(),
            ));
        }
        let mut wanted: Vec<usize> = projection.clone();
        if options.row_ids && !options.versions {
            debug_assert_eq!(
                schema.key_indices().len(),
                1,
                "one hidden _rowid key column"
            );
            wanted.extend(schema.key_indices());
        }
        if options.versions {
            if schema.has_hidden_rowid() {
                wanted.extend(schema.key_indices());
            }
            wanted.push(schema.seq_index());
            wanted.push(schema.op_index());
        }
        let mut read: Vec<usize> = wanted
            .iter()
            .copied()
            .chain(schema.key_indices().iter().copied())
            .chain([schema.seq_index(), schema.op_index()])
            .collect();
        read.sort_unstable();
        read.dedup();
        let output: Vec<usize> = wanted
            .iter()
            .map(|c| read.iter().position(|r| r == c).unwrap_or_default())
            .collect();
        let sst_schema = schema.sst_schema();
        let fields: Vec<_> = wanted
            .iter()
            .map(|c| {
                if *c < user_columns && !options.versions {
                    Arc::clone(&schema.user_schema().fields()[*c])
                } else {
                    Arc::clone(&sst_schema.fields()[*c])
                }
            })
            .collect();
        Ok(ScanColumns {
            read,
            output,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// Projects a merged batch (columns `read`) to the output schema.
    pub(crate) fn project(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .output
            .iter()
            .map(|i| Arc::clone(batch.column(*i)))
            .collect();
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?)
    }
}

/// The runs of a super version that may hold keys in `range`: memtables (newest first), then
/// L0 files grouped into runs of non-overlapping files, then one run per deeper level. Files
/// in `exclude` are left out (the caller reads them another way).
pub(crate) fn collect_runs(
    sv: &SuperVersion,
    schema: &Arc<TableSchema>,
    range: &KeyRange,
    read: &[usize],
    read_seq: SeqNo,
    chunk_rows: usize,
    exclude: &[FileId],
) -> Vec<RunIter> {
    let mut runs = Vec::new();
    for slot in sv.memtables() {
        if !slot.memtable.is_empty() && slot.min_seq().is_some_and(|s| s <= read_seq) {
            runs.push(memtable_run(
                Arc::clone(slot),
                Arc::clone(schema),
                range.clone(),
                read.to_vec(),
                read_seq,
                chunk_rows,
            ));
        }
    }
    let ranges = std::slice::from_ref(range);
    let wanted = |level: usize| -> Vec<Arc<SstHandle>> {
        sv.version
            .level_overlapping(level, ranges, read_seq)
            .filter(|f| !exclude.contains(&f.meta().id))
            .cloned()
            .collect()
    };
    for group in group_into_runs(wanted(0)) {
        runs.push(sst_run(group, range.clone(), read.to_vec(), read_seq));
    }
    for level in 1..sv.version.num_levels() {
        let files = wanted(level);
        if !files.is_empty() {
            runs.push(sst_run(files, range.clone(), read.to_vec(), read_seq));
        }
    }
    runs
}

/// Groups files into as few runs of non-overlapping files as a greedy pass finds, each run
/// in key order. (The merge orders equal keys by sequence number, so files of one run may come
/// from any point in time.)
pub(crate) fn group_into_runs(mut files: Vec<Arc<SstHandle>>) -> Vec<Vec<Arc<SstHandle>>> {
    files.sort_by(|a, b| a.meta().min_key.cmp(&b.meta().min_key));
    let mut runs: Vec<Vec<Arc<SstHandle>>> = Vec::new();
    for file in files {
        let fits = runs.iter_mut().find(|run| {
            run.last()
                .is_some_and(|last| last.meta().max_key < file.meta().min_key)
        });
        match fits {
            Some(run) => run.push(file),
            None => runs.push(vec![file]),
        }
    }
    runs
}

/// An iterator over the rows of a scan, as Arrow batches.
pub struct ScanIter {
    merge: MergeIter,
    columns: ScanColumns,
    remaining: Option<usize>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for ScanIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanIter")
            .field("schema", &self.columns.schema)
            .finish_non_exhaustive()
    }
}

impl ScanIter {
    pub(crate) fn new(
        merge: MergeIter,
        columns: ScanColumns,
        limit: Option<usize>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        ScanIter {
            merge,
            columns,
            remaining: limit,
            metrics,
        }
    }

    /// The schema of every batch this scan returns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.columns.schema)
    }

    /// Rows the merge dropped as older versions or tombstones so far.
    pub fn rows_deduplicated(&self) -> u64 {
        self.merge.rows_dropped()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.remaining == Some(0) {
            return Ok(None);
        }
        let Some(keyed) = self.merge.next_batch()? else {
            return Ok(None);
        };
        let mut batch = self.columns.project(&keyed.batch)?;
        if let Some(remaining) = self.remaining.as_mut() {
            if batch.num_rows() > *remaining {
                batch = batch.slice(0, *remaining);
            }
            *remaining -= batch.num_rows();
        }
        crate::metrics::Metrics::add(&self.metrics.scan_rows, batch.num_rows() as u64);
        Ok(Some(batch))
    }
}

impl Iterator for ScanIter {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_batch() {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => {
                let dropped = self.merge.take_rows_dropped_unreported();
                crate::metrics::Metrics::add(&self.metrics.scan_rows_deduplicated, dropped);
                None
            }
            Err(e) => {
                self.remaining = Some(0);
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
