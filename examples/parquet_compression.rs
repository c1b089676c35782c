//! Parquet compression compared: file size, write time and read time per codec, on the same
//! generated table, with every file read back and checked against the input.
//!
//! Codecs: uncompressed, Snappy (Strata's SST default), LZ4 (raw), Zstandard at levels 1, 3
//! and 9, gzip (level 6) and Brotli (level 4). All are compiled into this workspace's
//! `parquet` build. Timings come from one debug-or-release run on this machine, so compare
//! them with each other, not with published numbers; run with `--release` for real speeds.
//!
//! Run: `cargo run --example parquet_compression [ROWS]` (default 50,000).

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// A sensor-readings table: increasing timestamps, a few hundred device names, a status
/// text with few distinct values, and noisy measurements — compressible but not trivially.
fn generate(rows: usize) -> Result<RecordBatch, Box<dyn Error>> {
    let mut state: u64 = 42;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let start_ms = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut ts = Vec::with_capacity(rows);
    let mut device = Vec::with_capacity(rows);
    let mut status = Vec::with_capacity(rows);
    let mut reading = Vec::with_capacity(rows);
    let mut counter = Vec::with_capacity(rows);
    for i in 0..rows {
        ts.push(start_ms + i as i64 * 250 + (next() % 100) as i64);
        device.push(format!("device-{:04}", next() % 300));
        status.push(["ok", "ok", "ok", "warn", "error"][(next() % 5) as usize]);
        reading.push(20.0 + (next() % 10_000) as f64 / 1000.0);
        counter.push(i as i64 * 3 + (next() % 3) as i64);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("device", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("reading", DataType::Float64, false),
        Field::new("counter", DataType::Int64, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMillisecondArray::from(ts)),
            Arc::new(StringArray::from(device)),
            Arc::new(StringArray::from(status)),
            Arc::new(Float64Array::from(reading)),
            Arc::new(Int64Array::from(counter)),
        ],
    )?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let rows: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("ROWS must be a number, got '{arg}'"))?,
        None => 50_000,
    };
    let batch = generate(rows)?;
    let codecs: Vec<(&str, Compression)> = vec![
        ("uncompressed", Compression::UNCOMPRESSED),
        ("snappy", Compression::SNAPPY),
        ("lz4_raw", Compression::LZ4_RAW),
        ("zstd(1)", Compression::ZSTD(ZstdLevel::try_new(1)?)),
        ("zstd(3)", Compression::ZSTD(ZstdLevel::try_new(3)?)),
        ("zstd(9)", Compression::ZSTD(ZstdLevel::try_new(9)?)),
        ("gzip(6)", Compression::GZIP(GzipLevel::try_new(6)?)),
        ("brotli(4)", Compression::BROTLI(BrotliLevel::try_new(4)?)),
    ];
    println!(
        "{rows} rows, {} columns, {} bytes in memory",
        batch.num_columns(),
        batch.get_array_memory_size()
    );
    println!(
        "{:<14} {:>12} {:>8} {:>10} {:>10}",
        "codec", "bytes", "ratio", "write ms", "read ms"
    );
    let mut baseline = None;
    for (name, codec) in codecs {
        let props = WriterProperties::builder().set_compression(codec).build();
        let started = Instant::now();
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(props))?;
        writer.write(&batch)?;
        writer.close()?;
        let write_ms = started.elapsed().as_secs_f64() * 1000.0;
        let size = file.len();

        let started = Instant::now();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file))?.build()?;
        let read: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
        let read_ms = started.elapsed().as_secs_f64() * 1000.0;
        let back = arrow::compute::concat_batches(&batch.schema(), &read)?;
        if back != batch {
            return Err(format!("{name}: the file read back differs from the input").into());
        }
        let base = *baseline.get_or_insert(size);
        println!(
            "{name:<14} {size:>12} {:>7.2}x {write_ms:>10.1} {read_ms:>10.1}",
            base as f64 / size as f64
        );
    }
    println!("every file read back identical to the input");
    Ok(())
}
