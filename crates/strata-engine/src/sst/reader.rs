//! Reading one SST: open (size, checksum, footer and metadata checks), point lookups through
//! the sparse key index, bloom filters and the block cache, and key-range scans.
//!
//! A reader is opened once per file and process and shared (`Arc`); it caches the Parquet
//! metadata (with the page index), the key index, the bloom filters it has loaded and the
//! dictionary pages it has read.
//!
//! A point lookup reads the key block of the one block that can hold the key (the key
//! columns, `_seq` and `_op` of the block's rows: from the block cache, else from those
//! columns' pages), finds the newest visible version there, and reads the other columns of
//! that one row from the page of each holding it: from the block cache's row pages (the key
//! block says which page of each column holds its rows), else read, checked and decoded whole,
//! then cached (without a share for row pages, decoded only up to the row). The key columns of
//! the row are decoded from its encoded key; a caller that needs only some columns
//! ([`SstReader::get_columns`]) gets only those, and none for a delete. Invariant: every byte
//! a lookup decodes was checked against its page checksum first (when the file has them), so
//! nothing from a damaged page is ever cached or returned.
//!
//! When the key block is not cached but the file's keys are in the key cache, and the file
//! holds no tombstone and nothing newer than the read (its manifest entry says so), the
//! lookup finds the row in those keys instead: the first row holding the key is its newest
//! version, visible, and a put, so nothing but the pages of the returned columns is read (one
//! page for a key-value `get`, as a cold RocksDB lookup reads one data block).

use std::collections::HashMap;
use std::ops::{Bound, Range};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt8Array, UInt64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef, UInt8Type, UInt64Type};
use bytes::Bytes;
use parking_lot::Mutex;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowGroups, RowSelection, RowSelector,
};
use parquet::arrow::{FieldLevels, ProjectionMask, parquet_to_arrow_field_levels};
use parquet::basic::{Compression, Encoding, PageType};
use parquet::bloom_filter::Sbbf;
use parquet::column::page::{PageIterator, PageReader};
use parquet::file::metadata::{
    ColumnChunkMetaData, PageIndexPolicy, ParquetMetaData, RowGroupMetaData,
};
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;

use super::cache::{BlockCache, DecodedBlock, KeyBlock, PageSpan};
use super::file_types;
use super::page_decode::{ColumnRows, Dictionary, LeanType, PageError, PageView};
use super::sorted_keys::SortedKeys;
use super::store::{SstFile, SstStore};
use super::writer::bloom_supported;
use super::{FileKeys, KeyIndex, SstMeta, base64_decode, keys, page_crc};
use crate::codec::{ByteRows, KeyValue};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::schema::TableSchema;
use crate::types::{OpKind, SeqNo};

thread_local! {
    /// The buffer pages are decompressed into by the lean page decoder, reused by the thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Capacity of the decompression buffer kept between pages; a larger one is released.
const SCRATCH_BYTES_KEPT: usize = 1 << 20;

/// Rows per batch of an SST scan after its first blocks.
pub const SCAN_BATCH_ROWS: usize = 8192;
/// Blocks at the start of a scan that are served from (and kept in) the block cache, so that
/// seeks and short scans decode nothing when the blocks are hot.
const SCAN_CACHED_BLOCKS: usize = 4;

/// One column of a row a lookup returns: row `.1` of the array `.0` (a cached page's rows are
/// handed out without slicing them).
pub type RowColumn = (ArrayRef, usize);

/// Rows of one SST (or memtable) batch together with their encoded keys.
#[derive(Debug, Clone)]
pub struct KeyedBatch {
    /// The rows (a projection of the SST columns that always includes the key columns,
    /// `_seq` and `_op`).
    pub batch: RecordBatch,
    /// Encoded key of each row.
    pub keys: Arc<ByteRows>,
    /// Position of `_seq` in `batch`.
    pub seq_column: usize,
    /// Position of `_op` in `batch`.
    pub op_column: usize,
    /// True when the batch holds one version per key, no tombstones, and nothing newer than
    /// the read's sequence number, so it can be returned as it is.
    pub clean: bool,
}

impl KeyedBatch {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Sequence number of row `i`.
    #[inline]
    pub fn seq(&self, i: usize) -> SeqNo {
        self.batch
            .column(self.seq_column)
            .as_primitive::<UInt64Type>()
            .value(i)
    }

    /// Operation of row `i`.
    #[inline]
    pub fn op(&self, i: usize) -> OpKind {
        let byte = self
            .batch
            .column(self.op_column)
            .as_primitive::<UInt8Type>()
            .value(i);
        if byte == OpKind::Delete.as_u8() {
            OpKind::Delete
        } else {
            OpKind::Put
        }
    }
}

/// The Parquet physical value of one key column, as hashed by its bloom filter.
#[derive(Debug, Clone, PartialEq)]
pub enum BloomProbe {
    /// An INT32 column value.
    Int32(i32),
    /// An INT64 column value.
    Int64(i64),
    /// A BYTE_ARRAY column value.
    Bytes(Vec<u8>),
    /// A column without a bloom filter.
    Skip,
}

/// The bloom probes of an encoded key, computed once per lookup and checked against every
/// file probed.
pub fn bloom_probes(schema: &TableSchema, key: &[u8]) -> Result<Vec<BloomProbe>> {
    let storage = schema.storage_schema();
    let values = schema.key_codec().decode_values(key)?;
    Ok(schema
        .key_indices()
        .iter()
        .zip(values)
        .map(|(index, value)| {
            let data_type = storage.field(*index).data_type();
            match (data_type, value) {
                (
                    DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Date32,
                    KeyValue::Int(v),
                ) => BloomProbe::Int32(v as i32),
                (DataType::UInt8 | DataType::UInt16 | DataType::UInt32, KeyValue::UInt(v)) => {
                    BloomProbe::Int32(v as u32 as i32)
                }
                (DataType::Int64, KeyValue::Int(v)) => BloomProbe::Int64(v as i64),
                (DataType::UInt64, KeyValue::UInt(v)) => BloomProbe::Int64(v as i64),
                (_, KeyValue::Utf8(s)) if bloom_supported(data_type) => {
                    BloomProbe::Bytes(s.into_bytes())
                }
                (_, KeyValue::Binary(b)) if bloom_supported(data_type) => BloomProbe::Bytes(b),
                _ => BloomProbe::Skip,
            }
        })
        .collect())
}

/// One opened SST file.
pub struct SstReader {
    meta: SstMeta,
    object_path: String,
    file: SstFile,
    metadata: ArrowReaderMetadata,
    index: KeyIndex,
    /// First row of each row group, then the total row count.
    row_group_starts: Vec<u64>,
    schema: Arc<TableSchema>,
    /// Parquet column of each key column (in key order) that has a bloom filter.
    bloom_columns: Vec<Option<usize>>,
    /// The bloom filters of each row group's key columns, loaded by the first lookup that
    /// probes the row group and pinned for the life of the reader.
    blooms: Vec<OnceLock<Arc<Vec<Option<Sbbf>>>>>,
    /// How a block is read page by page ([`SstReader::read_block_pages`]); `None` when some
    /// column spans several Parquet leaf columns (nested types), whose blocks go through the
    /// Parquet reader's row selection instead.
    direct: Option<Vec<DirectColumn>>,
    /// The crc32c of every page (`strata.page_crc32c`, see [`super::page_crc`]); `None` for
    /// files written before pages had checksums.
    page_crcs: Option<Vec<u32>>,
    /// The first keys of the key index, packed ([`SortedKeys`]) for the binary search of
    /// every lookup.
    first_keys: SortedKeys,
    /// The schema of the batches the reader returns (the SST columns as the table's types).
    row_schema: SchemaRef,
    /// The columns of a key block: the key columns, `_seq` and `_op`, ascending.
    key_block_columns: Vec<usize>,
    /// The key columns of a row are decoded from its encoded key (their types are the key
    /// codec's and stored as they are); else they are read from the file with the others.
    keys_from_codec: bool,
    /// The columns a point lookup reads from the file for the row it returns (ascending).
    row_columns: Vec<usize>,
    cache: Arc<BlockCache>,
    metrics: Arc<Metrics>,
    /// Column reads decoded by the general Parquet reader instead of [`super::page_decode`].
    #[cfg(test)]
    general_decodes: std::sync::atomic::AtomicUsize,
}

/// What a page-level block read needs to know about one SST column that is one Parquet leaf.
struct DirectColumn {
    /// The Parquet leaf column.
    leaf: usize,
    /// The Arrow decoding levels of a read of this column alone.
    levels: FieldLevels,
    /// Per row group: the data pages at the start of the column chunk that are dictionary
    /// encoded (the Parquet writer falls back to plain encoding once and never returns), so a
    /// read of later pages skips the dictionary page. `u32::MAX` when unknown (every page may
    /// need it).
    dictionary_pages: Vec<u32>,
    /// Per row group: the raw dictionary page (header included), read once when first needed
    /// (and checked then).
    dictionaries: Vec<OnceLock<Bytes>>,
    /// Per row group: the position in the page checksums of the column chunk's first data
    /// page (its dictionary page, if any, is the one before).
    first_page_crc: Vec<usize>,
    /// The column's type when [`super::page_decode`] decodes its pages.
    lean: Option<LeanType>,
    /// The column has definition levels (it is nullable).
    nullable: bool,
    /// Per row group: the dictionary decoded by [`super::page_decode`], once first needed.
    decoded_dictionaries: Vec<OnceLock<Arc<Dictionary>>>,
}

impl std::fmt::Debug for SstReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstReader")
            .field("file", &self.object_path)
            .finish_non_exhaustive()
    }
}

fn catch<T>(file: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(Error::corruption(
            file,
            0,
            "the Parquet decoder failed on malformed data",
        )),
    }
}

impl SstReader {
    /// Opens the file described by `meta`: checks its size, verifies its checksum when
    /// `verify`, and loads and checks its footer.
    pub fn open(
        store: &SstStore,
        meta: &SstMeta,
        schema: Arc<TableSchema>,
        verify: bool,
        cache: Arc<BlockCache>,
        metrics: Arc<Metrics>,
    ) -> Result<SstReader> {
        let object_path = meta.object_path();
        let local = store.local_path(&object_path);
        let file = store.open(&object_path)?;
        let corrupt = |offset: u64, reason: &str| Error::corruption(&local, offset, reason);
        use parquet::file::reader::Length;
        if file.len() != meta.size_bytes {
            return Err(corrupt(
                file.len().min(meta.size_bytes),
                &format!(
                    "file has {} bytes, the manifest says {}",
                    file.len(),
                    meta.size_bytes
                ),
            ));
        }
        if verify {
            let crc = file.crc32c().map_err(|e| Error::io(&local, e))?;
            if crc != meta.crc32c {
                return Err(corrupt(0, "file checksum (crc32c) mismatch"));
            }
            Metrics::inc(&metrics.sst_files_verified);
        }
        catch(&object_path, || {
            // Full page encoding statistics: a block read skips the dictionary page when the
            // pages it reads are plain encoded.
            let options = ArrowReaderOptions::new()
                .with_page_index_policy(PageIndexPolicy::Required)
                .with_encoding_stats_as_mask(false);
            let metadata = ArrowReaderMetadata::load(&file, options)
                .map_err(|e| corrupt(file.len(), &format!("unreadable Parquet footer: {e}")))?;
            Self::from_parts(
                meta,
                object_path.clone(),
                file.clone(),
                metadata,
                schema,
                cache,
                metrics,
            )
        })
    }

    fn from_parts(
        meta: &SstMeta,
        object_path: String,
        file: SstFile,
        metadata: ArrowReaderMetadata,
        schema: Arc<TableSchema>,
        cache: Arc<BlockCache>,
        metrics: Arc<Metrics>,
    ) -> Result<SstReader> {
        let path = file.path().to_path_buf();
        let corrupt = |reason: String| Error::corruption(&path, 0, reason);
        // The columns must be the table's SST columns (as their file types).
        let expected = schema.sst_file_schema();
        let found = metadata.schema();
        let same = found.fields().len() == expected.fields().len()
            && found
                .fields()
                .iter()
                .zip(expected.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            return Err(corrupt(format!(
                "columns {:?} do not match the table's SST schema",
                found.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
            )));
        }
        let kv: HashMap<&str, &str> = metadata
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e.value.as_deref().map(|v| (e.key.as_str(), v)))
                    .collect()
            })
            .unwrap_or_default();
        let index = kv
            .get(keys::KEY_INDEX)
            .and_then(|v| base64_decode(v))
            .and_then(|bytes| KeyIndex::decode(&bytes))
            .ok_or_else(|| corrupt("missing or malformed strata.key_index".into()))?;
        let rows: u64 = kv
            .get(keys::ROWS)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("missing strata.rows".into()))?;
        let mut row_group_starts = Vec::with_capacity(metadata.metadata().num_row_groups() + 1);
        let mut total = 0u64;
        for rg in metadata.metadata().row_groups() {
            row_group_starts.push(total);
            total += rg.num_rows() as u64;
        }
        row_group_starts.push(total);
        if total != rows
            || rows != meta.rows
            || index.first_keys.len() as u64 != rows.div_ceil(index.block_rows)
        {
            return Err(corrupt(format!(
                "row counts disagree (footer {total}, metadata {rows}, manifest {})",
                meta.rows
            )));
        }
        let storage = schema.storage_schema();
        let bloom_columns = schema
            .key_indices()
            .iter()
            .map(|i| {
                bloom_supported(storage.field(*i).data_type()).then(|| schema.sst_leaf_column(*i))
            })
            .collect();
        let parquet = metadata.metadata();
        let row_groups = parquet.num_row_groups();
        let leaves = parquet.file_metadata().schema_descr().num_columns();
        let offset_index = parquet
            .offset_index()
            .filter(|index| {
                index.len() == row_groups
                    && index.iter().all(|rg| {
                        rg.len() == leaves && rg.iter().all(|c| !c.page_locations().is_empty())
                    })
            })
            .ok_or_else(|| corrupt("the page index is missing".into()))?;
        // Where each column chunk's data pages start in the list of page checksums.
        let mut first_page_crc = Vec::with_capacity(row_groups);
        let mut pages = 0usize;
        for (rg, columns) in offset_index.iter().enumerate() {
            let mut firsts = Vec::with_capacity(leaves);
            for (leaf, column) in columns.iter().enumerate() {
                let chunk_start = parquet.row_group(rg).column(leaf).byte_range().0;
                if column.page_locations()[0].offset as u64 > chunk_start {
                    pages += 1;
                }
                firsts.push(pages);
                pages += column.page_locations().len();
            }
            first_page_crc.push(firsts);
        }
        let page_crcs = match kv.get(keys::PAGE_CRC32C) {
            None => None,
            Some(value) => Some(
                base64_decode(value)
                    .and_then(|bytes| page_crc::decode(&bytes))
                    .filter(|crcs| crcs.len() == pages)
                    .ok_or_else(|| {
                        corrupt(format!(
                            "malformed strata.page_crc32c (the file has {pages} pages)"
                        ))
                    })?,
            ),
        };
        let direct = direct_columns(&metadata, storage.fields().len(), &first_page_crc)
            .map_err(|e| corrupt(format!("unreadable Parquet schema: {e}")))?;
        let row_schema = if schema.sst_file_types_are_user_types() {
            Arc::clone(schema.sst_file_schema())
        } else {
            schema.sst_schema()
        };
        let mut key_block_columns = schema.key_indices().to_vec();
        key_block_columns.extend([schema.seq_index(), schema.op_index()]);
        key_block_columns.sort_unstable();
        key_block_columns.dedup();
        // The key columns of a row come from its encoded key when the codec decodes them to
        // exactly the row's types (checked once here, on the file's smallest key).
        let keys_from_codec = schema
            .key_codec()
            .decode([meta.min_key.as_slice()])
            .is_ok_and(|decoded| {
                schema.key_indices().iter().zip(&decoded).all(|(k, array)| {
                    !schema.sst_file_type_differs(*k)
                        && row_schema.field(*k).data_type() == array.data_type()
                })
            });
        let row_columns = (0..storage.fields().len())
            .filter(|c| *c != schema.seq_index() && *c != schema.op_index())
            .filter(|c| !(keys_from_codec && schema.key_indices().contains(c)))
            .collect();
        let first_keys = SortedKeys::new(index.first_keys.iter().map(Vec::as_slice))
            .ok_or_else(|| corrupt("strata.key_index is not in key order".into()))?;
        Ok(SstReader {
            meta: meta.clone(),
            object_path,
            file,
            metadata,
            index,
            row_group_starts,
            schema,
            bloom_columns,
            blooms: (0..row_groups).map(|_| OnceLock::new()).collect(),
            direct,
            page_crcs,
            first_keys,
            row_schema,
            key_block_columns,
            keys_from_codec,
            row_columns,
            cache,
            metrics,
            #[cfg(test)]
            general_decodes: Default::default(),
        })
    }

    /// True when blocks are read page by page ([`SstReader::read_block_pages`]).
    #[cfg(test)]
    pub(crate) fn reads_block_pages(&self) -> bool {
        self.direct.is_some()
    }

    /// True when lookups decode a row's key columns from its encoded key.
    #[cfg(test)]
    pub(crate) fn keys_from_codec(&self) -> bool {
        self.keys_from_codec
    }

    /// Column reads so far that the general Parquet reader decoded.
    #[cfg(test)]
    pub(crate) fn general_decodes(&self) -> usize {
        self.general_decodes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Per row group: the dictionary-encoded data pages of column `leaf` and all its data
    /// pages.
    #[cfg(test)]
    pub(crate) fn dictionary_encoded_pages(&self, leaf: usize) -> Vec<(u32, u32)> {
        let direct = self.direct.as_ref().expect("page-level reads");
        let index = self.metadata.metadata().offset_index().expect("page index");
        (0..self.row_groups())
            .map(|rg| {
                let pages = index[rg][leaf].page_locations().len() as u32;
                (direct[leaf].dictionary_pages[rg], pages)
            })
            .collect()
    }

    /// The file's metadata.
    pub fn meta(&self) -> &SstMeta {
        &self.meta
    }

    /// The first row of every row group, then the file's row count.
    pub fn row_group_starts(&self) -> &[u64] {
        &self.row_group_starts
    }

    /// Number of row groups.
    pub fn row_groups(&self) -> usize {
        self.row_group_starts.len() - 1
    }

    /// The first key of every block of the sparse key index, and the rows per block.
    pub fn block_first_keys(&self) -> (&[Vec<u8>], u64) {
        (&self.index.first_keys, self.index.block_rows)
    }

    /// Number of blocks of the key index.
    pub fn blocks(&self) -> usize {
        self.index.first_keys.len()
    }

    fn row_group_of(&self, row: u64) -> usize {
        self.row_group_starts.partition_point(|start| *start <= row) - 1
    }

    /// The row groups a scan of `lower..upper` reads (the ones holding the key-index blocks
    /// the bounds select, as in [`SstReader::scan`]); empty when the range holds no block.
    pub fn row_groups_for(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Range<usize> {
        let first_block = match lower {
            Bound::Unbounded => Some(0),
            Bound::Included(k) | Bound::Excluded(k) => {
                (k <= self.meta.max_key.as_slice()).then(|| self.index.block_for(k))
            }
        };
        let last_block = match upper {
            Bound::Unbounded => self.blocks().checked_sub(1),
            Bound::Included(k) | Bound::Excluded(k) => self.index.last_block_upto(k),
        };
        match (first_block, last_block) {
            (Some(first), Some(last)) if first <= last && self.meta.rows > 0 => {
                let start = first as u64 * self.index.block_rows;
                let end = ((last as u64 + 1) * self.index.block_rows).min(self.meta.rows);
                self.row_group_of(start)..self.row_group_of(end - 1) + 1
            }
            _ => 0..0,
        }
    }

    /// Bloom filters of the key columns in row group `rg` (loaded once, then pinned).
    fn blooms_for(&self, rg: usize) -> Result<&Arc<Vec<Option<Sbbf>>>> {
        if let Some(found) = self.blooms[rg].get() {
            return Ok(found);
        }
        let row_group = self.metadata.metadata().row_group(rg);
        let mut filters = Vec::with_capacity(self.bloom_columns.len());
        for column in &self.bloom_columns {
            let filter = match column {
                Some(c) => Sbbf::read_from_column_chunk(row_group.column(*c), &self.file)
                    .map_err(|e| self.corrupt(&format!("unreadable bloom filter: {e}")))?,
                None => None,
            };
            filters.push(filter);
        }
        // A racing lookup may have loaded them too: both loaded the same filters.
        Ok(self.blooms[rg].get_or_init(|| Arc::new(filters)))
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::corruption(self.file.path(), 0, reason)
    }

    /// False when the bloom filters of row group `rg` prove the key of `probes` absent.
    fn may_contain(&self, rg: usize, probes: &[BloomProbe]) -> Result<bool> {
        if self.bloom_columns.iter().all(Option::is_none) {
            return Ok(true);
        }
        let filters = self.blooms_for(rg)?;
        Metrics::inc(&self.metrics.bloom_checks);
        for (filter, probe) in filters.iter().zip(probes) {
            let Some(filter) = filter else { continue };
            let present = match probe {
                BloomProbe::Int32(v) => filter.check(v),
                BloomProbe::Int64(v) => filter.check(v),
                BloomProbe::Bytes(v) => filter.check(v.as_slice()),
                BloomProbe::Skip => true,
            };
            if !present {
                Metrics::inc(&self.metrics.bloom_negatives);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads (or fetches from the cache) block `block`: all SST columns (the first blocks of
    /// a scan).
    pub fn block(&self, block: usize) -> Result<Arc<DecodedBlock>> {
        if let Some(found) = self.cache.get(self.meta.id, block as u32) {
            Metrics::inc(&self.metrics.block_cache_hits);
            return Ok(found);
        }
        Metrics::inc(&self.metrics.block_cache_misses);
        let (start, end) = self.block_rows(block);
        let columns: Vec<usize> = (0..self.schema.storage_schema().fields().len()).collect();
        let arrays = self.read_columns(start, end, &columns)?;
        let batch = RecordBatch::try_new(Arc::clone(&self.row_schema), arrays)
            .map_err(|e| self.corrupt(&format!("unreadable rows: {e}")))?;
        let keys = self.encode_keys(&batch, &columns)?;
        let decoded = Arc::new(DecodedBlock::new(batch, Arc::new(keys)));
        self.cache
            .insert(self.meta.id, block as u32, Arc::clone(&decoded));
        Ok(decoded)
    }

    /// The rows `[start, end)` of block `block`.
    fn block_rows(&self, block: usize) -> (u64, u64) {
        let start = block as u64 * self.index.block_rows;
        (start, (start + self.index.block_rows).min(self.meta.rows))
    }

    /// Reads (or fetches from the cache) the key block of `block`: the encoded key, `_seq`
    /// and `_op` of each of its rows, read from the pages of those columns alone.
    fn key_block(&self, block: usize) -> Result<Arc<KeyBlock>> {
        match self.cached_key_block(block) {
            Some(found) => Ok(found),
            None => self.read_key_block(block),
        }
    }

    /// The key block of `block` if the block cache holds it (a hit is counted, a miss is not).
    fn cached_key_block(&self, block: usize) -> Option<Arc<KeyBlock>> {
        let found = self.cache.get_keys(self.meta.id, block as u32)?;
        Metrics::inc(&self.metrics.block_cache_hits);
        Some(found)
    }

    /// Reads the key block of `block` from the file (a block-cache miss) and caches it.
    fn read_key_block(&self, block: usize) -> Result<Arc<KeyBlock>> {
        self.cache.count_miss();
        Metrics::inc(&self.metrics.block_cache_misses);
        let (start, end) = self.block_rows(block);
        let columns = &self.key_block_columns;
        let arrays = self.read_columns(start, end, columns)?;
        let position = |c: usize| columns.iter().position(|x| *x == c).unwrap_or(0);
        let key_arrays: Vec<ArrayRef> = self
            .schema
            .key_indices()
            .iter()
            .map(|k| Arc::clone(&arrays[position(*k)]))
            .collect();
        let keys = self.schema.key_codec().encode_columns(&key_arrays)?;
        let seqs = arrays[position(self.schema.seq_index())]
            .as_primitive_opt::<UInt64Type>()
            .filter(|a| a.null_count() == 0)
            .ok_or_else(|| self.corrupt("unreadable _seq column"))?;
        let ops = arrays[position(self.schema.op_index())]
            .as_primitive_opt::<UInt8Type>()
            .filter(|a| a.null_count() == 0)
            .map(|a| a.values().to_vec())
            .ok_or_else(|| self.corrupt("unreadable _op column"))?;
        let rows = (end - start) as usize;
        if keys.len() != rows {
            return Err(self.corrupt("block has the wrong number of rows"));
        }
        let decoded = KeyBlock::new(&keys, seqs.values(), ops).ok_or_else(|| {
            self.corrupt("keys out of order, a bad _op value or column lengths in a block")
        })?;
        let decoded = Arc::new(decoded.with_pages(self.row_page_spans(start, end)?));
        self.cache
            .insert_keys(self.meta.id, block as u32, Arc::clone(&decoded));
        Ok(decoded)
    }

    /// The pages holding file rows `[start, end)` in each column lookups read for the rows
    /// they return (when row pages are cached and the lean decoder decodes the column).
    fn row_page_spans(&self, start: u64, end: u64) -> Result<Vec<PageSpan>> {
        let Some(direct) = self
            .direct
            .as_ref()
            .filter(|_| self.cache.caches_row_pages())
        else {
            return Ok(Vec::new());
        };
        let mut spans = Vec::new();
        for rg in self.row_group_of(start)..=self.row_group_of(end - 1) {
            let rg_start = self.row_group_starts[rg];
            let rg_rows = self.row_group_starts[rg + 1] - rg_start;
            let lo = start.max(rg_start) - rg_start;
            let hi = end.min(rg_start + rg_rows) - rg_start;
            for c in &self.row_columns {
                let column = &direct[*c];
                if column.lean.is_none() {
                    continue;
                }
                let locations = self.page_locations(rg, column.leaf)?;
                let first = locations
                    .partition_point(|p| p.first_row_index as u64 <= lo)
                    .saturating_sub(1);
                for page in first..locations.len() {
                    let page_first = locations[page].first_row_index as u64;
                    if page_first >= hi {
                        break;
                    }
                    let page_end = locations
                        .get(page + 1)
                        .map_or(rg_rows, |p| p.first_row_index as u64);
                    spans.push(PageSpan {
                        rg: rg as u32,
                        leaf: column.leaf as u32,
                        page: page as u32,
                        first: page_first,
                        end: page_end,
                    });
                }
            }
        }
        spans.shrink_to_fit();
        Ok(spans)
    }

    /// File row `row` whose encoded key is `key` and whose `_seq` and `_op` are `seq` and
    /// `op`, as a one-row batch of all SST columns: the key columns decoded from `key`, the
    /// others read from the pages holding that row alone.
    fn read_row(
        &self,
        row: u64,
        key: &[u8],
        seq: SeqNo,
        op: OpKind,
        block: Option<&KeyBlock>,
    ) -> Result<RecordBatch> {
        let read = self.read_row_columns(row, &self.row_columns, block)?;
        let count = self.schema.storage_schema().fields().len();
        let mut arrays: Vec<Option<ArrayRef>> = vec![None; count];
        for (column, (array, i)) in self.row_columns.iter().zip(read) {
            let one = if array.len() == 1 && i == 0 {
                array
            } else {
                array.slice(i, 1)
            };
            arrays[*column] = Some(one);
        }
        if self.keys_from_codec {
            let decoded = self.schema.key_codec().decode([key])?;
            for (column, array) in self.schema.key_indices().iter().zip(decoded) {
                arrays[*column] = Some(array);
            }
        }
        arrays[self.schema.seq_index()] = Some(Arc::new(UInt64Array::from(vec![seq])));
        arrays[self.schema.op_index()] = Some(Arc::new(UInt8Array::from(vec![op.as_u8()])));
        let arrays = arrays
            .into_iter()
            .map(|a| a.ok_or_else(|| Error::internal("a column of a row was not read")))
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(Arc::clone(&self.row_schema), arrays)
            .map_err(|e| self.corrupt(&format!("unreadable row: {e}")))
    }

    /// The SST columns `columns` of file row `row` (in that order), as the table's types;
    /// `block` is the key block holding the row, when the lookup read one.
    fn read_row_columns(
        &self,
        row: u64,
        columns: &[usize],
        block: Option<&KeyBlock>,
    ) -> Result<Vec<RowColumn>> {
        match &self.direct {
            Some(direct) if self.cache.caches_row_pages() => {
                self.row_from_pages(direct, row, columns, block)
            }
            _ if columns.windows(2).all(|w| w[0] < w[1]) => Ok(self
                .read_columns(row, row + 1, columns)?
                .into_iter()
                .map(|a| (a, 0))
                .collect()),
            _ => {
                let mut sorted = columns.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                let read = self.read_columns(row, row + 1, &sorted)?;
                Ok(columns
                    .iter()
                    .map(|c| (Arc::clone(&read[sorted.partition_point(|s| s < c)]), 0))
                    .collect())
            }
        }
    }

    /// The SST columns `columns` of file row `row`, each sliced from the decoded page holding
    /// the row: from the block cache's row pages, else read, checked and decoded whole, then
    /// cached. Columns the lean decoder does not decode are read as
    /// [`SstReader::read_columns`] reads them.
    fn row_from_pages(
        &self,
        direct: &[DirectColumn],
        row: u64,
        columns: &[usize],
        block: Option<&KeyBlock>,
    ) -> Result<Vec<RowColumn>> {
        let rg = self.row_group_of(row);
        let rg_start = self.row_group_starts[rg];
        let rg_rows = self.row_group_starts[rg + 1] - rg_start;
        let at = row - rg_start;
        let sst = self.row_schema.fields();
        catch(&self.object_path, || {
            columns
                .iter()
                .map(|c| {
                    let column = &direct[*c];
                    let found = match column.lean {
                        Some(lean) => self.row_page_row(column, lean, rg, at, rg_rows, block)?,
                        None => None,
                    };
                    let (array, i) = match found {
                        Some(found) => found,
                        None => (self.read_column_rows(column, rg, at, at + 1, rg_rows)?, 0),
                    };
                    if self.schema.sst_file_type_differs(*c) {
                        let one = array.slice(i, 1);
                        return Ok((file_types::from_file(&one, sst[*c].data_type())?, 0));
                    }
                    Ok((array, i))
                })
                .collect()
        })
    }

    /// Row `at` of row group `rg` (of `rg_rows` rows) of one column, in the decoded page
    /// holding it (cached as a row page; `block`, the key block of the row when the lookup
    /// read one, says which page it is, else the offset index does); `None` when the lean
    /// decoder does not decode the page.
    fn row_page_row(
        &self,
        column: &DirectColumn,
        lean: LeanType,
        rg: usize,
        at: u64,
        rg_rows: u64,
        block: Option<&KeyBlock>,
    ) -> Result<Option<RowColumn>> {
        let span = block.and_then(|b| b.page_of(rg as u32, column.leaf as u32, at));
        let (page, first, end) = match span {
            Some(span) => (span.page as usize, span.first, span.end),
            None => {
                let locations = self.page_locations(rg, column.leaf)?;
                let page = locations
                    .partition_point(|p| p.first_row_index as u64 <= at)
                    .checked_sub(1)
                    .ok_or_else(|| self.corrupt("the first page does not start at row 0"))?;
                let first = locations[page].first_row_index as u64;
                let end = locations
                    .get(page + 1)
                    .map_or(rg_rows, |p| p.first_row_index as u64);
                (page, first, end)
            }
        };
        if end <= at || at < first {
            return Err(self.corrupt("page locations out of order"));
        }
        let key = (self.meta.id, rg as u32, column.leaf as u32, page as u32);
        if let Some(rows) = self.cache.get_row_page(&key) {
            Metrics::inc(&self.metrics.row_page_cache_hits);
            if rows.len() as u64 != end - first {
                return Err(Error::internal(
                    "a cached row page has the wrong number of rows",
                ));
            }
            return Ok(Some((rows, (at - first) as usize)));
        }
        Metrics::inc(&self.metrics.row_page_cache_misses);
        let pages = self.read_pages(column, rg, page..=page, rg_rows)?;
        if pages.first_row != first || pages.rows_end != end {
            return Err(self.corrupt("page locations out of order"));
        }
        let Some(rows) = self.decode_lean(column, lean, rg, first, end, rg_rows, &pages)? else {
            return Ok(None);
        };
        self.cache.insert_row_page(key, Arc::clone(&rows));
        Ok(Some((rows, (at - first) as usize)))
    }

    /// The page locations of column chunk `rg` of Parquet leaf `leaf`, from the offset index.
    fn page_locations(&self, rg: usize, leaf: usize) -> Result<&[PageLocation]> {
        self.metadata
            .metadata()
            .offset_index()
            .and_then(|index| index.get(rg))
            .and_then(|columns| columns.get(leaf))
            .map(|index| index.page_locations().as_slice())
            .filter(|locations| !locations.is_empty())
            .ok_or_else(|| self.corrupt("a column chunk has no page locations"))
    }

    /// Rows `[start, end)` of the SST columns `columns` (ascending), as the table's types.
    /// Rows inside one row group of a table of flat columns are read page by page: for each
    /// column, the pages holding those rows (found in the offset index) are fetched with one
    /// positioned read, checked and decoded, plus the column's dictionary page when one of
    /// them is dictionary encoded; nothing else of the row group is read. Other rows (a block
    /// cut by a row group's byte limit, nested columns) go through the Parquet reader's row
    /// selection.
    fn read_columns(&self, start: u64, end: u64, columns: &[usize]) -> Result<Vec<ArrayRef>> {
        debug_assert!(start < end && end <= self.meta.rows);
        debug_assert!(columns.windows(2).all(|w| w[0] < w[1]));
        let rg = self.row_group_of(start);
        if let Some(direct) = &self.direct
            && self.row_group_of(end - 1) == rg
        {
            let rg_start = self.row_group_starts[rg];
            let rg_rows = self.row_group_starts[rg + 1] - rg_start;
            let (lo, hi) = (start - rg_start, end - rg_start);
            let sst = self.row_schema.fields();
            return catch(&self.object_path, || {
                columns
                    .iter()
                    .map(|c| {
                        let array = self.read_column_rows(&direct[*c], rg, lo, hi, rg_rows)?;
                        if self.schema.sst_file_type_differs(*c) {
                            return file_types::from_file(&array, sst[*c].data_type());
                        }
                        Ok(array)
                    })
                    .collect()
            });
        }
        let batches: Vec<RecordBatch> = self
            .read_rows(start, end, columns, (end - start) as usize)?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.corrupt(&format!("unreadable rows: {e}")))?;
        let Some(first) = batches.first() else {
            return Err(self.corrupt("pages hold fewer rows than their locations say"));
        };
        let batch = concat_batches(&first.schema(), &batches)?;
        if batch.num_rows() as u64 != end - start {
            return Err(self.corrupt("block has the wrong number of rows"));
        }
        Ok(batch.columns().to_vec())
    }

    /// Rows `[lo, hi)` of row group `rg` (of `rg_rows` rows) of one column, as its file type:
    /// decoded by [`super::page_decode`] when it handles the column's type and pages, else by the
    /// Parquet reader over the selected pages.
    fn read_column_rows(
        &self,
        column: &DirectColumn,
        rg: usize,
        lo: u64,
        hi: u64,
        rg_rows: u64,
    ) -> Result<ArrayRef> {
        let pages = self.select_pages(column, rg, lo, hi, rg_rows)?;
        if let Some(lean) = column.lean
            && let Some(array) = self.decode_lean(column, lean, rg, lo, hi, rg_rows, &pages)?
        {
            return Ok(array);
        }
        self.decode_general(column, rg, lo, hi, &pages)
    }

    /// The pages of one column chunk holding rows `[lo, hi)` of row group `rg`, fetched with
    /// one positioned read and each checked against its checksum.
    fn select_pages<'a>(
        &'a self,
        column: &DirectColumn,
        rg: usize,
        lo: u64,
        hi: u64,
        rg_rows: u64,
    ) -> Result<SelectedPages<'a>> {
        let locations = self.page_locations(rg, column.leaf)?;
        // The pages holding rows lo..hi: the last page starting at or before `lo`, through the
        // last one starting before `hi`.
        let first = locations
            .partition_point(|p| p.first_row_index as u64 <= lo)
            .checked_sub(1)
            .ok_or_else(|| self.corrupt("the first page does not start at row 0"))?;
        let last = locations.partition_point(|p| (p.first_row_index as u64) < hi) - 1;
        self.read_pages(column, rg, first..=last, rg_rows)
    }

    /// The pages `pages` (positions in the offset index) of one column chunk, fetched with one
    /// positioned read and each checked against its checksum.
    fn read_pages<'a>(
        &'a self,
        column: &DirectColumn,
        rg: usize,
        pages: std::ops::RangeInclusive<usize>,
        rg_rows: u64,
    ) -> Result<SelectedPages<'a>> {
        let parquet = self.metadata.metadata();
        let locations = self.page_locations(rg, column.leaf)?;
        let (first, last) = (*pages.start(), *pages.end());
        if first > last || last >= locations.len() {
            return Err(self.corrupt("page locations out of order"));
        }
        let first_row = locations[first].first_row_index as u64;
        let rows_end = locations
            .get(last + 1)
            .map_or(rg_rows, |p| p.first_row_index as u64);
        let chunk = parquet.row_group(rg).column(column.leaf);
        let (chunk_start, _) = chunk.byte_range();
        let data_start = locations[0].offset as u64;
        let pages_start = locations[first].offset as u64;
        let pages_end = locations[last].offset as u64 + locations[last].compressed_page_size as u64;
        if data_start < chunk_start || pages_end <= pages_start || rows_end <= first_row {
            return Err(self.corrupt("page locations outside their column chunk"));
        }
        let pages = self
            .file
            .get_bytes(pages_start, (pages_end - pages_start) as usize)
            .map_err(|e| self.corrupt(&format!("unreadable pages: {e}")))?;
        for page in &locations[first..=last] {
            let at = (page.offset as u64).checked_sub(pages_start);
            let in_range = at.is_some_and(|at| {
                (at as usize)
                    .checked_add(page.compressed_page_size as usize)
                    .is_some_and(|end| end <= pages.len())
            });
            if !in_range {
                return Err(self.corrupt("page locations out of order"));
            }
        }
        if let Some(crcs) = &self.page_crcs {
            let first_crc = column.first_page_crc[rg] + first;
            for (page, expected) in locations[first..=last].iter().zip(&crcs[first_crc..]) {
                let at = (page.offset as u64 - pages_start) as usize;
                let bytes = &pages[at..at + page.compressed_page_size as usize];
                self.check_page(bytes, *expected, page.offset as u64)?;
            }
        }
        let needs_dictionary =
            data_start > chunk_start && (first as u64) < u64::from(column.dictionary_pages[rg]);
        Ok(SelectedPages {
            locations: &locations[first..=last],
            first_row,
            rows_end,
            chunk,
            chunk_start,
            data_start,
            pages_start,
            pages,
            needs_dictionary,
        })
    }

    /// The raw dictionary page (header included) of column chunk `rg` of `column`, read and
    /// checked once, then kept.
    fn dictionary_page(
        &self,
        column: &DirectColumn,
        rg: usize,
        pages: &SelectedPages,
    ) -> Result<Bytes> {
        if let Some(found) = column.dictionaries[rg].get() {
            return Ok(found.clone());
        }
        let read = self
            .file
            .get_bytes(
                pages.chunk_start,
                (pages.data_start - pages.chunk_start) as usize,
            )
            .map_err(|e| self.corrupt(&format!("unreadable dictionary page: {e}")))?;
        if let Some(crcs) = &self.page_crcs {
            let expected = crcs[column.first_page_crc[rg] - 1];
            self.check_page(&read, expected, pages.chunk_start)?;
        }
        Ok(column.dictionaries[rg].get_or_init(|| read).clone())
    }

    /// A Parquet page reader over the selected pages, which it sees at the start of their
    /// column chunk (so it reads no dictionary page).
    fn page_reader(
        &self,
        pages: &SelectedPages,
        source: BlockPages,
    ) -> Result<SerializedPageReader<BlockPages>> {
        let shifted: Vec<PageLocation> = pages
            .locations
            .iter()
            .map(|p| PageLocation {
                offset: (p.offset as u64 - pages.pages_start + source.pages_at) as i64,
                compressed_page_size: p.compressed_page_size,
                first_row_index: p.first_row_index - pages.first_row as i64,
            })
            .collect();
        SerializedPageReader::new(
            Arc::new(source),
            pages.chunk,
            (pages.rows_end - pages.first_row) as usize,
            Some(shifted),
        )
        .map_err(|e| self.corrupt(&format!("unreadable pages: {e}")))
    }

    /// Rows `[lo, hi)` of the selected pages decoded by [`super::page_decode`]; `None` when a
    /// page is in a layout it does not decode. Pages compressed with Snappy (the default) or
    /// not at all are parsed and decompressed here into a buffer reused by the thread; others
    /// go through the Parquet crate's page reader first.
    #[allow(clippy::too_many_arguments)]
    fn decode_lean(
        &self,
        column: &DirectColumn,
        lean: LeanType,
        rg: usize,
        lo: u64,
        hi: u64,
        rg_rows: u64,
        pages: &SelectedPages,
    ) -> Result<Option<ArrayRef>> {
        let unreadable = |e: PageError| self.corrupt(&format!("unreadable pages: {e}"));
        let codec = pages.chunk.compression();
        let raw = matches!(codec, Compression::SNAPPY | Compression::UNCOMPRESSED);
        let dictionary = if pages.needs_dictionary {
            let decoded = match column.decoded_dictionaries[rg].get() {
                Some(found) => Arc::clone(found),
                None => {
                    let bytes = self.dictionary_page(column, rg, pages)?;
                    let decoded = if raw {
                        let mut scratch = Vec::new();
                        PageView::parse(&bytes, codec, &mut scratch)
                            .and_then(|page| Dictionary::decode(lean, &page))
                    } else {
                        let page = self.one_page_reader(pages, bytes)?.next().transpose();
                        let page = page
                            .map_err(|e| self.corrupt(&format!("unreadable pages: {e}")))?
                            .ok_or_else(|| self.corrupt("a dictionary page is missing"))?;
                        Dictionary::decode(lean, &PageView::of(&page))
                    };
                    match decoded {
                        Ok(decoded) => {
                            let decoded = Arc::new(decoded);
                            Arc::clone(column.decoded_dictionaries[rg].get_or_init(|| decoded))
                        }
                        Err(PageError::Unsupported(_)) => return Ok(None),
                        Err(e) => return Err(unreadable(e)),
                    }
                }
            };
            Some(decoded)
        } else {
            None
        };
        let mut rows = ColumnRows::new(lean, column.nullable, (hi - lo) as usize);
        let mut parquet_pages = if raw {
            None
        } else {
            Some(self.page_reader(
                pages,
                BlockPages {
                    dictionary: None,
                    pages_at: pages.chunk_start,
                    pages: pages.pages.clone(),
                },
            )?)
        };
        for (i, location) in pages.locations.iter().enumerate() {
            let page_first = location.first_row_index as u64;
            let page_end = pages
                .locations
                .get(i + 1)
                .map_or(pages.rows_end.min(rg_rows), |p| p.first_row_index as u64);
            let from = lo.max(page_first) - page_first;
            let to = hi.min(page_end).saturating_sub(page_first);
            let appended = match &mut parquet_pages {
                None => {
                    if to <= from {
                        continue;
                    }
                    let at = (location.offset as u64 - pages.pages_start) as usize;
                    let bytes = &pages.pages[at..at + location.compressed_page_size as usize];
                    SCRATCH.with_borrow_mut(|scratch| {
                        let appended = PageView::parse(bytes, codec, scratch).and_then(|page| {
                            rows.append(&page, dictionary.as_deref(), from as usize, to as usize)
                        });
                        if scratch.capacity() > SCRATCH_BYTES_KEPT {
                            *scratch = Vec::new();
                        }
                        appended
                    })
                }
                Some(reader) => {
                    let page = reader
                        .next()
                        .transpose()
                        .map_err(|e| self.corrupt(&format!("unreadable pages: {e}")))?
                        .ok_or_else(|| {
                            self.corrupt("pages hold fewer rows than their locations say")
                        })?;
                    if to <= from {
                        continue;
                    }
                    let view = PageView::of(&page);
                    rows.append(&view, dictionary.as_deref(), from as usize, to as usize)
                }
            };
            match appended {
                Ok(()) => {}
                Err(PageError::Unsupported(_)) => return Ok(None),
                Err(e) => return Err(unreadable(e)),
            }
        }
        if rows.len() as u64 != hi - lo {
            return Err(self.corrupt("pages hold fewer rows than their locations say"));
        }
        rows.finish().map(Some).map_err(unreadable)
    }

    /// A Parquet page reader over the one page (header included) in `bytes`, seen at the
    /// start of the column chunk of `pages`.
    fn one_page_reader(
        &self,
        pages: &SelectedPages,
        bytes: Bytes,
    ) -> Result<SerializedPageReader<BlockPages>> {
        let len = bytes.len();
        SerializedPageReader::new(
            Arc::new(BlockPages {
                dictionary: None,
                pages_at: pages.chunk_start,
                pages: bytes,
            }),
            pages.chunk,
            0,
            Some(vec![PageLocation {
                offset: pages.chunk_start as i64,
                compressed_page_size: len as i32,
                first_row_index: 0,
            }]),
        )
        .map_err(|e| self.corrupt(&format!("unreadable dictionary page: {e}")))
    }

    /// Rows `[lo, hi)` of the selected pages through the Parquet reader (a page reader over
    /// them, with the dictionary page when needed, and a record-batch reader).
    fn decode_general(
        &self,
        column: &DirectColumn,
        rg: usize,
        lo: u64,
        hi: u64,
        pages: &SelectedPages,
    ) -> Result<ArrayRef> {
        #[cfg(test)]
        self.general_decodes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parquet = self.metadata.metadata();
        // The page reader sees the dictionary page (when needed) where it is in the file and
        // the selected pages right after it, as if they were the whole column chunk.
        let source = if pages.needs_dictionary {
            let dictionary = self.dictionary_page(column, rg, pages)?;
            BlockPages {
                dictionary: Some((pages.chunk_start, dictionary)),
                pages_at: pages.data_start,
                pages: pages.pages.clone(),
            }
        } else {
            BlockPages {
                dictionary: None,
                pages_at: pages.chunk_start,
                pages: pages.pages.clone(),
            }
        };
        let unreadable =
            |e: parquet::errors::ParquetError| self.corrupt(&format!("unreadable pages: {e}"));
        let page_reader = self.page_reader(pages, source)?;
        let row_groups = OneColumnChunk {
            metadata: parquet,
            row_group: rg,
            leaf: column.leaf,
            rows: (pages.rows_end - pages.first_row) as usize,
            pages: Mutex::new(Some(Box::new(page_reader))),
        };
        let mut selectors = Vec::with_capacity(2);
        if lo > pages.first_row {
            selectors.push(RowSelector::skip((lo - pages.first_row) as usize));
        }
        selectors.push(RowSelector::select((hi - lo) as usize));
        let mut reader = ParquetRecordBatchReader::try_new_with_row_groups(
            &column.levels,
            &row_groups,
            (hi - lo) as usize,
            Some(RowSelection::from(selectors)),
        )
        .map_err(unreadable)?;
        let batch = reader
            .next()
            .transpose()
            .map_err(|e| self.corrupt(&format!("unreadable pages: {e}")))?
            .ok_or_else(|| self.corrupt("pages hold fewer rows than their locations say"))?;
        if batch.num_rows() as u64 != hi - lo || batch.num_columns() != 1 {
            return Err(self.corrupt("pages hold fewer rows than their locations say"));
        }
        Ok(Arc::clone(batch.column(0)))
    }

    /// Checks the page at byte `offset` against its checksum.
    fn check_page(&self, bytes: &[u8], expected: u32, offset: u64) -> Result<()> {
        if crc32c::crc32c(bytes) == expected {
            return Ok(());
        }
        Err(Error::corruption(
            self.file.path(),
            offset,
            "page checksum (crc32c) mismatch",
        ))
    }

    fn encode_keys(&self, batch: &RecordBatch, columns: &[usize]) -> Result<ByteRows> {
        let key_columns: Vec<ArrayRef> = self
            .schema
            .key_indices()
            .iter()
            .map(|k| {
                let position = columns
                    .iter()
                    .position(|c| c == k)
                    .ok_or_else(|| Error::internal("scan projection lacks a key column"))?;
                Ok(Arc::clone(batch.column(position)))
            })
            .collect::<Result<_>>()?;
        self.schema.key_codec().encode_columns(&key_columns)
    }

    /// A reader of rows `[start, end)` (which lie inside one row group or span several),
    /// projected to the SST columns `columns` (ascending), in batches of `batch_rows` (the
    /// decoder sizes its buffers for that many rows).
    fn read_rows(
        &self,
        start: u64,
        end: u64,
        columns: &[usize],
        batch_rows: usize,
    ) -> Result<GuardedReader> {
        debug_assert!(start < end && end <= self.meta.rows);
        let first_rg = self.row_group_of(start);
        let last_rg = self.row_group_of(end - 1);
        let mut selectors = Vec::new();
        for rg in first_rg..=last_rg {
            let rg_start = self.row_group_starts[rg];
            let rg_end = self.row_group_starts[rg + 1];
            let from = start.max(rg_start);
            let to = end.min(rg_end);
            if from > rg_start {
                selectors.push(RowSelector::skip((from - rg_start) as usize));
            }
            selectors.push(RowSelector::select((to - from) as usize));
            if to < rg_end {
                selectors.push(RowSelector::skip((rg_end - to) as usize));
            }
        }
        let mask = ProjectionMask::roots(
            self.metadata.metadata().file_metadata().schema_descr(),
            columns.iter().copied(),
        );
        let object_path = self.object_path.clone();
        let reader: ParquetRecordBatchReader = catch(&object_path, || {
            ParquetRecordBatchReaderBuilder::new_with_metadata(
                self.file.clone(),
                self.metadata.clone(),
            )
            .with_row_groups((first_rg..=last_rg).collect())
            .with_row_selection(RowSelection::from(selectors))
            .with_projection(mask)
            .with_batch_size(batch_rows.max(1))
            .build()
            .map_err(|e| self.corrupt(&format!("cannot read row groups: {e}")))
        })?;
        let convert = columns
            .iter()
            .any(|c| self.schema.sst_file_type_differs(*c))
            .then(|| (Arc::clone(&self.schema), columns.to_vec()));
        Ok(GuardedReader {
            inner: reader,
            file: object_path,
            convert,
        })
    }

    /// The newest version of `key` with `seq <= read_seq`, as a one-row batch of all SST
    /// columns, with its sequence number and operation.
    pub fn get(&self, key: &[u8], read_seq: SeqNo) -> Result<Option<(SeqNo, OpKind, RecordBatch)>> {
        let probes = bloom_probes(&self.schema, key)?;
        self.get_with_probes(key, &probes, read_seq, || None)
    }

    /// Like [`SstReader::get`], with the key's bloom probes computed by the caller (once for
    /// all the files a lookup visits) and the file's keys when the key cache holds them
    /// (see [`SstReader::get_columns`]).
    pub fn get_with_probes(
        &self,
        key: &[u8],
        probes: &[BloomProbe],
        read_seq: SeqNo,
        file_keys: impl FnOnce() -> Option<Arc<FileKeys>>,
    ) -> Result<Option<(SeqNo, OpKind, RecordBatch)>> {
        let Some(Found {
            row,
            seq,
            op,
            block,
        }) = self.find(key, probes, read_seq, file_keys)?
        else {
            return Ok(None);
        };
        let seq = match seq {
            Some(seq) => seq,
            None => self.row_seq(row, block.as_deref())?,
        };
        let batch = self.read_row(row, key, seq, op, block.as_deref())?;
        Ok(Some((seq, op, batch)))
    }

    /// Like [`SstReader::get_with_probes`], reading only the SST columns `columns` of the row
    /// (in that order), and none for a delete; without the row's sequence number.
    ///
    /// `file_keys` gives the file's keys if the key cache holds them; it is called only when
    /// the key block the lookup needs is not cached and the file holds no tombstone and
    /// nothing newer than `read_seq`. The first row holding the key is then its newest
    /// version and visible, so the lookup finds it in memory instead of reading the block
    /// (the key, `_seq` and `_op` pages of its rows), and reads only the pages of the columns
    /// it returns.
    pub fn get_columns(
        &self,
        key: &[u8],
        probes: &[BloomProbe],
        read_seq: SeqNo,
        columns: &[usize],
        file_keys: impl FnOnce() -> Option<Arc<FileKeys>>,
    ) -> Result<Option<(OpKind, Vec<RowColumn>)>> {
        let Some(Found { row, op, block, .. }) = self.find(key, probes, read_seq, file_keys)?
        else {
            return Ok(None);
        };
        if op == OpKind::Delete {
            return Ok(Some((op, Vec::new())));
        }
        Ok(Some((
            op,
            self.read_row_columns(row, columns, block.as_deref())?,
        )))
    }

    /// The `_seq` of file row `row` (`block` is its key block, when the lookup read one).
    fn row_seq(&self, row: u64, block: Option<&KeyBlock>) -> Result<SeqNo> {
        let column = self.schema.seq_index();
        let read = self.read_row_columns(row, &[column], block)?;
        let (array, i) = read
            .first()
            .ok_or_else(|| Error::internal("a lookup read no _seq"))?;
        array
            .as_primitive_opt::<UInt64Type>()
            .filter(|a| *i < a.len() && a.is_valid(*i))
            .map(|a| a.value(*i))
            .ok_or_else(|| self.corrupt("unreadable _seq column"))
    }

    /// The newest version of `key` with `seq <= read_seq` (found in the file's keys from
    /// `file_keys` when the key block is not cached and the file allows it: see
    /// [`SstReader::get_columns`]).
    fn find(
        &self,
        key: &[u8],
        probes: &[BloomProbe],
        read_seq: SeqNo,
        file_keys: impl FnOnce() -> Option<Arc<FileKeys>>,
    ) -> Result<Option<Found>> {
        if key < self.meta.min_key.as_slice()
            || key > self.meta.max_key.as_slice()
            || self.meta.min_seq > read_seq
        {
            return Ok(None);
        }
        Metrics::inc(&self.metrics.get_sst_probes);
        // The block holding the first row whose key is `>= key` (as `KeyIndex::block_for`,
        // over the packed copy of the index).
        let after = self.first_keys.lower_bound(key);
        let mut block = after.saturating_sub(1);
        let starts_next = after < self.first_keys.len() && self.first_keys.eq(after, key);
        if !starts_next {
            // The block may span two row groups (a row group can be cut by its byte limit):
            // the key is absent only if every one of them rules it out.
            let first_row = block as u64 * self.index.block_rows;
            let last_row = (first_row + self.index.block_rows).min(self.meta.rows) - 1;
            let mut may_contain = false;
            for rg in self.row_group_of(first_row)..=self.row_group_of(last_row) {
                if self.may_contain(rg, probes)? {
                    may_contain = true;
                    break;
                }
            }
            if !may_contain {
                return Ok(None);
            }
        }
        let cached = self.cached_key_block(block);
        if cached.is_none()
            && self.meta.tombstones == 0
            && self.meta.max_seq <= read_seq
            && let Some(file_keys) = file_keys()
        {
            return self.find_in_file_keys(&file_keys, key, block);
        }
        // The first block's cache lookup is done; later blocks (versions continuing) look
        // again.
        let mut first = Some(cached);
        loop {
            let decoded = match first.take() {
                Some(Some(decoded)) => decoded,
                Some(None) => self.read_key_block(block)?,
                None => self.key_block(block)?,
            };
            let keys = &decoded.keys;
            let mut row = keys.lower_bound(key);
            while row < keys.len() && keys.eq(row, key) {
                let seq = decoded.seq(row);
                if seq <= read_seq {
                    let op = OpKind::from_u8(decoded.ops[row])
                        .ok_or_else(|| self.corrupt("bad _op value"))?;
                    let file_row = block as u64 * self.index.block_rows + row as u64;
                    return Ok(Some(Found {
                        row: file_row,
                        seq: Some(seq),
                        op,
                        block: Some(decoded),
                    }));
                }
                row += 1;
            }
            // The versions of `key` may continue in the next block.
            if row == keys.len() && block + 1 < self.blocks() {
                block += 1;
                continue;
            }
            return Ok(None);
        }
    }

    /// [`SstReader::find`] through the file's keys in memory, for a file without tombstones
    /// whose rows are all visible: the first row holding `key` is its newest version. The
    /// first version of `key`, if the file holds it, is in block `block` or is the first row
    /// of the next one (the search of the file's key index found so).
    fn find_in_file_keys(
        &self,
        file_keys: &FileKeys,
        key: &[u8],
        block: usize,
    ) -> Result<Option<Found>> {
        if file_keys.len() as u64 != self.meta.rows {
            return Err(Error::internal(
                "the key cache holds another row count than the file",
            ));
        }
        debug_assert!(self.meta.tombstones == 0);
        let (start, end) = self.block_rows(block);
        let searched = start as usize..(end as usize + 1).min(file_keys.len());
        let row = file_keys.lower_bound_in(searched.clone(), key);
        if row == searched.end || file_keys.get(row) != key {
            return Ok(None);
        }
        Metrics::inc(&self.metrics.get_rows_from_key_cache);
        Ok(Some(Found {
            row: row as u64,
            seq: None,
            op: OpKind::Put,
            block: None,
        }))
    }

    /// Scans the rows whose keys lie within `(lower, upper)`, projected to the SST columns
    /// `columns` (ascending; must include the key columns, `_seq` and `_op`). Batches are marked
    /// clean when the file is (see [`SstMeta::is_clean`]); the caller clears the mark when it
    /// reads below the file's newest sequence number.
    pub fn scan(
        self: &Arc<Self>,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        columns: Vec<usize>,
    ) -> Result<SstScan> {
        self.scan_with_batch_rows(lower, upper, columns, SCAN_BATCH_ROWS)
    }

    /// The encoded key of every row, in file order: one pass over the key columns (for the
    /// key cache, [`super::key_cache`]).
    pub fn read_keys(self: &Arc<Self>) -> Result<super::FileKeys> {
        let mut columns: Vec<usize> = self.schema.key_indices().to_vec();
        columns.extend([self.schema.seq_index(), self.schema.op_index()]);
        columns.sort_unstable();
        columns.dedup();
        let rows = usize::try_from(self.meta.rows)
            .map_err(|_| Error::internal("an SST with more rows than memory can address"))?;
        let width = self.meta.min_key.len().max(self.meta.max_key.len());
        let mut keys = ByteRows::with_capacity(rows, rows.saturating_mul(width));
        for batch in self.scan(Bound::Unbounded, Bound::Unbounded, columns)? {
            for key in batch?.keys.iter() {
                keys.push(key);
            }
        }
        if keys.len() != rows {
            return Err(self.corrupt(&format!(
                "{} keys read, the manifest records {rows} rows",
                keys.len()
            )));
        }
        Ok(super::FileKeys::new(keys))
    }

    /// Like [`SstReader::scan`], reading past the first blocks in batches of `batch_rows`
    /// (compaction lowers it to bound its memory).
    pub fn scan_with_batch_rows(
        self: &Arc<Self>,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        columns: Vec<usize>,
        batch_rows: usize,
    ) -> Result<SstScan> {
        debug_assert!(columns.windows(2).all(|w| w[0] < w[1]));
        let first_block = match lower {
            Bound::Unbounded => Some(0),
            Bound::Included(k) | Bound::Excluded(k) => {
                (k <= self.meta.max_key.as_slice()).then(|| self.index.block_for(k))
            }
        };
        let last_block = match upper {
            Bound::Unbounded => Some(self.blocks() - 1),
            Bound::Included(k) | Bound::Excluded(k) => self.index.last_block_upto(k),
        };
        let range = match (first_block, last_block) {
            (Some(first), Some(last)) if first <= last => {
                let start = first as u64 * self.index.block_rows;
                let end = ((last as u64 + 1) * self.index.block_rows).min(self.meta.rows);
                Some((start, end))
            }
            _ => None,
        };
        let seq_column = columns
            .iter()
            .position(|c| *c == self.schema.seq_index())
            .ok_or_else(|| Error::internal("scan projection lacks _seq"))?;
        let op_column = columns
            .iter()
            .position(|c| *c == self.schema.op_index())
            .ok_or_else(|| Error::internal("scan projection lacks _op"))?;
        // The first blocks come from the block cache (decoded once, shared with point lookups),
        // so a short scan (a seek) decodes nothing when they are hot; the rest of the range
        // streams from the file in large batches, bypassing the cache.
        let (cached_blocks, rows) = match range {
            Some((start, end)) => {
                let first = (start / self.index.block_rows) as usize;
                let last = ((end - 1) / self.index.block_rows) as usize;
                let cached_end = (first + SCAN_CACHED_BLOCKS).min(last + 1);
                let streamed_from = cached_end as u64 * self.index.block_rows;
                let rest = (streamed_from < end).then(|| {
                    Box::new(LazyRows {
                        reader: Arc::clone(self),
                        range: Some((streamed_from, end)),
                        columns: columns.clone(),
                        batch_rows: batch_rows.max(1),
                        current: None,
                    }) as BatchIter
                });
                (first..cached_end, rest)
            }
            None => (0..0, None),
        };
        Ok(SstScan {
            reader: Arc::clone(self),
            cached_blocks,
            rows,
            lower: own_bound(lower),
            upper: own_bound(upper),
            columns,
            seq_column,
            op_column,
            clean: self.meta.is_clean(),
            done: range.is_none(),
        })
    }
}

/// The version of a key a lookup found: its file row, sequence number and operation, and the
/// key block holding it. A row found through the key cache has no key block, and its
/// sequence number was not read (every row of its file is visible at the read's).
struct Found {
    row: u64,
    seq: Option<SeqNo>,
    op: OpKind,
    block: Option<Arc<KeyBlock>>,
}

/// The SST columns as page-level block reads see them; `None` when some column is not a
/// single, unrepeated Parquet leaf.
fn direct_columns(
    metadata: &ArrowReaderMetadata,
    columns: usize,
    first_page_crc: &[Vec<usize>],
) -> parquet::errors::Result<Option<Vec<DirectColumn>>> {
    let parquet = metadata.metadata();
    let descr = parquet.file_metadata().schema_descr();
    if descr.num_columns() != columns {
        return Ok(None);
    }
    let hint = metadata.schema().fields();
    let mut direct = Vec::with_capacity(columns);
    for leaf in 0..columns {
        if descr.get_column_root_idx(leaf) != leaf || descr.column(leaf).max_rep_level() != 0 {
            return Ok(None);
        }
        let levels = parquet_to_arrow_field_levels(
            descr,
            ProjectionMask::leaves(descr, [leaf]),
            Some(hint),
        )?;
        let column = descr.column(leaf);
        direct.push(DirectColumn {
            leaf,
            levels,
            lean: LeanType::of(hint[leaf].data_type(), &column),
            nullable: column.max_def_level() > 0,
            decoded_dictionaries: parquet
                .row_groups()
                .iter()
                .map(|_| OnceLock::new())
                .collect(),
            dictionary_pages: parquet
                .row_groups()
                .iter()
                .map(|rg| dictionary_encoded_pages(rg, leaf))
                .collect(),
            dictionaries: parquet
                .row_groups()
                .iter()
                .map(|_| OnceLock::new())
                .collect(),
            first_page_crc: first_page_crc.iter().map(|rg| rg[leaf]).collect(),
        });
    }
    Ok(Some(direct))
}

/// The number of dictionary-encoded data pages of column `leaf` of a row group, from the page
/// encoding statistics; `u32::MAX` when they are not recorded.
fn dictionary_encoded_pages(row_group: &RowGroupMetaData, leaf: usize) -> u32 {
    let Some(stats) = row_group.column(leaf).page_encoding_stats() else {
        return u32::MAX;
    };
    stats
        .iter()
        .filter(|s| matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2))
        .filter(|s| {
            matches!(
                s.encoding,
                Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
            )
        })
        .map(|s| u32::try_from(s.count).unwrap_or(0))
        .sum()
}

/// The pages of one column chunk holding some rows, as fetched ([`SstReader::select_pages`]).
struct SelectedPages<'a> {
    /// The locations of the pages, as in the offset index (rows relative to the row group).
    locations: &'a [PageLocation],
    /// The first row of the first page and the row after the last one.
    first_row: u64,
    rows_end: u64,
    chunk: &'a ColumnChunkMetaData,
    /// Where the column chunk starts (its dictionary page, if any) and where its data pages
    /// start.
    chunk_start: u64,
    data_start: u64,
    /// Where `pages` starts in the file.
    pages_start: u64,
    pages: Bytes,
    /// Some of the pages are dictionary encoded.
    needs_dictionary: bool,
}

/// The bytes of a page-level block read as a Parquet `ChunkReader`: the dictionary page at its
/// place in the file (when needed), and the selected pages from `pages_at`.
struct BlockPages {
    dictionary: Option<(u64, Bytes)>,
    pages_at: u64,
    pages: Bytes,
}

impl parquet::file::reader::Length for BlockPages {
    fn len(&self) -> u64 {
        self.pages_at + self.pages.len() as u64
    }
}

impl ChunkReader for BlockPages {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let length = (self.pages_at + self.pages.len() as u64).saturating_sub(start);
        Ok(self.get_bytes(start, length as usize)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let within = |at: u64, bytes: &Bytes| -> Option<Bytes> {
            let from = usize::try_from(start.checked_sub(at)?).ok()?;
            let to = from.checked_add(length)?;
            (to <= bytes.len()).then(|| bytes.slice(from..to))
        };
        self.dictionary
            .as_ref()
            .and_then(|(at, bytes)| within(*at, bytes))
            .or_else(|| within(self.pages_at, &self.pages))
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!(
                    "read of {length} bytes at {start} outside the pages of a block"
                ))
            })
    }
}

/// One column chunk's selected pages as the Parquet reader's `RowGroups`.
struct OneColumnChunk<'a> {
    metadata: &'a ParquetMetaData,
    row_group: usize,
    leaf: usize,
    rows: usize,
    pages: Mutex<Option<Box<dyn PageReader>>>,
}

impl RowGroups for OneColumnChunk<'_> {
    fn num_rows(&self) -> usize {
        self.rows
    }

    fn column_chunks(&self, i: usize) -> parquet::errors::Result<Box<dyn PageIterator>> {
        let pages = (i == self.leaf).then(|| self.pages.lock().take()).flatten();
        let pages = pages.ok_or_else(|| {
            parquet::errors::ParquetError::General(format!(
                "column {i} is not the one column chunk of a block read"
            ))
        })?;
        Ok(Box::new(OnePageReader(Some(pages))))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(std::iter::once(self.metadata.row_group(self.row_group)))
    }

    fn metadata(&self) -> &ParquetMetaData {
        self.metadata
    }
}

/// A `PageIterator` over one page reader.
struct OnePageReader(Option<Box<dyn PageReader>>);

impl Iterator for OnePageReader {
    type Item = parquet::errors::Result<Box<dyn PageReader>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.take().map(Ok)
    }
}

impl PageIterator for OnePageReader {}

type BatchIter =
    Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>> + Send>;

/// Rows of a range, opened only when first needed.
struct LazyRows {
    reader: Arc<SstReader>,
    range: Option<(u64, u64)>,
    columns: Vec<usize>,
    batch_rows: usize,
    current: Option<GuardedReader>,
}

impl Iterator for LazyRows {
    type Item = std::result::Result<RecordBatch, arrow::error::ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((start, end)) = self.range.take() {
            match self
                .reader
                .read_rows(start, end, &self.columns, self.batch_rows)
            {
                Ok(rows) => self.current = Some(rows),
                Err(e) => return Some(Err(arrow::error::ArrowError::ExternalError(Box::new(e)))),
            }
        }
        self.current.as_mut()?.next()
    }
}

/// A Parquet reader that turns decoder panics into corruption errors and maps the columns
/// stored as another type back to the table's types.
struct GuardedReader {
    inner: ParquetRecordBatchReader,
    file: String,
    /// The schema and the projected storage columns, when a projected column's file type
    /// differs from its type.
    convert: Option<(Arc<TableSchema>, Vec<usize>)>,
}

impl Iterator for GuardedReader {
    type Item = std::result::Result<RecordBatch, arrow::error::ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match catch_unwind(AssertUnwindSafe(|| self.inner.next())) {
            Ok(Some(Ok(batch))) => match &self.convert {
                None => Some(Ok(batch)),
                Some((schema, columns)) => Some(
                    schema
                        .from_sst_file_batch(columns, batch)
                        .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e))),
                ),
            },
            Ok(item) => item,
            Err(_) => Some(Err(arrow::error::ArrowError::ExternalError(Box::new(
                Error::corruption(
                    &self.file,
                    0,
                    "the Parquet decoder failed on malformed data",
                ),
            )))),
        }
    }
}

fn own_bound(bound: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// An iterator over the rows of one SST within a key range, as [`KeyedBatch`]es.
pub struct SstScan {
    reader: Arc<SstReader>,
    /// The first blocks of the range, served from the block cache before `rows`.
    cached_blocks: std::ops::Range<usize>,
    rows: Option<BatchIter>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    columns: Vec<usize>,
    seq_column: usize,
    op_column: usize,
    clean: bool,
    done: bool,
}

impl std::fmt::Debug for SstScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstScan")
            .field("file", &self.reader.object_path)
            .finish_non_exhaustive()
    }
}

impl SstScan {
    fn next_batch(&mut self) -> Result<Option<KeyedBatch>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(block) = self.cached_blocks.next() {
                let decoded = self.reader.block(block)?;
                let batch = decoded.batch.project(&self.columns)?;
                if let Some(keyed) = self.trim(batch, Arc::clone(&decoded.keys)) {
                    return Ok(Some(keyed));
                }
                continue;
            }
            let Some(rows) = self.rows.as_mut() else {
                return Ok(None);
            };
            let batch = match rows.next() {
                None => {
                    self.done = true;
                    return Ok(None);
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(match e {
                        arrow::error::ArrowError::ExternalError(inner) => {
                            match inner.downcast::<Error>() {
                                Ok(error) => *error,
                                Err(other) => self.reader.corrupt(&other.to_string()),
                            }
                        }
                        other => self.reader.corrupt(&format!("unreadable rows: {other}")),
                    });
                }
                Some(Ok(batch)) => batch,
            };
            let keys = Arc::new(self.reader.encode_keys(&batch, &self.columns)?);
            if let Some(keyed) = self.trim(batch, keys) {
                return Ok(Some(keyed));
            }
        }
    }

    /// Cuts the rows outside the key range (only the first and last batches have any); `None`
    /// when nothing remains. Marks the scan done once a row beyond the upper bound is seen.
    fn trim(&mut self, batch: RecordBatch, keys: Arc<ByteRows>) -> Option<KeyedBatch> {
        let start = match &self.lower {
            Bound::Unbounded => 0,
            Bound::Included(k) => keys.partition_point(0, |key| key < k.as_slice()),
            Bound::Excluded(k) => keys.partition_point(0, |key| key <= k.as_slice()),
        };
        let end = match &self.upper {
            Bound::Unbounded => keys.len(),
            Bound::Included(k) => keys.partition_point(0, |key| key <= k.as_slice()),
            Bound::Excluded(k) => keys.partition_point(0, |key| key < k.as_slice()),
        };
        if end < keys.len() {
            self.done = true;
        }
        if start >= end {
            return None;
        }
        let (batch, keys) = if start == 0 && end == keys.len() {
            (batch, keys)
        } else {
            let mut trimmed = ByteRows::with_capacity(end - start, 0);
            (start..end).for_each(|i| trimmed.push(keys.get(i)));
            (batch.slice(start, end - start), Arc::new(trimmed))
        };
        Some(KeyedBatch {
            batch,
            keys,
            seq_column: self.seq_column,
            op_column: self.op_column,
            clean: self.clean,
        })
    }
}

impl Iterator for SstScan {
    type Item = Result<KeyedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}
