//! Writing one SST: rows in internal order in, a Parquet file and its [`SstMeta`] out.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt8Type, UInt64Type};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::{KeyIndex, SST_FORMAT_VERSION, SstMeta, base64_encode, keys, now_ms};
use crate::codec::ByteRows;
use crate::codec::key::KEY_FORMAT_VERSION;
use crate::error::{Error, Result};
use crate::options::{SstCompression, TableOptions};
use crate::schema::TableSchema;
use crate::types::{FileId, OpKind, SeqNo, TableId};

/// An SST file ready to be stored: its bytes and its metadata (without the id-independent
/// parts missing).
#[derive(Debug, Clone)]
pub struct WrittenSst {
    /// The Parquet file.
    pub bytes: Bytes,
    /// Its metadata, as the manifest will hold it.
    pub meta: SstMeta,
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
    level: u32,
    seq_column: usize,
    op_column: usize,
    writer: ArrowWriter<Vec<u8>>,
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

impl SstWriter {
    /// A writer for `table` at `level`, with bloom filters sized for `expected_rows`.
    pub fn new(
        table_id: TableId,
        schema: &TableSchema,
        options: &TableOptions,
        level: u32,
        expected_rows: u64,
    ) -> Result<Self> {
        let block_rows = options.sst_index_block_rows as u64;
        let row_group_rows = (options.sst_row_group_rows as u64).div_ceil(block_rows) * block_rows;
        let storage = schema.storage_schema();
        let mut sorting: Vec<SortingColumn> = schema
            .key_indices()
            .iter()
            .map(|i| SortingColumn {
                column_idx: *i as i32,
                descending: false,
                nulls_first: false,
            })
            .collect();
        sorting.push(SortingColumn {
            column_idx: schema.seq_index() as i32,
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
            .set_data_page_size_limit(options.sst_page_size_bytes)
            .set_write_batch_size((block_rows as usize).min(1024))
            .set_compression(compression)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_sorting_columns(Some(sorting))
            .set_bloom_filter_position(BloomFilterPosition::End)
            // A point lookup decodes the dictionary page of every column it reads: keep them
            // small, so high-cardinality columns fall back to plain encoding early.
            .set_dictionary_page_size_limit(options.sst_page_size_bytes)
            .set_created_by(format!("strata {}", env!("CARGO_PKG_VERSION")));
        // Keys and sequence numbers are (nearly) unique: a dictionary only costs.
        let seq_column = ColumnPath::from(storage.field(schema.seq_index()).name().as_str());
        builder = builder.set_column_dictionary_enabled(seq_column, false);
        for index in schema.key_indices() {
            let column = ColumnPath::from(storage.field(*index).name().as_str());
            builder = builder.set_column_dictionary_enabled(column, false);
        }
        for index in schema.key_indices() {
            let field = storage.field(*index);
            if bloom_supported(field.data_type()) {
                let column = ColumnPath::from(field.name().as_str());
                builder = builder
                    .set_column_bloom_filter_enabled(column.clone(), true)
                    .set_column_bloom_filter_fpp(column.clone(), options.bloom_filter_fpp)
                    .set_column_bloom_filter_max_ndv(column, expected_rows.max(1));
            }
        }
        let writer = ArrowWriter::try_new(Vec::new(), schema.sst_schema(), Some(builder.build()))
            .map_err(|e| parquet_error("<new sst>", e))?;
        Ok(SstWriter {
            table_id,
            level,
            seq_column: schema.seq_index(),
            op_column: schema.op_index(),
            writer,
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
        })
    }

    /// Appends `batch` (all SST columns) whose encoded keys are `keys`. Rows must continue the
    /// internal order of everything written before.
    pub fn write(&mut self, batch: &RecordBatch, keys: &ByteRows) -> Result<()> {
        debug_assert_eq!(batch.num_rows(), keys.len());
        let seqs = batch.column(self.seq_column).as_primitive::<UInt64Type>();
        let ops = batch.column(self.op_column).as_primitive::<UInt8Type>();
        for row in 0..batch.num_rows() {
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
            if self.rows % self.block_rows == 0 {
                self.first_keys.push(key.to_vec());
            }
            if self.min_key.is_none() {
                self.min_key = Some(key.to_vec());
            }
            if ops.value(row) == OpKind::Delete.as_u8() {
                self.tombstones += 1;
            }
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
            self.last_seq = seq;
            self.min_seq = self.min_seq.min(seq);
            self.max_seq = self.max_seq.max(seq);
            self.rows += 1;
        }
        self.writer
            .write(batch)
            .map_err(|e| parquet_error("<new sst>", e))
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Approximate bytes of the file so far (flushed row groups plus buffered data).
    pub fn estimated_bytes(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Finishes the file as SST `id`. Fails if no row was written.
    pub fn finish(mut self, id: FileId) -> Result<WrittenSst> {
        let Some(min_key) = self.min_key.take() else {
            return Err(Error::internal("an SST needs at least one row"));
        };
        let created_at_ms = now_ms();
        let index = KeyIndex {
            block_rows: self.block_rows,
            first_keys: std::mem::take(&mut self.first_keys),
        };
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
        ];
        for (key, value) in metadata {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.to_string(), value));
        }
        let bytes = self
            .writer
            .into_inner()
            .map_err(|e| parquet_error("<new sst>", e))?;
        let meta = SstMeta {
            id,
            table_id: self.table_id,
            level: self.level,
            size_bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
            rows: self.rows,
            tombstones: self.tombstones,
            older_versions: self.older_versions,
            min_key,
            max_key: self.last_key,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            created_at_ms,
        };
        Ok(WrittenSst {
            bytes: Bytes::from(bytes),
            meta,
        })
    }
}

pub(crate) fn parquet_error(file: &str, error: parquet::errors::ParquetError) -> Error {
    Error::Parquet {
        file: file.to_string(),
        message: error.to_string(),
    }
}
