//! The session's query planner: DataFusion's own physical planner, with Strata's DML statements
//! brought into a shape whose meaning cannot be lost on the way to the table.
//!
//! ## `DELETE` and `UPDATE`
//!
//! DataFusion 55 hands a table's `delete_from`/`update` only what it finds by pattern in the
//! *optimized* plan: the conjuncts of `Filter` nodes and the aliases of the top `Projection`.
//! The optimizer is free to rewrite that plan, and several of its rewrites break the pattern:
//! common-subexpression elimination moves `v*2+1` into a projection below the filter and leaves
//! `__common_expr_1` behind (a column the table does not have); a subquery becomes a join, so no
//! filter survives and the table would be told "every row"; `LIMIT` is dropped the same way.
//!
//! So this planner rewrites the input of every `DELETE`/`UPDATE` of a Strata table before
//! DataFusion sees it. It walks the optimized input, which must be a chain of projections,
//! filters and aliases over one scan of the target table (anything else -- a join, a subquery,
//! `LIMIT`, an aggregate -- is refused with a clear error before anything runs), and inlines
//! every projection: each filter and each output column becomes one expression over the table's
//! own columns. The input is replaced by the canonical `Projection(values) -> Filter(all
//! conjuncts) -> TableScan(table)`, which DataFusion's extraction reads exactly. Whatever the
//! optimizer added in between (CSE projections, simplified or pushed-down filters, filters
//! inside the scan), the rows selected and the values written are the ones the statement
//! means. A `WHERE` clause the optimizer folded to an empty relation becomes the filter `false`.
//!
//! ## `INSERT`
//!
//! "Within one statement the last row of a key wins" needs a defined row order. An `INSERT`
//! into a Strata table is planned with `target_partitions = 1`, so its query runs as one ordered
//! stream, not as round-robin partitions merged in arrival order: the rows reach the table in
//! the query's own order (its `ORDER BY`; else `VALUES` as written, files in path order and
//! rows in file order, `generate_series` ascending, a Strata table in key order). The insert
//! plan ([`crate::dml::insert_plan`]) reads whatever partitions remain (a `UNION ALL`) one
//! after the other in partition order.
//!
//! ## File sinks
//!
//! Every CSV and JSON sink of a physical plan is wrapped so that a file the store failed to
//! write is reported with the store's error ([`crate::write_errors`]).
//!
//! Invariants: a `DELETE`/`UPDATE` of a Strata table reaches the provider only with the
//! canonical input above; an `INSERT` into a Strata table is planned with one partition.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, TableReference};
use datafusion::datasource::DefaultTableSource;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};

use crate::provider::{StrataTable, strip_qualifiers};
use crate::write_errors::report_write_failures;

/// DataFusion's planner with Strata's DML rewriting (see the module docs).
#[derive(Debug, Default)]
pub struct StrataQueryPlanner;

#[async_trait]
impl QueryPlanner for StrataQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut inserts = false;
        let plan = logical_plan
            .clone()
            .transform_up(|node| {
                let LogicalPlan::Dml(dml) = &node else {
                    return Ok(Transformed::no(node));
                };
                if strata_target(dml).is_none() {
                    return Ok(Transformed::no(node));
                }
                match dml.op {
                    WriteOp::Insert(_) => {
                        inserts = true;
                        Ok(Transformed::no(node))
                    }
                    WriteOp::Delete | WriteOp::Update => {
                        let input = canonical_dml_input(dml)?;
                        Ok(Transformed::yes(LogicalPlan::Dml(DmlStatement {
                            input: Arc::new(input),
                            ..dml.clone()
                        })))
                    }
                    _ => Ok(Transformed::no(node)),
                }
            })?
            .data;
        let planner = DefaultPhysicalPlanner::default();
        debug_assert!(
            !inserts || session.as_any().is::<SessionState>(),
            "an INSERT into a Strata table is planned from a SessionState"
        );
        let physical =
            if inserts && let Some(state) = session.as_any().downcast_ref::<SessionState>() {
                let state = ordered_write_state(state);
                planner.create_physical_plan(&plan, &state).await?
            } else {
                planner.create_physical_plan(&plan, session).await?
            };
        report_write_failures(physical)
    }
}

/// `state` with `target_partitions = 1`: a query planned with it runs as one ordered stream,
/// with no round-robin or hash repartitioning whose merge would reorder rows by arrival (only
/// a `UNION ALL` keeps one partition per branch; read them in partition order). For the input
/// of a write in which a later row of a key replaces an earlier one (`INSERT`, and
/// `CREATE TABLE ... AS` with a primary key).
pub fn ordered_write_state(state: &SessionState) -> SessionState {
    let mut state = state.clone();
    state.config_mut().options_mut().execution.target_partitions = 1;
    state
}

/// The Strata table a DML statement writes, if it writes one.
fn strata_target(dml: &DmlStatement) -> Option<&StrataTable> {
    let source = dml.target.downcast_ref::<DefaultTableSource>()?;
    source.table_provider.downcast_ref::<StrataTable>()
}

fn op_name(op: &WriteOp) -> &'static str {
    match op {
        WriteOp::Update => "UPDATE",
        _ => "DELETE",
    }
}

/// What a chain of projections and filters over the target's scan computes, in terms of the
/// table's own (unqualified) columns.
enum Flat {
    /// The rows of the table that satisfy every filter, each mapped to `values` (one
    /// expression per output column of the node, in schema order).
    Rows {
        filters: Vec<Expr>,
        values: Vec<Expr>,
    },
    /// No row (the optimizer proved the `WHERE` clause false).
    Empty,
}

/// The canonical input of a `DELETE`/`UPDATE` of a Strata table (see the module docs).
fn canonical_dml_input(dml: &DmlStatement) -> Result<LogicalPlan> {
    let op = op_name(&dml.op);
    let (filters, values) = match flatten(&dml.input, &dml.table_name, op)? {
        Flat::Rows { filters, values } => (filters, values),
        Flat::Empty => (vec![lit(false)], Vec::new()),
    };
    let mut builder =
        LogicalPlanBuilder::scan(dml.table_name.clone(), Arc::clone(&dml.target), None)?;
    if let Some(predicate) = conjunction(filters) {
        builder = builder.filter(predicate)?;
    }
    if matches!(dml.op, WriteOp::Update) {
        let input_schema = dml.input.schema();
        let table_schema = dml.target.schema();
        let mut projection = Vec::with_capacity(table_schema.fields().len());
        for field in table_schema.fields() {
            let name = field.name();
            let value = if values.is_empty() {
                // An empty input: the filter is `false`, the values never evaluated.
                Expr::Column(Column::new_unqualified(name))
            } else {
                let index = input_schema
                    .fields()
                    .iter()
                    .position(|f| f.name() == name)
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!(
                            "UPDATE input lacks column '{name}' of table '{}'",
                            dml.table_name
                        ))
                    })?;
                values[index].clone()
            };
            projection.push(value.alias(name));
        }
        builder = builder.project(projection)?;
    }
    builder.build()
}

/// Inlines the projections of `plan` (see [`Flat`]), refusing any node that is not a
/// projection, filter or alias over one scan of `target`.
fn flatten(plan: &LogicalPlan, target: &TableReference, op: &str) -> Result<Flat> {
    let refuse = |what: &str| {
        Err(DataFusionError::NotImplemented(format!(
            "{op} with {what} is not supported on Strata tables: DataFusion would pass it to \
             the table without its filter (as \"all rows\"); use plain predicates on the \
             table's columns in WHERE"
        )))
    };
    match plan {
        LogicalPlan::TableScan(scan) => {
            if !scan.table_name.resolved_eq(target) {
                return refuse("a WHERE clause that reads other tables");
            }
            if scan.fetch.is_some() {
                return refuse("LIMIT");
            }
            let values = scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| Expr::Column(Column::new_unqualified(f.name())))
                .collect();
            let filters = scan
                .filters
                .iter()
                .map(|f| strip_qualifiers(f.clone()))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flat_map(split_conjunction_owned)
                .collect();
            Ok(Flat::Rows { filters, values })
        }
        LogicalPlan::Filter(filter) => {
            if has_subquery(&filter.predicate) {
                return refuse("a subquery in WHERE");
            }
            match flatten(&filter.input, target, op)? {
                Flat::Empty => Ok(Flat::Empty),
                Flat::Rows {
                    mut filters,
                    values,
                } => {
                    let predicate =
                        inline(filter.predicate.clone(), filter.input.schema(), &values)?;
                    filters.extend(split_conjunction_owned(predicate));
                    Ok(Flat::Rows { filters, values })
                }
            }
        }
        LogicalPlan::Projection(projection) => {
            if projection.expr.iter().any(has_subquery) {
                return refuse("a subquery in SET");
            }
            match flatten(&projection.input, target, op)? {
                Flat::Empty => Ok(Flat::Empty),
                Flat::Rows { filters, values } => {
                    let schema = projection.input.schema();
                    let values = projection
                        .expr
                        .iter()
                        .map(|e| inline(e.clone(), schema, &values))
                        .collect::<Result<Vec<_>>>()?;
                    debug_assert_eq!(values.len(), projection.schema.fields().len());
                    Ok(Flat::Rows { filters, values })
                }
            }
        }
        // An alias renames the relation; its columns are its input's, position for position.
        LogicalPlan::SubqueryAlias(alias) => flatten(&alias.input, target, op),
        LogicalPlan::EmptyRelation(relation) if !relation.produce_one_row => Ok(Flat::Empty),
        LogicalPlan::Limit(_) => refuse("LIMIT"),
        LogicalPlan::Join(_) => refuse("a subquery or join in WHERE"),
        LogicalPlan::Subquery(_) => refuse("a subquery"),
        _ => refuse("a WHERE clause that is not a plain filter"),
    }
}

/// `expr` (over `schema`, the output of a node) with every column replaced by the expression
/// that computes it from the table's columns (`values`, aligned with `schema`), aliases removed.
fn inline(expr: Expr, schema: &DFSchema, values: &[Expr]) -> Result<Expr> {
    debug_assert_eq!(schema.fields().len(), values.len());
    let expr = expr
        .transform_up(|e| match e {
            Expr::Column(column) => {
                let index = schema.index_of_column(&column)?;
                Ok(Transformed::yes(values[index].clone()))
            }
            e => Ok(Transformed::no(e)),
        })?
        .data;
    Ok(expr.unalias_nested().data)
}

fn has_subquery(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        if matches!(
            e,
            Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::ScalarSubquery(_)
                | Expr::SetComparison(_)
        ) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}
