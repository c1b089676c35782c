//! Queries on datafusion-distributed workers: two workers in this process, each a tonic
//! server on 127.0.0.1 with a port of the OS's choosing (as datafusion-distributed's localhost
//! helper starts them), and the session as coordinator. Q1-Q8 of the benchmarks and a join,
//! over a table with overlapping runs, deletes (deletion vectors) and rows in the memtable,
//! answer exactly as the same session without workers.

#![cfg(feature = "distributed")]

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::Result;
use strata_datafusion::StrataSession;

/// Starts a worker on 127.0.0.1 and returns its `host:port`.
async fn start_worker() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        strata_datafusion::distributed::serve_worker(listener, None, std::future::pending())
            .await
            .unwrap();
    });
    address
}

async fn run(s: &StrataSession, sql: &str) -> Result<()> {
    s.sql(sql).await?.collect().await.map(|_| ())
}

async fn answer(s: &StrataSession, sql: &str) -> String {
    let batches = s.sql(sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

async fn explain(s: &StrataSession, sql: &str) -> String {
    answer(s, &format!("EXPLAIN {sql}")).await
}

/// The benchmarks' queries (Q4 is a point lookup, which stays local) and a join.
const QUERIES: &[&str] = &[
    "SELECT count(*) FROM events",
    "SELECT kind, sum(amount) FROM events GROUP BY kind ORDER BY kind",
    "SELECT count(*) FROM events WHERE id BETWEEN 5000 AND 5000 + 10000",
    "SELECT * FROM events WHERE id = 7777",
    "SELECT user_id, sum(amount) s FROM events GROUP BY user_id ORDER BY s DESC, user_id LIMIT 10",
    "SELECT count(DISTINCT user_id) FROM events",
    "SELECT avg(amount) FROM events WHERE ts >= TIMESTAMP '2024-01-01T01:00:00' \
     AND ts < TIMESTAMP '2024-01-01T01:00:00' + INTERVAL '1 hour'",
    "SELECT count(*) FROM events WHERE kind = 'k3' AND amount > 500",
    "SELECT u.tier, count(*), sum(e.amount) FROM events e JOIN users u ON e.user_id = u.id \
     GROUP BY u.tier ORDER BY u.tier",
    "SELECT id, kind, amount FROM events WHERE amount > 990 ORDER BY id",
];

/// Rows `lo..=hi` of `events`, version `v` (amounts are whole numbers, so sums are exact
/// whatever order the tasks add them in).
fn insert_events(lo: i64, hi: i64, v: i64) -> String {
    format!(
        "INSERT INTO events SELECT value, value % 97, 'k' || (value % 7), \
         CAST((value * {v}) % 1000 AS DOUBLE), \
         CAST(to_timestamp(1704067200 + value) AS TIMESTAMP) \
         FROM generate_series({lo}, {hi})"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_on_two_workers_answer_as_local() {
    let s = StrataSession::memory().unwrap();
    // No compaction: the overlapping runs stay as they are.
    run(&s, "SET strata.compaction = 'none'").await.unwrap();
    run(
        &s,
        "CREATE TABLE events (id BIGINT PRIMARY KEY, user_id BIGINT, kind VARCHAR, \
         amount DOUBLE, ts TIMESTAMP)",
    )
    .await
    .unwrap();
    run(
        &s,
        "CREATE TABLE users (id BIGINT PRIMARY KEY, tier VARCHAR)",
    )
    .await
    .unwrap();
    run(
        &s,
        "INSERT INTO users SELECT value, 't' || (value % 3) FROM generate_series(0, 96)",
    )
    .await
    .unwrap();
    // Overlapping runs: three flushed inserts over overlapping key ranges, then deletes.
    for (lo, hi, v) in [(1, 20_000, 1), (5_000, 15_000, 3), (12_000, 30_000, 7)] {
        run(&s, &insert_events(lo, hi, v)).await.unwrap();
        run(&s, "SELECT * FROM strata_flush('events')")
            .await
            .unwrap();
    }
    run(&s, "DELETE FROM events WHERE id % 11 = 0")
        .await
        .unwrap();
    run(&s, "SELECT * FROM strata_flush('events')")
        .await
        .unwrap();
    run(&s, "SELECT * FROM strata_flush('users')")
        .await
        .unwrap();
    // The memtable: updates, deletes and new rows not flushed.
    run(&s, &insert_events(29_000, 31_000, 5)).await.unwrap();
    run(&s, "DELETE FROM events WHERE id BETWEEN 100 AND 200")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO events VALUES (7777, 1, 'k3', 999, TIMESTAMP '2024-01-01T02:00:00')",
    )
    .await
    .unwrap();
    let files = answer(&s, "SELECT count(*) > 2 FROM strata_sstables('events')").await;
    assert!(
        files.contains("true"),
        "several SST files expected: {files}"
    );

    let mut local = Vec::new();
    for sql in QUERIES {
        local.push(answer(&s, sql).await);
        assert!(!explain(&s, sql).await.contains("StrataShippedScanExec"));
    }

    let workers = [start_worker().await, start_worker().await];
    run(&s, &format!("SET strata.workers = '{}'", workers.join(",")))
        .await
        .unwrap();
    let plan = explain(&s, "SELECT kind, sum(amount) FROM events GROUP BY kind").await;
    assert!(plan.contains("StrataShippedScanExec"), "{plan}");
    assert!(plan.contains("overlay=shipped"), "{plan}");
    assert!(plan.contains("task=1/2"), "two tasks expected: {plan}");
    for (sql, want) in QUERIES.iter().zip(&local) {
        assert_eq!(&answer(&s, sql).await, want, "{sql}");
    }
    // EXPLAIN ANALYZE runs the distributed plan.
    let analyzed = answer(
        &s,
        "EXPLAIN ANALYZE SELECT kind, sum(amount) FROM events GROUP BY kind",
    )
    .await;
    assert!(analyzed.contains("StrataShippedScanExec"), "{analyzed}");
    // The point lookup stays local; the aggregate runs on the workers.
    assert!(
        !explain(&s, QUERIES[3])
            .await
            .contains("StrataShippedScanExec")
    );

    // Without workers again (the Rust API), the same answers.
    s.set_workers(&[]).unwrap();
    for (sql, want) in QUERIES.iter().zip(&local) {
        assert_eq!(&answer(&s, sql).await, want, "{sql}");
    }
    s.set_workers(&[&workers[0]]).unwrap();
    assert_eq!(&answer(&s, QUERIES[1]).await, &local[1]);
}

#[tokio::test]
async fn a_bad_worker_list_is_refused() {
    let s = StrataSession::memory().unwrap();
    let err = run(&s, "SET strata.workers = 'host:notaport'")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("strata.workers"), "{err}");
    assert!(s.set_workers(&["::"]).is_err());
}

#[tokio::test]
async fn the_lease_time_to_live_is_a_positive_number_of_seconds() {
    let s = StrataSession::memory().unwrap();
    for bad in ["0", "-1", "1h"] {
        let err = run(&s, &format!("SET strata.lease_ttl_secs = '{bad}'"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("strata.lease_ttl_secs"), "{err}");
    }
    run(&s, "SET strata.lease_ttl_secs = '600'").await.unwrap();
    let shown = answer(&s, "SHOW strata.lease_ttl_secs").await;
    assert!(shown.contains("600"), "{shown}");
    run(&s, "SET strata.lease_ttl_secs = 'default'")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_order_and_writes_with_workers() {
    let s = StrataSession::memory().unwrap();
    run(&s, "SET strata.compaction = 'none'").await.unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    // Disjoint files, empty memtable: the scan declares the key order.
    for (lo, hi) in [(1, 30_000), (30_001, 60_000), (60_001, 90_000)] {
        run(
            &s,
            &format!("INSERT INTO t SELECT value, value % 10 FROM generate_series({lo}, {hi})"),
        )
        .await
        .unwrap();
        run(&s, "SELECT * FROM strata_flush('t')").await.unwrap();
    }
    let queries = [
        "SELECT id, v FROM t ORDER BY id",
        "SELECT id FROM t ORDER BY id LIMIT 7",
        "SELECT id FROM t WHERE v = 3 ORDER BY id DESC LIMIT 7",
    ];
    answers_on_two_workers_match_local(&s, &queries).await;
    // Writes with workers set run in the session: INSERT ... SELECT of a shipped scan.
    run(&s, "CREATE TABLE u (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    run(&s, "INSERT INTO u SELECT id, v * 2 FROM t WHERE v = 1")
        .await
        .unwrap();
    assert_eq!(
        answer(&s, "SELECT count(*) AS n, sum(v) AS s FROM u").await,
        answer(
            &s,
            "SELECT count(*) AS n, sum(v * 2) AS s FROM t WHERE v = 1"
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_drop_the_deleted_rows_of_not_null_columns() {
    let s = StrataSession::memory().unwrap();
    run(&s, "SET strata.compaction = 'none'").await.unwrap();
    run(
        &s,
        "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, s VARCHAR NOT NULL)",
    )
    .await
    .unwrap();
    // Two disjoint files, each holding tombstones (NULL values in NOT NULL columns) and the
    // rows they hide.
    for (lo, hi) in [(1, 15_000), (15_001, 30_000)] {
        run(
            &s,
            &format!(
                "INSERT INTO t SELECT value, value % 10 AS v, CAST(value AS VARCHAR) AS s \
                 FROM generate_series({lo}, {hi})"
            ),
        )
        .await
        .unwrap();
        run(
            &s,
            &format!("DELETE FROM t WHERE id BETWEEN {lo} AND {hi} AND id % 3 = 0"),
        )
        .await
        .unwrap();
        run(&s, "SELECT * FROM strata_flush('t')").await.unwrap();
    }
    let queries = [
        "SELECT count(*) AS n, sum(v) AS v, max(s) AS s FROM t",
        "SELECT id, v, s FROM t WHERE id BETWEEN 100 AND 120 ORDER BY id",
        // A value filter, applied with the hidden rows (it cannot fail).
        "SELECT count(*) AS n, sum(v) AS v FROM t WHERE v >= 5 AND s <> '7'",
    ];
    let local = answers_on_two_workers_match_local(&s, &queries).await;
    assert!(local[0].contains("20000"), "{}", local[0]);
}

/// Answers `queries` in the session alone, then with two workers set (the first query's plan
/// ships its scan), and checks that both give the same answers; returns them.
async fn answers_on_two_workers_match_local(s: &StrataSession, queries: &[&str]) -> Vec<String> {
    let mut local = Vec::new();
    for sql in queries {
        local.push(answer(s, sql).await);
    }
    let workers = [start_worker().await, start_worker().await];
    s.set_workers(&[&workers[0], &workers[1]]).unwrap();
    let plan = explain(s, queries[0]).await;
    assert!(plan.contains("StrataShippedScanExec"), "{plan}");
    for (sql, want) in queries.iter().zip(&local) {
        assert_eq!(&answer(s, sql).await, want, "{sql}");
    }
    local
}
