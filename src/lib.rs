//! # Strata
//!
//! An embedded LSM-tree storage engine whose SSTables are plain Parquet files, queryable with
//! Apache DataFusion SQL. This umbrella crate re-exports the three parts:
//!
//! * [`engine`] (`strata-engine`): the storage engine — tables with an Arrow schema and a
//!   primary key, a key-value facade, WAL, memtables, Parquet SSTs, manifest, compaction.
//! * [`sql`] (`strata-datafusion`): a DataFusion session whose catalog is the database, so
//!   `CREATE TABLE ... PRIMARY KEY` makes a persistent LSM table.
//! * [`cli`] (`strata-cli`): the `strata` REPL.
//!
//! The most used items are re-exported at the top level.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = strata::Db::open("my-data", strata::Options::default())?;
//! let kv = db.kv("settings")?;
//! kv.put(b"theme", b"dark")?;
//! assert_eq!(kv.get(b"theme")?, Some(b"dark".to_vec()));
//! db.close()?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub use strata_cli as cli;
pub use strata_datafusion as sql;
pub use strata_engine as engine;

pub use strata_datafusion::{StrataSession, open};
pub use strata_engine::{
    Db, Error, KeyRange, KeyValue, KvStore, MemtableKind, Options, Profile, Result, ScanOptions,
    Table, TableOptions, WriteBatch,
};

/// The README's Rust snippets, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
