//! A table that cannot flush does not block the others: explicit flushes try every table and
//! name the failures, background flushes of other tables go on while the failing one backs
//! off, close succeeds with the unflushed rows in the WAL, and the failing table flushes once
//! the cause is gone.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use strata_engine::{Db, FaultInjector, IoOp, KeyRange, Options, ScanOptions, Table};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn rows(from: i64, to: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(from..to)),
            Arc::new(Int64Array::from_iter_values((from..to).map(|i| i * 10))),
        ],
    )
    .unwrap()
}

fn count(table: &Table) -> usize {
    table
        .scan(KeyRange::all(), ScanOptions::default())
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum()
}

fn files(table: &Table) -> usize {
    table.stats().files_per_level.iter().sum()
}

/// Waits (bounded) for `done`; the deadline only stops a broken run from hanging.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_table_that_cannot_flush_does_not_block_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let options = || Options {
        faults: Some(Arc::clone(&faults)),
        ..Options::default()
    };
    let db = Db::open(dir.path(), options()).unwrap();
    let broken = db.create_table("broken", schema(), &["id"]).unwrap();
    // Several healthy tables: before the fix the first failure stopped the flush of every
    // table after it, in an order that varies from run to run.
    let healthy: Vec<Table> = (0..7)
        .map(|i| {
            db.create_table(&format!("healthy{i}"), schema(), &["id"])
                .unwrap()
        })
        .collect();
    faults.fail_paths_containing(
        &[IoOp::SstWrite],
        &format!("sst/t{:06}/", broken.id()),
        io::ErrorKind::StorageFull,
    );
    broken.insert(&rows(0, 100)).unwrap();
    for table in &healthy {
        table.insert(&rows(0, 50)).unwrap();
    }

    // An explicit flush of every table flushes the healthy ones and names the broken one.
    let failed = db.flush_tables().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "broken");
    assert!(
        failed[0].1.to_string().contains("injected"),
        "{}",
        failed[0].1
    );
    for table in &healthy {
        assert_eq!(files(table), 1, "{} flushed", table.name());
        assert_eq!(table.stats().memtable_entries, 0);
    }
    assert_eq!(files(&broken), 0);
    assert_eq!(count(&broken), 100, "the broken table's rows stay readable");
    // `Db::flush` tries every table too, and reports the failure.
    healthy[0].insert(&rows(50, 60)).unwrap();
    assert!(db.flush().is_err());
    assert_eq!(files(&healthy[0]), 2);

    // Background flushes: the broken table's flush fails and backs off; the others' flushes
    // run meanwhile.
    broken.insert(&rows(100, 200)).unwrap();
    db.flush_tables().unwrap();
    healthy[1].insert(&rows(50, 70)).unwrap();
    healthy[1].flush().unwrap();
    assert_eq!(files(&healthy[1]), 2);
    let error = db.background_error().unwrap_or_default();
    assert!(
        error.is_empty() || error.contains("'broken'"),
        "a background error names its table: {error}"
    );

    // Close succeeds with the broken table unflushed; its rows come back from the WAL.
    drop(broken);
    drop(healthy);
    db.close().unwrap();
    faults.disarm();
    let db = Db::open(dir.path(), options()).unwrap();
    let broken = db.table("broken").unwrap();
    assert_eq!(count(&broken), 200);
    assert_eq!(count(&db.table("healthy0").unwrap()), 60);
    // Once writes succeed again it flushes, and the WAL it held is released.
    assert!(db.flush_tables().unwrap().is_empty());
    assert!(files(&broken) >= 1);
    assert_eq!(count(&broken), 200);
    db.close().unwrap();
}

#[test]
fn a_failed_background_flush_is_retried_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let db = Db::open(
        dir.path(),
        Options {
            faults: Some(Arc::clone(&faults)),
            background_threads: 1,
            ..Options::default()
        },
    )
    .unwrap();
    let broken = db.create_table("broken", schema(), &["id"]).unwrap();
    let healthy = db.create_table("healthy", schema(), &["id"]).unwrap();
    faults.fail_paths_containing(
        &[IoOp::SstWrite],
        &format!("sst/t{:06}/", broken.id()),
        io::ErrorKind::StorageFull,
    );
    broken.insert(&rows(0, 10)).unwrap();
    // The explicit flush fails and leaves an immutable memtable; the background, which
    // also tries it, backs off, and meanwhile flushes the healthy table on its one worker.
    assert!(broken.flush().is_err());
    assert_eq!(broken.stats().immutable_memtables, 1);
    healthy.insert(&rows(0, 10)).unwrap();
    healthy.flush().unwrap();
    assert_eq!(files(&healthy), 1);
    assert_eq!(files(&broken), 0);
    // Once the cause is gone a retry flushes it without any new trigger.
    faults.disarm();
    wait_for("the retried background flush", || files(&broken) == 1);
    assert_eq!(broken.stats().immutable_memtables, 0);
    assert_eq!(count(&broken), 10);
    // The error a failed background flush reported ends with its successful retry.
    wait_for("the background error to clear", || {
        db.background_error().is_none()
    });
    db.close().unwrap();
}
