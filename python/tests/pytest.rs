//! Runs the Python package's pytest suite (`python/tests/test_*.py`) against the extension
//! module built from this checkout, so `cargo test --workspace` tests the
//! package on a machine with only Rust and `python3` (with `venv`) installed.
//!
//! How, without a second build of anything: the first test builds this package's `cdylib`
//! (`<target>/<profile>/libstrata_python.so`) with the features `cargo test --workspace`
//! resolved, so only that library is linked (see [`extension`]). Each test copies the Python
//! sources (`python/strata/*.py`) into a temporary package directory, links the library there
//! as `_strata.abi3.so` and runs `python -m pytest` on one test file with that directory first
//! on `PYTHONPATH`, in the venv `scripts/python-test-venv.sh` sets up (pinned pytest, pyarrow,
//! pandas, polars, datafusion-python, maturin; made once per target directory, reused after).
//!
//! Run: `cargo test --workspace --test pytest` (`--workspace`, not `-p strata-python`: the
//! features of the whole workspace, so nothing is built a second time).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

#[path = "../../tests/support/workspace_build.rs"]
mod workspace_build;

use workspace_build::profile_dir;

fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's interpreter, after setting the venv up once per test process.
fn venv_python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let target = profile_dir()
            .parent()
            .expect("the profile directory has a parent")
            .to_path_buf();
        let venv = target.join("python-test-venv");
        let script = python_dir().join("../scripts/python-test-venv.sh");
        let status = Command::new("bash")
            .arg(&script)
            .env("STRATA_PYTHON_VENV", &venv)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
        venv.join("bin").join("python")
    })
}

/// The extension module of this profile, after making sure it is built.
///
/// `cargo test` builds no `cdylib` for an integration test (only linkable libraries), so the
/// first call runs `cargo build --workspace --lib --examples` into the same target directory:
/// `--workspace` and `--examples` give the feature resolution `cargo test --workspace` used
/// (dev-dependencies included), so every dependency is fresh and only this crate's library is
/// linked (`tests/support/workspace_build.rs`, shared with `tests/examples.rs`).
fn extension() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        workspace_build::build_workspace(
            &python_dir().join("../Cargo.toml"),
            &["--lib", "--examples"],
        );
        let profile_dir = profile_dir();
        let name = if cfg!(target_os = "macos") {
            "libstrata_python.dylib"
        } else {
            "libstrata_python.so"
        };
        let lib = profile_dir.join(name);
        assert!(lib.exists(), "{} is missing after the build", lib.display());
        lib
    })
}

/// A temporary directory holding the importable `strata` package.
fn package_dir() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temporary directory");
    let pkg = root.path().join("strata");
    std::fs::create_dir(&pkg).expect("package directory");
    for entry in std::fs::read_dir(python_dir().join("strata")).expect("list python/strata") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "py") {
            std::fs::copy(&path, pkg.join(path.file_name().unwrap())).expect("copy source");
        }
    }
    // A link, not a copy: the debug library is a few hundred MB and the tests run in parallel.
    #[cfg(unix)]
    std::os::unix::fs::symlink(extension(), pkg.join("_strata.abi3.so")).expect("link");
    #[cfg(not(unix))]
    std::fs::copy(extension(), pkg.join("_strata.abi3.so")).expect("copy the extension");
    root
}

/// Runs pytest on `python/tests/<file>` and checks it passed.
fn pytest(file: &str) {
    let python = venv_python();
    let package = package_dir();
    let scratch = tempfile::tempdir().expect("scratch directory");
    let output = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"])
        .arg(python_dir().join("tests").join(file))
        .env("PYTHONPATH", package.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TMPDIR", scratch.path())
        .env("STRATA_PYTHON_DIR", python_dir())
        .current_dir(scratch.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest {file} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    println!("{stdout}");
}

#[test]
fn test_api() {
    pytest("test_api.py");
}

#[test]
fn test_errors() {
    pytest("test_errors.py");
}

#[test]
fn test_crash() {
    pytest("test_crash.py");
}

#[test]
fn test_threads() {
    pytest("test_threads.py");
}

#[test]
fn test_datafusion() {
    pytest("test_datafusion.py");
}

#[test]
fn test_examples() {
    pytest("test_examples.py");
}

/// Every `python/tests/test_*.py` has a test above (a new file must get one).
#[test]
fn every_test_file_is_run() {
    let source = include_str!("pytest.rs");
    for entry in std::fs::read_dir(python_dir().join("tests")).expect("list python/tests") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("test_") && name.ends_with(".py") {
            assert!(
                source.contains(&format!("pytest(\"{name}\")")),
                "python/tests/{name} is not run by python/tests/pytest.rs"
            );
        }
    }
}
