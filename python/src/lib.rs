//! `strata._strata`: the native half of the `strata` Python package (pyo3, abi3 for
//! Python >= 3.10). The Python half (`python/strata/__init__.py`) wraps these classes with
//! the friendly conversions (pandas and polars, rows as dicts, the `db.kv` facade); everything
//! that touches data or the engine is here.
//!
//! What it owns and its invariants:
//!
//! * **Zero copy**: data crosses between Python and Rust only through the Arrow C data and
//!   stream interfaces (`arrow-pyarrow`): inserts read a `pyarrow` stream, queries hand back
//!   `pyarrow.RecordBatch`es over the same buffers DataFusion produced.
//! * **The GIL is released** (`Python::detach`) around every engine call and while a query
//!   runs, so Python threads sharing one database run their calls in parallel.
//! * **Ctrl-C cancels a query**: SQL runs as a task on one shared tokio runtime; the calling
//!   thread waits for it in slices of [`SIGNAL_CHECK`], checks Python's signals between slices
//!   and, on `KeyboardInterrupt`, aborts the task (dropping its streams stops the plan).
//! * **No panic crosses into Python**: engine and DataFusion errors become the
//!   `strata.StrataError` hierarchy with the engine's message (a locked database is
//!   `LockedError`, bad stored bytes `CorruptionError`, bad input `InvalidInputError`); a
//!   panic inside a call is caught and raised as `InternalError`.
//! * **Closing**: `Database.close()` shuts the engine down through the shared handle
//!   ([`strata_engine::Db::close_shared`]) even while tables or results still point at it;
//!   their later calls raise `ClosedError`.
//!
//! Why the crate is only a `cdylib` (and how `cargo test --workspace` copes): with pyo3's
//! `extension-module` feature the library leaves every `Py*` symbol undefined, to be resolved
//! by the interpreter that loads it, so it builds on a machine without Python headers or
//! `libpython` (only `python3` and its `venv` module). An executable cannot leave them
//! undefined, so no Rust test target may link this code: the crate has no `rlib`, no unit
//! test and no doctest target (`test = false`, `doctest = false`). Its one integration test,
//! `tests/pytest.rs`, does not link it either: cargo builds no `cdylib` for integration tests,
//! so that test runs `cargo build --workspace --lib --examples` (the feature resolution of
//! `cargo test --workspace`, so every dependency is already fresh and only this library is
//! linked), copies `libstrata_python.so` into a temporary copy of the Python package as
//! `strata/_strata.abi3.so` and runs pytest on it in a venv that
//! `scripts/python-test-venv.sh` makes once — no second build of any dependency.

use std::future::Future;
use std::ops::Bound as KeyBound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ffi_stream::ArrowArrayStreamReader;
use arrow::util::pretty::pretty_format_batches;
use arrow_pyarrow::{FromPyArrow, PyArrowType, ToPyArrow};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::table_provider::FFI_TableProvider;
use futures::StreamExt;
use pyo3::IntoPyObjectExt;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyCapsule, PyDict, PyList, PyString, PyTuple};
use strata_datafusion::StrataSession;
use strata_datafusion::provider::StrataTable;
use strata_engine::{
    Db, Error as EngineError, ErrorKind, KeyRange, KeyValue, KvScan, MemtableKind, Options,
    Profile, ScanIter, ScanOptions,
};
use tokio::runtime::Runtime;

create_exception!(
    strata,
    StrataError,
    PyException,
    "Every error Strata raises; the message is the engine's."
);
create_exception!(
    strata,
    InvalidInputError,
    StrataError,
    "The request is wrong: bad SQL, schema, key, argument or unknown table."
);
create_exception!(
    strata,
    CorruptionError,
    StrataError,
    "Stored bytes failed a checksum or format check."
);
create_exception!(
    strata,
    UnavailableError,
    StrataError,
    "The environment failed: an I/O error, a full disk, a stalled write."
);
create_exception!(
    strata,
    LockedError,
    UnavailableError,
    "The database is open in another process or handle."
);
create_exception!(
    strata,
    ClosedError,
    StrataError,
    "The database (or the handle) is closed."
);
create_exception!(
    strata,
    InternalError,
    StrataError,
    "A broken invariant inside Strata (a bug): please report it."
);

/// How long a waiting thread sleeps between two checks of Python's signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Rows per engine write when an insert hands over a larger batch (slices share buffers).
pub const INSERT_CHUNK_ROWS: usize = 64 * 1024;

/// The tokio runtime every query of the process runs on (made when the module is imported).
static RUNTIME: OnceLock<Runtime> = OnceLock::new();

fn runtime() -> PyResult<&'static Runtime> {
    RUNTIME
        .get()
        .ok_or_else(|| InternalError::new_err("the strata runtime is not initialised"))
}

/// The Python exception of an engine error, with the engine's message.
fn engine_err(error: &EngineError) -> PyErr {
    exception_for(error, error.to_string())
}

fn exception_for(error: &EngineError, message: String) -> PyErr {
    if matches!(error, EngineError::Locked { .. }) {
        return LockedError::new_err(message);
    }
    match error.kind() {
        ErrorKind::Invalid => InvalidInputError::new_err(message),
        ErrorKind::Unavailable => UnavailableError::new_err(message),
        ErrorKind::Closed => ClosedError::new_err(message),
        ErrorKind::Corruption => CorruptionError::new_err(message),
        ErrorKind::Internal => InternalError::new_err(message),
    }
}

/// The Python exception of a DataFusion error: the class of the engine error inside it when
/// there is one, else by DataFusion's own category.
fn df_err(error: DataFusionError) -> PyErr {
    let message = error.to_string();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = cause {
        if let Some(engine) = e.downcast_ref::<EngineError>() {
            return exception_for(engine, message);
        }
        if let Some(DataFusionError::External(inner)) = e.downcast_ref::<DataFusionError>()
            && let Some(engine) = inner.downcast_ref::<EngineError>()
        {
            return exception_for(engine, message);
        }
        cause = e.source();
    }
    // Some layers carry an engine error as text only (an execution error built from its
    // message); the engine's messages for these two start the same way every time.
    if message.contains("corruption in ") {
        return CorruptionError::new_err(message);
    }
    if message.contains("is already open in another process or handle") {
        return LockedError::new_err(message);
    }
    match error.find_root() {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => InvalidInputError::new_err(message),
        DataFusionError::ResourcesExhausted(_) | DataFusionError::IoError(_) => {
            UnavailableError::new_err(message)
        }
        DataFusionError::Internal(_) => InternalError::new_err(message),
        _ => StrataError::new_err(message),
    }
}

fn arrow_err(error: ArrowError) -> PyErr {
    if let ArrowError::ExternalError(inner) = &error
        && let Some(engine) = inner.downcast_ref::<EngineError>()
    {
        return engine_err(engine);
    }
    InvalidInputError::new_err(error.to_string())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Runs `f` without the GIL, turning a panic into `InternalError`.
fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> PyResult<T> + Send,
    T: Send,
{
    py.detach(|| match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(InternalError::new_err(format!(
            "strata panicked: {}",
            panic_message(payload.as_ref())
        ))),
    })
}

/// Runs `future` on the runtime and waits for it without the GIL, checking Python's signals
/// every [`SIGNAL_CHECK`]: a `KeyboardInterrupt` (or any signal handler's exception) aborts
/// the task, which drops the running plan, and is raised.
fn wait<T, F>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = Result<T, DataFusionError>> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    let mut handle = rt.spawn(future);
    loop {
        let done = detached(py, || {
            Ok(rt.block_on(async { tokio::time::timeout(SIGNAL_CHECK, &mut handle).await }))
        })?;
        match done {
            Ok(Ok(result)) => return result.map_err(df_err),
            Ok(Err(join)) if join.is_panic() => {
                return Err(InternalError::new_err(format!(
                    "strata panicked: {}",
                    panic_message(join.into_panic().as_ref())
                )));
            }
            Ok(Err(join)) => return Err(StrataError::new_err(format!("query stopped: {join}"))),
            Err(_elapsed) => {
                if let Err(interrupt) = py.check_signals() {
                    handle.abort();
                    return Err(interrupt);
                }
            }
        }
    }
}

/// The database directory a `path_or_url` names: a path, or a `file://` URL of one.
fn local_path(location: &str) -> PyResult<String> {
    if let Some(path) = location.strip_prefix("file://") {
        if path.is_empty() {
            return Err(InvalidInputError::new_err("file:// URL without a path"));
        }
        return Ok(path.to_string());
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(InvalidInputError::new_err(format!(
            "cannot open {location}: only local databases (a directory or a file:// URL) are \
             supported, not {scheme}://"
        )));
    }
    if location.is_empty() {
        return Err(InvalidInputError::new_err("empty database path"));
    }
    Ok(location.to_string())
}

fn options(profile: Option<&str>, memtable: Option<&str>) -> PyResult<Options> {
    let mut options = match profile {
        Some(name) => name
            .parse::<Profile>()
            .map_err(|e| engine_err(&e))?
            .options(),
        None => Options::default(),
    };
    if let Some(kind) = memtable {
        options.table_defaults.memtable_kind =
            kind.parse::<MemtableKind>().map_err(|e| engine_err(&e))?;
    }
    Ok(options)
}

/// Opens (or creates) the database at `path` (a directory or a `file://` URL).
#[pyfunction]
#[pyo3(signature = (path, profile=None, memtable=None))]
fn open(
    py: Python<'_>,
    path: &str,
    profile: Option<&str>,
    memtable: Option<&str>,
) -> PyResult<Database> {
    let dir = local_path(path)?;
    let options = options(profile, memtable)?;
    let session = detached(py, || {
        let db = Db::open(&dir, options).map_err(|e| engine_err(&e))?;
        StrataSession::from_db(Arc::new(db), None).map_err(df_err)
    })?;
    Ok(Database::new(session, dir))
}

/// A throw-away database in a temporary directory, deleted when it is closed.
#[pyfunction]
#[pyo3(signature = (profile=None, memtable=None))]
fn memory(py: Python<'_>, profile: Option<&str>, memtable: Option<&str>) -> PyResult<Database> {
    let options = options(profile, memtable)?;
    let session = detached(py, || StrataSession::memory_with(options).map_err(df_err))?;
    let dir = session.db().path().display().to_string();
    Ok(Database::new(session, dir))
}

/// An open database and its SQL session.
#[pyclass(module = "strata._strata", frozen)]
struct Database {
    session: RwLock<Option<Arc<StrataSession>>>,
    path: String,
}

impl Database {
    fn new(session: StrataSession, path: String) -> Self {
        Database {
            session: RwLock::new(Some(Arc::new(session))),
            path,
        }
    }

    fn session(&self) -> PyResult<Arc<StrataSession>> {
        self.session
            .read()
            .map_err(|_| InternalError::new_err("database state poisoned"))?
            .clone()
            .ok_or_else(|| ClosedError::new_err(format!("database {} is closed", self.path)))
    }
}

#[pymethods]
impl Database {
    /// The database directory.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// True once `close()` ran.
    #[getter]
    fn closed(&self) -> bool {
        self.session.read().map(|s| s.is_none()).unwrap_or(true)
    }

    /// Plans one SQL statement; DDL, DML and COPY run now, queries when their result is read.
    fn sql(&self, py: Python<'_>, query: String) -> PyResult<QueryResult> {
        let session = self.session()?;
        let planner = Arc::clone(&session);
        let df = wait(py, async move { planner.sql(&query).await })?;
        let eager = matches!(
            df.logical_plan(),
            LogicalPlan::Dml(_) | LogicalPlan::Copy(_)
        );
        let state = if eager {
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = wait(py, async move { df.collect().await })?;
            ResultState::Done(schema, batches)
        } else {
            ResultState::Plan(df)
        };
        Ok(QueryResult {
            state,
            _session: session,
        })
    }

    /// Creates a table with `schema` (a `pyarrow.Schema`) keyed by `primary_key`.
    fn create_table(
        &self,
        py: Python<'_>,
        name: String,
        schema: PyArrowType<Schema>,
        primary_key: Vec<String>,
    ) -> PyResult<Table> {
        let session = self.session()?;
        let schema = Arc::new(schema.0);
        detached(py, move || {
            let key: Vec<&str> = primary_key.iter().map(String::as_str).collect();
            let table = session
                .db()
                .create_table(&name, schema, &key)
                .map_err(|e| engine_err(&e))?;
            Ok(Table { table })
        })
    }

    /// The table `name`.
    fn table(&self, py: Python<'_>, name: String) -> PyResult<Table> {
        let session = self.session()?;
        detached(py, move || {
            let table = session.db().table(&name).map_err(|e| engine_err(&e))?;
            Ok(Table { table })
        })
    }

    /// Names of the tables (key-value stores included).
    fn tables(&self) -> PyResult<Vec<String>> {
        let session = self.session()?;
        Ok(session
            .db()
            .list_tables()
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// The key-value store `name`, created on first use.
    fn kv(&self, py: Python<'_>, name: String) -> PyResult<KvStore> {
        let session = self.session()?;
        detached(py, move || {
            let store = session.db().kv(&name).map_err(|e| engine_err(&e))?;
            Ok(KvStore { store })
        })
    }

    /// Flushes every table's memtables to SSTs.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let session = self.session()?;
        detached(py, move || session.db().flush().map_err(|e| engine_err(&e)))
    }

    /// Syncs the WAL, stops background work and releases the directory lock. Idempotent;
    /// tables and results of this database raise `ClosedError` afterwards.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .session
            .write()
            .map_err(|_| InternalError::new_err("database state poisoned"))?
            .take();
        let Some(session) = taken else {
            return Ok(());
        };
        detached(py, move || {
            let result = session.db().close_shared().map_err(|e| engine_err(&e));
            drop(session);
            result
        })
    }
}

enum ResultState {
    /// A query, run when read (each read runs it again).
    Plan(DataFrame),
    /// The output of a statement that already ran.
    Done(SchemaRef, Vec<RecordBatch>),
}

/// The result of `Database.sql`.
#[pyclass(module = "strata._strata", frozen)]
struct QueryResult {
    state: ResultState,
    /// Keeps the session (and a memory database's directory) alive while the result lives.
    _session: Arc<StrataSession>,
}

impl QueryResult {
    fn collect_batches(&self, py: Python<'_>) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
        match &self.state {
            ResultState::Done(schema, batches) => Ok((Arc::clone(schema), batches.clone())),
            ResultState::Plan(df) => {
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let df = df.clone();
                let batches = wait(py, async move { df.collect().await })?;
                Ok((schema, batches))
            }
        }
    }
}

#[pymethods]
impl QueryResult {
    /// The result's `pyarrow.Schema`.
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.state {
            ResultState::Done(schema, _) => schema.to_pyarrow(py),
            ResultState::Plan(df) => df.schema().as_arrow().to_pyarrow(py),
        }
    }

    /// Runs the query to the end: `(pyarrow.Schema, [pyarrow.RecordBatch])`.
    fn collect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (schema, batches) = self.collect_batches(py)?;
        let list = PyList::empty(py);
        for batch in &batches {
            list.append(batch.to_pyarrow(py)?)?;
        }
        PyTuple::new(py, [schema.to_pyarrow(py)?, list.into_any()])
    }

    /// Streams the result batch by batch.
    fn stream(&self, py: Python<'_>) -> PyResult<BatchStream> {
        match &self.state {
            ResultState::Done(schema, batches) => Ok(BatchStream {
                schema: Arc::clone(schema),
                source: Mutex::new(StreamSource::Done(batches.clone().into_iter())),
            }),
            ResultState::Plan(df) => {
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let df = df.clone();
                let stream = wait(py, async move { df.execute_stream().await })?;
                Ok(BatchStream {
                    schema,
                    source: Mutex::new(StreamSource::Running(Some(stream))),
                })
            }
        }
    }

    /// The first `limit` rows as a table drawn in text.
    #[pyo3(signature = (limit=20))]
    fn format(&self, py: Python<'_>, limit: usize) -> PyResult<String> {
        let batches = match &self.state {
            ResultState::Done(_, batches) => batches.clone(),
            ResultState::Plan(df) => {
                // Reads only as many batches as the first `limit` rows need, then drops the
                // stream (which stops the plan); works for every statement, EXPLAIN too.
                let df = df.clone();
                wait(py, async move {
                    let mut stream = df.execute_stream().await?;
                    let (mut batches, mut rows) = (Vec::new(), 0);
                    while rows < limit {
                        let Some(batch) = stream.next().await.transpose()? else {
                            break;
                        };
                        rows += batch.num_rows();
                        batches.push(batch);
                    }
                    Ok(batches)
                })?
            }
        };
        let mut rows = 0;
        let shown: Vec<RecordBatch> = batches
            .iter()
            .filter_map(|b| {
                let take = b.num_rows().min(limit - rows);
                rows += take;
                (take > 0).then(|| b.slice(0, take))
            })
            .collect();
        pretty_format_batches(&shown)
            .map(|t| t.to_string())
            .map_err(arrow_err)
    }
}

enum StreamSource {
    Done(std::vec::IntoIter<RecordBatch>),
    /// `None` while a `next` is in flight or after the end (or a cancellation).
    Running(Option<SendableRecordBatchStream>),
}

/// A running query, read one `pyarrow.RecordBatch` at a time.
#[pyclass(module = "strata._strata", frozen)]
struct BatchStream {
    schema: SchemaRef,
    source: Mutex<StreamSource>,
}

#[pymethods]
impl BatchStream {
    /// The batches' `pyarrow.Schema`.
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.schema.to_pyarrow(py)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let taken = {
            let mut source = self
                .source
                .lock()
                .map_err(|_| InternalError::new_err("stream state poisoned"))?;
            match &mut *source {
                StreamSource::Done(batches) => {
                    return batches.next().map(|b| b.to_pyarrow(py)).transpose();
                }
                StreamSource::Running(stream) => stream.take(),
            }
        };
        let Some(mut stream) = taken else {
            return Ok(None);
        };
        let (stream, item) = wait(py, async move {
            let item = stream.next().await;
            Ok((stream, item))
        })?;
        match item {
            None => Ok(None),
            Some(Err(e)) => Err(df_err(e)),
            Some(Ok(batch)) => {
                if let Ok(mut source) = self.source.lock() {
                    *source = StreamSource::Running(Some(stream));
                }
                batch.to_pyarrow(py).map(Some)
            }
        }
    }
}

/// Value 0 of a primitive `column` of type `T` as a Python object.
fn scalar<'py, T>(py: Python<'py>, column: &ArrayRef) -> PyResult<Bound<'py, PyAny>>
where
    T: ArrowPrimitiveType,
    T::Native: IntoPyObject<'py>,
{
    column.as_primitive::<T>().value(0).into_bound_py_any(py)
}

/// Row 0 of `batch` as a dict, or `None` when a column has a type this does not convert.
fn row_dict<'py>(py: Python<'py>, batch: &RecordBatch) -> PyResult<Option<Bound<'py, PyDict>>> {
    let dict = PyDict::new(py);
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let value: Bound<'py, PyAny> = if column.is_null(0) {
            py.None().into_bound(py)
        } else {
            match column.data_type() {
                DataType::Boolean => PyBool::new(py, column.as_boolean().value(0))
                    .to_owned()
                    .into_any(),
                DataType::Int8 => scalar::<Int8Type>(py, column)?,
                DataType::Int16 => scalar::<Int16Type>(py, column)?,
                DataType::Int32 => scalar::<Int32Type>(py, column)?,
                DataType::Int64 => scalar::<Int64Type>(py, column)?,
                DataType::UInt8 => scalar::<UInt8Type>(py, column)?,
                DataType::UInt16 => scalar::<UInt16Type>(py, column)?,
                DataType::UInt32 => scalar::<UInt32Type>(py, column)?,
                DataType::UInt64 => scalar::<UInt64Type>(py, column)?,
                DataType::Float32 => f64::from(column.as_primitive::<Float32Type>().value(0))
                    .into_pyobject(py)?
                    .into_any(),
                DataType::Float64 => scalar::<Float64Type>(py, column)?,
                DataType::Utf8 => PyString::new(py, column.as_string::<i32>().value(0)).into_any(),
                DataType::LargeUtf8 => {
                    PyString::new(py, column.as_string::<i64>().value(0)).into_any()
                }
                DataType::Utf8View => {
                    PyString::new(py, column.as_string_view().value(0)).into_any()
                }
                DataType::Binary => PyBytes::new(py, column.as_binary::<i32>().value(0)).into_any(),
                DataType::LargeBinary => {
                    PyBytes::new(py, column.as_binary::<i64>().value(0)).into_any()
                }
                DataType::BinaryView => {
                    PyBytes::new(py, column.as_binary_view().value(0)).into_any()
                }
                _ => return Ok(None),
            }
        };
        dict.set_item(field.name(), value)?;
    }
    Ok(Some(dict))
}

/// Converts a Python key (a scalar, or a tuple for a composite key) to engine key values.
fn key_values(key: &Bound<'_, PyAny>) -> PyResult<Vec<KeyValue>> {
    if let Ok(tuple) = key.cast::<PyTuple>() {
        return tuple.iter().map(|v| key_value(&v)).collect();
    }
    Ok(vec![key_value(key)?])
}

fn key_value(value: &Bound<'_, PyAny>) -> PyResult<KeyValue> {
    if let Ok(b) = value.cast::<pyo3::types::PyBool>() {
        return Ok(KeyValue::Boolean(b.is_true()));
    }
    if value.is_instance_of::<pyo3::types::PyInt>() {
        return value.extract::<i128>().map(KeyValue::Int).map_err(|_| {
            InvalidInputError::new_err(format!("key value {value} does not fit in 128 bits"))
        });
    }
    if value.is_instance_of::<pyo3::types::PyFloat>() {
        return Ok(KeyValue::Float(value.extract::<f64>()?));
    }
    if value.is_instance_of::<pyo3::types::PyString>() {
        return Ok(KeyValue::Utf8(value.extract::<String>()?));
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(KeyValue::Binary(bytes.as_bytes().to_vec()));
    }
    if value.is_none() {
        return Err(InvalidInputError::new_err("a key value cannot be None"));
    }
    Err(InvalidInputError::new_err(format!(
        "unsupported key value {} of type {}: expected bool, int, float, str or bytes",
        value.repr()?,
        value.get_type().name()?
    )))
}

/// One table of a database.
#[pyclass(module = "strata._strata", frozen)]
struct Table {
    table: strata_engine::Table,
}

#[pymethods]
impl Table {
    /// The table's name.
    #[getter]
    fn name(&self) -> String {
        self.table.name().to_string()
    }

    /// The primary key's columns, in key order.
    #[getter]
    fn primary_key(&self) -> Vec<String> {
        self.table.primary_key().to_vec()
    }

    /// The table's `pyarrow.Schema`.
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.table.schema().to_pyarrow(py)
    }

    /// Upserts every batch of an Arrow stream (anything with `__arrow_c_stream__`); returns
    /// the number of rows written. Each engine write is atomic (batches are split into
    /// writes of at most `INSERT_CHUNK_ROWS` rows).
    fn insert_stream(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u64> {
        let reader = ArrowArrayStreamReader::from_pyarrow_bound(data)?;
        let table = self.table.clone();
        detached(py, move || {
            let mut rows = 0;
            for batch in reader {
                let batch = batch.map_err(arrow_err)?;
                let mut offset = 0;
                while offset < batch.num_rows() {
                    let len = INSERT_CHUNK_ROWS.min(batch.num_rows() - offset);
                    rows += table
                        .insert(&batch.slice(offset, len))
                        .map_err(|e| engine_err(&e))?;
                    offset += len;
                }
            }
            Ok(rows)
        })
    }

    /// Deletes the rows whose keys are the rows of `keys` (a `pyarrow.RecordBatch` of the key
    /// columns); returns the number of keys deleted.
    fn delete_batch(&self, py: Python<'_>, keys: PyArrowType<RecordBatch>) -> PyResult<u64> {
        let table = self.table.clone();
        detached(py, move || {
            table.delete(&keys.0).map_err(|e| engine_err(&e))
        })
    }

    /// Deletes the rows with the given keys (scalars, or tuples for a composite key).
    fn delete_keys(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<u64> {
        let keys: Vec<Vec<KeyValue>> = keys
            .try_iter()?
            .map(|k| key_values(&k?))
            .collect::<PyResult<_>>()?;
        let table = self.table.clone();
        detached(py, move || {
            table.delete_keys(&keys).map_err(|e| engine_err(&e))
        })
    }

    /// The newest row with `key` as a dict when every column is a boolean, integer, float,
    /// string or binary column (built here, without pyarrow: the per-call cost of point
    /// lookups), else as a one-row `pyarrow.RecordBatch`; `None` when there is no such row.
    fn get_row<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let key = key_values(key)?;
        let table = &self.table;
        let row = detached(py, || table.get(&key).map_err(|e| engine_err(&e)))?;
        let Some(batch) = row else {
            return Ok(None);
        };
        match row_dict(py, &batch)? {
            Some(dict) => Ok(Some(dict.into_any())),
            None => batch.to_pyarrow(py).map(Some),
        }
    }

    /// The newest row with `key` as a one-row `pyarrow.RecordBatch`, or `None`.
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let key = key_values(key)?;
        let table = &self.table;
        let row = detached(py, || table.get(&key).map_err(|e| engine_err(&e)))?;
        row.map(|batch| batch.to_pyarrow(py)).transpose()
    }

    /// Streams the rows with `start <= key < end` in key order, batch by batch (a bound may
    /// be a key prefix), only `columns` if given.
    #[pyo3(signature = (start=None, end=None, columns=None))]
    fn scan<'py>(
        &self,
        py: Python<'py>,
        start: Option<&Bound<'py, PyAny>>,
        end: Option<&Bound<'py, PyAny>>,
        columns: Option<Vec<String>>,
    ) -> PyResult<ScanBatches> {
        let lower = start.map(key_values).transpose()?;
        let upper = end.map(key_values).transpose()?;
        let full = self.table.schema();
        let mut options = ScanOptions::default();
        let schema = match &columns {
            None => full,
            Some(names) => {
                let indices: Vec<usize> = names
                    .iter()
                    .map(|n| {
                        full.index_of(n).map_err(|_| {
                            InvalidInputError::new_err(format!(
                                "table {} has no column '{n}'",
                                self.table.name()
                            ))
                        })
                    })
                    .collect::<PyResult<_>>()?;
                let projected = full.project(&indices).map_err(arrow_err)?;
                options = options.with_projection(indices);
                Arc::new(projected)
            }
        };
        let table = self.table.clone();
        let iter = detached(py, move || {
            let range = KeyRange::from_values(
                table.table_schema(),
                lower
                    .as_deref()
                    .map_or(KeyBound::Unbounded, KeyBound::Included),
                upper
                    .as_deref()
                    .map_or(KeyBound::Unbounded, KeyBound::Excluded),
            )
            .map_err(|e| engine_err(&e))?;
            table.scan(range, options).map_err(|e| engine_err(&e))
        })?;
        Ok(ScanBatches {
            schema,
            iter: Mutex::new(iter),
        })
    }

    /// Flushes the table's memtables to SSTs and waits for it.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let table = &self.table;
        detached(py, || table.flush().map_err(|e| engine_err(&e)))
    }

    /// Compacts the whole table and waits for it.
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        let table = &self.table;
        detached(py, || table.compact().map_err(|e| engine_err(&e)))
    }

    /// The table as a datafusion-python table provider (datafusion-ffi's
    /// `FFI_TableProvider`): filters are pushed down (key ranges prune files) and scans keep
    /// the key order. `session` is the host's session or its logical codec capsule.
    fn __datafusion_table_provider__<'py>(
        &self,
        py: Python<'py>,
        session: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let provider = StrataTable::new(self.table.clone()).map_err(df_err)?;
        let codec_attr = "__datafusion_logical_extension_codec__";
        let codec = if session.hasattr(codec_attr)? {
            session.call_method0(codec_attr)?
        } else {
            session
        };
        let capsule = codec.cast::<PyCapsule>().map_err(|_| {
            InvalidInputError::new_err(
                "expected a datafusion SessionContext or a datafusion_logical_extension_codec \
                 capsule",
            )
        })?;
        let pointer = capsule.pointer_checked(Some(c"datafusion_logical_extension_codec"))?;
        // SAFETY: the capsule's name says it holds an `FFI_LogicalExtensionCodec`, and the
        // capsule (borrowed for this call) keeps it alive while it is cloned.
        let codec = unsafe { pointer.cast::<FFI_LogicalExtensionCodec>().as_ref() }.clone();
        let ffi = FFI_TableProvider::new_with_ffi_codec(
            Arc::new(provider),
            true,
            Some(runtime()?.handle().clone()),
            codec,
        );
        PyCapsule::new_with_value(py, ffi, c"datafusion_table_provider")
    }
}

/// The batches of an engine scan, as `pyarrow.RecordBatch`es (the Python layer wraps them
/// in a `pyarrow.RecordBatchReader`, which keeps the Python exception of an error).
#[pyclass(module = "strata._strata", frozen)]
struct ScanBatches {
    schema: SchemaRef,
    iter: Mutex<ScanIter>,
}

#[pymethods]
impl ScanBatches {
    /// The batches' `pyarrow.Schema`.
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.schema.to_pyarrow(py)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let iter = &self.iter;
        let next = detached(py, || {
            let mut iter = iter
                .lock()
                .map_err(|_| InternalError::new_err("scan poisoned"))?;
            iter.next().transpose().map_err(|e| engine_err(&e))
        })?;
        next.map(|batch| batch.to_pyarrow(py)).transpose()
    }
}

/// Bytes of a key or value: `bytes`, `bytearray` or `str` (its UTF-8).
fn bytes_of(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = value.extract::<String>() {
        return Ok(s.into_bytes());
    }
    if let Ok(b) = value.extract::<Vec<u8>>() {
        return Ok(b);
    }
    Err(InvalidInputError::new_err(format!(
        "expected bytes or str, got {}",
        value.get_type().name()?
    )))
}

/// A key-value store (a table `(key BINARY PRIMARY KEY, value BINARY)`).
#[pyclass(module = "strata._strata", frozen)]
struct KvStore {
    store: strata_engine::KvStore,
}

#[pymethods]
impl KvStore {
    /// The store's name.
    #[getter]
    fn name(&self) -> String {
        self.store.table().name().to_string()
    }

    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (key, value) = (bytes_of(key)?, bytes_of(value)?);
        let store = &self.store;
        detached(py, || store.put(key, value).map_err(|e| engine_err(&e)))
    }

    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let key = bytes_of(key)?;
        let store = &self.store;
        let value = detached(py, || store.get(key).map_err(|e| engine_err(&e)))?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = bytes_of(key)?;
        let store = &self.store;
        detached(py, || store.delete(key).map_err(|e| engine_err(&e)))
    }

    /// Applies every operation of `batch` atomically.
    fn write(&self, py: Python<'_>, batch: &WriteBatch) -> PyResult<()> {
        let batch = batch
            .batch
            .lock()
            .map_err(|_| InternalError::new_err("write batch poisoned"))?
            .clone();
        let store = &self.store;
        detached(py, || store.write(&batch).map_err(|e| engine_err(&e)))
    }

    /// Iterates `(key, value)` pairs with `start <= key < end` in key order.
    #[pyo3(signature = (start=None, end=None))]
    fn scan(
        &self,
        py: Python<'_>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<KvIter> {
        let lower = match start {
            Some(k) => KeyBound::Included(bytes_of(k)?),
            None => KeyBound::Unbounded,
        };
        let upper = match end {
            Some(k) => KeyBound::Excluded(bytes_of(k)?),
            None => KeyBound::Unbounded,
        };
        let store = &self.store;
        let scan = detached(py, || {
            store.scan((lower, upper)).map_err(|e| engine_err(&e))
        })?;
        Ok(KvIter {
            scan: Mutex::new(scan),
        })
    }

    /// Flushes the store's memtables to SSTs.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let store = &self.store;
        detached(py, || store.flush().map_err(|e| engine_err(&e)))
    }
}

/// `(key, value)` pairs of a key-value scan.
#[pyclass(module = "strata._strata", frozen)]
struct KvIter {
    scan: Mutex<KvScan>,
}

#[pymethods]
impl KvIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let scan = &self.scan;
        let next = detached(py, || {
            let mut scan = scan
                .lock()
                .map_err(|_| InternalError::new_err("scan poisoned"))?;
            scan.next().transpose().map_err(|e| engine_err(&e))
        })?;
        next.map(|(k, v)| PyTuple::new(py, [PyBytes::new(py, &k), PyBytes::new(py, &v)]))
            .transpose()
    }
}

/// Puts and deletes applied together by `KvStore.write`.
#[pyclass(module = "strata._strata", frozen)]
struct WriteBatch {
    batch: Mutex<strata_engine::WriteBatch>,
}

#[pymethods]
impl WriteBatch {
    #[new]
    fn new() -> Self {
        WriteBatch {
            batch: Mutex::new(strata_engine::WriteBatch::new()),
        }
    }

    fn put(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let (key, value) = (bytes_of(key)?, bytes_of(value)?);
        self.lock()?.put(key, value);
        Ok(())
    }

    fn delete(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = bytes_of(key)?;
        self.lock()?.delete(key);
        Ok(())
    }

    fn clear(&self) -> PyResult<()> {
        self.lock()?.clear();
        Ok(())
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.lock()?.len())
    }
}

impl WriteBatch {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, strata_engine::WriteBatch>> {
        self.batch
            .lock()
            .map_err(|_| InternalError::new_err("write batch poisoned"))
    }
}

#[pymodule]
fn _strata(m: &Bound<'_, PyModule>) -> PyResult<()> {
    if RUNTIME.get().is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("strata-query")
            .build()
            .map_err(|e| StrataError::new_err(format!("cannot start the query runtime: {e}")))?;
        let _ = RUNTIME.set(rt);
    }
    let py = m.py();
    m.add("StrataError", py.get_type::<StrataError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("CorruptionError", py.get_type::<CorruptionError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(memory, m)?)?;
    m.add_class::<Database>()?;
    m.add_class::<QueryResult>()?;
    m.add_class::<BatchStream>()?;
    m.add_class::<Table>()?;
    m.add_class::<KvStore>()?;
    m.add_class::<KvIter>()?;
    m.add_class::<ScanBatches>()?;
    m.add_class::<WriteBatch>()?;
    Ok(())
}
