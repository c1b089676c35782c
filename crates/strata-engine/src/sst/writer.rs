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

use arrow::array::{AsArray, RecordBatch};
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
    writer: ArrowWriter<UploadSink>,
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

impl SstWriter {
    /// A writer of SST `file_id` of `table_id`, for `level` and sorted run `run_id`, with
    /// bloom filters sized for `expected_rows`. The upload starts at once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &SstStore,
        table_id: TableId,
        file_id: FileId,
        run_id: u64,
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
        // Value columns (a point lookup reads one page of each for its row) may have smaller
        // pages than the key columns (read a block at a time).
        let value_page_bytes = options
            .sst_value_page_size_bytes
            .min(options.sst_page_size_bytes);
        if value_page_bytes != options.sst_page_size_bytes {
            for index in schema.value_indices() {
                let column = ColumnPath::from(storage.field(*index).name().as_str());
                builder = builder.set_column_data_page_size_limit(column, value_page_bytes);
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
        let writer = ArrowWriter::try_new(
            sink,
            Arc::clone(schema.sst_file_schema()),
            Some(builder.build()),
        )
        .map_err(|e| parquet_error(&object_path, e))?;
        Ok(SstWriter {
            table_id,
            file_id,
            run_id,
            level,
            store: store.clone(),
            seq_column: schema.seq_index(),
            op_column: schema.op_index(),
            convert: (!schema.sst_file_types_are_user_types()).then(|| schema.clone()),
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
        self.writer
            .write(&slice)
            .map_err(|e| parquet_error(&sst_object_path(self.table_id, self.file_id), e))
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
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
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
        self.writer
            .flush()
            .map_err(|e| parquet_error(&object_path, e))?;
        self.writer
            .sync()
            .map_err(|e| Error::io(self.store.local_path(&object_path), e))?;
        let pages_end = self.writer.bytes_written() as u64;
        let page_crcs = self
            .writer
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
        for (key, value) in metadata {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.to_string(), value));
        }
        let mut sink = self
            .writer
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
