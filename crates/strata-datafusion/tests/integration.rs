//! The SQL layer's integration tests, one test binary (each test binary links DataFusion, so
//! one binary instead of one per file saves a link and about 300 MB of disk per file in a debug
//! build). Each module is one subject; run one with a filter on its module path:
//!
//! ```text
//! cargo test -p strata-datafusion --test integration -- sql::
//! ```
//!
//! The sqllogictest runners (`sqllogictest`, `sqllogictest_s3`) are test binaries of their own:
//! they have their own `main`.

#[path = "../../strata-engine/tests/s3_server/mod.rs"]
mod s3_server;

mod bulk_crash;
mod catalog;
mod catalog_crash;
mod distributed;
mod formats;
mod model;
mod scan_fast_path;
mod sql;
