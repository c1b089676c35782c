//! The base read of a scan: SST files read directly by DataFusion's Parquet reader, with
//! their deletion vectors, under the memtable overlay. No merge runs over these files.
//!
//! The engine plans the scan ([`ReadView::base_scan`], module `strata_engine::read::plan`):
//! the *base* is the view's files overlapping the scan's key ranges, each with the positions
//! of its rows that are not live (its deletion vector, DV); the *overlay* is what the
//! memtables hold at the read sequence, merged (the newest version of each key, tombstones
//! included). The rows of the scan are the base rows whose key the overlay does not hold
//! (an anti-join on the key) plus the overlay's live rows. [`BasePlan`] maps that onto
//! DataFusion:
//!
//! * A Strata SST is a Parquet file whose first columns are the user columns, in table order
//!   (`strata_engine::schema`), of the user types (the engine plans no base scan for a table
//!   holding a type Parquet cannot store as it is). Each file is read by `ParquetSource` in a
//!   `DataSourceExec` executed inside the Strata scan, reading only the user columns the scan
//!   needs, with the scan's value filters as a pruning predicate (row groups, pages and bloom
//!   filters it proves cannot match are skipped), and an access plan per file
//!   (`ParquetAccessPlan`) reading only the row groups of the partition's slice of the file
//!   that hold a live row, cutting the first and last to the slice.
//! * The file's deleted rows (its DV, and the rows a resolved overlay hides) are read with the
//!   others and hidden **after decoding** ([`HideDeleted::AfterDecode`]): the reader adds each
//!   row's position in its file (DataFusion's `RowNumber` virtual column) and the index of the
//!   file's piece (a partition column), and each batch is filtered by the piece's bitmap.
//!   Skipping 1 % of rows scattered costs the Parquet reader 1.15-1.65 times a plain decode
//!   of a column; decoding them and filtering after costs about 1.16 for fixed-width columns
//!   (`benches/row_selection.rs`, `benches/README.md`). A table with a user column of one of
//!   the two added names has its deleted rows skipped by the reader instead (a row selection
//!   per row group, [`HideDeleted::Select`]). When the scan's residual filter cannot fail on
//!   any row ([`cannot_fail`]: comparisons of columns and literals, `AND`/`OR`/`NOT`,
//!   `IS [NOT] NULL`, `IN` lists of literals), it is evaluated on the decoded batch, hidden
//!   rows included, and one filter drops both (one copy of the surviving rows, not two). A
//!   filter that could fail (a division, a cast) runs after the hidden rows are dropped: a
//!   hidden row's values (an older version, a tombstone's NULLs) must not raise an error no
//!   live row would.
//! * When the engine resolved the overlay against the base files (their key cache), the base
//!   rows it hides are already among the files' deleted rows: no anti-join runs, no key
//!   column is read for it, and the row count is exact.
//! * When some overlay key can hide a base row ([`Overlay::hides_nothing`] is false), the key
//!   columns are read too (even when not projected) and every base batch is filtered by
//!   [`Overlay::keep_mask`] **before** the scan's residual filter: a tombstone or newer
//!   version in the overlay hides the base row even when the base row alone would match a
//!   value filter (the trap of `DESIGN.md`). Pruning cannot resurrect a row either: it only
//!   skips base rows that fail the filter, and a hidden row is not output whatever it holds.
//!   (A residual filter that cannot fail may run earlier, with the file's hidden rows: every
//!   step only drops rows, so a row is output only when it passes all of them, whatever
//!   their order.)
//! * The overlay's live rows are output once, by partition 0, before its base rows, through
//!   the same residual filter, limit and projection as the base batches.
//!
//! Invariants:
//! - Pruning never drops a row the filter would keep. Parquet statistics and bloom filters
//!   describe floats in a way that disagrees with Arrow's comparison (a total order with NaN
//!   above `+inf`, `-NaN` below `-inf`, `-0.0 < +0.0`): min/max leave NaN out and bloom
//!   filters hash the exact bits. So a filter conjunct that reads a column holding a float
//!   anywhere in its type is never part of the pruning predicate ([`pruning_filters`]); it
//!   still runs, exactly, as the residual filter.
//! - Every file's size and crc32c are verified against the manifest
//!   ([`ReadView::verified_sst_object`]) before the Parquet reader opens it.
//! - A local database's files are read by path; the files of a database on object storage
//!   through its read store (`strata_engine::storage::Storage::read_store`: ranged reads from
//!   the disk cache, else GETs, counted in the database's and the query's read counters),
//!   registered in the task's runtime under [`store_url`].
//! - The live rows of the base files (files by smallest key, rows in file order) are cut into
//!   `partitions` contiguous slices of about equal live-row counts; partition `i` reads slice
//!   `i`, so every live base row is read by exactly one partition. When the files are
//!   pairwise disjoint ([`BaseScan::disjoint`]) and the overlay adds no row, every partition
//!   is sorted by key and holds only keys below those of partition `i + 1`, and the scan
//!   declares the key ordering; otherwise it declares none (overlapping files interleave, and
//!   the overlay's rows come first): a sort above the scan costs less than a merge under it.
//! - The reader's own limit is set only when neither a residual filter, nor the anti-join, nor
//!   hiding deleted rows after decoding follows (all may drop rows after it).
//! - A batch of the reader holds rows of one file (DataFusion opens files one at a time), so
//!   its first piece index is the piece of all its rows.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, Int64Array, RecordBatch,
    RecordBatchOptions,
};
use arrow::compute::{and, filter_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetAccessPlan, ParquetRowSelection, RowGroupAccess,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema as ReaderTableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricValue,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use futures::StreamExt;
use parquet::arrow::RowNumber;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use roaring::RoaringBitmap;
use strata_engine::{
    BaseFile, BaseScan, Overlay, OverlayRows, ReadView, RowGroupRows, TableSchema,
};

use crate::session::engine_error;

/// Rows of one SST read by one partition: the file's live rows at positions `start..end`.
/// What the reader reads of each row group is asked of the engine when the partition is read
/// ([`BasePlan::verify`]), not when the query is planned: a query answered from statistics
/// never pays for it.
#[derive(Debug, Clone)]
struct Piece {
    file: BaseFile,
    start: u64,
    end: u64,
}

impl Piece {
    /// The piece of file `f` holding its rows at positions `start..end`.
    fn new(f: &BaseFile, start: u64, end: u64) -> Piece {
        debug_assert!(start <= end && end <= f.meta.rows);
        Piece {
            file: f.clone(),
            start,
            end,
        }
    }

    /// True when some row of the piece is deleted.
    fn hides_rows(&self) -> bool {
        self.file.deleted_within(self.start..self.end) > 0
    }

    /// True when the piece reads every row of its file.
    fn reads_every_row(&self) -> bool {
        self.start == 0 && self.end == self.file.meta.rows && self.file.deleted().is_none()
    }
}

/// How a scan reads its base files and overlay (see the module docs).
#[derive(Debug)]
pub struct BasePlan {
    /// The pieces of each partition, in file order.
    partitions: Vec<Vec<Piece>>,
    /// Number of base files read.
    files: usize,
    /// Rows of the base files their DVs delete.
    rows_deleted: u64,
    /// True when no two base files overlap.
    disjoint: bool,
    /// The Parquet reader's source: user schema, session options, pruning predicate. Each
    /// partition reads through a fresh copy ([`ReaderSource::parquet_source`]).
    source: ReaderSource,
    /// User columns read, in batch order.
    read_columns: Vec<usize>,
    batch_rows: usize,
    /// Pushed into the reader when no residual filter and no anti-join follows.
    limit: Option<usize>,
    /// The memtable overlay.
    overlay: Overlay,
    /// The overlay's live rows, columns `read_columns` (output by partition 0).
    overlay_rows: OverlayRows,
    /// The table's schema (the anti-join encodes keys with its codec).
    table_schema: Arc<TableSchema>,
    /// Positions in the read batch of the key columns, in primary-key order, when the
    /// overlay can hide base rows (the anti-join runs).
    key_positions: Option<Vec<usize>>,
    /// How the deleted rows of the base files are hidden.
    hide_deleted: HideDeleted,
    /// The scan's residual filter, applied by the same filter as the hidden rows when they
    /// are dropped after decoding and it cannot fail on any row ([`DeletedAfterDecode::new`]).
    residual: Option<Arc<dyn PhysicalExpr>>,
}

/// The conjuncts of `filters` that may prune by Parquet statistics, page indexes and bloom
/// filters: those that read no column whose type holds a float (see the module docs). The
/// conjuncts left out still run as the scan's residual filter.
pub fn pruning_filters(filters: &[Expr], user: &Schema) -> Vec<Expr> {
    filters
        .iter()
        .flat_map(split_conjunction)
        .filter(|conjunct| {
            conjunct.column_refs().iter().all(|column| {
                user.field_with_name(&column.name)
                    .is_ok_and(|field| !holds_float(field.data_type()))
            })
        })
        .cloned()
        .collect()
}

/// True when values of `data_type` contain a floating-point number anywhere (nested too).
fn holds_float(data_type: &DataType) -> bool {
    match data_type {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => true,
        DataType::List(field)
        | DataType::LargeList(field)
        | DataType::ListView(field)
        | DataType::LargeListView(field)
        | DataType::FixedSizeList(field, _)
        | DataType::Map(field, _) => holds_float(field.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| holds_float(f.data_type())),
        DataType::Union(fields, _) => fields.iter().any(|(_, f)| holds_float(f.data_type())),
        DataType::Dictionary(_, value) => holds_float(value),
        DataType::RunEndEncoded(_, values) => holds_float(values.data_type()),
        _ => false,
    }
}

/// The user columns a base read needs besides the projection and the residual filter's
/// columns: the key columns, when the overlay can hide base rows.
pub fn anti_join_columns(scan: &BaseScan, table_schema: &TableSchema) -> Vec<usize> {
    if scan.overlay.hides_nothing() {
        Vec::new()
    } else {
        table_schema.key_indices().to_vec()
    }
}

/// The arguments of [`BasePlan::new`] that come from the scan plan.
pub struct BaseRead<'a> {
    /// The table's user schema.
    pub user: SchemaRef,
    /// The table's schema.
    pub table_schema: Arc<TableSchema>,
    /// User columns read, in batch order (including [`anti_join_columns`]).
    pub read_columns: &'a [usize],
    /// The scan's filters over the user schema (pruning only).
    pub predicate: Option<Arc<dyn PhysicalExpr>>,
    /// The session's Parquet read options.
    pub parquet: TableParquetOptions,
    /// Number of partitions of the scan.
    pub partitions: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Rows each partition needs at most, when no residual filter follows.
    pub limit: Option<usize>,
    /// The scan's residual filter over the read columns (applied with the hidden rows when
    /// it cannot fail, [`cannot_fail`]).
    pub residual: Option<Arc<dyn PhysicalExpr>>,
}

/// The first position of file `f` that `live` of its live rows precede: a piece of the file
/// starting there begins with its live row number `live` (for `live` equal to the number of
/// live rows, the position after the last live row). A binary search over the ranks of its
/// deleted rows.
pub(crate) fn position_of_live(f: &BaseFile, live: u64) -> u64 {
    debug_assert!(live <= f.live_rows());
    let Some(deleted) = f.deleted() else {
        return live;
    };
    // Live rows before position `p`.
    let live_before = |p: u64| match p.checked_sub(1) {
        None => 0,
        Some(last) => p - deleted.rank(u32::try_from(last).unwrap_or(u32::MAX)),
    };
    let (mut lo, mut hi) = (0u64, f.meta.rows);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if live_before(mid) < live {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

impl BasePlan {
    /// Plans the base read of `scan`.
    pub fn new(scan: BaseScan, read: BaseRead<'_>) -> Result<Self> {
        let partitions = read.partitions.max(1);
        let total: u64 = scan.base_live_rows();
        // Partition `p` reads the live rows `bound(p)..bound(p + 1)` (files in order).
        let bound =
            |p: usize| -> u64 { (u128::from(total) * p as u128 / partitions as u128) as u64 };
        let mut groups: Vec<Vec<Piece>> = vec![Vec::new(); partitions];
        let mut first_live = 0u64;
        for f in &scan.files {
            let live = f.live_rows();
            for (p, group) in groups.iter_mut().enumerate() {
                let (lo, hi) = (
                    first_live.max(bound(p)),
                    (first_live + live).min(bound(p + 1)),
                );
                if lo >= hi {
                    continue;
                }
                let start = position_of_live(f, lo - first_live);
                let end = position_of_live(f, hi - first_live);
                group.push(Piece::new(f, start, end));
            }
            first_live += live;
        }
        debug_assert_eq!(first_live, total);
        let hide_deleted = if row_number_columns_taken(&read.user) {
            // The added columns' names are taken: the reader skips the deleted rows.
            HideDeleted::Select
        } else {
            HideDeleted::AfterDecode
        };
        let source = ReaderSource {
            user: read.user,
            parquet: read.parquet,
            predicate: read.predicate,
        };
        let key_positions = if scan.overlay.hides_nothing() {
            None
        } else {
            let positions = read
                .table_schema
                .key_indices()
                .iter()
                .map(|k| {
                    read.read_columns
                        .iter()
                        .position(|c| c == k)
                        .ok_or_else(|| {
                            DataFusionError::Internal(format!(
                                "key column {k} is not read by a base scan with an overlay"
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            Some(positions)
        };
        let overlay_rows = scan
            .overlay
            .rows()
            .project(read.read_columns)
            .map_err(engine_error)?;
        let limit = if key_positions.is_none() {
            read.limit
        } else {
            None
        };
        Ok(BasePlan {
            partitions: groups,
            files: scan.files.len(),
            rows_deleted: scan
                .files
                .iter()
                .map(|f| f.meta.rows - f.live_rows())
                .sum::<u64>()
                - scan.overlay.hidden_base_rows(),
            disjoint: scan.disjoint,
            source,
            read_columns: read.read_columns.to_vec(),
            batch_rows: read.batch_rows,
            limit,
            overlay: scan.overlay,
            overlay_rows,
            table_schema: read.table_schema,
            key_positions,
            hide_deleted,
            residual: read.residual,
        })
    }

    /// Number of base files read directly.
    pub fn files(&self) -> usize {
        self.files
    }

    /// Rows of the base files their deletion vectors delete (not counting the rows the
    /// resolved overlay hides, [`Overlay::hidden_base_rows`]).
    pub fn rows_deleted(&self) -> u64 {
        self.rows_deleted
    }

    /// True when no two base files overlap.
    pub fn disjoint(&self) -> bool {
        self.disjoint
    }

    /// The memtable overlay.
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// True when the overlay adds rows to the scan.
    pub fn overlay_adds_rows(&self) -> bool {
        !self.overlay.rows().is_empty()
    }

    /// True when the anti-join runs (some overlay key can hide a base row).
    pub fn anti_join(&self) -> bool {
        self.key_positions.is_some()
    }

    /// The overlay rows `partition` outputs (columns `read_columns`), in batches of at most
    /// `batch_rows` rows: all of them for partition 0, none for the others.
    pub fn overlay_batches(&self, partition: usize) -> Result<Vec<RecordBatch>> {
        if partition != 0 {
            return Ok(Vec::new());
        }
        self.overlay_rows
            .batches(self.batch_rows)
            .map_err(engine_error)
    }

    /// The base rows of `batch` (columns `read_columns`) the overlay does not hide, and how
    /// many it hid.
    pub fn anti_join_batch(&self, batch: RecordBatch) -> Result<(RecordBatch, usize)> {
        let Some(positions) = &self.key_positions else {
            return Ok((batch, 0));
        };
        let keys: Vec<ArrayRef> = positions
            .iter()
            .map(|p| Arc::clone(batch.column(*p)))
            .collect();
        let keep: BooleanArray = self
            .overlay
            .keep_mask(&self.table_schema, &keys)
            .map_err(engine_error)?;
        let hidden = keep.len() - keep.true_count();
        if hidden == 0 {
            return Ok((batch, 0));
        }
        Ok((filter_record_batch(&batch, &keep)?, hidden))
    }

    /// Verifies the files of `partition` against the manifest and returns where the Parquet
    /// reader reads them and which rows of each row group (blocking: the first verification
    /// of a file in the process reads it whole).
    pub fn verify(&self, view: &ReadView, partition: usize) -> Result<VerifiedFiles> {
        let storage = view.storage();
        let remote = storage.is_remote();
        let mut verified = VerifiedFiles {
            url: ObjectStoreUrl::local_filesystem(),
            store: None,
            locations: Vec::new(),
            access: Vec::new(),
        };
        let Some(pieces) = self.partitions.get(partition) else {
            return Ok(verified);
        };
        if remote && !pieces.is_empty() {
            verified.url = store_url(&view.database_location())?;
            verified.store = Some(storage.read_store());
        }
        for piece in pieces {
            let (object, _) = view
                .verified_sst_object(piece.file.meta.id)
                .map_err(engine_error)?;
            let location = if remote {
                object_store::path::Path::from(object.as_str())
            } else {
                // A database opened by a relative path has relative SST paths; the object
                // store needs them absolute (resolved against the working directory, as every
                // other file access of the engine is).
                let path = storage.local_path(&object);
                std::path::absolute(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|absolute| {
                        object_store::path::Path::from_absolute_path(absolute)
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| {
                        DataFusionError::Execution(format!("SST path {}: {e}", path.display()))
                    })?
            };
            verified.locations.push(location);
            verified.access.push(if piece.reads_every_row() {
                None
            } else {
                let rows = piece.start..piece.end;
                let groups = match self.hide_deleted {
                    HideDeleted::Select => view.piece_rows(&piece.file, rows),
                    HideDeleted::AfterDecode => view.piece_row_groups(&piece.file, rows),
                };
                Some(access_plan(groups.map_err(engine_error)?))
            });
        }
        Ok(verified)
    }

    /// The base batches of `partition` (user columns `read_columns`), reading the files
    /// `verified` (from [`Self::verify`] for the same partition), and the reader's plan (its
    /// metrics, such as `bytes_scanned`, are complete once the stream ends). The files of a
    /// database on object storage are read through its read store
    /// (`strata_engine::storage::Storage::read_store`: the disk cache), registered in the
    /// task's runtime under [`store_url`]. When the batches come out of the residual filter
    /// already ([`BaseReader::filtered`]), the rows it removed are added to `rows_filtered`.
    pub fn execute(
        &self,
        partition: usize,
        verified: &VerifiedFiles,
        context: Arc<TaskContext>,
        rows_filtered: &Count,
    ) -> Result<BaseReader> {
        let pieces = self.partitions.get(partition).cloned().unwrap_or_default();
        if verified.locations.len() != pieces.len() {
            return Err(DataFusionError::Internal(format!(
                "{} SST files verified for the {} files of partition {partition}",
                verified.locations.len(),
                pieces.len()
            )));
        }
        if let Some(store) = &verified.store {
            context
                .runtime_env()
                .register_object_store(verified.url.as_ref(), Arc::clone(store));
        }
        // Deleted rows hidden after decoding: each file tagged with its piece's index (a
        // partition column) and read with its row numbers (a virtual column).
        // Each piece's deleted rows when some lie inside it.
        let hidden: Vec<Option<Arc<RoaringBitmap>>> = pieces
            .iter()
            .map(|p| p.file.deleted().cloned().filter(|_| p.hides_rows()))
            .collect();
        let after_decode =
            self.hide_deleted == HideDeleted::AfterDecode && hidden.iter().any(Option::is_some);
        let mut files = Vec::with_capacity(pieces.len());
        for (index, ((piece, location), access)) in pieces
            .iter()
            .zip(&verified.locations)
            .zip(&verified.access)
            .enumerate()
        {
            let mut file = PartitionedFile::new(location.to_string(), piece.file.meta.size_bytes);
            file.object_meta.location = location.clone();
            file = with_content_identity(file, piece.file.meta.crc32c);
            if after_decode {
                file = file.with_partition_values(vec![ScalarValue::UInt32(Some(index as u32))]);
            }
            files.push(match access {
                None => file,
                Some(access) => file.with_extension(access.clone()),
            });
        }
        let mut projection = self.read_columns.clone();
        let source = if after_decode {
            let user = self.source.user.fields().len();
            projection.extend([user, user + 1]);
            self.source.parquet_source_with_row_numbers()
        } else {
            self.source.parquet_source()
        };
        let source = with_metadata_cache(source, &verified.url, &context)?;
        let config = FileScanConfigBuilder::new(verified.url.clone(), Arc::new(source))
            .with_file_group(FileGroup::new(files))
            .with_projection_indices(Some(projection))?
            .with_batch_size(Some(self.batch_rows))
            // Rows hidden after decoding do not count against the reader's limit.
            .with_limit(if after_decode { None } else { self.limit })
            .build();
        let exec = DataSourceExec::from_data_source(config);
        let stream = exec.execute(0, context)?;
        if !after_decode {
            return Ok(BaseReader {
                exec,
                stream,
                filtered: false,
            });
        }
        let hide = DeletedAfterDecode::new(hidden, self.residual.as_ref(), rows_filtered);
        let filtered = hide.filters();
        let schema = Arc::new(self.source.user.project(&self.read_columns)?);
        Ok(BaseReader {
            exec,
            stream: hide.stream(stream, schema),
            filtered,
        })
    }
}

/// `source` reading through DataFusion's cached reader factory: each file's footer and page
/// index are parsed once and kept in the runtime's metadata cache (bounded by
/// `datafusion.runtime.metadata_cache_limit`), as DataFusion keeps those of its own tables.
/// Its files must carry their content identity ([`with_content_identity`]).
pub(crate) fn with_metadata_cache(
    source: ParquetSource,
    url: &ObjectStoreUrl,
    context: &TaskContext,
) -> Result<ParquetSource> {
    let runtime = context.runtime_env();
    let factory = CachedParquetFileReaderFactory::new(
        runtime.object_store(url)?,
        runtime.cache_manager.get_file_metadata_cache(),
    );
    Ok(source.with_parquet_file_reader_factory(Arc::new(factory)))
}

/// `file` (an SST whose whole-file crc32c is `crc32c`, from the manifest) marked with its
/// content for DataFusion's metadata cache. The cache keys a file's footer by its path alone
/// and trusts the entry while the size and last-modified time it was read with match; an SST
/// is never rewritten, so its crc32c stands in for the time (seconds after the epoch). Two
/// files at one path (the same relative path in two databases a worker serves) then share an
/// entry only when their sizes and crc32c agree.
pub(crate) fn with_content_identity(mut file: PartitionedFile, crc32c: u32) -> PartitionedFile {
    file.object_meta.last_modified =
        (std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(crc32c))).into();
    file
}

/// A partition's Parquet read ([`BasePlan::execute`]).
pub struct BaseReader {
    /// The reader's plan: its metrics (such as `bytes_scanned`) are complete once the stream
    /// ends.
    pub exec: Arc<DataSourceExec>,
    /// The base batches, columns `read_columns`.
    pub stream: SendableRecordBatchStream,
    /// True when the batches passed the scan's residual filter already (it was applied with
    /// the hidden rows, [`cannot_fail`]).
    pub filtered: bool,
}

/// True when evaluating `expr` cannot fail whatever a row holds: columns, literals,
/// comparisons and `IS [NOT] DISTINCT FROM` of those, `AND`, `OR`, `NOT`, `IS [NOT] NULL` and
/// `IN` lists of literals. Such a filter may be evaluated on rows that are then dropped (the
/// hidden rows of a base file): no value of theirs can raise an error no live row would.
/// Arithmetic (division by zero, overflow), casts and functions may fail on one value, so a
/// filter holding them is never evaluated on hidden rows.
pub(crate) fn cannot_fail(expr: &Arc<dyn PhysicalExpr>) -> bool {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{
        BinaryExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, Literal, NotExpr,
    };
    if expr.is::<Column>() || expr.is::<Literal>() {
        return true;
    }
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        let safe_operator = matches!(
            binary.op(),
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom
                | Operator::And
                | Operator::Or
        );
        return safe_operator && cannot_fail(binary.left()) && cannot_fail(binary.right());
    }
    if let Some(not) = expr.downcast_ref::<NotExpr>() {
        return cannot_fail(not.arg());
    }
    if let Some(is_null) = expr.downcast_ref::<IsNullExpr>() {
        return cannot_fail(is_null.arg());
    }
    if let Some(is_not_null) = expr.downcast_ref::<IsNotNullExpr>() {
        return cannot_fail(is_not_null.arg());
    }
    if let Some(in_list) = expr.downcast_ref::<InListExpr>() {
        return cannot_fail(in_list.expr()) && in_list.list().iter().all(|e| e.is::<Literal>());
    }
    false
}

/// The name of the partition column a scan hiding deleted rows after decoding tags each file
/// with (its piece's index in the partition).
const PIECE_COLUMN: &str = "__strata_piece";
/// The name of the virtual column of row numbers (positions in the file) it reads.
const ROW_NUMBER_COLUMN: &str = "__strata_row";

/// Hides the deleted rows of a partition's files in the batches its Parquet reader decoded
/// them in, by their row numbers (see [`HideDeleted::AfterDecode`]).
pub(crate) struct DeletedAfterDecode {
    /// Each piece's deleted rows (`None`: none inside the piece), by piece index (the value
    /// of [`PIECE_COLUMN`] its file was given).
    deleted: Vec<Option<Arc<RoaringBitmap>>>,
    /// The residual filter dropped with the hidden rows (one filter for both).
    filter: Option<FusedFilter>,
}

/// A residual filter that cannot fail ([`cannot_fail`]), applied by [`DeletedAfterDecode`].
struct FusedFilter {
    /// The filter over the read columns.
    predicate: Arc<dyn PhysicalExpr>,
    /// Counts the live rows it removes.
    rows_filtered: Count,
}

impl DeletedAfterDecode {
    /// Hides each piece's `deleted` rows; the scan's `residual` filter (over the read
    /// columns) is applied with them when it cannot fail on any row ([`cannot_fail`]),
    /// counting the live rows it removes in `rows_filtered`, and is left to the caller
    /// otherwise ([`Self::filters`]).
    pub(crate) fn new(
        deleted: Vec<Option<Arc<RoaringBitmap>>>,
        residual: Option<&Arc<dyn PhysicalExpr>>,
        rows_filtered: &Count,
    ) -> Self {
        let filter = residual
            .filter(|predicate| cannot_fail(predicate))
            .map(|predicate| FusedFilter {
                predicate: Arc::clone(predicate),
                rows_filtered: rows_filtered.clone(),
            });
        DeletedAfterDecode { deleted, filter }
    }

    /// True when its batches come out of the residual filter already.
    pub(crate) fn filters(&self) -> bool {
        self.filter.is_some()
    }

    /// `stream` (batches of a reader from [`parquet_source_with_row_numbers`], projected to
    /// the read columns then the two added ones) without the deleted rows and the added
    /// columns; `schema` is the read columns'.
    pub(crate) fn stream(
        self,
        stream: SendableRecordBatchStream,
        schema: SchemaRef,
    ) -> SendableRecordBatchStream {
        let output = Arc::clone(&schema);
        let stream = stream.map(move |batch| batch.and_then(|batch| self.hide(batch, &output)));
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }

    /// `batch` (the read columns, then the piece index and the row numbers) without the rows
    /// its file deletes and without the two added columns, in `schema` (the read columns as
    /// the table declares them: a live row's NULL in a NOT NULL column is an error).
    fn hide(&self, batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        let n = batch.num_columns();
        debug_assert!(n >= 2);
        debug_assert_eq!(n - 2, schema.fields().len());
        let live = self.live_rows(&batch)?;
        let mut user = batch.project(&(0..n - 2).collect::<Vec<_>>())?;
        let keep = match &self.filter {
            None => live,
            Some(filter) => {
                let matches = filter
                    .predicate
                    .evaluate(&user)?
                    .into_array(user.num_rows())?;
                let matches = matches.as_boolean_opt().ok_or_else(|| {
                    DataFusionError::Internal("a residual filter gave no booleans".into())
                })?;
                let keep = match &live {
                    Some(live) => and(live, matches)?,
                    None => matches.clone(),
                };
                let live_rows = live.as_ref().map_or(user.num_rows(), |l| l.true_count());
                filter.rows_filtered.add(live_rows - keep.true_count());
                Some(keep)
            }
        };
        if let Some(keep) = keep {
            user = filter_record_batch(&user, &keep)?;
        }
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(schema),
            user.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(user.num_rows())),
        )?)
    }

    /// Which rows of `batch` (see [`Self::hide`]) are live (`None`: all of them).
    fn live_rows(&self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        let n = batch.num_columns();
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let pieces = batch.column(n - 2);
        let piece = match ScalarValue::try_from_array(pieces, 0)? {
            ScalarValue::UInt32(Some(piece)) => piece as usize,
            other => {
                return Err(DataFusionError::Internal(format!(
                    "a base file's piece index reads {other:?}"
                )));
            }
        };
        let last = ScalarValue::try_from_array(pieces, batch.num_rows() - 1)?;
        if last != ScalarValue::UInt32(Some(piece as u32)) {
            return Err(DataFusionError::Internal(format!(
                "a batch of the Parquet reader holds rows of pieces {piece} and {last:?}"
            )));
        }
        let Some(deleted) = self.deleted.get(piece).ok_or_else(|| {
            DataFusionError::Internal(format!("a batch of piece {piece}, which is not read"))
        })?
        else {
            return Ok(None);
        };
        let rows = batch
            .column(n - 1)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| {
                DataFusionError::Internal("a base file's row numbers are not Int64".into())
            })?;
        let keep = live_mask(deleted, rows);
        Ok((keep.true_count() < keep.len()).then_some(keep))
    }
}

/// True for the rows whose number `rows` holds that `deleted` does not. Rows read in order
/// without a gap (the usual batch) take one pass over the deleted rows among them.
fn live_mask(deleted: &RoaringBitmap, rows: &Int64Array) -> BooleanArray {
    let len = rows.len();
    debug_assert!(len > 0);
    let position = |i: usize| u32::try_from(rows.value(i)).unwrap_or(u32::MAX);
    let (first, last) = (position(0), position(len - 1));
    if rows.null_count() == 0 && u64::from(last) + 1 == u64::from(first) + len as u64 {
        let mut keep = BooleanBufferBuilder::new(len);
        let mut at = first;
        for p in deleted.range(first..=last) {
            keep.append_n((p - at) as usize, true);
            keep.append(false);
            at = p + 1;
        }
        keep.append_n((u64::from(last) + 1 - u64::from(at)) as usize, true);
        debug_assert_eq!(keep.len(), len);
        return BooleanArray::new(keep.finish(), None);
    }
    (0..len)
        .map(|i| Some(rows.is_valid(i) && !deleted.contains(position(i))))
        .collect()
}

/// How a scan hides the deleted rows of its base files (their DVs, and the rows the overlay
/// hides when the plan resolved it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HideDeleted {
    /// The reader skips them: a row selection per row group. Its skips between runs of a
    /// column cost the reader about 1.15-1.65 times the plain decode at 1 % of rows
    /// scattered (`benches/row_selection.rs`).
    Select,
    /// The reader decodes them with the live rows and each batch is filtered after decoding,
    /// by the row numbers the reader adds (a virtual column): about 1.16 times the plain
    /// decode for fixed-width columns at 1 % of rows scattered.
    AfterDecode,
}

/// What a partition's Parquet reader is made of. A `ParquetSource` is not cloned from one
/// partition to the next: its clones share one metrics set, so each partition's reader would
/// report (and the scan add up) the bytes and pruning counts of every partition read so far.
#[derive(Debug)]
struct ReaderSource {
    user: SchemaRef,
    parquet: TableParquetOptions,
    predicate: Option<Arc<dyn PhysicalExpr>>,
}

impl ReaderSource {
    /// A new source, with metrics of its own.
    fn parquet_source(&self) -> ParquetSource {
        parquet_source(&self.user, self.parquet.clone(), self.predicate.as_ref())
    }

    /// A new source reading the row numbers and piece indexes too
    /// ([`parquet_source_with_row_numbers`]), with metrics of its own.
    fn parquet_source_with_row_numbers(&self) -> ParquetSource {
        parquet_source_with_row_numbers(&self.user, self.parquet.clone(), self.predicate.as_ref())
    }
}

/// [`parquet_source`] whose table schema adds, after the user columns, the piece index
/// ([`PIECE_COLUMN`], a partition column each file gets its value of) and the row numbers
/// ([`ROW_NUMBER_COLUMN`], a virtual column): what hiding deleted rows after decoding reads
/// ([`DeletedAfterDecode`]).
pub(crate) fn parquet_source_with_row_numbers(
    user: &SchemaRef,
    parquet: TableParquetOptions,
    predicate: Option<&Arc<dyn PhysicalExpr>>,
) -> ParquetSource {
    // Every user column nullable: the reader decodes the hidden rows too, and a tombstone's
    // value columns are NULL whatever the table declares (its live rows are checked against
    // the declared schema after they are dropped, `DeletedAfterDecode::hide`).
    let decoded = Schema::new(
        user.fields()
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect::<Vec<_>>(),
    )
    .with_metadata(user.metadata().clone());
    let schema = ReaderTableSchema::builder(Arc::new(decoded))
        .with_table_partition_cols(vec![Arc::new(Field::new(
            PIECE_COLUMN,
            DataType::UInt32,
            false,
        ))])
        .with_virtual_columns(vec![Arc::new(
            Field::new(ROW_NUMBER_COLUMN, DataType::Int64, true).with_extension_type(RowNumber),
        )])
        .build();
    let source = ParquetSource::new(schema).with_table_parquet_options(parquet);
    match predicate {
        Some(predicate) => source.with_predicate(Arc::clone(predicate)),
        None => source,
    }
}

/// True when a user column of `user` has the name of a column hiding deleted rows after
/// decoding adds: the reader must skip them instead.
pub(crate) fn row_number_columns_taken(user: &Schema) -> bool {
    user.fields()
        .iter()
        .any(|f| f.name() == PIECE_COLUMN || f.name() == ROW_NUMBER_COLUMN)
}

/// A Parquet reader's source over files of the user schema `user`, read with the session's
/// `parquet` options and pruned by `predicate`; made anew for each partition read (here and by
/// workers, `crate::distributed`), so its metrics are that partition's alone.
pub(crate) fn parquet_source(
    user: &SchemaRef,
    parquet: TableParquetOptions,
    predicate: Option<&Arc<dyn PhysicalExpr>>,
) -> ParquetSource {
    let source = ParquetSource::new(Arc::clone(user)).with_table_parquet_options(parquet);
    match predicate {
        Some(predicate) => source.with_predicate(Arc::clone(predicate)),
        None => source,
    }
}

/// The verified files of one partition and where the Parquet reader reads them.
#[derive(Debug)]
pub struct VerifiedFiles {
    /// The object store URL the files are read under (the local file system, or
    /// [`store_url`] of the database).
    url: ObjectStoreUrl,
    /// The store to register under `url` (`None`: the local file system, always there).
    store: Option<Arc<dyn object_store::ObjectStore>>,
    /// Each file's location in that store, in piece order.
    locations: Vec<object_store::path::Path>,
    /// What the reader reads of each file's row groups, in piece order (`None`: every row).
    access: Vec<Option<ParquetAccessPlan>>,
}

impl VerifiedFiles {
    /// True when the partition reads no file.
    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }
}

/// The object-store URL a database's storage is registered under in a runtime (its location:
/// a directory or an object-store URL).
pub fn store_url(location: &str) -> Result<ObjectStoreUrl> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    location.hash(&mut hasher);
    ObjectStoreUrl::parse(format!("strata-db://{:016x}", hasher.finish()))
}

/// The Parquet reader's pruning metrics worth showing in `EXPLAIN ANALYZE` of a Strata scan
/// (row groups pruned by statistics and bloom filters, pages and rows pruned by the page
/// index), under DataFusion's own names.
const READER_PRUNING_METRICS: &[&str] = &[
    "files_ranges_pruned_statistics",
    "row_groups_pruned_statistics",
    "row_groups_pruned_bloom_filter",
    "page_index_pages_pruned",
    "page_index_rows_pruned",
];

/// Adds the pruning metrics of a finished reader (`reader`) to the scan's metrics, under
/// `partition`.
pub fn copy_reader_metrics(
    reader: &DataSourceExec,
    metrics: &ExecutionPlanMetricsSet,
    partition: usize,
) {
    let Some(inner) = reader.metrics() else {
        return;
    };
    for name in READER_PRUNING_METRICS {
        let (mut pruned, mut matched) = (0usize, 0usize);
        for metric in inner.iter() {
            if let MetricValue::PruningMetrics {
                name: n,
                pruning_metrics,
            } = metric.value()
                && n == name
            {
                pruned += pruning_metrics.pruned();
                matched += pruning_metrics.matched();
            }
        }
        let copy = MetricBuilder::new(metrics).pruning_metrics(*name, partition);
        copy.add_pruned(pruned);
        copy.add_matched(matched);
    }
}

/// The Parquet reader's access plan for the row groups of a piece, as the engine gives them
/// ([`ReadView::piece_rows`]): a group with no row to read is skipped, not opened.
fn access_plan(groups: Vec<RowGroupRows>) -> ParquetAccessPlan {
    ParquetAccessPlan::new(
        groups
            .into_iter()
            .map(|group| match group {
                RowGroupRows::None => RowGroupAccess::Skip,
                RowGroupRows::All => RowGroupAccess::Scan,
                RowGroupRows::Some(selection) => RowGroupAccess::Selection(selection),
            })
            .collect(),
    )
}

/// `file` read with the row selection `runs` (`(live, length)` runs covering the file, as the
/// engine's plan gives them: [`BaseFile::selection`]).
pub(crate) fn with_row_selection(file: PartitionedFile, runs: &[(bool, u64)]) -> PartitionedFile {
    let selectors: Vec<RowSelector> = runs
        .iter()
        .map(|(live, len)| {
            if *live {
                RowSelector::select(*len as usize)
            } else {
                RowSelector::skip(*len as usize)
            }
        })
        .collect();
    file.with_extension(ParquetRowSelection::new(RowSelection::from(selectors)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use strata_engine::{BaseFile, RowGroupRows, SstMeta};

    use super::{Piece, cannot_fail, live_mask, position_of_live, with_content_identity};

    /// Two SSTs at one path and of one size (two databases a worker serves) are told apart by
    /// the metadata cache through their crc32c; one file is always the same.
    #[test]
    fn files_are_told_apart_by_content_in_the_metadata_cache() {
        use datafusion::datasource::listing::PartitionedFile;
        let file = |crc| with_content_identity(PartitionedFile::new("sst/1/5.parquet", 4096), crc);
        let (a, b) = (file(7), file(8));
        assert_eq!(a.object_meta.location, b.object_meta.location);
        assert_eq!(a.object_meta.size, b.object_meta.size);
        assert_ne!(a.object_meta.last_modified, b.object_meta.last_modified);
        assert_eq!(
            a.object_meta.last_modified,
            file(7).object_meta.last_modified
        );
        assert_ne!(
            file(0).object_meta.last_modified,
            file(u32::MAX).object_meta.last_modified
        );
    }

    #[test]
    fn only_filters_that_cannot_fail_run_on_hidden_rows() {
        use arrow::datatypes::{DataType, Field, Schema};
        use datafusion::common::DFSchema;
        use datafusion::logical_expr::{Operator, binary_expr};
        use datafusion::prelude::{Expr, SessionContext, cast, col, lit, not};

        let schema = Schema::new(vec![
            Field::new("v", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        let schema = DFSchema::try_from(schema).unwrap();
        let state = SessionContext::new().state();
        let physical = |e: &Expr| state.create_physical_expr(e.clone(), &schema).unwrap();
        for (filter, safe) in [
            (col("v").gt(lit(5i64)).and(col("s").eq(lit("a"))), true),
            (
                col("v")
                    .is_null()
                    .or(col("v").in_list(vec![lit(1i64), lit(2i64)], true)),
                true,
            ),
            (
                not(col("v").lt_eq(lit(3i64))).or(col("s").is_not_null()),
                true,
            ),
            (
                binary_expr(col("v"), Operator::IsDistinctFrom, lit(4i64)),
                true,
            ),
            ((lit(10i64) / col("v")).gt(lit(1i64)), false),
            ((col("v") + lit(1i64)).gt(lit(1i64)), false),
            (cast(col("s"), DataType::Int64).gt(lit(1i64)), false),
            (col("v").in_list(vec![lit(1i64) / col("v")], false), false),
            (
                col("v")
                    .gt(lit(1i64))
                    .and(lit(1i64).eq(lit(1i64) % col("v"))),
                false,
            ),
        ] {
            assert_eq!(cannot_fail(&physical(&filter)), safe, "{filter}");
        }
    }

    fn file(rows: u64, deleted: &[u32]) -> BaseFile {
        BaseFile::new(
            SstMeta {
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
            },
            (!deleted.is_empty()).then(|| Arc::new(deleted.iter().copied().collect())),
        )
    }

    #[test]
    fn live_mask_keeps_the_rows_not_deleted() {
        let deleted: roaring::RoaringBitmap = [3u32, 4, 9, 20].into_iter().collect();
        let mask = |rows: Vec<i64>| {
            let m = live_mask(&deleted, &arrow::array::Int64Array::from(rows));
            (0..m.len()).map(|i| m.value(i)).collect::<Vec<_>>()
        };
        // Contiguous rows: one pass over the deleted rows among them.
        assert_eq!(
            mask((2..11).collect()),
            vec![true, false, false, true, true, true, true, false, true]
        );
        assert_eq!(mask(vec![0]), vec![true]);
        assert_eq!(mask(vec![20]), vec![false]);
        // Rows with gaps (pages pruned inside the batch): looked up one by one.
        assert_eq!(
            mask(vec![1, 3, 8, 9, 20, 21]),
            vec![true, false, true, false, false, true]
        );
    }

    #[test]
    fn live_row_numbers_map_to_file_positions() {
        // Rows 0..10 of a file; rows 3, 4 and 9 deleted.
        let f = file(10, &[3, 4, 9]);
        let positions: Vec<u64> = (0..=7).map(|live| position_of_live(&f, live)).collect();
        assert_eq!(positions, vec![0, 1, 2, 3, 6, 7, 8, 9]);
        // A file whose first rows are deleted.
        let f = file(10, &[0, 1, 2, 3]);
        assert_eq!(position_of_live(&f, 0), 0);
        assert_eq!(position_of_live(&f, 5), 9);
        assert_eq!(position_of_live(&f, 6), 10);
        // No live row at all.
        let f = file(10, &(0..10).collect::<Vec<_>>());
        assert_eq!(position_of_live(&f, 0), 0);
    }

    proptest! {
        /// Pieces cut at the positions of evenly spaced live row numbers read every live row
        /// of the file exactly once, each piece the live rows it was cut for, whatever the
        /// file's row groups (the groups a piece reads whole come from the file's kept
        /// selections, those it cuts are made for it).
        #[test]
        fn pieces_read_every_live_row_once(
            rows in 0u64..300,
            deleted in proptest::collection::btree_set(0u32..300, 0..120),
            parts in 1u64..5,
            group_rows in 1u64..80,
        ) {
            let deleted: Vec<u32> = deleted.into_iter().filter(|p| u64::from(*p) < rows).collect();
            let f = file(rows, &deleted);
            let mut starts: Vec<u64> = (0..rows).step_by(group_rows as usize).collect();
            starts.push(rows);
            let live = f.live_rows();
            let mut seen = BTreeSet::new();
            for part in 0..parts {
                let (lo, hi) = (live * part / parts, live * (part + 1) / parts);
                let piece = Piece::new(&f, position_of_live(&f, lo), position_of_live(&f, hi));
                let groups = piece.file.piece_rows(&starts, piece.start..piece.end);
                prop_assert_eq!(groups.len() + 1, starts.len());
                let mut selected = Vec::new();
                for (group, w) in groups.iter().zip(starts.windows(2)) {
                    match group {
                        RowGroupRows::None => {}
                        RowGroupRows::All => selected.extend(w[0]..w[1]),
                        RowGroupRows::Some(selection) => {
                            let mut at = w[0];
                            for s in selection.iter() {
                                if !s.skip {
                                    selected.extend(at..at + s.row_count as u64);
                                }
                                at += s.row_count as u64;
                            }
                            prop_assert_eq!(at, w[1]);
                        }
                    }
                }
                if piece.reads_every_row() {
                    prop_assert_eq!(selected.len() as u64, rows);
                }
                prop_assert_eq!(selected.len() as u64, hi - lo);
                for position in selected {
                    prop_assert!(!deleted.contains(&(position as u32)));
                    prop_assert!(seen.insert(position), "row {} read twice", position);
                }
            }
            prop_assert_eq!(seen.len() as u64, live);
        }
    }
}
