//! ORC and Avro read through SQL: files written with `orc-rust` and `arrow-avro`, read back
//! with `CREATE EXTERNAL TABLE ... STORED AS ORC | AVRO` and `read_orc`, rows compared.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::assert_batches_eq;
use datafusion::prelude::SessionContext;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
    ]))
}

fn batch(first: i64) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![first, first + 1, first + 2])),
        Arc::new(StringArray::from(vec![Some("ada"), None, Some("grace")])),
        Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.25), None])),
        Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        Arc::new(Date32Array::from(vec![Some(19_723), Some(0), None])),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

fn write_orc(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = orc_rust::ArrowWriterBuilder::new(file, schema())
        .try_build()
        .unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
}

fn context() -> SessionContext {
    let ctx = SessionContext::new();
    strata_datafusion::formats::register(&ctx).unwrap();
    ctx
}

async fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

#[tokio::test]
async fn orc_external_table_reads_back_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.orc");
    write_orc(&file, &[batch(1)]);
    let ctx = context();
    query(
        &ctx,
        &format!(
            "CREATE EXTERNAL TABLE people STORED AS ORC LOCATION '{}'",
            file.display()
        ),
    )
    .await;
    let rows = query(
        &ctx,
        "SELECT id, name, score, ok, day FROM people ORDER BY id",
    )
    .await;
    assert_batches_eq!(
        [
            "+----+-------+-------+-------+------------+",
            "| id | name  | score | ok    | day        |",
            "+----+-------+-------+-------+------------+",
            "| 1  | ada   | 1.5   | true  | 2024-01-01 |",
            "| 2  |       | -2.25 |       | 1970-01-01 |",
            "| 3  | grace |       | false |            |",
            "+----+-------+-------+-------+------------+",
        ],
        &rows
    );
    // Types survive the round trip.
    let table = ctx.table("people").await.unwrap();
    let types: Vec<DataType> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(types[0], DataType::Int64);
    assert_eq!(types[2], DataType::Float64);
    assert_eq!(types[4], DataType::Date32);
}

#[tokio::test]
async fn orc_directory_and_read_orc() {
    let dir = tempfile::tempdir().unwrap();
    write_orc(&dir.path().join("a.orc"), &[batch(1)]);
    write_orc(&dir.path().join("b.orc"), &[batch(10), batch(20)]);
    let ctx = context();
    query(
        &ctx,
        &format!(
            "CREATE EXTERNAL TABLE many STORED AS ORC LOCATION '{}/'",
            dir.path().display()
        ),
    )
    .await;
    let rows = query(&ctx, "SELECT count(*) AS n, sum(id) AS s FROM many").await;
    assert_batches_eq!(
        [
            "+---+-----+",
            "| n | s   |",
            "+---+-----+",
            "| 9 | 102 |",
            "+---+-----+",
        ],
        &rows
    );
    // read_orc over a directory takes only its .orc files.
    std::fs::write(dir.path().join("notes.txt"), "not orc").unwrap();
    let rows = query(
        &ctx,
        &format!(
            "SELECT name FROM read_orc('{}') WHERE id = 21",
            dir.path().join("b.orc").display()
        ),
    )
    .await;
    assert_batches_eq!(
        ["+------+", "| name |", "+------+", "|      |", "+------+"],
        &rows
    );
    let rows = query(
        &ctx,
        &format!(
            "SELECT count(*) AS n FROM read_orc('{}')",
            dir.path().display()
        ),
    )
    .await;
    assert_batches_eq!(["+---+", "| n |", "+---+", "| 9 |", "+---+"], &rows);
}

#[tokio::test]
async fn orc_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.orc");
    std::fs::write(&bogus, b"this is not an orc file at all").unwrap();
    let ctx = context();
    let e = ctx
        .sql(&format!("SELECT * FROM read_orc('{}')", bogus.display()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a readable ORC file"), "{e}");
    let e = ctx
        .sql(&format!(
            "SELECT * FROM read_orc('{}')",
            dir.path().join("none").display()
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot open"), "{e}");
    let e = ctx
        .sql("SELECT * FROM read_orc(1, 2)")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("read_orc takes 1 argument"), "{e}");
}

#[tokio::test]
async fn avro_external_table_reads_back_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.avro");
    let avro_schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("n", DataType::Int32, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&avro_schema),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("ada"), None, Some("grace")])),
            Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.25), None])),
            Arc::new(Int32Array::from(vec![7, 8, 9])),
        ],
    )
    .unwrap();
    let mut writer = arrow_avro::writer::AvroWriter::new(
        std::fs::File::create(&file).unwrap(),
        avro_schema.as_ref().clone(),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();

    let ctx = context();
    query(
        &ctx,
        &format!(
            "CREATE EXTERNAL TABLE people STORED AS AVRO LOCATION '{}'",
            file.display()
        ),
    )
    .await;
    let rows = query(&ctx, "SELECT id, name, score, n FROM people ORDER BY id").await;
    assert_batches_eq!(
        [
            "+----+-------+-------+---+",
            "| id | name  | score | n |",
            "+----+-------+-------+---+",
            "| 1  | ada   | 1.5   | 7 |",
            "| 2  |       | -2.25 | 8 |",
            "| 3  | grace |       | 9 |",
            "+----+-------+-------+---+",
        ],
        &rows
    );
}
