//! The `TableProvider` of a Strata table and its scan plan.
//!
//! [`StrataTable`] exposes one engine table to DataFusion: its user schema (key columns NOT
//! NULL), its primary key as a constraint, scans, and the DML hooks (implemented in
//! [`crate::dml`]).
//!
//! ## The scan ([`StrataScanExec`])
//!
//! 1. `scan()` pins one [`ReadView`] (memtables + files + sequence number) and turns the
//!    primary-key predicates into key ranges ([`crate::keys`]). Unless every range is a point
//!    (`id = X`, `id IN (...)`: point lookups are cheaper), it asks the engine to plan the
//!    scan as base files plus memtable overlay ([`ReadView::base_scan`], with the key ranges
//!    when there are some). When the engine returns a plan with at least one base file, the
//!    scan takes **the base path** (below); otherwise **the merge path**.
//! 2. The merge path: every filter that is not an exact key predicate is the residual filter,
//!    evaluated **after** the merge, so a value predicate never sees an old version that a
//!    newer version or tombstone hides. `execute()` splits the ranges into
//!    `target_partitions` key-range partitions at the view's split points (computed once, on
//!    the first partition executed), then streams each partition from a blocking thread over
//!    a bounded channel: a full-key point is a point lookup (memtables, then files by key
//!    range and bloom filter), a range is an engine merge scan of the runs that overlap it.
//!    Each partition is sorted by primary key, and partition `i` holds only keys below those
//!    of partition `i + 1`.
//! 3. The base path ([`crate::direct`]): the base files are read by DataFusion's Parquet
//!    reader, user columns only, each file's deletion vector as a row selection, every
//!    filter (key conjuncts too: a file overlapping a range is read whole) as a pruning
//!    predicate (except float conjuncts) and as the residual filter; when the overlay holds
//!    keys inside the base files' key ranges, each base batch first loses the rows whose key
//!    the overlay holds (an anti-join on the key, before the residual filter, so a tombstone
//!    or newer version hides a base row that matches a value filter), and partition 0 also
//!    outputs the overlay's live rows through the same filter. The live base rows are cut
//!    into `target_partitions` slices of about equal size. No merge runs over base files.
//! 4. Ordering: the primary-key ordering is declared, when the key encoding orders like
//!    Arrow ([`crate::keys::supports_order`]), on the merge path and on the base path when
//!    the base files are pairwise disjoint and the overlay adds no row; then `ORDER BY pk`
//!    plans no sort. Otherwise (overlapping level-0 files, rows in the memtables) the base
//!    path declares no ordering: DataFusion sorts above the scan, which costs less than
//!    merging under it.
//! 5. A limit is pushed into the engine (merge path) or the Parquet reader (base path) only
//!    when no residual filter (and on the base path no anti-join) follows; with one, each
//!    partition stops after `limit` rows that passed it (the overlay's rows count too).
//!
//! Files are verified against the manifest (size and crc32c) before the Parquet reader
//! opens them. DML finds its rows through its own merge scans ([`crate::dml`]), not here.
//!
//! ## Statistics
//!
//! The scan reports its row count from the pinned view's metadata, with no I/O; an exact
//! count lets DataFusion answer `count(*)` without scanning. It is `Exact` only when no key
//! range, residual filter or limit restricts the scan and no file of the view was found
//! corrupt in this process (a file known to be corrupt fails every query, `count(*)` too),
//! and
//!
//! * on the base path ([`base_row_count`]): no anti-join follows (the overlay holds no key,
//!   or the engine resolved it against the base files' keys); the count is the sum of the
//!   base files' live rows (rows minus deletion-vector positions and the rows the overlay
//!   hides) and the overlay's live rows, so `count(*)` is answered from metadata after a
//!   flush even with overlapping files, and under writes;
//! * on the merge path ([`scan_row_count`]): the memtables hold nothing visible, every
//!   visible file is clean (no tombstones, one version per key,
//!   [`strata_engine::SstMeta::is_clean`]) and wholly visible, and no two overlap.
//!
//! A base-path scan whose every filter bounds only the key (filters the key ranges enforce
//! exactly, `keys::is_exact_key_filter`) and which has no limit is `Exact` too when the engine
//! can count the rows of its ranges without reading them ([`ReadView::live_rows_within`]:
//! each base file's rows between the ranges' bounds, by binary searches of its keys in the
//! key cache, minus its deleted rows there, plus the overlay's live rows; the overlay
//! resolved). So `SELECT count(*) FROM t WHERE id BETWEEN a AND b` reads no row.
//!
//! Otherwise it is `Inexact`. Column statistics are not reported.
//!
//! ## EXPLAIN
//!
//! `EXPLAIN` shows the path: `path=merge`, or `path=base (files=, disjoint=,
//! rows_deleted_by_dvs=, overlay_keys=, overlay_rows=, [rows_hidden_by_overlay=,]
//! anti_join=)`, `rows_hidden_by_overlay` when the engine resolved the overlay at plan time
//! (no anti-join runs). Metrics of `EXPLAIN
//! ANALYZE`: `files_total`, `files_scanned`, `files_pruned` (by key range and sequence),
//! `row_groups_total` / `row_groups_scanned` / `row_groups_pruned` (row groups of the
//! scanned files, and the ones the SST key index skips for the key ranges), `point_lookups`,
//! `runs_merged` (merge fan-in of the scanned key span; 0 on the base path),
//! `rows_deduplicated` (older versions and tombstones the merge dropped),
//! `tombstones_in_scanned_files`, `rows_filtered` (removed by the residual filter),
//! `output_rows`; also the partitions' SST reads (on the base path those of its
//! verification and of the Parquet reader, through the database's read store), under the
//! engine's counter names (`strata_engine::metrics::track_reads`): `block_cache_hits` /
//! `block_cache_misses` (point lookups' decoded blocks in memory), `disk_cache_hits` /
//! `disk_cache_misses` (chunks of SST bytes on the local disk cache of a database on object
//! storage), `object_gets` and `object_get_bytes` (requests to the object store and the bytes
//! they fetched; 0 for a local database); on the
//! base path also `files_read_directly`, `bytes_read_directly` (bytes
//! the Parquet reader fetched, after its pruning), `rows_deleted_by_dvs` (rows of the base
//! files their deletion vectors delete), `overlay_keys`, `overlay_tombstones`,
//! `overlay_rows`, `rows_hidden_by_overlay` (base rows the overlay hides: resolved at plan
//! time, or dropped by the anti-join), and the
//! Parquet reader's own pruning counts under DataFusion's names
//! (`row_groups_pruned_statistics`, `row_groups_pruned_bloom_filter`,
//! `page_index_pages_pruned`, `page_index_rows_pruned`, `files_ranges_pruned_statistics`).

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use arrow::array::{AsArray, RecordBatch, RecordBatchOptions};
use arrow::compute::SortOptions;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Constraint, Constraints, DFSchema};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
    Statistics, StatisticsArgs,
};
use strata_engine::{
    BaseScan, Db, KeyRange, ReadCounter, ReadStats, ReadView, ScanOptions, Snapshot, Table,
    track_reads,
};

use crate::direct::{self, BasePlan, BaseRead};
use crate::keys::{self, ScanRange};
use crate::session::engine_error;

/// Channel capacity (batches) between a partition's blocking reader and its stream.
pub const SCAN_CHANNEL_BATCHES: usize = 2;

/// Tables smaller than this (estimated rows) are scanned as one partition.
pub const MIN_ROWS_TO_SPLIT: u64 = 16 * 1024;

/// A Strata table as a DataFusion table.
#[derive(Clone)]
pub struct StrataTable {
    table: Table,
    schema: SchemaRef,
    constraints: Constraints,
    defaults: HashMap<String, Expr>,
    statement_bytes_max: usize,
}

/// Memory one DML statement may buffer before its write unless told otherwise (the engine's
/// default `write_batch_bytes_max`).
pub const DEFAULT_STATEMENT_BYTES_MAX: usize = 256 * 1024 * 1024;

impl fmt::Debug for StrataTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrataTable")
            .field("name", &self.table.name())
            .field("primary_key", &self.table.primary_key())
            .finish()
    }
}

impl StrataTable {
    /// The provider of an engine table.
    pub fn new(table: Table) -> Result<Self> {
        let schema = table.schema();
        let key: Vec<usize> = table
            .primary_key()
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<_, _>>()?;
        let constraints = if key.is_empty() {
            Constraints::default()
        } else {
            Constraints::new_unverified(vec![Constraint::PrimaryKey(key)])
        };
        Ok(StrataTable {
            table,
            schema,
            constraints,
            defaults: HashMap::new(),
            statement_bytes_max: DEFAULT_STATEMENT_BYTES_MAX,
        })
    }

    /// Sets the column defaults (`DEFAULT expr`) used by `INSERT`.
    pub fn with_column_defaults(mut self, defaults: HashMap<String, Expr>) -> Self {
        self.defaults = defaults;
        self
    }

    /// Sets the memory one DML statement may buffer before its single write (use the
    /// database's `write_batch_bytes_max`: a larger statement could not be written anyway).
    pub fn with_statement_bytes_max(mut self, bytes: usize) -> Self {
        self.statement_bytes_max = bytes;
        self
    }

    /// The memory one DML statement may buffer.
    pub fn statement_bytes_max(&self) -> usize {
        self.statement_bytes_max
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        self.table.name()
    }

    /// The engine table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Plans a scan of the table (see the module docs).
    pub fn plan_scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<StrataScanExec> {
        let user = self.table.schema();
        let table_schema = self.table.table_schema();
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..user.fields().len()).collect(),
        };
        let ranges = keys::key_ranges(table_schema, filters);
        let statement = state.config().get_extension::<StatementSnapshot>();
        let view = match statement.as_deref().and_then(StatementSnapshot::snapshot) {
            Some(snapshot) => self.table.view_at(snapshot),
            None => self.table.view(),
        }
        .map_err(engine_error)?;
        let all_points = ranges
            .as_ref()
            .is_some_and(|r| r.iter().all(|r| matches!(r, ScanRange::Point(_))));
        // The base path (module docs, "The base path"): asked of the engine unless every
        // range is a point (point lookups stay on the merge path).
        let key_ranges: Option<Vec<KeyRange>> = ranges
            .as_ref()
            .map(|r| r.iter().map(ScanRange::to_key_range).collect());
        let base = if all_points {
            None
        } else {
            view.base_scan(key_ranges.as_deref())
                .map_err(engine_error)?
                .filter(|scan| !scan.files.is_empty())
        };
        // With workers configured, the plan other processes can read (crate::distributed).
        #[cfg(feature = "distributed")]
        let shipped = if all_points || !crate::distributed::workers_configured(state) {
            None
        } else {
            view.shipped_scan(key_ranges.as_deref())
                .map_err(engine_error)?
                .filter(|s| !s.scan.files.is_empty() && s.scan.overlay.hides_nothing())
        };
        #[cfg(not(feature = "distributed"))]
        let shipped: Option<strata_engine::ShippedScan> = None;
        // Filters reported exact are enforced by the ranges on the merge path; should the
        // ranges not have been built (a value the key codec refused), or should the scan read
        // base files whole, every filter is evaluated by the scan.
        let residual: Vec<Expr> = filters
            .iter()
            .filter(|f| {
                ranges.is_none()
                    || base.is_some()
                    || shipped.is_some()
                    || !keys::is_exact_key_filter(table_schema, f)
            })
            .map(|f| strip_qualifiers(f.clone()))
            .collect::<Result<_>>()?;
        let mut read_columns = projection.clone();
        let mut need = |index: usize| {
            if !read_columns.contains(&index) {
                read_columns.push(index);
            }
        };
        for expr in &residual {
            for column in expr.column_refs() {
                need(user.index_of(&column.name)?);
            }
        }
        if let Some(scan) = &base {
            for index in direct::anti_join_columns(scan, table_schema) {
                need(index);
            }
        }
        let read_schema = Arc::new(user.project(&read_columns)?);
        let pruning_filters = residual.clone();
        let residual_display = residual
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" AND ");
        let residual = match conjunction(residual) {
            Some(predicate) => {
                let df_schema = DFSchema::try_from(read_schema.as_ref().clone())?;
                Some(state.create_physical_expr(predicate, &df_schema)?)
            }
            None => None,
        };
        let output_schema = Arc::new(user.project(&projection)?);
        let partitions = if all_points || self.table.stats().estimated_rows < MIN_ROWS_TO_SPLIT {
            1
        } else {
            state.config().target_partitions().max(1)
        };
        let restricted = ranges.is_some() || residual.is_some() || limit.is_some();
        let batch_rows = state.config().batch_size().max(1);
        let shipped = match shipped {
            Some(scan) => {
                let pruning = direct::pruning_filters(&pruning_filters, &user);
                let predicate = match conjunction(pruning) {
                    Some(predicate) => {
                        let df_schema = DFSchema::try_from(user.as_ref().clone())?;
                        Some(state.create_physical_expr(predicate, &df_schema)?)
                    }
                    None => None,
                };
                Some(ShippedSpec {
                    location: view.database_location(),
                    scan: Arc::new(scan),
                    predicate,
                })
            }
            None => None,
        };
        let (direct, mut row_count) = match base {
            Some(scan) => {
                // Filters that only bound the key (enforced exactly by the ranges) leave an
                // exact count the engine can give without reading a row.
                let key_bounds_only = limit.is_none()
                    && !filters.is_empty()
                    && filters
                        .iter()
                        .all(|f| keys::is_exact_key_filter(table_schema, f));
                let row_count = match key_ranges.as_deref() {
                    Some(ranges) if key_bounds_only => view
                        .live_rows_within(&scan, ranges)
                        .and_then(|rows| usize::try_from(rows).ok())
                        .map(Precision::Exact)
                        .unwrap_or_else(|| base_row_count(&view, &scan, restricted)),
                    _ => base_row_count(&view, &scan, restricted),
                };
                // The filters over the whole user schema, for the reader's pruning (only the
                // conjuncts statistics cannot get wrong).
                let pruning = direct::pruning_filters(&pruning_filters, &user);
                let predicate = match conjunction(pruning) {
                    Some(predicate) => {
                        let df_schema = DFSchema::try_from(user.as_ref().clone())?;
                        Some(state.create_physical_expr(predicate, &df_schema)?)
                    }
                    None => None,
                };
                let plan = BasePlan::new(
                    scan,
                    BaseRead {
                        user: Arc::clone(&user),
                        table_schema: Arc::clone(table_schema),
                        read_columns: &read_columns,
                        predicate,
                        parquet: state.default_table_options().parquet,
                        partitions,
                        batch_rows,
                        limit: if residual.is_none() { limit } else { None },
                        residual: residual.clone(),
                    },
                )?;
                (Some(plan), row_count)
            }
            None => (None, scan_row_count(&view, restricted)),
        };
        if let Some(limit) = limit {
            row_count = row_count.min(&Precision::Inexact(limit)).to_inexact();
        }
        // The key ordering holds on the merge path, and on the base path when the files are
        // disjoint and the overlay adds no row (module docs, 3).
        let ordered = direct
            .as_ref()
            .is_none_or(|plan| plan.disjoint() && !plan.overlay_adds_rows());
        let ordering = if ordered {
            key_ordering(&self.table, &projection, &output_schema)
        } else {
            None
        };
        Ok(StrataScanExec::new(ScanSpec {
            table_name: self.table.name().to_string(),
            view,
            projection_len: projection.len(),
            read_columns,
            schema: output_schema,
            ranges,
            residual,
            residual_display,
            limit,
            partitions,
            batch_rows,
            ordering,
            row_count,
            direct,
            shipped,
        }))
    }
}

/// The read point the Strata scans of one statement share, so a statement reading several
/// tables (a join, a subquery, `INSERT ... SELECT`) sees them all at one sequence number.
/// [`crate::StrataSession`] puts a fresh one into the session state of every query it plans;
/// the database snapshot is taken when the first scan is planned (when the query runs, as a
/// scan without it would) and held until the state is dropped. A scan planned without it
/// (a context used directly) pins the newest state of its own table.
#[derive(Debug)]
pub struct StatementSnapshot {
    db: std::sync::Weak<Db>,
    snapshot: OnceLock<Option<Snapshot>>,
}

impl StatementSnapshot {
    /// A statement's read point over `db`, taken on first use.
    pub fn new(db: &Arc<Db>) -> Self {
        StatementSnapshot {
            db: Arc::downgrade(db),
            snapshot: OnceLock::new(),
        }
    }

    /// The snapshot every scan of the statement reads at (`None` once the database is gone).
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot
            .get_or_init(|| self.db.upgrade().map(|db| db.snapshot()))
            .as_ref()
    }
}

/// The number of rows a scan of `view` returns, from the engine's count
/// ([`ReadView::row_count`], see the module docs): exact only when `restricted` is false (no
/// key range, residual filter or limit), no file of the view is known to be corrupt (so the
/// query runs and reports it) and the engine's count is exact (the memtables hold nothing
/// visible, the visible files are clean, wholly visible and pairwise disjoint in key range);
/// otherwise the engine's estimate.
pub fn scan_row_count(view: &ReadView, restricted: bool) -> Precision<usize> {
    let count = view.row_count();
    let rows = usize::try_from(count.rows).unwrap_or(usize::MAX);
    if count.exact && !restricted && !view.has_known_corrupt_file() {
        Precision::Exact(rows)
    } else {
        Precision::Inexact(rows)
    }
}

/// The number of rows a base scan returns (see the module docs, "Statistics"): the base
/// files' live rows plus the overlay's live rows; exact only when `restricted` is false (no
/// key range, residual filter or limit), the overlay hides no base row the files' deleted
/// rows do not already leave out (it holds no key, or the engine resolved it) and no file of
/// the view is known to be corrupt; otherwise an estimate.
pub fn base_row_count(view: &ReadView, scan: &BaseScan, restricted: bool) -> Precision<usize> {
    let overlay_rows = scan.overlay.rows().num_rows() as u64;
    let rows =
        usize::try_from(scan.base_live_rows().saturating_add(overlay_rows)).unwrap_or(usize::MAX);
    if !restricted && scan.overlay.hides_nothing() && !view.has_known_corrupt_file() {
        Precision::Exact(rows)
    } else {
        Precision::Inexact(rows)
    }
}

/// The key-order sort expressions of a scan output: the longest prefix of the primary key
/// that is projected (in key order) and whose types' encodings order like Arrow.
fn key_ordering(table: &Table, projection: &[usize], output: &SchemaRef) -> Option<LexOrdering> {
    let user = table.schema();
    let mut sort = Vec::new();
    for key in table.primary_key() {
        let Ok(index) = user.index_of(key) else { break };
        let Some(position) = projection.iter().position(|p| *p == index) else {
            break;
        };
        if !keys::supports_order(output.field(position).data_type()) {
            break;
        }
        sort.push(PhysicalSortExpr::new(
            Arc::new(PhysicalColumn::new(key, position)),
            SortOptions {
                descending: false,
                nulls_first: false,
            },
        ));
    }
    LexOrdering::new(sort)
}

/// Removes table qualifiers from the columns of `expr` (filters are evaluated against the
/// table's own, unqualified schema).
pub fn strip_qualifiers(expr: Expr) -> Result<Expr> {
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => {
                Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
            }
            e => Transformed::no(e),
        })
    })
    .map(|t| t.data)
}

#[async_trait]
impl TableProvider for StrataTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(self.plan_scan(state, projection, filters, limit)?))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let schema = self.table.table_schema();
        Ok(filters
            .iter()
            .map(|f| {
                if keys::is_exact_key_filter(schema, f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    // Evaluated after the merge inside the scan, and again by DataFusion.
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::dml::insert_plan(self, input, insert_op)
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::dml::delete_plan(self, state, filters)
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::dml::update_plan(self, state, assignments, filters)
    }

    async fn truncate(&self, state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        crate::dml::delete_plan(self, state, Vec::new())
    }
}

/// What a [`StrataScanExec`] reads.
pub struct ScanSpec {
    table_name: String,
    view: ReadView,
    /// The first `projection_len` of `read_columns` are the output columns.
    projection_len: usize,
    /// User columns read, in batch order: the projection, then residual filter columns.
    read_columns: Vec<usize>,
    schema: SchemaRef,
    ranges: Option<Vec<ScanRange>>,
    residual: Option<Arc<dyn PhysicalExpr>>,
    residual_display: String,
    limit: Option<usize>,
    partitions: usize,
    batch_rows: usize,
    ordering: Option<LexOrdering>,
    /// The number of rows the scan returns (see the module docs, "Statistics").
    row_count: Precision<usize>,
    /// Set when the partitions read base files and overlay instead of merging (module docs,
    /// "The base path").
    direct: Option<BasePlan>,
    /// Set when the session has workers and the scan can be read by them
    /// (crate::distributed).
    shipped: Option<ShippedSpec>,
}

/// The plan of a scan that other processes can read (see [`crate::distributed`]).
#[derive(Debug, Clone)]
pub struct ShippedSpec {
    /// The database's directory or URL.
    pub location: String,
    /// Base files, deleted rows, overlay.
    pub scan: Arc<strata_engine::ShippedScan>,
    /// The filters Parquet statistics may prune by, over the user schema.
    pub predicate: Option<Arc<dyn PhysicalExpr>>,
}

/// What a scan shipped to other processes needs of a [`StrataScanExec`].
#[derive(Debug, Clone)]
pub struct ScanParts {
    /// The table's display name.
    pub table_name: String,
    /// The table's user schema.
    pub user: SchemaRef,
    /// User columns read; the first `projection_len` are the output.
    pub read_columns: Vec<usize>,
    /// Number of output columns.
    pub projection_len: usize,
    /// The output schema.
    pub schema: SchemaRef,
    /// The residual filter over the read columns.
    pub residual: Option<Arc<dyn PhysicalExpr>>,
    /// Rows each partition outputs at most.
    pub limit: Option<usize>,
    /// Partitions of the scan.
    pub partitions: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// The read sequence.
    pub read_seq: u64,
    /// The shipped plan.
    pub shipped: ShippedSpec,
}

/// The scan of one Strata table at one pinned read view (see the module docs).
pub struct StrataScanExec {
    spec: Arc<ScanSpec>,
    /// The ranges of each partition, computed on first execution.
    prepared: Arc<OnceLock<std::result::Result<Vec<Vec<ScanRange>>, String>>>,
    metrics: ExecutionPlanMetricsSet,
    cache: Arc<PlanProperties>,
}

impl fmt::Debug for StrataScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrataScanExec")
            .field("table", &self.spec.table_name)
            .finish_non_exhaustive()
    }
}

impl StrataScanExec {
    fn new(spec: ScanSpec) -> Self {
        let eq = match &spec.ordering {
            Some(ordering) => EquivalenceProperties::new_with_orderings(
                Arc::clone(&spec.schema),
                [ordering.clone()],
            ),
            None => EquivalenceProperties::new(Arc::clone(&spec.schema)),
        };
        let cache = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(spec.partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        StrataScanExec {
            spec: Arc::new(spec),
            prepared: Arc::new(OnceLock::new()),
            metrics: ExecutionPlanMetricsSet::new(),
            cache: Arc::new(cache),
        }
    }

    /// The key ranges this scan reads (`None`: the whole table).
    pub fn ranges(&self) -> Option<&[ScanRange]> {
        self.spec.ranges.as_deref()
    }

    /// True when a residual (post-merge) filter is evaluated.
    pub fn has_residual_filter(&self) -> bool {
        self.spec.residual.is_some()
    }

    /// True when the scan reads its files with DataFusion's Parquet reader instead of
    /// merging (see the module docs).
    pub fn reads_files_directly(&self) -> bool {
        self.spec.direct.is_some()
    }

    /// On the base path, the number of keys the memtable overlay holds (puts and
    /// tombstones); `None` on the merge path.
    pub fn overlay_keys(&self) -> Option<usize> {
        self.spec.direct.as_ref().map(|plan| plan.overlay().keys())
    }

    /// True when the scan filters its base rows against the overlay's keys (an anti-join:
    /// on the base path with an overlay the engine could not resolve).
    pub fn runs_anti_join(&self) -> bool {
        self.spec
            .direct
            .as_ref()
            .is_some_and(|plan| plan.anti_join())
    }

    /// What a scan shipped to other processes needs, when the scan has a shipped plan (the
    /// session has workers and the engine could plan the scan as base files plus a resolved
    /// overlay).
    pub fn scan_parts(&self) -> Option<ScanParts> {
        let spec = &self.spec;
        let shipped = spec.shipped.clone()?;
        Some(ScanParts {
            table_name: spec.table_name.clone(),
            user: spec.view.table_schema().user_schema().clone(),
            read_columns: spec.read_columns.clone(),
            projection_len: spec.projection_len,
            schema: Arc::clone(&spec.schema),
            residual: spec.residual.clone(),
            limit: spec.limit,
            partitions: spec.partitions,
            batch_rows: spec.batch_rows,
            read_seq: spec.view.read_seq(),
            shipped,
        })
    }

    /// The read view the scan reads.
    pub fn view(&self) -> &ReadView {
        &self.spec.view
    }

    /// The number of rows the scan returns, exact or estimated (see the module docs).
    pub fn row_count(&self) -> Precision<usize> {
        self.spec.row_count
    }

    /// Splits the ranges into partitions and records the statement-level metrics; runs once.
    fn prepare(&self) -> std::result::Result<Vec<Vec<ScanRange>>, String> {
        let spec = &self.spec;
        let base: Vec<ScanRange> = spec
            .ranges
            .clone()
            .unwrap_or_else(|| vec![ScanRange::Range(KeyRange::all())]);
        // Statement-level metrics (recorded once, under partition 0).
        let files_total: usize = spec.view.files_by_level().iter().map(Vec::len).sum();
        let key_ranges: Vec<KeyRange> = base.iter().map(ScanRange::to_key_range).collect();
        let scanned = spec.view.files_overlapping(&key_ranges);
        let counter = |name: &'static str| MetricBuilder::new(&self.metrics).counter(name, 0);
        counter("files_total").add(files_total);
        counter("files_scanned").add(scanned.len());
        counter("files_pruned").add(files_total - scanned.len());
        counter("tombstones_in_scanned_files")
            .add(scanned.iter().map(|f| f.tombstones as usize).sum());
        let (row_groups, row_groups_read) = spec
            .view
            .row_groups_for(&key_ranges)
            .map_err(|e| e.to_string())?;
        counter("row_groups_total").add(row_groups);
        counter("row_groups_scanned").add(row_groups_read);
        counter("row_groups_pruned").add(row_groups - row_groups_read);
        if let Some(plan) = &spec.direct {
            // The base path: no point lookup, no merge over base files.
            counter("point_lookups").add(0);
            counter("runs_merged").add(0);
            counter("files_read_directly").add(plan.files());
            counter("rows_deleted_by_dvs").add(plan.rows_deleted() as usize);
            let overlay = plan.overlay();
            counter("overlay_keys").add(overlay.keys());
            counter("overlay_tombstones").add(overlay.tombstones());
            counter("overlay_rows").add(overlay.rows().num_rows());
            counter("rows_hidden_by_overlay").add(overlay.hidden_base_rows() as usize);
            // The partitions' pieces were planned with the scan.
            return Ok(Vec::new());
        }
        let points = base
            .iter()
            .filter(|r| matches!(r, ScanRange::Point(_)))
            .count();
        counter("point_lookups").add(points);
        counter("files_read_directly").add(0);
        if let (Some(first), Some(last)) = (base.first(), base.last()) {
            let hull = KeyRange::new(first.to_key_range().lower, last.to_key_range().upper);
            if points < base.len() {
                counter("runs_merged").add(spec.view.runs_for(&hull));
            }
        }
        if spec.partitions == 1 {
            return Ok(vec![base]);
        }
        let splits = spec
            .view
            .split_points(spec.partitions)
            .map_err(|e| e.to_string())?;
        let mut parts: Vec<Vec<ScanRange>> = vec![Vec::new(); spec.partitions];
        for (i, part) in parts.iter_mut().enumerate().take(splits.len() + 1) {
            let lo = if i == 0 {
                Bound::Unbounded
            } else {
                Bound::Included(splits[i - 1].clone())
            };
            let hi = match splits.get(i) {
                Some(s) => Bound::Excluded(s.clone()),
                None => Bound::Unbounded,
            };
            let slice = KeyRange::new(lo, hi);
            for range in &base {
                match range {
                    ScanRange::Point(key) => {
                        if slice.contains(key) {
                            part.push(range.clone());
                        }
                    }
                    ScanRange::Range(r) => {
                        let piece = r.intersect(&slice);
                        if !piece.is_empty() {
                            part.push(ScanRange::Range(piece));
                        }
                    }
                }
            }
        }
        Ok(parts)
    }
}

impl DisplayAs for StrataScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let spec = &self.spec;
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "StrataScanExec: table={}", spec.table_name)?;
                match &spec.ranges {
                    None => write!(f, ", ranges=all")?,
                    Some(r) => {
                        let points = r
                            .iter()
                            .filter(|r| matches!(r, ScanRange::Point(_)))
                            .count();
                        write!(f, ", ranges={} (points={points})", r.len())?
                    }
                }
                let names: Vec<&str> = spec
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                write!(f, ", projection=[{}]", names.join(", "))?;
                if spec.residual.is_some() {
                    write!(f, ", residual_filter={}", spec.residual_display)?;
                }
                if let Some(limit) = spec.limit {
                    write!(f, ", limit={limit}")?;
                }
                match &spec.direct {
                    Some(plan) => {
                        let overlay = plan.overlay();
                        write!(
                            f,
                            ", path=base (files={}, disjoint={}, rows_deleted_by_dvs={}, \
                             overlay_keys={}, overlay_rows={}, ",
                            plan.files(),
                            plan.disjoint(),
                            plan.rows_deleted(),
                            overlay.keys(),
                            overlay.rows().num_rows(),
                        )?;
                        if !plan.anti_join() && overlay.keys() > 0 {
                            write!(f, "rows_hidden_by_overlay={}, ", overlay.hidden_base_rows())?;
                        }
                        write!(f, "anti_join={})", plan.anti_join())?;
                    }
                    None => write!(f, ", path=merge")?,
                }
                write!(f, ", read_seq={}", spec.view.read_seq())
            }
            DisplayFormatType::TreeRender => write!(f, "table={}", spec.table_name),
        }
    }
}

impl ExecutionPlan for StrataScanExec {
    fn name(&self) -> &str {
        "StrataScanExec"
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
        match &self.spec.residual {
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
                "StrataScanExec has no children".into(),
            ));
        }
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let mut stats = Statistics::new_unknown(&self.spec.schema);
        match args.partition() {
            // The whole scan, or its only partition.
            None => stats.num_rows = self.spec.row_count,
            Some(0) if self.spec.partitions == 1 => stats.num_rows = self.spec.row_count,
            Some(partition) if partition >= self.spec.partitions => {
                return Err(DataFusionError::Internal(format!(
                    "StrataScanExec has {} partitions, asked for statistics of {partition}",
                    self.spec.partitions
                )));
            }
            // Partition bounds are computed at execution: each gets an even share, estimated.
            Some(_) => {
                stats.num_rows = self
                    .spec
                    .row_count
                    .map(|rows| rows / self.spec.partitions)
                    .to_inexact();
            }
        }
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.spec.partitions {
            return Err(DataFusionError::Internal(format!(
                "StrataScanExec has {} partitions, asked for {partition}",
                self.spec.partitions
            )));
        }
        let spec = Arc::clone(&self.spec);
        let prepared = Arc::clone(&self.prepared);
        let this = StrataScanExec {
            spec: Arc::clone(&self.spec),
            prepared: Arc::clone(&self.prepared),
            metrics: self.metrics.clone(),
            cache: Arc::clone(&self.cache),
        };
        let builder =
            |name: &'static str| MetricBuilder::new(&self.metrics).counter(name, partition);
        let counters = PartitionCounters {
            output_rows: MetricBuilder::new(&self.metrics).output_rows(partition),
            rows_deduplicated: builder("rows_deduplicated"),
            rows_filtered: builder("rows_filtered"),
        };
        let mut finisher = Finisher::new(Arc::clone(&spec), counters);
        // The SST reads of this partition (its thread's, and for the base path its Parquet
        // reader's), under the engine's counter names.
        let reads: Vec<(ReadCounter, Count)> = ReadCounter::ALL
            .iter()
            .map(|&counter| (counter, builder(counter.name())))
            .collect();
        if spec.direct.is_some() {
            let base = BaseCounters {
                bytes_read: builder("bytes_read_directly"),
                rows_hidden: builder("rows_hidden_by_overlay"),
                reads,
                stats: Arc::new(ReadStats::default()),
            };
            return Ok(direct_stream(this, partition, finisher, base, context));
        }
        Ok(blocking_stream(Arc::clone(&spec.schema), move |emit| {
            let stats = Arc::new(ReadStats::default());
            let result = track_reads(&stats, || {
                let parts = prepared.get_or_init(|| this.prepare());
                let ranges = match parts {
                    Ok(parts) => parts.get(partition).cloned().unwrap_or_default(),
                    Err(message) => return Err(DataFusionError::Execution(message.clone())),
                };
                run_partition(&spec, &ranges, &mut finisher, emit)
            });
            for (counter, count) in &reads {
                count.add(stats.get(*counter) as usize);
            }
            result
        }))
    }
}

#[derive(Clone)]
struct PartitionCounters {
    output_rows: Count,
    rows_deduplicated: Count,
    rows_filtered: Count,
}

/// Turns the batches a partition reads (columns `read_columns`) into its output batches:
/// applies the residual filter and the limit, drops the filter-only columns, counts.
struct Finisher {
    spec: Arc<ScanSpec>,
    counters: PartitionCounters,
    remaining: Option<usize>,
}

impl Finisher {
    fn new(spec: Arc<ScanSpec>, counters: PartitionCounters) -> Self {
        let remaining = spec.limit;
        Finisher {
            spec,
            counters,
            remaining,
        }
    }

    /// True once the limit is reached.
    fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The output of one read batch (`None`: no row of it is output).
    fn finish(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        self.finish_read(batch, false)
    }

    /// The output of one read batch, which passed the residual filter already when
    /// `filtered` (`None`: no row of it is output).
    fn finish_read(&mut self, batch: RecordBatch, filtered: bool) -> Result<Option<RecordBatch>> {
        let spec = &self.spec;
        let mut batch = batch;
        if let Some(predicate) = spec.residual.as_ref().filter(|_| !filtered) {
            let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            let before = batch.num_rows();
            batch = filter_record_batch(&batch, mask.as_boolean())?;
            self.counters.rows_filtered.add(before - batch.num_rows());
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
        let columns = batch.columns()[..spec.projection_len].to_vec();
        let out = RecordBatch::try_new_with_options(
            Arc::clone(&spec.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?;
        self.counters.output_rows.add(out.num_rows());
        Ok(Some(out))
    }
}

/// The counters of a base-path partition.
struct BaseCounters {
    /// Bytes the Parquet reader fetched.
    bytes_read: Count,
    /// Base rows the overlay's keys hid (the anti-join).
    rows_hidden: Count,
    /// The read counters, and the reads of the partition (verification and the Parquet
    /// reader's polls, `track_reads`), added to them when the partition's state is dropped.
    reads: Vec<(ReadCounter, Count)>,
    stats: Arc<ReadStats>,
}

impl Drop for BaseCounters {
    fn drop(&mut self) {
        for (counter, count) in &self.reads {
            count.add(self.stats.get(*counter) as usize);
        }
    }
}

/// What a running base-path partition holds.
struct BaseState {
    /// The Parquet reader's stream and plan (`None`: the partition reads no file).
    reader: Option<direct::BaseReader>,
    /// Overlay batches still to output (partition 0 only).
    overlay: std::vec::IntoIter<RecordBatch>,
    finisher: Finisher,
    counters: BaseCounters,
    spec: Arc<ScanSpec>,
    metrics: ExecutionPlanMetricsSet,
    partition: usize,
}

impl BaseState {
    /// The next output batch of the partition (`None`: done).
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        use futures::StreamExt;
        let plan = self.spec.direct.as_ref()?;
        loop {
            if self.finisher.done() {
                return None;
            }
            let (batch, filtered) = match self.overlay.next() {
                Some(batch) => (batch, false),
                None => {
                    let reader = self.reader.as_mut()?;
                    let stats = &self.counters.stats;
                    let next = futures::future::poll_fn(|cx| {
                        track_reads(stats, || reader.stream.poll_next_unpin(cx))
                    });
                    match next.await {
                        Some(Ok(batch)) => match plan.anti_join_batch(batch) {
                            Ok((batch, hidden)) => {
                                self.counters.rows_hidden.add(hidden);
                                (batch, reader.filtered)
                            }
                            Err(error) => return Some(Err(error)),
                        },
                        Some(Err(error)) => return Some(Err(error)),
                        None => {
                            // The reader is done: its metrics are final.
                            if let Some(direct::BaseReader { exec, .. }) = self.reader.take() {
                                let bytes = exec
                                    .metrics()
                                    .and_then(|m| m.sum_by_name("bytes_scanned"))
                                    .map_or(0, |v| v.as_usize());
                                self.counters.bytes_read.add(bytes);
                                direct::copy_reader_metrics(&exec, &self.metrics, self.partition);
                            }
                            return None;
                        }
                    }
                }
            };
            match self.finisher.finish_read(batch, filtered) {
                Ok(Some(out)) => return Some(Ok(out)),
                Ok(None) => continue,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// The stream of one partition of a base-path scan ([`crate::direct`]): records the
/// statement metrics and verifies the partition's files on a blocking thread, outputs the
/// overlay's rows (partition 0), then reads the files with DataFusion's Parquet reader,
/// applies the anti-join and finishes each batch as after a merge.
fn direct_stream(
    scan: StrataScanExec,
    partition: usize,
    finisher: Finisher,
    counters: BaseCounters,
    context: Arc<TaskContext>,
) -> SendableRecordBatchStream {
    use futures::StreamExt;
    let schema = Arc::clone(&scan.spec.schema);
    let spec = Arc::clone(&scan.spec);
    let metrics = scan.metrics.clone();
    let stats = Arc::clone(&counters.stats);
    let start = async move {
        let verified = tokio::task::spawn_blocking(move || {
            track_reads(&stats, || {
                if let Err(message) = scan.prepared.get_or_init(|| scan.prepare()) {
                    return Err(DataFusionError::Execution(message.clone()));
                }
                match &scan.spec.direct {
                    Some(plan) => plan.verify(&scan.spec.view, partition).map(Some),
                    None => Ok(None),
                }
            })
        })
        .await
        .map_err(|e| DataFusionError::Internal(format!("a Strata reader thread failed: {e}")))??;
        let Some(plan) = &spec.direct else {
            return Err(DataFusionError::Internal(
                "a base-path stream of a scan without a base plan".into(),
            ));
        };
        let reader = match verified {
            Some(verified) if !verified.is_empty() => Some(plan.execute(
                partition,
                &verified,
                context,
                &finisher.counters.rows_filtered,
            )?),
            _ => None,
        };
        Ok(BaseState {
            reader,
            overlay: plan.overlay_batches(partition)?.into_iter(),
            finisher,
            counters,
            spec: Arc::clone(&spec),
            metrics,
            partition,
        })
    };
    let stream = futures::stream::once(start).flat_map(move |started| match started {
        Err(error) => futures::stream::iter([Err(error)]).boxed(),
        Ok(state) => futures::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match state.next().await {
                Some(Ok(batch)) => Some((Ok(batch), Some(state))),
                Some(Err(error)) => Some((Err(error), None)),
                None => None,
            }
        })
        .boxed(),
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// Reads the ranges of one partition, calling `emit` with each output batch; stops when
/// `emit` returns false (the consumer went away).
fn run_partition(
    spec: &ScanSpec,
    ranges: &[ScanRange],
    finisher: &mut Finisher,
    emit: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<()> {
    let counters = finisher.counters.clone();
    let mut remaining = spec.limit;
    // Emits one batch of `read_columns`; returns false to stop.
    let mut output = |batch: RecordBatch, remaining: &mut Option<usize>| -> Result<bool> {
        let out = finisher.finish(batch)?;
        *remaining = finisher.remaining;
        Ok(match out {
            Some(out) => emit(out) && !finisher.done(),
            None => !finisher.done(),
        })
    };
    for range in ranges {
        if remaining == Some(0) {
            break;
        }
        match range {
            ScanRange::Point(key) => {
                let Some(row) = spec.view.get_encoded(key).map_err(engine_error)? else {
                    continue;
                };
                let row = row.project(&spec.read_columns)?;
                if !output(row, &mut remaining)? {
                    return Ok(());
                }
            }
            ScanRange::Range(key_range) => {
                let mut options = ScanOptions::default().with_projection(spec.read_columns.clone());
                options.batch_rows = spec.batch_rows;
                if spec.residual.is_none() {
                    options.limit = remaining;
                }
                let mut iter = spec
                    .view
                    .scan(key_range.clone(), options)
                    .map_err(engine_error)?;
                let mut keep_going = true;
                for batch in iter.by_ref() {
                    let batch = batch.map_err(engine_error)?;
                    if !output(batch, &mut remaining)? {
                        keep_going = false;
                        break;
                    }
                }
                counters
                    .rows_deduplicated
                    .add(iter.rows_deduplicated() as usize);
                if !keep_going {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// A record batch stream fed by `produce` on a blocking thread through a bounded channel.
/// `produce` gets an `emit` callback that returns false once the stream was dropped.
pub fn blocking_stream<F>(schema: SchemaRef, produce: F) -> SendableRecordBatchStream
where
    F: FnOnce(&mut dyn FnMut(RecordBatch) -> bool) -> Result<()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(SCAN_CHANNEL_BATCHES);
    let start = futures::stream::once(async move {
        // The task reports everything through the channel, including a panic (as an error,
        // so a failed read never looks like a short, successful one).
        drop(tokio::task::spawn_blocking(move || {
            let sender = tx.clone();
            let mut emit = |batch: RecordBatch| sender.blocking_send(Ok(batch)).is_ok();
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(&mut emit)));
            let error = match outcome {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error,
                Err(_) => DataFusionError::Internal("a Strata reader thread panicked".into()),
            };
            let _ = tx.blocking_send(Err(error));
        }));
        rx
    });
    use futures::StreamExt;
    let stream = start.flat_map(|rx| {
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}
