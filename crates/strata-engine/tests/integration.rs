//! The engine's integration tests, one test binary (each test binary links the whole engine,
//! so one binary instead of one per file saves a link and hundreds of megabytes of disk per
//! file). Each module is one subject; run one with a filter on its module path:
//!
//! ```text
//! cargo test -p strata-engine --test integration -- crash::
//! ```
//!
//! `compaction_memory` stays a test binary of its own: it installs a counting global
//! allocator and must be the only test in its process.

mod common;
mod s3_server;

mod bulk_load;
mod catalog;
mod compaction;
mod concurrency;
mod crash;
mod db;
mod deletion_vectors;
mod flush_isolation;
mod integrity;
mod leases;
mod memtable_kinds;
mod model;
mod s3;
mod types;
