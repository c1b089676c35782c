//! # strata-server
//!
//! `strata serve`: one open Strata database served over Arrow Flight SQL ([`flight`]) and the
//! PostgreSQL wire protocol ([`pg`]) at the same time.
//!
//! Module map: [`config`] (the command-line options of `strata serve` and their checks),
//! [`exec`] (the one statement path both protocols share: every statement is planned and run
//! through [`strata_datafusion::StrataSession`], under the per-connection memory limit and the
//! statement timeout, and cancelled when its client goes away), [`metrics`] (the server's
//! counters and the `strata_server_metrics()` table function), [`flight`] and [`pg`] (the two
//! front ends), and [`server`] (start-up, signals and graceful shutdown).
//!
//! Invariants:
//! - Every statement of every client goes through the one `StrataSession` of the server
//!   ([`exec::Statements`]), never a bare `SessionContext`: DDL stays atomic and a Strata table
//!   cannot be replaced by a session-only object, exactly as in the REPL.
//! - A listener on a non-loopback address is only started with credentials for its protocol
//!   (checked in [`config::ServeConfig::from_args`], before the database is opened).
//! - Shutdown (SIGTERM, SIGINT) stops accepting, lets in-flight statements finish for the
//!   grace period, cancels the rest, then closes the database (WAL synced, lock released).

#![warn(missing_docs)]

pub mod config;
pub mod exec;
pub mod flight;
pub mod metrics;
pub mod pg;
pub mod server;

pub use config::{ServeArgs, ServeConfig};
pub use server::{Server, run};
