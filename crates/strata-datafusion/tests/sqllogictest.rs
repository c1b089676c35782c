//! The sqllogictest runner: runs `.slt` files against Strata sessions.
//!
//! ```text
//! cargo test -p strata-datafusion --test sqllogictest                 # every sql-tests/*.slt
//! cargo test -p strata-datafusion --test sqllogictest -- dml types    # files whose name contains a word
//! cargo test -p strata-datafusion --test sqllogictest -- path/to/dir  # other files or directories
//! STRATA_SLT_PATH=dir1:file2.slt cargo test -p strata-datafusion --test sqllogictest
//! ```
//!
//! Each file runs against a fresh database in a new temporary directory, through
//! `strata_datafusion::open`, with DataFusion's own result formatting and comparison
//! (`datafusion-sqllogictest`: value conversion, normalizer, validator, strict column types),
//! so suites written for DataFusion run unchanged on Strata tables. Records are labelled
//! `Strata` and `Datafusion` for `skipif`/`onlyif`.
//!
//! Restart: a `statement ok` record whose SQL is `restart` closes the session and the
//! database and opens the same directory again (see `sql-tests/README.md`).
//!
//! On object storage: with `STRATA_SLT_S3=1` each file runs against a database at
//! `s3://<bucket>/db` (records labelled `S3` too) on a `moto` S3 server on loopback (started by the runner, as the
//! engine's object-storage tests do; `scripts/s3-test-server.sh` installs it), with its WAL in
//! the file's temporary directory.
//!
//! Every failing record is printed with its `file:line` and the expected/actual diff; the
//! run ends with `sqllogictest: N passed, M failed` and exits non-zero when anything failed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::physical_plan::common::collect;
use datafusion::physical_plan::execute_stream;
use datafusion_sqllogictest::{
    DFColumnType, DFOutput, DFSqlLogicTestError, convert_batches, convert_schema_to_types,
    df_value_validator, value_normalizer,
};
use sqllogictest::{Condition, DBOutput, Record, parse_file};
use strata_datafusion::StrataSession;
use strata_engine::Options;

#[path = "../../strata-engine/tests/s3_server/mod.rs"]
mod s3_server;

/// Labels of this runner for `skipif` / `onlyif`.
const LABELS: &[&str] = &["Strata", "Datafusion"];
/// The extra label of a run on object storage.
const S3_LABEL: &str = "S3";

/// True when the files run against databases on object storage (`STRATA_SLT_S3`).
fn on_s3() -> bool {
    std::env::var_os("STRATA_SLT_S3").is_some()
}

/// The labels of this run.
fn labels() -> Vec<&'static str> {
    let mut labels = LABELS.to_vec();
    if on_s3() {
        labels.push(S3_LABEL);
    }
    labels
}

/// Failures printed per file before the rest are only counted.
const ERRORS_PER_FILE_SHOWN: usize = 20;

/// The pseudo statement that reopens the database.
const RESTART: &str = "restart";

/// One connection: a session over the database in `path`, reopened on `restart`.
struct StrataDb {
    session: Option<StrataSession>,
    path: PathBuf,
    options: Options,
}

impl StrataDb {
    fn open(path: &Path, options: Options) -> Result<Self, DFSqlLogicTestError> {
        let session = strata_datafusion::open(path, options.clone())?;
        Ok(StrataDb {
            session: Some(session),
            path: path.to_path_buf(),
            options,
        })
    }

    fn close(&mut self) -> Result<(), DFSqlLogicTestError> {
        // Dropping the session closes its database (the directory lock is released).
        drop(self.session.take());
        Ok(())
    }

    fn restart(&mut self) -> Result<(), DFSqlLogicTestError> {
        self.close()?;
        self.session = Some(strata_datafusion::open(&self.path, self.options.clone())?);
        Ok(())
    }
}

fn is_restart(sql: &str) -> bool {
    sql.trim()
        .trim_end_matches(';')
        .trim()
        .eq_ignore_ascii_case(RESTART)
}

#[async_trait]
impl sqllogictest::AsyncDB for StrataDb {
    type Error = DFSqlLogicTestError;
    type ColumnType = DFColumnType;

    async fn run(&mut self, sql: &str) -> Result<DFOutput, DFSqlLogicTestError> {
        if is_restart(sql) {
            self.restart()?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let session = self
            .session
            .as_ref()
            .ok_or_else(|| DFSqlLogicTestError::Other("the session is closed".into()))?;
        let df = session.sql(sql).await?;
        let task_ctx = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        let schema = plan.schema();
        let stream = execute_stream(plan, task_ctx)?;
        let types = convert_schema_to_types(stream.schema().fields());
        let batches = collect(stream).await?;
        let rows = convert_batches(&schema, batches, false)?;
        if rows.is_empty() && types.is_empty() {
            Ok(DBOutput::StatementComplete(0))
        } else {
            Ok(DBOutput::Rows { types, rows })
        }
    }

    async fn shutdown(&mut self) {
        if let Err(e) = self.close() {
            eprintln!("closing {}: {e}", self.path.display());
        }
    }

    fn engine_name(&self) -> &str {
        "Strata"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// True when `conditions` skip the record under [`LABELS`].
fn skipped(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| match c {
        Condition::OnlyIf { label } => !labels().contains(&label.as_str()),
        Condition::SkipIf { label } => labels().contains(&label.as_str()),
    })
}

/// Outcome of one file.
struct FileResult {
    passed: usize,
    errors: Vec<String>,
}

async fn run_file(path: &Path) -> Result<FileResult, String> {
    let records = parse_file::<DFColumnType>(path).map_err(|e| format!("{e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let (db_path, options) = if on_s3() {
        let bucket = s3_server::bucket("slt");
        let options = Options {
            local_wal_dir: Some(dir.path().join("wal")),
            ..Options::default()
        };
        (PathBuf::from(format!("s3://{bucket}/db")), options)
    } else {
        (dir.path().join("db"), Options::default())
    };
    let mut runner = sqllogictest::Runner::new({
        let db_path = db_path.clone();
        move || {
            let (db_path, options) = (db_path.clone(), options.clone());
            async move { StrataDb::open(&db_path, options) }
        }
    });
    for label in labels() {
        runner.add_label(label);
    }
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner.with_normalizer(value_normalizer);
    runner.with_validator(df_value_validator);
    let mut result = FileResult {
        passed: 0,
        errors: Vec::new(),
    };
    for record in records {
        if let Record::Halt { .. } = record {
            break;
        }
        let counted = match &record {
            Record::Statement { conditions, .. }
            | Record::Query { conditions, .. }
            | Record::System { conditions, .. } => !skipped(conditions),
            _ => false,
        };
        match runner.run_async(record).await {
            Ok(_) if counted => result.passed += 1,
            Ok(_) => {}
            Err(e) => result.errors.push(format!("{e}")),
        }
    }
    runner.shutdown_async().await;
    Ok(result)
}

/// The `.slt` files under `path` (itself if it is a file), sorted.
fn slt_files(path: &Path, out: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.insert(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let entry = entry?.path();
        if entry.is_dir() {
            slt_files(&entry, out)?;
        } else if entry.extension().is_some_and(|e| e == "slt") {
            out.insert(entry);
        }
    }
    Ok(())
}

/// Runs the files the arguments name (the test binary's entry point; `sqllogictest_s3` calls
/// it too).
pub fn main() {
    let default_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-tests");
    let mut roots: Vec<PathBuf> = Vec::new();
    let mut filters: Vec<String> = Vec::new();
    // Arguments: paths (files or directories) and name filters; flags of the test harness
    // protocol (`--nocapture`, ...) are ignored.
    for arg in std::env::args().skip(1) {
        if arg.starts_with('-') {
            continue;
        }
        if Path::new(&arg).exists() {
            roots.push(PathBuf::from(arg));
        } else {
            filters.push(arg);
        }
    }
    if let Ok(paths) = std::env::var("STRATA_SLT_PATH") {
        roots.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    if roots.is_empty() {
        roots.push(default_dir);
    }
    let mut files = BTreeSet::new();
    for root in &roots {
        if let Err(e) = slt_files(root, &mut files) {
            eprintln!("cannot read {}: {e}", root.display());
            std::process::exit(2);
        }
    }
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            filters.is_empty() || filters.iter().any(|w| name.contains(w.as_str()))
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut passed, mut failed, mut failed_files) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    for file in &files {
        // Relative to the root it was found under (a root that is the file itself: its path).
        let shown = roots
            .iter()
            .filter_map(|root| file.strip_prefix(root).ok())
            .map(|rel| rel.display().to_string())
            .find(|rel| !rel.is_empty())
            .unwrap_or_else(|| file.display().to_string());
        let begin = Instant::now();
        match runtime.block_on(run_file(file)) {
            Ok(result) => {
                passed += result.passed;
                failed += result.errors.len();
                if result.errors.is_empty() {
                    println!(
                        "ok     {shown}: {} records ({:.1?})",
                        result.passed,
                        begin.elapsed()
                    );
                } else {
                    failed_files += 1;
                    println!(
                        "FAILED {shown}: {} passed, {} failed",
                        result.passed,
                        result.errors.len()
                    );
                    for (i, error) in result.errors.iter().enumerate() {
                        if i == ERRORS_PER_FILE_SHOWN {
                            println!("... {} more failures in {shown}", result.errors.len() - i);
                            break;
                        }
                        println!("\n{}. {error}", i + 1);
                    }
                }
            }
            Err(e) => {
                failed += 1;
                failed_files += 1;
                println!("FAILED {shown}: cannot parse: {e}");
            }
        }
    }
    println!(
        "\n{} files ({} failed) in {:.1?}",
        files.len(),
        failed_files,
        started.elapsed()
    );
    println!("sqllogictest: {passed} passed, {failed} failed");
    if files.is_empty() {
        eprintln!("no .slt files found");
        std::process::exit(2);
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
