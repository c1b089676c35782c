//! # strata-datafusion
//!
//! Strata tables as Apache DataFusion tables: a [`StrataSession`] is a DataFusion
//! `SessionContext` over one Strata database.

#![warn(missing_docs)]

pub mod session;

pub use session::{StrataSession, open};
