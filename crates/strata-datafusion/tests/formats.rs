//! Format I/O through SQL, each a round trip (write, read back, compare rows):
//!
//! * ORC and Avro read: files written with `orc-rust` and `arrow-avro`, read back with
//!   `CREATE EXTERNAL TABLE ... STORED AS ORC | AVRO` and `read_orc`.
//! * A Strata table exported with `COPY t TO ... STORED AS CSV | JSON | PARQUET | ARROW` and a
//!   query exported with `COPY (query) TO ...`, read back with `CREATE EXTERNAL TABLE`.
//! * Parquet with every codec (the footer names the codec) and `PARTITIONED BY`.
//! * The Arrow IPC stream format (written with Arrow's `StreamWriter`).
//! * `INSERT INTO strata_table SELECT ... FROM csv_table` (upserts), and Strata SSTables read
//!   as plain Parquet tables (puts and tombstones).
//! * Bad inputs (a missing file, a corrupt Parquet file, malformed CSV): a clear error, and
//!   nothing written into the Strata table.

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

// ---------------------------------------------------------------------------------------
// Round trips through a Strata session.

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::error::Result as DfResult;
use strata_datafusion::StrataSession;

/// The columns every round trip compares, in order.
const SRC_COLUMNS: &str = "id, name, score, ok, day";

/// A session with the Strata table `src`: every column type of the round trips, NULLs, and a
/// text value that CSV must quote.
async fn session_with_src() -> StrataSession {
    let s = StrataSession::memory().unwrap();
    sql(
        &s,
        "CREATE TABLE src (id BIGINT PRIMARY KEY, name VARCHAR, score DOUBLE, ok BOOLEAN, day DATE)",
    )
    .await
    .unwrap();
    sql(
        &s,
        "INSERT INTO src VALUES (1, 'ada', 1.5, true, '2024-01-01'), \
         (2, NULL, -2.25, NULL, '1970-01-01'), (3, 'grace', NULL, false, NULL), \
         (4, 'a,b \"quoted\"', 0.125, true, '2000-02-29')",
    )
    .await
    .unwrap();
    s
}

async fn sql(s: &StrataSession, text: &str) -> DfResult<Vec<RecordBatch>> {
    s.sql(text).await?.collect().await
}

/// The rows of `SELECT {SRC_COLUMNS} FROM table ORDER BY id`, as a printed table.
async fn rows_of(s: &StrataSession, table: &str) -> String {
    let batches = sql(s, &format!("SELECT {SRC_COLUMNS} FROM {table} ORDER BY id"))
        .await
        .unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

/// The single integer of a one-row, one-column query (any integer type).
async fn int(s: &StrataSession, text: &str) -> i64 {
    let batches = sql(s, text).await.unwrap();
    let column = arrow::compute::cast(batches[0].column(0), &DataType::Int64).unwrap();
    column
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

/// Asserts that `table` holds the rows of `src`, NULLs included (a printed table cannot
/// tell a NULL from an empty string).
async fn assert_same_as_src(s: &StrataSession, table: &str) {
    let expected = rows_of(s, "src").await;
    assert_eq!(rows_of(s, table).await, expected, "{table}");
    for column in ["name", "score", "ok", "day"] {
        assert_eq!(
            int(
                s,
                &format!("SELECT count(*) FROM {table} WHERE {column} IS NULL")
            )
            .await,
            1,
            "{table}.{column}"
        );
    }
}

/// `STORED AS` name, file extension and the `OPTIONS` clause for each writable format.
const WRITABLE: [(&str, &str, &str); 4] = [
    ("CSV", "csv", "OPTIONS ('format.has_header' 'true')"),
    ("JSON", "json", ""),
    ("PARQUET", "parquet", ""),
    ("ARROW", "arrow", ""),
];

#[tokio::test]
async fn a_strata_table_exported_to_each_format_reads_back_the_same() {
    let s = session_with_src().await;
    let dir = tempfile::tempdir().unwrap();
    for (format, ext, options) in WRITABLE {
        let file = dir.path().join(format!("src.{ext}"));
        let written = int(
            &s,
            &format!(
                "COPY src TO '{}' STORED AS {format} {options}",
                file.display()
            ),
        )
        .await;
        assert_eq!(written, 4, "{format}");
        sql(
            &s,
            &format!(
                "CREATE EXTERNAL TABLE back_{ext} STORED AS {format} LOCATION '{}' {options}",
                file.display()
            ),
        )
        .await
        .unwrap();
        assert_same_as_src(&s, &format!("back_{ext}")).await;
        // And back into a new Strata table: the same rows again.
        sql(
            &s,
            &format!(
                "CREATE TABLE dst_{ext} (id BIGINT PRIMARY KEY, name VARCHAR, score DOUBLE, \
                 ok BOOLEAN, day DATE)"
            ),
        )
        .await
        .unwrap();
        let loaded = int(
            &s,
            &format!(
                "INSERT INTO dst_{ext} SELECT id, name, score, ok, CAST(day AS DATE) FROM back_{ext}"
            ),
        )
        .await;
        assert_eq!(loaded, 4, "{format}");
        s.db()
            .table(&format!("dst_{ext}"))
            .unwrap()
            .flush()
            .unwrap();
        assert_same_as_src(&s, &format!("dst_{ext}")).await;
    }
    // Each file really is in its format.
    let bytes = |ext: &str| std::fs::read(dir.path().join(format!("src.{ext}"))).unwrap();
    assert!(bytes("csv").starts_with(b"id,name,score,ok,day\n"));
    assert!(
        String::from_utf8(bytes("csv"))
            .unwrap()
            .contains("\"a,b \"\"quoted\"\"\"")
    );
    assert!(bytes("json").starts_with(b"{\"id\":1,"));
    assert_eq!(bytes("json").iter().filter(|b| **b == b'\n').count(), 4);
    assert!(bytes("parquet").starts_with(b"PAR1") && bytes("parquet").ends_with(b"PAR1"));
    assert!(
        bytes("arrow").starts_with(b"ARROW1"),
        "COPY writes the IPC file format"
    );
    assert!(bytes("arrow").ends_with(b"ARROW1"));
}

#[tokio::test]
async fn copy_of_a_query_to_each_format() {
    let s = session_with_src().await;
    let dir = tempfile::tempdir().unwrap();
    for (format, ext, options) in WRITABLE {
        let file = dir.path().join(format!("q.{ext}"));
        sql(
            &s,
            &format!(
                "COPY (SELECT id, upper(name) AS name, score * 2 AS twice FROM src WHERE ok) \
                 TO '{}' STORED AS {format} {options}",
                file.display()
            ),
        )
        .await
        .unwrap();
        sql(
            &s,
            &format!(
                "CREATE EXTERNAL TABLE q_{ext} STORED AS {format} LOCATION '{}' {options}",
                file.display()
            ),
        )
        .await
        .unwrap();
        let batches = sql(
            &s,
            &format!("SELECT id, name, twice FROM q_{ext} ORDER BY id"),
        )
        .await
        .unwrap();
        assert_batches_eq!(
            [
                "+----+--------------+-------+",
                "| id | name         | twice |",
                "+----+--------------+-------+",
                "| 1  | ADA          | 3.0   |",
                "| 4  | A,B \"QUOTED\" | 0.25  |",
                "+----+--------------+-------+",
            ],
            &batches
        );
    }
}

#[tokio::test]
async fn parquet_round_trips_with_every_codec() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let s = session_with_src().await;
    let dir = tempfile::tempdir().unwrap();
    let codecs = [
        ("uncompressed", "UNCOMPRESSED"),
        ("snappy", "SNAPPY"),
        ("zstd(3)", "ZSTD"),
        ("lz4_raw", "LZ4_RAW"),
        ("gzip(6)", "GZIP"),
        ("brotli(4)", "BROTLI"),
    ];
    for (i, (codec, name)) in codecs.iter().enumerate() {
        let file = dir.path().join(format!("c{i}.parquet"));
        sql(
            &s,
            &format!(
                "COPY src TO '{}' STORED AS PARQUET OPTIONS ('format.compression' '{codec}')",
                file.display()
            ),
        )
        .await
        .unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        let footer = reader.metadata();
        for column in footer.row_group(0).columns() {
            let used = format!("{:?}", column.compression());
            assert!(
                used.starts_with(name),
                "{codec}: column written with {used}"
            );
        }
        sql(
            &s,
            &format!(
                "CREATE EXTERNAL TABLE c{i} STORED AS PARQUET LOCATION '{}'",
                file.display()
            ),
        )
        .await
        .unwrap();
        assert_same_as_src(&s, &format!("c{i}")).await;
    }
    // An unknown codec is refused before anything is written.
    let file = dir.path().join("bad.parquet");
    let e = sql(
        &s,
        &format!(
            "COPY src TO '{}' STORED AS PARQUET OPTIONS ('format.compression' 'zip')",
            file.display()
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.to_lowercase().contains("zip"), "{e}");
    assert!(!file.exists());
}

#[tokio::test]
async fn parquet_partitioned_by_round_trips() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let s = session_with_src().await;
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    sql(
        &s,
        &format!(
            "COPY (SELECT *, CASE WHEN id % 2 = 0 THEN 'even' ELSE 'odd' END AS parity FROM src) \
             TO '{}/' STORED AS PARQUET PARTITIONED BY (parity)",
            parts.display()
        ),
    )
    .await
    .unwrap();
    // One hive-style directory per value; the files leave the partition column out.
    let mut dirs: Vec<String> = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["parity=even", "parity=odd"]);
    for part in &dirs {
        let files: Vec<_> = std::fs::read_dir(parts.join(part))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{part}");
        let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
        let footer = reader.metadata();
        let columns: Vec<String> = footer
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(columns, ["id", "name", "score", "ok", "day"], "{part}");
        assert_eq!(footer.file_metadata().num_rows(), 2, "{part}");
    }
    sql(
        &s,
        &format!(
            "CREATE EXTERNAL TABLE parts STORED AS PARQUET LOCATION '{}/' PARTITIONED BY (parity)",
            parts.display()
        ),
    )
    .await
    .unwrap();
    assert_same_as_src(&s, "parts").await;
    let batches = sql(
        &s,
        "SELECT CAST(parity AS VARCHAR) AS parity, count(*) AS n, sum(id) AS ids FROM parts \
         GROUP BY 1 ORDER BY 1",
    )
    .await
    .unwrap();
    assert_batches_eq!(
        [
            "+--------+---+-----+",
            "| parity | n | ids |",
            "+--------+---+-----+",
            "| even   | 2 | 6   |",
            "| odd    | 2 | 4   |",
            "+--------+---+-----+",
        ],
        &batches
    );
}

#[tokio::test]
async fn arrow_ipc_stream_files_are_read() {
    let s = session_with_src().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("src.arrows");
    let frame = s.sql("SELECT * FROM src ORDER BY id").await.unwrap();
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.unwrap();
    let mut writer =
        arrow::ipc::writer::StreamWriter::try_new(std::fs::File::create(&file).unwrap(), &schema)
            .unwrap();
    for b in &batches {
        writer.write(b).unwrap();
    }
    writer.finish().unwrap();
    assert!(!std::fs::read(&file).unwrap().starts_with(b"ARROW1"));
    sql(
        &s,
        &format!(
            "CREATE EXTERNAL TABLE stream STORED AS ARROW LOCATION '{}'",
            file.display()
        ),
    )
    .await
    .unwrap();
    assert_same_as_src(&s, "stream").await;
}

#[tokio::test]
async fn insert_into_a_strata_table_from_csv_upserts() {
    let s = StrataSession::memory().unwrap();
    sql(
        &s,
        "CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, score DOUBLE)",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.csv"),
        "id,name,score\n1,ada,1.5\n2,\"hopper, grace\",\n3,edsger,3.25\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.csv"),
        "id,name,score\n3,dijkstra,9\n4,barbara,4\n",
    )
    .unwrap();
    for name in ["a", "b"] {
        sql(
            &s,
            &format!(
                "CREATE EXTERNAL TABLE csv_{name} (id BIGINT, name VARCHAR, score DOUBLE) \
                 STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
                dir.path().join(format!("{name}.csv")).display()
            ),
        )
        .await
        .unwrap();
    }
    assert_eq!(int(&s, "INSERT INTO people SELECT * FROM csv_a").await, 3);
    assert_eq!(
        int(
            &s,
            "INSERT INTO people SELECT id, upper(name), score FROM csv_b WHERE id > 0"
        )
        .await,
        2
    );
    s.db().table("people").unwrap().flush().unwrap();
    let batches = sql(&s, "SELECT * FROM people ORDER BY id").await.unwrap();
    assert_batches_eq!(
        [
            "+----+---------------+-------+",
            "| id | name          | score |",
            "+----+---------------+-------+",
            "| 1  | ada           | 1.5   |",
            "| 2  | hopper, grace |       |",
            "| 3  | DIJKSTRA      | 9.0   |",
            "| 4  | BARBARA       | 4.0   |",
            "+----+---------------+-------+",
        ],
        &batches
    );
    assert_eq!(
        int(&s, "SELECT count(*) FROM people WHERE score IS NULL").await,
        1
    );
    // The external tables are not Strata tables.
    assert!(!s.db().has_table("csv_a"));
}

#[tokio::test]
async fn strata_sstables_read_as_parquet_tables() {
    let s = StrataSession::memory().unwrap();
    sql(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    sql(&s, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    sql(&s, "SELECT * FROM strata_flush('t')").await.unwrap();
    sql(&s, "DELETE FROM t WHERE id = 2").await.unwrap();
    sql(&s, "INSERT INTO t VALUES (3, 'z')").await.unwrap();
    sql(&s, "SELECT * FROM strata_flush('t')").await.unwrap();
    let batches = sql(&s, "SELECT path FROM strata_sstables('t') ORDER BY min_seq")
        .await
        .unwrap();
    let paths: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let col = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            col.iter()
                .map(|p| p.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    for (i, path) in paths.iter().enumerate() {
        sql(
            &s,
            &format!("CREATE EXTERNAL TABLE sst{i} STORED AS PARQUET LOCATION '{path}'"),
        )
        .await
        .unwrap();
    }
    // The older file holds the three puts; the newer one the tombstone and the new version.
    let batches = sql(&s, "SELECT id, v, _op FROM sst0 ORDER BY id")
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
    let batches = sql(&s, "SELECT id, v, _op FROM sst1 ORDER BY id")
        .await
        .unwrap();
    assert_batches_eq!(
        [
            "+----+---+-----+",
            "| id | v | _op |",
            "+----+---+-----+",
            "| 2  |   | 1   |",
            "| 3  | z | 0   |",
            "+----+---+-----+",
        ],
        &batches
    );
    // Each newer sequence number is above the older file's.
    assert!(
        int(&s, "SELECT min(_seq) FROM sst1").await > int(&s, "SELECT max(_seq) FROM sst0").await
    );
    // The table itself merges them.
    let batches = sql(&s, "SELECT id, v FROM t ORDER BY id").await.unwrap();
    assert_batches_eq!(
        [
            "+----+---+",
            "| id | v |",
            "+----+---+",
            "| 1  | a |",
            "| 3  | z |",
            "+----+---+",
        ],
        &batches
    );
}

/// A session with the Strata table `t` holding one row, for the bad-input tests.
async fn session_with_one_row() -> StrataSession {
    let s = StrataSession::memory().unwrap();
    sql(&s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
        .await
        .unwrap();
    sql(&s, "INSERT INTO t VALUES (100, 'kept')").await.unwrap();
    // Small batches: the bad input arrives after good batches were already read.
    sql(&s, "SET datafusion.execution.batch_size = 2")
        .await
        .unwrap();
    s
}

/// Asserts that `t` still holds exactly its one row.
async fn assert_untouched(s: &StrataSession) {
    let batches = sql(s, "SELECT id, v FROM t").await.unwrap();
    assert_batches_eq!(
        [
            "+-----+------+",
            "| id  | v    |",
            "+-----+------+",
            "| 100 | kept |",
            "+-----+------+"
        ],
        &batches
    );
}

#[tokio::test]
async fn missing_input_files_are_clear_errors() {
    let s = session_with_one_row().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.parquet");
    let e = sql(
        &s,
        &format!(
            "CREATE EXTERNAL TABLE m STORED AS PARQUET LOCATION '{}'",
            missing.display()
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("No files found") && e.contains("nope.parquet"),
        "{e}"
    );
    let missing_csv = dir.path().join("nope.csv");
    let e = sql(
        &s,
        &format!(
            "CREATE EXTERNAL TABLE m STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            missing_csv.display()
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("No files found") && e.contains("nope.csv"),
        "{e}"
    );
    // With a declared schema a missing location is an empty table (DataFusion's listing
    // semantics): the INSERT reads no rows and writes none.
    sql(
        &s,
        &format!(
            "CREATE EXTERNAL TABLE empty (id BIGINT, v VARCHAR) STORED AS CSV LOCATION '{}'",
            missing_csv.display()
        ),
    )
    .await
    .unwrap();
    assert_eq!(int(&s, "INSERT INTO t SELECT * FROM empty").await, 0);
    assert_untouched(&s).await;
}

#[tokio::test]
async fn a_corrupt_parquet_file_writes_nothing() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let s = session_with_one_row().await;
    let dir = tempfile::tempdir().unwrap();
    // A footer whose metadata is garbage: schema inference fails. (The footer claims 16
    // bytes of metadata; a footer claiming more bytes than the file holds makes parquet
    // 59.3.2's metadata decoder overflow, a panic in debug builds.)
    let garbage_footer = dir.path().join("footer.parquet");
    let mut bytes = b"PAR1".to_vec();
    bytes.extend_from_slice(&[0xff; 16]);
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(b"PAR1");
    std::fs::write(&garbage_footer, bytes).unwrap();
    let e = sql(
        &s,
        &format!(
            "CREATE EXTERNAL TABLE bad_footer STORED AS PARQUET LOCATION '{}'",
            garbage_footer.display()
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.to_lowercase().contains("parquet"), "{e}");

    // A valid footer over a corrupt last row group: the first row groups decode, then the
    // read fails, and the INSERT writes none of the rows it already read.
    let corrupt = dir.path().join("corrupt.parquet");
    sql(
        &s,
        &format!(
            "COPY (SELECT CAST(value AS BIGINT) AS id, 'v' || value AS v FROM generate_series(1, 200)) \
             TO '{}' STORED AS PARQUET OPTIONS ('format.compression' 'uncompressed', \
             'format.max_row_group_size' '50')",
            corrupt.display()
        ),
    )
    .await
    .unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&corrupt).unwrap()).unwrap();
    let footer = reader.metadata();
    assert_eq!(footer.num_row_groups(), 4);
    let (start, len) = footer.row_group(3).column(0).byte_range();
    let mut bytes = std::fs::read(&corrupt).unwrap();
    bytes[start as usize..(start + len) as usize].fill(0xab);
    std::fs::write(&corrupt, bytes).unwrap();
    sql(
        &s,
        &format!(
            "CREATE EXTERNAL TABLE bad STORED AS PARQUET LOCATION '{}'",
            corrupt.display()
        ),
    )
    .await
    .unwrap();
    let e = sql(&s, "INSERT INTO t SELECT * FROM bad")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("parquet"), "{e}");
    assert_untouched(&s).await;
}

#[tokio::test]
async fn malformed_csv_writes_nothing() {
    let s = session_with_one_row().await;
    let dir = tempfile::tempdir().unwrap();
    // Good rows first, then a value that is not a BIGINT.
    let not_a_number = dir.path().join("nan.csv");
    std::fs::write(&not_a_number, "id,v\n1,a\n2,b\n3,c\n4,d\nfive,e\n").unwrap();
    // Good rows first, then a row with too many fields.
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "id,v\n1,a\n2,b\n3,c\n4,d\n5,e,extra\n").unwrap();
    for (name, file, needle) in [
        ("nan", &not_a_number, "five"),
        ("ragged", &ragged, "fields"),
    ] {
        sql(
            &s,
            &format!(
                "CREATE EXTERNAL TABLE {name} (id BIGINT, v VARCHAR) STORED AS CSV \
                 LOCATION '{}' OPTIONS ('format.has_header' 'true')",
                file.display()
            ),
        )
        .await
        .unwrap();
        let e = sql(&s, &format!("INSERT INTO t SELECT * FROM {name}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{name}: {e}");
        assert_untouched(&s).await;
    }
}

#[tokio::test]
async fn read_only_formats_refuse_copy_and_write_no_file() {
    let s = session_with_src().await;
    let dir = tempfile::tempdir().unwrap();
    for format in ["ORC", "AVRO"] {
        let file = dir.path().join(format!("src.{}", format.to_lowercase()));
        let e = sql(
            &s,
            &format!("COPY src TO '{}' STORED AS {format}", file.display()),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("not implemented"), "{format}: {e}");
        assert!(!file.exists(), "{format}");
    }
}
