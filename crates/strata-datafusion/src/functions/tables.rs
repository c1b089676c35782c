//! The catalog functions `strata_tables`, `strata_columns` and `strata_table_properties`:
//! what tables exist and how each is made, as rows (the REPL's `\dt` and `\d` read them).
//!
//! Like the engine-state functions they read the database when the query executes. Sizes are
//! exact byte counts (names ending in `_bytes`); formatting them for people is the client's
//! business.

use std::sync::{Arc, Weak};

use arrow::array::{BooleanBuilder, RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use strata_engine::{Db, Table, TableOptions, TableStats};

use super::exec::{OneShotTable, Producer};
use super::{check_arity, name_label, resolve_table, string_arg, upgrade};

pub(super) fn register(ctx: &SessionContext, db: &Weak<Db>) {
    ctx.register_udtf("strata_tables", Arc::new(TablesFunction(db.clone())));
    ctx.register_udtf("strata_columns", Arc::new(ColumnsFunction(db.clone())));
    ctx.register_udtf(
        "strata_table_properties",
        Arc::new(TablePropertiesFunction(db.clone())),
    );
}

fn sst_files(stats: &TableStats) -> u64 {
    stats.files_per_level.iter().sum::<usize>() as u64
}

/// The table argument of a one-table function, resolved when the query is planned.
fn one_table(db: &Weak<Db>, function: &str, args: &TableFunctionArgs) -> Result<Table> {
    check_arity(function, args.exprs(), 1, 1)?;
    let name = string_arg(function, args.exprs(), 0)?;
    let db = upgrade(db, function)?;
    resolve_table(&db, function, &name)
}

/// `strata_tables()`: one row per table of every schema, in name order: its name (as
/// [`super::table_label`] writes it), primary key (columns joined by `, `; NULL for a table
/// without one, keyed by a hidden row id), estimated live rows, total bytes (SSTs plus
/// memtables), SST files, SST bytes, memtable bytes and memtable kind.
#[derive(Debug)]
pub struct TablesFunction(Weak<Db>);

impl TablesFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("primary_key", DataType::Utf8, true),
            Field::new("rows_estimate", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("sst_files", DataType::UInt64, false),
            Field::new("sst_bytes", DataType::UInt64, false),
            Field::new("memtable_bytes", DataType::UInt64, false),
            Field::new("memtable_kind", DataType::Utf8, false),
        ]))
    }
}

impl TableFunctionImpl for TablesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_tables";
        check_arity(NAME, args.exprs(), 0, 0)?;
        upgrade(&self.0, NAME)?;
        let db = self.0.clone();
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let db = upgrade(&db, NAME)?;
            let tables = db.list_tables();
            let (mut name, mut key, mut kind) = (
                StringBuilder::new(),
                StringBuilder::new(),
                StringBuilder::new(),
            );
            let mut numbers: Vec<UInt64Builder> = (0..5).map(|_| UInt64Builder::new()).collect();
            for info in &tables {
                let s = &info.stats;
                name.append_value(name_label(&info.namespace, &info.name));
                key.append_option(
                    (!info.primary_key.is_empty()).then(|| info.primary_key.join(", ")),
                );
                for (builder, value) in numbers.iter_mut().zip([
                    s.estimated_rows,
                    s.sst_bytes + s.memtable_bytes,
                    sst_files(s),
                    s.sst_bytes,
                    s.memtable_bytes,
                ]) {
                    builder.append_value(value);
                }
                kind.append_value(info.options.memtable_kind.name());
            }
            let mut columns: Vec<arrow::array::ArrayRef> =
                vec![Arc::new(name.finish()), Arc::new(key.finish())];
            columns.extend(
                numbers
                    .iter_mut()
                    .map(|b| Arc::new(b.finish()) as arrow::array::ArrayRef),
            );
            columns.push(Arc::new(kind.finish()));
            Ok(RecordBatch::try_new(Arc::clone(&producer_schema), columns)?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}

/// `strata_columns('t')`: one row per column of `t` in table order: name, Arrow type (as
/// Arrow writes it, `Int64`, `Utf8View`, ...), whether it takes NULL, and whether it is part
/// of the primary key (`key_position`: its 1-based place in the key, NULL if not in it).
#[derive(Debug)]
pub struct ColumnsFunction(Weak<Db>);

impl ColumnsFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("column_name", DataType::Utf8, false),
            Field::new("data_type", DataType::Utf8, false),
            Field::new("nullable", DataType::Boolean, false),
            Field::new("primary_key", DataType::Boolean, false),
            Field::new("key_position", DataType::UInt64, true),
        ]))
    }
}

impl TableFunctionImpl for ColumnsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_columns";
        let table = one_table(&self.0, NAME, &args)?;
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let schema = table.schema();
            let key = table.primary_key();
            let (mut name, mut data_type) = (StringBuilder::new(), StringBuilder::new());
            let (mut nullable, mut in_key) = (BooleanBuilder::new(), BooleanBuilder::new());
            let mut position = UInt64Builder::new();
            for field in schema.fields() {
                let place = key.iter().position(|k| k == field.name());
                name.append_value(field.name());
                data_type.append_value(field.data_type().to_string());
                nullable.append_value(field.is_nullable());
                in_key.append_value(place.is_some());
                position.append_option(place.map(|p| p as u64 + 1));
            }
            Ok(RecordBatch::try_new(
                Arc::clone(&producer_schema),
                vec![
                    Arc::new(name.finish()),
                    Arc::new(data_type.finish()),
                    Arc::new(nullable.finish()),
                    Arc::new(in_key.finish()),
                    Arc::new(position.finish()),
                ],
            )?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}

/// `strata_table_properties('t')`: the state and options of `t` as `(property, value)` text
/// rows, in a fixed order: `primary_key` (`(none: hidden row id)` for a table without one),
/// `rows_estimate`, `memtable_entries`, `memtable_bytes`, `immutable_memtables`, `sst_bytes`,
/// `sst_rows`, `sst_tombstones`, then the options: `memtable`, `memtable_size_bytes`,
/// `max_immutable_memtables`, `sst_compression`, `sst_compression_min_saving`,
/// `sst_row_group_rows`, `sst_scan_row_group_rows`, `sst_page_size_bytes`,
/// `sst_value_page_size_bytes`, `sst_scan_dictionary_page_size_bytes`, `sst_index_block_rows`,
/// `bloom_filter_fpp`, `deletion_vectors`, `compaction`, `l0_compaction_trigger`, `max_levels`,
/// `target_file_size_bytes`. A property whose name ends in `_bytes` is an exact byte count.
#[derive(Debug)]
pub struct TablePropertiesFunction(Weak<Db>);

impl TablePropertiesFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("property", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
        ]))
    }
}

/// The rows of `strata_table_properties` for `table`.
fn properties(table: &Table) -> Vec<(&'static str, String)> {
    let key = table.primary_key();
    let stats = table.stats();
    let mut rows = vec![
        (
            "primary_key",
            if key.is_empty() {
                "(none: hidden row id)".to_string()
            } else {
                key.join(", ")
            },
        ),
        ("rows_estimate", stats.estimated_rows.to_string()),
        ("memtable_entries", stats.memtable_entries.to_string()),
        ("memtable_bytes", stats.memtable_bytes.to_string()),
        ("immutable_memtables", stats.immutable_memtables.to_string()),
        ("sst_bytes", stats.sst_bytes.to_string()),
        ("sst_rows", stats.sst_rows.to_string()),
        ("sst_tombstones", stats.sst_tombstones.to_string()),
    ];
    rows.extend(option_rows(&table.options()));
    rows
}

/// The table options as `(name, value)` rows.
fn option_rows(o: &TableOptions) -> Vec<(&'static str, String)> {
    let c = &o.compaction;
    vec![
        ("memtable", o.memtable_kind.to_string()),
        ("memtable_size_bytes", o.memtable_size_bytes.to_string()),
        (
            "max_immutable_memtables",
            o.max_immutable_memtables.to_string(),
        ),
        ("sst_compression", o.sst_compression.to_string()),
        (
            "sst_compression_min_saving",
            o.sst_compression_min_saving.to_string(),
        ),
        ("sst_row_group_rows", o.sst_row_group_rows.to_string()),
        (
            "sst_scan_row_group_rows",
            o.sst_scan_row_group_rows.to_string(),
        ),
        ("sst_page_size_bytes", o.sst_page_size_bytes.to_string()),
        (
            "sst_value_page_size_bytes",
            o.sst_value_page_size_bytes.to_string(),
        ),
        (
            "sst_scan_dictionary_page_size_bytes",
            o.sst_scan_dictionary_page_size_bytes.to_string(),
        ),
        ("sst_index_block_rows", o.sst_index_block_rows.to_string()),
        ("bloom_filter_fpp", o.bloom_filter_fpp.to_string()),
        ("deletion_vectors", o.deletion_vectors.to_string()),
        ("compaction", c.strategy.to_string()),
        ("l0_compaction_trigger", c.l0_compaction_trigger.to_string()),
        ("max_levels", c.max_levels.to_string()),
        (
            "target_file_size_bytes",
            c.target_file_size_bytes.to_string(),
        ),
    ]
}

impl TableFunctionImpl for TablePropertiesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_table_properties";
        let table = one_table(&self.0, NAME, &args)?;
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let rows = properties(&table);
            let (mut property, mut value) = (StringBuilder::new(), StringBuilder::new());
            for (p, v) in rows {
                property.append_value(p);
                value.append_value(v);
            }
            Ok(RecordBatch::try_new(
                Arc::clone(&producer_schema),
                vec![Arc::new(property.finish()), Arc::new(value.finish())],
            )?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}
