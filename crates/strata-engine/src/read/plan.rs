//! Scan planning: how a scan of a pinned view reads its rows without merging the bulk of the
//! table.
//!
//! A view whose files carry complete [deletion vectors](crate::dv) (or need none: every file
//! clean and no two overlapping) splits into
//!
//! * the **base**: every SST file, read by a columnar Parquet reader as it is, each with its
//!   DV applied as a row selection. The live rows of the base are exactly the table as of the
//!   view's files (one row per key, the newest, tombstones gone);
//! * the **overlay**: what the memtables hold at the read sequence, merged (the newest version
//!   of each key, tombstones included). It is newer than every base row, so a scan returns
//!   the base rows whose key the overlay does not hold (a tombstone or a newer version in the
//!   overlay hides the base row even when the base row alone would match a value filter) and
//!   the overlay's live rows.
//!
//! The plan **resolves** the overlay against the base when it can: the overlay's keys are
//! looked up in the base files' keys ([`crate::sst::key_cache`], a galloping merge of two
//! sorted lists per file) and the base rows they hide are added to those files' deleted rows,
//! for this scan only (the recorded DVs do not change). The scan then needs no anti-join:
//! it reads no key column it does not project, and its row count is exact. When some file's
//! keys are too large for the key cache, the plan keeps the overlay's keys as a probe instead
//! and the scan filters every base row against it (the anti-join, [`Overlay::keep_mask`]).
//!
//! A plan is kept per table and brought up to date with later writes rather than made again
//! ([`update_base_scan`], [`super::plan_cache`]): the changed keys' rows go to the overlay's
//! *recent* part, superseding their rows in its *settled* part ([`OverlayRows`]), and the keys
//! new to the overlay are resolved against the base files; the recent part is merged into the
//! settled one now and then, so an update costs the keys written since, not the overlay.
//!
//! [`ReadView::base_scan`](crate::ReadView::base_scan) returns `None` when the view cannot be
//! read this way; the caller then merges ([`crate::ReadView::scan`]):
//!
//! * a file holds rows newer than the read sequence (a snapshot older than a flush), or a DV
//!   would be needed but the table's DVs are not maintained;
//! * some column is stored under another Parquet type than the user's (only the engine's
//!   reader maps it back);
//! * a table without a primary key whose overlay holds keys inside a base file's key range
//!   that the plan could not resolve: its hidden row id is not a user column, so the
//!   anti-join could not be computed from user columns. (Fresh inserts take new, larger row
//!   ids, so an append-only table keeps the base path.)
//!
//! Invariants: base files are listed in ascending order of their smallest key; `disjoint` is
//! true only when no two of them overlap (reading them in order is then reading in key order);
//! the overlay's probe keys are only those inside the key range of some base file (a key
//! outside every file cannot hide a base row); a resolved overlay has no probe keys, and
//! every base row whose key the overlay holds is among its file's deleted rows; an overlay's
//! key index holds every key of its rows and tombstones once, in its settled or recent part,
//! and the superseded settled rows are exactly those of the settled puts whose key is recent.

use std::collections::HashSet;
use std::ops::{Bound, Range};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, Int64Array, RecordBatch,
    UInt32Array,
};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Int64Type};
use roaring::RoaringBitmap;

use super::{Dedup, KeyRange, MergeIter, memtable_run};
use crate::codec::ByteRows;
use crate::dv::{self, RowGroupRows, row_group_rows, selection_runs};
use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::sst::SstMeta;
use crate::sst::key_cache::FileKeys;
use crate::types::{OpKind, SeqNo};
use crate::version::{MemtableSlot, SstHandle};

/// One base file of a scan and its deleted rows.
#[derive(Debug, Clone)]
pub struct BaseFile {
    /// The file.
    pub meta: SstMeta,
    /// Row positions that are not live (`None`: every row is live).
    deleted: Option<Arc<RoaringBitmap>>,
}

impl BaseFile {
    /// File `meta` with the deleted rows `deleted` (positions below `meta.rows`).
    pub fn new(meta: SstMeta, deleted: Option<Arc<RoaringBitmap>>) -> BaseFile {
        debug_assert!(
            deleted
                .as_ref()
                .and_then(|d| d.max())
                .is_none_or(|p| u64::from(p) < meta.rows)
        );
        BaseFile { meta, deleted }
    }

    /// Row positions that are not live (`None`: every row is live).
    pub fn deleted(&self) -> Option<&Arc<RoaringBitmap>> {
        self.deleted.as_ref()
    }

    /// Number of live rows.
    pub fn live_rows(&self) -> u64 {
        self.meta.rows - self.deleted.as_ref().map_or(0, |d| d.len())
    }

    /// Number of deleted rows at positions `rows`.
    pub fn deleted_within(&self, rows: Range<u64>) -> u64 {
        self.deleted
            .as_deref()
            .map_or(0, |d| dv::deleted_within(d, rows))
    }

    /// The number of live rows of the file whose key lies in `range`, from `keys` (the file's
    /// keys, every row's, in row order: [`FileKeys`]): the rows between the range's two
    /// bounds' positions (two binary searches) minus the deleted rows among them.
    pub(crate) fn live_rows_in(&self, keys: &FileKeys, range: &KeyRange) -> u64 {
        debug_assert_eq!(keys.len() as u64, self.meta.rows);
        // The first row whose key is above `key` (a file may hold a key's older versions
        // right after its newest).
        let after = |key: &[u8]| {
            let mut i = keys.lower_bound(key);
            while i < keys.len() && keys.get(i) == key {
                i += 1;
            }
            i
        };
        let start = match &range.lower {
            Bound::Unbounded => 0,
            Bound::Included(key) => keys.lower_bound(key),
            Bound::Excluded(key) => after(key),
        } as u64;
        let end = match &range.upper {
            Bound::Unbounded => keys.len(),
            Bound::Included(key) => after(key),
            Bound::Excluded(key) => keys.lower_bound(key),
        } as u64;
        if start >= end {
            return 0;
        }
        end - start - self.deleted_within(start..end)
    }

    /// Rows `start..end` of the file minus its deleted rows, as `(live, length)` runs covering
    /// the whole file (a Parquet row selection).
    pub fn selection(&self, start: u64, end: u64) -> Vec<(bool, u64)> {
        selection_runs(self.meta.rows, start, end, self.deleted.as_deref())
    }

    /// Rows `rows` of the file minus its deleted rows, per row group of the file (the groups
    /// start at `group_starts`, which ends with the file's row count): what a Parquet reader
    /// that skips the deleted rows reads of each group.
    pub fn piece_rows(&self, group_starts: &[u64], rows: Range<u64>) -> Vec<RowGroupRows> {
        debug_assert!(group_starts.windows(2).all(|w| w[0] <= w[1]));
        debug_assert_eq!(group_starts.last().copied(), Some(self.meta.rows));
        debug_assert!(rows.start <= rows.end && rows.end <= self.meta.rows);
        group_starts
            .windows(2)
            .map(|w| row_group_rows(w[0]..w[1], rows.clone(), self.deleted.as_deref()))
            .collect()
    }

    /// The row groups of rows `rows` of the file, deleted rows *included* (for a reader that
    /// hides them after decoding): a group wholly inside `rows` is read whole, one `rows` cuts
    /// only inside `rows`, and a group none of whose rows in `rows` is live is not read.
    /// `group_starts` as for [`Self::piece_rows`].
    pub fn piece_row_groups(&self, group_starts: &[u64], rows: Range<u64>) -> Vec<RowGroupRows> {
        debug_assert!(group_starts.windows(2).all(|w| w[0] <= w[1]));
        debug_assert_eq!(group_starts.last().copied(), Some(self.meta.rows));
        debug_assert!(rows.start <= rows.end && rows.end <= self.meta.rows);
        group_starts
            .windows(2)
            .map(|w| {
                let (low, high) = (w[0].max(rows.start), w[1].min(rows.end));
                if low >= high || self.deleted_within(low..high) == high - low {
                    RowGroupRows::None
                } else {
                    row_group_rows(w[0]..w[1], rows.clone(), None)
                }
            })
            .collect()
    }
}

/// The overlay of a base scan (see the module docs).
#[derive(Debug, Clone)]
pub struct Overlay {
    /// Live rows (user columns) of the keys whose newest version is a put.
    rows: OverlayRows,
    /// Keys held by the overlay that lie inside some base file's key range.
    probe: Arc<Probe>,
    /// Keys in the overlay (puts and tombstones).
    keys: usize,
    /// Tombstones in the overlay.
    tombstones: usize,
    /// Base rows the plan found hidden by the overlay and added to their files' deleted rows
    /// (a resolved overlay; 0 when the overlay hides nothing or was not resolved).
    hidden: u64,
}

/// The set of overlay keys a base row is tested against.
#[derive(Debug)]
enum Probe {
    /// No key can hide a base row.
    Empty,
    /// A single `Int64` key column: the values, ascending and distinct (probed by a merge
    /// walk, [`keep_sorted`]).
    Int64(Vec<i64>),
    /// Any key: encoded keys.
    Encoded(HashSet<Vec<u8>>),
}

/// The live rows of an overlay, in two parts so that bringing a plan up to date costs the
/// keys written since, not the whole overlay ([`update_base_scan`]):
///
/// * the **settled** rows: the live rows as of the plan's last consolidation, in key order,
///   shared by every copy of the plan, less the **superseded** ones (positions in the
///   settled rows of keys written since, whose newest rows are in the recent part or which
///   are now tombstones; a bitmap shared by the copies until one of them adds to it);
/// * the **recent** rows: the newest rows of the keys written since the consolidation whose
///   newest version is a put, in key order.
///
/// Each part is in key order; the two together are not (a recent key may sort anywhere among
/// the settled ones). No key has a row in both parts.
#[derive(Debug, Clone, Default)]
pub struct OverlayRows {
    settled: Option<RecordBatch>,
    superseded: Arc<RoaringBitmap>,
    recent: Option<RecordBatch>,
}

impl OverlayRows {
    /// Rows `settled` (key order), none superseded, none recent.
    fn settled(settled: Option<RecordBatch>) -> OverlayRows {
        OverlayRows {
            settled: settled.filter(|r| r.num_rows() > 0),
            ..OverlayRows::default()
        }
    }

    /// Number of live rows.
    pub fn num_rows(&self) -> usize {
        let count = |rows: &Option<RecordBatch>| rows.as_ref().map_or(0, RecordBatch::num_rows);
        count(&self.settled) - self.superseded.len() as usize + count(&self.recent)
    }

    /// True when there is no live row.
    pub fn is_empty(&self) -> bool {
        self.num_rows() == 0
    }

    /// Bytes of Arrow memory the rows take (superseded rows included).
    pub fn memory_size(&self) -> usize {
        let size = |rows: &Option<RecordBatch>| {
            rows.as_ref().map_or(0, RecordBatch::get_array_memory_size)
        };
        size(&self.settled) + size(&self.recent) + self.superseded.serialized_size()
    }

    /// The rows with only the columns `columns` (no row is copied).
    pub fn project(&self, columns: &[usize]) -> Result<OverlayRows> {
        let project = |rows: &Option<RecordBatch>| -> Result<Option<RecordBatch>> {
            Ok(match rows {
                Some(rows) => Some(rows.project(columns)?),
                None => None,
            })
        };
        Ok(OverlayRows {
            settled: project(&self.settled)?,
            superseded: Arc::clone(&self.superseded),
            recent: project(&self.recent)?,
        })
    }

    /// The live rows in batches of at most `batch_rows` rows: the settled ones (the superseded
    /// ones filtered out), then the recent ones. Each batch is in key order.
    pub fn batches(&self, batch_rows: usize) -> Result<Vec<RecordBatch>> {
        let batch_rows = batch_rows.max(1);
        let mut out = Vec::new();
        let mut cut = |rows: RecordBatch| {
            let mut at = 0;
            while at < rows.num_rows() {
                let len = batch_rows.min(rows.num_rows() - at);
                out.push(rows.slice(at, len));
                at += len;
            }
        };
        if let Some(settled) = self.live_settled()? {
            cut(settled);
        }
        if let Some(recent) = &self.recent {
            cut(recent.clone());
        }
        Ok(out)
    }

    /// The live rows as one batch (`None` when there is none): the settled ones, then the
    /// recent ones.
    pub fn concat(&self) -> Result<Option<RecordBatch>> {
        let parts: Vec<RecordBatch> = self
            .live_settled()?
            .into_iter()
            .chain(self.recent.clone())
            .filter(|r| r.num_rows() > 0)
            .collect();
        Ok(match parts.len() {
            0 => None,
            1 => parts.into_iter().next(),
            _ => Some(concat_batches(&parts[0].schema(), &parts)?),
        })
    }

    /// The settled rows less the superseded ones.
    fn live_settled(&self) -> Result<Option<RecordBatch>> {
        let Some(settled) = &self.settled else {
            return Ok(None);
        };
        if self.superseded.is_empty() {
            return Ok(Some(settled.clone()));
        }
        let mut keep = BooleanBufferBuilder::new(settled.num_rows());
        keep.append_n(settled.num_rows(), true);
        for row in self.superseded.iter() {
            keep.set_bit(row as usize, false);
        }
        let keep = BooleanArray::new(keep.finish(), None);
        Ok(Some(arrow::compute::filter_record_batch(settled, &keep)?))
    }
}

impl Overlay {
    /// The live overlay rows (user columns).
    pub fn rows(&self) -> &OverlayRows {
        &self.rows
    }

    /// True when no overlay key can hide a base row (no anti-join needed).
    pub fn hides_nothing(&self) -> bool {
        matches!(*self.probe, Probe::Empty)
    }

    /// Number of keys held (puts and tombstones).
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Number of tombstones held.
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Base rows the plan resolved as hidden by the overlay (added to their files' deleted
    /// rows, so no anti-join runs for them).
    pub fn hidden_base_rows(&self) -> u64 {
        self.hidden
    }

    /// For base rows given by their user key columns (in primary-key order), `true` where
    /// the row survives: its key is not in the overlay.
    pub fn keep_mask(
        &self,
        schema: &TableSchema,
        key_columns: &[ArrayRef],
    ) -> Result<BooleanArray> {
        let rows = key_columns.first().map_or(0, |c| c.len());
        match &*self.probe {
            Probe::Empty => Ok(BooleanArray::from(vec![true; rows])),
            Probe::Int64(values) => {
                let column = key_columns[0]
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| Error::internal("overlay probe expects an Int64 key column"))?;
                Ok(keep_sorted(values, column))
            }
            Probe::Encoded(keys) => {
                let encoded = schema.key_codec().encode_columns(key_columns)?;
                Ok((0..encoded.len())
                    .map(|i| Some(!keys.contains(encoded.get(i))))
                    .collect())
            }
        }
    }
}

/// The keep mask of `column` against the ascending, distinct `keys`: a merge walk, since base
/// batches come in key order within a file (a cursor into `keys` only moves forward, and is
/// found again by binary search at the batch's first value or wherever the values go down),
/// so a batch costs its rows plus the overlay keys within its range, not a hash per row.
/// NULL (never a key) is kept.
fn keep_sorted(keys: &[i64], column: &Int64Array) -> BooleanArray {
    debug_assert!(keys.windows(2).all(|w| w[0] < w[1]));
    let values = column.values();
    let mut keep = BooleanBufferBuilder::new(values.len());
    let mut cursor = values
        .first()
        .map_or(0, |v| keys.partition_point(|k| k < v));
    let mut previous = values.first().copied().unwrap_or(i64::MIN);
    for &value in values.iter() {
        if value < previous {
            cursor = keys.partition_point(|k| *k < value);
        }
        while cursor < keys.len() && keys[cursor] < value {
            cursor += 1;
        }
        keep.append(cursor == keys.len() || keys[cursor] != value);
        previous = value;
    }
    let mask = BooleanArray::new(keep.finish(), None);
    match column.nulls() {
        // A NULL slot's value is arbitrary: keep it.
        Some(nulls) if nulls.null_count() > 0 => {
            let kept: Vec<bool> = (0..column.len())
                .map(|i| column.is_null(i) || mask.value(i))
                .collect();
            BooleanArray::from(kept)
        }
        _ => mask,
    }
}

/// A scan of a view as base files plus overlay (see the module docs).
#[derive(Debug, Clone)]
pub struct BaseScan {
    /// The base files overlapping the scan's ranges, by smallest key.
    pub files: Vec<BaseFile>,
    /// True when no two base files overlap.
    pub disjoint: bool,
    /// What the memtables hold.
    pub overlay: Overlay,
}

impl BaseScan {
    /// Live base rows (before any key range or filter).
    pub fn base_live_rows(&self) -> u64 {
        self.files.iter().map(BaseFile::live_rows).sum()
    }
}

/// Every key of a plan's overlay and whether its newest version is a put, in the two parts of
/// [`OverlayRows`], so the plan can be brought up to date ([`update_base_scan`]). `None` for a
/// plan that cannot be updated (its overlay is probed by an anti-join, or the table has a
/// hidden row id). Shared between a kept plan and the copies queries take of it (an update
/// only reads it and builds the copy a new one), so a query that reuses a plan copies no key.
pub(crate) type OverlayIndex = Option<Arc<OverlayKeys>>;

/// The keys of an overlay: the settled keys (those of the last consolidation, shared by every
/// copy of the plan) and the keys written since (`recent`, at most a fraction of the settled
/// ones: [`consolidation_due`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct OverlayKeys {
    settled: Arc<KeyList>,
    /// The keys written since the consolidation (their rows are [`OverlayRows`]'s recent
    /// rows).
    recent: KeyList,
}

impl OverlayKeys {
    /// Number of distinct keys (settled or recent).
    pub(crate) fn len(&self) -> usize {
        self.settled.len()
            + self
                .recent
                .keys
                .iter()
                .filter(|key| self.settled.find(key).is_none())
                .count()
    }

    /// True when keys were written since the last consolidation.
    pub(crate) fn has_recent(&self) -> bool {
        !self.recent.is_empty()
    }
}

/// Keys of an overlay (its settled or its recent part), ascending and distinct, each with
/// whether its newest version is a put and, for a put, its row among the part's rows: flat
/// (one buffer of keys, no allocation per key), built in key order.
#[derive(Debug, Default, Clone)]
struct KeyList {
    keys: ByteRows,
    puts: Vec<bool>,
    /// Per key, the number of puts before it: a put's row among the settled rows.
    rows: Vec<u32>,
}

impl KeyList {
    /// Room for `keys` keys of about `bytes` bytes in total.
    fn with_capacity(keys: usize, bytes: usize) -> Self {
        KeyList {
            keys: ByteRows::with_capacity(keys, bytes),
            puts: Vec::with_capacity(keys),
            rows: Vec::with_capacity(keys),
        }
    }

    /// Appends `key`, which must follow every key held.
    fn push(&mut self, key: &[u8], put: bool) {
        debug_assert!(
            self.keys.is_empty() || self.keys.get(self.keys.len() - 1) < key,
            "overlay keys must be pushed in ascending order"
        );
        let row = match (self.rows.last(), self.puts.last()) {
            (Some(row), Some(put)) => row + u32::from(*put),
            _ => 0,
        };
        self.keys.push(key);
        self.puts.push(put);
        self.rows.push(row);
    }

    /// Number of keys.
    fn len(&self) -> usize {
        self.puts.len()
    }

    /// Number of keys whose newest version is a put.
    fn puts(&self) -> usize {
        self.rows.last().map_or(0, |row| *row as usize)
            + usize::from(self.puts.last() == Some(&true))
    }

    /// True when no key is held.
    fn is_empty(&self) -> bool {
        self.puts.is_empty()
    }

    /// The position of `key`, if held.
    fn find(&self, key: &[u8]) -> Option<usize> {
        let at = self.keys.partition_point(0, |k| k < key);
        (at < self.len() && self.keys.get(at) == key).then_some(at)
    }
}

/// Whether an overlay with `settled` settled keys and `recent` keys written since is
/// consolidated by an update: by the plan refresher's once the recent keys pass a 32nd of the
/// settled ones (and [`RECENT_KEYS_MIN`]), by a query's only past four times that (when the
/// refresher is off or behind), so that consolidations cost a bounded amount per written key
/// and stay off the queries' path, while an update costs the recent keys, not the overlay.
fn consolidation_due(settled: usize, recent: usize, by_refresher: bool) -> bool {
    let due = RECENT_KEYS_MIN.max(settled / 32);
    recent > if by_refresher { due } else { 4 * due }
}

/// Recent keys an overlay may hold, whatever its size, before the refresher consolidates it.
const RECENT_KEYS_MIN: usize = 256;

/// Plans a base scan of `files` (the view's files overlapping `ranges`, each with its DV and
/// its handle) and the memtables `memtables` at `read_seq`, with the plan's [`OverlayIndex`];
/// `None` per the module docs.
pub(crate) fn plan_base_scan(
    schema: &Arc<TableSchema>,
    mut files: Vec<(BaseFile, Arc<SstHandle>)>,
    memtables: Vec<Arc<MemtableSlot>>,
    ranges: &[KeyRange],
    read_seq: SeqNo,
) -> Result<Option<(BaseScan, OverlayIndex)>> {
    // In key order, so the overlay's rows come in key order.
    let mut ranges = ranges.to_vec();
    ranges.sort_by(range_start_cmp);
    let mut index = KeyList::default();
    files.sort_by(|a, b| a.0.meta.min_key.cmp(&b.0.meta.min_key));
    let disjoint = files
        .windows(2)
        .all(|w| w[0].0.meta.max_key < w[1].0.meta.min_key);
    let storage_columns: Vec<usize> = (0..schema.storage_schema().fields().len()).collect();
    let mut puts: Vec<RecordBatch> = Vec::new();
    let mut probe_keys: Vec<Vec<u8>> = Vec::new();
    let (mut keys, mut tombstones) = (0usize, 0usize);
    let inside_base = |key: &[u8]| {
        files
            .iter()
            .any(|(f, _)| f.meta.min_key.as_slice() <= key && key <= f.meta.max_key.as_slice())
    };
    let visible: Vec<_> = memtables
        .into_iter()
        .filter(|m| m.min_seq().is_some_and(|s| s <= read_seq))
        .collect();
    if !visible.is_empty() {
        for range in &ranges {
            let runs = visible
                .iter()
                .map(|slot| {
                    memtable_run(
                        Arc::clone(slot),
                        Arc::clone(schema),
                        range.clone(),
                        storage_columns.clone(),
                        read_seq,
                        OVERLAY_BATCH_ROWS,
                    )
                })
                .collect();
            let newest = Dedup::Retain {
                snapshots: Vec::new(),
                drop_tombstones: false,
            };
            let mut merge = MergeIter::new(runs, newest, OVERLAY_BATCH_ROWS, true);
            while let Some(batch) = merge.next_batch()? {
                let mut live: Vec<u32> = Vec::new();
                for row in 0..batch.num_rows() {
                    keys += 1;
                    let key = batch.keys.get(row);
                    if inside_base(key) {
                        probe_keys.push(key.to_vec());
                    }
                    let put = batch.op(row) == OpKind::Put;
                    index.push(key, put);
                    if put {
                        live.push(row as u32);
                    } else {
                        tombstones += 1;
                    }
                }
                if !live.is_empty() {
                    let user = batch
                        .batch
                        .project(&(0..schema.user_schema().fields().len()).collect::<Vec<_>>())?;
                    puts.push(take_record_batch(&user, &UInt32Array::from(live))?);
                }
            }
        }
    }
    // Ranges are disjoint, but need not come in key order.
    probe_keys.sort_unstable();
    probe_keys.dedup();
    let mut hidden = 0;
    if !probe_keys.is_empty()
        && let Some(resolved) = resolve_overlay(&mut files, &probe_keys)?
    {
        hidden = resolved;
        probe_keys.clear();
    }
    if schema.has_hidden_rowid() && !probe_keys.is_empty() {
        return Ok(None);
    }
    let index = (probe_keys.is_empty() && !schema.has_hidden_rowid()).then(|| {
        Arc::new(OverlayKeys {
            settled: Arc::new(index),
            recent: KeyList::default(),
        })
    });
    let files: Vec<BaseFile> = files.into_iter().map(|(file, _)| file).collect();
    let probe = if probe_keys.is_empty() {
        Probe::Empty
    } else if let [key] = schema.key_indices()
        && schema.user_schema().field(*key).data_type() == &DataType::Int64
    {
        let decoded = schema
            .key_codec()
            .decode(probe_keys.iter().map(Vec::as_slice))?;
        let mut values: Vec<i64> = decoded[0].as_primitive::<Int64Type>().values().to_vec();
        values.sort_unstable();
        values.dedup();
        Probe::Int64(values)
    } else {
        Probe::Encoded(probe_keys.into_iter().collect())
    };
    let rows = match puts.len() {
        0 => None,
        1 => puts.pop(),
        _ => Some(concat_batches(&puts[0].schema(), &puts)?),
    };
    debug_assert!(index.as_ref().is_none_or(|i| i.len() == keys));
    Ok(Some((
        BaseScan {
            files,
            disjoint,
            overlay: Overlay {
                rows: OverlayRows::settled(rows),
                probe: Arc::new(probe),
                keys,
                tombstones,
                hidden,
            },
        },
        index,
    )))
}

/// Orders ranges by where they start (disjoint ranges: by key).
fn range_start_cmp(a: &KeyRange, b: &KeyRange) -> std::cmp::Ordering {
    use std::ops::Bound::*;
    match (&a.lower, &b.lower) {
        (Unbounded, Unbounded) => std::cmp::Ordering::Equal,
        (Unbounded, _) => std::cmp::Ordering::Less,
        (_, Unbounded) => std::cmp::Ordering::Greater,
        (Included(x) | Excluded(x), Included(y) | Excluded(y)) => x.cmp(y),
    }
}

/// Brings `scan`, planned over the same files with the overlay `index`, up to date with the
/// keys `changed` (ascending, distinct, inside `ranges`) written since, whose newest versions
/// are looked up in `memtables` (newest first) at `read_seq`: their rows go to the overlay's
/// recent rows (their settled rows, if any, superseded), tombstones are counted, and the base
/// rows of keys new to the overlay are resolved through the key cache. The cost is the
/// changed and recent keys' (a binary search of the settled keys each), not the overlay's:
/// the settled keys and rows are shared, only read. The overlay is consolidated (its recent
/// keys and rows merged into new settled ones, one walk of the whole overlay) when the recent
/// keys pass a fraction of the settled ones, a smaller one for the plan refresher
/// (`by_refresher`, off the queries' path) than for a query ([`consolidation_due`]). Returns
/// the new index, or `None` (leaving `scan` unusable) when the update cannot be made (a
/// reached file's keys are not in the key cache): the caller plans afresh.
#[allow(clippy::too_many_arguments)]
pub(crate) fn update_base_scan(
    schema: &TableSchema,
    scan: &mut BaseScan,
    old: &OverlayKeys,
    handles: &[Arc<SstHandle>],
    memtables: &[Arc<MemtableSlot>],
    changed: &[&[u8]],
    read_seq: SeqNo,
    by_refresher: bool,
) -> Result<Option<OverlayKeys>> {
    debug_assert!(changed.windows(2).all(|w| w[0] < w[1]));
    debug_assert!(scan.overlay.hides_nothing());
    debug_assert_eq!(scan.overlay.rows.superseded.len() as usize, {
        let settled = &old.settled;
        old.recent
            .keys
            .iter()
            .filter(|key| settled.find(key).is_some_and(|i| settled.puts[i]))
            .count()
    });
    if changed.is_empty() {
        return Ok(Some(old.clone()));
    }
    // The newest visible version of each changed key.
    let visible: Vec<&Arc<MemtableSlot>> = memtables
        .iter()
        .filter(|m| m.min_seq().is_some_and(|s| s <= read_seq))
        .collect();
    let mut newest: Vec<bool> = Vec::with_capacity(changed.len());
    let (mut put_keys, mut put_values, mut put_seqs) = (Vec::new(), Vec::new(), Vec::new());
    for key in changed {
        let Some(entry) = visible.iter().find_map(|m| m.memtable.get(key, read_seq)) else {
            // Written at or before `read_seq` but not found: not a state to update.
            return Ok(None);
        };
        let put = entry.op == OpKind::Put;
        newest.push(put);
        if put {
            put_keys.push(*key);
            put_values.push(entry.value);
            put_seqs.push(entry.seq);
        }
    }
    // One walk of the old recent keys and the changed keys: the new recent keys, the order of
    // the recent rows (old recent rows of unchanged keys, new rows of changed puts), the
    // settled rows newly superseded, the counts, and the keys new to the overlay that may
    // hide base rows.
    let (settled, old_recent) = (&old.settled, &old.recent);
    let mut recent = KeyList::with_capacity(
        old_recent.len() + changed.len(),
        old_recent.keys.data_len() + changed.iter().map(|k| k.len()).sum::<usize>(),
    );
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(old.recent.len() + put_keys.len());
    let mut superseded: Vec<u32> = Vec::new();
    let mut reached: Vec<Vec<u8>> = Vec::new();
    let (mut old_row, mut new_row) = (0usize, 0usize);
    let mut tombstones = scan.overlay.tombstones;
    let mut keys = scan.overlay.keys;
    let (mut a, mut b) = (0usize, 0usize);
    while a < old_recent.len() || b < changed.len() {
        if b == changed.len() || (a < old_recent.len() && old_recent.keys.get(a) < changed[b]) {
            let put = old_recent.puts[a];
            recent.push(old_recent.keys.get(a), put);
            if put {
                order.push((0, old_row));
                old_row += 1;
            }
            a += 1;
            continue;
        }
        let key = changed[b];
        let before = if a < old_recent.len() && old_recent.keys.get(a) == key {
            let put = old_recent.puts[a];
            old_row += usize::from(put);
            a += 1;
            Some(put)
        } else if let Some(i) = settled.find(key) {
            let put = settled.puts[i];
            if put {
                superseded.push(settled.rows[i]);
            }
            Some(put)
        } else {
            None
        };
        let now = newest[b];
        recent.push(key, now);
        if now {
            order.push((1, new_row));
            new_row += 1;
        }
        if before == Some(false) {
            tombstones -= 1;
        }
        if !now {
            tombstones += 1;
        }
        if before.is_none() {
            keys += 1;
            if scan
                .files
                .iter()
                .any(|f| f.meta.min_key.as_slice() <= key && key <= f.meta.max_key.as_slice())
            {
                reached.push(key.to_vec());
            }
        }
        b += 1;
    }
    debug_assert_eq!(new_row, put_keys.len());
    if !reached.is_empty() {
        let mut pairs: Vec<(BaseFile, Arc<SstHandle>)> = Vec::with_capacity(scan.files.len());
        for file in &scan.files {
            let handle = handles
                .iter()
                .find(|h| h.meta().id == file.meta.id)
                .ok_or_else(|| Error::internal("a planned base file is not in the version"))?;
            pairs.push((file.clone(), Arc::clone(handle)));
        }
        let Some(hidden) = resolve_overlay(&mut pairs, &reached)? else {
            return Ok(None);
        };
        scan.overlay.hidden += hidden;
        scan.files = pairs.into_iter().map(|(file, _)| file).collect();
    }
    // The recent rows: old recent rows whose key did not change, and the new puts, in key
    // order.
    let user: Vec<usize> = (0..schema.user_schema().fields().len()).collect();
    let storage: Vec<usize> = (0..schema.storage_schema().fields().len()).collect();
    let ops = vec![OpKind::Put; put_keys.len()];
    let new_rows = schema
        .decode_entries(
            put_keys.iter().copied(),
            put_values.iter().map(Vec::as_slice),
            &put_seqs,
            &ops,
            &storage,
        )?
        .project(&user)?;
    let rows = &mut scan.overlay.rows;
    let old_rows = match rows.recent.take() {
        Some(rows) => rows,
        None => RecordBatch::new_empty(new_rows.schema()),
    };
    debug_assert_eq!(old_row, old_rows.num_rows());
    let recent_rows = arrow::compute::interleave_record_batch(&[&old_rows, &new_rows], &order)?;
    rows.recent = (recent_rows.num_rows() > 0).then_some(recent_rows);
    if !superseded.is_empty() {
        // Copied on write: other copies of the plan keep the bitmap they share.
        let all = Arc::make_mut(&mut rows.superseded);
        let before = all.len();
        all.extend(superseded.iter().copied());
        debug_assert_eq!(
            all.len(),
            before + superseded.len() as u64,
            "a settled row superseded twice"
        );
    }
    scan.overlay.tombstones = tombstones;
    scan.overlay.keys = keys;
    let index = OverlayKeys {
        settled: Arc::clone(&old.settled),
        recent,
    };
    if consolidation_due(index.settled.len(), index.recent.len(), by_refresher) {
        return consolidate_overlay(&mut scan.overlay, &index).map(Some);
    }
    debug_assert_eq!(index.len(), keys);
    Ok(Some(index))
}

/// Merges the recent keys and rows of `overlay` (whose index is `index`) into new settled ones
/// (one walk of both key lists; the rows interleaved in key order) and returns the new index.
fn consolidate_overlay(overlay: &mut Overlay, index: &OverlayKeys) -> Result<OverlayKeys> {
    let (settled, recent) = (&index.settled, &index.recent);
    let mut keys = KeyList::with_capacity(
        settled.len() + recent.len(),
        settled.keys.data_len() + recent.keys.data_len(),
    );
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(overlay.rows.num_rows());
    let (mut a, mut b, mut recent_row) = (0usize, 0usize, 0usize);
    while a < settled.len() || b < recent.len() {
        if b == recent.len() || (a < settled.len() && settled.keys.get(a) < recent.keys.get(b)) {
            let put = settled.puts[a];
            keys.push(settled.keys.get(a), put);
            if put {
                order.push((0, settled.rows[a] as usize));
            }
            a += 1;
            continue;
        }
        let (key, put) = (recent.keys.get(b), recent.puts[b]);
        if a < settled.len() && settled.keys.get(a) == key {
            a += 1;
        }
        keys.push(key, put);
        if put {
            order.push((1, recent_row));
            recent_row += 1;
        }
        b += 1;
    }
    let rows = &overlay.rows;
    let schema = match (&rows.settled, &rows.recent) {
        (Some(r), _) | (None, Some(r)) => Some(r.schema()),
        (None, None) => None,
    };
    let merged = match schema {
        None => None,
        Some(schema) => {
            let empty = RecordBatch::new_empty(schema);
            let settled_rows = rows.settled.as_ref().unwrap_or(&empty);
            let recent_rows = rows.recent.as_ref().unwrap_or(&empty);
            debug_assert_eq!(recent_row, recent_rows.num_rows());
            Some(arrow::compute::interleave_record_batch(
                &[settled_rows, recent_rows],
                &order,
            )?)
        }
    };
    overlay.rows = OverlayRows::settled(merged);
    debug_assert_eq!(keys.len(), overlay.keys);
    debug_assert_eq!(keys.puts(), overlay.rows.num_rows());
    debug_assert_eq!(keys.len() - keys.puts(), overlay.tombstones);
    Ok(OverlayKeys {
        settled: Arc::new(keys),
        recent: KeyList::default(),
    })
}

/// The exact number of live rows of `scan`, a plan for the key ranges `ranges`, whose key lies
/// in `ranges`: each base file's live rows between the ranges' bounds (`keys` holds each base
/// file's keys, in `scan.files` order) plus the overlay's live rows (all within the ranges: a
/// plan's overlay holds only keys of its ranges). `None` when the overlay was not resolved
/// against the base (an overlay key could hide a base row the files' DVs do not name).
pub(crate) fn live_rows_within(
    scan: &BaseScan,
    keys: &[Arc<FileKeys>],
    ranges: &[KeyRange],
) -> Option<u64> {
    debug_assert_eq!(keys.len(), scan.files.len());
    if !scan.overlay.hides_nothing() {
        return None;
    }
    let base: u64 = scan
        .files
        .iter()
        .zip(keys)
        .map(|(file, keys)| {
            ranges
                .iter()
                .map(|r| file.live_rows_in(keys, r))
                .sum::<u64>()
        })
        .sum();
    let overlay = scan.overlay.rows().num_rows() as u64;
    Some(base + overlay)
}

/// Adds to each base file's deleted rows the rows whose key is one of `probe` (ascending,
/// distinct overlay keys) and returns how many live rows that hid; `None` (nothing changed)
/// when the keys of some file the probe reaches are too large for the key cache.
///
/// The base holds at most one live row per key (its files' DVs are complete), so a key is
/// looked for only until a file holds it live, and the files are searched by how many live
/// rows they hold, most first: under random writes a key's live row is most likely in the
/// large, old files of the last level, and the small, recent files then see only the keys
/// rewritten since those were written (a search of every reached file for every key made
/// planning after a write cost the keys times the files).
fn resolve_overlay(
    files: &mut [(BaseFile, Arc<SstHandle>)],
    probe: &[Vec<u8>],
) -> Result<Option<u64>> {
    debug_assert!(probe.windows(2).all(|w| w[0] < w[1]));
    // The probe keys within each file's key range.
    let slices: Vec<Range<usize>> = files
        .iter()
        .map(|(f, _)| f.meta.keys_within(probe))
        .collect();
    let mut reached: Vec<usize> = (0..files.len())
        .filter(|i| !slices[*i].is_empty())
        .collect();
    if !reached.iter().all(|i| files[*i].1.keys_cacheable()) {
        return Ok(None);
    }
    reached.sort_by_key(|i| std::cmp::Reverse(files[*i].0.live_rows()));
    let mut resolved = vec![false; probe.len()];
    let mut unresolved = probe.len();
    let mut hidden = 0u64;
    for i in reached {
        if unresolved == 0 {
            break;
        }
        let (file, handle) = &mut files[i];
        let pending: Vec<(usize, &[u8])> = slices[i]
            .clone()
            .filter(|j| !resolved[*j])
            .map(|j| (j, probe[j].as_slice()))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let keys = handle.keys()?;
        let mut rows = RoaringBitmap::new();
        keys.find_live(pending, file.deleted.as_deref(), |j, found| {
            debug_assert!(!resolved[j]);
            resolved[j] = true;
            unresolved -= 1;
            rows.insert_range(found.start as u32..found.end as u32);
        });
        if rows.is_empty() {
            continue;
        }
        let before = file.live_rows();
        let mut deleted = file.deleted.as_deref().cloned().unwrap_or_default();
        deleted |= rows;
        file.deleted = Some(Arc::new(deleted));
        hidden += before - file.live_rows();
    }
    Ok(Some(hidden))
}

/// Rows per batch of the overlay merge.
const OVERLAY_BATCH_ROWS: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn base_file(rows: u64, deleted: &[u32]) -> BaseFile {
        let meta = SstMeta {
            id: 1,
            table_id: 1,
            level: 0,
            run_id: 1,
            size_bytes: 0,
            crc32c: 0,
            rows,
            tombstones: 0,
            older_versions: 0,
            min_key: Vec::new(),
            max_key: Vec::new(),
            min_seq: 0,
            max_seq: 0,
            created_at_ms: 0,
        };
        BaseFile::new(
            meta,
            (!deleted.is_empty()).then(|| Arc::new(deleted.iter().copied().collect())),
        )
    }

    /// The positions `groups` (of a file whose row groups start at `starts`) read.
    fn positions(groups: &[RowGroupRows], starts: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        for (group, w) in groups.iter().zip(starts.windows(2)) {
            match group {
                RowGroupRows::None => {}
                RowGroupRows::All => out.extend(w[0]..w[1]),
                RowGroupRows::Some(selection) => {
                    let mut at = w[0];
                    for s in selection.iter() {
                        if !s.skip {
                            out.extend(at..at + s.row_count as u64);
                        }
                        at += s.row_count as u64;
                    }
                    assert_eq!(at, w[1], "a group's selection covers the group");
                }
            }
        }
        out
    }

    /// The live rows of an overlay with recent writes: the settled rows but the superseded
    /// ones, then the recent rows, cut into batches; projection copies no row.
    #[test]
    fn overlay_rows_leave_out_superseded_settled_rows() {
        let batch = |values: &[i64]| {
            RecordBatch::try_from_iter([(
                "k",
                Arc::new(Int64Array::from(values.to_vec())) as ArrayRef,
            )])
            .unwrap()
        };
        let rows = OverlayRows {
            settled: Some(batch(&[1, 2, 3, 4, 5])),
            superseded: Arc::new(RoaringBitmap::from_iter([1u32, 3])),
            recent: Some(batch(&[2, 7])),
        };
        assert_eq!(rows.num_rows(), 5);
        let values = |batches: Vec<RecordBatch>| -> Vec<Vec<i64>> {
            batches
                .iter()
                .map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect()
        };
        assert_eq!(
            values(rows.batches(2).unwrap()),
            vec![vec![1, 3], vec![5], vec![2, 7]]
        );
        assert_eq!(
            values(rows.concat().unwrap().into_iter().collect()),
            vec![vec![1, 3, 5, 2, 7]]
        );
        let projected = rows.project(&[0]).unwrap();
        assert_eq!(projected.num_rows(), 5);
        assert!(Arc::ptr_eq(&projected.superseded, &rows.superseded));
        let empty = OverlayRows::settled(Some(batch(&[])));
        assert!(empty.is_empty() && empty.batches(8).unwrap().is_empty());
        assert!(empty.concat().unwrap().is_none());
    }

    #[test]
    fn live_rows_in_a_key_range_count_between_the_bounds_minus_deleted_rows() {
        // Keys of 8 rows: b, c (newest), c (older version, deleted), d, f, f (older, deleted),
        // g, h; row 6 (g) deleted by a newer file.
        let keys_of = ["b", "c", "c", "d", "f", "f", "g", "h"];
        let mut rows = ByteRows::with_capacity(keys_of.len(), 8);
        for k in keys_of {
            rows.push(k.as_bytes());
        }
        let keys = FileKeys::new(rows);
        let file = base_file(8, &[2, 5, 6]);
        let key = |k: &str| k.as_bytes().to_vec();
        let count = |lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>| {
            file.live_rows_in(&keys, &KeyRange { lower, upper })
        };
        assert_eq!(count(Bound::Unbounded, Bound::Unbounded), 5);
        assert_eq!(
            count(Bound::Included(key("c")), Bound::Included(key("f"))),
            3
        );
        assert_eq!(
            count(Bound::Excluded(key("c")), Bound::Included(key("f"))),
            2
        );
        assert_eq!(
            count(Bound::Included(key("c")), Bound::Excluded(key("f"))),
            2
        );
        assert_eq!(
            count(Bound::Excluded(key("b")), Bound::Excluded(key("c"))),
            0
        );
        assert_eq!(
            count(Bound::Included(key("e")), Bound::Included(key("g"))),
            1
        );
        assert_eq!(
            count(Bound::Included(key("a")), Bound::Excluded(key("b"))),
            0
        );
        assert_eq!(count(Bound::Excluded(key("h")), Bound::Unbounded), 0);
        assert_eq!(count(Bound::Included(key("h")), Bound::Unbounded), 1);
    }

    #[test]
    fn piece_row_groups_read_deleted_rows_and_skip_dead_groups() {
        // Three groups of 10 rows; rows 3 and 25 deleted, group 1 wholly deleted.
        let starts = [0u64, 10, 20, 30];
        let deleted: Vec<u32> = [3u32, 25].into_iter().chain(10..20).collect();
        let file = base_file(30, &deleted);
        assert_eq!(file.deleted_within(0..30), 12);
        assert_eq!(file.deleted_within(4..25), 10);
        assert_eq!(file.deleted_within(4..26), 11);
        let skipping = file.piece_rows(&starts, 0..30);
        let expected: Vec<u64> = (0..30)
            .filter(|p| !deleted.contains(&(*p as u32)))
            .collect();
        assert_eq!(positions(&skipping, &starts), expected);
        assert_eq!(skipping[1], RowGroupRows::None);
        // After decoding: groups 0 and 2 whole, group 1 not read at all.
        let decoding = file.piece_row_groups(&starts, 0..30);
        assert_eq!(
            decoding,
            vec![RowGroupRows::All, RowGroupRows::None, RowGroupRows::All]
        );
        // A piece cutting groups 0 and 2 reads only inside its rows, deleted rows included
        // after decoding, skipped otherwise.
        let cut = file.piece_row_groups(&starts, 2..22);
        let inside: Vec<u64> = (2..10).chain(20..22).collect();
        assert_eq!(positions(&cut, &starts), inside);
        let live: Vec<u64> = inside.into_iter().filter(|p| *p != 3).collect();
        assert_eq!(positions(&file.piece_rows(&starts, 2..22), &starts), live);
        // Nothing live in the piece: nothing read.
        let dead = file.piece_row_groups(&starts, 10..20);
        assert!(dead.iter().all(|g| *g == RowGroupRows::None));
    }

    proptest! {
        /// The merge walk keeps exactly the values a set lookup keeps, in sorted, unsorted and
        /// partly sorted batches, with NULLs.
        #[test]
        fn keep_sorted_is_set_membership(
            keys in proptest::collection::btree_set(-50i64..50, 0..30),
            mut values in proptest::collection::vec(proptest::option::of(-60i64..60), 0..80),
            sort in any::<bool>(),
        ) {
            if sort {
                values.sort();
            }
            let keys: Vec<i64> = keys.into_iter().collect();
            let column = Int64Array::from(values.clone());
            let mask = keep_sorted(&keys, &column);
            let want: Vec<bool> = values
                .iter()
                .map(|v| v.is_none_or(|v| keys.binary_search(&v).is_err()))
                .collect();
            let got: Vec<bool> = (0..mask.len()).map(|i| mask.value(i)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
