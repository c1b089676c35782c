//! Three processes on 127.0.0.1: two `strata worker --listen 127.0.0.1:0 DB` processes and
//! this test as the coordinator (a session with `strata.workers`, as `strata --workers` makes),
//! over a local directory and over the loopback S3 server (`moto`, see
//! `crates/strata-engine/tests/s3_server`).
//! The answers are the local ones; compaction during a query deletes nothing the query reads
//! (the query's lease, renewed while the query runs); a worker killed before its tasks run,
//! or while its task streams rows to the coordinator, fails the query with an error naming
//! the worker, never a hang, and the session answers again; `strata --workers` runs a query
//! through the shell.

#[path = "../crates/strata-engine/tests/s3_server/mod.rs"]
mod s3_server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::StreamExt;
use strata_datafusion::StrataSession;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A `strata worker` process, killed when dropped.
struct WorkerProcess {
    child: Child,
    address: String,
}

impl WorkerProcess {
    fn start(database: &str, remote: bool) -> Self {
        let mut command = Command::new(STRATA);
        if remote {
            s3_server::child_env(&mut command);
        }
        Self::spawn(command, database)
    }

    /// Starts `command` (the `strata` binary, its environment set) as a worker on loopback.
    fn spawn(mut command: Command, database: &str) -> Self {
        let mut child = command
            .args(["worker", "--listen", "127.0.0.1:0"])
            .arg(database)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start strata worker");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix("strata worker listening on ")
            .unwrap_or_else(|| panic!("unexpected worker output: {line}"))
            .to_string();
        WorkerProcess { child, address }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run(s: &StrataSession, sql: &str) {
    s.sql(sql).await.unwrap().collect().await.unwrap();
}

async fn answer(s: &StrataSession, sql: &str) -> String {
    let batches = s.sql(sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

const QUERIES: &[&str] = &[
    "SELECT kind, sum(amount), count(*) FROM events GROUP BY kind ORDER BY kind",
    "SELECT count(DISTINCT user_id) FROM events WHERE amount > 100",
    "SELECT user_id, max(amount) FROM events GROUP BY user_id ORDER BY user_id LIMIT 5",
];

/// The `expires_at_ms` of each lease on the database's storage.
fn lease_expiries(db: &str) -> Vec<u64> {
    let storage =
        strata_engine::storage::Storage::for_path(std::path::Path::new(db), None).unwrap();
    let mut expiries = Vec::new();
    for object in storage.list(strata_engine::lease::LEASE_DIR).unwrap() {
        if let Some((bytes, _)) = storage.get(&object).unwrap() {
            let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            expiries.push(record["expires_at_ms"].as_u64().unwrap());
        }
    }
    expiries
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The leases on the database's storage.
fn leases(db: &str) -> usize {
    strata_engine::storage::Storage::for_path(std::path::Path::new(db), None)
        .unwrap()
        .list(strata_engine::lease::LEASE_DIR)
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_and_two_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db").display().to_string();
    three_processes(&db, false, strata_engine::Options::default(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_and_two_worker_processes_on_s3() {
    let db = format!("s3://{}/db", s3_server::bucket("distributed"));
    let home = tempfile::tempdir().unwrap();
    let options = strata_engine::Options {
        local_wal_dir: Some(home.path().join("wal")),
        ..strata_engine::Options::default()
    };
    three_processes(&db, true, options, home.path()).await;
}

async fn three_processes(
    db: &str,
    remote: bool,
    options: strata_engine::Options,
    home: &std::path::Path,
) {
    let s = strata_datafusion::open(db, options).unwrap();
    run(&s, "SET strata.compaction = 'none'").await;
    run(
        &s,
        "CREATE TABLE events (id BIGINT PRIMARY KEY, user_id BIGINT, kind VARCHAR, amount DOUBLE)",
    )
    .await;
    for (lo, hi, v) in [(1, 30_000, 1), (10_000, 40_000, 3), (35_000, 60_000, 7)] {
        run(
            &s,
            &format!(
                "INSERT INTO events SELECT value, value % 89, 'k' || (value % 5), \
                 CAST((value * {v}) % 1000 AS DOUBLE) FROM generate_series({lo}, {hi})"
            ),
        )
        .await;
        run(&s, "SELECT * FROM strata_flush('events')").await;
    }
    run(&s, "DELETE FROM events WHERE id % 13 = 0").await;
    run(&s, "SELECT * FROM strata_flush('events')").await;
    run(
        &s,
        "INSERT INTO events VALUES (5, 5, 'k9', 999), (70000, 1, 'k0', 1)",
    )
    .await;
    let local: Vec<String> = futures::future::join_all(QUERIES.iter().map(|q| answer(&s, q))).await;

    let workers = [
        WorkerProcess::start(db, remote),
        WorkerProcess::start(db, remote),
    ];
    let addresses: Vec<&str> = workers.iter().map(|w| w.address.as_str()).collect();
    s.set_workers(&addresses).unwrap();
    for (sql, want) in QUERIES.iter().zip(&local) {
        assert_eq!(&answer(&s, sql).await, want, "{sql}");
    }

    // Compaction while a distributed query runs: its files are leased and stay readable. The
    // lease lives as long as the query: with a 2 s time-to-live, the coordinator renews it.
    run(&s, "SET strata.lease_ttl_secs = '2'").await;
    let frame = s
        .sql("SELECT id, amount FROM events WHERE amount >= 0")
        .await
        .unwrap();
    let mut stream = frame.execute_stream().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(leases(db) > 0, "a lease while the query runs");
    let first_expiry = lease_expiries(db)[0];
    assert!(
        first_expiry <= now_ms() + 2_000,
        "the session's time-to-live, not the default hour"
    );
    let renewed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while lease_expiries(db)
            .first()
            .is_none_or(|&e| e <= first_expiry)
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(renewed.is_ok(), "the lease is renewed while the query runs");
    s.set_workers(&[]).unwrap();
    run(&s, "SELECT * FROM strata_compact('events')").await;
    let mut rows = first.num_rows();
    while let Some(batch) = stream.next().await {
        rows += batch.unwrap().num_rows();
    }
    drop(stream);
    let want = answer(&s, "SELECT count(*) FROM events WHERE amount >= 0").await;
    assert!(
        want.contains(&format!("| {rows} ")),
        "{rows} rows, want {want}"
    );
    assert_eq!(leases(db), 0, "the lease is released with the query");
    run(&s, "SET strata.lease_ttl_secs = 'default'").await;
    s.set_workers(&addresses).unwrap();
    for (sql, want) in QUERIES.iter().zip(&local) {
        assert_eq!(&answer(&s, sql).await, want, "{sql} after compaction");
    }
    // A second file, so the scan runs as two tasks again.
    run(
        &s,
        "INSERT INTO events SELECT value, value % 89, 'k1', 2 FROM generate_series(80000, 90000)",
    )
    .await;
    run(&s, "SELECT * FROM strata_flush('events')").await;
    let plan = answer(&s, &format!("EXPLAIN {}", QUERIES[0])).await;
    assert!(plan.contains("StrataShippedScanExec"), "{plan}");

    // A worker gone: the query fails with an error, in bounded time.
    let [first_worker, mut second_worker] = workers;
    let first_address = first_worker.address.clone();
    drop(first_worker);
    second_worker.child.kill().unwrap();
    second_worker.child.wait().unwrap();
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        s.sql(QUERIES[0]).await?.collect().await
    })
    .await
    .expect("a query on dead workers must not hang");
    let error = outcome
        .expect_err("a query on dead workers fails")
        .to_string();
    assert!(
        error.contains(&second_worker.address) || error.contains(&first_address),
        "the error names a worker: {error}"
    );
    drop(second_worker);
    s.set_workers(&[]).unwrap();
    assert!(answer(&s, QUERIES[0]).await.contains("| k1 "));
    drop(s);

    // The shell as coordinator: `strata --workers ... DIR -c SQL`.
    let worker = WorkerProcess::start(db, remote);
    let mut shell = Command::new(STRATA);
    if remote {
        s3_server::child_env(&mut shell);
    }
    let out = shell
        .env("XDG_DATA_HOME", home.join("shell"))
        .arg("--workers")
        .arg(&worker.address)
        .arg(db)
        .args([
            "--format",
            "csv",
            "-q",
            "-c",
            "SELECT count(*) FROM events WHERE amount > 500",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.lines().count() >= 2, "{shown}");
}

/// Rows of `wide` per file: two files, so a scan runs as two tasks, one per worker.
const WIDE_ROWS: i64 = 150_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_lost_while_streaming_fails_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db").display().to_string();
    let s = strata_datafusion::open(&db, strata_engine::Options::default()).unwrap();
    // The coordinator buffers at most 1 MiB per worker connection (64 MiB by default), so a
    // task's result (~29 MB of hex digests, which the network compression cannot shrink)
    // cannot all sit in buffers: the worker is still sending when it is killed.
    let mut budget = strata_datafusion::distributed::DistributedConfig::default();
    budget.worker_connection_buffer_budget_bytes = 1 << 20;
    s.context()
        .state_ref()
        .write()
        .config_mut()
        .options_mut()
        .extensions
        .insert(budget);
    run(&s, "SET strata.compaction = 'none'").await;
    run(
        &s,
        "CREATE TABLE wide (id BIGINT PRIMARY KEY, a BIGINT, h1 VARCHAR, h2 VARCHAR, x DOUBLE)",
    )
    .await;
    for file in 0..2 {
        let (lo, hi) = (file * WIDE_ROWS + 1, (file + 1) * WIDE_ROWS);
        run(
            &s,
            &format!(
                "INSERT INTO wide SELECT value, value * 7, md5(CAST(value AS VARCHAR)), \
                 encode(sha512(CAST(value AS VARCHAR)), 'hex'), CAST(value AS DOUBLE) / 3 \
                 FROM generate_series({lo}, {hi})"
            ),
        )
        .await;
        run(&s, "SELECT * FROM strata_flush('wide')").await;
    }
    let summary = "SELECT count(*), sum(a), count(DISTINCT h2) FROM wide";
    let local = answer(&s, summary).await;

    let workers = [
        WorkerProcess::start(&db, false),
        WorkerProcess::start(&db, false),
    ];
    let addresses: Vec<&str> = workers.iter().map(|w| w.address.as_str()).collect();
    s.set_workers(&addresses).unwrap();
    let plan = answer(&s, "EXPLAIN SELECT * FROM wide").await;
    assert!(plan.contains("StrataShippedScanExec"), "{plan}");
    assert!(plan.contains("task=1/2"), "two tasks expected: {plan}");

    // The query is under way (its first rows are here) when the second worker is killed.
    let (stream, first) = under_way(&s, "SELECT * FROM wide").await;
    let [survivor, mut killed] = workers;
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let (rows, error) = drain(stream, first.num_rows(), "killed").await;
    assert!(
        (rows as i64) < 2 * WIDE_ROWS,
        "all rows arrived: the worker was not killed mid-stream"
    );
    eprintln!("error of a worker killed mid-stream: {error}");
    assert!(
        error.contains(&killed.address) && error.contains("lost the connection"),
        "the error names the worker: {error}"
    );
    leases_released(&db).await;

    // The session answers again, on the remaining worker.
    s.set_workers(&[&survivor.address]).unwrap();
    assert_eq!(answer(&s, summary).await, local);

    // A worker that stops answering (a frozen process: no reset reaches the coordinator, as
    // when a machine loses power) fails the query too, once its connection's keepalive ping
    // goes unanswered.
    let mut frozen = WorkerProcess::start(&db, false);
    s.set_workers(&[&survivor.address, &frozen.address])
        .unwrap();
    let (stream, first) = under_way(&s, "SELECT * FROM wide").await;
    let pid = frozen.child.id().to_string();
    let stopped = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stopped.success());
    let (rows, error) = drain(stream, first.num_rows(), "stopped").await;
    assert!((rows as i64) < 2 * WIDE_ROWS, "all rows arrived");
    eprintln!("error of a worker stopped mid-stream: {error}");
    assert!(
        error.contains(&frozen.address) && error.contains("lost the connection"),
        "the error names the worker: {error}"
    );
    frozen.child.kill().unwrap();
    frozen.child.wait().unwrap();
    leases_released(&db).await;

    // And locally; the database is unharmed.
    s.set_workers(&[]).unwrap();
    assert_eq!(answer(&s, summary).await, local);
    run(&s, "INSERT INTO wide VALUES (0, 0, 'h1', 'h2', 0)").await;
    assert!(
        answer(&s, "SELECT count(*) FROM wide")
            .await
            .contains(&format!("| {} ", 2 * WIDE_ROWS + 1))
    );
}

/// Starts `sql` and reads its first batch (not empty): the query is under way.
async fn under_way(
    s: &StrataSession,
    sql: &str,
) -> (
    datafusion::execution::SendableRecordBatchStream,
    datafusion::arrow::array::RecordBatch,
) {
    let mut stream = s.sql(sql).await.unwrap().execute_stream().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.num_rows() > 0);
    (stream, first)
}

/// Reads the rest of a query's stream, which must end with an error within a generous bound
/// (the "no hang" check); returns the rows read (with the `first` already taken) and the error.
async fn drain(
    mut stream: datafusion::execution::SendableRecordBatchStream,
    first: usize,
    how: &str,
) -> (usize, String) {
    let drained = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        let mut rows = first;
        while let Some(batch) = stream.next().await {
            match batch {
                Ok(batch) => rows += batch.num_rows(),
                Err(e) => return (rows, Some(e)),
            }
        }
        (rows, None)
    })
    .await
    .unwrap_or_else(|_| panic!("a query whose worker is {how} mid-stream must not hang"));
    let (rows, error) = drained;
    let error = error
        .unwrap_or_else(|| panic!("the query ended without an error after {rows} rows"))
        .to_string();
    (rows, error)
}

/// Waits (bounded) until the leases of a failed query are gone: the plan's last references
/// go with the query's tasks, which end once cancelled.
async fn leases_released(db: &str) {
    let released = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while leases(db) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "the lease is released with the failed query"
    );
}

/// `strata worker` started with `STRATA_WORKER_TOKEN`.
fn start_worker_with_token(database: &str, token: &str) -> WorkerProcess {
    let mut command = Command::new(STRATA);
    command.env("STRATA_WORKER_TOKEN", token);
    WorkerProcess::spawn(command, database)
}

/// Workers given a token refuse calls without it; a coordinator with the same token gets the
/// answers; a worker refuses to listen beyond loopback without a token.
#[test]
fn workers_with_a_token_refuse_calls_without_it() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("db");
    let db = db.to_str().unwrap();
    let shell = |token: Option<&str>, workers: &str, sql: &str| {
        let mut command = Command::new(STRATA);
        command
            .env("XDG_DATA_HOME", home.path().join("shell"))
            .env_remove("STRATA_WORKER_TOKEN");
        if let Some(token) = token {
            command.env("STRATA_WORKER_TOKEN", token);
        }
        if !workers.is_empty() {
            command.args(["--workers", workers]);
        }
        command
            .arg(db)
            .args(["--format", "csv", "-q", "-c", sql])
            .output()
            .unwrap()
    };
    // Two flushed files of disjoint keys: the scan runs as two tasks, one per worker.
    let setup = shell(
        None,
        "",
        "CREATE TABLE events (id BIGINT PRIMARY KEY, v BIGINT); \
         INSERT INTO events SELECT value, value * 2 FROM generate_series(1, 1000); \
         SELECT * FROM strata_flush('events'); \
         INSERT INTO events SELECT value, value * 2 FROM generate_series(1001, 2000); \
         SELECT * FROM strata_flush('events');",
    );
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let sql = "SELECT count(*), sum(v) FROM events WHERE v > 10";
    let local = shell(None, "", sql);
    assert!(local.status.success());

    let first = start_worker_with_token(db, "s3cret");
    let second = start_worker_with_token(db, "s3cret");
    let workers = format!("{},{}", first.address, second.address);
    let explained = shell(Some("s3cret"), &workers, &format!("EXPLAIN {sql}"));
    let plan = String::from_utf8_lossy(&explained.stdout);
    assert!(plan.contains("StrataShippedScanExec"), "{plan}");

    let with_token = shell(Some("s3cret"), &workers, sql);
    assert!(
        with_token.status.success(),
        "{}",
        String::from_utf8_lossy(&with_token.stderr)
    );
    assert_eq!(with_token.stdout, local.stdout);

    for token in [None, Some("wrong")] {
        let refused = shell(token, &workers, sql);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "answered without the token");
        assert!(stderr.contains("STRATA_WORKER_TOKEN"), "{stderr}");
    }

    // Beyond loopback only with a token.
    let refused = Command::new(STRATA)
        .env_remove("STRATA_WORKER_TOKEN")
        .args(["worker", "--listen", "0.0.0.0:0"])
        .arg(db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("STRATA_WORKER_TOKEN"), "{stderr}");
    let mut open = Command::new(STRATA)
        .env("STRATA_WORKER_TOKEN", "s3cret")
        .args(["worker", "--listen", "0.0.0.0:0"])
        .arg(db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(open.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = open.kill();
    let _ = open.wait();
    assert!(
        line.starts_with("strata worker listening on 0.0.0.0:"),
        "{line}"
    );
}
