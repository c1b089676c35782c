//! The side-effecting functions `strata_flush` and `strata_compact`.
//!
//! They run their action when the query executes (once per execution, on a blocking thread;
//! planning or `EXPLAIN` does nothing), wait for it to finish, and return what it did, read
//! from the table's state before and after.

use std::sync::{Arc, Weak};

use arrow::array::{ArrayRef, RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use strata_engine::{Db, Table, TableStats};

use super::exec::{OneShotTable, Producer};
use super::{check_arity, engine_error, resolve_table, string_arg, table_label, upgrade};

pub(super) fn register(ctx: &SessionContext, db: &Weak<Db>) {
    ctx.register_udtf("strata_flush", Arc::new(FlushFunction(db.clone())));
    ctx.register_udtf("strata_compact", Arc::new(CompactFunction(db.clone())));
}

fn files(stats: &TableStats) -> u64 {
    stats.files_per_level.iter().sum::<usize>() as u64
}

/// `strata_flush(['t'])`: writes the memtables of `t` (or of every table) to SSTs and waits
/// until they are durable. One row per table: memtable entries flushed, files before/after.
/// Without an argument every table is flushed even when one fails; the statement then fails
/// naming each table that could not be flushed.
#[derive(Debug)]
pub struct FlushFunction(Weak<Db>);

impl FlushFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("entries_flushed", DataType::UInt64, false),
            Field::new("files_before", DataType::UInt64, false),
            Field::new("files_after", DataType::UInt64, false),
        ]))
    }
}

impl TableFunctionImpl for FlushFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_flush";
        check_arity(NAME, args.exprs(), 0, 1)?;
        let db = upgrade(&self.0, NAME)?;
        let only: Option<Table> = match args.exprs().len() {
            0 => None,
            _ => Some(resolve_table(
                &db,
                NAME,
                &string_arg(NAME, args.exprs(), 0)?,
            )?),
        };
        let weak = self.0.clone();
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let db = upgrade(&weak, NAME)?;
            let tables = match &only {
                Some(table) => vec![table.clone()],
                None => db
                    .list_tables()
                    .iter()
                    .filter_map(|info| db.table_in(&info.namespace, &info.name).ok())
                    .collect(),
            };
            let mut name = StringBuilder::new();
            let (mut flushed, mut before, mut after) = (
                UInt64Builder::new(),
                UInt64Builder::new(),
                UInt64Builder::new(),
            );
            // Every table is flushed even when one fails; the failures are reported together.
            let mut failures: Vec<String> = Vec::new();
            for table in tables {
                let stats = table.stats();
                if let Err(error) = table.flush() {
                    if only.is_some() {
                        return Err(engine_error(error));
                    }
                    failures.push(format!("{}: {error}", table_label(&db, &table)));
                    continue;
                }
                name.append_value(table_label(&db, &table));
                flushed.append_value(stats.memtable_entries);
                before.append_value(files(&stats));
                after.append_value(files(&table.stats()));
            }
            if !failures.is_empty() {
                return Err(DataFusionError::Execution(format!(
                    "strata_flush: {} table(s) could not be flushed (every other table was; \
                     their rows stay in the write-ahead log): {}",
                    failures.len(),
                    failures.join("; ")
                )));
            }
            Ok(RecordBatch::try_new(
                Arc::clone(&producer_schema),
                vec![
                    Arc::new(name.finish()),
                    Arc::new(flushed.finish()),
                    Arc::new(before.finish()),
                    Arc::new(after.finish()),
                ],
            )?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}

/// `strata_compact('t')`: compacts every SST file of `t` into one sorted run (dropping
/// versions no snapshot needs, and tombstones where nothing older can remain) and waits for
/// it. Memtables are not flushed first: run `strata_flush('t')` before it to include them.
/// One row: files, bytes and SST rows before and after.
#[derive(Debug)]
pub struct CompactFunction(Weak<Db>);

impl CompactFunction {
    /// The result schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("files_before", DataType::UInt64, false),
            Field::new("files_after", DataType::UInt64, false),
            Field::new("bytes_before", DataType::UInt64, false),
            Field::new("bytes_after", DataType::UInt64, false),
            Field::new("rows_before", DataType::UInt64, false),
            Field::new("rows_after", DataType::UInt64, false),
        ]))
    }
}

impl TableFunctionImpl for CompactFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const NAME: &str = "strata_compact";
        check_arity(NAME, args.exprs(), 1, 1)?;
        let db = upgrade(&self.0, NAME)?;
        let table = resolve_table(&db, NAME, &string_arg(NAME, args.exprs(), 0)?)?;
        let label = table_label(&db, &table);
        let out = Self::schema();
        let producer_schema = Arc::clone(&out);
        let producer: Producer = Arc::new(move || {
            let before = table.stats();
            table.compact().map_err(engine_error)?;
            let after = table.stats();
            let mut name = StringBuilder::new();
            name.append_value(&label);
            let mut columns: Vec<ArrayRef> = vec![Arc::new(name.finish())];
            for value in [
                files(&before),
                files(&after),
                before.sst_bytes,
                after.sst_bytes,
                before.sst_rows,
                after.sst_rows,
            ] {
                let mut builder = UInt64Builder::with_capacity(1);
                builder.append_value(value);
                columns.push(Arc::new(builder.finish()));
            }
            Ok(RecordBatch::try_new(Arc::clone(&producer_schema), columns)?)
        });
        Ok(Arc::new(OneShotTable::new(NAME, out, producer)))
    }
}
