//! Crash test of bulk `INSERT`s: a child process runs `INSERT INTO t SELECT ...` statements
//! large enough to be bulk loads of several files (`strata.bulk_load_bytes` is small here),
//! each writing every key of `t` with its generation number, and reports every acknowledged
//! statement on stdout; the parent kills it with SIGKILL at a random moment (often while a
//! load is writing its files or committing), reopens the database and checks that the table
//! holds exactly one generation (never part of a load) at least as new as the last
//! acknowledged one (nothing acknowledged lost), and that no file of an unfinished load
//! remains.
//!
//! CI runs 8 cycles. Locally: `STRATA_BULK_CRASH_CYCLES=200 cargo test -p strata-datafusion
//! --test integration -- bulk_crash::`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use strata_engine::{Options, SyncMode};

const CHILD_ENV: &str = "STRATA_BULK_CRASH_CHILD_DIR";
const CYCLE_ENV: &str = "STRATA_BULK_CRASH_CHILD_CYCLE";
/// Keys of the table; every statement writes all of them.
const ROWS: i64 = 20_000;

fn options() -> Options {
    Options {
        // The loosest mode: the load itself must make its rows durable.
        sync_mode: SyncMode::Never,
        ..Options::default()
    }
}

fn child(dir: &Path, cycle: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let session = strata_datafusion::open(dir, options()).expect("child open");
        // About 320 KB per statement: five or more files of 64 KiB each.
        session
            .sql("SET strata.bulk_load_bytes = '65536'")
            .await
            .expect("child set")
            .collect()
            .await
            .expect("child set");
        session
            .sql("CREATE TABLE IF NOT EXISTS t (id BIGINT PRIMARY KEY, g BIGINT)")
            .await
            .expect("child create")
            .collect()
            .await
            .expect("child create");
        let mut stdout = std::io::stdout().lock();
        for generation in cycle * 1_000_000.. {
            let sql =
                format!("INSERT INTO t SELECT value, {generation} FROM generate_series(1, {ROWS})");
            session
                .sql(&sql)
                .await
                .expect("child insert")
                .collect()
                .await
                .expect("child insert");
            writeln!(stdout, "ack {generation}").expect("stdout");
            stdout.flush().expect("stdout");
        }
    });
}

#[test]
fn bulk_crash_child() {
    // Runs only when launched by `a_killed_bulk_insert_is_all_or_nothing`.
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
            "bulk_crash::bulk_crash_child",
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

/// SST files under the database's `sst/` directory.
fn sst_files(dir: &Path) -> usize {
    fn walk(dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    walk(&path)
                } else {
                    usize::from(path.extension().is_some_and(|x| x == "parquet"))
                }
            })
            .sum()
    }
    walk(&dir.join("sst"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bulk_insert_is_all_or_nothing() {
    let cycles: u64 = std::env::var("STRATA_BULK_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Option<u64> = None;
    let mut loads_seen = 0u64;
    let mut state = 0x0B01_u64;
    for cycle in 1..=cycles {
        // A deterministic spread of kill moments, from during the open to many loads in.
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(100 + (state >> 33) % 900);
        if let Some(generation) = run_cycle(dir.path(), cycle, delay) {
            acked = Some(generation);
        }
        let session = strata_datafusion::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        // Orphans of a killed load are gone at the open: every file is one of the table's.
        let table = session.db().table("t").ok();
        let listed: usize = table
            .as_ref()
            .map_or(0, |t| t.stats().files_per_level.iter().sum());
        assert_eq!(
            sst_files(dir.path()),
            listed,
            "cycle {cycle}: files of an unfinished load remain"
        );
        drop(table);
        let Some(acked) = acked else {
            session.close().unwrap();
            continue;
        };
        let batches = session
            .sql("SELECT count(*), count(DISTINCT g), min(g), max(id) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let value = |i: usize| batches[0].column(i).as_primitive::<Int64Type>().value(0);
        assert_eq!(value(0), ROWS, "cycle {cycle}: rows missing");
        assert_eq!(value(1), 1, "cycle {cycle}: part of a load is visible");
        assert_eq!(value(3), ROWS, "cycle {cycle}");
        assert!(
            value(2) as u64 >= acked,
            "cycle {cycle}: generation {} is older than the acknowledged {acked}",
            value(2)
        );
        loads_seen += 1;
        session.close().unwrap();
    }
    assert!(loads_seen > 0, "no bulk INSERT was ever acknowledged");
}
