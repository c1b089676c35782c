//! Table functions over the engine's state, maintenance actions and sample data.
//!
//! | function | rows |
//! |---|---|
//! | `strata_sstables('t')` | one per SST file of `t`: level, file id, run, key range, seq range, rows, tombstones, bytes, path |
//! | `strata_memtables(['t'])` | one per memtable (every table, or `t`): kind, active/immutable, entries, bytes |
//! | `strata_metrics()` | one per engine counter or gauge (`table_name` and `level` NULL), then per table its totals (write amplification, space amplification, stall time) and per table and level its counters |
//! | `strata_compaction_stats(['t'])` | one per table and level, then a total row per table: files, bytes, flushes, compactions, moves, bytes read/written, time, write amplification; space amplification and stall time on the total row |
//! | `strata_levels('t')` | one per LSM level of `t`: files, runs, bytes, rows, key range, overlap depth, target |
//! | `strata_flush(['t'])` | flushes `t` (or every table) and returns one row per table: entries flushed, files before/after |
//! | `strata_compact('t')` | compacts every file of `t` and returns one row: files, bytes and rows before/after |
//! | `strata_tables()` | one per table of every schema: primary key, estimated rows, bytes, SST files and bytes, memtable bytes and kind |
//! | `strata_columns('t')` | one per column of `t`: name, Arrow type, nullable, in the primary key, place in the key |
//! | `strata_table_properties('t')` | one per property of `t` as text: key, row and size statistics, then every table option |
//! | `generate_events(rows [, first_id])` | the deterministic benchmark data set (see [`events`]) |
//!
//! ## Invariants
//!
//! * Every function reads the engine's state when the query *executes*, not when it is
//!   planned: `EXPLAIN SELECT * FROM strata_flush('t')` flushes nothing.
//! * `strata_flush` and `strata_compact` are side-effecting: each execution of the plan runs
//!   the action once (on a blocking thread, so the async executor is never blocked) and then
//!   returns its row.
//! * Arguments must be literals (after DataFusion's constant folding); a wrong count, a wrong
//!   type or an unknown table is a plan error naming the function.
//! * A table argument is a table of the default schema (`'t'`) or `'schema.table'` for a
//!   schema made by `CREATE SCHEMA` (see [`resolve_table`]); output rows name a table the
//!   same way ([`table_label`]). Functions over every table cover every schema.
//! * Functions hold only a weak reference to the database: a function planned after the
//!   database was closed fails with a clear error instead of keeping the database open.
//!
//! Keys are shown as text by decoding them with the table's key codec: a single-column key as
//! its value (`42`, `'ada'`), a composite key as a tuple (`(1, 'a')`); a key that does not
//! decode is shown as hex (`x'0a0b'`).

pub mod events;
mod exec;
mod maintenance;
mod state;
mod tables;

use std::sync::{Arc, Weak};

use arrow::array::{Array, ArrayRef};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use strata_engine::{DEFAULT_NAMESPACE, Db, Table, TableSchema};

pub use events::{EVENTS_PRIMARY_KEY, EventsFunction, events_create_table_sql, events_schema};
pub use exec::{OneShotExec, OneShotTable, Producer};
pub use state::{compaction_stats_batch, metrics_batch};

/// Registers Strata's table functions in `ctx`, bound to `db` (weakly: the functions fail
/// once the database is closed).
pub fn register(ctx: &SessionContext, db: &Arc<Db>) -> Result<()> {
    let db = Arc::downgrade(db);
    state::register(ctx, &db);
    maintenance::register(ctx, &db);
    tables::register(ctx, &db);
    ctx.register_udtf("generate_events", Arc::new(EventsFunction));
    Ok(())
}

/// The database behind a weak handle, or a clear error when it was closed.
pub(crate) fn upgrade(db: &Weak<Db>, function: &str) -> Result<Arc<Db>> {
    db.upgrade()
        .ok_or_else(|| DataFusionError::Execution(format!("{function}: the database is closed")))
}

/// Maps an engine error into DataFusion's error type (the engine error stays the source).
pub(crate) fn engine_error(error: strata_engine::Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// Checks the argument count of `function`: between `min` and `max` arguments.
pub(crate) fn check_arity(function: &str, args: &[Expr], min: usize, max: usize) -> Result<()> {
    if args.len() < min || args.len() > max {
        let expected = match (min, max) {
            (a, b) if a == b && a == 0 => "no arguments".to_string(),
            (a, b) if a == b => format!("{a} argument{}", if a == 1 { "" } else { "s" }),
            (a, b) => format!("{a} to {b} arguments"),
        };
        let usage = usage(function);
        return Err(DataFusionError::Plan(format!(
            "{function} takes {expected}, got {}; usage: {usage}",
            args.len()
        )));
    }
    Ok(())
}

/// How a function is called, for error messages.
fn usage(function: &str) -> &'static str {
    match function {
        "strata_sstables" => "strata_sstables('table')",
        "strata_levels" => "strata_levels('table')",
        "strata_memtables" => "strata_memtables() or strata_memtables('table')",
        "strata_metrics" => "strata_metrics()",
        "strata_compaction_stats" => {
            "strata_compaction_stats() or strata_compaction_stats('table')"
        }
        "strata_flush" => "strata_flush() or strata_flush('table')",
        "strata_compact" => "strata_compact('table')",
        "strata_tables" => "strata_tables()",
        "strata_columns" => "strata_columns('table')",
        "strata_table_properties" => "strata_table_properties('table')",
        "generate_events" => "generate_events(rows [, first_id])",
        _ => "see the Strata documentation",
    }
}

/// The string literal at `index` of `args`.
pub(crate) fn string_arg(function: &str, args: &[Expr], index: usize) -> Result<String> {
    match &args[index] {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Ok(s.clone()),
        Expr::Literal(value, _) => Err(DataFusionError::Plan(format!(
            "{function}: argument {} must be a string (a table name), got {} of type {}",
            index + 1,
            value,
            value.data_type()
        ))),
        other => Err(DataFusionError::Plan(format!(
            "{function}: argument {} must be a literal, got {other}",
            index + 1
        ))),
    }
}

/// The integer literal at `index` of `args`.
pub(crate) fn int_arg(function: &str, args: &[Expr], index: usize) -> Result<i64> {
    let value = match &args[index] {
        Expr::Literal(value, _) => value,
        other => {
            return Err(DataFusionError::Plan(format!(
                "{function}: argument {} must be a literal, got {other}",
                index + 1
            )));
        }
    };
    let as_i64 = match value {
        ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    };
    as_i64.ok_or_else(|| {
        DataFusionError::Plan(format!(
            "{function}: argument {} must be an integer, got {} of type {}",
            index + 1,
            value,
            value.data_type()
        ))
    })
}

/// The table `name` names, read as a SQL table reference (quotes as in SQL): `'s2.t'` is
/// table `t` of schema `s2` (one made by `CREATE SCHEMA`, or `public`, the default schema),
/// `'"a.b"'` the table `a.b` of the default schema. A name that is not such a reference is a
/// table of the default schema named exactly `name` or, as DataFusion folds unquoted
/// identifiers, `name` in lower case (so `'a.b'` still finds `"a.b"` when there is no schema
/// `a`). A plan error when there is no such table.
pub fn resolve_table(db: &Db, function: &str, name: &str) -> Result<Table> {
    let reference = TableReference::parse_str(name);
    if let TableReference::Partial { schema, table } | TableReference::Full { schema, table, .. } =
        &reference
    {
        // The engine's name of the default namespace (empty) is no schema name.
        let namespace = if schema.as_ref() != DEFAULT_NAMESPACE && db.has_namespace(schema) {
            Some(schema.as_ref())
        } else {
            (schema.as_ref() == DEFAULT_SCHEMA).then_some(DEFAULT_NAMESPACE)
        };
        if let Some(table) = namespace.and_then(|ns| db.table_in(ns, table).ok()) {
            return Ok(table);
        }
    }
    let mut candidates = vec![name.to_string(), name.to_lowercase()];
    if let TableReference::Bare { table } = &reference {
        candidates.push(table.to_string());
    }
    candidates
        .iter()
        .find_map(|candidate| db.table(candidate).ok())
        .ok_or_else(|| DataFusionError::Plan(format!("{function}: table '{name}' does not exist")))
}

/// The SQL name of the default schema that [`resolve_table`] accepts as a qualifier.
const DEFAULT_SCHEMA: &str = "public";

/// How the functions name `table` in their output, a form [`resolve_table`] takes back: its
/// name in the default schema (in double quotes if it holds a `.` or `"`, so `"s2.t"` is told
/// from table `t` of schema `s2`), `schema.name` in another (each part in double quotes
/// unless it is a plain lower-case identifier).
pub fn table_label(db: &Db, table: &Table) -> String {
    name_label(&db.table_namespace(table), table.name())
}

/// [`table_label`] of the table `name` of engine namespace `namespace`.
pub fn name_label(namespace: &str, name: &str) -> String {
    fn quoted(part: &str) -> String {
        format!("\"{}\"", part.replace('"', "\"\""))
    }
    fn plain(part: &str) -> bool {
        part.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }
    if namespace.is_empty() {
        return if name.contains(['.', '"']) {
            quoted(name)
        } else {
            name.to_string()
        };
    }
    let part = |p: &str| if plain(p) { p.to_string() } else { quoted(p) };
    format!("{}.{}", part(namespace), part(name))
}

/// Renders an encoded key readably (see the module docs).
pub fn render_key(schema: &TableSchema, key: &[u8]) -> String {
    match schema.key_codec().decode([key]) {
        Ok(columns) => render_columns(&columns).unwrap_or_else(|| hex(key)),
        Err(_) => hex(key),
    }
}

fn render_columns(columns: &[ArrayRef]) -> Option<String> {
    let mut parts = Vec::with_capacity(columns.len());
    for column in columns {
        if column.is_null(0) {
            parts.push("NULL".to_string());
            continue;
        }
        let text = arrow::util::display::array_value_to_string(column, 0).ok()?;
        let quoted = match column.data_type() {
            arrow::datatypes::DataType::Utf8
            | arrow::datatypes::DataType::LargeUtf8
            | arrow::datatypes::DataType::Utf8View => format!("'{}'", text.replace('\'', "''")),
            arrow::datatypes::DataType::Binary
            | arrow::datatypes::DataType::LargeBinary
            | arrow::datatypes::DataType::BinaryView
            | arrow::datatypes::DataType::FixedSizeBinary(_) => format!("x'{text}'"),
            arrow::datatypes::DataType::Date32
            | arrow::datatypes::DataType::Date64
            | arrow::datatypes::DataType::Timestamp(_, _)
            | arrow::datatypes::DataType::Time32(_)
            | arrow::datatypes::DataType::Time64(_) => format!("'{text}'"),
            _ => text,
        };
        parts.push(quoted);
    }
    Some(if parts.len() == 1 {
        parts.pop().unwrap_or_default()
    } else {
        format!("({})", parts.join(", "))
    })
}

/// `x'..'` hex of raw bytes.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    out.push_str("x'");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests;
