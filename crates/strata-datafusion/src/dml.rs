//! DML on Strata tables: `INSERT` (upsert), `INSERT OVERWRITE`, `DELETE`, `UPDATE` and
//! `TRUNCATE`, each atomic: one engine write batch, or for a large `INSERT` one bulk load.
//!
//! ## Semantics
//!
//! * `INSERT INTO t ...` (and `REPLACE INTO`) upserts by primary key: a row whose key exists
//!   replaces it, and within one statement the last row of a key wins. "Last" is by the
//!   statement's input order, which is defined: the query runs as one ordered stream
//!   ([`crate::planner`] plans it with one partition) -- its `ORDER BY` if it has one, else
//!   `VALUES` as written, files in path order and rows in file order, `generate_series`
//!   ascending, a Strata table in key order, the branches of a `UNION ALL` in turn -- and the
//!   sink reads any partitions left one after the other ([`InputOrderExec`]), never in arrival
//!   order. Row `i` of the input is applied after rows `0..i`. Tables without a primary key
//!   append (each row gets a new hidden row id, in input order).
//! * `INSERT OVERWRITE t ...` deletes every row of `t` and writes the new ones, atomically.
//! * `DELETE FROM t WHERE ...` writes a tombstone per matching key.
//! * `UPDATE t SET ... WHERE ...` writes the new version of each matching row; when a key
//!   column changes, the old key gets a tombstone in the same batch (delete + insert).
//!   Primary keys stay unique, checked as SQL does, at the end of the statement: an `UPDATE`
//!   that would leave two rows with one key -- a row moved onto the key of a row the statement
//!   does not move away, or two rows moved onto one new key -- fails with a duplicate-key error
//!   and writes nothing. Keys that only trade places (`SET id = 3 - id` over ids 1 and 2) are
//!   fine. Rows of tables without a primary key get new row ids.
//! * `TRUNCATE t` deletes every row.
//!
//! ## Small and large `INSERT`s
//!
//! An `INSERT` (and `CREATE TABLE ... AS`, through [`crate::catalog`]) holds its rows until
//! they pass `strata.bulk_load_bytes` of Arrow memory (a session setting, default 64 MiB,
//! never more than the database's `write_batch_bytes_max`). A statement that ends before is
//! written as one WAL batch ([`Table::write`]), as every statement used to be. A larger one
//! switches to a *bulk load* ([`strata_engine::BulkLoad`]): the rows held so far, then the
//! rest of the input as it is computed, stream to a blocking thread that writes sorted L0
//! SSTs of about `strata.bulk_load_bytes` each, and the load commits with one manifest edit
//! once the input has ended without error ([`RowWriter`]). The switch is automatic and
//! invisible to the statement's meaning: same upsert, same last-row-wins order (the load
//! numbers rows in input order), same errors, same count. Its memory is bounded (the held
//! rows, a few batches in flight, one file's sort), its size only by the disk. Writers of
//! other statements do not wait for a load (see `strata_engine::db::ingest`). `INSERT
//! OVERWRITE` stays one WAL batch (its tombstones and rows must commit together), capped by
//! `write_batch_bytes_max`.
//!
//! ## Invariants
//!
//! * Nothing is visible until the whole statement's rows are known: the write is one
//!   [`Table::write`] call (one WAL record) or one bulk load (one manifest edit), so a
//!   statement is applied completely or not at all, also across a crash. Type errors, NULL
//!   keys, duplicate keys of an `UPDATE` and unknown columns fail before it; an error that
//!   reaches a bulk load part-way (a bad row late in the input, a failing query, a full disk,
//!   a cancelled statement) discards it, deleting its files.
//! * The rows of an `INSERT` reach [`Table::write`] or the bulk load in input order (the
//!   engine keeps the last row of a key within a batch; a load gives row `i` a sequence
//!   number above rows `0..i`), so a later row of the input wins over an earlier one whatever
//!   file it lands in.
//! * Rows are found through a scan of one pinned [`ReadView`], with the filters evaluated after
//!   the merge (never on a stale version); key predicates narrow the scan to key ranges. The
//!   duplicate-key check of an `UPDATE` reads the same view.
//! * A statement that must hold its rows in memory until the write (`INSERT OVERWRITE`,
//!   `DELETE`, `UPDATE`) fails with a clear error past the engine's `write_batch_bytes_max`
//!   instead of growing without bound; an `INSERT` holds at most `strata.bulk_load_bytes`.
//! * Plans are lazy: nothing is read or written before `execute`.
//! * The filters and assignments of a `DELETE`/`UPDATE` arrive over the table's own columns:
//!   [`crate::planner`] inlines whatever projections the optimizer added and refuses
//!   subqueries, joins and `LIMIT` (which DataFusion would hand over as "no filter").

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt64Array};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, col};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
};
use futures::StreamExt;
use strata_engine::{
    IngestOptions, KeyRange, Mutation, ROWID_COLUMN, ReadView, ScanOptions, Table, WriteOptions,
};

use crate::keys::{self, ScanRange};
use crate::provider::{StrataTable, blocking_stream, strip_qualifiers};
use crate::session::engine_error;

/// The schema of the one-row result of a DML statement: `count UInt64`.
pub fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

fn count_batch(count: u64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![count]))],
    )?)
}

/// Tracks the memory a statement holds against the engine's write batch limit.
struct Budget {
    used: usize,
    max: usize,
    what: &'static str,
}

impl Budget {
    fn new(what: &'static str, max: usize) -> Self {
        Budget { used: 0, max, what }
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        self.used += strata_engine::batch_bytes(batch);
        if self.used > self.max {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} touches more than one atomic write batch can hold ({} bytes, the \
                 database's write_batch_bytes_max); split it into smaller statements",
                self.what, self.max
            )));
        }
        Ok(())
    }
}

/// Makes `batch` a batch of exactly `schema` (the table's user schema, whose primary-key
/// columns are `key`): same column count, columns cast to the table's types, NOT NULL (and
/// primary-key) columns checked for NULLs with an error naming the column.
pub fn conform_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
    key: &[String],
) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(DataFusionError::Plan(format!(
            "expected {} columns ({}), got {}",
            schema.fields().len(),
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", "),
            batch.num_columns()
        )));
    }
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (column, field) in batch.columns().iter().zip(schema.fields()) {
        let column = if column.data_type() == field.data_type() {
            Arc::clone(column)
        } else {
            cast(column, field.data_type()).map_err(|e| {
                DataFusionError::Execution(format!(
                    "column '{}' expects {}: {e}",
                    field.name(),
                    field.data_type()
                ))
            })?
        };
        if !field.is_nullable() && column.null_count() > 0 {
            // Only a key column gets the hint: a value column is NOT NULL as declared.
            let why = if key.iter().any(|k| k == field.name()) {
                " (primary-key columns are NOT NULL)"
            } else {
                ""
            };
            return Err(DataFusionError::Execution(format!(
                "NULL value in NOT NULL column '{}'{why}; nothing was written",
                field.name()
            )));
        }
        columns.push(column);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The `INSERT` plan: DataFusion's sink operator over a [`StrataSink`].
pub fn insert_plan(
    table: &StrataTable,
    input: Arc<dyn ExecutionPlan>,
    op: InsertOp,
) -> Result<Arc<dyn ExecutionPlan>> {
    let sink = StrataSink {
        table: table.table().clone(),
        schema: table.table().schema(),
        overwrite: matches!(op, InsertOp::Overwrite),
        bytes_max: table.statement_bytes_max(),
    };
    let input: Arc<dyn ExecutionPlan> = Arc::new(InputOrderExec::new(input));
    Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
}

/// The input of an `INSERT` as one stream in input order: its partitions one after the other
/// (all of partition 0, then all of partition 1, ...), never interleaved by arrival as
/// DataFusion's partition merge would. With one input partition it passes the stream through.
pub struct InputOrderExec {
    input: Arc<dyn ExecutionPlan>,
    cache: Arc<PlanProperties>,
}

impl fmt::Debug for InputOrderExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputOrderExec").finish_non_exhaustive()
    }
}

impl InputOrderExec {
    /// Reads `input`'s partitions in order.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = input.properties();
        // One partition keeps its ordering; the concatenation of several does not have one.
        let eq_properties = if properties.partitioning.partition_count() == 1 {
            properties.eq_properties.clone()
        } else {
            EquivalenceProperties::new(input.schema())
        };
        let cache = PlanProperties::new(
            eq_properties,
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            properties.boundedness,
        );
        InputOrderExec {
            input,
            cache: Arc::new(cache),
        }
    }

    fn partitions(&self) -> usize {
        self.input.properties().partitioning.partition_count()
    }
}

impl DisplayAs for InputOrderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "InputOrderExec: partitions={} in order",
            self.partitions()
        )
    }
}

impl ExecutionPlan for InputOrderExec {
    fn name(&self) -> &str {
        "InputOrderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![self.partitions() == 1]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // More partitions only split the input into pieces read one after the other.
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|c| {
            DataFusionError::Internal(format!("InputOrderExec has one child, got {}", c.len()))
        })?;
        Ok(Arc::new(InputOrderExec::new(input)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "InputOrderExec has one partition, asked for {partition}"
            )));
        }
        if self.partitions() == 1 {
            return self.input.execute(0, context);
        }
        let input = Arc::clone(&self.input);
        // Partition i is started only when partition i - 1 is exhausted.
        let batches = futures::stream::iter(0..self.partitions())
            .map(move |i| match input.execute(i, Arc::clone(&context)) {
                Ok(stream) => stream.boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            batches,
        )))
    }
}

/// Writes the rows of one `INSERT` as one atomic batch.
pub struct StrataSink {
    table: Table,
    schema: SchemaRef,
    overwrite: bool,
    bytes_max: usize,
}

impl fmt::Debug for StrataSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrataSink")
            .field("table", &self.table.name())
            .field("overwrite", &self.overwrite)
            .finish()
    }
}

impl DisplayAs for StrataSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let mode = if self.overwrite {
            "overwrite"
        } else if self.table.primary_key().is_empty() {
            "append"
        } else {
            "upsert"
        };
        write!(f, "StrataSink: table={}, mode={mode}", self.table.name())
    }
}

#[async_trait]
impl DataSink for StrataSink {
    fn metrics(&self) -> Option<MetricsSet> {
        None
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        if !self.overwrite {
            let threshold = crate::catalog::bulk_load_bytes(context.session_config().options());
            let writer = RowWriter {
                table: self.table.clone(),
                schema: Arc::clone(&self.schema),
                bulk_bytes: threshold.min(self.bytes_max),
                sync: false,
            };
            return writer.write(data).await;
        }
        self.overwrite(data).await
    }
}

impl StrataSink {
    /// `INSERT OVERWRITE`: the old keys' tombstones and the new rows in one WAL batch.
    async fn overwrite(&self, mut data: SendableRecordBatchStream) -> Result<u64> {
        let max = self.bytes_max;
        let mut budget = Budget::new("INSERT OVERWRITE", max);
        let mut batches = Vec::new();
        while let Some(batch) = data.next().await {
            let batch = conform_batch(&batch?, &self.schema, self.table.primary_key())?;
            if batch.num_rows() == 0 {
                continue;
            }
            budget.add(&batch)?;
            batches.push(batch);
        }
        let table = self.table.clone();
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let view = table.view().map_err(engine_error)?;
            let mut budget = Budget::new("INSERT OVERWRITE", max);
            let old_keys = find_rows(&table, &view, None, None, &mut budget)?.keys;
            let mut mutations: Vec<Mutation<'_>> = old_keys.iter().map(Mutation::Delete).collect();
            mutations.extend(batches.iter().map(Mutation::Upsert));
            if mutations.is_empty() {
                return Ok(0);
            }
            let written = table
                .write(&mutations, WriteOptions::default())
                .map_err(engine_error)?;
            let expected = rows + old_keys.iter().map(|k| k.num_rows() as u64).sum::<u64>();
            if written != expected {
                return Err(DataFusionError::Internal(format!(
                    "INSERT OVERWRITE into '{}' wrote {written} entries, expected {expected}",
                    table.name()
                )));
            }
            Ok(rows)
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("the INSERT writer failed: {e}")))?
    }
}

/// Batches in flight between a statement's input and its bulk load.
const BULK_CHANNEL_BATCHES: usize = 4;

/// What the input side of a bulk load sends to the thread that writes it.
enum Load {
    Rows(RecordBatch),
    /// The input ended without error: commit.
    End,
}

/// Writes the rows of an `INSERT` (or of `CREATE TABLE ... AS`) into a table, choosing the
/// path by size (see the module docs): the rows are held until they pass `bulk_bytes` of
/// Arrow memory; a statement that ends before goes to the WAL as one atomic batch, a larger
/// one streams, held rows first, into a bulk load ([`strata_engine::BulkLoad`]).
pub(crate) struct RowWriter {
    pub table: Table,
    /// The table's user schema.
    pub schema: SchemaRef,
    /// Rows held before the statement switches to a bulk load.
    pub bulk_bytes: usize,
    /// Sync the WAL batch whatever the database's sync mode.
    pub sync: bool,
}

impl RowWriter {
    /// Writes every row of `data` in input order, atomically; returns the rows written.
    pub async fn write(self, mut data: SendableRecordBatchStream) -> Result<u64> {
        let mut held: Vec<RecordBatch> = Vec::new();
        let mut held_bytes = 0usize;
        while let Some(batch) = data.next().await {
            let batch = conform_batch(&batch?, &self.schema, self.table.primary_key())?;
            if batch.num_rows() == 0 {
                continue;
            }
            held_bytes += strata_engine::batch_bytes(&batch);
            held.push(batch);
            if held_bytes > self.bulk_bytes {
                return self.bulk(held, Some(data)).await;
            }
        }
        if held.is_empty() {
            return Ok(0);
        }
        let table = self.table.clone();
        let sync = self.sync;
        let (held, outcome) = tokio::task::spawn_blocking(move || {
            let rows: u64 = held.iter().map(|b| b.num_rows() as u64).sum();
            let mutations: Vec<Mutation<'_>> = held.iter().map(Mutation::Upsert).collect();
            let outcome = table
                .write(&mutations, WriteOptions { sync })
                .map(|written| {
                    debug_assert_eq!(written, rows, "one entry per row");
                    rows
                });
            drop(mutations);
            (held, outcome)
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("the INSERT writer failed: {e}")))?;
        match outcome {
            Ok(rows) => Ok(rows),
            // Held rows under the threshold can still encode to more than one WAL batch
            // holds (the WAL counts encoded bytes, the threshold Arrow memory).
            Err(strata_engine::Error::LimitExceeded(_)) => self.bulk(held, None).await,
            Err(e) => Err(engine_error(e)),
        }
    }

    /// Loads `held`, then the rest of `data`, in one bulk load. The load runs on a blocking
    /// thread fed through a bounded channel, so the input is computed while files are
    /// written; it commits only when the input ended without error.
    async fn bulk(
        self,
        held: Vec<RecordBatch>,
        data: Option<SendableRecordBatchStream>,
    ) -> Result<u64> {
        let (send, mut receive) = tokio::sync::mpsc::channel::<Load>(BULK_CHANNEL_BATCHES);
        let table = self.table.clone();
        // Files of about the size of the rows held before the switch: the statement's memory
        // is bounded by `bulk_bytes` (and the sort's copies of one file's rows) either way.
        let options = IngestOptions {
            chunk_bytes: self.bulk_bytes.max(1),
            ..IngestOptions::default()
        };
        let loader = tokio::task::spawn_blocking(move || -> Result<u64> {
            let mut load = table.bulk_load(&options).map_err(engine_error)?;
            loop {
                match receive.blocking_recv() {
                    Some(Load::Rows(batch)) => load.push(batch).map_err(engine_error)?,
                    Some(Load::End) => return load.finish().map_err(engine_error),
                    // The input failed or the statement was cancelled: dropping the load
                    // deletes its files.
                    None => {
                        return Err(DataFusionError::Execution(
                            "the INSERT's input ended early; nothing was written".into(),
                        ));
                    }
                }
            }
        });
        let fed = self.feed(held, data, &send).await;
        let end = match fed {
            Ok(true) => send.send(Load::End).await.is_ok(),
            Ok(false) => false,
            Err(error) => {
                drop(send);
                // The loader sees the channel close and discards what it wrote.
                let _ = loader.await;
                return Err(error);
            }
        };
        drop(send);
        let loaded = loader
            .await
            .map_err(|e| DataFusionError::Execution(format!("the bulk load failed: {e}")))?;
        debug_assert!(
            end || loaded.is_err(),
            "a load commits only after its input ended"
        );
        loaded
    }

    /// Sends every row to the loader; `Ok(false)` when the loader stopped (its error is the
    /// statement's).
    async fn feed(
        &self,
        held: Vec<RecordBatch>,
        data: Option<SendableRecordBatchStream>,
        send: &tokio::sync::mpsc::Sender<Load>,
    ) -> Result<bool> {
        for batch in held {
            if send.send(Load::Rows(batch)).await.is_err() {
                return Ok(false);
            }
        }
        let Some(mut data) = data else {
            return Ok(true);
        };
        while let Some(batch) = data.next().await {
            let batch = conform_batch(&batch?, &self.schema, self.table.primary_key())?;
            if batch.num_rows() == 0 {
                continue;
            }
            if send.send(Load::Rows(batch)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The rows a DML statement matched.
struct Found {
    /// Key batches (the primary-key columns, or `_rowid`), one per scanned batch.
    keys: Vec<RecordBatch>,
    /// The full rows (user schema), when asked for.
    rows: Vec<RecordBatch>,
    count: u64,
}

/// Finds the live rows in `ranges` (all: `None`) that satisfy `predicate` (over the user
/// schema), reading `view`. `keep_rows` keeps the full rows too (UPDATE).
fn find_rows(
    table: &Table,
    view: &ReadView,
    ranges: Option<&[ScanRange]>,
    predicate: Option<&Arc<dyn PhysicalExpr>>,
    budget: &mut Budget,
) -> Result<Found> {
    find_rows_with(table, view, ranges, predicate, budget, false)
}

fn find_rows_with(
    table: &Table,
    view: &ReadView,
    ranges: Option<&[ScanRange]>,
    predicate: Option<&Arc<dyn PhysicalExpr>>,
    budget: &mut Budget,
    keep_rows: bool,
) -> Result<Found> {
    let user = table.schema();
    let mut found = Found {
        keys: Vec::new(),
        rows: Vec::new(),
        count: 0,
    };
    let mut accept = |batch: RecordBatch, rowids: Option<ArrayRef>| -> Result<()> {
        let (batch, rowids) = match predicate {
            Some(p) => {
                let mask = p.evaluate(&batch)?.into_array(batch.num_rows())?;
                let mask = mask.as_boolean();
                let rowids = match rowids {
                    Some(ids) => Some(arrow::compute::filter(&ids, mask)?),
                    None => None,
                };
                (filter_record_batch(&batch, mask)?, rowids)
            }
            None => (batch, rowids),
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        found.count += batch.num_rows() as u64;
        let keys = match rowids {
            Some(ids) => RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new(
                    ROWID_COLUMN,
                    DataType::UInt64,
                    false,
                )])),
                vec![ids],
            )?,
            None => {
                let indices: Vec<usize> = table
                    .primary_key()
                    .iter()
                    .map(|k| user.index_of(k))
                    .collect::<std::result::Result<_, _>>()?;
                batch.project(&indices)?
            }
        };
        budget.add(&keys)?;
        found.keys.push(keys);
        if keep_rows {
            budget.add(&batch)?;
            found.rows.push(batch);
        }
        Ok(())
    };
    if table.primary_key().is_empty() {
        // The newest live version of each row, with its hidden row id (the key to delete it by).
        let scan = view
            .scan(KeyRange::all(), ScanOptions::default().with_row_ids())
            .map_err(engine_error)?;
        let n = user.fields().len();
        for batch in scan {
            let batch = batch.map_err(engine_error)?;
            debug_assert_eq!(batch.schema().field(n).name(), ROWID_COLUMN);
            let rows = RecordBatch::try_new(Arc::clone(&user), batch.columns()[..n].to_vec())?;
            accept(rows, Some(Arc::clone(batch.column(n))))?;
        }
        return Ok(found);
    }
    let all = [ScanRange::Range(KeyRange::all())];
    for range in ranges.unwrap_or(&all) {
        match range {
            ScanRange::Point(key) => {
                if let Some(row) = view.get_encoded(key).map_err(engine_error)? {
                    let row = RecordBatch::try_new(Arc::clone(&user), row.columns().to_vec())?;
                    accept(row, None)?;
                }
            }
            ScanRange::Range(r) => {
                let scan = view
                    .scan(r.clone(), ScanOptions::default())
                    .map_err(engine_error)?;
                for batch in scan {
                    let batch = batch.map_err(engine_error)?;
                    let batch = RecordBatch::try_new(Arc::clone(&user), batch.columns().to_vec())?;
                    accept(batch, None)?;
                }
            }
        }
    }
    Ok(found)
}

/// Physical predicate of the conjunction of `filters` over the table's user schema.
fn physical_predicate(
    table: &Table,
    state: &dyn Session,
    filters: &[Expr],
) -> Result<Option<Arc<dyn PhysicalExpr>>> {
    let filters: Vec<Expr> = filters
        .iter()
        .map(|f| strip_qualifiers(f.clone()))
        .collect::<Result<_>>()?;
    match conjunction(filters) {
        Some(predicate) => {
            let df_schema = DFSchema::try_from(table.schema().as_ref().clone())?;
            Ok(Some(state.create_physical_expr(predicate, &df_schema)?))
        }
        None => Ok(None),
    }
}

/// The `DELETE` (and `TRUNCATE`: no filters) plan.
pub fn delete_plan(
    table: &StrataTable,
    state: &dyn Session,
    filters: Vec<Expr>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let engine_table = table.table().clone();
    if filters.iter().any(matches_nothing) {
        return Ok(Arc::new(StrataDmlExec::nothing(engine_table, "DELETE")));
    }
    let predicate = physical_predicate(&engine_table, state, &filters)?;
    let ranges = keys::key_ranges(engine_table.table_schema(), &filters);
    let description = describe("DELETE", &filters);
    Ok(Arc::new(StrataDmlExec::new(
        engine_table,
        description,
        table.statement_bytes_max(),
        DmlAction::Delete { predicate, ranges },
    )))
}

/// The `UPDATE` plan.
pub fn update_plan(
    table: &StrataTable,
    state: &dyn Session,
    assignments: Vec<(String, Expr)>,
    filters: Vec<Expr>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let engine_table = table.table().clone();
    let user = engine_table.schema();
    for (name, _) in &assignments {
        if user.index_of(name).is_err() {
            return Err(DataFusionError::Plan(format!(
                "UPDATE of unknown column '{name}' in table '{}'",
                engine_table.name()
            )));
        }
    }
    if filters.iter().any(matches_nothing) {
        return Ok(Arc::new(StrataDmlExec::nothing(engine_table, "UPDATE")));
    }
    let df_schema = DFSchema::try_from(user.as_ref().clone())?;
    let mut key_changes = false;
    let mut values = Vec::with_capacity(user.fields().len());
    for field in user.fields() {
        let expr = match assignments.iter().find(|(n, _)| n == field.name()) {
            Some((_, e)) => {
                if engine_table.primary_key().contains(field.name()) {
                    key_changes = true;
                }
                strip_qualifiers(e.clone())?
            }
            None => col(datafusion::common::Column::new_unqualified(field.name())),
        };
        values.push(state.create_physical_expr(expr, &df_schema)?);
    }
    let predicate = physical_predicate(&engine_table, state, &filters)?;
    let ranges = keys::key_ranges(engine_table.table_schema(), &filters);
    let set: Vec<String> = assignments
        .iter()
        .map(|(n, e)| format!("{n} = {e}"))
        .collect();
    let description = format!("{}, set=[{}]", describe("UPDATE", &filters), set.join(", "));
    Ok(Arc::new(StrataDmlExec::new(
        engine_table,
        description,
        table.statement_bytes_max(),
        DmlAction::Update {
            predicate,
            ranges,
            values,
            key_changes,
        },
    )))
}

/// True for a literal `false` or `NULL` filter, which matches no row (the planner turns a
/// `WHERE` clause the optimizer folded to an empty relation into `false`).
fn matches_nothing(filter: &Expr) -> bool {
    matches!(
        filter,
        Expr::Literal(
            ScalarValue::Boolean(Some(false)) | ScalarValue::Boolean(None) | ScalarValue::Null,
            _
        )
    )
}

fn describe(op: &str, filters: &[Expr]) -> String {
    if filters.is_empty() {
        format!("op={op}, filter=none (all rows)")
    } else {
        let f: Vec<String> = filters.iter().map(|e| e.to_string()).collect();
        format!("op={op}, filter={}", f.join(" AND "))
    }
}

/// What a [`StrataDmlExec`] does.
enum DmlAction {
    /// Deletes the matching rows (all rows without a predicate).
    Delete {
        predicate: Option<Arc<dyn PhysicalExpr>>,
        ranges: Option<Vec<ScanRange>>,
    },
    /// Rewrites the matching rows: `values[i]` computes user column `i` from the old row.
    Update {
        predicate: Option<Arc<dyn PhysicalExpr>>,
        ranges: Option<Vec<ScanRange>>,
        values: Vec<Arc<dyn PhysicalExpr>>,
        key_changes: bool,
    },
    /// Matches nothing (a `WHERE` clause the optimizer folded to false).
    Nothing,
}

/// A `DELETE`, `UPDATE` or `TRUNCATE` of one Strata table: finds the rows at execution and
/// writes one atomic batch; returns the `count` row.
pub struct StrataDmlExec {
    table: Table,
    description: String,
    bytes_max: usize,
    action: Arc<DmlAction>,
    cache: Arc<PlanProperties>,
}

impl fmt::Debug for StrataDmlExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrataDmlExec")
            .field("table", &self.table.name())
            .field("description", &self.description)
            .finish()
    }
}

impl StrataDmlExec {
    fn new(table: Table, description: String, bytes_max: usize, action: DmlAction) -> Self {
        let cache = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        StrataDmlExec {
            table,
            description,
            bytes_max,
            action: Arc::new(action),
            cache: Arc::new(cache),
        }
    }

    /// A statement that matches no row (returns `count = 0`, writes nothing).
    fn nothing(table: Table, op: &str) -> Self {
        let description = format!("op={op}, filter=false (no rows)");
        StrataDmlExec::new(table, description, 0, DmlAction::Nothing)
    }
}

impl DisplayAs for StrataDmlExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StrataDmlExec: table={}, {}",
            self.table.name(),
            self.description
        )
    }
}

impl ExecutionPlan for StrataDmlExec {
    fn name(&self) -> &str {
        "StrataDmlExec"
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
        let exprs: Vec<&Arc<dyn PhysicalExpr>> = match self.action.as_ref() {
            DmlAction::Delete { predicate, .. } => predicate.iter().collect(),
            DmlAction::Update {
                predicate, values, ..
            } => predicate.iter().chain(values).collect(),
            DmlAction::Nothing => Vec::new(),
        };
        for expr in exprs {
            if f(expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal(
                "StrataDmlExec has no children".into(),
            ));
        }
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "StrataDmlExec has one partition, asked for {partition}"
            )));
        }
        let table = self.table.clone();
        let action = Arc::clone(&self.action);
        let max = self.bytes_max;
        Ok(blocking_stream(count_schema(), move |emit| {
            let count = run_dml(&table, &action, max)?;
            emit(count_batch(count)?);
            Ok(())
        }))
    }
}

/// Finds the rows of a DELETE/UPDATE and writes the statement's one batch.
fn run_dml(table: &Table, action: &DmlAction, max: usize) -> Result<u64> {
    let view = table.view().map_err(engine_error)?;
    match action {
        DmlAction::Nothing => Ok(0),
        DmlAction::Delete { predicate, ranges } => {
            let mut budget = Budget::new("DELETE", max);
            let found = find_rows(
                table,
                &view,
                ranges.as_deref(),
                predicate.as_ref(),
                &mut budget,
            )?;
            if found.count == 0 {
                return Ok(0);
            }
            let mutations: Vec<Mutation<'_>> = found.keys.iter().map(Mutation::Delete).collect();
            table
                .write(&mutations, WriteOptions::default())
                .map_err(engine_error)?;
            Ok(found.count)
        }
        DmlAction::Update {
            predicate,
            ranges,
            values,
            key_changes,
        } => {
            let mut budget = Budget::new("UPDATE", max);
            let found = find_rows_with(
                table,
                &view,
                ranges.as_deref(),
                predicate.as_ref(),
                &mut budget,
                true,
            )?;
            if found.count == 0 {
                return Ok(0);
            }
            let schema = table.schema();
            let mut new_rows = Vec::with_capacity(found.rows.len());
            for batch in &found.rows {
                let columns = values
                    .iter()
                    .map(|v| v.evaluate(batch)?.into_array(batch.num_rows()))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                let raw = RecordBatch::try_new(
                    Arc::new(Schema::new(
                        columns
                            .iter()
                            .zip(schema.fields())
                            .map(|(c, f)| Field::new(f.name(), c.data_type().clone(), true))
                            .collect::<Vec<_>>(),
                    )),
                    columns,
                )?;
                new_rows.push(conform_batch(&raw, &schema, table.primary_key())?);
            }
            if *key_changes {
                check_unique_keys(table, &view, &found.keys, &new_rows)?;
            }
            // Tables without a key get new row ids, so their old rows always go; keyed rows
            // go only when their key may change (an upsert of the same key replaces them).
            let delete_old = *key_changes || table.primary_key().is_empty();
            let mut mutations: Vec<Mutation<'_>> = if delete_old {
                found.keys.iter().map(Mutation::Delete).collect()
            } else {
                Vec::new()
            };
            mutations.extend(new_rows.iter().map(Mutation::Upsert));
            table
                .write(&mutations, WriteOptions::default())
                .map_err(engine_error)?;
            Ok(found.count)
        }
    }
}

/// Up to this many new keys are checked by point lookups; more by one range scan.
const KEY_CHECK_POINT_LOOKUPS_MAX: usize = 1024;

/// Refuses an `UPDATE` of key columns that would leave two rows with one primary key (see the
/// module docs): `old_keys` are the keys of the updated rows, `new_rows` their new versions.
/// A new key is a duplicate when two new rows have it, or when a row of `view` has it that the
/// statement does not update (an updated row's old key is deleted by the same batch).
fn check_unique_keys(
    table: &Table,
    view: &ReadView,
    old_keys: &[RecordBatch],
    new_rows: &[RecordBatch],
) -> Result<()> {
    let schema = table.table_schema();
    let key_names = table.primary_key();
    debug_assert!(
        !key_names.is_empty(),
        "tables with a row id have no key to check"
    );
    let user = table.schema();
    let key_indices: Vec<usize> = key_names
        .iter()
        .map(|k| user.index_of(k))
        .collect::<std::result::Result<_, _>>()?;
    let encode = |keys: &RecordBatch| schema.encode_key_batch(keys).map_err(engine_error);

    let mut moved_away = std::collections::HashSet::new();
    for keys in old_keys {
        moved_away.extend(encode(keys)?.iter().map(<[u8]>::to_vec));
    }
    // (encoded new key, batch, row), sorted by key.
    let mut new_keys: Vec<(Vec<u8>, usize, usize)> = Vec::new();
    for (b, batch) in new_rows.iter().enumerate() {
        let encoded = encode(&batch.project(&key_indices)?)?;
        new_keys.extend(encoded.iter().enumerate().map(|(r, k)| (k.to_vec(), b, r)));
    }
    new_keys.sort_unstable();
    let duplicate = |b: usize, r: usize, how: &str| {
        let key: Vec<String> = key_names
            .iter()
            .zip(&key_indices)
            .map(|(name, i)| {
                let value = arrow::util::display::array_value_to_string(new_rows[b].column(*i), r)
                    .unwrap_or_else(|_| "?".into());
                format!("{name} = {value}")
            })
            .collect();
        DataFusionError::Execution(format!(
            "duplicate primary key ({}) in table '{}': the UPDATE {how}; nothing was written",
            key.join(", "),
            table.name()
        ))
    };
    for pair in new_keys.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(duplicate(pair[1].1, pair[1].2, "gives two rows this key"));
        }
    }
    let taken = "moves a row onto the key of a row it does not move away";
    new_keys.retain(|(key, _, _)| !moved_away.contains(key));
    debug_assert!(new_keys.windows(2).all(|w| w[0].0 < w[1].0));
    if new_keys.len() <= KEY_CHECK_POINT_LOOKUPS_MAX {
        for (key, b, r) in &new_keys {
            if view.get_encoded(key).map_err(engine_error)?.is_some() {
                return Err(duplicate(*b, *r, taken));
            }
        }
        return Ok(());
    }
    // Many keys: one scan of the span they cover, keys only, merged against the sorted list.
    let (Some(first), Some(last)) = (new_keys.first(), new_keys.last()) else {
        return Ok(());
    };
    let range = KeyRange::new(
        std::ops::Bound::Included(first.0.clone()),
        std::ops::Bound::Included(last.0.clone()),
    );
    let scan = view
        .scan(
            range,
            ScanOptions::default().with_projection(key_indices.clone()),
        )
        .map_err(engine_error)?;
    for batch in scan {
        let batch = batch.map_err(engine_error)?;
        for existing in encode(&batch)?.iter() {
            if let Ok(i) = new_keys.binary_search_by(|(k, _, _)| k.as_slice().cmp(existing)) {
                return Err(duplicate(new_keys[i].1, new_keys[i].2, taken));
            }
        }
    }
    Ok(())
}
