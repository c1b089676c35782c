//! The sqllogictest suite against databases on S3-compatible object storage: the runner of
//! `sqllogictest.rs` with `STRATA_SLT_S3` set, so each file runs against `s3://<bucket>/db` on
//! a `moto` server on loopback (started by the runner; see `crates/strata-engine/tests/s3.rs`).
//!
//! ```text
//! cargo test -p strata-datafusion --test sqllogictest_s3 [-- <file-word>...]
//! ```

#[allow(dead_code)]
#[path = "sqllogictest.rs"]
mod runner;

fn main() {
    // SAFETY: the process has one thread here.
    unsafe { std::env::set_var("STRATA_SLT_S3", "1") };
    runner::main();
}
