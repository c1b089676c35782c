//! # strata-datafusion
//!
//! Strata tables as Apache DataFusion tables: a [`StrataSession`] is a DataFusion
//! `SessionContext` over one Strata database whose default catalog is Strata's own, so
//! `CREATE TABLE ... PRIMARY KEY` makes a persistent LSM table and every DataFusion feature
//! (joins, aggregates, window functions, format I/O) works over it.
//!
//! Module map: `session` (the context over a database), `catalog` (persistent schema
//! provider: CREATE/DROP TABLE), `provider` (the `TableProvider`: key-range pushdown and the
//! scan plan), `dml` (INSERT/DELETE/UPDATE/TRUNCATE as atomic write batches), `functions`
//! (table functions over the engine's state and sample data), `formats` (file formats beyond
//! DataFusion's defaults, such as ORC).

#![warn(missing_docs)]

pub mod catalog;
pub mod dml;
pub mod formats;
pub mod functions;
pub mod provider;
pub mod session;

pub use session::{StrataSession, open};
