//! Progress of long statements: a spinner with rows and rows per second on standard error.
//!
//! Progress is real: it is read from one of the engine's monotonic counters (rows written for
//! INSERT and bulk loads, rows read by scans for COPY, rows flushed for `\flush`) sampled while
//! the statement runs, minus the value when it started. Nothing is drawn unless standard error
//! is a terminal, and nothing before [`SHOW_AFTER`] has passed, so quick statements and piped
//! output see no progress at all. The bar is cleared when the statement ends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
            Some("INSERT" | "REPLACE" | "UPDATE" | "DELETE") => Some(Counter::RowsWritten),
            Some("CREATE") if words.iter().any(|w| w == "TABLE") => Some(Counter::RowsWritten),
            Some("COPY") => Some(Counter::ScanRows),
            _ => None,
        }
    }
}

/// Samples `counter` of `db`, returning the current value.
fn sample(db: &Db, counter: Counter) -> u64 {
    db.metrics().get(counter.metric()).unwrap_or(0)
}

/// A running progress display; stops and clears when dropped.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    /// The bar once shown; taken (and cleared) by `drop`, after which the task cannot draw.
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Progress {
    /// Starts showing progress of `counter` for `title`, if `enabled` (standard error is a
    /// terminal). Must be called inside a Tokio runtime.
    pub fn start(db: &Arc<Db>, counter: Counter, title: &str, enabled: bool) -> Progress {
        let shared: Arc<Mutex<Option<ProgressBar>>> = Arc::new(Mutex::new(None));
        if !enabled {
            return Progress {
                task: None,
                bar: shared,
            };
        }
        let db = Arc::clone(db);
        let title = title.to_string();
        let base = sample(&db, counter);
        let started = Instant::now();
        let slot = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            tokio::time::sleep(SHOW_AFTER).await;
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(title);
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
            loop {
                let rows = sample(&db, counter).saturating_sub(base);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let drawn = {
                    let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
                    match guard.as_ref() {
                        Some(bar) => {
                            bar.set_message(format!(
                                "{rows} {} ({:.0} rows/s)",
                                counter.label(),
                                rows as f64 / secs
                            ));
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
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let bar = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take();
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
    }
}
