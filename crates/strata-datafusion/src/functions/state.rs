//! The read-only engine-state functions: `strata_sstables`, `strata_memtables`,
//! `strata_metrics`, `strata_compaction_stats` and `strata_levels`.
//!
//! Each reads one consistent picture when the query executes: a table's files and memtables
//! come from one pinned read view.

use std::sync::{Arc, Weak};

use arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use strata_engine::{Db, Table};

use super::engine_error;
use super::exec::{OneShotTable, Producer};
use super::{check_arity, render_key, resolve_table, string_arg, table_label, upgrade};

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
        .filter_map(|info| match db.table_in(&info.namespace, &info.name) {
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
            let db = upgrade(&db, NAME)?;
            let tables = match &only {
                Some(table) => vec![table.clone()],
                None => all_tables(&db)?,
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
                let label = table_label(&db, &table);
                for (count, size, immutable) in view.memtables() {
                    name.append_value(&label);
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

/// `strata_metrics()`: the engine's counters and gauges (`table_name` and `level` NULL),
/// then per table its totals (`level` NULL) and per table and level the counters of that
/// level.
///
/// Per table: `rows_written`, `user_bytes` (encoded keys plus values committed),
/// `flushes`, `flush_bytes`, `compactions`, `compaction_moves`, `compaction_bytes_read`,
/// `compaction_bytes_written`, `compaction_micros`, `write_stalls`, `write_stall_micros`,
/// `write_slowdowns`, `write_slowdown_micros`, `sst_files`, `sst_bytes`, and, once defined,
/// `write_amplification_percent` and `space_amplification_percent` (see
/// [`strata_engine::CompactionReport`]; 100 = 1.0). Per level: `files`, `bytes`, `flushes`,
/// `bytes_flushed`, `compactions`, `moves`, `bytes_read`, `bytes_written`, `micros` and
/// `write_amplification_percent` (the level's share of the table's). Counters run from the
/// open of the database.
#[derive(Debug)]
pub struct MetricsFunction(Weak<Db>);

impl MetricsFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        schema(vec![
            Field::new("table_name", DataType::Utf8, true),
            Field::new("level", DataType::UInt32, true),
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
        ])
    }
}

/// A ratio as a whole percentage (`write_amplification_percent` and the like).
fn percent(ratio: f64) -> u64 {
    (ratio * 100.0).round() as u64
}

/// The rows of `strata_metrics()` for `db` (also printed by the REPL's `\metrics`).
pub fn metrics_batch(db: &Db) -> Result<RecordBatch> {
    let (mut table, mut level, mut name, mut value) = (
        StringBuilder::new(),
        UInt32Builder::new(),
        StringBuilder::new(),
        UInt64Builder::new(),
    );
    for (metric, v) in db.metrics().values {
        table.append_null();
        level.append_null();
        name.append_value(metric);
        value.append_value(v);
    }
    for t in all_tables(db)? {
        let label = table_label(db, &t);
        let report = t.compaction_report();
        let totals = report.totals();
        let writes = &report.writes;
        let mut rows: Vec<(&str, u64)> = vec![
            ("rows_written", writes.rows_written),
            ("user_bytes", writes.user_bytes),
            ("flushes", totals.flushes),
            ("flush_bytes", totals.bytes_flushed),
            ("compactions", totals.compactions),
            ("compaction_moves", totals.moves),
            ("compaction_bytes_read", totals.bytes_read),
            ("compaction_bytes_written", totals.bytes_written),
            ("compaction_micros", totals.micros),
            ("write_stalls", writes.write_stalls),
            ("write_stall_micros", writes.write_stall_micros),
            ("write_slowdowns", writes.write_slowdowns),
            ("write_slowdown_micros", writes.write_slowdown_micros),
            ("sst_files", report.levels.iter().map(|l| l.files).sum()),
            ("sst_bytes", report.sst_bytes),
        ];
        if let Some(wa) = report.write_amplification() {
            rows.push(("write_amplification_percent", percent(wa)));
        }
        if let Some(space) = report.space_amplification() {
            rows.push(("space_amplification_percent", percent(space)));
        }
        for (metric, v) in rows {
            table.append_value(&label);
            level.append_null();
            name.append_value(metric);
            value.append_value(v);
        }
        for l in &report.levels {
            let s = &l.stats;
            let mut rows: Vec<(&str, u64)> = vec![
                ("files", l.files),
                ("bytes", l.bytes),
                ("flushes", s.flushes),
                ("bytes_flushed", s.bytes_flushed),
                ("compactions", s.compactions),
                ("moves", s.moves),
                ("bytes_read", s.bytes_read),
                ("bytes_written", s.bytes_written),
                ("micros", s.micros),
            ];
            if let Some(wa) = l.write_amplification {
                rows.push(("write_amplification_percent", percent(wa)));
            }
            for (metric, v) in rows {
                table.append_value(&label);
                level.append_value(l.level);
                name.append_value(metric);
                value.append_value(v);
            }
        }
    }
    Ok(RecordBatch::try_new(
        MetricsFunction::schema(),
        vec![
            Arc::new(table.finish()),
            Arc::new(level.finish()),
            Arc::new(name.finish()),
            Arc::new(value.finish()),
        ],
    )?)
}

impl TableFunctionImpl for MetricsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_metrics";
        check_arity(NAME, args.exprs(), 0, 0)?;
        upgrade(&self.0, NAME)?;
        let db = self.0.clone();
        let producer: Producer = Arc::new(move || metrics_batch(upgrade(&db, NAME)?.as_ref()));
        Ok(Arc::new(OneShotTable::new(NAME, Self::schema(), producer)))
    }
}

/// `strata_compaction_stats(['t'])`: per table, one row per level from 0 to the deepest level
/// that holds files or was written, then a total row (`level` NULL).
///
/// `files`/`bytes` are the level now; the counters (since the open) are what flushes and
/// compactions wrote into the level; `write_amp` is the level's share of the table's write
/// amplification (NULL before any write). `space_amp` and the backpressure columns
/// (`stalls`, `stall_micros`, `slowdowns`, `slowdown_micros`: time the table's writes were
/// held back) are per table, set on the total row only.
#[derive(Debug)]
pub struct CompactionStatsFunction(Weak<Db>);

/// The counter columns of `strata_compaction_stats`, after `files` and `bytes`.
const COMPACTION_COUNTERS: [&str; 7] = [
    "flushes",
    "bytes_flushed",
    "compactions",
    "moves",
    "bytes_read",
    "bytes_written",
    "micros",
];

/// The per-table columns of `strata_compaction_stats`, set on the total row.
const BACKPRESSURE: [&str; 4] = ["stalls", "stall_micros", "slowdowns", "slowdown_micros"];

impl CompactionStatsFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        let mut fields = vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("level", DataType::UInt32, true),
            Field::new("files", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
        ];
        fields.extend(
            COMPACTION_COUNTERS
                .iter()
                .map(|name| Field::new(*name, DataType::UInt64, false)),
        );
        fields.push(Field::new("write_amp", DataType::Float64, true));
        fields.push(Field::new("space_amp", DataType::Float64, true));
        fields.extend(
            BACKPRESSURE
                .iter()
                .map(|name| Field::new(*name, DataType::UInt64, true)),
        );
        schema(fields)
    }
}

fn counters_of(files: u64, bytes: u64, s: &strata_engine::LevelCompactionStats) -> [u64; 9] {
    [
        files,
        bytes,
        s.flushes,
        s.bytes_flushed,
        s.compactions,
        s.moves,
        s.bytes_read,
        s.bytes_written,
        s.micros,
    ]
}

/// The rows of `strata_compaction_stats` for `tables` of `db` (also printed by `\metrics`).
pub fn compaction_stats_batch(db: &Db, tables: &[Table]) -> Result<RecordBatch> {
    let mut name = StringBuilder::new();
    let mut level = UInt32Builder::new();
    let mut numbers: Vec<UInt64Builder> = (0..9).map(|_| UInt64Builder::new()).collect();
    let (mut write_amp, mut space_amp) = (Float64Builder::new(), Float64Builder::new());
    let mut backpressure: Vec<UInt64Builder> = (0..4).map(|_| UInt64Builder::new()).collect();
    for table in tables {
        let label = table_label(db, table);
        let report = table.compaction_report();
        for l in &report.levels {
            name.append_value(&label);
            level.append_value(l.level);
            for (builder, value) in numbers
                .iter_mut()
                .zip(counters_of(l.files, l.bytes, &l.stats))
            {
                builder.append_value(value);
            }
            write_amp.append_option(l.write_amplification);
            space_amp.append_null();
            backpressure.iter_mut().for_each(|b| b.append_null());
        }
        name.append_value(&label);
        level.append_null();
        let files = report.levels.iter().map(|l| l.files).sum();
        for (builder, value) in
            numbers
                .iter_mut()
                .zip(counters_of(files, report.sst_bytes, &report.totals()))
        {
            builder.append_value(value);
        }
        write_amp.append_option(report.write_amplification());
        space_amp.append_option(report.space_amplification());
        let w = &report.writes;
        for (builder, value) in backpressure.iter_mut().zip([
            w.write_stalls,
            w.write_stall_micros,
            w.write_slowdowns,
            w.write_slowdown_micros,
        ]) {
            builder.append_value(value);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(name.finish()), Arc::new(level.finish())];
    columns.extend(numbers.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(write_amp.finish()));
    columns.push(Arc::new(space_amp.finish()));
    columns.extend(
        backpressure
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef),
    );
    Ok(RecordBatch::try_new(
        CompactionStatsFunction::schema(),
        columns,
    )?)
}

impl TableFunctionImpl for CompactionStatsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_compaction_stats";
        let only = table_or_all(&self.0, NAME, &args)?;
        let db = self.0.clone();
        let producer: Producer = Arc::new(move || {
            let db = upgrade(&db, NAME)?;
            let tables = match &only {
                Some(table) => vec![table.clone()],
                None => all_tables(&db)?,
            };
            compaction_stats_batch(&db, &tables)
        });
        Ok(Arc::new(OneShotTable::new(NAME, Self::schema(), producer)))
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
