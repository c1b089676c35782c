//! # strata-datafusion
//!
//! Strata tables as Apache DataFusion tables: a [`StrataSession`] is a DataFusion
//! `SessionContext` over one Strata database whose default catalog is Strata's own, so
//! `CREATE TABLE ... PRIMARY KEY` makes a persistent LSM table and every DataFusion feature
//! (joins, aggregates, window functions, format I/O) works over it.
//!
//! ```no_run
//! # async fn demo() -> datafusion::error::Result<()> {
//! let session = strata_datafusion::open("/tmp/strata-sql", strata_engine::Options::default())?;
//! session.sql("CREATE TABLE IF NOT EXISTS t (id BIGINT PRIMARY KEY, v VARCHAR)").await?;
//! session.sql("INSERT INTO t VALUES (1, 'a'), (2, 'b')").await?.collect().await?;
//! session.sql("SELECT * FROM t WHERE id = 2").await?.show().await?;
//! session.close()?;
//! # Ok(()) }
//! ```
//!
//! Module map: `session` (the context over a database), `catalog` (persistent schema
//! provider: CREATE/DROP TABLE, table options), `provider` (the `TableProvider` and the scan
//! plan), `direct` (Parquet reads of scans whose files need no merge), `keys` (primary-key predicates to key ranges), `dml` (INSERT/DELETE/UPDATE/TRUNCATE
//! as atomic write batches), `planner` (the guard in front of DataFusion's planner for DML),
//! `versions` (`strata_versions('t')`), `functions` (table functions over the engine's state
//! and sample data), `formats` (file formats beyond DataFusion's defaults, such as ORC), `distributed` (queries
//! on datafusion-distributed workers: the scan's codec, the task split, the worker; feature
//! `distributed`).

#![warn(missing_docs)]

pub mod catalog;
pub mod direct;
#[cfg(feature = "distributed")]
pub mod distributed;
pub mod dml;
pub mod formats;
pub mod functions;
pub mod keys;
pub mod planner;
pub mod provider;
pub mod session;
pub mod versions;
pub mod write_errors;

pub use session::{StrataSession, open};
