//! SQL over Strata tables: DDL, DML, scans and the trap cases of the design (deleted rows
//! reappearing through value filters, limits above the merge, subquery DML).

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::assert_batches_eq;
use datafusion::error::Result;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use strata_datafusion::StrataSession;
use strata_datafusion::provider::StrataScanExec;
use strata_engine::{FaultInjector, IoOp, MemtableKind, Options, StrategyKind};

async fn run(s: &StrataSession, sql: &str) -> Result<Vec<RecordBatch>> {
    s.sql(sql).await?.collect().await
}

async fn count(s: &StrataSession, sql: &str) -> i64 {
    let batches = run(s, sql).await.unwrap();
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// The DML result count.
async fn affected(s: &StrataSession, sql: &str) -> u64 {
    let batches = run(s, sql).await.unwrap();
    batches[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
        .value(0)
}

/// Creates `t (id BIGINT PRIMARY KEY, v VARCHAR)` holding (1, 'a') and (2, 'b').
async fn two_row_table(s: &StrataSession) {
    run(s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    run(s, "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
}

fn flush(s: &StrataSession, table: &str) {
    s.db().table(table).unwrap().flush().unwrap();
}

async fn physical_plan(s: &StrataSession, sql: &str) -> Arc<dyn ExecutionPlan> {
    s.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

fn plan_text(plan: &Arc<dyn ExecutionPlan>) -> String {
    displayable(plan.as_ref()).indent(true).to_string()
}

/// The metrics of the first `StrataScanExec` in a plan, summed by name.
fn scan_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> Option<usize> {
    if plan.downcast_ref::<StrataScanExec>().is_some() {
        let metrics = plan.metrics()?;
        return metrics.sum_by_name(name).map(|v| v.as_usize());
    }
    plan.children()
        .into_iter()
        .find_map(|child| scan_metric(child, name))
}

#[tokio::test]
async fn create_insert_upsert_and_show_tables() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    assert_eq!(
        affected(&s, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await,
        2
    );
    // Upsert: the existing key is replaced; within a statement the last row of a key wins.
    assert_eq!(
        affected(&s, "INSERT INTO t VALUES (1, 'x'), (1, 'z'), (3, 'c')").await,
        3
    );
    let batches = run(&s, "SELECT id, v FROM t ORDER BY id").await.unwrap();
    assert_batches_eq!(
        [
            "+----+---+",
            "| id | v |",
            "+----+---+",
            "| 1  | z |",
            "| 2  | b |",
            "| 3  | c |",
            "+----+---+",
        ],
        &batches
    );
    let tables = run(&s, "SHOW TABLES").await.unwrap();
    let names: Vec<String> = tables
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name("table_name").unwrap();
            let col = datafusion::arrow::compute::cast(
                col,
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            col.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(names.contains(&"t".to_string()), "{names:?}");
    // The stored schema has the key NOT NULL.
    let table = s.db().table("t").unwrap();
    assert!(!table.schema().field_with_name("id").unwrap().is_nullable());
    assert_eq!(table.primary_key(), ["id"]);
}

#[tokio::test]
async fn composite_column_level_and_keyless_tables() {
    let s = StrataSession::memory().unwrap();
    run(
        &s,
        "CREATE TABLE c (a INT, b VARCHAR, v DOUBLE, PRIMARY KEY (b, a))",
    )
    .await
    .unwrap();
    assert_eq!(s.db().table("c").unwrap().primary_key(), ["b", "a"]);
    run(
        &s,
        "INSERT INTO c VALUES (1, 'x', 1.0), (2, 'x', 2.0), (1, 'y', 3.0), (1, 'x', 9.0)",
    )
    .await
    .unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM c").await, 3);
    let batches = run(&s, "SELECT v FROM c WHERE b = 'x' AND a = 1")
        .await
        .unwrap();
    assert_batches_eq!(
        ["+-----+", "| v   |", "+-----+", "| 9.0 |", "+-----+"],
        &batches
    );
    // A composite prefix range: b = 'x' AND a >= 2.
    assert_eq!(
        count(&s, "SELECT count(*) FROM c WHERE b = 'x' AND a >= 2").await,
        1
    );

    run(&s, "CREATE TABLE k (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    assert_eq!(s.db().table("k").unwrap().primary_key(), ["id"]);

    // Without a primary key: append-only, duplicates kept.
    run(&s, "CREATE TABLE log (msg VARCHAR, n INT)")
        .await
        .unwrap();
    assert!(s.db().table("log").unwrap().primary_key().is_empty());
    run(&s, "INSERT INTO log VALUES ('a', 1), ('a', 1)")
        .await
        .unwrap();
    run(&s, "INSERT INTO log VALUES ('b', 2)").await.unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM log").await, 3);
    assert_eq!(affected(&s, "DELETE FROM log WHERE msg = 'a'").await, 2);
    assert_eq!(affected(&s, "UPDATE log SET n = 5").await, 1);
    let batches = run(&s, "SELECT msg, n FROM log").await.unwrap();
    assert_batches_eq!(
        [
            "+-----+---+",
            "| msg | n |",
            "+-----+---+",
            "| b   | 5 |",
            "+-----+---+"
        ],
        &batches
    );
}

#[tokio::test]
async fn deleted_row_does_not_reappear_through_a_value_filter() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    run(&s, "INSERT INTO t VALUES (1, 'old'), (2, 'keep')")
        .await
        .unwrap();
    flush(&s, "t");
    // The tombstone sits in the memtable, the old version in an SST.
    assert_eq!(affected(&s, "DELETE FROM t WHERE id = 1").await, 1);
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 'old'").await, 0);
    // And with the tombstone flushed into a second file.
    flush(&s, "t");
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 'old'").await, 0);
    // An update hides the old value the same way.
    run(&s, "UPDATE t SET v = 'new' WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE v = 'keep'").await,
        0
    );
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE v = 'new'").await, 1);
}

#[tokio::test]
async fn limit_above_a_merge_returns_the_newest_versions() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO t SELECT value, 'old' FROM generate_series(1, 200)",
    )
    .await
    .unwrap();
    flush(&s, "t");
    assert_eq!(
        affected(&s, "UPDATE t SET v = 'new' WHERE id <= 100").await,
        100
    );
    let batches = run(&s, "SELECT id, v FROM t LIMIT 5").await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 5);
    for batch in &batches {
        let v = batch.column(1);
        let v = datafusion::arrow::compute::cast(v, &datafusion::arrow::datatypes::DataType::Utf8)
            .unwrap();
        assert!(v.as_string::<i32>().iter().all(|x| x == Some("new")));
    }
    // A limit over a key range and one over a value filter.
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM (SELECT * FROM t WHERE id > 50 LIMIT 7)"
        )
        .await,
        7
    );
    let batches = run(&s, "SELECT id FROM t WHERE v = 'old' ORDER BY id LIMIT 2")
        .await
        .unwrap();
    assert_batches_eq!(
        [
            "+-----+", "| id  |", "+-----+", "| 101 |", "| 102 |", "+-----+"
        ],
        &batches
    );
}

#[tokio::test]
async fn update_of_a_key_column_moves_the_row() {
    let s = StrataSession::memory().unwrap();
    two_row_table(&s).await;
    flush(&s, "t");
    assert_eq!(
        affected(&s, "UPDATE t SET id = 10, v = 'moved' WHERE id = 1").await,
        1
    );
    let batches = run(&s, "SELECT id, v FROM t ORDER BY id").await.unwrap();
    assert_batches_eq!(
        [
            "+----+-------+",
            "| id | v     |",
            "+----+-------+",
            "| 2  | b     |",
            "| 10 | moved |",
            "+----+-------+",
        ],
        &batches
    );
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE id = 1").await, 0);
}

#[tokio::test]
async fn tables_and_rows_persist_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = strata_datafusion::open(dir.path(), Options::default()).unwrap();
        two_row_table(&s).await;
        flush(&s, "t");
        run(&s, "INSERT INTO t VALUES (3, 'c')").await.unwrap();
        run(&s, "DELETE FROM t WHERE id = 1").await.unwrap();
        s.close().unwrap();
    }
    let s = strata_datafusion::open(dir.path(), Options::default()).unwrap();
    let batches = run(&s, "SELECT id, v FROM t ORDER BY id").await.unwrap();
    assert_batches_eq!(
        [
            "+----+---+",
            "| id | v |",
            "+----+---+",
            "| 2  | b |",
            "| 3  | c |",
            "+----+---+"
        ],
        &batches
    );
    s.close().unwrap();
}

#[tokio::test]
async fn ctas_if_not_exists_and_drop_removes_files() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE src (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    run(&s, "INSERT INTO src VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    run(
        &s,
        "CREATE TABLE copy AS SELECT id, upper(v) AS u FROM src WHERE id > 1",
    )
    .await
    .unwrap();
    assert!(s.db().has_table("copy"));
    let batches = run(&s, "SELECT * FROM copy ORDER BY id").await.unwrap();
    assert_batches_eq!(
        [
            "+----+---+",
            "| id | u |",
            "+----+---+",
            "| 2  | B |",
            "| 3  | C |",
            "+----+---+"
        ],
        &batches
    );
    // IF NOT EXISTS is a no-op, a plain second CREATE an error.
    run(&s, "CREATE TABLE IF NOT EXISTS src (x INT)")
        .await
        .unwrap();
    assert_eq!(s.db().table("src").unwrap().schema().fields().len(), 2);
    let err = run(&s, "CREATE TABLE src (x INT)").await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    flush(&s, "src");
    let table_dir = s
        .db()
        .path()
        .join("sst")
        .join(format!("t{:06}", s.db().table("src").unwrap().id()));
    let parquet_files = |dir: &std::path::Path| -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(
        parquet_files(&table_dir) > 0,
        "no SST in {}",
        table_dir.display()
    );
    run(&s, "DROP TABLE src").await.unwrap();
    assert!(!s.db().has_table("src"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while parquet_files(&table_dir) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(parquet_files(&table_dir), 0, "SSTs left after DROP TABLE");
    run(&s, "DROP TABLE IF EXISTS src").await.unwrap();
    assert!(run(&s, "DROP TABLE src").await.is_err());
}

#[tokio::test]
async fn null_key_and_type_errors_write_nothing() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let err = run(&s, "INSERT INTO t VALUES (1, 1), (NULL, 2)")
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("null"), "{err}");
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 0);
    let err = run(&s, "INSERT INTO t VALUES (1, 1), (2, 'not a number')")
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 0);
    assert!(
        run(&s, "INSERT INTO t (id, nope) VALUES (1, 1)")
            .await
            .is_err()
    );
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 0);
    // An UPDATE that would set a key to NULL fails whole.
    run(&s, "INSERT INTO t VALUES (1, 1), (2, 2)")
        .await
        .unwrap();
    assert!(
        run(&s, "UPDATE t SET id = NULL WHERE id = 1")
            .await
            .is_err()
    );
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 2);
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE id = 1").await, 1);
}

#[tokio::test]
async fn order_by_primary_key_plans_no_sort() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO t SELECT value, CAST(value % 7 AS VARCHAR) FROM generate_series(1, 40000)",
    )
    .await
    .unwrap();
    flush(&s, "t");
    let plan = physical_plan(&s, "SELECT id, v FROM t ORDER BY id").await;
    let text = plan_text(&plan);
    assert!(!text.contains("SortExec"), "{text}");
    assert!(text.contains("StrataScanExec"), "{text}");
    // A sort on a value column does sort.
    let by_value = plan_text(&physical_plan(&s, "SELECT id, v FROM t ORDER BY v").await);
    assert!(by_value.contains("SortExec"), "{by_value}");
    // The ordered result is right across partitions.
    let batches = collect(plan, s.task_ctx()).await.unwrap();
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids.len(), 40000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn a_point_query_reads_fewer_files() {
    let s = StrataSession::memory().unwrap();
    run(&s, "SET strata.compaction = 'none'").await.unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    for chunk in 0..3 {
        let lo = chunk * 100;
        run(
            &s,
            &format!(
                "INSERT INTO t SELECT value, value * 10 FROM generate_series({lo}, {})",
                lo + 99
            ),
        )
        .await
        .unwrap();
        flush(&s, "t");
    }
    let plan = physical_plan(&s, "SELECT v FROM t WHERE id = 150").await;
    let batches = collect(Arc::clone(&plan), s.task_ctx()).await.unwrap();
    assert_batches_eq!(
        ["+------+", "| v    |", "+------+", "| 1500 |", "+------+"],
        &batches
    );
    assert_eq!(scan_metric(&plan, "files_total"), Some(3));
    assert_eq!(scan_metric(&plan, "files_scanned"), Some(1));
    assert_eq!(scan_metric(&plan, "files_pruned"), Some(2));
    assert_eq!(scan_metric(&plan, "point_lookups"), Some(1));
    // A full scan reads all three.
    let all = physical_plan(&s, "SELECT v FROM t").await;
    collect(Arc::clone(&all), s.task_ctx()).await.unwrap();
    assert_eq!(scan_metric(&all, "files_scanned"), Some(3));
    // Three L0 files with disjoint key ranges, read directly: nothing merged.
    assert_eq!(scan_metric(&all, "files_read_directly"), Some(3));
    assert_eq!(scan_metric(&all, "runs_merged"), Some(0));
    // EXPLAIN ANALYZE shows the counters.
    let explain = run(
        &s,
        "EXPLAIN ANALYZE SELECT v FROM t WHERE id BETWEEN 120 AND 130",
    )
    .await
    .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&explain)
        .unwrap()
        .to_string();
    assert!(text.contains("files_pruned=2"), "{text}");
    assert!(text.contains("runs_merged"), "{text}");
}

#[tokio::test]
async fn sst_files_read_with_datafusions_parquet_reader() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    run(&s, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    flush(&s, "t");
    let view = s.db().table("t").unwrap().view().unwrap();
    let files: Vec<_> = view.files_by_level().into_iter().flatten().collect();
    assert_eq!(files.len(), 1);
    let path = view.verified_sst_path(files[0].id).unwrap();
    s.register_parquet("sst", path.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let batches = run(&s, "SELECT id, v, _op FROM sst ORDER BY id")
        .await
        .unwrap();
    assert_batches_eq!(
        [
            "+----+---+-----+",
            "| id | v | _op |",
            "+----+---+-----+",
            "| 1  | a | 0   |",
            "| 2  | b | 0   |",
            "| 3  | c | 0   |",
            "+----+---+-----+",
        ],
        &batches
    );
}

#[tokio::test]
async fn dml_with_a_subquery_is_refused_and_writes_nothing() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    run(&s, "CREATE TABLE d (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    run(&s, "INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)")
        .await
        .unwrap();
    run(&s, "INSERT INTO d VALUES (2)").await.unwrap();
    let err = run(&s, "DELETE FROM t WHERE id IN (SELECT id FROM d)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    let err = run(
        &s,
        "UPDATE t SET v = 0 WHERE EXISTS (SELECT 1 FROM d WHERE d.id = t.id)",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 3);
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 60);
    // A WHERE clause folded to false deletes nothing (and not everything).
    assert_eq!(affected(&s, "DELETE FROM t WHERE 1 = 0").await, 0);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 3);
    // Plain predicates work, including non-key ones and OR.
    assert_eq!(
        affected(&s, "DELETE FROM t WHERE v = 10 OR id = 3").await,
        2
    );
    let batches = run(&s, "SELECT * FROM t").await.unwrap();
    assert_batches_eq!(
        [
            "+----+----+",
            "| id | v  |",
            "+----+----+",
            "| 2  | 20 |",
            "+----+----+"
        ],
        &batches
    );
    // DELETE ... LIMIT would lose its limit: refused.
    assert!(run(&s, "DELETE FROM t WHERE v > 0 LIMIT 1").await.is_err());
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 1);
    // INSERT OVERWRITE replaces every row in one batch.
    run(&s, "INSERT INTO t VALUES (7, 70), (8, 80)")
        .await
        .unwrap();
    assert_eq!(affected(&s, "INSERT OVERWRITE t VALUES (9, 90)").await, 1);
    let batches = run(&s, "SELECT * FROM t").await.unwrap();
    assert_batches_eq!(
        [
            "+----+----+",
            "| id | v  |",
            "+----+----+",
            "| 9  | 90 |",
            "+----+----+"
        ],
        &batches
    );
    // TRUNCATE empties the table.
    run(&s, "TRUNCATE TABLE t").await.unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 0);
}

#[tokio::test]
async fn versions_show_every_stored_version() {
    let s = StrataSession::memory().unwrap();
    two_row_table(&s).await;
    flush(&s, "t");
    run(&s, "UPDATE t SET v = 'a2' WHERE id = 1").await.unwrap();
    run(&s, "DELETE FROM t WHERE id = 2").await.unwrap();
    let batches = run(
        &s,
        "SELECT id, v, _op, _seq > 0 AS has_seq FROM strata_versions('t') ORDER BY id, _seq DESC",
    )
    .await
    .unwrap();
    assert_batches_eq!(
        [
            "+----+----+-----+---------+",
            "| id | v  | _op | has_seq |",
            "+----+----+-----+---------+",
            "| 1  | a2 | 0   | true    |",
            "| 1  | a  | 0   | true    |",
            "| 2  |    | 1   | true    |",
            "| 2  | b  | 0   | true    |",
            "+----+----+-----+---------+",
        ],
        &batches
    );
    assert!(
        run(&s, "SELECT * FROM strata_versions('missing')")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn table_options_from_set_and_create_external_table() {
    let s = StrataSession::memory().unwrap();
    run(&s, "SET strata.memtable = 'trie'").await.unwrap();
    run(&s, "SET strata.compaction = 'tiered'").await.unwrap();
    run(&s, "CREATE TABLE a (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let options = s.db().table("a").unwrap().options();
    assert_eq!(options.memtable_kind, MemtableKind::Trie);
    assert_eq!(options.compaction.strategy, StrategyKind::SizeTiered);
    let err = run(&s, "SET strata.memtable = 'nope'").await.unwrap_err();
    assert!(err.to_string().contains("valid kinds"), "{err}");
    let err = run(&s, "SET strata.colour = 'red'").await.unwrap_err();
    assert!(err.to_string().contains("valid options"), "{err}");
    run(&s, "SET strata.memtable = 'default'").await.unwrap();
    run(&s, "CREATE TABLE b (id INT PRIMARY KEY)")
        .await
        .unwrap();
    assert_eq!(
        s.db().table("b").unwrap().options().memtable_kind,
        s.db().options().table_defaults.memtable_kind
    );

    run(&s, "SET strata.profile = 'memory_efficient'")
        .await
        .unwrap();
    run(&s, "CREATE TABLE p (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let profile = strata_engine::Profile::MemoryEfficient.table_options();
    let options = s.db().table("p").unwrap().options();
    assert_eq!(options.memtable_kind, profile.memtable_kind);
    assert_eq!(options.memtable_size_bytes, profile.memtable_size_bytes);
    assert_eq!(options.compaction.strategy, StrategyKind::SizeTiered);
    run(&s, "SET strata.profile = 'default'").await.unwrap();

    run(
        &s,
        "CREATE EXTERNAL TABLE e (id BIGINT, v VARCHAR, PRIMARY KEY (id)) STORED AS STRATA \
         LOCATION 'e' OPTIONS ('memtable' 'sorted', 'compaction' 'none')",
    )
    .await
    .unwrap();
    let table = s.db().table("e").unwrap();
    assert_eq!(table.options().memtable_kind, "sorted".parse().unwrap());
    assert_eq!(table.options().compaction.strategy, StrategyKind::None);
    assert_eq!(table.primary_key(), ["id"]);
    run(&s, "INSERT INTO e VALUES (1, 'x')").await.unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM e").await, 1);
    let err = run(
        &s,
        "CREATE EXTERNAL TABLE f (id BIGINT) STORED AS STRATA LOCATION 'f' OPTIONS ('speed' 'max')",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("valid options"), "{err}");
    assert!(!s.db().has_table("f"));
}

#[tokio::test]
async fn views_and_external_files_still_work() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    run(&s, "INSERT INTO t VALUES (1, 10), (2, 20)")
        .await
        .unwrap();
    run(&s, "CREATE VIEW big AS SELECT id FROM t WHERE v > 15")
        .await
        .unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM big").await, 1);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("x.csv");
    std::fs::write(&csv, "a,b\n1,2\n3,4\n").unwrap();
    run(
        &s,
        &format!(
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            csv.display()
        ),
    )
    .await
    .unwrap();
    // ETL into a Strata table.
    run(&s, "INSERT INTO t SELECT a, b FROM x").await.unwrap();
    // Key 1 existed: the CSV row replaced it (upsert).
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 3);
    assert_eq!(count(&s, "SELECT v FROM t WHERE id = 1").await, 2);
    assert!(!s.db().has_table("x"));
    run(&s, "DROP VIEW big").await.unwrap();
}

#[tokio::test]
async fn a_delete_larger_than_one_write_batch_fails_whole_an_insert_is_loaded() {
    let options = Options {
        write_batch_bytes_max: 64 * 1024,
        commit_group_bytes_max: 64 * 1024,
        ..Options::default()
    };
    let s = StrataSession::memory_with(options).unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    // An INSERT larger than one batch switches to a bulk load (it failed whole before).
    let sql = "INSERT INTO t SELECT value, repeat('x', 100) FROM generate_series(1, 5000)";
    assert_eq!(affected(&s, sql).await, 5000);
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 5000);
    assert_eq!(s.db().metrics().get("ingests"), Some(1));
    // Small statements still go through the WAL; a DELETE of more keys than one batch holds
    // (8,000 tombstones of 11 bytes each) fails whole.
    for chunk in 0..8 {
        let lo = chunk * 1000 + 1;
        run(
            &s,
            &format!(
                "INSERT INTO t SELECT value, 'v' FROM generate_series({lo}, {})",
                lo + 999
            ),
        )
        .await
        .unwrap();
    }
    let err = run(&s, "DELETE FROM t").await.unwrap_err();
    assert!(err.to_string().contains("write_batch_bytes_max"), "{err}");
    assert_eq!(count(&s, "SELECT count(*) FROM t").await, 8000);
}

#[tokio::test]
async fn partitioned_key_range_scans_see_the_merged_rows() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO t SELECT value, 1 FROM generate_series(1, 30000)",
    )
    .await
    .unwrap();
    flush(&s, "t");
    run(
        &s,
        "INSERT INTO t SELECT value, 1 FROM generate_series(30001, 40000)",
    )
    .await
    .unwrap();
    flush(&s, "t");
    // Memtable: 1% updates and some deletes over both files.
    run(&s, "UPDATE t SET v = 2 WHERE id % 100 = 0")
        .await
        .unwrap();
    run(&s, "DELETE FROM t WHERE id BETWEEN 29990 AND 30010")
        .await
        .unwrap();
    let plan = physical_plan(&s, "SELECT id FROM t WHERE id > 100").await;
    fn scan_partitions(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
        if plan.downcast_ref::<StrataScanExec>().is_some() {
            return Some(plan.properties().partitioning.partition_count());
        }
        plan.children().into_iter().find_map(scan_partitions)
    }
    assert_eq!(
        scan_partitions(&plan),
        Some(s.copied_config().target_partitions())
    );
    let expected = |lo: i64, hi: i64| -> i64 {
        (lo..=hi).filter(|id| !(29990..=30010).contains(id)).count() as i64
    };
    assert_eq!(
        count(&s, "SELECT count(*) FROM t").await,
        expected(1, 40000)
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE id > 100 AND id <= 35000").await,
        expected(101, 35000)
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM t WHERE id IN (5, 29995, 30000, 39999, 50000)"
        )
        .await,
        2
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE id < 10 OR id >= 39990").await,
        9 + 11
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE v = 2").await,
        (1..=40000)
            .filter(|id| id % 100 == 0 && !(29990..=30010).contains(id))
            .count() as i64
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE v = 1 AND id <> 7").await,
        expected(1, 40000) - 399 - 1
    );
    let sum = count(&s, "SELECT sum(id) FROM t WHERE id BETWEEN 29000 AND 31000").await;
    let want: i64 = (29000..=31000)
        .filter(|id| !(29990..=30010).contains(id))
        .sum();
    assert_eq!(sum, want);
}

#[tokio::test]
async fn key_predicates_on_text_date_and_float_keys() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE s (k VARCHAR PRIMARY KEY, n INT)")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO s VALUES ('a', 1), ('b', 2), ('bb', 3), ('c', 4), ('d', 5)",
    )
    .await
    .unwrap();
    flush(&s, "s");
    run(&s, "DELETE FROM s WHERE k = 'bb'").await.unwrap();
    assert_eq!(
        count(&s, "SELECT count(*) FROM s WHERE k >= 'b' AND k < 'd'").await,
        2
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM s WHERE k IN ('a', 'bb', 'd', 'zz')"
        )
        .await,
        2
    );
    assert_eq!(count(&s, "SELECT count(*) FROM s WHERE k <> 'c'").await, 3);
    let plan = plan_text(&physical_plan(&s, "SELECT n FROM s WHERE k = 'c'").await);
    assert!(plan.contains("points=1"), "{plan}");

    run(
        &s,
        "CREATE TABLE d (day DATE, seq INT, PRIMARY KEY (day, seq))",
    )
    .await
    .unwrap();
    run(
        &s,
        "INSERT INTO d VALUES (DATE '2024-01-01', 1), (DATE '2024-01-02', 1), \
         (DATE '2024-01-02', 2), (DATE '2024-02-01', 1)",
    )
    .await
    .unwrap();
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM d WHERE day BETWEEN DATE '2024-01-02' AND DATE '2024-01-31'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM d WHERE day = DATE '2024-01-02' AND seq > 1"
        )
        .await,
        1
    );

    // Float keys order totally in the engine: their predicates are evaluated after the merge.
    run(&s, "CREATE TABLE f (x DOUBLE PRIMARY KEY)")
        .await
        .unwrap();
    run(&s, "INSERT INTO f VALUES (-1.5), (0.0), (2.5), (10.0)")
        .await
        .unwrap();
    assert_eq!(
        count(&s, "SELECT count(*) FROM f WHERE x > -1.0 AND x < 5").await,
        2
    );
    let plan = plan_text(&physical_plan(&s, "SELECT x FROM f WHERE x > 1").await);
    assert!(plan.contains("ranges=all"), "{plan}");
}

#[tokio::test]
async fn tables_of_key_columns_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = strata_datafusion::open(dir.path(), Options::default()).unwrap();
        run(&s, "CREATE TABLE k (x INT, y INT, PRIMARY KEY (x, y))")
            .await
            .unwrap();
        assert_eq!(
            affected(&s, "INSERT INTO k VALUES (1, 1), (1, 2), (2, 1)").await,
            3
        );
        flush(&s, "k");
        run(&s, "INSERT INTO k VALUES (3, 3)").await.unwrap();
        run(&s, "DELETE FROM k WHERE x = 1 AND y = 2")
            .await
            .unwrap();
        assert_eq!(count(&s, "SELECT count(*) FROM k").await, 3);
        s.close().unwrap();
    }
    let s = strata_datafusion::open(dir.path(), Options::default()).unwrap();
    let batches = run(&s, "SELECT x, y FROM k ORDER BY x, y").await.unwrap();
    assert_batches_eq!(
        [
            "+---+---+",
            "| x | y |",
            "+---+---+",
            "| 1 | 1 |",
            "| 2 | 1 |",
            "| 3 | 3 |",
            "+---+---+",
        ],
        &batches
    );
}

#[tokio::test]
async fn explain_analyze_shows_row_groups_pruned_runs_merged_and_tombstones() {
    // Small row groups (256 rows) and key-index blocks (64 rows), so one SST of 2,000 rows
    // has 8 row groups.
    let options = Options {
        table_defaults: strata_engine::TableOptions {
            sst_row_group_rows: 256,
            sst_scan_row_group_rows: 256,
            sst_index_block_rows: 64,
            ..strata_engine::TableOptions::default()
        },
        ..Options::default()
    };
    let s = StrataSession::memory_with(options).unwrap();
    run(&s, "SET strata.compaction = 'none'").await.unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO t SELECT value, value * 2 FROM generate_series(0, 1999)",
    )
    .await
    .unwrap();
    flush(&s, "t");

    // A key range inside the second row group reads that one only.
    let plan = physical_plan(&s, "SELECT v FROM t WHERE id BETWEEN 300 AND 400").await;
    let rows: usize = collect(Arc::clone(&plan), s.task_ctx())
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 101);
    assert_eq!(scan_metric(&plan, "row_groups_total"), Some(8));
    assert_eq!(scan_metric(&plan, "row_groups_scanned"), Some(1));
    assert_eq!(scan_metric(&plan, "row_groups_pruned"), Some(7));
    // Two disjoint ranges in the first and last row groups read two.
    let plan = physical_plan(&s, "SELECT v FROM t WHERE id < 10 OR id > 1990").await;
    collect(Arc::clone(&plan), s.task_ctx()).await.unwrap();
    assert_eq!(scan_metric(&plan, "row_groups_scanned"), Some(2));
    assert_eq!(scan_metric(&plan, "row_groups_pruned"), Some(6));
    // A value filter: the file is read directly and the Parquet reader prunes row groups by
    // their statistics (only the last one holds v >= 3800).
    let explain = run(&s, "EXPLAIN ANALYZE SELECT id FROM t WHERE v >= 3800")
        .await
        .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&explain)
        .unwrap()
        .to_string();
    for expected in [
        "path=base",
        "files_read_directly=1",
        "runs_merged=0",
        "row_groups_pruned_statistics=8 total → 1 matched",
        "output_rows=100",
    ] {
        assert!(text.contains(expected), "{expected} missing in {text}");
    }

    // A second file of 100 tombstones and 100 new versions over the first one.
    assert_eq!(affected(&s, "DELETE FROM t WHERE id < 100").await, 100);
    assert_eq!(
        affected(&s, "UPDATE t SET v = 0 WHERE id >= 1900").await,
        100
    );
    flush(&s, "t");
    let explain = run(&s, "EXPLAIN ANALYZE SELECT v FROM t").await.unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&explain)
        .unwrap()
        .to_string();
    // Deleted keys lose their put and their tombstone, updated ones their old version:
    // dropped by the merge, or, when the files carry deletion vectors, deleted by them.
    let (path, dropped) = if text.contains("path=base") {
        (
            ["runs_merged=0", "files_read_directly=2"],
            "rows_deleted_by_dvs=300",
        )
    } else {
        (
            ["runs_merged=2", "files_read_directly=0"],
            "rows_deduplicated=300",
        )
    };
    for expected in [
        "files_scanned=2",
        "tombstones_in_scanned_files=100",
        "row_groups_pruned=0",
        "output_rows=1.90 K",
        dropped,
    ]
    .into_iter()
    .chain(path)
    {
        assert!(text.contains(expected), "{expected} missing in {text}");
    }
}

/// Copies a directory tree (a database) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_statement_cut_short_by_a_crash_is_replayed_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let newest_wal = |db: &std::path::Path| -> std::path::PathBuf {
        let mut segments: Vec<_> = std::fs::read_dir(db.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        segments.sort();
        segments.pop().expect("a WAL segment")
    };
    let (before, after) = {
        let s = strata_datafusion::open(&db, Options::default()).unwrap();
        two_row_table(&s).await;
        let before = std::fs::metadata(newest_wal(&db)).unwrap().len();
        // One statement: an upsert of key 1, a new key and a key update (delete + insert).
        run(&s, "UPDATE t SET id = id + 10, v = 'moved'")
            .await
            .unwrap();
        let after = std::fs::metadata(newest_wal(&db)).unwrap().len();
        s.close().unwrap();
        (before, after)
    };
    assert!(after > before, "the UPDATE wrote no WAL record");
    // Cut the log anywhere inside the UPDATE's record (a crash during its write): after
    // recovery the table holds the rows from before it, all of them; with the record whole,
    // every change of the UPDATE.
    let step = ((after - before) / 7).max(1);
    let mut cuts: Vec<u64> = (before..after).step_by(step as usize).collect();
    cuts.push(after - 1);
    cuts.push(after);
    for cut in cuts {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&db, copy.path());
        let wal = newest_wal(copy.path());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let s = strata_datafusion::open(copy.path(), Options::default()).unwrap();
        let batches = run(&s, "SELECT id, v FROM t ORDER BY id").await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let old = "+----+---+\n| id | v |\n+----+---+\n| 1  | a |\n| 2  | b |\n+----+---+";
        let new = "+----+-------+\n| id | v     |\n+----+-------+\n| 11 | moved |\n| 12 | moved |\n+----+-------+";
        if cut == after {
            assert_eq!(text, new, "cut at {cut} (whole record)");
        } else {
            assert_eq!(text, old, "cut at {cut} of {before}..{after}");
        }
        s.close().unwrap();
    }
}

#[tokio::test]
async fn filter_pushdown_is_exact_only_where_key_ranges_enforce_it() {
    use datafusion::logical_expr::TableProviderFilterPushDown as P;
    use datafusion::prelude::{col, lit};
    use strata_datafusion::provider::StrataTable;

    let s = StrataSession::memory().unwrap();
    run(
        &s,
        "CREATE TABLE t (a BIGINT, b VARCHAR, v BIGINT, f DOUBLE, PRIMARY KEY (a, b))",
    )
    .await
    .unwrap();
    run(&s, "CREATE TABLE fk (x DOUBLE PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    let provider = s.table_provider("t").await.unwrap();
    let table = provider.downcast_ref::<StrataTable>().unwrap();
    let filters = [
        col("a").eq(lit(1i64)),
        col("a").gt(lit(5i64)).and(col("a").lt(lit(9i64))),
        col("a").in_list(vec![lit(1i64), lit(3i64)], false),
        col("a").eq(lit(1i64)).or(col("a").gt_eq(lit(10i64))),
        // Not exact: later key columns (ranges only narrow them), value columns, a key
        // predicate mixed with a value one, NOT IN, a NULL literal, a function of the key.
        col("b").eq(lit("x")),
        col("v").eq(lit(1i64)),
        col("a").eq(lit(1i64)).or(col("v").eq(lit(2i64))),
        col("a").in_list(vec![lit(1i64)], true),
        col("a").eq(lit(datafusion::common::ScalarValue::Int64(None))),
        (col("a") + lit(1i64)).eq(lit(2i64)),
    ];
    let refs: Vec<&datafusion::logical_expr::Expr> = filters.iter().collect();
    let answers =
        datafusion::catalog::TableProvider::supports_filters_pushdown(table, &refs).unwrap();
    let exact: Vec<bool> = answers.iter().map(|a| *a == P::Exact).collect();
    assert_eq!(
        exact,
        [
            true, true, true, true, false, false, false, false, false, false
        ]
    );
    assert!(answers.iter().all(|a| *a != P::Unsupported));
    // Float keys are never exact (their encoding does not order like SQL comparisons).
    let provider = s.table_provider("fk").await.unwrap();
    let fk = provider.downcast_ref::<StrataTable>().unwrap();
    let x = col("x").gt(lit(1.0f64));
    let answers = datafusion::catalog::TableProvider::supports_filters_pushdown(fk, &[&x]).unwrap();
    assert_eq!(answers, [P::Inexact]);

    // In plans: an exact filter leaves no FilterExec, an inexact one keeps it (DataFusion
    // re-checks what the scan's residual filter already applied after the merge).
    run(
        &s,
        "INSERT INTO t VALUES (1, 'x', 1, 0.5), (2, 'y', 2, 1.5), (7, 'z', 3, 2.5)",
    )
    .await
    .unwrap();
    let exact_plan = plan_text(&physical_plan(&s, "SELECT v FROM t WHERE a > 1").await);
    assert!(!exact_plan.contains("FilterExec"), "{exact_plan}");
    let inexact_plan = plan_text(&physical_plan(&s, "SELECT v FROM t WHERE v > 1").await);
    assert!(inexact_plan.contains("FilterExec"), "{inexact_plan}");
    assert!(inexact_plan.contains("residual_filter"), "{inexact_plan}");
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE a > 1").await, 2);
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE a = 1 AND b = 'x'").await,
        1
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE a IN (1, 7) AND v >= 3").await,
        1
    );

    // ORDER BY the whole composite key plans no sort either.
    let ordered = plan_text(&physical_plan(&s, "SELECT a, b, v FROM t ORDER BY a, b").await);
    assert!(!ordered.contains("SortExec"), "{ordered}");
}

#[tokio::test]
async fn a_scan_reads_the_snapshot_pinned_when_it_was_planned() {
    let s = StrataSession::memory().unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    run(&s, "INSERT INTO t VALUES (1, 1), (2, 2)")
        .await
        .unwrap();
    let plan = physical_plan(&s, "SELECT sum(v) FROM t").await;
    // Writes after planning (an update, a delete, a new row) are not seen by that plan.
    run(&s, "UPDATE t SET v = 100 WHERE id = 1").await.unwrap();
    run(&s, "DELETE FROM t WHERE id = 2").await.unwrap();
    run(&s, "INSERT INTO t VALUES (3, 1000)").await.unwrap();
    flush(&s, "t");
    let batches = collect(plan, s.task_ctx()).await.unwrap();
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(count(&s, "SELECT sum(v) FROM t").await, 1100);
}

#[tokio::test]
async fn point_lookups_skip_files_by_bloom_filter() {
    let s = StrataSession::memory().unwrap();
    run(&s, "SET strata.compaction = 'none'").await.unwrap();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    // Two files over the same key span: odd keys (older), even keys (newer).
    run(
        &s,
        "INSERT INTO t SELECT value * 2 + 1, value FROM generate_series(0, 499)",
    )
    .await
    .unwrap();
    flush(&s, "t");
    run(
        &s,
        "INSERT INTO t SELECT value * 2, value FROM generate_series(0, 499)",
    )
    .await
    .unwrap();
    flush(&s, "t");
    let metric = |name: &'static str| {
        let s = &s;
        async move {
            count(
                s,
                &format!(
                    "SELECT CAST(value AS BIGINT) FROM strata_metrics() \
                     WHERE table_name IS NULL AND name = '{name}'"
                ),
            )
            .await
        }
    };
    let (checks, negatives) = (
        metric("bloom_checks").await,
        metric("bloom_negatives").await,
    );
    // Key 501 is only in the older file; the newer one covers its range but its bloom filter
    // rules it out without reading a block.
    assert_eq!(count(&s, "SELECT v FROM t WHERE id = 501").await, 250);
    assert!(metric("bloom_checks").await > checks);
    assert_eq!(metric("bloom_negatives").await, negatives + 1);
    // A key beyond both files' key ranges: no file is probed.
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE id = 5001").await, 0);
    let plan = physical_plan(&s, "SELECT v FROM t WHERE id = 777").await;
    collect(Arc::clone(&plan), s.task_ctx()).await.unwrap();
    assert_eq!(scan_metric(&plan, "files_scanned"), Some(2));
    assert_eq!(scan_metric(&plan, "point_lookups"), Some(1));
}

#[tokio::test]
async fn sst_files_are_plain_parquet_with_typed_key_statistics() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;

    let s = StrataSession::memory().unwrap();
    run(
        &s,
        "CREATE TABLE t (v VARCHAR, id BIGINT, PRIMARY KEY (id))",
    )
    .await
    .unwrap();
    run(&s, "INSERT INTO t VALUES ('a', 7), ('b', -3), ('c', 42)")
        .await
        .unwrap();
    flush(&s, "t");
    let view = s.db().table("t").unwrap().view().unwrap();
    let files: Vec<_> = view.files_by_level().into_iter().flatten().collect();
    let path = view.verified_sst_path(files[0].id).unwrap();
    // The parquet crate's own (non-Arrow) reader: any Parquet tool reads the file.
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let metadata = reader.metadata();
    assert_eq!(metadata.file_metadata().num_rows(), 3);
    let schema = metadata.file_metadata().schema_descr();
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
    for column in ["v", "id", "_seq", "_op"] {
        assert!(names.contains(&column), "{column} missing in {names:?}");
    }
    // The key is stored as its typed column, with min/max statistics (not only as an
    // opaque encoded blob).
    let id = names.iter().position(|n| *n == "id").unwrap();
    match metadata.row_group(0).column(id).statistics() {
        Some(Statistics::Int64(stats)) => {
            assert_eq!(stats.min_opt(), Some(&-3));
            assert_eq!(stats.max_opt(), Some(&42));
        }
        other => panic!("no Int64 statistics for the key column: {other:?}"),
    }
    let rows: Vec<String> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| row.unwrap().to_string())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows[0].contains("-3"), "{rows:?}");
}

/// The `(k, v)` rows of `t` in key order.
async fn key_values(s: &StrataSession, table: &str) -> Vec<(i64, i64)> {
    let batches = run(s, &format!("SELECT k, v FROM {table} ORDER BY k"))
        .await
        .unwrap();
    batches
        .iter()
        .flat_map(|b| {
            let k = b.column(0).as_primitive::<Int64Type>();
            let v = b.column(1).as_primitive::<Int64Type>();
            (0..b.num_rows())
                .map(|i| (k.value(i), v.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Within one INSERT the last row of a key *in the input's order* wins, also when DataFusion
/// would read the input in several partitions: several CSV files (path order, then line
/// order), a generate_series it would split round-robin, the branches of a UNION ALL, and
/// INSERT OVERWRITE the same. Repeated, since merging the partitions by arrival (as before)
/// got it right some of the time.
#[test]
fn insert_keeps_the_last_row_of_a_key_in_input_order() {
    use std::fmt::Write as _;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let s = StrataSession::memory().unwrap();
        run(&s, "SET datafusion.execution.target_partitions = 8")
            .await
            .unwrap();
        // a.csv: 100,000 rows over keys 0..9; b.csv, read after it: one row per key.
        let dir = tempfile::tempdir().unwrap();
        let mut a = String::from("k,v\n");
        for i in 1..=100_000 {
            writeln!(a, "{},{i}", i % 10).unwrap();
        }
        std::fs::write(dir.path().join("a.csv"), a).unwrap();
        let mut b = String::from("k,v\n");
        for k in 0..10 {
            writeln!(b, "{k},{}", -k - 1).unwrap();
        }
        std::fs::write(dir.path().join("b.csv"), b).unwrap();
        run(
            &s,
            &format!(
                "CREATE EXTERNAL TABLE src (k BIGINT, v BIGINT) STORED AS CSV LOCATION '{}/' \
                 OPTIONS ('format.has_header' 'true')",
                dir.path().display()
            ),
        )
        .await
        .unwrap();
        run(&s, "CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT)")
            .await
            .unwrap();
        let from_files: Vec<(i64, i64)> = (0..10).map(|k| (k, -k - 1)).collect();
        let generated: Vec<(i64, i64)> = (0..10)
            .map(|k| (k, if k == 0 { 100_000 } else { 99_990 + k }))
            .collect();
        // The generated rows first, three rows per key after them.
        let union: Vec<(i64, i64)> = (0..10).map(|k| (k, 1_000 + k)).collect();
        let union_sql = "INSERT INTO t \
             SELECT value % 10 AS k, value AS v FROM generate_series(1, 100000) \
             UNION ALL SELECT value % 10 AS k, 1000 + value % 10 AS v \
             FROM generate_series(1, 30)";
        for round in 0..3 {
            assert_eq!(
                affected(&s, "INSERT INTO t SELECT k, v FROM src").await,
                100_010
            );
            assert_eq!(
                key_values(&s, "t").await,
                from_files,
                "round {round}: files"
            );
            let sql = "INSERT INTO t SELECT value % 10, value FROM generate_series(1, 100000)";
            assert_eq!(affected(&s, sql).await, 100_000);
            assert_eq!(
                key_values(&s, "t").await,
                generated,
                "round {round}: series"
            );
            assert_eq!(affected(&s, union_sql).await, 100_030);
            assert_eq!(key_values(&s, "t").await, union, "round {round}: union");
            let overwrite = "INSERT OVERWRITE t SELECT k, v FROM src";
            assert_eq!(affected(&s, overwrite).await, 100_010);
            assert_eq!(
                key_values(&s, "t").await,
                from_files,
                "round {round}: overwrite"
            );
        }
        // The plan: no partition merge by arrival under the sink.
        let plan = plan_text(&physical_plan(&s, union_sql).await);
        assert!(plan.contains("InputOrderExec"), "{plan}");
        assert!(!plan.contains("CoalescePartitionsExec"), "{plan}");
        assert!(!plan.contains("RepartitionExec"), "{plan}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_statement_reads_every_table_at_one_point_in_time() {
    // A writer sets a.v = i, then b.v = i, for i = 1..=WRITES: at any single point in time
    // a.v >= b.v. A statement that pinned each table at its own moment could see b newer than
    // a; reading both at the statement's one snapshot never can. (The writer is bounded: every
    // version of the one key stays in the memtable, and each query walks them.)
    const WRITES: i64 = 20_000;
    let s = StrataSession::memory().unwrap();
    for table in ["a", "b"] {
        run(
            &s,
            &format!("CREATE TABLE {table} (k INT PRIMARY KEY, v BIGINT)"),
        )
        .await
        .unwrap();
        run(&s, &format!("INSERT INTO {table} VALUES (1, 0)"))
            .await
            .unwrap();
    }
    let (a, b) = (s.db().table("a").unwrap(), s.db().table("b").unwrap());
    let writer = std::thread::spawn(move || {
        let schema = a.schema();
        for i in 1..=WRITES {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(datafusion::arrow::array::Int32Array::from(vec![1])),
                    Arc::new(datafusion::arrow::array::Int64Array::from(vec![i])),
                ],
            )
            .unwrap();
            a.insert(&batch).unwrap();
            b.insert(&batch).unwrap();
        }
    });
    let mut round = 0;
    while !writer.is_finished() || round < 100 {
        let sql = if round % 2 == 0 {
            "SELECT a.v, b.v FROM a, b"
        } else {
            "SELECT a.v, b.v FROM b, a"
        };
        let batches = run(&s, sql).await.unwrap();
        let batch = &batches[0];
        let av = batch.column(0).as_primitive::<Int64Type>().value(0);
        let bv = batch.column(1).as_primitive::<Int64Type>().value(0);
        assert!(av >= bv, "round {round}: {sql} saw a.v = {av} < b.v = {bv}");
        round += 1;
    }
    writer.join().unwrap();
    let final_values = run(&s, "SELECT a.v, b.v FROM a, b").await.unwrap();
    assert_eq!(
        final_values[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0),
        WRITES
    );
    assert_eq!(
        final_values[0]
            .column(1)
            .as_primitive::<Int64Type>()
            .value(0),
        WRITES
    );
}

/// An `INSERT ... SELECT` several times larger than one atomic write batch can hold
/// (`write_batch_bytes_max`, made small here so the test is quick) succeeds as a bulk load
/// once it passes `strata.bulk_load_bytes`: every row there, the last row of a key winning,
/// upserting over older rows, through a reopen. Before bulk loads it failed with "INSERT
/// touches more than one atomic write batch can hold"; `INSERT OVERWRITE`, which stays one
/// WAL batch, still does.
#[tokio::test]
async fn an_insert_larger_than_a_write_batch_is_a_bulk_load() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        write_batch_bytes_max: 1 << 20,
        commit_group_bytes_max: 1 << 20,
        ..Options::default()
    };
    let statement = "INSERT INTO big SELECT value % 150000, value % 100, value * 0.25, \
                     'note ' || value FROM generate_series(1, 300000)";
    {
        let s = strata_datafusion::open(dir.path(), options()).unwrap();
        run(&s, "SET strata.bulk_load_bytes = '262144'")
            .await
            .unwrap();
        run(
            &s,
            "CREATE TABLE big (id BIGINT PRIMARY KEY, k BIGINT, x DOUBLE, note VARCHAR)",
        )
        .await
        .unwrap();
        run(
            &s,
            "INSERT INTO big VALUES (7, -1, -1.0, 'old'), (-5, -1, -1.0, 'kept')",
        )
        .await
        .unwrap();
        // 300,000 rows of about 40 bytes: ~12 MB against a 1 MiB write batch.
        assert_eq!(affected(&s, statement).await, 300_000);
        assert_eq!(s.db().metrics().get("ingests"), Some(1));
        assert!(s.db().table("big").unwrap().stats().files_per_level[0] > 4);
        assert_eq!(count(&s, "SELECT count(*) FROM big").await, 150_001);
        // Key 7 came twice, as rows 7 and 150007: the later one won over both the earlier and
        // the older row.
        let batches = run(&s, "SELECT * FROM big WHERE id IN (-5, 7) ORDER BY id")
            .await
            .unwrap();
        assert_batches_eq!(
            [
                "+----+----+----------+-------------+",
                "| id | k  | x        | note        |",
                "+----+----+----------+-------------+",
                "| -5 | -1 | -1.0     | kept        |",
                "| 7  | 7  | 37501.75 | note 150007 |",
                "+----+----+----------+-------------+",
            ],
            &batches
        );
        let error = run(
            &s,
            "INSERT OVERWRITE big SELECT value, 0, 0.0, 'note ' || value \
             FROM generate_series(1, 300000)",
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("atomic write batch"), "{error}");
        assert_eq!(count(&s, "SELECT count(*) FROM big").await, 150_001);
        s.close().unwrap();
    }
    let s = strata_datafusion::open(dir.path(), options()).unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM big").await, 150_001);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM big WHERE note = 'note ' || (id + 150000)"
        )
        .await,
        149_999 // every id but 0 (its last row is 300000) and -5
    );
}

use crate::s3_server;

/// Runs `sql` and returns its plan, with its metrics filled.
async fn executed(s: &StrataSession, sql: &str) -> Arc<dyn ExecutionPlan> {
    let plan = physical_plan(s, sql).await;
    collect(Arc::clone(&plan), s.task_ctx()).await.unwrap();
    plan
}

/// On a database on S3 (a `moto` server on loopback), a scan's reads show in `EXPLAIN
/// ANALYZE` and in `strata_metrics()`: GETs when nothing is cached; after a reopen (memory
/// caches empty) disk-cache hits and no GET; in the same open, block-cache hits for a point
/// lookup.
/// A scan of a table on S3 takes the base path (DataFusion's Parquet reader over the
/// database's read store), with the right answers under a memtable holding new rows, an update
/// and a delete; after a reopen its bytes come from the disk cache, with no GET, and once the
/// database has opened the file, a query sends no request at all (no HEAD either).
#[tokio::test(flavor = "multi_thread")]
async fn scans_on_s3_take_the_base_path_through_the_disk_cache() {
    let url = format!("s3://{}/db", s3_server::bucket("s3base"));
    let local = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let open = || {
        strata_datafusion::open(
            &url,
            Options {
                local_wal_dir: Some(local.path().to_path_buf()),
                faults: Some(Arc::clone(&faults)),
                ..Options::default()
            },
        )
        .unwrap()
    };
    let s = open();
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO t SELECT value, 'v' || value FROM generate_series(1, 5000)",
    )
    .await
    .unwrap();
    flush(&s, "t");
    // In the memtable: new rows, an update and a delete of flushed rows.
    run(
        &s,
        "INSERT INTO t SELECT value, 'w' || value FROM generate_series(5001, 5010)",
    )
    .await
    .unwrap();
    run(&s, "UPDATE t SET v = 'changed' WHERE id = 42")
        .await
        .unwrap();
    run(&s, "DELETE FROM t WHERE id = 7").await.unwrap();
    let scan = "SELECT count(*) FROM t WHERE v <> 'x'";
    async fn check(s: &StrataSession) {
        assert_eq!(
            count(s, "SELECT count(*) FROM t WHERE v <> 'x'").await,
            5009
        );
        assert_eq!(
            count(s, "SELECT CAST(sum(id) AS BIGINT) FROM t WHERE v <> 'x'").await,
            (1..=5010).sum::<i64>() - 7
        );
        assert_eq!(
            count(s, "SELECT count(*) FROM t WHERE v = 'changed' AND id = 42").await,
            1
        );
        assert_eq!(count(s, "SELECT count(*) FROM t WHERE v = 'v42'").await, 0);
        assert_eq!(count(s, "SELECT count(*) FROM t WHERE id = 7").await, 0);
    }
    check(&s).await;
    let explained = run(&s, &format!("EXPLAIN ANALYZE {scan}")).await.unwrap();
    let explained = datafusion::arrow::util::pretty::pretty_format_batches(&explained)
        .unwrap()
        .to_string();
    for expected in ["path=base", "files_read_directly=1", "runs_merged=0"] {
        assert!(
            explained.contains(expected),
            "{expected} missing from {explained}"
        );
    }
    s.close().unwrap();

    // Reopened (the memtable replayed from the local WAL, the memory caches empty): the same
    // answers, the file's bytes from the disk cache.
    let s = open();
    let plan = executed(&s, scan).await;
    assert_eq!(scan_metric(&plan, "object_gets"), Some(0));
    assert_eq!(scan_metric(&plan, "disk_cache_misses"), Some(0));
    assert!(scan_metric(&plan, "disk_cache_hits").unwrap() > 0);
    check(&s).await;
    // Every request reading the store is counted (a zero delay) from here on: the queries
    // above opened the file, so these send none.
    faults.delay(&[IoOp::SstRead], std::time::Duration::ZERO);
    executed(&s, scan).await;
    check(&s).await;
    assert_eq!(
        faults.failures(),
        0,
        "requests sent by a query of opened files"
    );
    faults.disarm();
    s.close().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn scans_on_s3_show_gets_and_cache_hits() {
    let url = format!("s3://{}/db", s3_server::bucket("explain"));
    let local = tempfile::tempdir().unwrap();
    let open = |drop_disk_cache: bool| {
        let cache = local.path().join("cache");
        if drop_disk_cache && cache.exists() {
            std::fs::remove_dir_all(&cache).unwrap();
        }
        strata_datafusion::open(
            &url,
            Options {
                local_wal_dir: Some(local.path().to_path_buf()),
                ..Options::default()
            },
        )
        .unwrap()
    };
    let s = open(true);
    run(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    run(
        &s,
        "INSERT INTO t SELECT value, 'v' || value FROM generate_series(1, 5000)",
    )
    .await
    .unwrap();
    flush(&s, "t");
    s.close().unwrap();
    let scan = "SELECT count(*) FROM t WHERE v <> 'x'";
    let point = "SELECT v FROM t WHERE id = 42";

    // Cold: no disk cache.
    let s = open(true);
    let plan = executed(&s, scan).await;
    assert!(scan_metric(&plan, "object_gets").unwrap() > 0);
    assert!(scan_metric(&plan, "object_get_bytes").unwrap() > 0);
    assert!(scan_metric(&plan, "disk_cache_misses").unwrap() > 0);
    let gets = count(
        &s,
        "SELECT CAST(value AS BIGINT) FROM strata_metrics() \
         WHERE table_name IS NULL AND name = 'object_gets'",
    )
    .await;
    assert!(gets as usize >= scan_metric(&plan, "object_gets").unwrap());
    s.close().unwrap();

    // Disk: reopened, the memory caches are empty, the disk cache answers: a point lookup
    // misses the block cache, then hits it.
    let s = open(false);
    let plan = executed(&s, point).await;
    assert_eq!(scan_metric(&plan, "block_cache_misses"), Some(1));
    assert_eq!(scan_metric(&plan, "block_cache_hits"), Some(0));
    assert_eq!(scan_metric(&plan, "object_gets"), Some(0));
    assert!(scan_metric(&plan, "disk_cache_hits").unwrap() > 0);
    let plan = executed(&s, point).await;
    assert_eq!(scan_metric(&plan, "block_cache_hits"), Some(1));
    assert_eq!(scan_metric(&plan, "block_cache_misses"), Some(0));
    let plan = executed(&s, scan).await;
    assert_eq!(scan_metric(&plan, "object_gets"), Some(0));
    assert_eq!(scan_metric(&plan, "disk_cache_misses"), Some(0));
    assert!(scan_metric(&plan, "disk_cache_hits").unwrap() > 0);
    let explained = run(&s, &format!("EXPLAIN ANALYZE {scan}")).await.unwrap();
    let explained = datafusion::arrow::util::pretty::pretty_format_batches(&explained)
        .unwrap()
        .to_string();
    for name in ["object_gets=0", "disk_cache_hits=", "block_cache_misses="] {
        assert!(explained.contains(name), "{name} missing from {explained}");
    }
    let hits = count(
        &s,
        "SELECT CAST(value AS BIGINT) FROM strata_metrics() \
         WHERE table_name IS NULL AND name = 'disk_cache_hits'",
    )
    .await;
    assert!(hits > 0);
    s.close().unwrap();
}

/// A CSV or JSON file that cannot be stored (a missing bucket, a path under a regular file)
/// fails its `COPY` with the store's own error, not DataFusion's internal "finalizing writes"
/// one; the same statements to a good location still write their rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_copy_names_the_stores_error() {
    s3_server::server();
    let good = s3_server::bucket("copyok");
    let missing = format!("missing-bucket-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let regular_file = dir.path().join("afile");
    std::fs::write(&regular_file, b"x").unwrap();
    let s = StrataSession::memory().unwrap();
    two_row_table(&s).await;
    for format in ["CSV", "JSON"] {
        let extension = format.to_lowercase();
        let cases = [
            (format!("s3://{missing}/x.{extension}"), "NoSuchBucket"),
            (format!("{}/x.{extension}", regular_file.display()), "afile"),
        ];
        for (target, cause) in cases {
            let error = run(&s, &format!("COPY t TO '{target}' STORED AS {format}"))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("writing '{target}' failed")) && error.contains(cause),
                "{format} to {target}: {error}"
            );
            assert!(!error.contains("finalizing"), "{error}");
        }
        let target = format!("s3://{good}/x.{extension}");
        assert_eq!(
            affected(&s, &format!("COPY t TO '{target}' STORED AS {format}")).await,
            2
        );
        let options = match format {
            "CSV" => "OPTIONS ('format.has_header' 'true')",
            _ => "",
        };
        run(
            &s,
            &format!("CREATE EXTERNAL TABLE copied_{extension} STORED AS {format} LOCATION '{target}' {options}"),
        )
        .await
        .unwrap();
        let read = format!("SELECT CAST(sum(id) AS BIGINT) FROM copied_{extension}");
        assert_eq!(count(&s, &read).await, 3, "{format}");
    }
}
