//! Writing one SST: rows in internal order in, a durable Parquet file and its [`SstMeta`]
//! out.
//!
//! The file streams through an `object_store` multipart upload in parts of at most
//! [`UPLOAD_PART_BYTES`] while it is written (the Parquet writer buffers at most one row group,
//! bounded by `max_row_group_bytes`), so writing a file of any size takes bounded memory. The
//! crc32c and size of the file are computed on the way out. The file appears under its final
//! name only when `finish` completes the upload, and is synced before `finish` returns; a writer
//! dropped before `finish` aborts the upload and leaves nothing behind. On an object store a
//! part is at least the store's minimum part size ([`SstStore::min_part_bytes`], 5 MiB on S3).

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt8Type, UInt64Type};
use bytes::Bytes;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::key_cache::{KeyCache, KeyCollector};
use super::page_crc::{self, PageChecksums};
use super::store::SstStore;
use super::{KeyIndex, SST_FORMAT_VERSION, SstMeta, base64_encode, keys, now_ms, sst_object_path};
use crate::codec::ByteRows;
use crate::codec::key::KEY_FORMAT_VERSION;
use crate::error::{Error, Result};
use crate::fault::IoOp;
use crate::options::{SstCompression, TableOptions};
use crate::schema::TableSchema;
use crate::types::{FileId, OpKind, SeqNo, TableId};

/// Most bytes buffered before they are sent as one part of the upload (a part is also at
/// most `sst_row_group_bytes_max`, and at least `UPLOAD_PART_BYTES_MIN`).
pub const UPLOAD_PART_BYTES: usize = 8 << 20;
/// Least bytes of an upload part.
pub const UPLOAD_PART_BYTES_MIN: usize = 256 << 10;

/// Where the bytes of an SST go: an `object_store` multipart upload, with the running checksum
/// and size.
struct UploadSink {
    store: SstStore,
    upload: Option<Box<dyn MultipartUpload>>,
    buffer: Vec<u8>,
    part_bytes: usize,
    crc: u32,
    len: u64,
    /// The checksum of every page, from the bytes as they pass.
    pages: PageChecksums,
}

impl UploadSink {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let part = PutPayload::from(Bytes::from(std::mem::take(&mut self.buffer)));
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the upload was already finished"))?;
        let sent = upload.put_part(part);
        self.store
            .block_on(sent)
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)
    }

    /// Completes the upload.
    fn complete(&mut self) -> object_store::Result<()> {
        let Some(mut upload) = self.upload.take() else {
            return Err(object_store::Error::Generic {
                store: "strata",
                source: "the upload was already finished".into(),
            });
        };
        let completed = self.store.block_on(async move { upload.complete().await });
        match completed {
            Ok(result) => result.map(|_| ()),
            Err(error) => Err(object_store::Error::Generic {
                store: "strata",
                source: Box::new(error),
            }),
        }
    }
}

impl Write for UploadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.pages.feed(data);
        self.len += data.len() as u64;
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= self.part_bytes {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for UploadSink {
    fn drop(&mut self) {
        // Unfinished: remove the staged upload.
        if let Some(mut upload) = self.upload.take() {
            let _ = self.store.block_on(async move { upload.abort().await });
        }
    }
}

/// True when Strata writes a Parquet bloom filter for a key column of this type: types whose
/// Parquet physical value is unambiguous, so a lookup can hash exactly what the writer hashed.
pub fn bloom_supported(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Date32
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// Builds one SST from batches of rows given in internal order (key ascending, then sequence
/// descending), continuing across batches.
pub struct SstWriter {
    table_id: TableId,
    file_id: FileId,
    run_id: u64,
    level: u32,
    store: SstStore,
    seq_column: usize,
    op_column: usize,
    /// The table's schema when some column is stored as another type (see `file_types`).
    convert: Option<TableSchema>,
    output: Output,
    block_rows: u64,
    rows: u64,
    tombstones: u64,
    older_versions: u64,
    min_key: Option<Vec<u8>>,
    last_key: Vec<u8>,
    last_seq: SeqNo,
    min_seq: SeqNo,
    max_seq: SeqNo,
    first_keys: Vec<Vec<u8>>,
    /// The file's keys as they are written, for the key cache ([`SstWriter::cache_keys_in`]).
    gathered_keys: Option<(Arc<KeyCache>, KeyCollector)>,
}

impl std::fmt::Debug for SstWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstWriter")
            .field("table_id", &self.table_id)
            .field("level", &self.level)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// How an SST's row groups and dictionaries are sized, by what the file is for. Both layouts
/// have the same pages (`sst_page_size_bytes`, `sst_value_page_size_bytes`), key index and
/// bloom filters, so point lookups and scans read either; they differ in what they favour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SstLayout {
    /// Flushes: short-lived level-0 files, where recent writes are looked up. Row groups of
    /// `sst_row_group_rows`, dictionaries of at most `sst_page_size_bytes` (a value column of
    /// many distinct values falls back to plain encoding at once, so a cold lookup never reads
    /// a large dictionary page).
    Lookup,
    /// Compactions and bulk loads: the files that hold the bulk of a table, which analytic
    /// scans read whole. Row groups of `sst_scan_row_group_rows` and value-column dictionaries
    /// of up to `sst_scan_dictionary_page_size_bytes`, as DataFusion's own Parquet writer
    /// makes them: a column of up to ~100k distinct values stays dictionary encoded (a few
    /// bits per row instead of 4-8 bytes). A point lookup decodes such a dictionary once per
    /// row group and open file (`SstReader` keeps it).
    Scan,
}

/// Rows a scan-layout writer gathers before it chooses the value columns that keep a
/// dictionary and the columns it compresses (see [`ColumnChoice`]); they are held as written
/// (slices of the caller's batches).
const DICTIONARY_SAMPLE_ROWS: usize = 8192;

/// Most PLAIN bytes of a column's sample the codec is run over to estimate what it saves.
const COMPRESSION_SAMPLE_BYTES: usize = 1 << 20;

/// Where the rows of an [`SstWriter`] go.
enum Output {
    /// The first rows of a scan-layout file, held until its column encodings are chosen.
    Sampling(Box<Sampling>),
    Writing(Box<ArrowWriter<UploadSink>>),
    /// After an error while opening the Parquet writer, and after `finish`.
    Failed,
}

struct Sampling {
    sink: UploadSink,
    choice: ColumnChoice,
    batches: Vec<RecordBatch>,
}

/// The encodings of a scan-layout file's columns that are decided from its first rows.
///
/// Dictionaries: the Parquet writer gives up a dictionary only once it outgrows its limit,
/// and a column of (nearly) unique values would then carry a full-size dictionary page of no
/// use in every row group, which every reader decodes: so a value column keeps its
/// dictionary only if the distinct values a row group is expected to hold fit in the limit,
/// save a quarter of the plain bytes and take no more bytes than the indices
/// ([`ExpectedDictionary::fits_and_pays`]). The
/// estimate takes the sample as uniform draws from `D` distinct values
/// (`d = D (1 - e^(-n/D))` for `d` distinct in `n` sampled values, solved for `D`), then a
/// row group of `r` rows holds `D (1 - e^(-r/D))` of them. A sample of all-distinct values
/// means "too many".
///
/// Compression: with a fast codec (Snappy, LZ4), a column is compressed only if the codec is
/// expected to save at least `min_saving` of its bytes ([`expected_saving`]); otherwise its
/// pages are stored as they are, and every reader copies them instead of decompressing them
/// (random numbers and dictionary indices barely compress, yet cost a decompression pass on
/// every read). The codec is recorded per column chunk, as Parquet allows, so any reader
/// reads the file.
struct ColumnChoice {
    properties: parquet::file::properties::WriterPropertiesBuilder,
    file_schema: arrow::datatypes::SchemaRef,
    /// The value columns (SST file column, Parquet column path) with a large dictionary limit.
    candidates: Vec<(usize, ColumnPath)>,
    /// Rows of a row group of this file (fewer for a small file).
    row_group_rows: u64,
    /// The large dictionary limit.
    dictionary_bytes: usize,
    /// The columns whose compression is chosen from the sample (none when every column is
    /// compressed): the key columns, `_seq` and the candidates.
    compressible: Vec<(usize, ColumnPath)>,
    /// Least fraction of a column's bytes compression must save
    /// (`TableOptions::sst_compression_min_saving`).
    min_saving: f64,
}

impl ColumnChoice {
    /// Whether the rows of a file must be sampled before it is written.
    fn needs_sample(&self) -> bool {
        !self.candidates.is_empty() || !self.compressible.is_empty()
    }

    /// The Parquet writer, with the dictionaries of the candidate columns `sample` shows to be
    /// too large turned off, and the columns it shows to compress too little stored
    /// uncompressed.
    fn open(
        self,
        sink: UploadSink,
        sample: &[RecordBatch],
    ) -> parquet::errors::Result<ArrowWriter<UploadSink>> {
        let mut properties = self.properties;
        let values = |index: usize| -> Vec<ArrayRef> {
            sample.iter().map(|b| Arc::clone(b.column(index))).collect()
        };
        let mut dictionaries = std::collections::HashMap::new();
        for (index, column) in &self.candidates {
            let expected = expected_dictionary(&values(*index), self.row_group_rows);
            match expected.filter(|d| d.fits_and_pays(self.dictionary_bytes)) {
                Some(kept) => {
                    dictionaries.insert(*index, kept);
                }
                None => {
                    properties = properties.set_column_dictionary_enabled(column.clone(), false);
                }
            }
        }
        for (index, column) in &self.compressible {
            let saving = expected_saving(&values(*index), dictionaries.get(index));
            if saving.is_some_and(|saving| saving < self.min_saving) {
                properties =
                    properties.set_column_compression(column.clone(), Compression::UNCOMPRESSED);
            }
        }
        ArrowWriter::try_new(sink, self.file_schema, Some(properties.build()))
    }
}

/// The fraction of a row group's bytes of a column that a fast LZ-family codec saves,
/// estimated from the column's first values `sample`: Snappy is run over their PLAIN bytes
/// (at most [`COMPRESSION_SAMPLE_BYTES`]; LZ4 saves about as much). For a column that keeps a
/// dictionary (`dictionary`), only its dictionary page is taken as compressible: the
/// bit-packed indices, a few bits a row, hold no repeats the RLE runs did not take. `None`
/// when the sample says nothing or the column's PLAIN bytes are not those of its Arrow
/// values (the codec is then kept).
fn expected_saving(sample: &[ArrayRef], dictionary: Option<&ExpectedDictionary>) -> Option<f64> {
    let plain = plain_sample_bytes(sample, COMPRESSION_SAMPLE_BYTES)?;
    if plain.is_empty() {
        return None;
    }
    let compressed = snap::raw::Encoder::new().compress_vec(&plain).ok()?;
    let ratio = (compressed.len() as f64 / plain.len() as f64).min(1.0);
    Some(match dictionary {
        None => 1.0 - ratio,
        Some(d) => {
            let dictionary_bytes = d.dictionary_bytes();
            let index_bytes = d.rows * d.index_bits() / 8.0;
            dictionary_bytes * (1.0 - ratio) / (dictionary_bytes + index_bytes)
        }
    })
}

/// The PLAIN encoding of the non-null values of `sample` (up to about `limit` bytes): the
/// little-endian values of 4- and 8-byte types, a 4-byte length and the bytes of each byte
/// array. `None` for other types (booleans, decimals, small integers, nested types), whose
/// PLAIN bytes differ from their Arrow values.
fn plain_sample_bytes(sample: &[ArrayRef], limit: usize) -> Option<Vec<u8>> {
    use arrow::array::Array;
    let mut out = Vec::new();
    for values in sample {
        let data_type = values.data_type();
        match plain_value_bytes(data_type)? {
            // Small integers are stored in 4 bytes, decimals big-endian: not their Arrow bytes.
            PlainValue::Fixed(width)
                if data_type.primitive_width() == Some(width)
                    && !matches!(data_type, DataType::Decimal128(_, _)) =>
            {
                let native = values.to_data();
                let bytes = &native.buffers()[0].as_slice()
                    [native.offset() * width..(native.offset() + native.len()) * width];
                for (row, value) in bytes.chunks_exact(width).enumerate() {
                    if values.is_valid(row) {
                        out.extend_from_slice(value);
                    }
                }
            }
            PlainValue::Fixed(_) => return None,
            PlainValue::Bytes => {
                for value in byte_array_values(values)?.into_iter().flatten() {
                    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    out.extend_from_slice(&value[..value.len().min(limit)]);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    Some(out)
}

/// The values of a byte-array column (`None` for a null), or `None` for other types.
fn byte_array_values(values: &ArrayRef) -> Option<Vec<Option<&[u8]>>> {
    Some(match values.data_type() {
        DataType::Utf8 => values
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::as_bytes))
            .collect(),
        DataType::LargeUtf8 => values
            .as_string::<i64>()
            .iter()
            .map(|v| v.map(str::as_bytes))
            .collect(),
        DataType::Utf8View => values
            .as_string_view()
            .iter()
            .map(|v| v.map(str::as_bytes))
            .collect(),
        DataType::Binary => values.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => values.as_binary::<i64>().iter().collect(),
        DataType::BinaryView => values.as_binary_view().iter().collect(),
        _ => return None,
    })
}

/// How a value of a column is stored in a PLAIN dictionary page.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PlainValue {
    /// Fixed-width values of this many bytes.
    Fixed(usize),
    /// Byte arrays: a 4-byte length, then the bytes.
    Bytes,
}

/// The PLAIN size of the values of a flat column of `data_type`; `None` for the types whose
/// dictionary is not sized here (booleans, nested and other types keep the small limit).
fn plain_value_bytes(data_type: &DataType) -> Option<PlainValue> {
    use DataType::*;
    Some(match data_type {
        Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 | Date32 | Float32 | Time32(_) => {
            PlainValue::Fixed(4)
        }
        Int64 | UInt64 | Float64 | Date64 | Timestamp(_, _) | Time64(_) | Duration(_) => {
            PlainValue::Fixed(8)
        }
        Decimal128(_, _) => PlainValue::Fixed(16),
        Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView => PlainValue::Bytes,
        _ => return None,
    })
}

/// The bytes of the value data of a byte-array column (without lengths or offsets).
fn byte_array_bytes(values: &ArrayRef) -> usize {
    use arrow::array::AsArray;
    fn span<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> usize {
        match (offsets.first(), offsets.last()) {
            (Some(first), Some(last)) => last.as_usize() - first.as_usize(),
            _ => 0,
        }
    }
    let view_bytes = |views: &[u128]| views.iter().map(|v| *v as u32 as usize).sum();
    match values.data_type() {
        DataType::Utf8 => span(values.as_string::<i32>().value_offsets()),
        DataType::LargeUtf8 => span(values.as_string::<i64>().value_offsets()),
        DataType::Binary => span(values.as_binary::<i32>().value_offsets()),
        DataType::LargeBinary => span(values.as_binary::<i64>().value_offsets()),
        DataType::Utf8View => view_bytes(values.as_string_view().views()),
        DataType::BinaryView => view_bytes(values.as_binary_view().views()),
        _ => 0,
    }
}

/// What dictionary encoding would make of a row group, as estimated from a sample.
#[derive(Debug, Clone, Copy)]
struct ExpectedDictionary {
    /// Rows of the row group.
    rows: f64,
    /// Distinct values expected in it.
    distinct: f64,
    /// PLAIN bytes of one value (on average).
    value_bytes: f64,
}

impl ExpectedDictionary {
    /// Bytes of the dictionary page (uncompressed).
    fn dictionary_bytes(&self) -> f64 {
        self.distinct * self.value_bytes
    }

    /// Bits of a row's dictionary index (bit-packed).
    fn index_bits(&self) -> f64 {
        self.distinct.max(2.0).log2().ceil()
    }

    /// The dictionary fits in `limit` bytes, it and the indices (`log2(distinct)` bits a row)
    /// take at most three quarters of the plain values (a dictionary that saves less is not
    /// worth a page every reader decodes), and it is no larger than the indices. A read decodes
    /// the whole dictionary page of every row group it touches, however few of the group's
    /// pages it selects: a dictionary larger than its indices makes a read that selects a few
    /// pages (a pruned range) decode more dictionary than it reads values, where plain pages
    /// would be read only where selected.
    fn fits_and_pays(&self, limit: usize) -> bool {
        let indices = self.rows * self.index_bits() / 8.0;
        let dictionary = self.dictionary_bytes();
        dictionary <= limit as f64
            && dictionary + indices <= 0.75 * self.rows * self.value_bytes
            && dictionary <= indices
    }
}

/// What dictionary encoding would make of a row group of `row_group_rows` rows of a column
/// whose first values are `sample` (see [`ColumnChoice`]); `None` when the sample says
/// nothing or the column is not sized here.
fn expected_dictionary(sample: &[ArrayRef], row_group_rows: u64) -> Option<ExpectedDictionary> {
    use std::hash::BuildHasher;
    let data_type = sample.first()?.data_type();
    let plain = plain_value_bytes(data_type)?;
    let converter =
        arrow::row::RowConverter::new(vec![arrow::row::SortField::new(data_type.clone())]).ok()?;
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen = std::collections::HashSet::new();
    let mut n = 0usize;
    let mut var_bytes = 0usize;
    for values in sample {
        let rows = converter
            .convert_columns(std::slice::from_ref(values))
            .ok()?;
        for row in rows.iter() {
            seen.insert(hasher.hash_one(row.as_ref()));
        }
        n += values.len();
        if plain == PlainValue::Bytes {
            var_bytes += byte_array_bytes(values);
        }
    }
    if n == 0 {
        return None;
    }
    let value_bytes = match plain {
        PlainValue::Fixed(width) => width as f64,
        PlainValue::Bytes => 4.0 + var_bytes as f64 / n as f64,
    };
    let rows = row_group_rows as f64;
    let distinct = occupied(population_distinct(n as f64, seen.len() as f64), rows);
    Some(ExpectedDictionary {
        rows,
        distinct,
        value_bytes,
    })
}

/// The distinct values among `draws` uniform draws from `distinct` equally likely values.
fn occupied(distinct: f64, draws: f64) -> f64 {
    if distinct.is_infinite() {
        return draws;
    }
    distinct * -(-draws / distinct).exp_m1()
}

/// The number of equally likely values `n` uniform draws with `d` distinct results came from
/// (the `D` of `occupied(D, n) = d`); infinite when every draw differed.
fn population_distinct(n: f64, d: f64) -> f64 {
    debug_assert!(d <= n);
    if d >= n {
        return f64::INFINITY;
    }
    // `occupied(D, n)` grows with D from d (at D = d, nearly) towards n.
    let (mut low, mut high) = (d, d * 2.0);
    while occupied(high, n) < d {
        high *= 2.0;
        if high > 1e18 {
            return f64::INFINITY;
        }
    }
    for _ in 0..100 {
        let middle = (low + high) / 2.0;
        if occupied(middle, n) < d {
            low = middle;
        } else {
            high = middle;
        }
    }
    high
}

impl SstWriter {
    /// A writer of SST `file_id` of `table_id`, for `level` and sorted run `run_id`, laid out
    /// for `layout`, with bloom filters sized for `expected_rows`. The upload starts at once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &SstStore,
        table_id: TableId,
        file_id: FileId,
        run_id: u64,
        schema: &TableSchema,
        options: &TableOptions,
        layout: SstLayout,
        level: u32,
        expected_rows: u64,
    ) -> Result<Self> {
        let block_rows = options.sst_index_block_rows as u64;
        let (row_group_rows, value_dictionary_bytes) = match layout {
            SstLayout::Lookup => (options.sst_row_group_rows, options.sst_page_size_bytes),
            SstLayout::Scan => (
                options.sst_scan_row_group_rows,
                options.sst_scan_dictionary_page_size_bytes,
            ),
        };
        let row_group_rows = (row_group_rows as u64).div_ceil(block_rows) * block_rows;
        let storage = schema.storage_schema();
        let mut sorting: Vec<SortingColumn> = schema
            .key_indices()
            .iter()
            .map(|i| SortingColumn {
                column_idx: schema.sst_leaf_column(*i) as i32,
                descending: false,
                nulls_first: false,
            })
            .collect();
        sorting.push(SortingColumn {
            column_idx: schema.sst_leaf_column(schema.seq_index()) as i32,
            descending: true,
            nulls_first: false,
        });
        let compression = match options.sst_compression {
            SstCompression::None => Compression::UNCOMPRESSED,
            SstCompression::Snappy => Compression::SNAPPY,
            SstCompression::Lz4 => Compression::LZ4_RAW,
            SstCompression::Zstd(level) => Compression::ZSTD(
                ZstdLevel::try_new(level).map_err(|e| Error::InvalidArgument(e.to_string()))?,
            ),
        };
        let mut builder = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group_rows as usize))
            .set_max_row_group_bytes(Some(options.sst_row_group_bytes_max))
            .set_data_page_size_limit(options.sst_page_size_bytes)
            .set_write_batch_size((block_rows as usize).min(1024))
            .set_compression(compression)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_sorting_columns(Some(sorting))
            .set_bloom_filter_position(BloomFilterPosition::End)
            // A point lookup decodes the dictionary page of every column it reads: keep them
            // small (but in value columns of the scan layout), so high-cardinality columns
            // fall back to plain encoding early.
            .set_dictionary_page_size_limit(options.sst_page_size_bytes)
            .set_created_by(format!("strata {}", env!("CARGO_PKG_VERSION")));
        // Keys and sequence numbers are (nearly) unique: a dictionary only costs.
        let seq_column = ColumnPath::from(storage.field(schema.seq_index()).name().as_str());
        builder = builder.set_column_dictionary_enabled(seq_column, false);
        for index in schema.key_indices() {
            let column = ColumnPath::from(storage.field(*index).name().as_str());
            builder = builder.set_column_dictionary_enabled(column, false);
        }
        // Value columns (a point lookup reads one page of each for its row) may have smaller
        // pages than the key columns (read a block at a time).
        let value_page_bytes = options
            .sst_value_page_size_bytes
            .min(options.sst_page_size_bytes);
        let mut dictionary_candidates = Vec::new();
        for index in schema.value_indices() {
            let column = ColumnPath::from(storage.field(*index).name().as_str());
            if value_page_bytes != options.sst_page_size_bytes {
                builder = builder.set_column_data_page_size_limit(column.clone(), value_page_bytes);
            }
            if value_dictionary_bytes > options.sst_page_size_bytes
                && plain_value_bytes(storage.field(*index).data_type()).is_some()
            {
                builder = builder
                    .set_column_dictionary_page_size_limit(column.clone(), value_dictionary_bytes);
                dictionary_candidates.push((*index, column));
            }
        }
        for index in schema.key_indices() {
            let field = storage.field(*index);
            if bloom_supported(field.data_type()) {
                let column = ColumnPath::from(field.name().as_str());
                builder = builder
                    .set_column_bloom_filter_enabled(column.clone(), true)
                    .set_column_bloom_filter_fpp(column.clone(), options.bloom_filter_fpp)
                    .set_column_bloom_filter_max_ndv(
                        column,
                        expected_rows.min(row_group_rows).max(1),
                    );
            }
        }
        let object_path = sst_object_path(table_id, file_id);
        store.check(IoOp::SstWrite, &object_path)?;
        let object_store = store.object_store();
        let location = object_store::path::Path::from(object_path.as_str());
        let upload = store
            .block_on(async move { object_store.put_multipart(&location).await })?
            .map_err(|e| Error::ObjectStore {
                path: object_path.clone(),
                message: e.to_string(),
            })?;
        let sink = UploadSink {
            store: store.clone(),
            upload: Some(upload),
            buffer: Vec::new(),
            part_bytes: options
                .sst_row_group_bytes_max
                .clamp(UPLOAD_PART_BYTES_MIN, UPLOAD_PART_BYTES)
                .max(store.min_part_bytes()),
            crc: 0,
            len: 0,
            pages: PageChecksums::default(),
        };
        // The scan layout stores a column that a fast codec would barely shrink uncompressed
        // (`ColumnChoice`); `zstd` is chosen for size and compresses every column.
        let fast_codec = matches!(
            options.sst_compression,
            SstCompression::Snappy | SstCompression::Lz4
        );
        let compressible = if layout == SstLayout::Scan
            && fast_codec
            && options.sst_compression_min_saving > 0.0
        {
            schema
                .key_indices()
                .iter()
                .copied()
                .chain([schema.seq_index()])
                .map(|index| {
                    (
                        index,
                        ColumnPath::from(storage.field(index).name().as_str()),
                    )
                })
                .chain(dictionary_candidates.iter().cloned())
                .collect()
        } else {
            Vec::new()
        };
        let choice = ColumnChoice {
            properties: builder,
            file_schema: Arc::clone(schema.sst_file_schema()),
            candidates: dictionary_candidates,
            row_group_rows: row_group_rows.min(expected_rows.max(1)),
            dictionary_bytes: value_dictionary_bytes,
            compressible,
            min_saving: options.sst_compression_min_saving,
        };
        let output = if !choice.needs_sample() {
            Output::Writing(Box::new(
                choice
                    .open(sink, &[])
                    .map_err(|e| parquet_error(&object_path, e))?,
            ))
        } else {
            Output::Sampling(Box::new(Sampling {
                sink,
                choice,
                batches: Vec::new(),
            }))
        };
        Ok(SstWriter {
            table_id,
            file_id,
            run_id,
            level,
            store: store.clone(),
            seq_column: schema.seq_index(),
            op_column: schema.op_index(),
            convert: (!schema.sst_file_types_are_user_types()).then(|| schema.clone()),
            output,
            block_rows,
            rows: 0,
            tombstones: 0,
            older_versions: 0,
            min_key: None,
            last_key: Vec::new(),
            last_seq: 0,
            min_seq: SeqNo::MAX,
            max_seq: 0,
            first_keys: Vec::new(),
            gathered_keys: None,
        })
    }

    /// Gathers the keys written (a file of about `expected_rows` rows) and puts them in `cache`
    /// when the file is finished, so no reader has to read them back from the file. Gives up
    /// without cost beyond what it gathered once they outgrow what the cache admits.
    pub fn cache_keys_in(&mut self, cache: &Arc<KeyCache>, expected_rows: u64) {
        debug_assert_eq!(self.rows, 0, "keys are gathered from the first row");
        let limit = cache.admission_limit();
        if limit > 0 {
            self.gathered_keys = Some((Arc::clone(cache), KeyCollector::new(limit, expected_rows)));
        }
    }

    /// Appends `batch` (all SST columns) whose encoded keys are `keys`. Rows must continue the
    /// internal order of everything written before.
    pub fn write(&mut self, batch: &RecordBatch, keys: &ByteRows) -> Result<()> {
        self.write_range(batch, keys, 0, batch.num_rows())
    }

    /// Appends rows `start..end` of `batch` (keys of all its rows in `keys`).
    pub fn write_range(
        &mut self,
        batch: &RecordBatch,
        keys: &ByteRows,
        start: usize,
        end: usize,
    ) -> Result<()> {
        debug_assert_eq!(batch.num_rows(), keys.len());
        debug_assert!(start <= end && end <= batch.num_rows());
        let seqs = batch.column(self.seq_column).as_primitive::<UInt64Type>();
        let ops = batch.column(self.op_column).as_primitive::<UInt8Type>();
        for row in start..end {
            let key = keys.get(row);
            let seq = seqs.value(row);
            if self.rows > 0 {
                let order = self.last_key.as_slice().cmp(key);
                let in_order = order.is_lt() || (order.is_eq() && seq < self.last_seq);
                if !in_order {
                    return Err(Error::internal(format!(
                        "SST rows out of order at row {}: ({:?}, {}) after ({:?}, {})",
                        self.rows, key, seq, self.last_key, self.last_seq
                    )));
                }
                if order.is_eq() {
                    self.older_versions += 1;
                }
            }
            if self.rows.is_multiple_of(self.block_rows) {
                self.first_keys.push(key.to_vec());
            }
            if self.min_key.is_none() {
                self.min_key = Some(key.to_vec());
            }
            if ops.value(row) == OpKind::Delete.as_u8() {
                self.tombstones += 1;
            }
            if let Some((_, collector)) = &mut self.gathered_keys {
                collector.push(key);
            }
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
            self.last_seq = seq;
            self.min_seq = self.min_seq.min(seq);
            self.max_seq = self.max_seq.max(seq);
            self.rows += 1;
        }
        let mut slice = if start == 0 && end == batch.num_rows() {
            batch.clone()
        } else {
            batch.slice(start, end - start)
        };
        if let Some(schema) = &self.convert {
            slice = schema.to_sst_file_batch(&slice)?;
        }
        if let Output::Sampling(sampling) = &mut self.output {
            sampling.batches.push(slice);
            let sampled: usize = sampling.batches.iter().map(RecordBatch::num_rows).sum();
            if sampled >= DICTIONARY_SAMPLE_ROWS {
                self.arrow_writer()?;
            }
            return Ok(());
        }
        let object_path = sst_object_path(self.table_id, self.file_id);
        self.arrow_writer()?
            .write(&slice)
            .map_err(|e| parquet_error(&object_path, e))
    }

    /// The Parquet writer, made first (and given the sampled rows) if the dictionaries were
    /// still being chosen.
    fn arrow_writer(&mut self) -> Result<&mut ArrowWriter<UploadSink>> {
        if matches!(self.output, Output::Sampling(_)) {
            let object_path = sst_object_path(self.table_id, self.file_id);
            let Output::Sampling(sampling) = std::mem::replace(&mut self.output, Output::Failed)
            else {
                unreachable!("matched above");
            };
            let Sampling {
                sink,
                choice,
                batches,
            } = *sampling;
            let mut writer = choice
                .open(sink, &batches)
                .map_err(|e| parquet_error(&object_path, e))?;
            for batch in &batches {
                writer
                    .write(batch)
                    .map_err(|e| parquet_error(&object_path, e))?;
            }
            self.output = Output::Writing(Box::new(writer));
        }
        match &mut self.output {
            Output::Writing(writer) => Ok(&mut **writer),
            _ => Err(Error::internal(
                "the SST writer failed earlier and cannot go on",
            )),
        }
    }

    /// The key of the last row written (empty before the first row).
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Approximate bytes of the file so far (flushed row groups plus buffered data).
    pub fn estimated_bytes(&self) -> u64 {
        match &self.output {
            Output::Writing(writer) => (writer.bytes_written() + writer.in_progress_size()) as u64,
            // The sampled rows' own bytes: they are slices of the caller's (larger) batches.
            Output::Sampling(sampling) => sampling
                .batches
                .iter()
                .flat_map(RecordBatch::columns)
                .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
                .sum(),
            Output::Failed => 0,
        }
    }

    /// Finishes the file: footer, upload completion, sync. Fails if no row was written.
    pub fn finish(mut self) -> Result<SstMeta> {
        let object_path = sst_object_path(self.table_id, self.file_id);
        let Some(min_key) = self.min_key.take() else {
            return Err(Error::internal("an SST needs at least one row"));
        };
        let created_at_ms = now_ms();
        let index = KeyIndex {
            block_rows: self.block_rows,
            first_keys: std::mem::take(&mut self.first_keys),
        };
        // The last row group, then everything buffered: the pages end here, and their
        // checksums are known before the footer is written.
        let local_path = self.store.local_path(&object_path);
        let writer = self.arrow_writer()?;
        writer.flush().map_err(|e| parquet_error(&object_path, e))?;
        writer.sync().map_err(|e| Error::io(local_path, e))?;
        let pages_end = writer.bytes_written() as u64;
        let page_crcs = writer
            .inner_mut()
            .pages
            .finish(pages_end)
            .map_err(|e| Error::internal(format!("{object_path}: {e}")))?;
        let metadata = [
            (keys::FORMAT_VERSION, SST_FORMAT_VERSION.to_string()),
            (keys::KEY_FORMAT_VERSION, KEY_FORMAT_VERSION.to_string()),
            (keys::TABLE_ID, self.table_id.to_string()),
            (keys::LEVEL, self.level.to_string()),
            (keys::MIN_KEY, base64_encode(&min_key)),
            (keys::MAX_KEY, base64_encode(&self.last_key)),
            (keys::MIN_SEQ, self.min_seq.to_string()),
            (keys::MAX_SEQ, self.max_seq.to_string()),
            (keys::ROWS, self.rows.to_string()),
            (keys::TOMBSTONES, self.tombstones.to_string()),
            (keys::OLDER_VERSIONS, self.older_versions.to_string()),
            (keys::CREATED_AT_MS, created_at_ms.to_string()),
            (keys::KEY_INDEX, base64_encode(&index.encode())),
            (
                keys::PAGE_CRC32C,
                base64_encode(&page_crc::encode(&page_crcs)),
            ),
        ];
        let Output::Writing(mut writer) = std::mem::replace(&mut self.output, Output::Failed)
        else {
            unreachable!("arrow_writer opened the writer");
        };
        for (key, value) in metadata {
            writer.append_key_value_metadata(KeyValue::new(key.to_string(), value));
        }
        let mut sink = writer
            .into_inner()
            .map_err(|e| parquet_error(&object_path, e))?;
        sink.send_buffer()
            .map_err(|e| Error::io(self.store.local_path(&object_path), e))?;
        sink.complete().map_err(|e| Error::ObjectStore {
            path: object_path.clone(),
            message: e.to_string(),
        })?;
        self.store.sync_file(&object_path)?;
        if let Some((cache, collector)) = self.gathered_keys.take()
            && let Some(keys) = collector.finish()
        {
            debug_assert_eq!(keys.len() as u64, self.rows);
            cache.insert(self.file_id, Arc::new(keys));
        }
        Ok(SstMeta {
            id: self.file_id,
            table_id: self.table_id,
            level: self.level,
            run_id: self.run_id,
            size_bytes: sink.len,
            crc32c: sink.crc,
            rows: self.rows,
            tombstones: self.tombstones,
            older_versions: self.older_versions,
            min_key,
            max_key: std::mem::take(&mut self.last_key),
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            created_at_ms,
        })
    }
}

pub(crate) fn parquet_error(file: &str, error: parquet::errors::ParquetError) -> Error {
    Error::Parquet {
        file: file.to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, StringArray};

    use super::*;

    /// A fixed sequence of pseudo-random 31-bit numbers.
    fn random_numbers() -> impl FnMut() -> u64 {
        let mut state = 0x1234_5678_u64;
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        }
    }

    #[test]
    fn population_distinct_inverts_occupied() {
        for distinct in [10.0, 2_000.0, 20_000.0, 100_000.0, 1e7] {
            let d = occupied(distinct, 8192.0);
            let back = population_distinct(8192.0, d);
            assert!(
                (back - distinct).abs() / distinct < 1e-6,
                "{distinct} came back as {back}"
            );
        }
        assert!(population_distinct(8192.0, 8192.0).is_infinite());
        assert_eq!(occupied(f64::INFINITY, 500.0), 500.0);
    }

    /// The dictionary of a row group is estimated from a sample near enough to choose by: a
    /// column of 100,000 equally likely doubles (DataFusion keeps its 800 KB dictionary in a
    /// 1M-row row group), one of 20 strings, one of unique strings.
    #[test]
    fn expected_dictionaries_from_a_sample() {
        let mut next = random_numbers();
        let amounts: Vec<f64> = (0..8192)
            .map(|_| (next() % 100_000) as f64 / 100.0)
            .collect();
        let sample: [ArrayRef; 2] = [
            Arc::new(Float64Array::from(amounts[..3000].to_vec())),
            Arc::new(Float64Array::from(amounts[3000..].to_vec())),
        ];
        let amounts = expected_dictionary(&sample, 1 << 20).unwrap();
        let bytes = amounts.dictionary_bytes();
        assert!(
            (bytes - 800_000.0).abs() < 0.15 * 800_000.0,
            "{bytes} bytes for 100,000 doubles"
        );
        assert!(amounts.fits_and_pays(1 << 20));
        assert!(!amounts.fits_and_pays(512 << 10), "past the limit");
        // In a row group of 250,000 rows the dictionary (about 92,000 values, 735 KB) saves
        // 37 % of the plain bytes but is larger than the indices (17 bits a row, 531 KB):
        // a read of a few pages would decode mostly dictionary.
        let quarter = expected_dictionary(&sample, 250_000).unwrap();
        assert!(quarter.dictionary_bytes() + quarter.rows * quarter.index_bits() / 8.0 < 0.7 * 2e6);
        assert!(!quarter.fits_and_pays(1 << 20));
        assert!(
            expected_dictionary(&sample, 500_000)
                .unwrap()
                .fits_and_pays(1 << 20),
            "twice the rows: the indices outweigh the dictionary"
        );
        // In a row group of 100,000 rows, most of them are distinct: no saving.
        assert!(
            !expected_dictionary(&sample, 100_000)
                .unwrap()
                .fits_and_pays(1 << 20)
        );
        let kinds: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..8192).map(|i| format!("k{}", i % 20)),
        ));
        let kinds = expected_dictionary(&[kinds], 1 << 20).unwrap();
        assert!(kinds.dictionary_bytes() < 200.0, "{kinds:?} for 20 kinds");
        assert!(kinds.fits_and_pays(8 << 10));
        let notes: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..8192).map(|i| format!("note {i:08}")),
        ));
        let notes = expected_dictionary(&[notes], 20_000).unwrap();
        assert_eq!(notes.dictionary_bytes(), 20_000.0 * (4.0 + 13.0));
        assert!(!notes.fits_and_pays(1 << 20), "unique values never pay");
    }

    /// What compression saves is estimated near enough to choose by: the benchmark's amounts
    /// (100,000 decimals) in a 1M-row row group keep a dictionary whose indices do not
    /// compress, so Snappy saves about a tenth of the column (it saved 10% of DataFusion's
    /// 1M-row chunks of the same values); sequential ids and repetitive text shrink by far
    /// more than the default 20%; random doubles not at all; small integers and decimals
    /// (whose PLAIN bytes differ from their Arrow values) and empty samples say nothing.
    #[test]
    fn expected_compression_savings_from_a_sample() {
        let mut next = random_numbers();
        let amounts: ArrayRef = Arc::new(Float64Array::from_iter_values(
            (0..8192).map(|_| (next() % 100_000) as f64 / 100.0),
        ));
        let sample = [amounts];
        let dictionary = expected_dictionary(&sample, 1 << 20).unwrap();
        let saving = expected_saving(&sample, Some(&dictionary)).unwrap();
        assert!((0.0..0.2).contains(&saving), "amounts save {saving}");
        let ids: ArrayRef = Arc::new(arrow::array::Int64Array::from_iter_values(0..8192));
        let saving = expected_saving(&[ids], None).unwrap();
        assert!(saving > 0.4, "sequential ids save {saving}");
        let notes: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..8192).map(|i| format!("order {i:08} shipped")),
        ));
        let saving = expected_saving(&[notes], None).unwrap();
        assert!(saving > 0.4, "repetitive text saves {saving}");
        let random: ArrayRef = Arc::new(Float64Array::from_iter_values(
            (0..8192).map(|_| f64::from_bits((next() << 31) ^ next()) / 7.0),
        ));
        let saving = expected_saving(&[random], None).unwrap();
        assert!(saving < 0.05, "random doubles save {saving}");
        let bytes: ArrayRef = Arc::new(arrow::array::UInt8Array::from(vec![1u8; 8192]));
        assert_eq!(expected_saving(&[bytes], None), None);
        let decimals: ArrayRef = Arc::new(
            arrow::array::Decimal128Array::from(vec![1i128; 10])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        assert_eq!(expected_saving(&[decimals], None), None);
        let empty: ArrayRef = Arc::new(Float64Array::from(Vec::<f64>::new()));
        assert_eq!(expected_saving(&[empty], None), None);
        // However long the values, the codec runs over at most COMPRESSION_SAMPLE_BYTES.
        let long: ArrayRef = Arc::new(StringArray::from(vec!["x".repeat(3 << 20); 4]));
        let plain = plain_sample_bytes(&[long], COMPRESSION_SAMPLE_BYTES).unwrap();
        assert_eq!(plain.len(), COMPRESSION_SAMPLE_BYTES);
    }
}
