//! The server's counters ([`ServerMetrics`]) and the `strata_server_metrics()` table function
//! that shows them to every client, over either protocol, as `(name, value)` rows.
//!
//! Counters only grow (relaxed atomics: each is exact on its own, a read of several is not one
//! snapshot). The table function holds the counters, not the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};

use crate::exec::InFlight;

/// The server's counters.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// Flight SQL requests refused for a missing or wrong bearer token.
    pub flight_auth_failures: AtomicU64,
    /// PostgreSQL logins refused for a wrong password.
    pub pg_auth_failures: AtomicU64,
    /// PostgreSQL connections accepted.
    pub pg_connections: AtomicU64,
    /// Statements started (both protocols).
    pub statements: AtomicU64,
    /// Statements that ended with an error (cancellations and timeouts included).
    pub statement_errors: AtomicU64,
    /// Statements cancelled because their client disconnected or the server shut down.
    pub statements_cancelled: AtomicU64,
    /// Statements stopped by the statement timeout.
    pub statements_timed_out: AtomicU64,
}

impl ServerMetrics {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter with its name, in a fixed order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("flight_auth_failures", get(&self.flight_auth_failures)),
            ("pg_auth_failures", get(&self.pg_auth_failures)),
            ("pg_connections", get(&self.pg_connections)),
            ("statements", get(&self.statements)),
            ("statement_errors", get(&self.statement_errors)),
            ("statements_cancelled", get(&self.statements_cancelled)),
            ("statements_timed_out", get(&self.statements_timed_out)),
        ]
    }
}

/// `strata_server_metrics()`: the server's counters as `(name, value)` rows, and the number
/// of statements running (`statements_in_flight`, the reading one not included).
#[derive(Debug)]
pub struct ServerMetricsFunction(pub Arc<ServerMetrics>, pub Arc<InFlight>);

impl TableFunctionImpl for ServerMetricsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(DataFusionError::Plan(
                "strata_server_metrics() takes no arguments".into(),
            ));
        }
        let mut rows = self.0.snapshot();
        rows.push(("statements_in_flight", self.1.count() as u64));
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
