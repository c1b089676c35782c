//! Progress of long statements: a spinner with rows and rows per second on standard error.
//!
//! Progress is real. A SQL statement starts on one of the engine's monotonic counters (rows
//! written, rows read by scans, rows flushed), sampled while it runs minus its value at the
//! start; once the statement's physical plan exists, the count switches to the plan's own live
//! metrics ([`plan_rows`]: rows produced by the inputs of the root, e.g. the rows an `INSERT`
//! or `COPY` has received so far, which the engine counters only see at the atomic commit).
//! Engine work without a plan (`\flush`, `\compact`) stays on its counter. Rows written count
//! the rows a bulk load has already put into SSTs (`ingest_rows`) before it commits, so a large
//! `INSERT` or `CREATE TABLE ... AS` shows its rows written as they go. Nothing is drawn
//! unless standard error is a terminal, and nothing before [`SHOW_AFTER`] has passed, so quick
//! statements and piped output see no progress at all. The bar is cleared when the statement
//! ends or when its caller drops the [`Progress`] before printing a result.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::physical_plan::ExecutionPlan;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_engine::Db;

/// Delay before the progress bar appears.
pub const SHOW_AFTER: Duration = Duration::from_millis(300);

/// How often the counter is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The engine counter a statement's progress is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// `rows_written`: rows committed to tables.
    RowsWritten,
    /// `scan_rows`: rows returned by table scans.
    ScanRows,
    /// `flush_rows`: rows written to SSTables by flushes.
    FlushRows,
}

impl Counter {
    /// The metric's name in [`Db::metrics`].
    pub fn metric(self) -> &'static str {
        match self {
            Counter::RowsWritten => "rows_written",
            Counter::ScanRows => "scan_rows",
            Counter::FlushRows => "flush_rows",
        }
    }

    /// What the counted rows are, for the bar's text.
    pub fn label(self) -> &'static str {
        match self {
            Counter::RowsWritten => "rows written",
            Counter::ScanRows => "rows read",
            Counter::FlushRows => "rows flushed",
        }
    }

    /// The counter of a SQL statement that is worth showing progress for, if any.
    pub fn for_sql(sql: &str) -> Option<Counter> {
        let words: Vec<String> = sql
            .split_whitespace()
            .take(4)
            .map(str::to_ascii_uppercase)
            .collect();
        match words.first().map(String::as_str) {
            Some("INSERT" | "REPLACE") => Some(Counter::RowsWritten),
            Some("UPDATE" | "DELETE") => Some(Counter::ScanRows),
            Some("CREATE") if words.iter().any(|w| w == "TABLE") => Some(Counter::RowsWritten),
            Some("COPY") => Some(Counter::ScanRows),
            _ => None,
        }
    }
}

/// Rows produced so far by the inputs of `plan`'s root: for each child, its `output_rows`
/// metric if it records one, else the sum over its own children, recursively. `None` when no
/// node below the root records output rows (then the plan cannot show progress).
///
/// DataFusion's metrics are shared counters updated while the plan runs, so sampling a plan
/// that is executing gives live values. The root itself is skipped: for `INSERT` and `COPY`
/// it is the sink, which reports what it wrote only at the end.
pub fn plan_rows(plan: &dyn ExecutionPlan) -> Option<u64> {
    let mut total = None;
    for child in plan.children() {
        let rows = child
            .metrics()
            .and_then(|m| m.output_rows())
            .map(|n| n as u64)
            .or_else(|| plan_rows(child.as_ref()));
        if let Some(rows) = rows {
            total = Some(total.unwrap_or(0) + rows);
        }
    }
    total
}

/// Where the displayed row count comes from.
struct Source {
    /// The engine counter, and its value when the statement started.
    counter: Counter,
    base: u64,
    /// `ingest_rows` when the statement started (for [`Counter::RowsWritten`]).
    ingest_base: u64,
    /// The statement's physical plan once it runs ([`plan_rows`]).
    plan: Option<Arc<dyn ExecutionPlan>>,
}

impl Source {
    /// The progress text without the rate, and the count the rate is computed from.
    fn message(&self, db: &Db) -> (String, u64) {
        let mut engine = sample(db, self.counter).saturating_sub(self.base);
        if self.counter == Counter::RowsWritten {
            // A bulk load counts its rows file by file, then once more when it commits.
            let loaded = sample_metric(db, INGEST_ROWS).saturating_sub(self.ingest_base);
            engine = engine.max(loaded);
        }
        match &self.plan {
            None => (format!("{engine} {}", self.counter.label()), engine),
            Some(plan) => {
                let rows = plan_rows(plan.as_ref()).unwrap_or(0);
                match self.counter {
                    // A write commits its rows atomically at the end: both phases show.
                    Counter::RowsWritten => (format!("{rows} rows in, {engine} written"), rows),
                    _ => (format!("{rows} rows"), rows),
                }
            }
        }
    }
}

/// The engine metric of rows bulk loads have written to SSTs so far.
const INGEST_ROWS: &str = "ingest_rows";

/// Samples `counter` of `db`, returning the current value.
fn sample(db: &Db, counter: Counter) -> u64 {
    sample_metric(db, counter.metric())
}

fn sample_metric(db: &Db, name: &str) -> u64 {
    db.metrics().get(name).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running progress display; stops and clears when dropped.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    /// The bar once shown; taken (and cleared) by `drop`, after which the task cannot draw.
    bar: Arc<Mutex<Option<ProgressBar>>>,
    source: Arc<Mutex<Source>>,
}

impl Progress {
    /// Starts showing progress of `counter` for `title`, if `enabled` (standard error is a
    /// terminal). Must be called inside a Tokio runtime.
    pub fn start(db: &Arc<Db>, counter: Counter, title: &str, enabled: bool) -> Progress {
        let shared: Arc<Mutex<Option<ProgressBar>>> = Arc::new(Mutex::new(None));
        let source = Arc::new(Mutex::new(Source {
            counter,
            base: if enabled { sample(db, counter) } else { 0 },
            ingest_base: if enabled {
                sample_metric(db, INGEST_ROWS)
            } else {
                0
            },
            plan: None,
        }));
        if !enabled {
            return Progress {
                task: None,
                bar: shared,
                source,
            };
        }
        let db = Arc::clone(db);
        let title = title.to_string();
        let started = Instant::now();
        let slot = Arc::clone(&shared);
        let from = Arc::clone(&source);
        let task = tokio::spawn(async move {
            tokio::time::sleep(SHOW_AFTER).await;
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(title);
            *lock(&slot) = Some(bar);
            loop {
                let (text, rows) = lock(&from).message(&db);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let drawn = {
                    let guard = lock(&slot);
                    match guard.as_ref() {
                        Some(bar) => {
                            bar.set_message(format!("{text} ({:.0} rows/s)", rows as f64 / secs));
                            bar.tick();
                            true
                        }
                        None => false,
                    }
                };
                if !drawn {
                    return;
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
        Progress {
            task: Some(task),
            bar: shared,
            source,
        }
    }

    /// Counts the rows flowing through `plan` (see [`plan_rows`]) from now on, if its root has
    /// inputs; a plan without (such as `DELETE`, which scans inside one node) keeps the engine
    /// counter. Operators register their metrics when they start, so a plan about to run
    /// counts 0 until then.
    pub fn follow_plan(&self, plan: &Arc<dyn ExecutionPlan>) {
        if self.task.is_some() && !plan.children().is_empty() {
            lock(&self.source).plan = Some(Arc::clone(plan));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let bar = lock(&self.bar).take();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_have_a_counter() {
        assert_eq!(
            Counter::for_sql("insert into t select * from x"),
            Some(Counter::RowsWritten)
        );
        assert_eq!(
            Counter::for_sql("CREATE TABLE t AS SELECT 1"),
            Some(Counter::RowsWritten)
        );
        assert_eq!(
            Counter::for_sql("COPY t TO 'x.parquet'"),
            Some(Counter::ScanRows)
        );
        assert_eq!(Counter::for_sql("SELECT 1"), None);
        assert_eq!(Counter::for_sql("CREATE VIEW v AS SELECT 1"), None);
        assert_eq!(
            Counter::for_sql("DELETE FROM t WHERE a > 1"),
            Some(Counter::ScanRows)
        );
    }

    #[test]
    fn rows_written_count_a_bulk_load_before_it_commits() {
        use arrow::array::Int64Array;
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::record_batch::RecordBatch;
        use strata_engine::{IngestOptions, Options};
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let table = db.create_table("t", Arc::clone(&schema), &["id"]).unwrap();
        let ids = |range: std::ops::Range<i64>| {
            let column = Arc::new(Int64Array::from_iter_values(range));
            RecordBatch::try_new(Arc::clone(&schema), vec![column]).unwrap()
        };
        table.insert(&ids(0..10)).unwrap();
        let source = Source {
            counter: Counter::RowsWritten,
            base: sample(&db, Counter::RowsWritten),
            ingest_base: sample_metric(&db, INGEST_ROWS),
            plan: None,
        };
        let options = IngestOptions {
            chunk_rows: 1_000,
            ..IngestOptions::default()
        };
        let mut load = table.bulk_load(&options).unwrap();
        load.push(ids(0..1_000)).unwrap();
        load.push(ids(1_000..1_500)).unwrap();
        // One file of the load is written, nothing is committed yet.
        assert_eq!(source.message(&db).0, "1000 rows written");
        assert_eq!(load.finish().unwrap(), 1_500);
        assert_eq!(source.message(&db).0, "1500 rows written");
    }

    #[test]
    fn plan_rows_reads_live_metrics_below_the_root() {
        use datafusion::prelude::SessionContext;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let ctx = SessionContext::new();
            let df = ctx
                .sql("SELECT v * 2 AS w FROM (VALUES (1), (2), (3), (4)) t(v) WHERE v > 1")
                .await
                .unwrap();
            let plan = df.create_physical_plan().await.unwrap();
            // Operators register their metrics when they start.
            assert_eq!(plan_rows(plan.as_ref()), None, "nothing ran yet");
            let batches = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx())
                .await
                .unwrap();
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
            // The inputs of the root produced at least the 3 result rows (the filter's input
            // saw all 4 when it is below the root).
            let rows = plan_rows(plan.as_ref()).unwrap();
            assert!((3..=4).contains(&rows), "{rows}");
        });
    }
}
