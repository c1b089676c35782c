//! Case (d) of the SQL benchmark, a *live table*: `events_d` starts as (a) (bulk-loaded and
//! compacted) and a writer thread upserts and deletes random keys at a steady
//! `STRATA_BENCH_LIVE_RATE` rows/s (default 20,000) with background flushes and compactions on
//! (memtables of `LIVE_MEMTABLE_BYTES`, so several flushes happen during the run), while
//! Q1-Q8 run on (d) and on (c) in alternation.
//!
//! Every answer of (d) is checked against the rows the writer had committed at the query's
//! snapshot: the writer applies each write and records it in a model (the rows it changed:
//! new values, or deleted) under one lock; a query takes that lock while it is planned (the
//! Strata scan pins its snapshot when it is planned), copies the model and lets the writer go
//! on before executing. The expected answer is the same query over the generator's rows with
//! the model applied, in a plain in-memory table. Timings are of planning plus execution
//! (the writer waits only for the planning); the wait for the lock and the copy of the model
//! are the benchmark's own work and are not counted.
//!
//! Run with `STRATA_BENCH_LIVE=1` (the other cases run first, as usual).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::datasource::MemTable;
use datafusion::physical_plan::collect;
use strata_engine::KeyValue;

use super::*;

/// Memtable size of `events_d`: small, so the writer's changes are flushed (and compacted)
/// several times during the run.
const LIVE_MEMTABLE_BYTES: usize = 4 << 20;
/// Rows per write of the writer.
const LIVE_BATCH_ROWS: u64 = 500;
/// One in `LIVE_DELETE_EVERY` changed rows is a delete, the rest upserts.
const LIVE_DELETE_EVERY: u64 = 5;

/// The rows the writer changed: `Some(row)` upserted, `None` deleted.
type Changes = HashMap<i64, Option<Event>>;

/// The result of case (d): the markdown section and whether every check passed.
pub struct Live {
    pub markdown: String,
    pub ok: bool,
}

/// A writer's version of row `e` in write number `round`.
fn rewritten(e: Event, round: u64) -> Event {
    Event {
        user_id: ((e.user_id as u64 + round) % 100_000) as i32,
        amount: ((splitmix64(e.id as u64 ^ round) % 100_000) as f64) / 100.0,
        ..e
    }
}

/// The generator's rows with `changes` applied, as batches.
fn expected_batches(
    schema: &SchemaRef,
    base: &[RecordBatch],
    changes: &Changes,
) -> BoxResult<Vec<RecordBatch>> {
    // The changed ids, sorted, walked against each batch's ids (a hash lookup per base row
    // made the check, not the queries, the bulk of the run's work).
    let mut changed: Vec<i64> = changes.keys().copied().collect();
    changed.sort_unstable();
    let mut out = Vec::with_capacity(base.len() + 1);
    for batch in base {
        let ids = batch.column(0).as_primitive::<Int64Type>().values();
        let from = changed.partition_point(|c| *c < ids.first().copied().unwrap_or(i64::MAX));
        let to = changed.partition_point(|c| *c <= ids.last().copied().unwrap_or(i64::MIN));
        if from >= to {
            out.push(batch.clone());
            continue;
        }
        let hit = &changed[from..to];
        let keep: BooleanArray = ids
            .iter()
            .map(|id| Some(hit.binary_search(id).is_err()))
            .collect();
        out.push(filter_record_batch(batch, &keep)?);
    }
    let live: Vec<Event> = changes.values().flatten().copied().collect();
    for chunk in live.chunks(BATCH_ROWS) {
        out.push(batch_of(schema, chunk)?);
    }
    Ok(out)
}

/// Runs case (d) (see the module docs). `ctx` is the Strata session (with `events_c`
/// registered).
#[allow(clippy::too_many_arguments)]
pub fn run_live(
    rt: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    db: &Arc<Db>,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    rows: u64,
    params: &Params,
    only: &Option<Vec<String>>,
    repeats: usize,
) -> BoxResult<Live> {
    let rate = env_u64("STRATA_BENCH_LIVE_RATE", 20_000)?.max(1);
    let options = TableOptions {
        memtable_size_bytes: LIVE_MEMTABLE_BYTES,
        ..db.options().table_defaults.clone()
    };
    let t = Instant::now();
    let table = db.create_table_with("events_d", Arc::clone(schema), &["id"], options)?;
    table.ingest(batches.iter().cloned().map(Ok), &IngestOptions::default())?;
    table.compact()?;
    println!(
        "(d) built in {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        describe(&table)
    );

    let model: Arc<Mutex<Changes>> = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let before = db.metrics();
    let writer = {
        let (table, model, stop, written) = (
            table.clone(),
            Arc::clone(&model),
            Arc::clone(&stop),
            Arc::clone(&written),
        );
        let schema = Arc::clone(schema);
        thread::spawn(move || -> BoxResult<()> {
            let started = Instant::now();
            let mut draw = 0u64;
            let mut round = 0u64;
            while !stop.load(Ordering::Acquire) {
                round += 1;
                let mut upserts = Vec::new();
                let mut deletes = Vec::new();
                for _ in 0..LIVE_BATCH_ROWS {
                    draw += 1;
                    let id = (splitmix64(draw ^ 0xD1D1_D1D1_D1D1_D1D1) % rows) as i64;
                    if draw.is_multiple_of(LIVE_DELETE_EVERY) {
                        deletes.push(id);
                    } else {
                        upserts.push(rewritten(event(id as u64), round));
                    }
                }
                let upsert_batch = batch_of(&schema, &upserts)?;
                let delete_keys: Vec<Vec<KeyValue>> =
                    deletes.iter().map(|id| vec![KeyValue::from(*id)]).collect();
                {
                    let mut changes = model.lock().map_err(|_| "model lock poisoned")?;
                    table.insert(&upsert_batch)?;
                    table.delete_keys(&delete_keys)?;
                    for e in &upserts {
                        changes.insert(e.id, Some(*e));
                    }
                    for id in &deletes {
                        changes.insert(*id, None);
                    }
                }
                let total = written.fetch_add(LIVE_BATCH_ROWS, Ordering::AcqRel) + LIVE_BATCH_ROWS;
                // Steady pace: sleep until this many rows are due.
                let due = Duration::from_secs_f64(total as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    thread::sleep(wait);
                }
            }
            Ok(())
        })
    };

    let run_started = Instant::now();
    let queries_d = params.queries("events_d");
    let queries_c = params.queries("events_c");
    let mut lines = Vec::new();
    let mut ok = true;
    let mut checked = 0usize;
    let mut failures = Vec::new();
    let mut explains = String::new();
    for (q, (name, sql_d)) in queries_d.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        let mut times_d = Vec::new();
        let mut times_c = Vec::new();
        let mut plannings = Vec::new();
        let mut engine_plans = (0u64, 0u64, 0u64);
        for round in 0..=repeats {
            let metrics_before = db.metrics();
            // (d): planned under the model lock, so the snapshot and the model agree. The
            // time counts planning and execution only: not the wait for the lock (the writer
            // holds it while it commits, which is the model's doing, not the engine's: readers
            // never wait for writers) nor the copy of the model for the check.
            let (plan, task, changes, planning) = {
                let changes = model.lock().map_err(|_| "model lock poisoned")?;
                let start = Instant::now();
                let df = rt.block_on(ctx.sql(sql_d))?;
                let task = df.task_ctx();
                let plan = rt.block_on(df.create_physical_plan())?;
                let planning = start.elapsed();
                (plan, task, changes.clone(), planning)
            };
            let start = Instant::now();
            let result = rt.block_on(collect(plan, Arc::new(task)))?;
            let elapsed = planning + start.elapsed();
            if round > 0 {
                times_d.push(elapsed);
                plannings.push(planning);
                let metrics_after = db.metrics();
                let delta = |name: &str| {
                    metrics_after.get(name).unwrap_or(0) - metrics_before.get(name).unwrap_or(0)
                };
                engine_plans.0 += delta("scan_plans_made");
                engine_plans.1 += delta("scan_plans_updated");
                engine_plans.2 +=
                    delta("scan_plan_made_micros") + delta("scan_plan_updated_micros");
            }
            let expected = {
                let check = SessionContext::new();
                let memory = MemTable::try_new(
                    Arc::clone(schema),
                    vec![expected_batches(schema, batches, &changes)?],
                )?;
                check.register_table("events_d", Arc::new(memory))?;
                rt.block_on(run_sql(&check, sql_d))?.1
            };
            let (got, want) = (rows_of(&result)?, rows_of(&expected)?);
            checked += 1;
            if !same_rows(&got, &want) {
                ok = false;
                failures.push(format!(
                    "{name} round {round}: (d) {got:?} vs its snapshot's rows {want:?}"
                ));
            }
            // (c) in alternation.
            let (elapsed, _) = rt.block_on(run_sql(ctx, &queries_c[q].1))?;
            if round > 0 {
                times_c.push(elapsed);
            }
        }
        let (d, c) = (median(times_d), median(times_c));
        let planning = median(plannings);
        let engine_ms = engine_plans.2 as f64 / 1000.0 / repeats as f64;
        println!(
            "{name}: (d) {:.2} ms (planning {:.2} ms, engine plans {engine_ms:.2} ms a run), (c) {:.2} ms",
            ms(d),
            ms(planning),
            ms(c)
        );
        lines.push(format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {}/{} | {engine_ms:.2} |",
            ms(d),
            ms(c),
            ms(d) / ms(c),
            ms(planning),
            engine_plans.0,
            engine_plans.1,
        ));
        let _ = writeln!(
            explains,
            "\n{name} on (d):\n\n```text\n{}\n```",
            rt.block_on(explain_analyze(ctx, sql_d))
        );
    }
    let elapsed = run_started.elapsed();
    stop.store(true, Ordering::Release);
    writer.join().map_err(|_| "writer panicked")??;
    let rows_written = written.load(Ordering::Acquire);
    let after = db.metrics();
    let delta = |name: &str| after.get(name).unwrap_or(0) - before.get(name).unwrap_or(0);
    let mut markdown = String::new();
    let _ = writeln!(
        markdown,
        "## (d) live table, {rows} rows\n\nWriter: {rows_written} rows changed in {:.1} s \
         ({:.0} rows/s; target {rate}), {} % deletes, batches of {LIVE_BATCH_ROWS}; during the \
         queries: {} flushes, {} compactions, {} deletion-vector files written ({} rows \
         marked, {:.1} ms spent, {} key rows read from files), {} SST and {} deletion-vector \
         files deleted by the purger; key cache: {} hits, {} misses; \
         scan plans: {} made, {} updated, {} reused by queries, {} refreshed off their path \
         ({:.1} ms). Every answer checked against the rows committed at its snapshot: \
         {checked} checks, {}.\n",
        elapsed.as_secs_f64(),
        rows_written as f64 / elapsed.as_secs_f64(),
        100 / LIVE_DELETE_EVERY,
        delta("flushes"),
        delta("compactions"),
        delta("dv_files_written"),
        delta("dv_rows_marked"),
        delta("dv_micros") as f64 / 1000.0,
        delta("dv_rows_read"),
        delta("sst_files_deleted"),
        delta("dv_files_deleted"),
        delta("key_cache_hits"),
        delta("key_cache_misses"),
        delta("scan_plans_made"),
        delta("scan_plans_updated"),
        delta("scan_plans_reused"),
        delta("scan_plans_refreshed"),
        delta("scan_plan_refreshed_micros") as f64 / 1000.0,
        if failures.is_empty() {
            "all equal".to_string()
        } else {
            format!("{} FAILED", failures.len())
        }
    );
    let _ = writeln!(
        markdown,
        "| query | (d) ms | (c) ms | (d)/(c) | (d) planning ms | engine plans made/updated | engine planning ms a run |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for line in lines {
        let _ = writeln!(markdown, "{line}");
    }
    for failure in &failures {
        let _ = writeln!(markdown, "\nCHECK FAILED: {failure}");
    }
    let _ = writeln!(
        markdown,
        "\nEXPLAIN ANALYZE of (d), each taken right after the query's timed runs (the writer still running):\n{explains}"
    );
    Ok(Live { markdown, ok })
}
