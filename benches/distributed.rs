//! Q1-Q8 of `shared/BENCHMARKS.md` with 0, 1 and 2 datafusion-distributed workers.
//!
//! The table `events (id BIGINT PRIMARY KEY, user_id, kind, amount, ts)` holds
//! `STRATA_BENCH_ROWS` rows (default 10,000,000), bulk-loaded in chunks of 1M rows and flushed,
//! in `STRATA_BENCH_DB` (a directory or an `s3://` URL; default a temporary directory). Each
//! query runs once to warm the caches, then `STRATA_BENCH_REPS` times (default 3); the median is
//! reported, per number of workers. Without `STRATA_BENCH_WORKERS` the workers are in this
//! process, on loopback (this shows how plans split and what the network path costs, not
//! scaling: they share the machine's cores). On real machines, start `strata worker --listen
//! ADDR DB` on each and give `STRATA_BENCH_WORKERS=host1:port,host2:port` with
//! `STRATA_BENCH_DB` naming the same database (on object storage, or a shared file system):
//! the runs then use the first 1, then 2, ... of them.
//!
//! ```text
//! nice -n 10 cargo bench --bench distributed
//! ```
//!
//! Prints a markdown table and writes it to `benches/results/distributed.md` (another
//! directory with `STRATA_BENCH_RESULTS`).

use std::time::{Duration, Instant};

use strata_datafusion::StrataSession;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(s: &StrataSession, sql: &str) -> datafusion::error::Result<()> {
    s.sql(sql).await?.collect().await.map(|_| ())
}

/// The answer as sorted lines (the distributed plan may return rows in another order).
async fn answer(s: &StrataSession, sql: &str) -> datafusion::error::Result<Vec<String>> {
    let batches = s.sql(sql).await?.collect().await?;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    Ok(lines)
}

/// How the plan runs: the number of tasks of its shipped scan, or "local".
async fn placement(s: &StrataSession, sql: &str) -> datafusion::error::Result<String> {
    let plan = answer(s, &format!("EXPLAIN {sql}")).await?.join("\n");
    if !plan.contains("StrataShippedScanExec") {
        return Ok("local".into());
    }
    let tasks = plan
        .match_indices("task=")
        .filter_map(|(at, _)| {
            let rest = &plan[at + 5..];
            let end = rest.find(|c: char| !c.is_ascii_digit() && c != '/')?;
            rest[..end].split_once('/')?.1.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(1);
    Ok(format!("{tasks} task{}", if tasks == 1 { "" } else { "s" }))
}

fn queries(rows: usize) -> Vec<(&'static str, String)> {
    let x = rows / 2;
    let point = rows * 7 / 9;
    vec![
        ("Q1", "SELECT count(*) FROM events".into()),
        (
            "Q2",
            "SELECT kind, sum(amount) FROM events GROUP BY kind".into(),
        ),
        (
            "Q3",
            format!("SELECT count(*) FROM events WHERE id BETWEEN {x} AND {x} + 100000"),
        ),
        ("Q4", format!("SELECT * FROM events WHERE id = {point}")),
        (
            "Q5",
            "SELECT user_id, sum(amount) s FROM events GROUP BY user_id ORDER BY s DESC LIMIT 10"
                .into(),
        ),
        ("Q6", "SELECT count(DISTINCT user_id) FROM events".into()),
        (
            "Q7",
            "SELECT avg(amount) FROM events WHERE ts >= TIMESTAMP '2024-06-01T00:00:00' \
             AND ts < TIMESTAMP '2024-06-01T00:00:00' + INTERVAL '1 day'"
                .into(),
        ),
        (
            "Q8",
            "SELECT count(*) FROM events WHERE kind = 'k3' AND amount > 500".into(),
        ),
    ]
}

async fn start_worker() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a worker");
    let address = listener.local_addr().expect("worker address").to_string();
    tokio::spawn(async move {
        if let Err(error) =
            strata_datafusion::distributed::serve_worker(listener, None, std::future::pending())
                .await
        {
            eprintln!("worker failed: {error}");
        }
    });
    address
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows = env_usize("STRATA_BENCH_ROWS", 10_000_000);
    let reps = env_usize("STRATA_BENCH_REPS", 3).max(1);
    let temp = tempfile::tempdir()?;
    let db = std::env::var("STRATA_BENCH_DB")
        .unwrap_or_else(|_| temp.path().join("db").display().to_string());
    let s = strata_datafusion::open(&db, strata_engine::Options::default())?;
    let exists = s.sql("SELECT count(*) FROM events").await.is_ok();
    if !exists {
        run(
            &s,
            "CREATE TABLE events (id BIGINT PRIMARY KEY, user_id BIGINT, kind VARCHAR, \
             amount DOUBLE, ts TIMESTAMP)",
        )
        .await?;
        let chunk = 1_000_000;
        let mut lo = 1;
        while lo <= rows {
            let hi = (lo + chunk - 1).min(rows);
            run(
                &s,
                &format!(
                    "INSERT INTO events SELECT value, value % 100000, 'k' || (value % 10), \
                     CAST(value % 1000 AS DOUBLE), \
                     CAST(to_timestamp(1704067200 + value * 3) AS TIMESTAMP) \
                     FROM generate_series({lo}, {hi})"
                ),
            )
            .await?;
            lo = hi + 1;
        }
        run(&s, "SELECT * FROM strata_flush('events')").await?;
    }
    let remote: Option<Vec<String>> = std::env::var("STRATA_BENCH_WORKERS")
        .ok()
        .map(|w| w.split(',').map(|s| s.trim().to_string()).collect());
    let counts: Vec<usize> = match &remote {
        Some(list) => (0..=list.len()).collect(),
        None => vec![0, 1, 2],
    };
    let local_workers = match &remote {
        Some(_) => Vec::new(),
        None => vec![start_worker().await, start_worker().await],
    };
    let pool = remote.unwrap_or(local_workers);
    let queries = queries(rows);
    let mut table = format!(
        "| query | {} |\n|---|{}\n",
        counts
            .iter()
            .map(|n| format!("{n} workers (ms)"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(counts.len())
    );
    let mut results: Vec<Vec<(Duration, String)>> = vec![Vec::new(); queries.len()];
    let mut expected: Vec<Vec<String>> = Vec::new();
    for &n in &counts {
        let workers: Vec<&str> = pool.iter().take(n).map(String::as_str).collect();
        s.set_workers(&workers)?;
        for (i, (name, sql)) in queries.iter().enumerate() {
            // Checked against the answer without workers. Q5's `ORDER BY s DESC LIMIT 10`
            // has ties (every user's sum is 100 times `user_id % 1000`), so any ten of the
            // tied users are a right answer: its check breaks the ties by `user_id`.
            let checked = sql.replace("ORDER BY s DESC LIMIT", "ORDER BY s DESC, user_id LIMIT");
            let got = answer(&s, &checked).await?;
            if n == 0 {
                expected.push(got);
            } else if got != expected[i] {
                return Err(
                    format!("{name} with {n} workers differs from the local answer").into(),
                );
            }
            let how = placement(&s, sql).await?;
            run(&s, sql).await?;
            let mut times = Vec::with_capacity(reps);
            for _ in 0..reps {
                let start = Instant::now();
                run(&s, sql).await?;
                times.push(start.elapsed());
            }
            times.sort();
            results[i].push((times[times.len() / 2], how));
        }
    }
    for ((name, _), times) in queries.iter().zip(&results) {
        let cells: Vec<String> = times
            .iter()
            .map(|(t, how)| format!("{:.1} ({how})", t.as_secs_f64() * 1000.0))
            .collect();
        table.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    }
    let header = format!(
        "Q1-Q8 at {rows} rows, database {db}, median of {reps}, workers {}; every answer \
         equal to the answer without workers; in parentheses how the plan ran (`local`: no \
         shipped scan)\n\n",
        if std::env::var("STRATA_BENCH_WORKERS").is_ok() {
            "remote"
        } else {
            "in process on loopback"
        }
    );
    print!("{header}{table}");
    let dir = std::env::var("STRATA_BENCH_RESULTS").unwrap_or_else(|_| "benches/results".into());
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        std::path::Path::new(&dir).join("distributed.md"),
        format!("{header}{table}"),
    )?;
    s.set_workers(&[])?;
    drop(s);
    Ok(())
}
