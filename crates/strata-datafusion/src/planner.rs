//! The session's query planner: DataFusion's own physical planner behind a guard for
//! `DELETE` and `UPDATE`.
//!
//! DataFusion 55 hands a table's `delete_from`/`update` only the plain filters it finds above
//! the table scan. When the `WHERE` clause holds a subquery (`IN (SELECT ...)`, `EXISTS`, a
//! scalar subquery), the optimizer turns it into a join and no filter survives, so the
//! provider would be told "every row"; `DELETE ... LIMIT n` loses its limit the same way.
//! This planner inspects the optimized plan first and refuses such statements with a clear
//! error before anything runs. A `WHERE` clause the optimizer folded to `false` (an empty
//! relation) becomes a statement that matches no row.
//!
//! Invariant: a `DELETE`/`UPDATE` of a Strata table reaches the provider only when its input
//! is projections and filters over one scan of that table, with no subquery expressions.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::DefaultTableSource;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{Expr, LogicalPlan, WriteOp};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};

use crate::dml::StrataDmlExec;
use crate::provider::StrataTable;

/// DataFusion's planner with Strata's DML guard (see the module docs).
#[derive(Debug, Default)]
pub struct StrataQueryPlanner;

#[async_trait]
impl QueryPlanner for StrataQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut nothing: Option<Arc<dyn ExecutionPlan>> = None;
        logical_plan.apply(|node| {
            if let LogicalPlan::Dml(dml) = node {
                let op = match dml.op {
                    WriteOp::Delete => "DELETE",
                    WriteOp::Update => "UPDATE",
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                let Some(strata) = strata_target(dml) else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                match check_dml_input(&dml.input, op)? {
                    InputShape::Plain => {}
                    InputShape::Empty => {
                        if std::ptr::eq(node, logical_plan) {
                            nothing =
                                Some(Arc::new(StrataDmlExec::nothing(strata.table().clone(), op)));
                        } else {
                            return Err(DataFusionError::NotImplemented(format!(
                                "{op} whose WHERE clause is always false is only supported as \
                                 a statement of its own"
                            )));
                        }
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if let Some(plan) = nothing {
            return Ok(plan);
        }
        DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session)
            .await
    }
}

/// The Strata table a DML statement writes, if it writes one.
fn strata_target(dml: &datafusion::logical_expr::DmlStatement) -> Option<&StrataTable> {
    let source = dml.target.downcast_ref::<DefaultTableSource>()?;
    source.table_provider.downcast_ref::<StrataTable>()
}

enum InputShape {
    /// Projections and filters over one table scan.
    Plain,
    /// The optimizer proved the WHERE clause false.
    Empty,
}

/// Checks that a DELETE/UPDATE input is a plain scan with filters (see the module docs).
fn check_dml_input(input: &LogicalPlan, op: &str) -> Result<InputShape> {
    let refuse = |what: &str| {
        Err(DataFusionError::NotImplemented(format!(
            "{op} with {what} is not supported on Strata tables: DataFusion would pass it to \
             the table without its filter (as \"all rows\"); use plain predicates on the \
             table's columns in WHERE"
        )))
    };
    let mut scans = 0usize;
    let mut empty = false;
    let mut problem: Option<&'static str> = None;
    input.apply(|node| {
        match node {
            LogicalPlan::TableScan(_) => scans += 1,
            LogicalPlan::Filter(filter) => {
                if has_subquery(&filter.predicate) {
                    problem = Some("a subquery in WHERE");
                }
            }
            LogicalPlan::Projection(projection) => {
                if projection.expr.iter().any(has_subquery) {
                    problem = Some("a subquery in SET");
                }
            }
            LogicalPlan::SubqueryAlias(_) => {}
            LogicalPlan::EmptyRelation(relation) if !relation.produce_one_row => empty = true,
            LogicalPlan::Limit(_) => problem = Some("LIMIT"),
            LogicalPlan::Join(_) => problem = Some("a subquery or join in WHERE"),
            LogicalPlan::Subquery(_) => problem = Some("a subquery"),
            _ => problem = Some("a WHERE clause that is not a plain filter"),
        }
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    if let Some(what) = problem {
        return refuse(what);
    }
    if empty && scans == 0 {
        return Ok(InputShape::Empty);
    }
    if scans != 1 {
        return refuse("a WHERE clause that reads other tables");
    }
    Ok(InputShape::Plain)
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
