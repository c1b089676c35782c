//! Direct Parquet reads of a scan whose files need no merge.
//!
//! A Strata SST is a Parquet file whose first columns are the user columns, in table order
//! (`strata_engine::schema`), of the user types unless the table holds a type Parquet cannot
//! store as it is (then the engine's reader maps it back and no direct read is planned). When the pinned view of an unrestricted scan (no key ranges)
//! has nothing visible in its memtables and every visible file is *exclusive and clean* —
//! no tombstones, one version per key ([`SstMeta::is_clean`]), every row visible at the read
//! sequence (`max_seq <= read_seq`) and a key range that overlaps no other visible file —
//! each file holds the only version of each of its keys, so the merge would return its rows
//! unchanged. Such a scan ([`DirectPlan`]) is read by DataFusion's own Parquet reader
//! (`ParquetSource` in a `DataSourceExec`, executed inside the Strata scan), reading only the
//! user columns the scan needs and given the scan's value filters as a pruning predicate (row
//! groups, pages and bloom filters it proves cannot match are skipped). The Strata scan still
//! applies its residual filter and limit to the batches exactly as after a merge.
//!
//! Invariants:
//! - Pruning never drops a row the filter would keep. Parquet statistics and bloom filters
//!   describe floats in a way that disagrees with Arrow's comparison (a total order with NaN
//!   above `+inf`, `-NaN` below `-inf`, `-0.0 < +0.0`): min/max leave NaN out and bloom
//!   filters hash the exact bits. So a filter conjunct that reads a column holding a float
//!   anywhere in its type is never part of the pruning predicate ([`pruning_filters`]); it
//!   still runs, exactly, as the residual filter.
//! - Every file's size and crc32c are verified against the manifest
//!   ([`ReadView::verified_sst_path`]) before the Parquet reader opens it.
//! - The rows of the files, in key order, are cut into `partitions` contiguous slices of
//!   about equal row counts; partition `i` reads slice `i` (whole files, or a row selection
//!   of a file: a file's row count is in the manifest), in order, so every partition is
//!   sorted by key and holds only keys below those of partition `i + 1`, as the merge scan's
//!   partitions do.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use strata_engine::{ReadView, SstMeta};

use crate::session::engine_error;

/// Rows `skip..skip + take` of one SST (of `rows`), read by one partition.
#[derive(Debug, Clone)]
struct Piece {
    file: u64,
    size: u64,
    rows: u64,
    skip: u64,
    take: u64,
}

/// How a scan reads its files directly (see the module docs).
#[derive(Debug)]
pub struct DirectPlan {
    /// The pieces of each partition, in key order.
    partitions: Vec<Vec<Piece>>,
    /// Number of files read.
    files: usize,
    /// The Parquet reader's source: user schema, session options, pruning predicate.
    source: ParquetSource,
    /// User columns read, in batch order.
    read_columns: Vec<usize>,
    batch_rows: usize,
    /// Pushed into the reader when no residual filter follows.
    limit: Option<usize>,
}

/// The files of `view` a scan can read directly, in key order, or `None` when the scan
/// needs the merge: the view has visible memtable entries, or a visible file that is not
/// clean, not wholly visible at the read sequence, or overlapping another visible file.
/// Also `None` for a view without visible files (nothing to gain), and for a table whose SST
/// files store some column under another type than the user's.
pub fn exclusive_clean_files(view: &ReadView) -> Option<Vec<SstMeta>> {
    // Columns stored under another Parquet type (an interval as a struct, a dictionary as its
    // values) are mapped back only by the engine's reader.
    if !view.memtables_empty() || !view.table_schema().sst_file_types_are_user_types() {
        return None;
    }
    let read_seq = view.read_seq();
    let mut files: Vec<SstMeta> = view
        .files_by_level()
        .into_iter()
        .flatten()
        .filter(|f| f.min_seq <= read_seq)
        .collect();
    if files.is_empty() || files.iter().any(|f| !f.is_clean() || f.max_seq > read_seq) {
        return None;
    }
    files.sort_by(|a, b| a.min_key.cmp(&b.min_key));
    if files.windows(2).any(|w| w[0].max_key >= w[1].min_key) {
        return None;
    }
    Some(files)
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

/// The arguments of [`DirectPlan::new`] that come from the scan plan.
pub struct DirectScan<'a> {
    /// The table's user schema.
    pub user: SchemaRef,
    /// User columns read, in batch order.
    pub read_columns: &'a [usize],
    /// The scan's value filters over the user schema (pruning only).
    pub predicate: Option<Arc<dyn PhysicalExpr>>,
    /// The session's Parquet read options.
    pub parquet: TableParquetOptions,
    /// Number of partitions of the scan.
    pub partitions: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Rows each partition needs at most, when no residual filter follows.
    pub limit: Option<usize>,
}

impl DirectPlan {
    /// Plans a direct read of `files` (the output of [`exclusive_clean_files`]).
    pub fn new(files: &[SstMeta], scan: DirectScan<'_>) -> Self {
        let partitions = scan.partitions.max(1);
        let total: u64 = files.iter().map(|f| f.rows).sum();
        // Partition `p` reads the global rows `bound(p)..bound(p + 1)` (in key order).
        let bound =
            |p: usize| -> u64 { (u128::from(total) * p as u128 / partitions as u128) as u64 };
        let mut groups: Vec<Vec<Piece>> = vec![Vec::new(); partitions];
        for (p, group) in groups.iter_mut().enumerate() {
            let (lo, hi) = (bound(p), bound(p + 1));
            let mut first_row = 0u64;
            for f in files {
                let (start, end) = (first_row.max(lo), (first_row + f.rows).min(hi));
                if start < end {
                    group.push(Piece {
                        file: f.id,
                        size: f.size_bytes,
                        rows: f.rows,
                        skip: start - first_row,
                        take: end - start,
                    });
                }
                first_row += f.rows;
            }
        }
        let mut source = ParquetSource::new(scan.user).with_table_parquet_options(scan.parquet);
        if let Some(predicate) = scan.predicate {
            source = source.with_predicate(predicate);
        }
        DirectPlan {
            partitions: groups,
            files: files.len(),
            source,
            read_columns: scan.read_columns.to_vec(),
            batch_rows: scan.batch_rows,
            limit: scan.limit,
        }
    }

    /// Number of files read directly.
    pub fn files(&self) -> usize {
        self.files
    }

    /// Verifies the files of `partition` against the manifest and returns their local paths
    /// (blocking: the first verification of a file in the process reads it whole).
    pub fn verify(&self, view: &ReadView, partition: usize) -> Result<Vec<PathBuf>> {
        let Some(pieces) = self.partitions.get(partition) else {
            return Ok(Vec::new());
        };
        pieces
            .iter()
            .map(|piece| view.verified_sst_path(piece.file).map_err(engine_error))
            .collect()
    }

    /// The batches of `partition` (user columns `read_columns`, in key order), reading the
    /// files at `paths` (from [`Self::verify`] for the same partition), and the reader's plan
    /// (its metrics, such as `bytes_scanned`, are complete once the stream ends).
    pub fn execute(
        &self,
        partition: usize,
        paths: &[PathBuf],
        context: Arc<TaskContext>,
    ) -> Result<(Arc<DataSourceExec>, SendableRecordBatchStream)> {
        let pieces = self.partitions.get(partition).cloned().unwrap_or_default();
        if paths.len() != pieces.len() {
            return Err(DataFusionError::Internal(format!(
                "{} SST paths verified for the {} files of partition {partition}",
                paths.len(),
                pieces.len()
            )));
        }
        let mut files = Vec::with_capacity(pieces.len());
        for (piece, path) in pieces.iter().zip(paths) {
            // A database opened by a relative path has relative SST paths; the object store
            // needs them absolute (resolved against the working directory, as every other
            // file access of the engine is).
            let location = std::path::absolute(path)
                .map_err(|e| e.to_string())
                .and_then(|absolute| {
                    object_store::path::Path::from_absolute_path(absolute)
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| {
                    DataFusionError::Execution(format!("SST path {}: {e}", path.display()))
                })?;
            let mut file = PartitionedFile::new(location.to_string(), piece.size);
            file.object_meta.location = location;
            files.push(if piece.skip == 0 && piece.take == piece.rows {
                file
            } else {
                let rest = piece.rows - piece.skip - piece.take;
                let selection = RowSelection::from(vec![
                    RowSelector::skip(piece.skip as usize),
                    RowSelector::select(piece.take as usize),
                    RowSelector::skip(rest as usize),
                ]);
                file.with_extension(ParquetRowSelection::new(selection))
            });
        }
        let config = FileScanConfigBuilder::new(
            ObjectStoreUrl::local_filesystem(),
            Arc::new(self.source.clone()),
        )
        .with_file_group(FileGroup::new(files))
        .with_projection_indices(Some(self.read_columns.clone()))?
        .with_batch_size(Some(self.batch_rows))
        .with_limit(self.limit)
        .build();
        let exec = DataSourceExec::from_data_source(config);
        let stream = exec.execute(0, context)?;
        Ok((exec, stream))
    }
}
