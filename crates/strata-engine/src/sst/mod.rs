//! SSTables: immutable, sorted Parquet files, one table's rows each.
//!
//! An SST is an ordinary Parquet file that any Parquet reader (DataFusion, DuckDB, pyarrow,
//! polars) opens as a table. Strata adds only conventions and metadata; nothing in the file is
//! Strata-specific binary.
//!
//! ## File layout (format version 1)
//!
//! * Path: `sst/t<table id:06>/<file id:020>.parquet` under the database directory, written
//!   through `object_store` (whole-file put, then `fsync` of the file and its directory before
//!   the manifest may name it).
//! * Columns: the table's storage schema (see `schema`): user columns in table order with
//!   their own types (key columns NOT NULL, others nullable because tombstones carry NULLs),
//!   the hidden `_rowid` of append-only tables, `_seq` (UInt64) and `_op` (UInt8, 0 put,
//!   1 delete). A column whose type Parquet cannot hold is stored as its *file type*
//!   ([`file_types`]): `Interval(MonthDayNano)` as `Struct { months: Int32, days: Int32,
//!   nanoseconds: Int64 }` (all three NOT NULL, the struct NULL where the interval is), a
//!   dictionary as its values, a list view as a list, recursively inside nested types. Every
//!   other Arrow type DataFusion produces (nested lists, structs and maps included) is written
//!   by the `parquet` crate's Arrow writer as it is, with the Arrow schema embedded in the
//!   footer (`ARROW:schema`), so readers get back the exact Arrow types. The SST reader and
//!   writer map file types to and from the table's types; nothing above them sees file types.
//! * Nested columns span several Parquet leaf columns: `sorting_columns` and bloom filters
//!   name leaf columns (`TableSchema::sst_leaf_column`), not storage indices.
//! * Order: rows sorted by the encoded primary key ascending, then `_seq` descending. The footer's
//!   `sorting_columns` says so (key columns ascending, `_seq` descending).
//! * Row groups hold at most `sst_row_group_rows` rows in files written by flushes, and at most
//!   `sst_scan_row_group_rows` in files written by compactions and bulk loads (the two
//!   [`SstLayout`]s), in both a multiple of `sst_index_block_rows`, and at most
//!   `sst_row_group_bytes_max` bytes; a byte-limited row group may end inside an index block.
//! * Data pages (and dictionary pages) hold at most `sst_page_size_bytes` (the data pages of
//!   value columns at most `sst_value_page_size_bytes`, when smaller); a column whose
//!   dictionary would outgrow `sst_page_size_bytes` is written plain. In the scan layout a
//!   value column's dictionary page may hold up to `sst_scan_dictionary_page_size_bytes`,
//!   when the file's first rows show its distinct values would fit and pay (see
//!   `writer::ColumnChoice`); other value columns are written plain. Row group, page and
//!   dictionary sizes are not part of the format: any Parquet reader reads any of them.
//! * Pages are compressed with `sst_compression`, recorded per column chunk
//!   (`ColumnMetaData.codec`). In the scan layout, with a fast codec (Snappy, LZ4), a key
//!   column, `_seq` or value column that the file's first rows show would shrink by less
//!   than `sst_compression_min_saving` is stored `UNCOMPRESSED` instead; readers take each
//!   chunk's codec from its metadata, as the Parquet format has it.
//! * Statistics at page level and the page index (column and offset indexes) are written;
//!   every key column of a type with an unambiguous Parquet physical value (integers,
//!   strings, binary, dates) has a Parquet bloom filter per row group (stored at the end of
//!   the file) sized for the row group's rows (at most `sst_row_group_rows`, fewer when the
//!   file is smaller) at `bloom_filter_fpp`. Files written before sized each for the file's
//!   rows; readers accept both.
//! * The pages (dictionary and data pages, each with its header) are everything between the
//!   leading magic and the end of the last row group; bloom filters, column and offset indexes
//!   and the footer follow.
//! * Footer key-value metadata (all values are UTF-8 strings; keys base64 of the Strata key
//!   encoding):
//!
//! | key | value |
//! |---|---|
//! | `strata.format_version` | `1` |
//! | `strata.key_format_version` | `1` (see `codec::key`) |
//! | `strata.table_id` | table id |
//! | `strata.level` | LSM level the file was written for |
//! | `strata.min_key`, `strata.max_key` | smallest and largest encoded key, base64 |
//! | `strata.min_seq`, `strata.max_seq` | sequence number range |
//! | `strata.rows`, `strata.tombstones` | row count, delete-row count |
//! | `strata.older_versions` | rows that are not the newest version of their key |
//! | `strata.created_at_ms` | Unix time of writing, milliseconds |
//! | `strata.key_index` | sparse key index, base64 (below) |
//! | `strata.page_crc32c` | crc32c of every page, header included, as little-endian u32s, base64: row group by row group, column chunk by column chunk, each chunk's dictionary page (if any) before its data pages ([`page_crc`]); absent in files written before it |
//!
//! The sparse key index lists the first key of every block of `sst_index_block_rows` rows:
//! `varint block_rows, varint blocks, then per block: varint key length, key bytes`. Block `b`
//! starts at row `b * block_rows` of the file. Point lookups binary-search it, then read the
//! block's *key block* only (the key columns, `_seq` and `_op` of its rows; the block cache
//! keeps key blocks for lookups, and whole decoded blocks for the first blocks of scans), and
//! find the row there; the row's other columns are then read from the pages holding that one
//! row alone, and those pages are kept decoded in the block cache's share for row pages
//! (`Options::row_page_cache_percent`), so the next lookup of a row in one of them reads
//! nothing. The key cache ([`key_cache`]) keeps the key of every row of a file, for scan
//! plans and DV passes, and for lookups whose key block is not cached in a file without
//! tombstones and without rows newer than the read: the first row holding the key is then
//! the one to return, and the key block is not read. Rows are read page by page: for each column, the offset index gives
//! the pages holding the rows (a binary search on their first rows), one positioned read
//! fetches them, each is checked against its crc32c, and only they are decoded, with the
//! chunk's dictionary page when one of them is dictionary encoded (the page encoding
//! statistics tell; a dictionary page is read once per open file and kept). Pages of the
//! types and encodings the writer produces for flat columns are decoded by [`page_decode`]
//! straight into the rows needed; other columns through the Parquet reader over the selected
//! pages. Rows that span two row groups, or a table with nested columns, are read through the
//! Parquet reader's row selection instead.
//!
//! ## Integrity
//!
//! Parquet itself carries no checksum that the Rust writer fills in. Strata keeps the file's
//! size and crc32c in the manifest (itself checksummed) and verifies both before the first use
//! of a file in a process (`Options::verify_sst_checksums`), so damaged bytes are reported as
//! [`crate::Error::Corruption`] naming the file, never returned as data. Page-level reads
//! (key blocks, the row of a lookup, the first blocks of a scan) also check every page they
//! read against `strata.page_crc32c`, so a page damaged after the file was opened (or in a
//! file opened without verification) is corruption too.

mod cache;
pub mod file_types;
pub mod key_cache;
mod page_crc;
mod page_decode;
mod reader;
mod sorted_keys;
mod store;
mod writer;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub use cache::{BlockCache, DecodedBlock, KeyBlock};
pub use key_cache::{FileKeys, KeyCache, KeyCollector};
pub use reader::{
    BloomProbe, KeyedBatch, RowColumn, SCAN_BATCH_ROWS, SstReader, SstScan, bloom_probes,
};
pub use store::SstStore;
pub use writer::{SstLayout, SstWriter, UPLOAD_PART_BYTES};

use crate::codec::varint::{get_varint, put_varint};
use crate::types::{FileId, SeqNo, TableId};

/// Current SST format version.
pub const SST_FORMAT_VERSION: u32 = 1;

/// Metadata keys written into the Parquet footer.
pub mod keys {
    /// Format version.
    pub const FORMAT_VERSION: &str = "strata.format_version";
    /// Key encoding version.
    pub const KEY_FORMAT_VERSION: &str = "strata.key_format_version";
    /// Table id.
    pub const TABLE_ID: &str = "strata.table_id";
    /// Level.
    pub const LEVEL: &str = "strata.level";
    /// Smallest key.
    pub const MIN_KEY: &str = "strata.min_key";
    /// Largest key.
    pub const MAX_KEY: &str = "strata.max_key";
    /// Smallest sequence number.
    pub const MIN_SEQ: &str = "strata.min_seq";
    /// Largest sequence number.
    pub const MAX_SEQ: &str = "strata.max_seq";
    /// Rows.
    pub const ROWS: &str = "strata.rows";
    /// Tombstone rows.
    pub const TOMBSTONES: &str = "strata.tombstones";
    /// Rows shadowed by a newer version of the same key in the same file.
    pub const OLDER_VERSIONS: &str = "strata.older_versions";
    /// Creation time.
    pub const CREATED_AT_MS: &str = "strata.created_at_ms";
    /// Sparse key index.
    pub const KEY_INDEX: &str = "strata.key_index";
    /// crc32c of every page.
    pub const PAGE_CRC32C: &str = "strata.page_crc32c";
}

/// What the manifest knows about one SST file (a copy of its footer metadata plus size and
/// checksum), so opening a table reads no SST footers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SstMeta {
    /// File id.
    pub id: FileId,
    /// Table id.
    pub table_id: TableId,
    /// LSM level.
    pub level: u32,
    /// The sorted run the file belongs to: the files written by one flush or one compaction
    /// share it (the id of the first of them). `0` in manifests written before runs were
    /// recorded: such a file is a run of its own.
    #[serde(default)]
    pub run_id: u64,
    /// File size in bytes.
    pub size_bytes: u64,
    /// crc32c of the whole file.
    pub crc32c: u32,
    /// Rows (all versions, tombstones included).
    pub rows: u64,
    /// Delete rows.
    pub tombstones: u64,
    /// Rows that are older versions of a key that also appears newer in this file.
    pub older_versions: u64,
    /// Smallest encoded key.
    #[serde(with = "b64")]
    pub min_key: Vec<u8>,
    /// Largest encoded key.
    #[serde(with = "b64")]
    pub max_key: Vec<u8>,
    /// Smallest sequence number.
    pub min_seq: SeqNo,
    /// Largest sequence number.
    pub max_seq: SeqNo,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
}

impl SstMeta {
    /// True when the file holds exactly one live row per key: no tombstones and no older
    /// versions. Such a file can be read without deduplication.
    pub fn is_clean(&self) -> bool {
        self.tombstones == 0 && self.older_versions == 0
    }

    /// True when the key ranges of `self` and `other` intersect.
    pub fn overlaps(&self, other: &SstMeta) -> bool {
        self.min_key <= other.max_key && other.min_key <= self.max_key
    }

    /// The positions in `keys` (ascending encoded keys) of those within the file's key range.
    pub fn keys_within(&self, keys: &[Vec<u8>]) -> std::ops::Range<usize> {
        debug_assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        let lo = keys.partition_point(|k| k.as_slice() < self.min_key.as_slice());
        let hi = keys.partition_point(|k| k.as_slice() <= self.max_key.as_slice());
        lo..hi.max(lo)
    }

    /// The sorted run of the file (see `run_id`).
    pub fn run(&self) -> u64 {
        if self.run_id == 0 {
            self.id
        } else {
            self.run_id
        }
    }

    /// The object path of this file relative to the database directory.
    pub fn object_path(&self) -> String {
        sst_object_path(self.table_id, self.id)
    }
}

/// The object path of SST `file` of `table`.
pub fn sst_object_path(table: TableId, file: FileId) -> String {
    format!("sst/t{table:06}/{file:020}.parquet")
}

/// Parses `(table, file)` from an SST object path.
pub fn parse_sst_object_path(path: &str) -> Option<(TableId, FileId)> {
    let rest = path.strip_prefix("sst/t")?;
    let (table, file) = rest.split_once('/')?;
    let file = file.strip_suffix(".parquet")?;
    if table.len() != 6 || file.len() != 20 {
        return None;
    }
    Some((table.parse().ok()?, file.parse().ok()?))
}

/// Base64 (standard alphabet, padded) used for keys in metadata and the manifest.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Inverse of [`base64_encode`].
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::base64_encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::base64_decode(&text).ok_or_else(|| serde::de::Error::custom("invalid base64 key"))
    }
}

/// The sparse key index of one SST: the first key of every block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    /// Rows per block.
    pub block_rows: u64,
    /// First key of each block.
    pub first_keys: Vec<Vec<u8>>,
}

impl KeyIndex {
    /// Serialises the index (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, self.block_rows);
        put_varint(&mut out, self.first_keys.len() as u64);
        for key in &self.first_keys {
            put_varint(&mut out, key.len() as u64);
            out.extend_from_slice(key);
        }
        out
    }

    /// Parses an index written by [`KeyIndex::encode`].
    pub fn decode(bytes: &[u8]) -> Option<KeyIndex> {
        let mut pos = 0;
        let block_rows = get_varint(bytes, &mut pos)?;
        let blocks = get_varint(bytes, &mut pos)? as usize;
        if block_rows == 0 || blocks > bytes.len() {
            return None;
        }
        let mut first_keys = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let len = get_varint(bytes, &mut pos)? as usize;
            first_keys.push(bytes.get(pos..pos + len)?.to_vec());
            pos += len;
        }
        (pos == bytes.len()).then_some(KeyIndex {
            block_rows,
            first_keys,
        })
    }

    /// The block holding the first row whose key is `>= key` (the last block whose first key
    /// is `< key`, or block 0).
    pub fn block_for(&self, key: &[u8]) -> usize {
        self.first_keys
            .partition_point(|first| first.as_slice() < key)
            .saturating_sub(1)
    }

    /// The last block that can hold a row whose key is `<= key` (the last block whose first
    /// key is `<= key`), or `None` when every block starts after `key`.
    pub fn last_block_upto(&self, key: &[u8]) -> Option<usize> {
        self.first_keys
            .partition_point(|first| first.as_slice() <= key)
            .checked_sub(1)
    }
}

/// Current time in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
