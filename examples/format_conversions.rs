//! Format conversions through SQL: one table of generated events carried through CSV ->
//! NDJSON -> Parquet -> Arrow IPC file (Feather v2) -> Arrow IPC stream -> ORC -> a Strata
//! table, each hop reading the file the previous hop wrote.
//!
//! DataFusion writes CSV, JSON, Parquet and the Arrow IPC file format with
//! `COPY (query) TO 'file' STORED AS ...` and reads all of them (the IPC stream format too)
//! with `CREATE EXTERNAL TABLE`. The IPC stream is written with Arrow's `StreamWriter` and the
//! ORC file with `orc-rust`'s `ArrowWriter` (DataFusion writes neither); Strata reads ORC
//! with `read_orc`. After every hop the example checks that the rows read back are exactly
//! the source rows (`EXCEPT ALL` both ways is empty) and prints the file size.
//!
//! Run: `cargo run --example format_conversions [ROWS]` (default 5,000).

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;
use strata::{Options, StrataSession};

/// Runs `sql` and collects its result.
async fn run(session: &StrataSession, sql: &str) -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    Ok(session.sql(sql).await?.collect().await?)
}

/// The single BIGINT value of a one-row query.
async fn scalar(session: &StrataSession, sql: &str) -> Result<i64, Box<dyn Error>> {
    let batches = run(session, sql).await?;
    let batch = batches.first().ok_or("the query returned no batch")?;
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0))
}

/// Columns compared at every hop (timestamps as text: formats differ in their unit).
const COLUMNS: &str = "id, user_id, kind, amount, CAST(ts AS VARCHAR)";

/// Checks that `table` holds exactly the rows of `source`, and prints one line for the hop.
async fn check(
    session: &StrataSession,
    hop: &str,
    table: &str,
    file: &Path,
) -> Result<(), Box<dyn Error>> {
    let rows = scalar(session, &format!("SELECT count(*) FROM {table}")).await?;
    let differ = scalar(
        session,
        &format!(
            "SELECT count(*) FROM ( \
               (SELECT {COLUMNS} FROM source EXCEPT ALL SELECT {COLUMNS} FROM {table}) \
               UNION ALL \
               (SELECT {COLUMNS} FROM {table} EXCEPT ALL SELECT {COLUMNS} FROM source))"
        ),
    )
    .await?;
    let bytes = size(file)?;
    println!(
        "{hop:<28} {:<22} {bytes:>9} bytes  {rows} rows, {differ} differ",
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    if differ != 0 {
        return Err(format!("{hop}: {differ} rows differ from the source").into());
    }
    Ok(())
}

/// Bytes of a file, or of every file under a directory.
fn size(path: &Path) -> std::io::Result<u64> {
    let metadata = std::fs::metadata(path)?;
    if metadata.is_file() {
        return Ok(metadata.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += size(&entry?.path())?;
    }
    Ok(total)
}

/// `batch` with every `Utf8View` column cast to `Utf8` (the ORC writer takes no views).
fn without_views(batch: &RecordBatch) -> Result<RecordBatch, Box<dyn Error>> {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type() == &DataType::Utf8View {
            fields.push(Field::new(
                field.name(),
                DataType::Utf8,
                field.is_nullable(),
            ));
            columns.push(cast(column, &DataType::Utf8)?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let rows: i64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("ROWS must be a positive number, got '{arg}'"))?,
        None => 5_000,
    };
    let dir = tempfile::tempdir()?;
    let out = |name: &str| dir.path().join(name);
    let session = StrataSession::open_with(
        dir.path().join("db"),
        Options::default(),
        Default::default(),
    )?;
    run(
        &session,
        &format!("CREATE VIEW source AS SELECT * FROM generate_events({rows})"),
    )
    .await?;
    println!(
        "source: generate_events({rows})\n{}",
        pretty_format_batches(&run(&session, "SELECT * FROM source LIMIT 3").await?)?
    );

    // CSV: written with a header, read back with the schema inferred from the file.
    let csv = out("events.csv");
    run(
        &session,
        &format!(
            "COPY (SELECT * FROM source) TO '{}' STORED AS CSV OPTIONS ('format.has_header' 'true')",
            csv.display()
        ),
    )
    .await?;
    run(
        &session,
        &format!(
            "CREATE EXTERNAL TABLE from_csv STORED AS CSV LOCATION '{}' \
             OPTIONS ('format.has_header' 'true')",
            csv.display()
        ),
    )
    .await?;
    check(&session, "query -> CSV", "from_csv", &csv).await?;

    // CSV -> NDJSON (DataFusion's JSON is newline-delimited). JSON has no timestamp type,
    // so the table declares its schema instead of inferring `ts` as text.
    let json = out("events.ndjson");
    run(
        &session,
        &format!(
            "COPY (SELECT * FROM from_csv) TO '{}' STORED AS JSON",
            json.display()
        ),
    )
    .await?;
    run(
        &session,
        &format!(
            "CREATE EXTERNAL TABLE from_json (id BIGINT NOT NULL, user_id INT NOT NULL, \
             kind VARCHAR NOT NULL, amount DOUBLE NOT NULL, ts TIMESTAMP(6) NOT NULL) \
             STORED AS JSON LOCATION '{}'",
            json.display()
        ),
    )
    .await?;
    check(&session, "CSV -> NDJSON", "from_json", &json).await?;

    // NDJSON -> Parquet (zstd).
    let parquet = out("events.parquet");
    run(
        &session,
        &format!(
            "COPY (SELECT * FROM from_json) TO '{}' STORED AS PARQUET \
             OPTIONS ('format.compression' 'zstd(3)')",
            parquet.display()
        ),
    )
    .await?;
    run(
        &session,
        &format!(
            "CREATE EXTERNAL TABLE from_parquet STORED AS PARQUET LOCATION '{}'",
            parquet.display()
        ),
    )
    .await?;
    check(&session, "NDJSON -> Parquet", "from_parquet", &parquet).await?;

    // Parquet -> Arrow IPC file (Feather v2).
    let feather = out("events.arrow");
    run(
        &session,
        &format!(
            "COPY (SELECT * FROM from_parquet) TO '{}' STORED AS ARROW",
            feather.display()
        ),
    )
    .await?;
    run(
        &session,
        &format!(
            "CREATE EXTERNAL TABLE from_feather STORED AS ARROW LOCATION '{}'",
            feather.display()
        ),
    )
    .await?;
    check(
        &session,
        "Parquet -> Arrow IPC file",
        "from_feather",
        &feather,
    )
    .await?;

    // Arrow IPC file -> Arrow IPC stream, written with Arrow's StreamWriter from the batches
    // of a query; DataFusion detects the stream format when reading.
    let stream = out("events.arrows");
    let frame = session.sql("SELECT * FROM from_feather").await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    let mut writer = StreamWriter::try_new(std::fs::File::create(&stream)?, &schema)?;
    for batch in &batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    run(
        &session,
        &format!(
            "CREATE EXTERNAL TABLE from_stream STORED AS ARROW LOCATION '{}'",
            stream.display()
        ),
    )
    .await?;
    check(
        &session,
        "Arrow file -> Arrow stream",
        "from_stream",
        &stream,
    )
    .await?;

    // Arrow IPC stream -> ORC, written with orc-rust; read back with read_orc.
    let orc = out("events.orc");
    let batches = run(&session, "SELECT * FROM from_stream").await?;
    let first = without_views(batches.first().ok_or("no rows to write")?)?;
    let mut writer =
        orc_rust::ArrowWriterBuilder::new(std::fs::File::create(&orc)?, first.schema())
            .try_build()?;
    for batch in &batches {
        writer.write(&without_views(batch)?)?;
    }
    writer.close()?;
    run(
        &session,
        &format!(
            "CREATE VIEW from_orc AS SELECT * FROM read_orc('{}')",
            orc.display()
        ),
    )
    .await?;
    check(&session, "Arrow stream -> ORC", "from_orc", &orc).await?;

    // ORC -> a Strata table (an LSM table whose SSTs are Parquet files).
    run(
        &session,
        "CREATE TABLE events (id BIGINT NOT NULL, user_id INT NOT NULL, kind VARCHAR NOT NULL, \
         amount DOUBLE NOT NULL, ts TIMESTAMP(6) NOT NULL, PRIMARY KEY (id))",
    )
    .await?;
    run(
        &session,
        "INSERT INTO events SELECT id, user_id, kind, amount, ts FROM from_orc",
    )
    .await?;
    run(&session, "SELECT * FROM strata_flush('events')").await?;
    check(
        &session,
        "ORC -> Strata table",
        "events",
        &dir.path().join("db"),
    )
    .await?;
    session.close()?;
    println!("every format held the same {rows} rows");
    Ok(())
}
