//! Statistics of the Strata scan: `count(*)` is answered from an exact row count only when
//! the pinned view proves it (the live rows of base files whose deletion vectors are known,
//! or clean, pairwise disjoint files, with nothing in the memtables and no key range, filter
//! or limit); after upserts, deletes, overlapping flushes and across a planned snapshot the
//! answers stay those of a full merge, and an exact count is never a wrong one. Also the
//! base path: files read directly by DataFusion's Parquet reader under the memtable overlay.

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

/// Checks a row count the scan claims: an exact one must be `rows`, the true count (whether
/// a view with overlapping files gets an exact count depends on its deletion vectors being
/// maintained); returns true when it was exact.
fn exact_is_true(claimed: Precision<usize>, rows: usize) -> bool {
    match claimed {
        Precision::Exact(n) => {
            assert_eq!(n, rows, "an exact row count must be the true one");
            true
        }
        _ => false,
    }
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
    // Summing the files would give 20; their live rows (with deletion vectors) give 10.
    let exact = exact_is_true(scan_rows(&s, "SELECT * FROM t").await, 10);
    assert_eq!(count_from_statistics(&s, "t").await, exact);
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
    // A third file touching one key of the first: no longer disjoint (exact only through
    // the first file's deletion vector).
    insert_keys(&s, 10, 10, 7).await;
    flush(&s, "t");
    exact_is_true(scan_rows(&s, "SELECT * FROM t").await, 25);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 25);
}

/// A session whose database has no key cache: the overlay is never resolved at plan time.
fn session_without_key_cache() -> StrataSession {
    StrataSession::memory_with(strata_engine::Options {
        key_cache_bytes: 0,
        ..strata_engine::Options::default()
    })
    .unwrap()
}

#[tokio::test]
async fn deletes_and_upserts_in_the_memtable_are_counted_exactly_once_resolved() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    flush(&s, "t");
    // A tombstone, a newer version and a new key in the memtable: the plan finds the base
    // rows they hide through the key cache, so the count is exact and comes from statistics.
    run(&s, "DELETE FROM t WHERE id = 3").await.unwrap();
    run(&s, "UPDATE t SET v = 5 WHERE id = 4").await.unwrap();
    run(&s, "INSERT INTO t VALUES (11, 1)").await.unwrap();
    assert!(exact_is_true(scan_rows(&s, "SELECT * FROM t").await, 10));
    assert!(count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 10);
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 14);
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 1").await, 9);
    let plan = physical_plan(&s, "SELECT v FROM t").await;
    let scan = find_scan(&plan).unwrap();
    assert!(scan.reads_files_directly() && !scan.runs_anti_join());
    // Deleting a key only the memtable holds leaves the base alone.
    run(&s, "DELETE FROM t WHERE id = 11").await.unwrap();
    assert!(exact_is_true(scan_rows(&s, "SELECT * FROM t").await, 9));
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 9);
}

#[tokio::test]
async fn deletes_and_upserts_are_not_counted_from_statistics_without_the_key_cache() {
    let s = session_without_key_cache();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    flush(&s, "t");
    assert!(count_from_statistics(&s, "t").await);
    // A tombstone in the memtable.
    run(&s, "DELETE FROM t WHERE id = 3").await.unwrap();
    assert!(!count_from_statistics(&s, "t").await);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 9);
    let plan = physical_plan(&s, "SELECT v FROM t").await;
    assert!(find_scan(&plan).unwrap().runs_anti_join());
    // Nor is a key range counted from the files' keys: they are not cached.
    assert!(matches!(
        scan_rows(&s, "SELECT * FROM t WHERE id < 5").await,
        Precision::Inexact(_)
    ));
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE id < 5").await, 3);
    // The tombstone flushed into a file of its own (not clean, and overlapping): exact only
    // through deletion vectors (the tombstone's own row and the row it deletes).
    flush(&s, "t");
    let exact = exact_is_true(scan_rows(&s, "SELECT * FROM t").await, 9);
    assert_eq!(count_from_statistics(&s, "t").await, exact);
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
async fn value_filters_points_and_limits_make_the_count_an_estimate() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    insert_keys(&s, 11, 20, 2).await;
    flush(&s, "t");
    assert_eq!(scan_rows(&s, "SELECT * FROM t").await, Precision::Exact(20));
    // A key range alone is counted exactly (next test).
    assert_eq!(
        scan_rows(&s, "SELECT * FROM t WHERE id < 5").await,
        Precision::Exact(4)
    );
    for sql in [
        "SELECT * FROM t WHERE id < 5 AND v = 1",
        "SELECT * FROM t WHERE id < 5 LIMIT 2",
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

/// A scan bounded only by key ranges has an exact row count, counted by the engine from the
/// files' cached keys and deleted rows and the overlay, so `count(*)` over key ranges is
/// answered without reading a row; it stays exact after overlapping flushes, deletes and
/// upserts in the files and in the memtable, and for every kind of bound.
#[tokio::test]
async fn key_ranges_alone_are_counted_exactly_without_reading() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 200, 1).await;
    flush(&s, "t");
    insert_keys(&s, 50, 120, 2).await;
    run(&s, "DELETE FROM t WHERE id % 7 = 0").await.unwrap();
    flush(&s, "t");
    // The memtable: upserts, deletes and new keys beyond the files.
    insert_keys(&s, 100, 110, 3).await;
    insert_keys(&s, 300, 305, 3).await;
    run(&s, "DELETE FROM t WHERE id BETWEEN 60 AND 64 OR id = 302")
        .await
        .unwrap();
    let live = |k: i64| {
        // (105 was deleted, then written again in the memtable.)
        (1..=200).contains(&k)
            && (k % 7 != 0 || (100..=110).contains(&k))
            && !(60..=64).contains(&k)
            || (300..=305).contains(&k) && k != 302
    };
    for (filter, keep) in [
        (
            "id BETWEEN 50 AND 120",
            Box::new(|k: i64| (50..=120).contains(&k)) as Box<dyn Fn(i64) -> bool>,
        ),
        ("id > 63 AND id < 101", Box::new(|k| k > 63 && k < 101)),
        ("id >= 190", Box::new(|k| k >= 190)),
        ("id < 2 OR id > 299", Box::new(|k| !(2..=299).contains(&k))),
        (
            "id IN (1, 7, 60, 65, 303) OR id BETWEEN 140 AND 150",
            Box::new(|k| [1, 7, 60, 65, 303].contains(&k) || (140..=150).contains(&k)),
        ),
    ] {
        let expected = (0..=400).filter(|k| live(*k) && keep(*k)).count();
        let sql = format!("SELECT * FROM t WHERE {filter}");
        assert_eq!(
            scan_rows(&s, &sql).await,
            Precision::Exact(expected),
            "{filter}"
        );
        let sql = format!("SELECT count(*) FROM t WHERE {filter}");
        assert_eq!(count(&s, &sql).await, expected as i64, "{filter}");
        // Answered from the statistics: the plan holds no scan.
        let plan = physical_plan(&s, &sql).await;
        assert!(find_scan(&plan).is_none(), "{filter}: {plan:?}");
        let rows = sorted_ids(&s, &format!("SELECT id FROM t WHERE {filter}")).await;
        assert_eq!(rows.len(), expected, "{filter}");
    }
    // A range no file overlaps is read on the merge path (the memtable only).
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE id > 1000").await, 0);
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

// ---------------------------------------------------------------------------------------
// Direct Parquet reads of exclusive clean files

/// True when the scan of `sql` reads its files without a merge.
async fn reads_directly(s: &StrataSession, sql: &str) -> bool {
    let plan = physical_plan(s, sql).await;
    find_scan(&plan)
        .expect("the plan scans a Strata table")
        .reads_files_directly()
}

/// The `i64` column `column` of the answer to `sql`.
async fn column_i64(s: &StrataSession, sql: &str, column: usize) -> Vec<i64> {
    let batches = s.sql(sql).await.unwrap().collect().await.unwrap();
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[tokio::test]
async fn base_files_are_read_directly_under_the_overlay() {
    base_files_under_the_overlay(StrataSession::memory().unwrap(), false).await;
}

#[tokio::test]
async fn base_files_are_read_directly_under_the_overlay_with_the_anti_join() {
    base_files_under_the_overlay(session_without_key_cache(), true).await;
}

/// The base path under an overlay, resolved at plan time or (`anti_join`) not.
async fn base_files_under_the_overlay(s: StrataSession, anti_join: bool) {
    uncompacted_table(&s).await;
    insert_keys(&s, 1, 10, 1).await;
    // Memtable rows only: merged (there is no base file).
    assert!(!reads_directly(&s, "SELECT * FROM t").await);
    flush(&s, "t");
    insert_keys(&s, 11, 20, 2).await;
    flush(&s, "t");
    // Two clean, disjoint files, nothing in the memtable.
    assert!(reads_directly(&s, "SELECT * FROM t").await);
    assert!(reads_directly(&s, "SELECT v FROM t WHERE v = 2").await);
    // Point lookups stay on the merge path; other key ranges read the files directly.
    assert!(!reads_directly(&s, "SELECT v FROM t WHERE id = 3").await);
    assert!(!reads_directly(&s, "SELECT v FROM t WHERE id IN (3, 12)").await);
    assert!(reads_directly(&s, "SELECT v FROM t WHERE id BETWEEN 3 AND 12").await);
    assert_eq!(
        column_i64(
            &s,
            "SELECT id FROM t WHERE id BETWEEN 3 AND 12 AND v = 1",
            0
        )
        .await,
        (3..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        column_i64(&s, "SELECT id FROM t WHERE v = 2 ORDER BY id", 0).await,
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(
        column_i64(&s, "SELECT id FROM t ORDER BY id DESC LIMIT 3", 0).await,
        vec![20, 19, 18]
    );
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v > 1").await, 10);
    // EXPLAIN ANALYZE counts the files and bytes the Parquet reader read.
    let plan = physical_plan(&s, "SELECT v FROM t").await;
    collect(Arc::clone(&plan), s.task_ctx()).await.unwrap();
    let metrics = find_scan(&plan).unwrap().metrics().unwrap();
    let metric = |name: &str| metrics.sum_by_name(name).map(|v| v.as_usize());
    assert_eq!(metric("files_read_directly"), Some(2));
    assert!(metric("bytes_read_directly").unwrap_or(0) > 0);
    assert_eq!(metric("rows_deduplicated"), Some(0));
    assert_eq!(metric("runs_merged"), Some(0));
    assert_eq!(metrics.output_rows(), Some(20));
    // An upsert and a delete in the memtable: still the base path, the overlay's newer
    // version replaces the base row (anti-join) and the tombstone hides one.
    run(&s, "UPDATE t SET v = 9 WHERE id = 5").await.unwrap();
    run(&s, "DELETE FROM t WHERE id = 11").await.unwrap();
    assert!(reads_directly(&s, "SELECT * FROM t").await);
    let plan = physical_plan(&s, "SELECT * FROM t").await;
    assert_eq!(find_scan(&plan).unwrap().runs_anti_join(), anti_join);
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 10 + 20 - 1 + 9 - 2);
    let plan = physical_plan(&s, "SELECT v FROM t WHERE v < 5").await;
    let batches = collect(Arc::clone(&plan), s.task_ctx()).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 18);
    let metrics = find_scan(&plan).unwrap().metrics().unwrap();
    let metric = |name: &str| metrics.sum_by_name(name).map(|v| v.as_usize());
    assert_eq!(metric("overlay_keys"), Some(2));
    assert_eq!(metric("overlay_tombstones"), Some(1));
    assert_eq!(metric("overlay_rows"), Some(1));
    assert_eq!(metric("rows_hidden_by_overlay"), Some(2));
    assert_eq!(metric("runs_merged"), Some(0));
    // Flushed: the new versions overlap the first files (read directly once their deletion
    // vectors are maintained, merged otherwise; the answers are the same).
    flush(&s, "t");
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 36);
    run(&s, "INSERT INTO t VALUES (11, 2)").await.unwrap();
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 38);
    flush(&s, "t");
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 38);
    // A tombstone over compacted files.
    compact(&s, "t");
    assert!(reads_directly(&s, "SELECT * FROM t").await);
    run(&s, "DELETE FROM t WHERE id = 20").await.unwrap();
    assert!(reads_directly(&s, "SELECT * FROM t").await);
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 36);
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 2").await, 9);
    flush(&s, "t");
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 36);
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 2").await, 9);
    compact(&s, "t");
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 36);
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 2").await, 9);
}

/// Executes each partition of a direct `SELECT id, v FROM t` (4 partitions): each is sorted
/// by key, above the previous one, every one holds rows, and together they hold the keys
/// `0..rows` once each.
async fn check_direct_partitions(s: &StrataSession, rows: i64) {
    let plan = physical_plan(s, "SELECT id, v FROM t").await;
    let scan = find_scan(&plan).unwrap();
    assert!(scan.reads_files_directly());
    let partitions = scan.properties().partitioning.partition_count();
    assert_eq!(partitions, 4);
    let mut all = Vec::new();
    let mut non_empty = 0;
    for p in 0..partitions {
        let stream = scan.execute(p, s.task_ctx()).unwrap();
        let batches = datafusion::physical_plan::common::collect(stream)
            .await
            .unwrap();
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "partition {p} sorted");
        if let (Some(first), Some(last)) = (ids.first(), all.last()) {
            assert!(last < first, "partition {p} starts above the previous one");
        }
        non_empty += usize::from(!ids.is_empty());
        all.extend(ids);
    }
    assert_eq!(
        non_empty, partitions,
        "the rows are split across every partition"
    );
    assert_eq!(all, (0..rows).collect::<Vec<_>>());
}

#[tokio::test]
async fn direct_partitions_are_sorted_and_key_disjoint() {
    // Small row groups, so the one file splits into several byte ranges with row groups.
    let options = strata_engine::Options {
        table_defaults: strata_engine::TableOptions {
            sst_row_group_rows: 1024,
            sst_scan_row_group_rows: 1024,
            sst_index_block_rows: 256,
            ..strata_engine::TableOptions::default()
        },
        ..strata_engine::Options::default()
    };
    let s = StrataSession::memory_with(options).unwrap();
    run(&s, "SET datafusion.execution.target_partitions = 4")
        .await
        .unwrap();
    uncompacted_table(&s).await;
    let rows = 40_000i64;
    // Keys in a shuffled order (a multiplicative permutation of 0..rows).
    run(
        &s,
        &format!(
            "INSERT INTO t SELECT (value * 7919) % {rows}, value FROM generate_series(0, {})",
            rows - 1
        ),
    )
    .await
    .unwrap();
    flush(&s, "t");
    check_direct_partitions(&s, rows).await;
    // The declared ordering holds through SQL.
    assert_eq!(
        column_i64(&s, "SELECT id FROM t ORDER BY id", 0).await,
        (0..rows).collect::<Vec<_>>()
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE v % 7 = 3").await,
        (0..rows).filter(|v| v % 7 == 3).count() as i64
    );
    assert_eq!(
        count(&s, "SELECT sum(id) FROM t WHERE v < 1000").await,
        (0..1000i64).map(|v| (v * 7919) % rows).sum::<i64>()
    );
    let limited = column_i64(&s, "SELECT id FROM t WHERE v >= 500 LIMIT 7", 0).await;
    assert_eq!(limited.len(), 7);
    // A second, disjoint file above the first: the partitions span both.
    run(
        &s,
        &format!(
            "INSERT INTO t SELECT value, value + 1 FROM generate_series({rows}, {})",
            rows + 9_999
        ),
    )
    .await
    .unwrap();
    flush(&s, "t");
    check_direct_partitions(&s, rows + 10_000).await;
}

#[tokio::test]
async fn a_corrupt_file_is_refused_before_a_direct_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = strata_datafusion::open(dir.path(), strata_engine::Options::default()).unwrap();
        run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
            .await
            .unwrap();
        let values: Vec<String> = (0..2000).map(|k| format!("({k}, 'value {k}')")).collect();
        run(&s, &format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await
            .unwrap();
        flush(&s, "t");
        s.close().unwrap();
    }
    // Flip one byte in the middle of the (only) SST.
    fn parquet_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                parquet_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    parquet_files(dir.path(), &mut files);
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&files[0], bytes).unwrap();
    let s = strata_datafusion::open(dir.path(), strata_engine::Options::default()).unwrap();
    assert!(reads_directly(&s, "SELECT * FROM t").await);
    let error = s
        .sql("SELECT * FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let message = error.to_string().to_lowercase();
    // The engine's checksum verification, not a Parquet decoding failure.
    assert!(message.contains("corruption in"), "{message}");
    // A file known to be corrupt is corrupt for every query: `count(*)` is no longer answered
    // from the manifest's row counts, and a point lookup fails the same way.
    assert!(!count_from_statistics(&s, "t").await);
    for sql in [
        "SELECT count(*) FROM t",
        "SELECT * FROM t WHERE id = 7",
        "SELECT * FROM t",
    ] {
        let error = s.sql(sql).await.unwrap().collect().await.unwrap_err();
        let message = error.to_string().to_lowercase();
        assert!(message.contains("corruption in"), "{sql}: {message}");
    }
}

/// Rows of `sql` whose first column is an `i64`, sorted.
async fn sorted_ids(s: &StrataSession, sql: &str) -> Vec<i64> {
    let mut ids = column_i64(s, sql, 0).await;
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn pruning_keeps_nan_and_signed_zeros_of_a_direct_read() {
    // Parquet statistics leave NaN out of min/max; a pruning predicate built from them would
    // drop the row groups holding NaN. Several row groups, so pruning has something to skip.
    let s = StrataSession::memory().unwrap();
    run(&s, "SET strata.compaction = 'none'").await.unwrap();
    run(
        &s,
        "CREATE TABLE f (id BIGINT PRIMARY KEY, v DOUBLE, w REAL, k DOUBLE)",
    )
    .await
    .unwrap();
    run(
        &s,
        "INSERT INTO f SELECT value AS id, CAST(value AS DOUBLE) / 8.0 AS v, \
         CAST(value AS REAL) AS w, CAST(value AS DOUBLE) AS k FROM generate_series(1, 200000)",
    )
    .await
    .unwrap();
    run(
        &s,
        "INSERT INTO f VALUES (0, 'NaN'::double, 'NaN'::real, -0.0), \
         (300000, '-0.0'::double, '-0.0'::real, 'NaN'::double), \
         (300001, 'NaN'::double, NULL, NULL), (300002, NULL, 'NaN'::real, 0.0)",
    )
    .await
    .unwrap();
    let queries = [
        "SELECT id FROM f WHERE v = 'NaN'::double",
        "SELECT id FROM f WHERE v >= 'NaN'::double",
        "SELECT id FROM f WHERE v > 100000.0",
        "SELECT id FROM f WHERE w = 'NaN'::real",
        "SELECT id FROM f WHERE w > 199999.0",
        "SELECT id FROM f WHERE v = '-0.0'::double",
        "SELECT id FROM f WHERE v < 0.0",
        "SELECT id FROM f WHERE k = 'NaN'::double OR k = '-0.0'::double",
        "SELECT id FROM f WHERE k <= 0.0",
        "SELECT id FROM f WHERE v IS NULL OR w IS NULL",
        "SELECT id FROM f WHERE id > 199990 AND v >= 'NaN'::double",
    ];
    let mut before = Vec::new();
    for sql in queries {
        before.push(sorted_ids(&s, sql).await);
    }
    assert_eq!(before[0], vec![0, 300001]);
    assert_eq!(before[1], vec![0, 300001]);
    flush(&s, "f");
    for (sql, expected) in queries.iter().zip(&before) {
        // Key ranges too read the files directly (the key conditions run as a filter).
        assert!(reads_directly(&s, sql).await, "{sql}");
        assert_eq!(&sorted_ids(&s, sql).await, expected, "{sql}");
    }
}

#[tokio::test]
async fn pruning_keeps_nan_keys_of_a_direct_read() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE fk (id DOUBLE PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO fk SELECT CAST(value AS DOUBLE) AS id, value AS v \
         FROM generate_series(1, 100000)",
    )
    .await
    .unwrap();
    run(
        &s,
        "INSERT INTO fk VALUES ('NaN'::double, -1), ('-0.0'::double, -2), (0.0, -3)",
    )
    .await
    .unwrap();
    let queries = [
        "SELECT v FROM fk WHERE id = 'NaN'::double",
        "SELECT v FROM fk WHERE id >= 'NaN'::double",
        "SELECT v FROM fk WHERE id > 99999.5",
        "SELECT v FROM fk WHERE id < 0.0",
        "SELECT v FROM fk WHERE id <= 0.0",
        "SELECT v FROM fk WHERE id = 0.0",
        "SELECT v FROM fk WHERE id = '-0.0'::double",
    ];
    // The memtable's answers (no pruning) are the reference.
    let mut before = Vec::new();
    for sql in queries {
        before.push(sorted_ids(&s, sql).await);
    }
    assert_eq!(before[0], vec![-1]);
    assert_eq!(before[1], vec![-1]);
    assert_eq!(before[2], vec![-1, 100000]);
    flush(&s, "fk");
    for (sql, expected) in queries.iter().zip(&before) {
        assert!(reads_directly(&s, sql).await, "{sql}");
        assert_eq!(&sorted_ids(&s, sql).await, expected, "{sql}");
    }
}

/// With deletion vectors (the default), overlapping flushes — upserts and tombstones over
/// older files — are still read directly, and `count(*)` comes from the live rows in the
/// metadata; without them the same view is merged and counted by a scan. The answers agree.
#[tokio::test]
async fn deletion_vectors_keep_overlapping_files_on_the_base_path() {
    for dvs in [true, false] {
        let s = StrataSession::memory().unwrap();
        run(&s, "SET strata.compaction = 'none'").await.unwrap();
        run(&s, &format!("SET strata.deletion_vectors = '{dvs}'"))
            .await
            .unwrap();
        run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
            .await
            .unwrap();
        insert_keys(&s, 1, 100, 1).await;
        flush(&s, "t");
        insert_keys(&s, 50, 60, 2).await;
        run(&s, "DELETE FROM t WHERE id BETWEEN 90 AND 99")
            .await
            .unwrap();
        flush(&s, "t");
        assert_eq!(
            reads_directly(&s, "SELECT * FROM t").await,
            dvs,
            "dvs={dvs}"
        );
        assert_eq!(
            reads_directly(&s, "SELECT v FROM t WHERE v = 2").await,
            dvs,
            "dvs={dvs}"
        );
        let claimed = scan_rows(&s, "SELECT * FROM t").await;
        assert_eq!(exact_is_true(claimed, 90), dvs, "dvs={dvs}");
        assert_eq!(count_from_statistics(&s, "t").await, dvs, "dvs={dvs}");
        assert_eq!(count(&s, "SELECT count(*) FROM t").await, 90);
        assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 2").await, 11);
        assert_eq!(
            count(&s, "SELECT count(*) FROM t WHERE v = 1 AND id >= 50").await,
            30
        );
        // The deleted rows are gone from the files' live rows.
        if dvs {
            let plan = physical_plan(&s, "SELECT v FROM t").await;
            collect(Arc::clone(&plan), s.task_ctx()).await.unwrap();
            let metrics = find_scan(&plan).unwrap().metrics().unwrap();
            let metric = |name: &str| metrics.sum_by_name(name).map(|v| v.as_usize());
            // 11 upserted and 10 deleted rows of the first file, 10 tombstones of the second.
            assert_eq!(metric("rows_deleted_by_dvs"), Some(31));
            assert_eq!(metric("runs_merged"), Some(0));
            assert_eq!(metrics.output_rows(), Some(90));
        }
    }
}

/// The Parquet reader's counts on a base scan do not depend on the number of partitions: each
/// partition's reader has metrics of its own. They shared one set (clones of a `ParquetSource`
/// share it), so the scan added every partition's bytes and pruning counts once per partition
/// that finished after them.
#[tokio::test]
async fn reader_metrics_are_counted_once_whatever_the_partitions() {
    use datafusion::physical_plan::metrics::MetricValue;
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    // Two disjoint files of equal size (enough rows to split the scan): two partitions read
    // one each, whole.
    for (from, v) in [(1, 1), (10_001, 2)] {
        run(
            &s,
            &format!("INSERT INTO t SELECT value, {v} FROM generate_series({from}, {from} + 9999)"),
        )
        .await
        .unwrap();
        flush(&s, "t");
    }
    let mut seen = Vec::new();
    for partitions in [1, 2] {
        run(
            &s,
            &format!("SET datafusion.execution.target_partitions = {partitions}"),
        )
        .await
        .unwrap();
        let plan = physical_plan(&s, "SELECT v FROM t WHERE v > 0").await;
        let batches = collect(Arc::clone(&plan), s.task_ctx()).await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20_000);
        let scan = find_scan(&plan).unwrap();
        assert_eq!(scan.properties().partitioning.partition_count(), partitions);
        let metrics = scan.metrics().unwrap();
        let bytes = metrics
            .sum_by_name("bytes_read_directly")
            .map(|v| v.as_usize())
            .unwrap();
        let row_groups: usize = metrics
            .iter()
            .filter_map(|m| match m.value() {
                MetricValue::PruningMetrics {
                    name,
                    pruning_metrics,
                } if name == "row_groups_pruned_statistics" => {
                    Some(pruning_metrics.pruned() + pruning_metrics.matched())
                }
                _ => None,
            })
            .sum();
        seen.push((bytes, row_groups));
    }
    assert!(seen[0].0 > 0);
    assert_eq!(
        seen[0], seen[1],
        "(bytes, row groups) with 1 and 2 partitions"
    );
}

/// The base files' deleted rows are hidden after decoding, by the row numbers the reader adds
/// as a column of its own; a table with a user column of that name has them skipped by the
/// reader instead. Either way: a limit counts only live rows (the first rows of the file are
/// deleted), value filters see no deleted row, and upserted rows are read once.
#[tokio::test]
async fn deleted_rows_are_hidden_whatever_the_column_names() {
    for column in ["v", "__strata_row", "__strata_piece"] {
        let s = StrataSession::memory().unwrap();
        run(&s, "SET strata.compaction = 'none'").await.unwrap();
        run(
            &s,
            &format!("CREATE TABLE t (id BIGINT PRIMARY KEY, {column} BIGINT)"),
        )
        .await
        .unwrap();
        let values: Vec<String> = (1..=1000).map(|k| format!("({k}, {})", k % 7)).collect();
        run(&s, &format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await
            .unwrap();
        flush(&s, "t");
        run(&s, "DELETE FROM t WHERE id <= 300 OR id % 10 = 0")
            .await
            .unwrap();
        run(
            &s,
            &format!("UPDATE t SET {column} = 100 WHERE id % 10 = 5"),
        )
        .await
        .unwrap();
        flush(&s, "t");
        assert!(reads_directly(&s, "SELECT * FROM t").await, "{column}");
        let live: Vec<i64> = (301..=1000).filter(|k| k % 10 != 0).collect();
        assert_eq!(sorted_ids(&s, "SELECT id FROM t").await, live, "{column}");
        let first = sorted_ids(&s, "SELECT id FROM t LIMIT 5").await;
        assert_eq!(first.len(), 5, "{column}");
        assert!(
            first.iter().all(|k| live.contains(k)),
            "{column}: {first:?}"
        );
        let filtered: Vec<i64> = live
            .iter()
            .copied()
            .filter(|k| k % 10 != 5 && k % 7 == 3)
            .collect();
        let sql = format!("SELECT id FROM t WHERE \"{column}\" = 3");
        assert_eq!(sorted_ids(&s, &sql).await, filtered, "{column}");
        let sql = format!("SELECT count(*) FROM t WHERE \"{column}\" = 100");
        assert_eq!(count(&s, &sql).await, 70, "{column}");
    }
}

/// A base scan keeps the files' footers and page indexes in the session's metadata cache, as
/// DataFusion does for its own tables: a file read again is not parsed again, a new file
/// (a flush, a compaction) gets an entry of its own, and answers stay right across both.
#[tokio::test]
async fn base_files_metadata_is_parsed_once_per_file() {
    let s = StrataSession::memory().unwrap();
    uncompacted_table(&s).await;
    let cache = s
        .context()
        .runtime_env()
        .cache_manager
        .get_file_metadata_cache();
    let cached = || {
        cache
            .list_entries()
            .keys()
            .map(|path| path.to_string())
            .filter(|path| path.ends_with(".parquet"))
            .count()
    };
    insert_keys(&s, 1, 1000, 1).await;
    flush(&s, "t");
    insert_keys(&s, 1001, 2000, 2).await;
    flush(&s, "t");
    assert_eq!(cached(), 0);
    let sum = "SELECT sum(v) FROM t WHERE v > 0";
    assert_eq!(count(&s, sum).await, 3000);
    assert_eq!(cached(), 2);
    assert_eq!(count(&s, sum).await, 3000);
    assert_eq!(cached(), 2);
    // Newer versions of half the keys, flushed, then everything compacted into new files.
    insert_keys(&s, 501, 1500, 10).await;
    flush(&s, "t");
    assert_eq!(count(&s, sum).await, 500 + 1000 * 10 + 500 * 2);
    assert_eq!(cached(), 3);
    compact(&s, "t");
    assert_eq!(count(&s, sum).await, 500 + 1000 * 10 + 500 * 2);
    assert!(cached() > 3, "{} cached files", cached());
}
