//! Runs every example in `examples/` so none rots: one `cargo build --workspace --examples`
//! (a no-op when `cargo test --workspace` has already built them), then each example binary
//! as a subprocess with its own temporary directory as `TMPDIR`, small data, and a check of
//! its exit status, of a line of its output, and that it cleaned up its temporary files.
//!
//! Run: `cargo test --test examples`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding the example binaries, after building them once for every test.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test binary is `<target>/<profile dir>/deps/examples-<hash>`.
        let exe = std::env::current_exe().expect("path of the test binary");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test binary lives in <target>/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir
            .parent()
            .expect("the profile directory has a parent")
            .to_path_buf();
        // `--workspace`: the same packages as the README's `cargo test --workspace`, so the
        // same feature unification and the binaries that command already built are fresh.
        // Building only this package would resolve other features and rebuild every
        // dependency a second time into the same target directory.
        let mut build = Command::new(env!("CARGO"));
        build
            .args([
                "build",
                "--quiet",
                "--workspace",
                "--examples",
                "--manifest-path",
            ])
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir);
        // The variables cargo sets for this test process describe this package; build scripts
        // (ring's, the `cc` crate's) watch some of them with `rerun-if-env-changed`, so
        // passing them on would rerun those scripts and rebuild everything above them.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_EXE_")
                || matches!(
                    name.as_ref(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                )
            {
                build.env_remove(name.as_ref());
            }
        }
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(other) => {
                build.args(["--profile", other]);
            }
            None => panic!("no profile directory name in {}", profile_dir.display()),
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "cargo build --examples failed: {status}");
        profile_dir.join("examples")
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
