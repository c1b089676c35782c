//! The read-only engine-state functions: `strata_sstables`, `strata_memtables`,
//! `strata_metrics`, `strata_compaction_stats` and `strata_levels`.
//!
//! Each reads one consistent picture when the query executes: a table's files and memtables
//! come from one pinned read view.

use std::sync::{Arc, Weak};

use arrow::array::{
    ArrayRef, RecordBatch, StringBuilder, TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use strata_engine::{Db, Table};

use super::engine_error;
use super::exec::{OneShotTable, Producer};
use super::{check_arity, render_key, resolve_table, string_arg, upgrade};

pub(super) fn register(ctx: &SessionContext, db: &Weak<Db>) {
    ctx.register_udtf("strata_sstables", Arc::new(SstablesFunction(db.clone())));
    ctx.register_udtf("strata_memtables", Arc::new(MemtablesFunction(db.clone())));
    ctx.register_udtf("strata_metrics", Arc::new(MetricsFunction(db.clone())));
    ctx.register_udtf(
        "strata_compaction_stats",
        Arc::new(CompactionStatsFunction(db.clone())),
    );
    ctx.register_udtf("strata_levels", Arc::new(LevelsFunction(db.clone())));
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// The tables a function without a table argument covers: every table, by name.
fn all_tables(db: &Db) -> Result<Vec<Table>> {
    db.list_tables()
        .iter()
        .filter_map(|info| match db.table(&info.name) {
            Ok(table) => Some(Ok(table)),
            // Dropped between the listing and the lookup.
            Err(strata_engine::Error::TableNotFound(_)) => None,
            Err(e) => Some(Err(engine_error(e))),
        })
        .collect()
}

/// Either the named table or every table, depending on the argument count.
fn table_or_all(
    db: &Weak<Db>,
    function: &'static str,
    args: &TableFunctionArgs,
) -> Result<Option<Table>> {
    check_arity(function, args.exprs(), 0, 1)?;
    if args.exprs().is_empty() {
        return Ok(None);
    }
    let name = string_arg(function, args.exprs(), 0)?;
    let db = upgrade(db, function)?;
    resolve_table(&db, function, &name).map(Some)
}

/// `strata_sstables('t')`: one row per SST file.
#[derive(Debug)]
pub struct SstablesFunction(Weak<Db>);

impl SstablesFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        schema(vec![
            Field::new("level", DataType::UInt32, false),
            Field::new("file_id", DataType::UInt64, false),
            Field::new("run_id", DataType::UInt64, false),
            Field::new("min_key", DataType::Utf8, false),
            Field::new("max_key", DataType::Utf8, false),
            Field::new("min_seq", DataType::UInt64, false),
            Field::new("max_seq", DataType::UInt64, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("tombstones", DataType::UInt64, false),
            Field::new("older_versions", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new(
                "created_at",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("path", DataType::Utf8, false),
        ])
    }
}

impl TableFunctionImpl for SstablesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_sstables";
        check_arity(NAME, args.exprs(), 1, 1)?;
        let name = string_arg(NAME, args.exprs(), 0)?;
        let db = upgrade(&self.0, NAME)?;
        let table = resolve_table(&db, NAME, &name)?;
        let dir = db.path().to_path_buf();
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let view = table.view().map_err(engine_error)?;
            let codec = view.table_schema();
            let (mut level, mut file_id, mut run_id) = (
                UInt32Builder::new(),
                UInt64Builder::new(),
                UInt64Builder::new(),
            );
            let (mut min_key, mut max_key, mut path) = (
                StringBuilder::new(),
                StringBuilder::new(),
                StringBuilder::new(),
            );
            let mut numbers: Vec<UInt64Builder> = (0..6).map(|_| UInt64Builder::new()).collect();
            let mut created = TimestampMillisecondBuilder::new();
            for (index, files) in view.files_by_level().iter().enumerate() {
                for meta in files {
                    level.append_value(index as u32);
                    file_id.append_value(meta.id);
                    run_id.append_value(meta.run());
                    min_key.append_value(render_key(codec, &meta.min_key));
                    max_key.append_value(render_key(codec, &meta.max_key));
                    for (builder, value) in numbers.iter_mut().zip([
                        meta.min_seq,
                        meta.max_seq,
                        meta.rows,
                        meta.tombstones,
                        meta.older_versions,
                        meta.size_bytes,
                    ]) {
                        builder.append_value(value);
                    }
                    created.append_value(meta.created_at_ms as i64);
                    path.append_value(dir.join(meta.object_path()).to_string_lossy());
                }
            }
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(level.finish()),
                Arc::new(file_id.finish()),
                Arc::new(run_id.finish()),
                Arc::new(min_key.finish()),
                Arc::new(max_key.finish()),
            ];
            columns.extend(numbers.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
            columns.push(Arc::new(created.finish()));
            columns.push(Arc::new(path.finish()));
            Ok(RecordBatch::try_new(Arc::clone(&producer_schema), columns)?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}

/// `strata_memtables(['t'])`: one row per memtable, newest first within a table.
#[derive(Debug)]
pub struct MemtablesFunction(Weak<Db>);

impl MemtablesFunction {
    /// The result schema. `memtable_kind` is the table's configured kind, which the active
    /// memtable uses; an immutable memtable created before a kind change keeps its old kind.
    pub fn schema() -> SchemaRef {
        schema(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("memtable_kind", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("entries", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
        ])
    }
}

impl TableFunctionImpl for MemtablesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_memtables";
        let only = table_or_all(&self.0, NAME, &args)?;
        let db = self.0.clone();
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let tables = match &only {
                Some(table) => vec![table.clone()],
                None => all_tables(upgrade(&db, NAME)?.as_ref())?,
            };
            let (mut name, mut kind, mut state) = (
                StringBuilder::new(),
                StringBuilder::new(),
                StringBuilder::new(),
            );
            let (mut entries, mut bytes) = (UInt64Builder::new(), UInt64Builder::new());
            for table in tables {
                let view = table.view().map_err(engine_error)?;
                let configured = table.options().memtable_kind.name();
                for (count, size, immutable) in view.memtables() {
                    name.append_value(table.name());
                    kind.append_value(configured);
                    state.append_value(if immutable { "immutable" } else { "active" });
                    entries.append_value(count as u64);
                    bytes.append_value(size as u64);
                }
            }
            Ok(RecordBatch::try_new(
                Arc::clone(&producer_schema),
                vec![
                    Arc::new(name.finish()),
                    Arc::new(kind.finish()),
                    Arc::new(state.finish()),
                    Arc::new(entries.finish()),
                    Arc::new(bytes.finish()),
                ],
            )?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}

/// `strata_metrics()`: the engine's counters and gauges (`table_name` NULL), then per table
/// the totals of its compactions (`compactions`, `compaction_moves`,
/// `compaction_bytes_read`, `compaction_bytes_written`, `compaction_micros`).
///
/// Write amplification and stall time are derived from the database rows:
/// `(flush_bytes + compaction_bytes_written) / flush_bytes` and `write_stall_micros`.
#[derive(Debug)]
pub struct MetricsFunction(Weak<Db>);

impl MetricsFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        schema(vec![
            Field::new("table_name", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
        ])
    }
}

impl TableFunctionImpl for MetricsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_metrics";
        check_arity(NAME, args.exprs(), 0, 0)?;
        upgrade(&self.0, NAME)?;
        let db = self.0.clone();
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let db = upgrade(&db, NAME)?;
            let (mut table, mut name, mut value) = (
                StringBuilder::new(),
                StringBuilder::new(),
                UInt64Builder::new(),
            );
            for (metric, v) in db.metrics().values {
                table.append_null();
                name.append_value(metric);
                value.append_value(v);
            }
            for t in all_tables(&db)? {
                let stats = t.compaction_stats();
                let totals = [
                    ("compactions", stats.iter().map(|s| s.compactions).sum()),
                    ("compaction_moves", stats.iter().map(|s| s.moves).sum()),
                    (
                        "compaction_bytes_read",
                        stats.iter().map(|s| s.bytes_read).sum(),
                    ),
                    (
                        "compaction_bytes_written",
                        stats.iter().map(|s| s.bytes_written).sum(),
                    ),
                    ("compaction_micros", stats.iter().map(|s| s.micros).sum()),
                ];
                for (metric, v) in totals {
                    table.append_value(t.name());
                    name.append_value(metric);
                    value.append_value(v);
                }
            }
            Ok(RecordBatch::try_new(
                Arc::clone(&producer_schema),
                vec![
                    Arc::new(table.finish()),
                    Arc::new(name.finish()),
                    Arc::new(value.finish()),
                ],
            )?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}

/// `strata_compaction_stats(['t'])`: compaction counters per table and output level (levels
/// no compaction wrote into are left out).
#[derive(Debug)]
pub struct CompactionStatsFunction(Weak<Db>);

impl CompactionStatsFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        schema(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("level", DataType::UInt32, false),
            Field::new("compactions", DataType::UInt64, false),
            Field::new("moves", DataType::UInt64, false),
            Field::new("bytes_read", DataType::UInt64, false),
            Field::new("bytes_written", DataType::UInt64, false),
            Field::new("micros", DataType::UInt64, false),
        ])
    }
}

impl TableFunctionImpl for CompactionStatsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_compaction_stats";
        let only = table_or_all(&self.0, NAME, &args)?;
        let db = self.0.clone();
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let tables = match &only {
                Some(table) => vec![table.clone()],
                None => all_tables(upgrade(&db, NAME)?.as_ref())?,
            };
            let mut name = StringBuilder::new();
            let mut level = UInt32Builder::new();
            let mut numbers: Vec<UInt64Builder> = (0..5).map(|_| UInt64Builder::new()).collect();
            for table in tables {
                for (index, stats) in table.compaction_stats().iter().enumerate() {
                    if stats.compactions == 0 && stats.moves == 0 {
                        continue;
                    }
                    name.append_value(table.name());
                    level.append_value(index as u32);
                    for (builder, value) in numbers.iter_mut().zip([
                        stats.compactions,
                        stats.moves,
                        stats.bytes_read,
                        stats.bytes_written,
                        stats.micros,
                    ]) {
                        builder.append_value(value);
                    }
                }
            }
            let mut columns: Vec<ArrayRef> =
                vec![Arc::new(name.finish()), Arc::new(level.finish())];
            columns.extend(numbers.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
            Ok(RecordBatch::try_new(Arc::clone(&producer_schema), columns)?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}

/// `strata_levels('t')`: the shape of the table's LSM tree, one row per level.
#[derive(Debug)]
pub struct LevelsFunction(Weak<Db>);

impl LevelsFunction {
    /// The result schema (`min_key`/`max_key` NULL for an empty level, `target_bytes` NULL
    /// where the compaction strategy sets no target).
    pub fn schema() -> SchemaRef {
        schema(vec![
            Field::new("level", DataType::UInt32, false),
            Field::new("files", DataType::UInt64, false),
            Field::new("runs", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("min_key", DataType::Utf8, true),
            Field::new("max_key", DataType::Utf8, true),
            Field::new("overlap_depth", DataType::UInt64, false),
            Field::new("target_bytes", DataType::UInt64, true),
        ])
    }
}

impl TableFunctionImpl for LevelsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_levels";
        check_arity(NAME, args.exprs(), 1, 1)?;
        let name = string_arg(NAME, args.exprs(), 0)?;
        let db = upgrade(&self.0, NAME)?;
        let table = resolve_table(&db, NAME, &name)?;
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let codec = Arc::clone(table.table_schema());
            let mut level = UInt32Builder::new();
            let mut counts: Vec<UInt64Builder> = (0..4).map(|_| UInt64Builder::new()).collect();
            let (mut min_key, mut max_key) = (StringBuilder::new(), StringBuilder::new());
            let (mut depth, mut target) = (UInt64Builder::new(), UInt64Builder::new());
            for summary in table.levels() {
                level.append_value(summary.level as u32);
                for (builder, value) in counts.iter_mut().zip([
                    summary.files as u64,
                    summary.runs as u64,
                    summary.bytes,
                    summary.rows,
                ]) {
                    builder.append_value(value);
                }
                min_key.append_option(summary.min_key.as_deref().map(|k| render_key(&codec, k)));
                max_key.append_option(summary.max_key.as_deref().map(|k| render_key(&codec, k)));
                depth.append_value(summary.overlap_depth as u64);
                target.append_option(summary.target_bytes);
            }
            let mut columns: Vec<ArrayRef> = vec![Arc::new(level.finish())];
            columns.extend(counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
            columns.push(Arc::new(min_key.finish()));
            columns.push(Arc::new(max_key.finish()));
            columns.push(Arc::new(depth.finish()));
            columns.push(Arc::new(target.finish()));
            Ok(RecordBatch::try_new(Arc::clone(&producer_schema), columns)?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}
