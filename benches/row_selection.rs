//! What hiding scattered rows costs the Parquet reader: the price a base file pays for its
//! deletion vector (or the overlay rows resolved into it) when DataFusion reads it.
//!
//! Writes one Parquet file of `STRATA_BENCH_ROWS` rows (default 2,500,000: one level-0 file of
//! case (b) of the `sql` benchmark) with the `events` columns `user_id` (Int64, 100,000
//! values), `kind` (Utf8, 20 values) and `amount` (Float64, 100,000 values), snappy, then
//! reads each column with the parquet crate's reader four ways: every row; a row selection
//! skipping `STRATA_BENCH_DELETED_PERMILLE` (default 10: 1 %) of the rows, scattered, as
//! selectors; the same selection as a boolean mask (the reader's two strategies; its default
//! picks selectors unless runs average under 32 rows); and every row decoded, each batch then
//! filtered by Arrow's filter kernel (how Strata's scans hide deleted rows). Prints a markdown
//! table of the median of 5 reads each.
//!
//! ```text
//! cargo bench --bench row_selection
//! ```

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    BooleanArray, BooleanBufferBuilder, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ParquetRecordBatchReaderBuilder, RowSelection, RowSelectionPolicy, RowSelector,
};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use strata_datafusion::functions::events::splitmix64;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn env_usize(name: &str, default: usize) -> BoxResult<usize> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse().map_err(|_| format!("{name}: not a number"))?),
        Err(_) => Ok(default),
    }
}

fn write_file(path: &std::path::Path, rows: usize) -> BoxResult<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path)?, schema.clone(), Some(props))?;
    for start in (0..rows).step_by(8192) {
        let ids: Vec<u64> = (start..rows.min(start + 8192)).map(|i| i as u64).collect();
        let users: Vec<i64> = ids
            .iter()
            .map(|i| (splitmix64(*i) % 100_000) as i64)
            .collect();
        let kinds: Vec<String> = ids
            .iter()
            .map(|i| format!("k{}", splitmix64(i ^ 7) % 20))
            .collect();
        let amounts: Vec<f64> = ids
            .iter()
            .map(|i| (splitmix64(i ^ 9) % 100_000) as f64 / 100.0)
            .collect();
        writer.write(&RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(users)),
                Arc::new(StringArray::from(kinds)),
                Arc::new(Float64Array::from(amounts)),
            ],
        )?)?;
    }
    writer.close()?;
    Ok(())
}

/// How a read hides the skipped rows.
#[derive(Clone, Copy)]
enum Way<'a> {
    /// It does not: every row is read.
    All,
    /// The reader skips them, with this selection and strategy.
    Skip(&'a RowSelection, RowSelectionPolicy),
    /// Every row is decoded, then each batch filtered by Arrow's filter kernel with a mask
    /// built from these sorted positions: what hiding the rows after decoding costs.
    FilterAfter(&'a [u64]),
}

/// Rows kept and the median milliseconds of 5 reads of `column`, hiding rows `way`.
fn read(path: &std::path::Path, column: usize, way: Way<'_>) -> BoxResult<(usize, f64)> {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..6 {
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
        let mut builder = builder.with_projection(mask).with_batch_size(8192);
        if let Way::Skip(selection, policy) = way {
            builder = builder
                .with_row_selection(selection.clone())
                .with_row_selection_policy(policy);
        }
        let started = Instant::now();
        rows = 0;
        // The file position of the batch's first row, and the next deleted position.
        let (mut at, mut next) = (0u64, 0usize);
        for batch in builder.build()? {
            let batch = batch?;
            let Way::FilterAfter(deleted) = way else {
                rows += batch.num_rows();
                continue;
            };
            let end = at + batch.num_rows() as u64;
            let mut keep = BooleanBufferBuilder::new(batch.num_rows());
            let mut from = at;
            while next < deleted.len() && deleted[next] < end {
                keep.append_n((deleted[next] - from) as usize, true);
                keep.append(false);
                from = deleted[next] + 1;
                next += 1;
            }
            keep.append_n((end - from) as usize, true);
            let kept = filter_record_batch(&batch, &BooleanArray::new(keep.finish(), None))?;
            rows += kept.num_rows();
            at = end;
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    // The first read warms the page cache.
    let mut times = times.split_off(1);
    times.sort_by(f64::total_cmp);
    Ok((rows, times[times.len() / 2]))
}

fn main() -> BoxResult<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let rows = env_usize("STRATA_BENCH_ROWS", 2_500_000)?;
    let permille = env_usize("STRATA_BENCH_DELETED_PERMILLE", 10)? as u64;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.parquet");
    write_file(&path, rows)?;
    let mut selectors = Vec::new();
    let mut deleted = Vec::new();
    let mut run = 0usize;
    for i in 0..rows as u64 {
        if splitmix64(i ^ 0xABCDEF) % 1000 < permille {
            deleted.push(i);
            if run > 0 {
                selectors.push(RowSelector::select(run));
                run = 0;
            }
            selectors.push(RowSelector::skip(1));
        } else {
            run += 1;
        }
    }
    if run > 0 {
        selectors.push(RowSelector::select(run));
    }
    let selection = RowSelection::from(selectors);
    println!(
        "## Reading a column of {rows} rows with {permille} per mille of them skipped, scattered\n"
    );
    println!("Median ms of 5 reads (after one warm-up), one column each.\n");
    println!(
        "| column | all rows | selectors | mask | filter after | selectors / all | mask / all | filter after / all |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (column, name) in [
        "user_id (Int64)",
        "kind (Utf8, dictionary)",
        "amount (Float64)",
    ]
    .iter()
    .enumerate()
    {
        let (all_rows, all) = read(&path, column, Way::All)?;
        let skip = |policy| Way::Skip(&selection, policy);
        let (kept, selectors) = read(&path, column, skip(RowSelectionPolicy::Selectors))?;
        let (masked, mask) = read(&path, column, skip(RowSelectionPolicy::Mask))?;
        let (filtered, after) = read(&path, column, Way::FilterAfter(&deleted))?;
        assert_eq!(all_rows, rows);
        assert_eq!(kept, masked);
        assert_eq!(kept, filtered);
        assert!(kept < rows || permille == 0);
        println!(
            "| {name} | {all:.2} | {selectors:.2} | {mask:.2} | {after:.2} | {:.2} | {:.2} | {:.2} |",
            selectors / all,
            mask / all,
            after / all
        );
    }
    Ok(())
}
