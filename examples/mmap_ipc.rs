//! Zero-copy reading of a memory-mapped Arrow IPC file (Feather v2).
//!
//! The example writes an Arrow IPC file with `FileWriter`, maps it into memory with
//! `memmap2`, wraps the mapping in an Arrow `Buffer` without copying it
//! (`bytes::Bytes::from_owner` then `Buffer::from`), and decodes the record batches with
//! `arrow_ipc`'s `FileDecoder`, which slices the arrays' buffers out of that one buffer.
//! It then proves the point: every data, offset and validity buffer of every decoded column
//! lies inside the mapped address range, and `with_require_alignment(true)` makes the decoder
//! fail rather than silently copy a misaligned buffer. The mapping stays alive as long as any
//! array still uses it.
//!
//! Run: `cargo run --example mmap_ipc [ROWS]` (default 100,000).

use std::error::Error;
use std::fs::File;
use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::root_as_footer;
use arrow::ipc::writer::FileWriter;

/// Rows per record batch in the file.
const BATCH_ROWS: usize = 16_384;

fn main() -> Result<(), Box<dyn Error>> {
    let rows: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("ROWS must be a number, got '{arg}'"))?,
        None => 100_000,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("readings.arrow");

    // Write the file: id, sensor name (nullable), value.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("sensor", DataType::Utf8, true),
        Field::new("value", DataType::Float64, false),
    ]));
    let mut writer = FileWriter::try_new(File::create(&path)?, &schema)?;
    let mut expected_sum = 0i64;
    for start in (0..rows).step_by(BATCH_ROWS) {
        let end = (start + BATCH_ROWS).min(rows);
        let ids: Vec<i64> = (start as i64..end as i64).collect();
        expected_sum += ids.iter().sum::<i64>();
        let sensors: Vec<Option<String>> = (start..end)
            .map(|i| (i % 10 != 0).then(|| format!("sensor-{}", i % 7)))
            .collect();
        let values: Vec<f64> = (start..end).map(|i| (i % 1000) as f64 * 0.5).collect();
        writer.write(&RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(sensors)),
                Arc::new(Float64Array::from(values)),
            ],
        )?)?;
    }
    writer.finish()?;
    let file_len = std::fs::metadata(&path)?.len();
    println!("wrote {} ({file_len} bytes, {rows} rows)", path.display());

    // Map the file and wrap the mapping as one Arrow buffer: no bytes are copied.
    let file = File::open(&path)?;
    // SAFETY: the file was written above and nothing modifies or truncates it while mapped.
    let mmap = unsafe { memmap2::Mmap::map(&file)? };
    let base = mmap.as_ptr() as usize;
    let mapped = mmap.len();
    let buffer = Buffer::from(bytes::Bytes::from_owner(mmap));
    if buffer.as_ptr() as usize != base {
        return Err("the Arrow buffer does not start at the mapping".into());
    }

    // The footer at the end of the file lists the record batch blocks.
    if buffer.len() < 10 {
        return Err("file too short to be an Arrow IPC file".into());
    }
    let trailer_start = buffer.len() - 10;
    let footer_len = read_footer_length(buffer[trailer_start..].try_into()?)?;
    let footer = root_as_footer(&buffer[trailer_start - footer_len..trailer_start])
        .map_err(|e| format!("bad IPC footer: {e}"))?;
    let file_schema = fb_to_schema(footer.schema().ok_or("IPC footer has no schema")?);
    let mut decoder =
        FileDecoder::new(Arc::new(file_schema), footer.version()).with_require_alignment(true);
    for block in footer.dictionaries().iter().flatten() {
        let len = block.bodyLength() as usize + block.metaDataLength() as usize;
        decoder.read_dictionary(
            block,
            &buffer.slice_with_length(block.offset() as usize, len),
        )?;
    }

    let blocks = footer
        .recordBatches()
        .ok_or("IPC footer lists no batches")?;
    let (mut total_rows, mut buffers, mut inside, mut id_sum) = (0usize, 0usize, 0usize, 0i64);
    for (i, block) in blocks.iter().enumerate() {
        let len = block.bodyLength() as usize + block.metaDataLength() as usize;
        let data = buffer.slice_with_length(block.offset() as usize, len);
        let batch = decoder
            .read_record_batch(block, &data)?
            .ok_or("empty record batch block")?;
        let (mut batch_buffers, mut batch_inside) = (0, 0);
        for column in batch.columns() {
            let array_data = column.to_data();
            let nulls = array_data.nulls().map(|n| n.buffer().clone());
            for b in array_data.buffers().iter().chain(nulls.iter()) {
                batch_buffers += 1;
                let start = b.as_ptr() as usize;
                if start >= base && start + b.len() <= base + mapped {
                    batch_inside += 1;
                }
            }
        }
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("id is not Int64")?;
        id_sum += arrow::compute::sum(ids).unwrap_or(0);
        if i < 3 {
            println!(
                "batch {i}: {} rows, {batch_buffers} buffers, {batch_inside} inside the mapping, {} null sensors",
                batch.num_rows(),
                batch.column(1).null_count()
            );
        }
        total_rows += batch.num_rows();
        buffers += batch_buffers;
        inside += batch_inside;
    }
    println!(
        "decoded {} batches, {total_rows} rows: {inside} of {buffers} column buffers point into the {mapped}-byte mapping at {base:#x} (zero-copy)",
        blocks.len()
    );
    if inside != buffers || total_rows != rows || id_sum != expected_sum {
        return Err(format!(
            "expected {rows} rows with id sum {expected_sum} and every buffer mapped, got {total_rows} rows, sum {id_sum}, {inside}/{buffers} mapped"
        )
        .into());
    }
    println!("sum(id) = {id_sum}, as written");
    Ok(())
}
