//! [`ShippedScanExec`]: one task's share of a Strata scan, as a worker runs it.
//!
//! A shipped scan holds everything its rows depend on, fixed at planning on the coordinator:
//! the database's location, the SST objects of the task (with size, crc32c and row count from
//! the manifest) and each file's deleted rows (its deletion vector plus the base rows the
//! memtable overlay hides, resolved at plan time: a Roaring bitmap), the row ranges of the
//! files each partition reads (a range minus the deleted rows is a Parquet row selection), the overlay's
//! live rows (task 0 only), the read columns, the filters and the limit. Executing it opens
//! the database's storage ([`storage_for`]: a directory or an object-store prefix, no lock,
//! no manifest read), verifies each file once per process (size and crc32c, as the local base
//! path does), and reads the files with DataFusion's Parquet reader through the storage's
//! object store, registered in the task's runtime under [`store_url`].
//!
//! Invariants: every live base row of the scan is in exactly one partition of exactly one task
//! (the coordinator cuts the files, [`crate::distributed::split`]); the overlay's rows are
//! output once, by partition 0 of task 0, before its base rows, through the same residual
//! filter, limit and projection; the residual filter runs on every row (key conjuncts too:
//! files are read whole), the pruning predicate only skips rows the filter would drop.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{AsArray, RecordBatch, RecordBatchOptions};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
};
use futures::StreamExt;
use strata_engine::lease::Lease;
use strata_engine::storage::Storage;

use crate::session::engine_error;

/// One SST a task reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedFile {
    /// Object path relative to the database root.
    pub object: String,
    /// Size in bytes (from the manifest).
    pub size: u64,
    /// crc32c of the whole file (from the manifest).
    pub crc32c: u32,
    /// Rows of the file.
    pub rows: u64,
    /// Positions of the rows that are not live (`None`: every row is live).
    pub deleted: Option<Arc<roaring::RoaringBitmap>>,
}

/// Rows `start..end` of one of the task's files (minus its deleted rows), read by a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index into [`ShippedScan::files`].
    pub file: usize,
    /// First row position.
    pub start: u64,
    /// Row position after the last.
    pub end: u64,
}

/// What a [`ShippedScanExec`] reads (see the module docs).
#[derive(Debug, Clone)]
pub struct ShippedScan {
    /// The database's directory (absolute) or object-store URL.
    pub location: String,
    /// The table's display name (messages, EXPLAIN).
    pub table_name: String,
    /// The table's user schema (the SSTs' first columns).
    pub user: SchemaRef,
    /// User columns read, in batch order; the first `projection_len` are output.
    pub read_columns: Vec<usize>,
    /// Number of output columns.
    pub projection_len: usize,
    /// Residual filter over the read columns.
    pub residual: Option<Arc<dyn PhysicalExpr>>,
    /// Filters the Parquet reader may prune by, over the user schema.
    pub predicate: Option<Arc<dyn PhysicalExpr>>,
    /// Rows each partition outputs at most.
    pub limit: Option<usize>,
    /// Rows per batch.
    pub batch_rows: usize,
    /// The read sequence the plan was taken at.
    pub read_seq: u64,
    /// This task and the number of tasks.
    pub task: usize,
    /// Number of tasks of the scan.
    pub tasks: usize,
    /// The files of the task.
    pub files: Vec<ShippedFile>,
    /// The pieces of each partition.
    pub partitions: Vec<Vec<Piece>>,
    /// The overlay's live rows (columns `read_columns`), output by partition 0 (task 0 only).
    pub overlay: Option<RecordBatch>,
    /// Rows in the overlay of the whole scan (EXPLAIN; the rows travel with task 0).
    pub overlay_rows_total: usize,
}

impl ShippedScan {
    /// The output schema.
    pub fn output_schema(&self) -> Result<SchemaRef> {
        Ok(Arc::new(
            self.user
                .project(&self.read_columns[..self.projection_len])?,
        ))
    }

    /// Number of files this task reads.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

/// One task's share of a Strata scan (see the module docs).
pub struct ShippedScanExec {
    scan: Arc<ShippedScan>,
    /// Held on the coordinator while the plan lives: keeps compaction from deleting the files.
    lease: Option<Arc<Lease>>,
    metrics: ExecutionPlanMetricsSet,
    cache: Arc<PlanProperties>,
}

impl fmt::Debug for ShippedScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShippedScanExec")
            .field("table", &self.scan.table_name)
            .field("task", &self.scan.task)
            .finish_non_exhaustive()
    }
}

impl ShippedScanExec {
    /// The exec of `scan`, holding `lease` (on the coordinator) while it lives.
    pub fn new(scan: ShippedScan, lease: Option<Arc<Lease>>) -> Result<Self> {
        let schema = scan.output_schema()?;
        let cache = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(scan.partitions.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(ShippedScanExec {
            scan: Arc::new(scan),
            lease,
            metrics: ExecutionPlanMetricsSet::new(),
            cache: Arc::new(cache),
        })
    }

    /// What the task reads.
    pub fn scan(&self) -> &ShippedScan {
        &self.scan
    }

    /// True when the exec holds a lease (the coordinator's copy).
    pub fn holds_lease(&self) -> bool {
        self.lease.is_some()
    }
}

impl DisplayAs for ShippedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let scan = &self.scan;
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                let names: Vec<&str> = scan.read_columns[..scan.projection_len]
                    .iter()
                    .map(|c| scan.user.field(*c).name().as_str())
                    .collect();
                write!(
                    f,
                    "StrataShippedScanExec: table={}, task={}/{}, files={}, projection=[{}]",
                    scan.table_name,
                    scan.task,
                    scan.tasks,
                    scan.file_count(),
                    names.join(", ")
                )?;
                if let Some(residual) = &scan.residual {
                    write!(f, ", residual_filter={residual}")?;
                }
                if let Some(limit) = scan.limit {
                    write!(f, ", limit={limit}")?;
                }
                write!(
                    f,
                    ", overlay=shipped (rows={}{}), read_seq={}",
                    scan.overlay_rows_total,
                    if scan.overlay.is_some() {
                        ", in this task"
                    } else {
                        ""
                    },
                    scan.read_seq
                )
            }
            DisplayFormatType::TreeRender => write!(f, "table={}", scan.table_name),
        }
    }
}

impl ExecutionPlan for ShippedScanExec {
    fn name(&self) -> &str {
        "StrataShippedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.scan.residual {
            Some(expr) => f(expr),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal(
                "StrataShippedScanExec has no children".into(),
            ));
        }
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let scan = Arc::clone(&self.scan);
        let pieces = scan.partitions.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "StrataShippedScanExec has {} partitions, asked for {partition}",
                scan.partitions.len()
            ))
        })?;
        let schema = scan.output_schema()?;
        let output_rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let overlay: Vec<RecordBatch> = match (&scan.overlay, partition) {
            (Some(rows), 0) => vec![rows.clone()],
            _ => Vec::new(),
        };
        let start = {
            let scan = Arc::clone(&scan);
            async move { open_reader(&scan, pieces, context).await }
        };
        // Each batch with whether it passed the residual filter already.
        let base = futures::stream::once(start)
            .flat_map(|opened| match opened {
                Ok(Some((stream, filtered))) => stream
                    .map(move |batch| batch.map(|batch| (batch, filtered)))
                    .boxed(),
                Ok(None) => futures::stream::empty().boxed(),
                Err(error) => futures::stream::iter([Err(error)]).boxed(),
            })
            .boxed();
        let batches =
            futures::stream::iter(overlay.into_iter().map(|batch| Ok((batch, false)))).chain(base);
        let state = Finish {
            scan,
            remaining: self.scan.limit,
            output_rows,
        };
        let stream = futures::stream::unfold(
            (Box::pin(batches), state, false),
            |(mut batches, mut state, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if state.remaining == Some(0) {
                        return None;
                    }
                    match batches.next().await? {
                        Err(error) => return Some((Err(error), (batches, state, true))),
                        Ok((batch, filtered)) => match state.finish(batch, filtered) {
                            Ok(Some(out)) => return Some((Ok(out), (batches, state, false))),
                            Ok(None) => continue,
                            Err(error) => return Some((Err(error), (batches, state, true))),
                        },
                    }
                }
            },
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// The residual filter, limit and projection of a partition's batches.
struct Finish {
    scan: Arc<ShippedScan>,
    remaining: Option<usize>,
    output_rows: Count,
}

impl Finish {
    /// The output of one batch, which passed the residual filter already when `filtered`
    /// (`None`: no row of it is output).
    fn finish(&mut self, batch: RecordBatch, filtered: bool) -> Result<Option<RecordBatch>> {
        let scan = &self.scan;
        let mut batch = batch;
        if let Some(predicate) = scan.residual.as_ref().filter(|_| !filtered) {
            let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            batch = filter_record_batch(&batch, mask.as_boolean())?;
        }
        if let Some(left) = self.remaining.as_mut() {
            if batch.num_rows() > *left {
                batch = batch.slice(0, *left);
            }
            *left -= batch.num_rows();
        }
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let columns = batch.columns()[..scan.projection_len].to_vec();
        let out = RecordBatch::try_new_with_options(
            scan.output_schema()?,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?;
        self.output_rows.add(out.num_rows());
        Ok(Some(out))
    }
}

/// Opens the storage, verifies the pieces' files and starts DataFusion's Parquet reader over
/// them (`None`: the partition reads no file), with whether its batches passed the residual
/// filter already (applied with the hidden rows, `crate::direct::cannot_fail`).
async fn open_reader(
    scan: &ShippedScan,
    pieces: Vec<Piece>,
    context: Arc<TaskContext>,
) -> Result<Option<(SendableRecordBatchStream, bool)>> {
    if pieces.is_empty() {
        return Ok(None);
    }
    let location = scan.location.clone();
    let to_verify: Vec<ShippedFile> = pieces
        .iter()
        .map(|p| {
            scan.files.get(p.file).cloned().ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "piece of file {} out of the task's files",
                    p.file
                ))
            })
        })
        .collect::<Result<_>>()?;
    let files_read = to_verify.clone();
    let storage = tokio::task::spawn_blocking(move || -> Result<Storage> {
        let storage = storage_for(&location)?;
        for file in &to_verify {
            verify(&storage, &location, file)?;
        }
        Ok(storage)
    })
    .await
    .map_err(|e| DataFusionError::Internal(format!("a Strata reader thread failed: {e}")))??;
    let url = store_url(&scan.location)?;
    context
        .runtime_env()
        .register_object_store(url.as_ref(), storage.read_store());
    // A piece's deleted rows inside it (`None`: none), hidden after decoding unless a user
    // column has the name of one of the two columns that adds (`crate::direct`).
    let hidden: Vec<Option<Arc<roaring::RoaringBitmap>>> = pieces
        .iter()
        .zip(&files_read)
        .map(|(piece, shipped)| {
            shipped
                .deleted
                .clone()
                .filter(|d| strata_engine::dv::deleted_within(d, piece.start..piece.end) > 0)
        })
        .collect();
    let after_decode =
        hidden.iter().any(Option::is_some) && !crate::direct::row_number_columns_taken(&scan.user);
    let mut files = Vec::with_capacity(pieces.len());
    for (index, (piece, shipped)) in pieces.iter().zip(&files_read).enumerate() {
        if piece.start > piece.end || piece.end > shipped.rows {
            return Err(DataFusionError::Internal(format!(
                "rows {}..{} of {}, which has {} rows",
                piece.start, piece.end, shipped.object, shipped.rows
            )));
        }
        let mut file = PartitionedFile::new(shipped.object.clone(), shipped.size);
        file.object_meta.location = object_store::path::Path::from(shipped.object.as_str());
        file = crate::direct::with_content_identity(file, shipped.crc32c);
        if after_decode {
            file = file.with_partition_values(vec![ScalarValue::UInt32(Some(index as u32))]);
        }
        // After decoding, the reader reads the piece's rows, deleted ones included.
        let deleted = if after_decode {
            None
        } else {
            shipped.deleted.as_deref()
        };
        let whole = piece.start == 0 && piece.end == shipped.rows && deleted.is_none();
        let selection = (!whole).then(|| {
            strata_engine::dv::selection_runs(shipped.rows, piece.start, piece.end, deleted)
        });
        files.push(match &selection {
            None => file,
            Some(runs) => crate::direct::with_row_selection(file, runs),
        });
    }
    let parquet = TableParquetOptions {
        global: context.session_config().options().execution.parquet.clone(),
        ..Default::default()
    };
    let mut projection = scan.read_columns.clone();
    let source = if after_decode {
        let user = scan.user.fields().len();
        projection.extend([user, user + 1]);
        crate::direct::parquet_source_with_row_numbers(&scan.user, parquet, scan.predicate.as_ref())
    } else {
        crate::direct::parquet_source(&scan.user, parquet, scan.predicate.as_ref())
    };
    // Rows dropped after the reader (residual filter, hidden rows) do not count against its
    // limit.
    let limit = if scan.residual.is_none() && !after_decode {
        scan.limit
    } else {
        None
    };
    let source = crate::direct::with_metadata_cache(source, &url, &context)?;
    let config = FileScanConfigBuilder::new(url, Arc::new(source))
        .with_file_group(FileGroup::new(files))
        .with_projection_indices(Some(projection))?
        .with_batch_size(Some(scan.batch_rows))
        .with_limit(limit)
        .build();
    let exec = DataSourceExec::from_data_source(config);
    let stream = exec.execute(0, context)?;
    if !after_decode {
        return Ok(Some((stream, false)));
    }
    let schema = Arc::new(scan.user.project(&scan.read_columns)?);
    let hide =
        crate::direct::DeletedAfterDecode::new(hidden, scan.residual.as_ref(), &Count::new());
    let filtered = hide.filters();
    Ok(Some((hide.stream(stream, schema), filtered)))
}

pub use crate::direct::store_url;

/// The storage of the database at `location`, opened once per process (no lock, no manifest
/// read: the objects are named by the plan).
pub fn storage_for(location: &str) -> Result<Storage> {
    static OPENED: OnceLock<Mutex<HashMap<String, Storage>>> = OnceLock::new();
    let opened = OPENED.get_or_init(|| Mutex::new(HashMap::new()));
    let mut opened = opened
        .lock()
        .map_err(|_| DataFusionError::Internal("Strata storage registry poisoned".into()))?;
    if let Some(storage) = opened.get(location) {
        return Ok(storage.clone());
    }
    let path = std::path::Path::new(location);
    if !strata_engine::storage::is_url(path) && !path.join("CURRENT").exists() {
        return Err(DataFusionError::Execution(format!(
            "no Strata database at {location} on this worker (a local database must be on a \
             path every worker sees; use an s3:// database for workers on other machines)"
        )));
    }
    let storage = Storage::for_path(path, None).map_err(engine_error)?;
    opened.insert(location.to_string(), storage.clone());
    Ok(storage)
}

/// Verifies a file against the size and crc32c of the manifest, once per process.
fn verify(storage: &Storage, location: &str, piece: &ShippedFile) -> Result<()> {
    static VERIFIED: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    let verified = VERIFIED.get_or_init(|| Mutex::new(HashSet::new()));
    let key = (location.to_string(), piece.object.clone());
    if verified.lock().is_ok_and(|v| v.contains(&key)) {
        return Ok(());
    }
    let file = storage.open(&piece.object).map_err(engine_error)?;
    let size = parquet::file::reader::Length::len(&file);
    let crc = file.crc32c().map_err(|e| {
        DataFusionError::Execution(format!("reading {location}/{}: {e}", piece.object))
    })?;
    if size != piece.size || crc != piece.crc32c {
        return Err(engine_error(strata_engine::Error::Corruption {
            file: storage.local_path(&piece.object),
            offset: 0,
            reason: format!(
                "size {size} crc32c {crc:08x}, the plan (from the manifest) says size {} \
                 crc32c {:08x}",
                piece.size, piece.crc32c
            ),
        }));
    }
    if let Ok(mut v) = verified.lock() {
        v.insert(key);
    }
    Ok(())
}
