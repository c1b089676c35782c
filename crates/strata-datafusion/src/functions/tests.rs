//! Tests of the table functions over a plain `SessionContext` and an engine-created database.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use datafusion::prelude::SessionContext;
use strata_engine::{Db, KeyValue, Options};

use super::events::{events_batch, splitmix64};
use super::*;

fn setup() -> (tempfile::TempDir, Arc<Db>, SessionContext) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let ctx = SessionContext::new();
    register(&ctx, &db).unwrap();
    (dir, db, ctx)
}

fn users(db: &Db) -> strata_engine::Table {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let table = db.create_table("users", schema.clone(), &["id"]).unwrap();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![3, 1, 2])),
            Arc::new(StringArray::from(vec![Some("c"), Some("a"), None])),
        ],
    )
    .unwrap();
    table.insert(&batch).unwrap();
    table
}

async fn rows(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

async fn error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => match df.collect().await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{sql} succeeded"),
        },
    }
}

fn u64s(batches: &[RecordBatch], column: usize) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[tokio::test]
async fn sstables_and_levels_follow_flush_and_compact() {
    let (_dir, db, ctx) = setup();
    let table = users(&db);
    let before = rows(&ctx, "SELECT * FROM strata_sstables('users')").await;
    assert_eq!(before.iter().map(|b| b.num_rows()).sum::<usize>(), 0);

    let flushed = rows(&ctx, "SELECT * FROM strata_flush('users')").await;
    assert_eq!(u64s(&flushed, 1), vec![3], "entries flushed");
    assert_eq!(u64s(&flushed, 3), vec![1], "files after");

    let files = rows(
        &ctx,
        "SELECT level, min_key, max_key, rows, tombstones, path FROM strata_sstables('users')",
    )
    .await;
    let batch = &files[0];
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(batch.column(1).as_string::<i32>().value(0), "1");
    assert_eq!(batch.column(2).as_string::<i32>().value(0), "3");
    assert_eq!(u64s(&files, 3), vec![3]);
    let path = batch.column(5).as_string::<i32>().value(0).to_string();
    assert!(std::path::Path::new(&path).exists(), "{path}");

    // A second file, then compaction into one.
    table.delete_keys(&[vec![KeyValue::from(2i64)]]).unwrap();
    rows(&ctx, "SELECT * FROM strata_flush('users')").await;
    let compacted = rows(&ctx, "SELECT * FROM strata_compact('users')").await;
    assert_eq!(u64s(&compacted, 1), vec![2], "files before");
    assert_eq!(u64s(&compacted, 2), vec![1], "files after");
    assert_eq!(table.get(&[KeyValue::from(2i64)]).unwrap(), None);

    let levels = rows(
        &ctx,
        "SELECT level, files, min_key, max_key FROM strata_levels('users') WHERE files > 0",
    )
    .await;
    assert_eq!(levels[0].num_rows(), 1);
    assert_eq!(levels[0].column(2).as_string::<i32>().value(0), "1");

    let stats = rows(
        &ctx,
        "SELECT compactions FROM strata_compaction_stats('users') WHERE level IS NOT NULL",
    )
    .await;
    assert_eq!(u64s(&stats, 0).iter().sum::<u64>(), 1);
    let metrics = rows(
        &ctx,
        "SELECT value FROM strata_metrics() \
         WHERE table_name = 'users' AND level IS NULL AND name = 'compactions'",
    )
    .await;
    assert_eq!(u64s(&metrics, 0), vec![1]);
    let flushes = rows(
        &ctx,
        "SELECT value FROM strata_metrics() WHERE table_name IS NULL AND name = 'flushes'",
    )
    .await;
    assert_eq!(u64s(&flushes, 0), vec![2]);
}

#[tokio::test]
async fn memtables_list_every_table() {
    let (_dir, db, ctx) = setup();
    users(&db);
    db.kv("settings").unwrap().put(b"k", b"v").unwrap();
    let batches = rows(
        &ctx,
        "SELECT table_name, state, entries FROM strata_memtables() ORDER BY table_name",
    )
    .await;
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(batch.column(0).as_string::<i32>().value(0), "settings");
    assert_eq!(batch.column(1).as_string::<i32>().value(1), "active");
    assert_eq!(u64s(&batches, 2), vec![1, 3]);
    let one = rows(&ctx, "SELECT entries FROM strata_memtables('users')").await;
    assert_eq!(u64s(&one, 0), vec![3]);
}

#[tokio::test]
async fn maintenance_runs_at_execution_not_planning() {
    let (_dir, db, ctx) = setup();
    let table = users(&db);
    ctx.sql("EXPLAIN SELECT * FROM strata_flush('users')")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(table.stats().memtable_entries, 3, "EXPLAIN must not flush");
    let df = ctx.sql("SELECT * FROM strata_flush()").await.unwrap();
    assert_eq!(table.stats().memtable_entries, 3, "planning must not flush");
    df.collect().await.unwrap();
    assert_eq!(table.stats().memtable_entries, 0);
}

#[tokio::test]
async fn bad_arguments_are_plan_errors() {
    let (_dir, db, ctx) = setup();
    users(&db);
    let e = error(&ctx, "SELECT * FROM strata_sstables('nope')").await;
    assert!(
        e.contains("strata_sstables: table 'nope' does not exist"),
        "{e}"
    );
    let e = error(&ctx, "SELECT * FROM strata_sstables()").await;
    assert!(e.contains("strata_sstables takes 1 argument, got 0"), "{e}");
    let e = error(&ctx, "SELECT * FROM strata_levels(1)").await;
    assert!(e.contains("argument 1 must be a string"), "{e}");
    let e = error(&ctx, "SELECT * FROM strata_metrics('users')").await;
    assert!(e.contains("strata_metrics takes no arguments"), "{e}");
    let e = error(&ctx, "SELECT * FROM generate_events('x')").await;
    assert!(e.contains("argument 1 must be an integer"), "{e}");
    let e = error(&ctx, "SELECT * FROM generate_events(-1)").await;
    assert!(e.contains("rows must be between 0"), "{e}");
    let e = error(&ctx, "SELECT * FROM strata_compact('users', 'x')").await;
    assert!(e.contains("strata_compact takes 1 argument, got 2"), "{e}");
}

#[tokio::test]
async fn functions_fail_cleanly_after_close() {
    let (_dir, db, ctx) = setup();
    drop(db);
    let e = error(&ctx, "SELECT * FROM strata_metrics()").await;
    assert!(e.contains("the database is closed"), "{e}");
}

#[test]
fn events_follow_the_benchmark_definition() {
    let batch = events_batch(7, 3).unwrap();
    assert_eq!(batch.schema(), events_schema());
    let i = 8u64;
    assert_eq!(
        batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(1),
        8
    );
    assert_eq!(
        batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .value(1) as u64,
        splitmix64(i) % 100_000
    );
    assert_eq!(
        batch.column(2).as_string_view().value(1),
        format!("k{}", splitmix64(i ^ 0xA5A5_A5A5_A5A5_A5A5) % 20)
    );
    assert_eq!(
        batch
            .column(3)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .value(1),
        (splitmix64(i ^ 0x5A5A_5A5A_5A5A_5A5A) % 100_000) as f64 / 100.0
    );
    // 2024-01-01T00:00:24
    assert_eq!(
        batch
            .column(4)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(1),
        1_704_067_224_000_000
    );
    // splitmix64 reference value (seed 0), from the published algorithm.
    assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
}

#[tokio::test]
async fn generate_events_streams_in_partitions() {
    let ctx = SessionContext::new();
    ctx.register_udtf("generate_events", Arc::new(EventsFunction));
    let batches = rows(
        &ctx,
        "SELECT count(*), count(DISTINCT id), min(id), max(id), count(DISTINCT kind), \
         min(ts), max(amount) <= 999.99 FROM generate_events(50000, 10)",
    )
    .await;
    let b = &batches[0];
    let ints = |c: usize| {
        b.column(c)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    };
    assert_eq!(ints(0), 50_000);
    assert_eq!(ints(1), 50_000);
    assert_eq!(ints(2), 10);
    assert_eq!(ints(3), 50_009);
    assert_eq!(ints(4), 20);
    assert!(b.column(6).as_boolean().value(0));
    // Ordered output needs no sort: the plan declares the id order per partition.
    let plan = rows(
        &ctx,
        "EXPLAIN SELECT id FROM generate_events(100) ORDER BY id",
    )
    .await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(!text.contains("SortExec"), "{text}");
    let limited = rows(&ctx, "SELECT id FROM generate_events(1000000) LIMIT 3").await;
    assert_eq!(limited.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
}

#[test]
fn keys_render_readably() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int32, false),
        Field::new("b", DataType::Utf8, false),
        Field::new("c", DataType::Int64, true),
    ]));
    let table = strata_engine::TableSchema::new(schema, &["a", "b"]).unwrap();
    let key = table
        .encode_key_values(&[
            strata_engine::KeyValue::from(1i32),
            strata_engine::KeyValue::from("it's"),
        ])
        .unwrap();
    assert_eq!(render_key(&table, &key), "(1, 'it''s')");
    assert_eq!(render_key(&table, &[0xff]), "x'ff'");
}

#[tokio::test]
async fn flushing_every_table_goes_past_a_table_that_cannot_flush() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(strata_engine::FaultInjector::new());
    let options = Options {
        faults: Some(Arc::clone(&faults)),
        ..Options::default()
    };
    let db = Arc::new(Db::open(dir.path(), options).unwrap());
    let ctx = SessionContext::new();
    register(&ctx, &db).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
    )
    .unwrap();
    // "a_broken" sorts first: before the fix its failure stopped the flush of the others.
    let broken = db
        .create_table("a_broken", Arc::clone(&schema), &["id"])
        .unwrap();
    let healthy: Vec<_> = ["b", "c"]
        .iter()
        .map(|name| db.create_table(name, Arc::clone(&schema), &["id"]).unwrap())
        .collect();
    faults.fail_paths_containing(
        &[strata_engine::IoOp::SstWrite],
        &format!("sst/t{:06}/", broken.id()),
        std::io::ErrorKind::StorageFull,
    );
    for table in healthy.iter().chain([&broken]) {
        table.insert(&batch).unwrap();
    }
    let message = error(&ctx, "SELECT * FROM strata_flush()").await;
    assert!(message.contains("a_broken"), "{message}");
    assert!(
        message.contains("1 table(s) could not be flushed"),
        "{message}"
    );
    for table in &healthy {
        assert_eq!(
            table.stats().memtable_entries,
            0,
            "{} flushed",
            table.name()
        );
        assert_eq!(table.stats().files_per_level.iter().sum::<usize>(), 1);
    }
    assert_eq!(broken.stats().memtable_entries, 3);
    // Naming the broken table reports its own error.
    let message = error(&ctx, "SELECT * FROM strata_flush('a_broken')").await;
    assert!(message.contains("injected"), "{message}");
    faults.disarm();
    let flushed = rows(&ctx, "SELECT * FROM strata_flush()").await;
    assert_eq!(flushed.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
    assert_eq!(broken.stats().memtable_entries, 0);
}

/// The rows of a string column.
fn texts(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let column = arrow::compute::cast(b.column(column), &DataType::Utf8).unwrap();
            let column = column.as_string::<i32>().clone();
            (0..column.len())
                .map(|i| {
                    if column.is_null(i) {
                        "NULL".to_string()
                    } else {
                        column.value(i).to_string()
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn catalog_functions_describe_tables_columns_and_properties() {
    let (_dir, db, ctx) = setup();
    let table = users(&db);
    let log = Arc::new(Schema::new(vec![Field::new("msg", DataType::Utf8, true)]));
    db.create_table("log", log, &[]).unwrap();
    let batches = rows(
        &ctx,
        "SELECT table_name, primary_key, rows_estimate, sst_files, memtable_kind, \
         bytes = sst_bytes + memtable_bytes, memtable_bytes > 0 FROM strata_tables()",
    )
    .await;
    assert_eq!(texts(&batches, 0), ["log", "users"]);
    assert_eq!(texts(&batches, 1), ["NULL", "id"]);
    assert_eq!(u64s(&batches, 2), [0, 3]);
    assert_eq!(u64s(&batches, 3), [0, 0]);
    let kind = table.options().memtable_kind.to_string();
    assert_eq!(texts(&batches, 4), [kind.clone(), kind]);
    assert_eq!(texts(&batches, 5), ["true", "true"]);
    assert_eq!(texts(&batches, 6)[1], "true");
    // After a flush the rows are in one SST file.
    rows(&ctx, "SELECT * FROM strata_flush('users')").await;
    let batches = rows(
        &ctx,
        "SELECT sst_files, sst_bytes > 0, memtable_bytes FROM strata_tables() \
         WHERE table_name = 'users'",
    )
    .await;
    assert_eq!(u64s(&batches, 0), [1]);
    assert_eq!(texts(&batches, 1), ["true"]);

    let batches = rows(&ctx, "SELECT * FROM strata_columns('users')").await;
    assert_eq!(texts(&batches, 0), ["id", "name"]);
    assert_eq!(texts(&batches, 1), ["Int64", "Utf8"]);
    assert_eq!(texts(&batches, 2), ["false", "true"]);
    assert_eq!(texts(&batches, 3), ["true", "false"]);
    assert_eq!(texts(&batches, 4), ["1", "NULL"]);

    let batches = rows(&ctx, "SELECT * FROM strata_table_properties('users')").await;
    let names = texts(&batches, 0);
    let values = texts(&batches, 1);
    let value = |name: &str| {
        let at = names.iter().position(|n| n == name).expect(name);
        values[at].clone()
    };
    assert_eq!(value("primary_key"), "id");
    assert_eq!(value("rows_estimate"), "3");
    assert_eq!(value("sst_rows"), "3");
    let options = table.options();
    assert_eq!(
        value("memtable_size_bytes"),
        options.memtable_size_bytes.to_string()
    );
    assert_eq!(
        value("target_file_size_bytes"),
        options.compaction.target_file_size_bytes.to_string()
    );
    assert_eq!(value("compaction"), options.compaction.strategy.to_string());
    let batches = rows(
        &ctx,
        "SELECT value FROM strata_table_properties('log') LIMIT 1",
    )
    .await;
    assert_eq!(texts(&batches, 0), ["(none: hidden row id)"]);

    let e = error(&ctx, "SELECT * FROM strata_columns('nope')").await;
    assert!(
        e.contains("strata_columns: table 'nope' does not exist"),
        "{e}"
    );
    let e = error(&ctx, "SELECT * FROM strata_table_properties()").await;
    assert!(
        e.contains("strata_table_properties takes 1 argument, got 0"),
        "{e}"
    );
    let e = error(&ctx, "SELECT * FROM strata_tables('users')").await;
    assert!(e.contains("strata_tables takes no arguments"), "{e}");
    drop(table);
    drop(db);
    let e = error(&ctx, "SELECT * FROM strata_tables()").await;
    assert!(e.contains("the database is closed"), "{e}");
}
