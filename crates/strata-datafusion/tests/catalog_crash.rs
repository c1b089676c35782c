//! Crash test of `CREATE OR REPLACE TABLE ... AS`: a child process replaces one table again and
//! again, each generation's rows all carrying the generation number, and reports every
//! acknowledged replace on stdout; the parent kills it with SIGKILL at a random moment, reopens
//! the database and checks that the table is one whole generation (never a mix, never a
//! partial one, never missing once a replace was acknowledged) at least as new as the last
//! acknowledged one.
//!
//! CI runs 8 cycles. Locally: `STRATA_CATALOG_CRASH_CYCLES=200 cargo test -p strata-datafusion
//! --test integration -- catalog_crash::`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use strata_engine::{Options, SyncMode};

const CHILD_ENV: &str = "STRATA_CATALOG_CRASH_CHILD_DIR";
const CYCLE_ENV: &str = "STRATA_CATALOG_CRASH_CHILD_CYCLE";
/// Rows of every generation.
const ROWS: i64 = 3_000;

fn options() -> Options {
    Options {
        // The loosest mode: the replace itself must make its rows durable.
        sync_mode: SyncMode::Never,
        ..Options::default()
    }
}

fn child(dir: &Path, cycle: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let session = strata_datafusion::open(dir, options()).expect("child open");
        let mut stdout = std::io::stdout().lock();
        for generation in cycle * 1_000_000.. {
            let sql = format!(
                "CREATE OR REPLACE TABLE t (id BIGINT PRIMARY KEY, g BIGINT) AS \
                 SELECT value, {generation} FROM generate_series(1, {ROWS})"
            );
            session
                .sql(&sql)
                .await
                .expect("child replace")
                .collect()
                .await
                .expect("child replace");
            writeln!(stdout, "ack {generation}").expect("stdout");
            stdout.flush().expect("stdout");
        }
    });
}

#[test]
fn catalog_crash_child() {
    // Runs only when launched by `a_killed_replace_leaves_one_whole_generation`.
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let cycle = std::env::var(CYCLE_ENV)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        child(Path::new(&dir), cycle);
    }
}

/// Runs one child for `delay`, kills it, returns the newest generation it acknowledged.
fn run_cycle(dir: &Path, cycle: u64, delay: Duration) -> Option<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "catalog_crash::catalog_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(generation) = line
                .strip_prefix("ack ")
                .and_then(|n| n.parse::<u64>().ok())
                && sender.send(generation).is_err()
            {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut newest = None;
    while started.elapsed() < delay {
        if let Ok(generation) = receiver.recv_timeout(Duration::from_millis(5)) {
            newest = Some(generation);
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    reader.join().unwrap();
    receiver.try_iter().last().or(newest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replace_leaves_one_whole_generation() {
    let cycles: u64 = std::env::var("STRATA_CATALOG_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Option<u64> = None;
    let mut state = 0x5EED_u64;
    for cycle in 1..=cycles {
        // A deterministic spread of kill moments, from during the open to many replaces in.
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(50 + (state >> 33) % 700);
        if let Some(generation) = run_cycle(dir.path(), cycle, delay) {
            acked = Some(generation);
        }
        let session = strata_datafusion::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let tables: Vec<String> = session
            .db()
            .list_tables()
            .into_iter()
            .map(|t| t.name)
            .collect();
        match acked {
            None => assert!(tables.len() <= 1, "cycle {cycle}: tables {tables:?}"),
            Some(_) => assert_eq!(tables, ["t"], "cycle {cycle}"),
        }
        if tables.is_empty() {
            session.close().unwrap();
            continue;
        }
        let batches = session
            .sql("SELECT count(*), count(DISTINCT g), min(g), max(id) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let value = |i: usize| batches[0].column(i).as_primitive::<Int64Type>().value(0);
        assert_eq!(value(0), ROWS, "cycle {cycle}: a partial generation");
        assert_eq!(value(1), 1, "cycle {cycle}: generations mixed");
        assert_eq!(value(3), ROWS, "cycle {cycle}");
        if let Some(acked) = acked {
            assert!(
                value(2) as u64 >= acked,
                "cycle {cycle}: generation {} is older than the acknowledged {acked}",
                value(2)
            );
        }
        session.close().unwrap();
    }
    assert!(acked.is_some(), "no replace was ever acknowledged");
}
