//! # strata-engine
//!
//! The storage engine of Strata: an embedded LSM tree whose SSTables are plain Parquet files.
//!
//! A database is a directory holding tables. Each table has an Arrow schema and a primary key
//! (or, without one, a hidden row id); a key-value store is a table
//! `(key BINARY PRIMARY KEY, value BINARY)` with a byte-string facade ([`KvStore`]).
//!
//! Writes are validated, encoded, appended to the write-ahead log as one checksummed record per
//! batch (concurrent writers share one write and one `fdatasync`: group commit), and applied to
//! the table's memtable. Full memtables are flushed in the background to sorted, immutable
//! Parquet SSTs with bloom filters and Strata metadata; a checksummed manifest records which
//! files make up each table. Reads pin one consistent view (memtables + files + a sequence
//! number) and merge the sources as sorted runs: the newest version of each key wins and
//! deletes hide older versions.
//!
//! What it is not: a SQL engine (that is `strata-datafusion`, which never leaks into this
//! crate), a distributed store, or a transactional store beyond atomic single batches and
//! snapshots.
//!
//! ```no_run
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use strata_engine::{Db, KeyRange, KeyValue, Options, ScanOptions};
//!
//! # fn main() -> strata_engine::Result<()> {
//! let db = Db::open("/tmp/strata-doc", Options::default())?;
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("id", DataType::Int64, false),
//!     Field::new("name", DataType::Utf8, true),
//! ]));
//! let users = db.create_table("users", schema.clone(), &["id"])?;
//! users.insert(&RecordBatch::try_new(schema, vec![
//!     Arc::new(Int64Array::from(vec![1, 2])),
//!     Arc::new(StringArray::from(vec!["ada", "grace"])),
//! ])?)?;
//! let row = users.get(&[KeyValue::from(2i64)])?;
//! for batch in users.scan(KeyRange::all(), ScanOptions::default())? {
//!     println!("{:?}", batch?);
//! }
//! let kv = db.kv("settings")?;
//! kv.put(b"theme", b"dark")?;
//! assert_eq!(kv.get(b"theme")?, Some(b"dark".to_vec()));
//! db.close()?;
//! # Ok(()) }
//! ```
//!
//! ## Limits
//!
//! Every limit is an explicit field of [`Options`] or [`TableOptions`]: key and row sizes,
//! write batch size, memtable sizes and the overall write budget, WAL segment size, block cache
//! size, background threads. Keys are at most `key_size_bytes_max` bytes once encoded; values
//! at most `value_size_bytes_max`. Nested Arrow types (lists, structs, maps) cannot be stored yet.
//!
//! ## Module map
//!
//! `codec` (key and row encodings), `wal`, `memtable`, `sst`, `manifest`, `version`
//! (versions and super versions), `read` (runs and the merge), `table`, `db` (open, commit path,
//! flush, background work), `kv`, `snapshot`, `options`, `metrics`, `fault`, `storage` (where
//! the objects live: a local directory or an object store), `disk_cache` (SST byte ranges of a
//! database on object storage, cached on local disk), `lease` (files a query running in other
//! processes reads, kept from deletion), `purge` (obsolete files deleted on a thread of their
//! own, once no version holds them and no lease names them).

#![warn(missing_docs)]

pub mod cached_store;
pub mod codec;
pub mod compaction;
pub mod db;
pub mod disk_cache;
pub mod dv;
pub mod error;
pub mod fault;
pub(crate) mod fsutil;
pub mod kv;
pub mod lease;
pub mod manifest;
pub mod memtable;
pub mod metrics;
pub mod options;
pub mod purge;
pub mod read;
pub mod schema;
pub mod snapshot;
pub mod sst;
pub mod storage;
pub mod table;
pub mod types;
pub mod version;
pub mod wal;

pub use codec::KeyValue;
pub use compaction::{CompactionOptions, FilePick, StrategyKind};
pub use db::{
    BulkLoad, CompactionReport, DEFAULT_NAMESPACE, Db, IngestOptions, LevelCompactionStats,
    LevelReport, TableInfo, TableSpec, batch_bytes, display_name, kv_schema,
};
pub use dv::RowGroupRows;
pub use error::{Error, ErrorKind, Result};
pub use fault::{FaultAction, FaultInjector, IoOp};
pub use kv::{KvScan, KvStore, WriteBatch};
pub use memtable::{Memtable, MemtableKind};
pub use metrics::{MetricsSnapshot, ReadCounter, ReadStats, TableWriteStats, track_reads};
pub use options::{Options, Profile, SstCompression, SyncMode, TableOptions};
pub use read::{BaseFile, BaseScan, KeyRange, Overlay, OverlayRows, ScanIter, ScanOptions};
pub use schema::{OP_COLUMN, ROWID_COLUMN, SEQ_COLUMN, TableSchema};
pub use snapshot::Snapshot;
pub use sst::SstMeta;
pub use table::{Mutation, ReadView, RowCount, ShippedScan, Table, TableStats, WriteOptions};
pub use types::{FileId, OpKind, SeqNo, TableId};
