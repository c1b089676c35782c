//! The SQL catalog through every entry point of a session: atomic `CREATE OR REPLACE` and CTAS
//! also when the swap's manifest write fails (the state a crash at that point leaves),
//! persistent schemas and defaults through the context's own DDL path.

use std::io;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::error::Result;
use datafusion::prelude::SQLOptions;
use strata_datafusion::StrataSession;
use strata_engine::{FaultInjector, IoOp, Options, SyncMode};

async fn run(s: &StrataSession, sql: &str) -> Result<Vec<RecordBatch>> {
    s.sql(sql).await?.collect().await
}

/// The `(id, v)` rows of `table`, by id.
async fn rows(s: &StrataSession, table: &str) -> Vec<(i64, i64)> {
    let sql = format!("SELECT CAST(id AS BIGINT), CAST(v AS BIGINT) FROM {table} ORDER BY 1");
    let mut out = Vec::new();
    for batch in run(s, &sql).await.unwrap() {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let vs = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            out.push((ids.value(i), vs.value(i)));
        }
    }
    out
}

fn open(dir: &Path, faults: &Arc<FaultInjector>) -> StrataSession {
    let options = Options {
        faults: Some(Arc::clone(faults)),
        ..Options::default()
    };
    strata_datafusion::open(dir, options).unwrap()
}

#[tokio::test]
async fn a_replace_whose_swap_fails_keeps_the_old_table_also_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let s = open(dir.path(), &faults);
    run(&s, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    run(&s, "INSERT INTO t VALUES (1, 1), (2, 2)")
        .await
        .unwrap();
    // The staging table is created (one manifest write), its rows written, then the swap's
    // manifest write fails: the moment a crash between staging and swap would hit.
    faults.fail_after(&[IoOp::ManifestWrite], 1, io::ErrorKind::Other);
    let replaced = run(
        &s,
        "CREATE OR REPLACE TABLE t (id INT PRIMARY KEY, v INT) AS VALUES (7, 70), (8, 80)",
    )
    .await;
    assert!(replaced.is_err());
    // The discard of the staging table fails too: it is left for the next open to drop.
    assert_eq!(faults.failures(), 2);
    // A CTAS whose publication fails leaves no table at all, never a half one.
    faults.fail_after(&[IoOp::ManifestWrite], 1, io::ErrorKind::Other);
    assert!(run(&s, "CREATE TABLE c AS VALUES (1, 1)").await.is_err());
    faults.disarm();
    assert_eq!(rows(&s, "t").await, [(1, 1), (2, 2)]);
    assert!(!s.db().has_table("c"));
    s.close().unwrap();
    let s = open(dir.path(), &faults);
    assert_eq!(rows(&s, "t").await, [(1, 1), (2, 2)]);
    let names: Vec<String> = s.db().list_tables().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["t"], "the staging tables are gone");
    s.close().unwrap();
}

#[tokio::test]
async fn a_replacement_s_rows_are_synced_before_the_swap_whatever_the_sync_mode() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let options = Options {
        sync_mode: SyncMode::Never,
        faults: Some(Arc::clone(&faults)),
        ..Options::default()
    };
    let s = strata_datafusion::open(dir.path(), options).unwrap();
    run(&s, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    run(&s, "INSERT INTO t VALUES (1, 1)").await.unwrap();
    // Were the new rows not synced, a power loss after the swap could leave the new table
    // without them and the old one dropped. A sync that fails must stop the replace.
    faults.fail_after(&[IoOp::WalSync], 0, io::ErrorKind::Other);
    let replaced = run(
        &s,
        "CREATE OR REPLACE TABLE t (id INT PRIMARY KEY, v INT) AS VALUES (2, 2)",
    )
    .await;
    assert!(replaced.is_err(), "the WAL sync was not attempted");
    faults.disarm();
    assert_eq!(rows(&s, "t").await, [(1, 1)]);
}

#[tokio::test]
async fn every_session_entry_point_replaces_atomically() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    run(&s, "INSERT INTO t VALUES (1, 1)").await.unwrap();
    let bad = "CREATE OR REPLACE TABLE t (id INT PRIMARY KEY, v INT) AS VALUES (NULL, 1)";
    assert!(s.sql(bad).await.is_err());
    assert!(s.sql_with_options(bad, SQLOptions::new()).await.is_err());
    let plan = s.state().create_logical_plan(bad).await.unwrap();
    assert!(s.execute_logical_plan(plan).await.is_err());
    assert_eq!(rows(&s, "t").await, [(1, 1)]);
    // SQLOptions still apply.
    let no_ddl = SQLOptions::new().with_allow_ddl(false);
    assert!(
        s.sql_with_options("CREATE TABLE x (id INT)", no_ddl)
            .await
            .is_err()
    );
    assert!(!s.db().has_table("x"));
}

#[tokio::test]
async fn the_context_s_own_ddl_path_makes_persistent_schemas_tables_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let s = open(dir.path(), &faults);
    let ctx = s.context().clone();
    for sql in [
        "CREATE SCHEMA s2",
        "CREATE TABLE s2.t (id INT PRIMARY KEY, v INT DEFAULT 5)",
        "INSERT INTO s2.t VALUES (1, 1)",
        "INSERT INTO s2.t VALUES (1, 2)",
        "CREATE TABLE s2.c AS SELECT id + 10 AS id, v FROM s2.t",
    ] {
        ctx.sql(sql).await.unwrap().collect().await.unwrap();
    }
    drop(ctx);
    s.close().unwrap();
    let s = open(dir.path(), &faults);
    run(&s, "INSERT INTO s2.t (id) VALUES (2)").await.unwrap();
    assert_eq!(rows(&s, "s2.t").await, [(1, 2), (2, 5)]);
    assert_eq!(rows(&s, "s2.c").await, [(11, 2)]);
    s.close().unwrap();
}
