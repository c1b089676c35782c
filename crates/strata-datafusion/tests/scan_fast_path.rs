//! Statistics of the Strata scan: `count(*)` is answered from an exact row count only when
//! the pinned view proves it (clean, wholly visible, pairwise disjoint files and empty
//! memtables, no key range, filter or limit); after upserts, deletes, overlapping flushes and
//! across a planned snapshot the answers stay those of a full merge.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::common::stats::Precision;
use datafusion::error::Result;
use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext, collect};
use strata_datafusion::StrataSession;
use strata_datafusion::provider::StrataScanExec;

async fn run(s: &StrataSession, sql: &str) -> Result<()> {
    s.sql(sql).await?.collect().await.map(|_| ())
}

async fn count(s: &StrataSession, sql: &str) -> i64 {
    let batches = s.sql(sql).await.unwrap().collect().await.unwrap();
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

async fn physical_plan(s: &StrataSession, sql: &str) -> Arc<dyn ExecutionPlan> {
    s.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// The first `StrataScanExec` of a plan.
fn find_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&StrataScanExec> {
    if let Some(scan) = plan.downcast_ref::<StrataScanExec>() {
        return Some(scan);
    }
    plan.children().into_iter().find_map(find_scan)
}

/// The row count the scan of `sql` reports, through DataFusion's statistics walk.
async fn scan_rows(s: &StrataSession, sql: &str) -> Precision<usize> {
    let plan = physical_plan(s, sql).await;
    let scan = find_scan(&plan).expect("the plan scans a Strata table");
    let stats = StatisticsContext::new()
        .compute(scan, &StatisticsArgs::new())
        .unwrap();
    assert_eq!(stats.num_rows, scan.row_count());
    stats.num_rows
}

/// True when `count(*)` of `table` is planned without a scan (answered from statistics).
async fn count_from_statistics(s: &StrataSession, table: &str) -> bool {
    let plan = physical_plan(s, &format!("SELECT count(*) FROM {table}")).await;
    find_scan(&plan).is_none()
}

fn flush(s: &StrataSession, table: &str) {
    s.db().table(table).unwrap().flush().unwrap();
}

fn compact(s: &StrataSession, table: &str) {
    s.db().table(table).unwrap().compact().unwrap();
}

async fn uncompacted_table(s: &StrataSession) {
    run(s, "SET strata.compaction = 'none'").await.unwrap();
    run(s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
}

/// `INSERT` of the keys `from..=to` with value `v`.
async fn insert_keys(s: &StrataSession, from: i64, to: i64, v: i64) {
    let values: Vec<String> = (from..=to).map(|k| format!("({k}, {v})")).collect();
    run(s, &format!("INSERT INTO t VALUES {}", values.join(", ")))
        .await
        .unwrap();
}

#[tokio::test]
async fn one_clean_file_gives_an_exact_count() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    // An empty table: no files, empty memtable.
    assert_eq!(scan_rows(&s, "SELECT * FROM t").await, Precision::Exact(0));
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 0);
    insert_keys(&s, 1, 100, 1).await;
    // Rows in the memtable: an estimate, and count(*) scans.
    assert!(matches!(
        scan_rows(&s, "SELECT * FROM t").await,
        Precision::Inexact(_)
    ));
    assert!(!count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 100);
    flush(&s, "t");
    assert_eq!(
        scan_rows(&s, "SELECT * FROM t").await,
        Precision::Exact(100)
    );
    assert!(count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 100);
}

#[tokio::test]
async fn overlapping_files_with_the_same_keys_are_not_counted_twice() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    flush(&s, "t");
    // Every key again (upserts), in a second clean file over the same key range.
    insert_keys(&s, 1, 10, 2).await;
    flush(&s, "t");
    let files: usize = s
        .db()
        .table("t")
        .unwrap()
        .view()
        .unwrap()
        .files_by_level()
        .iter()
        .map(Vec::len)
        .sum();
    assert_eq!(files, 2);
    // Summing the files would give 20.
    assert_eq!(
        scan_rows(&s, "SELECT * FROM t").await,
        Precision::Inexact(20)
    );
    assert!(!count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 10);
    // Compacted into one run: exact again.
    compact(&s, "t");
    assert_eq!(scan_rows(&s, "SELECT * FROM t").await, Precision::Exact(10));
    assert!(count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 10);
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 20);
}

#[tokio::test]
async fn disjoint_flushes_are_summed_exactly() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    flush(&s, "t");
    insert_keys(&s, 11, 25, 1).await;
    flush(&s, "t");
    assert_eq!(scan_rows(&s, "SELECT * FROM t").await, Precision::Exact(25));
    assert!(count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 25);
    // A third file touching one key of the first: no longer disjoint.
    insert_keys(&s, 10, 10, 7).await;
    flush(&s, "t");
    assert!(matches!(
        scan_rows(&s, "SELECT * FROM t").await,
        Precision::Inexact(_)
    ));
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 25);
}

#[tokio::test]
async fn deletes_and_upserts_are_never_counted_from_statistics() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    flush(&s, "t");
    assert!(count_from_statistics(&s, "t").await);
    // A tombstone in the memtable.
    run(&s, "DELETE FROM t WHERE id = 3").await.unwrap();
    assert!(!count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 9);
    // The tombstone flushed into a file of its own (not clean, and overlapping).
    flush(&s, "t");
    assert!(matches!(
        scan_rows(&s, "SELECT * FROM t").await,
        Precision::Inexact(_)
    ));
    assert!(!count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 9);
    // An upsert in the memtable.
    run(&s, "UPDATE t SET v = 5 WHERE id = 4").await.unwrap();
    assert!(!count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 9);
    compact(&s, "t");
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 9);
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 13);
    // Whatever the compaction left, a claimed exact count is the true one.
    if let Precision::Exact(rows) = scan_rows(&s, "SELECT * FROM t").await {
        assert_eq!(rows, 9);
    }
}

#[tokio::test]
async fn key_ranges_filters_and_limits_make_the_count_an_estimate() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    insert_keys(&s, 11, 20, 2).await;
    flush(&s, "t");
    assert_eq!(scan_rows(&s, "SELECT * FROM t").await, Precision::Exact(20));
    for sql in [
        "SELECT * FROM t WHERE id < 5",
        "SELECT * FROM t WHERE id = 5",
        "SELECT * FROM t WHERE v = 2",
        "SELECT * FROM t LIMIT 3",
    ] {
        assert!(
            matches!(scan_rows(&s, sql).await, Precision::Inexact(_)),
            "{sql}"
        );
    }
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE id < 5").await, 4);
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE id = 5").await, 1);
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 2").await, 10);
    assert_eq!(
        count(&s, "SELECT count(*) FROM (SELECT * FROM t LIMIT 3)").await,
        3
    );
}

#[tokio::test]
async fn a_planned_count_reads_its_pinned_snapshot() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    flush(&s, "t");
    let plan = physical_plan(&s, "SELECT count(*) FROM t").await;
    // Writes after planning, flushed into clean disjoint files, are not seen by that plan.
    insert_keys(&s, 11, 30, 1).await;
    flush(&s, "t");
    run(&s, "DELETE FROM t WHERE id = 1").await.unwrap();
    let batches = collect(plan, s.task_ctx()).await.unwrap();
    assert_eq!(
        batches[0].column(0).as_primitive::<Int64Type>().value(0),
        10
    );
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 29);
    flush(&s, "t");
    compact(&s, "t");
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 29);
}
