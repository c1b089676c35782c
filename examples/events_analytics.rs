//! Analytic queries over the `generate_events` data set: the deterministic events table of
//! Strata's SQL benchmarks loaded into a Strata table, flushed and compacted into Parquet
//! SSTs, then queried — a point lookup and a key range (pruned by the primary key), top
//! kinds, hourly revenue with `date_trunc`, the biggest spenders, a window function (each
//! user's running total), approximate percentiles, and `EXPLAIN ANALYZE` of a key range scan.
//! Each query prints its result and its elapsed time.
//!
//! Run: `cargo run --example events_analytics [ROWS]` (default 50,000; try `--release` with
//! 10,000,000).

use std::error::Error;
use std::time::Instant;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::util::pretty::pretty_format_batches;
use strata::sql::functions::events_create_table_sql;
use strata::{Options, StrataSession};

/// Runs `sql` and collects its result.
async fn run(session: &StrataSession, sql: &str) -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    Ok(session.sql(sql).await?.collect().await?)
}

/// Runs `sql`, prints its result under `title` with the elapsed time, returns the batches.
async fn show(
    session: &StrataSession,
    title: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    let started = Instant::now();
    let batches = run(session, sql).await?;
    let elapsed = started.elapsed();
    println!(
        "{title} ({:.1} ms):\n{}",
        elapsed.as_secs_f64() * 1000.0,
        pretty_format_batches(&batches)?
    );
    Ok(batches)
}

/// The single BIGINT value of a one-row result.
fn first_i64(batches: &[RecordBatch]) -> Result<i64, Box<dyn Error>> {
    let batch = batches.first().ok_or("the query returned no batch")?;
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let rows: i64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("ROWS must be a positive number, got '{arg}'"))?,
        None => 50_000,
    };
    let dir = tempfile::tempdir()?;
    let session = strata::open(dir.path(), Options::default())?;

    let started = Instant::now();
    run(&session, &events_create_table_sql("events")).await?;
    run(
        &session,
        &format!("INSERT INTO events SELECT * FROM generate_events({rows})"),
    )
    .await?;
    run(&session, "SELECT * FROM strata_flush('events')").await?;
    run(&session, "SELECT * FROM strata_compact('events')").await?;
    println!(
        "loaded {rows} events into a Strata table, flushed and compacted in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    show(
        &session,
        "LSM levels",
        "SELECT level, files, rows, bytes FROM strata_levels('events') WHERE files > 0",
    )
    .await?;

    let total = first_i64(&run(&session, "SELECT count(*) FROM events").await?)?;
    if total != rows {
        return Err(format!("expected {rows} events, found {total}").into());
    }

    let probe = rows / 2;
    show(
        &session,
        "point lookup by primary key",
        &format!("SELECT * FROM events WHERE id = {probe}"),
    )
    .await?;
    let range = show(
        &session,
        "key range: 1,000 events",
        &format!(
            "SELECT count(*) AS events, round(sum(amount), 2) AS amount FROM events \
             WHERE id >= {probe} AND id < {probe} + 1000"
        ),
    )
    .await?;
    let in_range = first_i64(&range)?;
    if in_range != 1000.min(rows - probe) {
        return Err(format!("the key range returned {in_range} events").into());
    }
    show(
        &session,
        "top 5 kinds",
        "SELECT kind, count(*) AS events, round(avg(amount), 2) AS avg_amount \
         FROM events GROUP BY kind ORDER BY events DESC, kind LIMIT 5",
    )
    .await?;
    show(
        &session,
        "revenue per hour (first 5 hours)",
        "SELECT date_trunc('hour', ts) AS hour, count(*) AS events, round(sum(amount), 2) AS revenue \
         FROM events GROUP BY 1 ORDER BY 1 LIMIT 5",
    )
    .await?;
    show(
        &session,
        "biggest spenders",
        "SELECT user_id, count(*) AS events, round(sum(amount), 2) AS spent \
         FROM events GROUP BY user_id ORDER BY spent DESC LIMIT 5",
    )
    .await?;
    show(
        &session,
        "running total of the first user with 3 or more events (window function)",
        "WITH busy AS (SELECT user_id FROM events GROUP BY user_id HAVING count(*) >= 3 \
                       ORDER BY user_id LIMIT 1) \
         SELECT e.user_id, e.id, e.ts, e.amount, \
                round(sum(e.amount) OVER (PARTITION BY e.user_id ORDER BY e.ts), 2) AS running_total \
         FROM events e JOIN busy b ON e.user_id = b.user_id ORDER BY e.ts LIMIT 5",
    )
    .await?;
    show(
        &session,
        "amount percentiles",
        "SELECT round(approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY amount), 2) AS p50, \
                round(approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY amount), 2) AS p90, \
                round(approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY amount), 2) AS p99, \
                max(amount) AS max \
         FROM events",
    )
    .await?;

    // EXPLAIN ANALYZE shows the Strata scan with its key range and the rows it read (a
    // `count(*)` alone over a key range reads no row: the engine counts it from the files'
    // keys, so the query sums a column too).
    let plan = run(
        &session,
        &format!(
            "EXPLAIN ANALYZE SELECT count(*), sum(amount) FROM events \
             WHERE id BETWEEN {probe} AND {probe} + 99"
        ),
    )
    .await?;
    let text = pretty_format_batches(&plan)?.to_string();
    let scan = text
        .lines()
        .find(|line| line.contains("StrataScan"))
        .map(|line| line.trim_matches(|c| c == '|' || c == ' ').to_string())
        .unwrap_or_else(|| "(no StrataScan node in the plan)".to_string());
    println!("key range scan in EXPLAIN ANALYZE:\n  {scan}");
    session.close()?;
    println!("{total} events queried");
    Ok(())
}
