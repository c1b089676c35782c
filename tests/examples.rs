//! Runs every example in `examples/` so none rots: one `cargo build --workspace --examples`
//! (`tests/support/workspace_build.rs`; a no-op when `cargo test --workspace` has already
//! built them), then each example binary as a subprocess with its own temporary directory as
//! `TMPDIR`, small data, and a check of its exit status, of a line of its output, and that it
//! cleaned up its temporary files.
//!
//! Run: `cargo test --test examples`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

#[path = "support/workspace_build.rs"]
mod workspace_build;

/// The directory holding the example binaries, after building them once for every test.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        workspace_build::build_workspace(&manifest, &["--examples"]);
        workspace_build::profile_dir().join("examples")
    })
}

/// Runs example `name` with `args` and returns its standard output, after checking that it
/// succeeded, printed `expected` and left no files in its temporary directory.
fn run_example(name: &str, args: &[&str], expected: &str) -> String {
    let binary = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let tmp = tempfile::tempdir().expect("temporary directory");
    let output = Command::new(&binary)
        .args(args)
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "example {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(expected),
        "example {name} did not print '{expected}':\n{stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list the temporary directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        left.is_empty(),
        "example {name} left files behind: {left:?}"
    );
    stdout
}

#[test]
fn kv_basics() {
    let out = run_example("kv_basics", &["200"], "reopened: 202 keys");
    assert!(out.contains("counter in snapshot = 1"), "{out}");
}

#[test]
fn tables_and_sql() {
    let out = run_example(
        "tables_and_sql",
        &[],
        "reopened: 6 orders (had 6), customer 4 lives in Boston",
    );
    assert!(out.contains("| Grace   | 1      | 199.8 |"), "{out}");
}

#[test]
fn format_conversions() {
    let out = run_example(
        "format_conversions",
        &["1000"],
        "every format held the same 1000 rows",
    );
    for hop in [
        "-> CSV",
        "-> NDJSON",
        "-> Parquet",
        "-> Arrow stream",
        "-> ORC",
    ] {
        assert!(out.contains(hop), "missing hop {hop}:\n{out}");
    }
}

#[test]
fn mmap_ipc() {
    let out = run_example("mmap_ipc", &["20000"], "(zero-copy)");
    assert!(out.contains("20000 rows"), "{out}");
}

#[test]
fn compute_kernels() {
    run_example(
        "compute_kernels",
        &["2000"],
        "checked against a row-by-row loop",
    );
}

#[test]
fn etl_pipeline() {
    let out = run_example("etl_pipeline", &["300"], "pipeline done");
    assert!(out.contains("200 customers after dedupe"), "{out}");
    assert!(out.contains("country=DE/"), "{out}");
}

#[test]
fn parquet_compression() {
    let out = run_example(
        "parquet_compression",
        &["5000"],
        "every file read back identical to the input",
    );
    for codec in ["snappy", "zstd(3)", "lz4_raw", "gzip(6)", "brotli(4)"] {
        assert!(out.contains(codec), "missing codec {codec}:\n{out}");
    }
}

#[test]
fn events_analytics() {
    let out = run_example("events_analytics", &["5000"], "5000 events queried");
    assert!(out.contains("StrataScanExec: table=events"), "{out}");
}

#[test]
fn crash_recover() {
    run_example(
        "crash_recover",
        &["50"],
        "every acknowledged write survived the crash",
    );
}

#[test]
fn examples_reject_bad_arguments() {
    let binary = examples_dir().join(format!("kv_basics{}", std::env::consts::EXE_SUFFIX));
    let output = Command::new(binary)
        .arg("lots")
        .output()
        .expect("run kv_basics");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("KEYS must be a number"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every file in `examples/` has a test above (a new example must get one).
#[test]
fn every_example_is_tested() {
    let source = include_str!("examples.rs");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(dir).expect("list examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(
                source.contains(&format!("fn {name}() {{")),
                "examples/{name}.rs has no test in tests/examples.rs"
            );
        }
    }
}
