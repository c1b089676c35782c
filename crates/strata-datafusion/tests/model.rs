//! Model-based property test of SQL value filters over a Strata table: random upserts,
//! deletes, flushes, compactions and reopens, with float values drawn from the ones pruning
//! gets wrong (NaN, -NaN, -0.0, +0.0, ±inf, NULL) and an integer column with runs of NULLs
//! (which statistics do prune), then random value filters and key ranges.
//! Every answer must equal DataFusion's answer over the same rows in a plain `MemTable`
//! (no statistics, no pruning), whichever path the Strata scan takes: memtables, the merge, or
//! the base path (files read directly by the Parquet reader with the filters as a pruning
//! predicate and their deletion vectors, under the memtable overlay). Writes after a
//! compaction (`Op::Overlay`) put upserts, new keys and tombstones in the memtable over the
//! compacted files, so scans run through the overlay's anti-join. The test also checks that
//! the base path, and the base path under a non-empty overlay, were taken often enough to be
//! tested.
//!
//! CI runs `CASES` cases. For a longer local run:
//! `STRATA_SQL_MODEL_CASES=200 cargo test -p strata-datafusion --test integration --release -- model::`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{Array, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use strata_datafusion::StrataSession;
use strata_datafusion::provider::StrataScanExec;
use strata_engine::{CompactionOptions, Options, TableOptions};

const CASES: u32 = 12;
const OPS_PER_CASE: usize = 60;
/// Keys are drawn from `0..KEYS`.
const KEYS: i32 = 400;

/// The SQL literals values are drawn from; the last is NULL.
const LITERALS: &[&str] = &[
    "CAST('NaN' AS DOUBLE)",
    "-CAST('NaN' AS DOUBLE)",
    "CAST('-0.0' AS DOUBLE)",
    "CAST(0.0 AS DOUBLE)",
    "CAST('inf' AS DOUBLE)",
    "CAST('-inf' AS DOUBLE)",
    "CAST(0.5 AS DOUBLE)",
    "CAST(-0.5 AS DOUBLE)",
    "CAST(2.5 AS DOUBLE)",
    "CAST(100.0 AS DOUBLE)",
    "CAST(-100.0 AS DOUBLE)",
    "CAST(1e300 AS DOUBLE)",
    "CAST(NULL AS DOUBLE)",
];

#[derive(Debug, Clone)]
enum Op {
    /// One INSERT (upsert) of rows `(key, literal index)`; a key in a contiguous run of
    /// keys gets values that also vary, so files hold both ordinary numbers and specials.
    Upsert(Vec<(i32, usize)>),
    /// `DELETE FROM t WHERE id BETWEEN a AND b`.
    Delete(i32, i32),
    Flush,
    /// A flush and a full compaction, then queries over the compacted files (the direct
    /// path's case).
    Compact(Vec<Filter>),
    Reopen,
    Query(Filter),
    /// A flush and a full compaction, then an upsert of rows and a delete of keys
    /// `a..=b` into the memtable, then queries: the base path under an overlay.
    Overlay(Vec<(i32, usize)>, (i32, i32), Vec<Filter>),
}

#[derive(Debug, Clone)]
struct Filter {
    column: &'static str,
    op: &'static str,
    literal: usize,
    /// An optional key condition joined by AND or OR.
    key: Option<(bool, &'static str, i32)>,
    negate: bool,
}

impl Filter {
    fn sql(&self) -> String {
        let value = if self.op.ends_with("NULL") {
            format!("{} {}", self.column, self.op)
        } else {
            let literal = if self.column == "n" {
                int_literal(self.literal)
            } else {
                LITERALS[self.literal].replace("DOUBLE", self.column_type())
            };
            format!("{} {} {literal}", self.column, self.op)
        };
        let value = if self.negate {
            format!("NOT ({value})")
        } else {
            value
        };
        match self.key {
            None => value,
            Some((and, op, k)) => {
                let join = if and { "AND" } else { "OR" };
                format!("({value}) {join} id {op} {k}")
            }
        }
    }

    fn column_type(&self) -> &'static str {
        if self.column == "r" { "REAL" } else { "DOUBLE" }
    }
}

/// The integer column `n` of the row with key `k` and literal index `literal`: NULL for the
/// NULL literal and every ninth key, else a number near the literal's position, so files
/// hold runs of NULLs and ranges that statistics can prune.
fn int_value(k: i32, literal: usize) -> Option<i64> {
    (literal != LITERALS.len() - 1 && k % 9 != 0)
        .then(|| literal as i64 * 10 - 60 + i64::from(k % 3))
}

/// The SQL literal an `n` filter compares with for literal index `literal`.
fn int_literal(literal: usize) -> String {
    if literal == LITERALS.len() - 1 {
        "CAST(NULL AS BIGINT)".to_string()
    } else {
        (literal as i64 * 10 - 60).to_string()
    }
}

fn sql_int(value: Option<i64>) -> String {
    value.map_or_else(|| "NULL".to_string(), |v| v.to_string())
}

fn filter() -> impl Strategy<Value = Filter> {
    let op = prop_oneof![
        Just("="),
        Just("<>"),
        Just("<"),
        Just("<="),
        Just(">"),
        Just(">="),
        Just("IS NULL"),
        Just("IS NOT NULL"),
        Just("IS DISTINCT FROM"),
        Just("IS NOT DISTINCT FROM"),
    ];
    let key = proptest::option::of((
        any::<bool>(),
        prop_oneof![Just("<"), Just(">="), Just("=")],
        0..KEYS,
    ));
    (
        prop_oneof![Just("v"), Just("r"), Just("n")],
        op,
        0..LITERALS.len(),
        key,
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(column, op, literal, key, negate)| Filter {
            column,
            op,
            literal,
            key,
            negate,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let rows = (0..KEYS, 1..120i32, 0..LITERALS.len(), any::<u64>()).prop_map(
        |(start, len, special, seed)| {
            (start..(start + len).min(KEYS))
                .map(|k| {
                    // Mostly ordinary numbers (as their literal index) with specials mixed in.
                    let mix = (seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 5;
                    let literal = if mix == 0 {
                        special
                    } else {
                        6 + (k as usize + mix as usize) % 6
                    };
                    (k, literal)
                })
                .collect::<Vec<_>>()
        },
    );
    prop_oneof![
        12 => rows.clone().prop_map(Op::Upsert),
        3 => (0..KEYS, 0..40i32).prop_map(|(a, n)| Op::Delete(a, a + n)),
        4 => Just(Op::Flush),
        3 => proptest::collection::vec(filter(), 1..6).prop_map(Op::Compact),
        3 => (
            rows.clone(),
            (0..KEYS, 0..20i32),
            proptest::collection::vec(filter(), 1..6)
        )
            .prop_map(|(rows, (a, n), filters)| Op::Overlay(rows, (a, a + n), filters)),
        1 => Just(Op::Reopen),
        20 => filter().prop_map(Op::Query),
    ]
}

/// The database options of a case; without a key cache the overlay is never resolved at plan
/// time and every overlay query runs the anti-join. With `refresher`, the plan refresher
/// races the queries (every millisecond); without it, each query brings its plan up to date.
fn options(key_cache: bool, refresher: bool) -> Options {
    Options {
        scan_plan_refresh_ms: if refresher { 1 } else { 0 },
        key_cache_bytes: if key_cache {
            Options::default().key_cache_bytes
        } else {
            0
        },
        table_defaults: TableOptions {
            compaction: CompactionOptions {
                l0_compaction_trigger: 3,
                ..CompactionOptions::default()
            },
            // Small row groups and pages, so pruning has something to skip.
            sst_row_group_rows: 32,
            sst_scan_row_group_rows: 32,
            sst_page_size_bytes: 1024,
            sst_index_block_rows: 16,
            ..TableOptions::default()
        },
        ..Options::default()
    }
}

/// The value of every literal as DataFusion evaluates it (bit for bit, NaN signs included).
async fn literal_values() -> Vec<Option<f64>> {
    let ctx = SessionContext::new();
    let sql = format!("SELECT {}", LITERALS.join(", "));
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let batch = &batches[0];
    (0..LITERALS.len())
        .map(|i| {
            let column = batch.column(i).as_primitive::<Float64Type>();
            column.is_valid(0).then(|| column.value(0))
        })
        .collect()
}

/// The model's rows in a plain DataFusion table
/// `t (id INT, v DOUBLE, r REAL, n BIGINT, c BIGINT NOT NULL)`.
fn oracle(model: &BTreeMap<i32, usize>, values: &[Option<f64>]) -> SessionContext {
    let ids = Int32Array::from_iter_values(model.keys().copied());
    let v: Float64Array = model.values().map(|&i| values[i]).collect();
    let r = cast(&v, &DataType::Float32).unwrap();
    let n: Int64Array = model.iter().map(|(&k, &i)| int_value(k, i)).collect();
    let c: Int64Array = model.iter().map(|(&k, &i)| stamp(k, i)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("v", DataType::Float64, true),
        Field::new("r", DataType::Float32, true),
        Field::new("n", DataType::Int64, true),
        Field::new("c", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(ids), Arc::new(v), r, Arc::new(n), Arc::new(c)],
    )
    .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    ctx
}

/// The NOT NULL column `c` of key `k` written with literal `i`: never NULL, though a
/// tombstone's stored values are (the base files hold both).
fn stamp(k: i32, i: usize) -> i64 {
    i64::from(k) * 100 + i as i64
}

/// The `(id, c)` pairs of a result.
fn ids(batches: &[RecordBatch]) -> Vec<(i32, i64)> {
    batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int32Type>().values().to_vec();
            let c = b.column(1).as_primitive::<Int64Type>().values().to_vec();
            ids.into_iter().zip(c)
        })
        .collect()
}

fn find_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&StrataScanExec> {
    if let Some(scan) = plan.downcast_ref::<StrataScanExec>() {
        return Some(scan);
    }
    plan.children().into_iter().find_map(find_scan)
}

static QUERIES: AtomicUsize = AtomicUsize::new(0);
static DIRECT_QUERIES: AtomicUsize = AtomicUsize::new(0);
static OVERLAY_QUERIES: AtomicUsize = AtomicUsize::new(0);
static ANTI_JOIN_QUERIES: AtomicUsize = AtomicUsize::new(0);
/// Scan plans brought up to date with the writes since an earlier query's plan.
static UPDATED_PLANS: AtomicUsize = AtomicUsize::new(0);
/// Plans made or brought up to date by the refresher, summed over cases.
static REFRESHED_PLANS: AtomicUsize = AtomicUsize::new(0);

async fn exec(s: &StrataSession, sql: &str) -> Vec<RecordBatch> {
    match s.sql(sql).await {
        Ok(df) => df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}")),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// Runs `filter` on Strata and on the oracle; counts the queries that read files directly.
async fn check_query(
    session: &StrataSession,
    model: &BTreeMap<i32, usize>,
    values: &[Option<f64>],
    filter: &Filter,
    step: usize,
) -> Result<(), TestCaseError> {
    let sql = format!("SELECT id, c FROM t WHERE {} ORDER BY id", filter.sql());
    let got = ids(&exec(session, &sql).await);
    let expected = oracle(model, values)
        .sql(&sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    prop_assert_eq!(&got, &ids(&expected), "step {}: {}", step, sql);
    let count_sql = format!("SELECT count(*) FROM t WHERE {}", filter.sql());
    let counted = exec(session, &count_sql).await;
    let counted = counted[0].column(0).as_primitive::<Int64Type>().value(0);
    prop_assert_eq!(counted as usize, got.len(), "step {}: {}", step, count_sql);
    // The key condition alone: a count the engine may give from the files' keys and DVs.
    if let Some((_, op, k)) = filter.key {
        let key_sql = format!("SELECT count(*) FROM t WHERE id {op} {k}");
        let counted = exec(session, &key_sql).await;
        let counted = counted[0].column(0).as_primitive::<Int64Type>().value(0);
        let expected = model
            .keys()
            .filter(|id| match op {
                "<" => **id < k,
                ">=" => **id >= k,
                _ => **id == k,
            })
            .count();
        prop_assert_eq!(counted as usize, expected, "step {}: {}", step, key_sql);
    }
    let plan = session
        .sql(&sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    QUERIES.fetch_add(1, Ordering::Relaxed);
    if let Some(scan) = find_scan(&plan)
        && scan.reads_files_directly()
    {
        DIRECT_QUERIES.fetch_add(1, Ordering::Relaxed);
        if scan.overlay_keys().is_some_and(|keys| keys > 0) {
            OVERLAY_QUERIES.fetch_add(1, Ordering::Relaxed);
            if scan.runs_anti_join() {
                ANTI_JOIN_QUERIES.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// One `INSERT` (upsert) of `rows`, applied to the model too.
async fn upsert(
    session: &StrataSession,
    model: &mut BTreeMap<i32, usize>,
    rows: Vec<(i32, usize)>,
) {
    let tuples: Vec<String> = rows
        .iter()
        .map(|(k, i)| {
            let literal = LITERALS[*i];
            let n = sql_int(int_value(*k, *i));
            let c = stamp(*k, *i);
            format!("({k}, {literal}, CAST({literal} AS REAL), {n}, {c})")
        })
        .collect();
    exec(
        session,
        &format!("INSERT INTO t VALUES {}", tuples.join(", ")),
    )
    .await;
    model.extend(rows);
}

/// `DELETE FROM t WHERE id BETWEEN a AND b`, applied to the model too.
async fn delete(session: &StrataSession, model: &mut BTreeMap<i32, usize>, a: i32, b: i32) {
    exec(
        session,
        &format!("DELETE FROM t WHERE id BETWEEN {a} AND {b}"),
    )
    .await;
    model.retain(|k, _| !(a..=b).contains(k));
}

async fn run_case(
    ops: Vec<Op>,
    key_cache: bool,
    refresher: bool,
    values: &[Option<f64>],
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut session = strata_datafusion::open(dir.path(), options(key_cache, refresher)).unwrap();
    exec(
        &session,
        "CREATE TABLE t (id INT PRIMARY KEY, v DOUBLE, r REAL, n BIGINT, c BIGINT NOT NULL)",
    )
    .await;
    let mut model: BTreeMap<i32, usize> = BTreeMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Upsert(rows) => upsert(&session, &mut model, rows).await,
            Op::Delete(a, b) => delete(&session, &mut model, a, b).await,
            Op::Flush => session.db().table("t").unwrap().flush().unwrap(),
            Op::Compact(filters) => {
                let table = session.db().table("t").unwrap();
                table.flush().unwrap();
                table.compact().unwrap();
                for filter in &filters {
                    check_query(&session, &model, values, filter, step).await?;
                }
            }
            Op::Reopen => {
                count_kept_plans(&session);
                session.close().unwrap();
                session =
                    strata_datafusion::open(dir.path(), options(key_cache, refresher)).unwrap();
            }
            Op::Query(filter) => check_query(&session, &model, values, &filter, step).await?,
            Op::Overlay(rows, (a, b), filters) => {
                let table = session.db().table("t").unwrap();
                table.flush().unwrap();
                table.compact().unwrap();
                upsert(&session, &mut model, rows).await;
                delete(&session, &mut model, a, b).await;
                for filter in &filters {
                    check_query(&session, &model, values, filter, step).await?;
                }
            }
        }
    }
    count_kept_plans(&session);
    session.close().unwrap();
    Ok(())
}

fn count_kept_plans(session: &StrataSession) {
    let metrics = session.db().metrics();
    for (name, total) in [
        ("scan_plans_updated", &UPDATED_PLANS),
        ("scan_plans_refreshed", &REFRESHED_PLANS),
    ] {
        total.fetch_add(metrics.get(name).unwrap_or(0) as usize, Ordering::Relaxed);
    }
}

#[test]
fn value_filters_agree_with_a_plain_table_on_every_read_path() {
    let cases = std::env::var("STRATA_SQL_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let values = runtime.block_on(literal_values());
    // -NaN and NaN are different values to Arrow's total order; the pool must hold both.
    assert!(values[0].unwrap().is_nan() && values[1].unwrap().is_nan());
    assert_ne!(
        values[0].unwrap().is_sign_negative(),
        values[1].unwrap().is_sign_negative()
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(op(), 1..OPS_PER_CASE),
        any::<bool>(),
        any::<bool>(),
    );
    let result = runner.run(&strategy, |(ops, key_cache, refresher)| {
        runtime.block_on(run_case(ops, key_cache, refresher, &values))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let (queries, direct, overlay, anti_join) = (
        QUERIES.load(Ordering::Relaxed),
        DIRECT_QUERIES.load(Ordering::Relaxed),
        OVERLAY_QUERIES.load(Ordering::Relaxed),
        ANTI_JOIN_QUERIES.load(Ordering::Relaxed),
    );
    // The base path, and the base path under a non-empty overlay (writes after a
    // compaction), must be part of what was tested.
    assert!(
        direct * 10 >= queries,
        "{direct} of {queries} queries read files directly"
    );
    assert!(
        overlay * 20 >= queries,
        "{overlay} of {queries} queries read files directly under an overlay"
    );
    // Both ways of hiding base rows under the overlay: resolved at plan time (key cache) and
    // the anti-join (no key cache).
    assert!(
        anti_join > 0 && anti_join < overlay,
        "{anti_join} of {overlay} overlay queries ran the anti-join"
    );
    // Plans brought up to date with later writes (read::plan_cache) were checked too.
    let updated = UPDATED_PLANS.load(Ordering::Relaxed);
    assert!(updated > 0, "no scan plan was brought up to date");
    // And plans the refresher kept current, racing the queries.
    let refreshed = REFRESHED_PLANS.load(Ordering::Relaxed);
    assert!(refreshed > 0, "the refresher refreshed no scan plan");
}
