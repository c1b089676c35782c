//! `strata_versions('t')`: every stored version of a Strata table, with `_seq` and `_op`.
//!
//! ```sql
//! SELECT * FROM strata_versions('t') ORDER BY id, _seq DESC;
//! ```
//!
//! Columns: the table's user columns (nullable: a tombstone holds only its key), `_rowid` for
//! tables without a primary key, `_seq` (UInt64, the write's sequence number) and `_op`
//! (UInt8: `0` put, `1` delete). Rows come in internal order: key ascending, then `_seq`
//! descending, across memtables and SSTs at one pinned read view. Versions that compaction
//! already discarded are gone; everything still stored is there.

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
};
use strata_engine::{Db, KeyRange, ReadView, ScanOptions, Table};

use crate::provider::blocking_stream;
use crate::session::engine_error;

/// The `strata_versions(table_name)` table function.
pub struct VersionsFunction {
    db: Arc<Db>,
}

impl fmt::Debug for VersionsFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionsFunction").finish_non_exhaustive()
    }
}

impl VersionsFunction {
    /// The function over the tables of `db`.
    pub fn new(db: Arc<Db>) -> Self {
        VersionsFunction { db }
    }
}

impl TableFunctionImpl for VersionsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(name)), _)]
            | [Expr::Literal(ScalarValue::Utf8View(Some(name)), _)]
            | [Expr::Literal(ScalarValue::LargeUtf8(Some(name)), _)] => name.clone(),
            _ => return plan_err!("strata_versions takes one argument: a table name string"),
        };
        let table = crate::functions::resolve_table(&self.db, "strata_versions", &name)?;
        Ok(Arc::new(VersionsTable::new(table)))
    }
}

/// Every stored version of one table (see the module docs).
#[derive(Debug)]
pub struct VersionsTable {
    table: Table,
    schema: SchemaRef,
}

impl VersionsTable {
    /// The versions of `table`.
    pub fn new(table: Table) -> Self {
        let schema = table.table_schema().sst_schema();
        VersionsTable { table, schema }
    }
}

#[async_trait]
impl TableProvider for VersionsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&projection)?);
        let view = self.table.view().map_err(engine_error)?;
        Ok(Arc::new(VersionsExec::new(
            self.table.name().to_string(),
            view,
            projection,
            schema,
            limit,
        )))
    }
}

/// Reads every version of a table at one read view.
pub struct VersionsExec {
    name: String,
    view: ReadView,
    projection: Vec<usize>,
    schema: SchemaRef,
    limit: Option<usize>,
    cache: Arc<PlanProperties>,
}

impl fmt::Debug for VersionsExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionsExec")
            .field("table", &self.name)
            .finish()
    }
}

impl VersionsExec {
    fn new(
        name: String,
        view: ReadView,
        projection: Vec<usize>,
        schema: SchemaRef,
        limit: Option<usize>,
    ) -> Self {
        let cache = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        VersionsExec {
            name,
            view,
            projection,
            schema,
            limit,
            cache: Arc::new(cache),
        }
    }
}

impl DisplayAs for VersionsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StrataVersionsExec: table={}, read_seq={}",
            self.name,
            self.view.read_seq()
        )
    }
}

impl ExecutionPlan for VersionsExec {
    fn name(&self) -> &str {
        "StrataVersionsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.cache
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal(
                "StrataVersionsExec has no children".into(),
            ));
        }
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "StrataVersionsExec has one partition, asked for {partition}"
            )));
        }
        let view = self.view.clone();
        let projection = self.projection.clone();
        let schema = Arc::clone(&self.schema);
        let limit = self.limit;
        Ok(blocking_stream(Arc::clone(&self.schema), move |emit| {
            let mut options = ScanOptions::default().with_versions();
            options.limit = limit;
            let scan = view.scan(KeyRange::all(), options).map_err(engine_error)?;
            for batch in scan {
                let batch = batch.map_err(engine_error)?.project(&projection)?;
                let batch = RecordBatch::try_new_with_options(
                    Arc::clone(&schema),
                    batch.columns().to_vec(),
                    &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
                )?;
                if !emit(batch) {
                    break;
                }
            }
            Ok(())
        }))
    }
}
