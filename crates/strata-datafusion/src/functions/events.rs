//! `generate_events(rows [, first_id])`: the deterministic "events" data set of Strata's
//! analytic benchmarks, generated lazily in batches.
//!
//! Row `i` (for `i` in `first_id .. first_id + rows`) is, with `splitmix64` as defined in the
//! benchmark workloads (wrapping u64 arithmetic):
//!
//! | column | type | value |
//! |---|---|---|
//! | `id` | `BIGINT NOT NULL` | `i` |
//! | `user_id` | `INT NOT NULL` | `splitmix64(i) % 100000` |
//! | `kind` | `VARCHAR NOT NULL` | `'k' \|\| (splitmix64(i ^ 0xA5A5A5A5A5A5A5A5) % 20)` |
//! | `amount` | `DOUBLE NOT NULL` | `(splitmix64(i ^ 0x5A5A5A5A5A5A5A5A) % 100000) / 100.0` |
//! | `ts` | `TIMESTAMP(6) NOT NULL` | `2024-01-01T00:00:00 + 3 s * i` (microseconds, no time zone) |
//!
//! The intended primary key is `(id)` ([`EVENTS_PRIMARY_KEY`]); [`events_create_table_sql`]
//! gives the matching `CREATE TABLE`, so a sample table is two statements:
//!
//! ```sql
//! CREATE TABLE events (id BIGINT NOT NULL, user_id INT NOT NULL, kind VARCHAR NOT NULL,
//!   amount DOUBLE NOT NULL, ts TIMESTAMP(6) NOT NULL, PRIMARY KEY (id));
//! INSERT INTO events SELECT * FROM generate_events(100000);
//! ```
//!
//! Memory is bounded: each partition holds one batch (`datafusion.execution.batch_size`
//! rows) at a time, so 10 million rows stream through in constant memory. The rows are split
//! into up to `target_partitions` contiguous id ranges, each emitted in id order (declared as
//! the partition's ordering); a result of at most one batch is a single partition.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Float64Array, Int32Array, Int64Array, RecordBatch, StringViewBuilder, TimestampMicrosecondArray,
};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::memory::{LazyBatchGenerator, LazyMemoryExec};
use parking_lot::RwLock;

use super::{check_arity, int_arg};

/// The primary key the events data set is meant to be stored under.
pub const EVENTS_PRIMARY_KEY: &[&str] = &["id"];

/// Number of distinct `kind` values.
const KINDS: u64 = 20;

/// `2024-01-01T00:00:00` in microseconds since the Unix epoch.
const TS_START_MICROS: i64 = 1_704_067_200_000_000;

/// Microseconds between consecutive events.
const TS_STEP_MICROS: i64 = 3_000_000;

/// The most rows one call generates (ids must stay within `i64`, timestamps within range).
pub const EVENTS_ROWS_MAX: i64 = 1_000_000_000_000;

/// The schema of `generate_events` (see the module docs).
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user_id", DataType::Int32, false),
        Field::new("kind", DataType::Utf8View, false),
        Field::new("amount", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
    ]))
}

/// A `CREATE TABLE` statement for a table `name` of the events schema keyed by
/// [`EVENTS_PRIMARY_KEY`].
pub fn events_create_table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE {name} (id BIGINT NOT NULL, user_id INT NOT NULL, kind VARCHAR NOT NULL, \
         amount DOUBLE NOT NULL, ts TIMESTAMP(6) NOT NULL, PRIMARY KEY ({}))",
        EVENTS_PRIMARY_KEY.join(", ")
    )
}

/// The benchmark workloads' `splitmix64`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the events with ids `first .. first + rows` as one batch.
pub fn events_batch(first: i64, rows: usize) -> Result<RecordBatch> {
    let ids: Vec<i64> = (first..first + rows as i64).collect();
    let mut kinds = StringViewBuilder::with_capacity(rows);
    let names: Vec<String> = (0..KINDS).map(|k| format!("k{k}")).collect();
    let mut users = Vec::with_capacity(rows);
    let mut amounts = Vec::with_capacity(rows);
    let mut ts = Vec::with_capacity(rows);
    for &id in &ids {
        let i = id as u64;
        users.push((splitmix64(i) % 100_000) as i32);
        kinds.append_value(&names[(splitmix64(i ^ 0xA5A5_A5A5_A5A5_A5A5) % KINDS) as usize]);
        amounts.push((splitmix64(i ^ 0x5A5A_5A5A_5A5A_5A5A) % 100_000) as f64 / 100.0);
        ts.push(TS_START_MICROS + TS_STEP_MICROS * id);
    }
    Ok(RecordBatch::try_new(
        events_schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int32Array::from(users)),
            Arc::new(kinds.finish()),
            Arc::new(Float64Array::from(amounts)),
            Arc::new(TimestampMicrosecondArray::from(ts)),
        ],
    )?)
}

/// The `generate_events` table function.
#[derive(Debug, Default)]
pub struct EventsFunction;

impl TableFunctionImpl for EventsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "generate_events";
        check_arity(NAME, args.exprs(), 1, 2)?;
        let rows = int_arg(NAME, args.exprs(), 0)?;
        let first = match args.exprs().len() {
            2 => int_arg(NAME, args.exprs(), 1)?,
            _ => 0,
        };
        if !(0..=EVENTS_ROWS_MAX).contains(&rows) {
            return Err(DataFusionError::Plan(format!(
                "{NAME}: rows must be between 0 and {EVENTS_ROWS_MAX}, got {rows}"
            )));
        }
        if !(0..=EVENTS_ROWS_MAX).contains(&first) {
            return Err(DataFusionError::Plan(format!(
                "{NAME}: first_id must be between 0 and {EVENTS_ROWS_MAX}, got {first}"
            )));
        }
        Ok(Arc::new(EventsTable { first, rows }))
    }
}

/// The provider behind one `generate_events` call.
#[derive(Debug, Clone)]
pub struct EventsTable {
    first: i64,
    rows: i64,
}

impl EventsTable {
    /// Events with ids `first .. first + rows`.
    pub fn new(first: i64, rows: i64) -> Self {
        EventsTable { first, rows }
    }
}

#[async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        events_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let options = state.config_options();
        let batch_rows = options.execution.batch_size.get().max(1) as u64;
        // Without filters the limit bounds the rows any consumer can need.
        let rows = match limit {
            Some(limit) => (self.rows as u64).min(limit as u64),
            None => self.rows as u64,
        };
        let partitions = (options.execution.target_partitions.max(1) as u64)
            .min(rows.div_ceil(batch_rows))
            .max(1);
        let per_partition = rows.div_ceil(partitions);
        let mut generators: Vec<Arc<RwLock<dyn LazyBatchGenerator>>> = Vec::new();
        for p in 0..partitions {
            let start = self.first + (p * per_partition).min(rows) as i64;
            let end = self.first + ((p + 1) * per_partition).min(rows) as i64;
            generators.push(Arc::new(RwLock::new(EventsGenerator {
                start,
                end,
                next: start,
                batch_rows: batch_rows as i64,
            })));
        }
        let mut exec = LazyMemoryExec::try_new(events_schema(), generators)?
            .with_projection(projection.cloned());
        // Each partition is in id order; declare it when `id` is projected.
        let id_position = match projection {
            Some(columns) => columns.iter().position(|&c| c == 0),
            None => Some(0),
        };
        if let Some(position) = id_position {
            exec.add_ordering([PhysicalSortExpr::new(
                Arc::new(Column::new("id", position)),
                SortOptions {
                    descending: false,
                    nulls_first: false,
                },
            )]);
        }
        Ok(Arc::new(exec))
    }
}

/// Generates one partition's id range, one batch at a time.
#[derive(Debug, Clone)]
struct EventsGenerator {
    start: i64,
    end: i64,
    next: i64,
    batch_rows: i64,
}

impl fmt::Display for EventsGenerator {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "generate_events: ids={}..{}, batch_size={}",
            self.start, self.end, self.batch_rows
        )
    }
}

impl LazyBatchGenerator for EventsGenerator {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn generate_next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.next >= self.end {
            return Ok(None);
        }
        let rows = (self.end - self.next).min(self.batch_rows);
        let batch = events_batch(self.next, rows as usize)?;
        self.next += rows;
        Ok(Some(batch))
    }

    fn reset_state(&self) -> Arc<RwLock<dyn LazyBatchGenerator>> {
        Arc::new(RwLock::new(EventsGenerator {
            next: self.start,
            ..self.clone()
        }))
    }
}
