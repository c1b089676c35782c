//! Builds targets of the whole workspace from inside a test, into the running test binary's
//! target directory and profile, so the test can run what `cargo test` builds no artifact of
//! for it (the example binaries, the Python extension's `cdylib`). Included by
//! `tests/examples.rs` and `python/tests/pytest.rs` (`#[path]`: two packages' test crates).
//!
//! `--workspace`: the packages of the README's `cargo test --workspace`, so the feature
//! unification is the same and what that command built is fresh; building one package would
//! resolve other features and rebuild every dependency a second time into the same target
//! directory. The `CARGO_*` variables cargo sets for the test process describe its package;
//! build scripts (ring's, the `cc` crate's) watch some of them with `rerun-if-env-changed`,
//! so they are not passed on (passing them would rerun those scripts and rebuild everything
//! above them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `<target>/<profile>`, from this test binary's path `<target>/<profile>/deps/<name>-<hash>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Runs `cargo build --quiet --workspace <targets>` for the workspace whose root manifest is
/// `manifest`, with this test's target directory and profile; panics if the build fails.
pub fn build_workspace(manifest: &Path, targets: &[&str]) {
    let profile_dir = profile_dir();
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory has a parent");
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--quiet", "--workspace"])
        .args(targets)
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir);
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
    assert!(
        status.success(),
        "cargo build --workspace {} failed: {status}",
        targets.join(" ")
    );
}
