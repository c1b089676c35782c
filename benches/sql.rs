//! Analytic SQL benchmark: the "Analytic SQL" and "Ingest" workloads of
//! `shared/BENCHMARKS.md` over the `events` table, run in one process on three copies of the
//! same rows:
//!
//! * (a) `events_a`: a Strata table bulk-loaded with `Table::ingest` and then fully compacted
//!   (`Table::compact`), so its files do not overlap and the memtable is empty;
//! * (b) `events_b`: a Strata table (compaction strategy `none`) loaded by four bulk ingests of
//!   interleaved 8192-row stripes, so its level-0 files all overlap, plus a memtable holding 1%
//!   of the rows changed: 0.5% updated (`user_id + 1 mod 100000`, `amount := 1000 - amount`)
//!   and 0.5% deleted. Its answers therefore differ slightly from (a) and (c) and are checked
//!   against `events_b_expected`, the rows (b) must show written as plain Parquet;
//! * (c) `events_c`: the same rows as 10 plain Parquet files of equal id ranges (snappy,
//!   otherwise DataFusion's default writer settings), registered with `register_parquet`.
//!
//! Each query Q1-Q8 runs once as a warm-up and then 5 times on each copy, the copies
//! interleaved within each round; the figure is the median wall time of planning plus
//! execution (`sql(..).await?.collect().await`). The runner checks the answers of the warm-up
//! run, so every timing is of a correct answer: (a) and (c) give the same rows, (b) the same
//! rows as the same query on `events_b_expected` (float aggregates within a relative 1e-9,
//! since the summation order differs); and from the generator alone, Q1 is the row count on
//! (a) and (c) and the row count minus the deletes on (b), Q3 the number of ids in its range,
//! Q4 the one row with the wanted id on (a) and (c). Before anything else the generator and
//! the constants are checked against BENCHMARKS.md (a `harness = false` target runs no tests).
//!
//! The query texts are those of BENCHMARKS.md with `events` replaced by the copy's table name.
//! Their constants are given for 10,000,000 rows; for other row counts N the positions scale
//! with N while the widths stay those of the text: Q3 `X = 5,000,000 * N / 10^7`, Q4
//! `X = 7,777,777 * N / 10^7`, Q7 `T = 2024-01-01 + (152 days * N / 10^7)` in whole seconds
//! (2024-06-01 at 10M), clamped so that the range lies inside the generated rows. The range of
//! Q3 stays 100,001 ids and Q7's stays one day (28,800 rows).
//!
//! Ingest: `INSERT INTO events_insert SELECT * FROM events_c` (rows/s until the statement
//! returns, and including the flush of the memtables to SSTs afterwards), and the bulk load
//! through the Rust API in batches of 8192 rows, both through `Table::insert` (WAL and
//! memtable, then `Table::flush`) and through `Table::ingest` (sorted SSTs written directly):
//! rows/s and MB/s written to disk (WAL bytes plus SST bytes). Each is the median of
//! `STRATA_BENCH_INGEST_RUNS` runs (default 3) on a fresh table.
//!
//! ```text
//! cargo bench --bench sql                               # 1,000,000 rows (under a minute)
//! STRATA_BENCH_ROWS=10000000 cargo bench --bench sql    # the full size of BENCHMARKS.md
//! STRATA_BENCH_EXPLAIN=all cargo bench --bench sql      # EXPLAIN ANALYZE of every query
//! STRATA_BENCH_QUERIES=Q2,Q7 STRATA_BENCH_INGEST_RUNS=0 cargo bench --bench sql  # a subset
//! ```
//!
//! Bulk SQL statements: `STRATA_BENCH_BULK_ROWS=10000000,100000000 cargo bench --bench sql`
//! runs only `INSERT INTO big SELECT ... FROM generate_series(1, N)` and `CREATE TABLE big2
//! (...) AS SELECT` of the same rows for each N, each on a fresh database, timed until the
//! statement returns, with the peak RSS while it ran (written to `sql-bulk.md`).
//!
//! Environment: `STRATA_BENCH_ROWS` (default 1,000,000), `STRATA_BENCH_REPEATS` (timed runs
//! per query, default 5), `STRATA_BENCH_INGEST_RUNS` (default 3; 0 skips the ingest figures),
//! `STRATA_BENCH_QUERIES` (comma-separated subset of Q1-Q8, default all), `STRATA_BENCH_DIR`
//! (where the temporary database and Parquet files go, default `target`),
//! `STRATA_BENCH_EXPLAIN` (`missed`, the default: plans of the queries that miss a target;
//! `all`; `none`), `STRATA_BENCH_ROW_GROUP_ROWS`, `STRATA_BENCH_PAGE_BYTES`,
//! `STRATA_BENCH_VALUE_PAGE_BYTES`, `STRATA_BENCH_SCAN_ROW_GROUP_ROWS` and
//! `STRATA_BENCH_SCAN_DICTIONARY_BYTES` (the Strata tables' `sst_row_group_rows`,
//! `sst_page_size_bytes`, `sst_value_page_size_bytes`, `sst_scan_row_group_rows` and
//! `sst_scan_dictionary_page_size_bytes`, default the engine's), `STRATA_BENCH_SST_COMPRESSION`
//! (`sst_compression`: `none`, `snappy`, `lz4` or `zstd(N)`),
//! `STRATA_BENCH_B_RUNS` (the overlapping level-0 runs of case (b), default 4; 1 gives one
//! run of disjoint files under the same memtable of changes, the variant (b')),
//! `STRATA_BENCH_PLAN_REFRESH_MS` (the database's `scan_plan_refresh_ms`; 0: no plan
//! refresher, each query brings its plan up to date itself).
//!
//! Case (d), a live table under a writer (`benches/sql/live.rs`): `STRATA_BENCH_LIVE=1`
//! (writer pace `STRATA_BENCH_LIVE_RATE` rows/s, default 20,000).
//!
//! Object storage (`benches/sql/s3.rs`): `STRATA_BENCH_S3=1` runs only Q1-Q8 and
//! `readrandom` on a database on a `moto` S3 server on loopback (or the store
//! `STRATA_BENCH_STORE_URL` names) against local disk, cold and warm cache, with GET requests
//! and bytes, and the local WAL's fdatasync against one PUT per group-commit window
//! (`target/bench-results/sql-s3.md`).
//!
//! Prints markdown and writes it to `target/bench-results/sql.md`, with EXPLAIN ANALYZE of
//! (a), (b) and (c) for each query that misses a target. Exits with status 1 when a correctness
//! check fails.

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringViewBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use strata_engine::{
    CompactionOptions, Db, IngestOptions, Options, StrategyKind, Table, TableOptions,
};
// `splitmix64` of BENCHMARKS.md, shared with the `events` table function.
use strata_datafusion::functions::events::splitmix64;

#[path = "sql/live.rs"]
mod live;

// The object-storage mode (STRATA_BENCH_S3=1): see benches/sql/s3.rs.
#[path = "sql/s3.rs"]
mod s3;

type BoxError = Box<dyn Error + Send + Sync>;
type BoxResult<T> = Result<T, BoxError>;
/// One ingest measurement: (rows, seconds, bytes written to disk if measured).
type Measure = (u64, f64, Option<u64>);
/// Two figures of the same run: (until acknowledged, including the flush).
type MeasurePair = (Measure, Measure);

/// Rows per generated batch (and per `Table::insert` call of the bulk load).
const BATCH_ROWS: usize = 8192;
/// The row count the constants of BENCHMARKS.md are given for.
const FULL_ROWS: u64 = 10_000_000;
/// Parquet files of case (c).
const PARQUET_FILES: u64 = 10;
/// 2024-01-01T00:00:00 in microseconds since the Unix epoch.
const TS_START_US: i64 = 1_704_067_200_000_000;
/// Seconds between consecutive rows.
const TS_STEP_S: i64 = 3;
/// Stripes (and so overlapping level-0 runs) of case (b).
const B_STRIPES: usize = 4;
/// Target of (a)/(c) for every query.
const TARGET_A: f64 = 1.1;
/// Target of (b)/(c) for every query.
const TARGET_B: f64 = 1.5;
/// "Far faster" for Q3 and Q4: (a)/(c) at most this (five times faster).
const TARGET_FAR: f64 = 0.2;
/// Target of INSERT ... SELECT, rows per second.
const TARGET_INSERT_ROWS_PER_S: f64 = 1_000_000.0;

// ---------------------------------------------------------------------------------------
// Data generator (BENCHMARKS.md, "Data generators": events)
// ---------------------------------------------------------------------------------------

/// One events row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Event {
    id: i64,
    user_id: i32,
    kind: u8,
    amount: f64,
    ts_us: i64,
}

/// Row `i` of the generator.
fn event(i: u64) -> Event {
    Event {
        id: i as i64,
        user_id: (splitmix64(i) % 100_000) as i32,
        kind: (splitmix64(i ^ 0xA5A5_A5A5_A5A5_A5A5) % 20) as u8,
        amount: (splitmix64(i ^ 0x5A5A_5A5A_5A5A_5A5A) % 100_000) as f64 / 100.0,
        ts_us: TS_START_US + TS_STEP_S * 1_000_000 * i as i64,
    }
}

/// The change case (b) applies to row `i` in its memtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Keep,
    Update,
    Delete,
}

/// 0.5% of the rows are updated and 0.5% deleted, spread over the whole key range.
fn change(i: u64) -> Change {
    match splitmix64(i ^ 0xC3C3_C3C3_C3C3_C3C3) % 200 {
        0 => Change::Update,
        1 => Change::Delete,
        _ => Change::Keep,
    }
}

/// The updated version of a row in case (b).
fn updated(e: Event) -> Event {
    Event {
        user_id: (e.user_id + 1) % 100_000,
        amount: 1000.0 - e.amount,
        ..e
    }
}

/// `events(id BIGINT PRIMARY KEY, user_id INT, kind VARCHAR, amount DOUBLE, ts TIMESTAMP)`
/// as DataFusion's SQL planner types it (VARCHAR is `Utf8View`), with a microsecond timestamp.
fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user_id", DataType::Int32, true),
        Field::new("kind", DataType::Utf8View, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}

/// A batch of the given rows.
fn batch_of(schema: &SchemaRef, rows: &[Event]) -> BoxResult<RecordBatch> {
    let kinds: Vec<String> = (0..20).map(|k| format!("k{k}")).collect();
    let mut kind = StringViewBuilder::with_capacity(rows.len());
    for e in rows {
        kind.append_value(&kinds[usize::from(e.kind)]);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|e| e.id))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|e| e.user_id))),
        Arc::new(kind.finish()),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|e| e.amount),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|e| e.ts_us),
        )),
    ];
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The rows case (b) must show: rows `0..rows` with its updates applied and its deletes left
/// out, in batches of at most [`BATCH_ROWS`].
fn generate_expected_b(schema: &SchemaRef, rows: u64) -> BoxResult<(Vec<RecordBatch>, u64)> {
    let mut batches = Vec::new();
    let mut kept = 0u64;
    let mut start = 0u64;
    while start < rows {
        let end = (start + BATCH_ROWS as u64).min(rows);
        let events: Vec<Event> = (start..end)
            .filter_map(|i| match change(i) {
                Change::Keep => Some(event(i)),
                Change::Update => Some(updated(event(i))),
                Change::Delete => None,
            })
            .collect();
        if !events.is_empty() {
            kept += events.len() as u64;
            batches.push(batch_of(schema, &events)?);
        }
        start = end;
    }
    Ok((batches, kept))
}

/// Rows `0..rows` in batches of [`BATCH_ROWS`].
fn generate(schema: &SchemaRef, rows: u64) -> BoxResult<Vec<RecordBatch>> {
    let mut batches = Vec::with_capacity((rows as usize).div_ceil(BATCH_ROWS));
    let mut start = 0u64;
    while start < rows {
        let end = (start + BATCH_ROWS as u64).min(rows);
        let events: Vec<Event> = (start..end).map(event).collect();
        batches.push(batch_of(schema, &events)?);
        start = end;
    }
    Ok(batches)
}

// ---------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------

/// The scaled constants of the queries.
#[derive(Debug, Clone)]
struct Params {
    q3_x: u64,
    q4_x: u64,
    q7_t: String,
}

/// `z` days since 1970-01-01 as (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `TIMESTAMP 'YYYY-MM-DDTHH:MM:SS'` literal text for seconds since the Unix epoch.
fn timestamp_literal(epoch_s: i64) -> String {
    let (y, m, d) = civil_from_days(epoch_s.div_euclid(86_400));
    let s = epoch_s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

impl Params {
    /// Constants of BENCHMARKS.md scaled to `rows` (see the module docs).
    fn scaled(rows: u64) -> Params {
        let scale = |x: u64| (u128::from(x) * u128::from(rows) / u128::from(FULL_ROWS)) as u64;
        let last = rows.saturating_sub(1);
        let q3_x = scale(5_000_000).min(last.saturating_sub(100_000));
        let q4_x = scale(7_777_777).min(last);
        let span_s = TS_STEP_S as u64 * rows;
        let t_offset = scale(152 * 86_400).min(span_s.saturating_sub(86_400));
        let q7_t = timestamp_literal(TS_START_US / 1_000_000 + t_offset as i64);
        Params { q3_x, q4_x, q7_t }
    }

    /// Q1-Q8 over table `t`.
    fn queries(&self, t: &str) -> Vec<(&'static str, String)> {
        let Params { q3_x, q4_x, q7_t } = self;
        vec![
            ("Q1", format!("SELECT count(*) FROM {t}")),
            (
                "Q2",
                format!("SELECT kind, sum(amount) FROM {t} GROUP BY kind"),
            ),
            (
                "Q3",
                format!("SELECT count(*) FROM {t} WHERE id BETWEEN {q3_x} AND {q3_x} + 100000"),
            ),
            ("Q4", format!("SELECT * FROM {t} WHERE id = {q4_x}")),
            (
                "Q5",
                format!(
                    "SELECT user_id, sum(amount) s FROM {t} GROUP BY user_id ORDER BY s DESC LIMIT 10"
                ),
            ),
            ("Q6", format!("SELECT count(DISTINCT user_id) FROM {t}")),
            (
                "Q7",
                format!(
                    "SELECT avg(amount) FROM {t} WHERE ts >= TIMESTAMP '{q7_t}' AND ts < TIMESTAMP '{q7_t}' + INTERVAL '1 day'"
                ),
            ),
            (
                "Q8",
                format!("SELECT count(*) FROM {t} WHERE kind = 'k3' AND amount > 500"),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// Result comparison
// ---------------------------------------------------------------------------------------

/// One result value: floats compared with a tolerance, everything else by its display text.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Float(f64),
    Text(String),
}

impl Cell {
    fn same(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Float(a), Cell::Float(b)) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            }
            (Cell::Text(a), Cell::Text(b)) => a == b,
            _ => false,
        }
    }
}

/// The rows of a result, sorted by their non-float cells and then their floats (so the order
/// of GROUP BY output does not matter).
fn rows_of(batches: &[RecordBatch]) -> BoxResult<Vec<Vec<Cell>>> {
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let options = FormatOptions::default();
    for batch in batches {
        let mut columns: Vec<Vec<Cell>> = Vec::with_capacity(batch.num_columns());
        for array in batch.columns() {
            let mut cells = Vec::with_capacity(array.len());
            if matches!(
                array.data_type(),
                DataType::Float16 | DataType::Float32 | DataType::Float64
            ) {
                let floats = cast(array, &DataType::Float64)?;
                let floats = floats
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or("float column did not cast to Float64")?;
                for i in 0..floats.len() {
                    cells.push(if floats.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Float(floats.value(i))
                    });
                }
            } else {
                let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
                for i in 0..array.len() {
                    cells.push(if array.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Text(formatter.value(i).to_string())
                    });
                }
            }
            columns.push(cells);
        }
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[r].clone()).collect());
        }
    }
    let key = |row: &Vec<Cell>| -> (Vec<String>, Vec<f64>) {
        let mut texts = Vec::new();
        let mut floats = Vec::new();
        for cell in row {
            match cell {
                Cell::Null => texts.push(String::from("\0null")),
                Cell::Text(t) => texts.push(t.clone()),
                Cell::Float(f) => floats.push(*f),
            }
        }
        (texts, floats)
    };
    rows.sort_by(|x, y| {
        let (tx, fx) = key(x);
        let (ty, fy) = key(y);
        tx.cmp(&ty).then_with(|| {
            fx.iter()
                .zip(&fy)
                .map(|(a, b)| a.total_cmp(b))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    Ok(rows)
}

/// True when both results hold the same rows.
fn same_rows(x: &[Vec<Cell>], y: &[Vec<Cell>]) -> bool {
    x.len() == y.len()
        && x.iter()
            .zip(y)
            .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.same(q)))
}

/// The single integer of a one-row, one-column result such as `count(*)`.
fn single_count(rows: &[Vec<Cell>]) -> Option<u64> {
    match rows {
        [row] => match row.as_slice() {
            [Cell::Text(t)] => t.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Timing helpers
// ---------------------------------------------------------------------------------------

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn env_u64(name: &str, default: u64) -> BoxResult<u64> {
    match std::env::var(name) {
        Ok(v) => {
            let cleaned: String = v.chars().filter(|c| *c != '_' && *c != ',').collect();
            cleaned
                .parse()
                .map_err(|_| format!("{name}={v}: expected a whole number").into())
        }
        Err(_) => Ok(default),
    }
}

/// Plans and runs one statement, collecting its result.
async fn run_sql(ctx: &SessionContext, sql: &str) -> BoxResult<(Duration, Vec<RecordBatch>)> {
    let start = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok((start.elapsed(), batches))
}

/// `EXPLAIN ANALYZE` of one query, as text.
async fn explain_analyze(ctx: &SessionContext, sql: &str) -> String {
    match run_sql(ctx, &format!("EXPLAIN ANALYZE {sql}")).await {
        Ok((_, batches)) => {
            let mut text = String::new();
            for batch in &batches {
                if let Some(plans) = batch.column_by_name("plan") {
                    let options = FormatOptions::default();
                    if let Ok(formatter) = ArrayFormatter::try_new(plans.as_ref(), &options) {
                        for i in 0..plans.len() {
                            let _ = writeln!(text, "{}", formatter.value(i));
                        }
                        continue;
                    }
                }
                match pretty_format_batches(std::slice::from_ref(batch)) {
                    Ok(t) => {
                        let _ = writeln!(text, "{t}");
                    }
                    Err(e) => {
                        let _ = writeln!(text, "(could not format the plan: {e})");
                    }
                }
            }
            text
        }
        Err(e) => format!("EXPLAIN ANALYZE failed: {e}\n"),
    }
}

// ---------------------------------------------------------------------------------------
// Building the three copies
// ---------------------------------------------------------------------------------------

/// Writes case (c): 10 files of equal id ranges with DataFusion's writer (snappy, the
/// session's other Parquet defaults).
async fn write_parquet_files(
    ctx: &SessionContext,
    batches: &[RecordBatch],
    rows: u64,
    dir: &Path,
) -> BoxResult<()> {
    std::fs::create_dir_all(dir)?;
    let mut options = ctx.copied_table_options().parquet;
    options.global.compression = Some("snappy".into());
    for file in 0..PARQUET_FILES {
        let lo = rows * file / PARQUET_FILES;
        let hi = rows * (file + 1) / PARQUET_FILES;
        // Cut the batches to exactly [lo, hi).
        let mut parts = Vec::new();
        let mut start = 0u64;
        for batch in batches {
            let end = start + batch.num_rows() as u64;
            let from = lo.max(start);
            let to = hi.min(end);
            if from < to {
                parts.push(batch.slice((from - start) as usize, (to - from) as usize));
            }
            start = end;
        }
        if parts.is_empty() {
            continue;
        }
        let path = dir.join(format!("part-{file:02}.parquet"));
        let path = path.to_str().ok_or("non-UTF-8 benchmark directory")?;
        ctx.read_batches(parts)?
            .write_parquet(
                path,
                DataFrameWriteOptions::new().with_single_file_output(true),
                Some(options.clone()),
            )
            .await?;
    }
    Ok(())
}

/// Builds case (a): bulk ingest, then a full compaction.
fn build_a(db: &Db, schema: &SchemaRef, batches: &[RecordBatch]) -> BoxResult<Table> {
    let table = db.create_table("events_a", Arc::clone(schema), &["id"])?;
    table.ingest(batches.iter().cloned().map(Ok), &IngestOptions::default())?;
    table.compact()?;
    Ok(table)
}

/// The SST layout overrides of `STRATA_BENCH_ROW_GROUP_ROWS`, `STRATA_BENCH_PAGE_BYTES`,
/// `STRATA_BENCH_VALUE_PAGE_BYTES`, `STRATA_BENCH_SCAN_ROW_GROUP_ROWS` and
/// `STRATA_BENCH_SCAN_DICTIONARY_BYTES` and `STRATA_BENCH_SST_COMPRESSION` (for studies
/// of the layout), and the plan refresher's interval `STRATA_BENCH_PLAN_REFRESH_MS` (unset =
/// the defaults).
fn sst_layout(mut options: Options) -> Options {
    let var = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.parse::<usize>()
                .unwrap_or_else(|_| panic!("{name}: not a number"))
        })
    };
    if let Some(rows) = var("STRATA_BENCH_ROW_GROUP_ROWS") {
        options.table_defaults.sst_row_group_rows = rows;
    }
    if let Some(bytes) = var("STRATA_BENCH_PAGE_BYTES") {
        options.table_defaults.sst_page_size_bytes = bytes;
    }
    if let Some(bytes) = var("STRATA_BENCH_VALUE_PAGE_BYTES") {
        options.table_defaults.sst_value_page_size_bytes = bytes;
    }
    if let Some(rows) = var("STRATA_BENCH_SCAN_ROW_GROUP_ROWS") {
        options.table_defaults.sst_scan_row_group_rows = rows;
    }
    if let Some(bytes) = var("STRATA_BENCH_SCAN_DICTIONARY_BYTES") {
        options.table_defaults.sst_scan_dictionary_page_size_bytes = bytes;
    }
    if let Ok(codec) = std::env::var("STRATA_BENCH_SST_COMPRESSION") {
        options.table_defaults.sst_compression = codec
            .parse()
            .unwrap_or_else(|e| panic!("STRATA_BENCH_SST_COMPRESSION: {e}"));
    }
    if let Some(ms) = var("STRATA_BENCH_PLAN_REFRESH_MS") {
        options.scan_plan_refresh_ms = ms as u64;
    }
    options
}

/// Builds case (b): overlapping level-0 runs (compaction off) and a memtable of changes.
/// Returns the table and the number of deleted rows.
fn build_b(db: &Db, schema: &SchemaRef, batches: &[RecordBatch]) -> BoxResult<(Table, u64)> {
    let options = TableOptions {
        compaction: CompactionOptions {
            strategy: StrategyKind::None,
            ..CompactionOptions::default()
        },
        ..db.options().table_defaults.clone()
    };
    let table = db.create_table_with("events_b", Arc::clone(schema), &["id"], options)?;
    let stripes = env_u64("STRATA_BENCH_B_RUNS", B_STRIPES as u64)?.max(1) as usize;
    for stripe in 0..stripes {
        let part = batches
            .iter()
            .enumerate()
            .filter(move |(i, _)| i % stripes == stripe)
            .map(|(_, b)| Ok(b.clone()));
        table.ingest(part, &IngestOptions::default())?;
    }
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let mut updates = Vec::new();
    let mut deletes: Vec<i64> = Vec::new();
    for i in 0..rows {
        match change(i) {
            Change::Update => updates.push(updated(event(i))),
            Change::Delete => deletes.push(i as i64),
            Change::Keep => {}
        }
    }
    for chunk in updates.chunks(BATCH_ROWS) {
        table.insert(&batch_of(schema, chunk)?)?;
    }
    let key_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    for chunk in deletes.chunks(BATCH_ROWS) {
        let keys = RecordBatch::try_new(
            Arc::clone(&key_schema),
            vec![Arc::new(Int64Array::from(chunk.to_vec()))],
        )?;
        table.delete(&keys)?;
    }
    Ok((table, deletes.len() as u64))
}

fn describe(table: &Table) -> String {
    let stats = table.stats();
    format!(
        "files per level {:?}, {} SST rows, {:.1} MB of SSTs, {} memtable entries",
        stats.files_per_level,
        stats.sst_rows,
        stats.sst_bytes as f64 / 1e6,
        stats.memtable_entries
    )
}

// ---------------------------------------------------------------------------------------
// Ingest measurements
// ---------------------------------------------------------------------------------------

/// One ingest figure.
#[derive(Debug, Clone)]
struct IngestFigure {
    path: &'static str,
    rows: u64,
    seconds: f64,
    bytes_written: Option<u64>,
    error: Option<String>,
}

impl IngestFigure {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

/// Median (by time) of several runs; the first error wins.
fn median_figure(path: &'static str, runs: Vec<BoxResult<Measure>>) -> IngestFigure {
    let runs = if runs.is_empty() {
        vec![Err("no run was measured".into())]
    } else {
        runs
    };
    let mut ok = Vec::new();
    for run in runs {
        match run {
            Ok(r) => ok.push(r),
            Err(e) => {
                return IngestFigure {
                    path,
                    rows: 0,
                    seconds: f64::NAN,
                    bytes_written: None,
                    error: Some(e.to_string()),
                };
            }
        }
    }
    ok.sort_by(|x, y| x.1.total_cmp(&y.1));
    let (rows, seconds, bytes) = ok[ok.len() / 2];
    IngestFigure {
        path,
        rows,
        seconds,
        bytes_written: bytes,
        error: None,
    }
}

fn metric(db: &Db, name: &str) -> u64 {
    db.metrics().get(name).unwrap_or(0)
}

/// `Table::insert` of 8192-row batches, then `Table::flush`. Returns (ack, with flush).
fn bulk_insert(
    db: &Db,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    name: &str,
) -> BoxResult<MeasurePair> {
    let table = db.create_table(name, Arc::clone(schema), &["id"])?;
    let wal_before = metric(db, "wal_bytes");
    let start = Instant::now();
    let mut rows = 0u64;
    for batch in batches {
        rows += table.insert(batch)?;
    }
    let acked = start.elapsed().as_secs_f64();
    table.flush()?;
    let flushed = start.elapsed().as_secs_f64();
    let bytes = metric(db, "wal_bytes") - wal_before + table.stats().sst_bytes;
    drop(table);
    db.drop_table(name)?;
    Ok(((rows, acked, None), (rows, flushed, Some(bytes))))
}

/// `Table::ingest` of 8192-row batches (sorted SSTs written directly).
fn bulk_ingest(
    db: &Db,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    name: &str,
) -> BoxResult<Measure> {
    let table = db.create_table(name, Arc::clone(schema), &["id"])?;
    let wal_before = metric(db, "wal_bytes");
    let start = Instant::now();
    let rows = table.ingest(batches.iter().cloned().map(Ok), &IngestOptions::default())?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes = metric(db, "wal_bytes") - wal_before + table.stats().sst_bytes;
    drop(table);
    db.drop_table(name)?;
    Ok((rows, seconds, Some(bytes)))
}

/// `INSERT INTO <fresh table> SELECT * FROM events_c`. Returns (statement, with flush).
fn insert_select(
    rt: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    db: &Db,
    schema: &SchemaRef,
    name: &str,
) -> BoxResult<MeasurePair> {
    let table = db.create_table(name, Arc::clone(schema), &["id"])?;
    let wal_before = metric(db, "wal_bytes");
    let sql = format!("INSERT INTO {name} SELECT * FROM events_c");
    let result = rt.block_on(run_sql(ctx, &sql));
    let (elapsed, batches) = match result {
        Ok(r) => r,
        Err(e) => {
            drop(table);
            db.drop_table(name)?;
            return Err(e);
        }
    };
    let rows = single_count(&rows_of(&batches)?).ok_or("INSERT returned no row count")?;
    let start = Instant::now();
    table.flush()?;
    let flushed = elapsed.as_secs_f64() + start.elapsed().as_secs_f64();
    let bytes = metric(db, "wal_bytes") - wal_before + table.stats().sst_bytes;
    drop(table);
    db.drop_table(name)?;
    Ok((
        (rows, elapsed.as_secs_f64(), None),
        (rows, flushed, Some(bytes)),
    ))
}

// ---------------------------------------------------------------------------------------
// Bulk SQL statements (STRATA_BENCH_BULK_ROWS)
// ---------------------------------------------------------------------------------------

/// `name` of `/proc/self/status` in bytes (Linux; `None` elsewhere).
fn proc_status_bytes(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident set size (`VmHWM`) to the current one (Linux 4.0+).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.0}", b as f64 / 1e6))
}

/// The bulk statements of issue 19, each timed until it returns (durably: a bulk load syncs
/// its files and its manifest edit before the statement returns), with the process's peak
/// resident set size while it ran: `INSERT INTO big SELECT ... FROM generate_series(1, N)`
/// into an empty keyed table, then `CREATE TABLE big2 (...) AS SELECT` of the same rows, for
/// each N of `sizes` (comma-separated). Compaction is off, so nothing but the statement runs.
fn bulk_statements(sizes: &str) -> BoxResult<bool> {
    let sizes: Vec<u64> = sizes
        .split(',')
        .map(|n| n.trim().replace('_', "").parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("STRATA_BENCH_BULK_ROWS: {e}"))?;
    let base = std::env::var("STRATA_BENCH_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut log = String::new();
    macro_rules! say {
        ($($arg:tt)*) => {{
            let line = format!($($arg)*);
            println!("{line}");
            log.push_str(&line);
            log.push('\n');
        }};
    }
    let mut ok = true;
    say!("## Bulk SQL statements (each on a fresh database, timed until it returns)\n");
    say!("| statement | rows | s | rows/s | peak RSS MB | RSS before MB | SST MB | files |");
    say!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let select = format!(
            "SELECT value, value % 100, value * 0.25, 'note ' || value FROM generate_series(1, {n})"
        );
        let statements = [
            (
                "INSERT INTO big SELECT ...",
                "CREATE TABLE big (id BIGINT PRIMARY KEY, k BIGINT, x DOUBLE, note VARCHAR)"
                    .to_string(),
                format!("INSERT INTO big {select}"),
                "big",
            ),
            (
                "CREATE TABLE big2 (...) AS SELECT ...",
                String::new(),
                format!(
                    "CREATE TABLE big2 (id BIGINT PRIMARY KEY, k BIGINT, x DOUBLE, note VARCHAR) \
                     AS {select}"
                ),
                "big2",
            ),
        ];
        for (label, setup, sql, table) in statements {
            let dir = tempfile::tempdir_in(&base)?;
            // Compaction off: the statement is timed alone, not with the compaction of the
            // files an earlier statement of the run loaded (which `close` would wait for).
            let mut options = Options::default();
            options.table_defaults.compaction.strategy = StrategyKind::None;
            let session = strata_datafusion::open(dir.path().join("db"), options)?;
            if !setup.is_empty() {
                rt.block_on(async { session.sql(&setup).await?.collect().await })?;
            }
            let before = proc_status_bytes("VmRSS:");
            let peak_known = reset_peak_rss();
            let start = Instant::now();
            let result = rt.block_on(async { session.sql(&sql).await?.collect().await });
            let seconds = start.elapsed().as_secs_f64();
            let peak = if peak_known {
                proc_status_bytes("VmHWM:")
            } else {
                None
            };
            if let Err(e) = result {
                ok = false;
                say!(
                    "| {label} | {n} | - | error: {} | - | - | - | - |",
                    e.to_string().replace('|', "/")
                );
                continue;
            }
            let t = session.db().table(table)?;
            let stats = t.stats();
            let count = rt.block_on(async {
                session
                    .sql(&format!("SELECT count(*) FROM {table}"))
                    .await?
                    .collect()
                    .await
            })?;
            let counted = count
                .first()
                .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>())
                .map(|a| a.value(0) as u64);
            if counted != Some(n) {
                ok = false;
                say!("| {label} | {n} | - | WRONG COUNT {counted:?} | - | - | - | - |");
                continue;
            }
            say!(
                "| {label} | {n} | {seconds:.2} | {:.0} | {} | {} | {:.0} | {} |",
                n as f64 / seconds,
                mb(peak),
                mb(before),
                stats.sst_bytes as f64 / 1e6,
                stats.files_per_level.iter().sum::<usize>()
            );
            drop(t);
            session.close()?;
        }
    }
    say!(
        "\nPeak RSS: the process's VmHWM, reset (/proc/self/clear_refs) just before the \
         statement; RSS before: VmRSS then."
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("sql-bulk.md"), log)?;
    Ok(ok)
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

/// Timings and answers of one query on the three copies.
struct QueryResult {
    name: &'static str,
    sql_c: String,
    sql_a: String,
    sql_b: String,
    medians: [Option<Duration>; 3],
    errors: [Option<String>; 3],
    answers: [Option<Vec<Vec<Cell>>>; 3],
    /// The answer of `events_b_expected` (plain Parquet holding the rows (b) must show).
    expected_b: Result<Vec<Vec<Cell>>, String>,
}

impl QueryResult {
    fn ratio(&self, variant: usize) -> Option<f64> {
        match (self.medians[variant], self.medians[2]) {
            (Some(x), Some(c)) if c > Duration::ZERO => Some(x.as_secs_f64() / c.as_secs_f64()),
            _ => None,
        }
    }

    /// The targets this query misses, as text (empty when all are met or unmeasured).
    fn misses(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = self.ratio(0) {
            if r > TARGET_A {
                out.push(format!(
                    "(a)/(c) = {r:.2} > {TARGET_A} (by {:.0}%)",
                    (r / TARGET_A - 1.0) * 100.0
                ));
            }
            if matches!(self.name, "Q3" | "Q4") && r > TARGET_FAR {
                out.push(format!(
                    "(a)/(c) = {r:.2}: not far faster than (c) (target <= {TARGET_FAR})"
                ));
            }
        }
        if let Some(r) = self.ratio(1)
            && r > TARGET_B
        {
            out.push(format!(
                "(b)/(c) = {r:.2} > {TARGET_B} (by {:.0}%)",
                (r / TARGET_B - 1.0) * 100.0
            ));
        }
        out
    }
}

fn cell_ms(d: Option<Duration>, e: &Option<String>) -> String {
    match (d, e) {
        (Some(d), _) => format!("{:.2}", ms(d)),
        (None, Some(_)) => "error".into(),
        (None, None) => "-".into(),
    }
}

fn cell_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}"))
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("sql benchmark: a correctness check failed (see above)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("sql benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs everything; returns false when a correctness check failed.
fn run() -> BoxResult<bool> {
    self_check()?;
    if let Ok(sizes) = std::env::var("STRATA_BENCH_BULK_ROWS") {
        return bulk_statements(&sizes);
    }
    let rows = env_u64("STRATA_BENCH_ROWS", 1_000_000)?;
    if rows == 0 {
        return Err("STRATA_BENCH_ROWS must be at least 1".into());
    }
    let repeats = env_u64("STRATA_BENCH_REPEATS", 5)?.max(1) as usize;
    let ingest_runs = env_u64("STRATA_BENCH_INGEST_RUNS", 3)? as usize;
    let only: Option<Vec<String>> = match std::env::var("STRATA_BENCH_QUERIES") {
        Ok(list) => {
            let names: Vec<String> = list
                .split(',')
                .map(|q| q.trim().to_ascii_uppercase())
                .filter(|q| !q.is_empty())
                .collect();
            let known = Params::scaled(1).queries("t");
            if let Some(bad) = names.iter().find(|n| !known.iter().any(|(k, _)| k == n)) {
                return Err(format!("STRATA_BENCH_QUERIES: unknown query {bad} (Q1-Q8)").into());
            }
            Some(names)
        }
        Err(_) => None,
    };
    let explain = std::env::var("STRATA_BENCH_EXPLAIN").unwrap_or_else(|_| "missed".into());
    let base = std::env::var("STRATA_BENCH_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base)?;
    if env_u64("STRATA_BENCH_S3", 0)? > 0 {
        // The object-storage mode runs alone (benches/sql/s3.rs).
        return s3::run_s3(rows, repeats, &only, &base);
    }
    let dir = tempfile::tempdir_in(&base)?;
    let params = Params::scaled(rows);
    let schema = events_schema();
    let mut ok = true;
    let mut log = String::new();
    macro_rules! say {
        ($($arg:tt)*) => {{
            let line = format!($($arg)*);
            println!("{line}");
            log.push_str(&line);
            log.push('\n');
        }};
    }

    let started = Instant::now();
    let batches = generate(&schema, rows)?;
    println!(
        "generated {rows} rows in {} batches in {:.1} s",
        batches.len(),
        started.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let session = strata_datafusion::open(dir.path().join("db"), sst_layout(Options::default()))?;
    let db = Arc::clone(session.db());
    let ctx: &SessionContext = &session;

    // (c): plain Parquet.
    let t = Instant::now();
    let parquet_dir = dir.path().join("parquet");
    rt.block_on(write_parquet_files(
        &SessionContext::new(),
        &batches,
        rows,
        &parquet_dir,
    ))?;
    let parquet_path = format!("{}/", parquet_dir.to_str().ok_or("non-UTF-8 directory")?);
    rt.block_on(ctx.register_parquet("events_c", &parquet_path, ParquetReadOptions::default()))?;
    let parquet_bytes: u64 = std::fs::read_dir(&parquet_dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "(c) {PARQUET_FILES} Parquet files, {:.1} MB, written in {:.1} s",
        parquet_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // The rows (b) must show, as plain Parquet too (only for checking its answers).
    let t = Instant::now();
    let expected_dir = dir.path().join("expected_b");
    let (expected_batches, expected_rows) = generate_expected_b(&schema, rows)?;
    rt.block_on(write_parquet_files(
        &SessionContext::new(),
        &expected_batches,
        expected_rows,
        &expected_dir,
    ))?;
    drop(expected_batches);
    let expected_path = format!("{}/", expected_dir.to_str().ok_or("non-UTF-8 directory")?);
    rt.block_on(ctx.register_parquet(
        "events_b_expected",
        &expected_path,
        ParquetReadOptions::default(),
    ))?;
    println!(
        "expected answers of (b): {expected_rows} rows as Parquet in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // (a) and (b).
    let t = Instant::now();
    let table_a = build_a(&db, &schema, &batches)?;
    let shape_a = describe(&table_a);
    println!("(a) built in {:.1} s: {shape_a}", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let (table_b, deleted_b) = build_b(&db, &schema, &batches)?;
    let shape_b = describe(&table_b);
    println!("(b) built in {:.1} s: {shape_b}", t.elapsed().as_secs_f64());

    // Queries.
    let names = ["events_a", "events_b", "events_c"];
    let per_variant: Vec<Vec<(&'static str, String)>> =
        names.iter().map(|t| params.queries(t)).collect();
    let expected_queries = params.queries("events_b_expected");
    let mut results = Vec::new();
    for (q, (name, sql_c)) in per_variant[2].iter().enumerate() {
        if only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|o| o == name))
        {
            continue;
        }
        let mut times: [Vec<Duration>; 3] = Default::default();
        let mut errors: [Option<String>; 3] = Default::default();
        let mut answers: [Option<Vec<Vec<Cell>>>; 3] = Default::default();
        for round in 0..=repeats {
            for v in 0..3 {
                if errors[v].is_some() {
                    continue;
                }
                match rt.block_on(run_sql(ctx, &per_variant[v][q].1)) {
                    Ok((elapsed, batches)) => {
                        if round == 0 {
                            answers[v] = Some(rows_of(&batches)?);
                        } else {
                            times[v].push(elapsed);
                        }
                    }
                    Err(e) => errors[v] = Some(e.to_string()),
                }
            }
        }
        let expected_b = match rt.block_on(run_sql(ctx, &expected_queries[q].1)) {
            Ok((_, batches)) => Ok(rows_of(&batches)?),
            Err(e) => Err(e.to_string()),
        };
        let medians = times.map(|t| if t.is_empty() { None } else { Some(median(t)) });
        let result = QueryResult {
            name,
            sql_c: sql_c.clone(),
            sql_a: per_variant[0][q].1.clone(),
            sql_b: per_variant[1][q].1.clone(),
            medians,
            errors,
            answers,
            expected_b,
        };
        println!(
            "{name}: (a) {} ms, (b) {} ms, (c) {} ms",
            cell_ms(result.medians[0], &result.errors[0]),
            cell_ms(result.medians[1], &result.errors[1]),
            cell_ms(result.medians[2], &result.errors[2]),
        );
        results.push(result);
    }

    // Checks.
    let mut checks = Vec::new();
    for r in &results {
        for (v, e) in r.errors.iter().enumerate() {
            if let Some(e) = e {
                ok = false;
                checks.push(format!("{} on {} failed: {e}", r.name, names[v]));
            }
        }
        if let (Some(a), Some(c)) = (&r.answers[0], &r.answers[2])
            && !same_rows(a, c)
        {
            ok = false;
            checks.push(format!(
                "{}: (a) and (c) differ: (a) {a:?} vs (c) {c:?}",
                r.name
            ));
        }
    }
    for r in &results {
        match (&r.answers[1], &r.expected_b) {
            (_, Err(e)) => {
                ok = false;
                checks.push(format!("{} on events_b_expected failed: {e}", r.name));
            }
            (Some(b), Ok(expected)) if !same_rows(b, expected) => {
                ok = false;
                checks.push(format!(
                    "{}: (b) differs from its expected rows: (b) {b:?} vs expected {expected:?}",
                    r.name
                ));
            }
            _ => {}
        }
    }
    // Answers known from the generator alone.
    let q3_count = rows.min(params.q3_x + 100_001) - params.q3_x.min(rows);
    // (query, answer on (a) and (c), answer on (b) if known here, what it is).
    let exact = [
        ("Q1", rows, Some(rows - deleted_b), "row count"),
        ("Q3", q3_count, None, "ids in the Q3 range"),
    ];
    for (q, expected_ac, expected_b, what) in exact {
        let Some(r) = results.iter().find(|r| r.name == q) else {
            continue;
        };
        for (v, name) in names.iter().enumerate() {
            let Some(expected) = (if v == 1 {
                expected_b
            } else {
                Some(expected_ac)
            }) else {
                continue;
            };
            if let Some(answer) = &r.answers[v]
                && single_count(answer) != Some(expected)
            {
                ok = false;
                checks.push(format!(
                    "{} on {name}: {answer:?}, expected {expected} ({what})",
                    r.name
                ));
            }
        }
    }
    for v in [0, 2] {
        if let Some(answer) = results
            .iter()
            .find(|r| r.name == "Q4")
            .and_then(|r| r.answers[v].as_ref())
        {
            let id = params.q4_x.to_string();
            let found = matches!(answer.as_slice(), [row] if matches!(row.first(), Some(Cell::Text(t)) if *t == id));
            if !found {
                ok = false;
                checks.push(format!(
                    "Q4 on {}: {answer:?}, expected the one row with id {id}",
                    names[v]
                ));
            }
        }
    }

    // Ingest.
    let mut figures = Vec::new();
    let mut insert_runs = (Vec::new(), Vec::new());
    let mut bulk_runs = (Vec::new(), Vec::new());
    let mut ingest_runs_v = Vec::new();
    // A failed INSERT (e.g. a statement over the write batch limit) is reported once and not
    // retried; the Rust API paths are measured in every run regardless.
    let mut insert_failed = false;
    for run in 0..ingest_runs {
        if !insert_failed {
            match insert_select(&rt, ctx, &db, &schema, &format!("events_insert_{run}")) {
                Ok((stmt, flushed)) => {
                    insert_runs.0.push(Ok(stmt));
                    insert_runs.1.push(Ok(flushed));
                }
                Err(e) => {
                    insert_runs.0.push(Err(e));
                    insert_failed = true;
                }
            }
        }
        let (ack, flushed) = bulk_insert(&db, &schema, &batches, &format!("events_load_{run}"))?;
        bulk_runs.0.push(Ok(ack));
        bulk_runs.1.push(Ok(flushed));
        ingest_runs_v.push(Ok(bulk_ingest(
            &db,
            &schema,
            &batches,
            &format!("events_ingest_{run}"),
        )?));
    }
    if !insert_runs.0.is_empty() {
        figures.push(median_figure(
            "INSERT INTO events SELECT * FROM events_c (until the statement returns)",
            insert_runs.0,
        ));
    }
    if !insert_failed && !insert_runs.1.is_empty() {
        figures.push(median_figure(
            "INSERT INTO events SELECT * FROM events_c, then flush",
            insert_runs.1,
        ));
    }
    if ingest_runs > 0 {
        figures.push(median_figure(
            "Rust API: Table::insert of 8192-row batches (acknowledged)",
            bulk_runs.0,
        ));
        figures.push(median_figure(
            "Rust API: Table::insert of 8192-row batches, then flush",
            bulk_runs.1,
        ));
        figures.push(median_figure(
            "Rust API: Table::ingest of 8192-row batches (sorted SSTs)",
            ingest_runs_v,
        ));
    }

    // Plans.
    let mut plans = String::new();
    for r in &results {
        let wanted = match explain.as_str() {
            "all" => true,
            "none" => false,
            _ => !r.misses().is_empty(),
        };
        if wanted {
            for (label, sql) in [("a", &r.sql_a), ("b", &r.sql_b), ("c", &r.sql_c)] {
                let plan = rt.block_on(explain_analyze(ctx, sql));
                let _ = write!(
                    plans,
                    "\n### {} on ({label})\n\n```text\n{plan}```\n",
                    r.name
                );
            }
        }
    }

    // Report.
    say!("## SQL: Q1-Q8 on the events table ({rows} rows)\n");
    say!(
        "Median ms of {repeats} runs after a warm-up. (a) compacted Strata table, (b) Strata table \
         with overlapping L0 runs and a memtable of 1% updates and deletes (answers differ \
         slightly by design), (c) 10 plain Parquet files.\n"
    );
    say!("| query | (a) ms | (b) ms | (c) ms | (a)/(c) | (b)/(c) | (a) = (c) | (b) = expected |");
    say!("|---|---:|---:|---:|---:|---:|---|---|");
    for r in &results {
        let same = match (&r.answers[0], &r.answers[2]) {
            (Some(a), Some(c)) => {
                if same_rows(a, c) {
                    "yes"
                } else {
                    "NO"
                }
            }
            _ => "-",
        };
        let same_b = match (&r.answers[1], &r.expected_b) {
            (Some(b), Ok(e)) => {
                if same_rows(b, e) {
                    "yes"
                } else {
                    "NO"
                }
            }
            _ => "-",
        };
        say!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            cell_ms(r.medians[0], &r.errors[0]),
            cell_ms(r.medians[1], &r.errors[1]),
            cell_ms(r.medians[2], &r.errors[2]),
            cell_ratio(r.ratio(0)),
            cell_ratio(r.ratio(1)),
            same,
            same_b
        );
    }
    say!("\nQueries as run on (c) (the same with `events_a` / `events_b` for (a) / (b)):\n");
    for r in &results {
        say!("- {}: `{}`", r.name, r.sql_c);
    }
    say!("\nShapes: (a) {shape_a}; (b) {shape_b}, {deleted_b} keys deleted.\n");
    if ingest_runs == 0 {
        say!("## Ingest: skipped (STRATA_BENCH_INGEST_RUNS=0)\n");
    } else {
        say!("## Ingest ({rows} rows, median of {ingest_runs} runs, fresh table each)\n");
        say!("| path | rows | s | rows/s | MB written | MB/s written |");
        say!("|---|---:|---:|---:|---:|---:|");
    }
    for f in &figures {
        match &f.error {
            Some(e) => say!(
                "| {} | - | - | error: {} | - | - |",
                f.path,
                e.replace('|', "/")
            ),
            None => {
                let (mb, mbs) = match f.bytes_written {
                    Some(b) => (
                        format!("{:.1}", b as f64 / 1e6),
                        format!("{:.1}", b as f64 / 1e6 / f.seconds),
                    ),
                    None => ("-".into(), "-".into()),
                };
                say!(
                    "| {} | {} | {:.2} | {:.0} | {} | {} |",
                    f.path,
                    f.rows,
                    f.seconds,
                    f.rows_per_s(),
                    mb,
                    mbs
                );
            }
        }
    }
    if ingest_runs > 0 {
        say!("\nMB written = WAL bytes plus SST bytes of the table after the load.\n");
    }
    say!("## Targets (issue 4)\n");
    for r in &results {
        let misses = r.misses();
        if r.ratio(0).is_none() && r.ratio(1).is_none() {
            say!("- {}: not measured", r.name);
        } else if misses.is_empty() {
            say!("- {}: met", r.name);
        } else {
            say!("- {}: MISSED: {}", r.name, misses.join("; "));
        }
    }
    match figures.first() {
        Some(f) if f.error.is_none() && f.path.starts_with("INSERT") => {
            let rate = f.rows_per_s();
            if rate >= TARGET_INSERT_ROWS_PER_S {
                say!("- INSERT ... SELECT: met ({rate:.0} rows/s >= 1M)");
            } else {
                say!(
                    "- INSERT ... SELECT: MISSED ({rate:.0} rows/s, {:.0}% below 1M)",
                    (1.0 - rate / TARGET_INSERT_ROWS_PER_S) * 100.0
                );
            }
        }
        Some(f) if f.path.starts_with("INSERT") => say!(
            "- INSERT ... SELECT: MISSED (the statement failed: {})",
            f.error.as_deref().unwrap_or("unknown error")
        ),
        _ => say!("- INSERT ... SELECT: not measured"),
    }
    if !checks.is_empty() {
        say!("\n## Check failures\n");
        for c in &checks {
            say!("- {c}");
        }
    }
    if !plans.is_empty() {
        let which = if explain == "all" {
            "every query"
        } else {
            "the queries that miss a target"
        };
        say!("\n## EXPLAIN ANALYZE of {which}\n{plans}");
    }

    if env_u64("STRATA_BENCH_LIVE", 0)? > 0 {
        let live = live::run_live(
            &rt, ctx, &db, &schema, &batches, rows, &params, &only, repeats,
        )?;
        ok &= live.ok;
        say!("\n{}", live.markdown);
    }

    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("sql.md"), &log)?;
    println!("wrote {}", out_dir.join("sql.md").display());
    drop(table_a);
    drop(table_b);
    drop(session);
    Ok(ok)
}

/// Checks the generator and the scaled constants against BENCHMARKS.md before anything is
/// measured. A `harness = false` target runs no `#[test]` functions, so these checks run on
/// every invocation instead.
fn self_check() -> BoxResult<()> {
    let mut failed = Vec::new();
    let mut ensure = |ok: bool, what: &str| {
        if !ok {
            failed.push(what.to_string());
        }
    };
    // The first output of SplitMix64 from state 0.
    ensure(
        splitmix64(0) == 0xE220_A839_7B1D_CDAF,
        "splitmix64(0) is the reference value",
    );
    let e = event(0);
    ensure(e.id == 0, "row 0 has id 0");
    ensure(
        i64::from(e.user_id) == (splitmix64(0) % 100_000) as i64,
        "user_id = splitmix64(i) % 100000",
    );
    ensure(e.ts_us == TS_START_US, "row 0 is at 2024-01-01T00:00:00");
    ensure(
        event(2).ts_us - event(1).ts_us == 3_000_000,
        "rows are 3 s apart",
    );
    ensure(
        (0..10_000).map(event).all(|e| {
            e.kind < 20 && (0.0..1000.0).contains(&e.amount) && (0..100_000).contains(&e.user_id)
        }),
        "kind, amount and user_id are in their ranges",
    );
    ensure(
        timestamp_literal(TS_START_US / 1_000_000) == "2024-01-01T00:00:00",
        "timestamp literal of the start",
    );
    let p = Params::scaled(FULL_ROWS);
    ensure(
        p.q3_x == 5_000_000 && p.q4_x == 7_777_777 && p.q7_t == "2024-06-01T00:00:00",
        "the constants of BENCHMARKS.md at 10M rows",
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("self-check failed: {}", failed.join("; ")).into())
    }
}
