//! A table whose single batch is produced when the plan executes: the provider behind every
//! engine-state and maintenance function.
//!
//! The producer runs on tokio's blocking pool (it may read files, flush or compact), once per
//! execution of the plan, and its batch must match the declared schema.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

/// Builds the one batch of a [`OneShotTable`] (full schema, before projection).
pub type Producer = Arc<dyn Fn() -> Result<RecordBatch> + Send + Sync>;

/// A table provider whose rows come from a [`Producer`] run at execution time.
pub struct OneShotTable {
    name: String,
    schema: SchemaRef,
    producer: Producer,
}

impl fmt::Debug for OneShotTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneShotTable")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OneShotTable {
    /// A table `name` (shown in plans) of `schema` filled by `producer`.
    pub fn new(name: impl Into<String>, schema: SchemaRef, producer: Producer) -> Self {
        OneShotTable {
            name: name.into(),
            schema,
            producer,
        }
    }
}

#[async_trait]
impl TableProvider for OneShotTable {
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
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(OneShotExec::try_new(
            self.name.clone(),
            Arc::clone(&self.schema),
            projection.cloned(),
            Arc::clone(&self.producer),
        )?))
    }
}

/// The execution plan of a [`OneShotTable`]: one partition, one batch.
pub struct OneShotExec {
    name: String,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    producer: Producer,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for OneShotExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneShotExec")
            .field("name", &self.name)
            .field("projection", &self.projection)
            .finish_non_exhaustive()
    }
}

impl OneShotExec {
    /// A plan producing `producer`'s batch of `schema`, projected to `projection`.
    pub fn try_new(
        name: String,
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
        producer: Producer,
    ) -> Result<Self> {
        let output = match &projection {
            Some(columns) => Arc::new(schema.project(columns)?),
            None => Arc::clone(&schema),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(OneShotExec {
            name,
            schema,
            projection,
            producer,
            properties,
        })
    }
}

impl DisplayAs for OneShotExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StrataFunctionExec: {}", self.name)
    }
}

impl ExecutionPlan for OneShotExec {
    fn name(&self) -> &str {
        "StrataFunctionExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
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
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "StrataFunctionExec has no children".to_string(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "StrataFunctionExec has one partition, asked for {partition}"
            )));
        }
        let producer = Arc::clone(&self.producer);
        let projection = self.projection.clone();
        let full_schema = Arc::clone(&self.schema);
        let output_schema = self.properties.eq_properties.schema().clone();
        let stream = futures::stream::once(async move {
            let batch = tokio::task::spawn_blocking(move || producer())
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))??;
            if batch.schema().fields() != full_schema.fields() {
                return Err(DataFusionError::Internal(
                    "table function produced a batch of another schema".to_string(),
                ));
            }
            match projection {
                Some(columns) => Ok(batch.project(&columns)?),
                None => Ok(batch),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output_schema,
            stream,
        )))
    }
}
