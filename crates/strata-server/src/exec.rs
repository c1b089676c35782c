//! The one statement path of the server: [`Statements`] plans and runs every statement of
//! every client through the server's [`StrataSession`], as the REPL does.
//!
//! Owns the limits of a statement: each connection ([`Connection`]) has its own DataFusion
//! memory pool of `--memory-limit` bytes (a statement over it fails with DataFusion's
//! resources-exhausted error), every statement has a deadline (`--statement-timeout`), and a
//! statement stops when its connection's cancel signal fires (the client went away) or the
//! server cancels everything at the end of the shutdown grace period.
//!
//! Invariants: a statement holds an [`InFlight`] token from planning until its last batch is
//! sent or it is dropped, so shutdown knows when none is left; stopping a statement drops its
//! DataFusion stream, which cancels the plan's tasks; the counters of [`ServerMetrics`] count
//! every statement once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::{Array, UInt64Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::{Stream, StreamExt};
use strata_datafusion::StrataSession;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::metrics::ServerMetrics;

/// A stream of result batches of one statement, already guarded by its limits.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// The message of a statement stopped by the timeout (PostgreSQL's wording).
pub const TIMEOUT_MESSAGE: &str = "canceling statement due to statement timeout";
/// The message of a statement cancelled by its client's disconnection or by shutdown.
pub const CANCEL_MESSAGE: &str =
    "canceling statement: the client disconnected or the server is shutting down";

/// Counts statements in flight; shutdown waits for it to reach zero.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Statements in flight now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no statement is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held by a running statement; dropping it ends the statement's part in [`InFlight`].
#[derive(Debug)]
pub struct InFlightToken(Arc<InFlight>);

impl Drop for InFlightToken {
    fn drop(&mut self) {
        let before = self.0.count.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "in-flight count underflow");
        if before == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What a statement is stopped by besides its own end.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The connection's runtime (its memory pool), or the session's when there is no limit.
    runtime: Option<Arc<RuntimeEnv>>,
    /// Fires (turns true) when the client has gone away.
    cancel: Option<watch::Receiver<bool>>,
}

impl Connection {
    /// A connection whose statements also stop when `cancel` turns true (or its sender is
    /// dropped).
    pub fn with_cancel(mut self, cancel: watch::Receiver<bool>) -> Connection {
        self.cancel = Some(cancel);
        self
    }
}

/// The server's statement path over its one [`StrataSession`].
#[derive(Debug)]
pub struct Statements {
    session: Arc<StrataSession>,
    metrics: Arc<ServerMetrics>,
    in_flight: Arc<InFlight>,
    memory_limit: Option<usize>,
    timeout: Option<Duration>,
    /// Turns true at the end of the shutdown grace period: every statement stops.
    shutdown: watch::Receiver<bool>,
}

impl Statements {
    /// The statement path over `session`.
    pub fn new(
        session: Arc<StrataSession>,
        metrics: Arc<ServerMetrics>,
        memory_limit: Option<usize>,
        timeout: Option<Duration>,
        shutdown: watch::Receiver<bool>,
    ) -> Statements {
        Statements {
            session,
            metrics,
            in_flight: Arc::new(InFlight::default()),
            memory_limit,
            timeout,
            shutdown,
        }
    }

    /// The server's session.
    pub fn session(&self) -> &Arc<StrataSession> {
        &self.session
    }

    /// The session, once the server is done with the statement path.
    pub fn into_session(self) -> Arc<StrataSession> {
        self.session
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Arc<ServerMetrics> {
        &self.metrics
    }

    /// The statements in flight.
    pub fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }

    /// A new connection: its own memory pool when a limit is set.
    pub fn connection(&self) -> Result<Connection> {
        let runtime = match self.memory_limit {
            Some(limit) => Some(
                RuntimeEnvBuilder::from_runtime_env(&self.session.context().runtime_env())
                    .with_memory_limit(limit, 1.0)
                    .build_arc()?,
            ),
            None => None,
        };
        Ok(Connection {
            runtime,
            cancel: None,
        })
    }

    /// Plans one SQL statement (nothing runs yet).
    pub async fn plan_sql(&self, sql: &str) -> Result<LogicalPlan> {
        self.session
            .context()
            .state()
            .create_logical_plan(sql)
            .await
    }

    /// Plans one parsed statement (nothing runs yet).
    pub async fn plan_statement(&self, statement: &SqlStatement) -> Result<LogicalPlan> {
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(statement.clone()));
        self.session
            .context()
            .state()
            .statement_to_plan(statement)
            .await
    }

    /// Starts one statement: DDL runs now (atomically, through
    /// [`StrataSession::execute_logical_plan`]); queries and DML return their guarded result
    /// stream, which runs as it is read. Errors and stops are counted.
    pub async fn execute(&self, plan: LogicalPlan, conn: &Connection) -> Result<Running> {
        ServerMetrics::bump(&self.metrics.statements);
        self.in_flight.count.fetch_add(1, Ordering::AcqRel);
        let token = InFlightToken(Arc::clone(&self.in_flight));
        let mut guard = self.guard(conn);
        let started = async {
            let df = self.session.execute_logical_plan(plan).await?;
            let df = with_runtime(df, conn);
            let schema = Arc::clone(df.schema().inner());
            let stream = df.execute_stream().await?;
            Ok::<_, DataFusionError>((schema, stream))
        };
        let started = tokio::select! {
            r = started => r,
            e = guard.stopped() => Err(e),
        };
        let (schema, stream) = match started {
            Ok(s) => s,
            Err(e) => {
                self.count_error(&e);
                return Err(e);
            }
        };
        let metrics = Arc::clone(&self.metrics);
        let state = Some((stream, guard, token, metrics));
        let stream = futures::stream::unfold(state, |state| async move {
            let (mut stream, mut guard, token, metrics) = state?;
            let item = tokio::select! {
                item = stream.next() => item,
                e = guard.stopped() => Some(Err(e)),
            };
            match item {
                Some(Ok(batch)) => Some((Ok(batch), Some((stream, guard, token, metrics)))),
                Some(Err(e)) => {
                    count_error(&metrics, &e);
                    Some((Err(e), None))
                }
                None => None,
            }
        });
        Ok(Running {
            schema,
            stream: Box::pin(stream),
        })
    }

    /// Runs a statement to its end and returns its rows (DDL: none; DML: one `count` row).
    pub async fn run(&self, plan: LogicalPlan, conn: &Connection) -> Result<Vec<RecordBatch>> {
        let running = self.execute(plan, conn).await?;
        running
            .stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    fn guard(&self, conn: &Connection) -> Guard {
        Guard {
            deadline: self.timeout.map(|t| Instant::now() + t),
            cancel: conn.cancel.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    fn count_error(&self, e: &DataFusionError) {
        count_error(&self.metrics, e)
    }
}

fn count_error(metrics: &ServerMetrics, e: &DataFusionError) {
    ServerMetrics::bump(&metrics.statement_errors);
    let text = e.to_string();
    if text.contains(TIMEOUT_MESSAGE) {
        ServerMetrics::bump(&metrics.statements_timed_out);
    } else if text.contains(CANCEL_MESSAGE) {
        ServerMetrics::bump(&metrics.statements_cancelled);
    }
}

/// Binds a planned statement to the connection's runtime (its memory pool).
fn with_runtime(df: DataFrame, conn: &Connection) -> DataFrame {
    match &conn.runtime {
        None => df,
        Some(runtime) => {
            let (state, plan) = df.into_parts();
            let state = SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(Arc::clone(runtime))
                .build();
            DataFrame::new(state, plan)
        }
    }
}

/// A started statement: its result schema and guarded stream.
pub struct Running {
    /// Schema of the result rows.
    pub schema: SchemaRef,
    /// The rows; the statement is stopped (with an error item) by its limits.
    pub stream: BatchStream,
}

/// The limits a statement is stopped by.
struct Guard {
    deadline: Option<Instant>,
    cancel: Option<watch::Receiver<bool>>,
    shutdown: watch::Receiver<bool>,
}

impl Guard {
    /// Resolves (with the error to report) when the statement must stop.
    async fn stopped(&mut self) -> DataFusionError {
        let deadline = self.deadline;
        let timeout = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let cancel = async {
            match &mut self.cancel {
                // A dropped sender means the connection is gone too.
                Some(rx) => {
                    let _ = rx.wait_for(|c| *c).await;
                }
                None => std::future::pending().await,
            }
        };
        let shutdown = &mut self.shutdown;
        tokio::select! {
            _ = timeout => DataFusionError::Execution(TIMEOUT_MESSAGE.into()),
            _ = cancel => DataFusionError::Execution(CANCEL_MESSAGE.into()),
            fired = async { shutdown.wait_for(|s| *s).await.is_ok() } => {
                if !fired {
                    // The server is gone: nothing will ever fire; never stop for it.
                    std::future::pending::<()>().await;
                }
                DataFusionError::Execution(CANCEL_MESSAGE.into())
            }
        }
    }
}

/// True when `plan` changes the database or the session rather than reading: it runs at once
/// (Flight SQL's GetFlightInfo, PostgreSQL's Execute) and returns at most a row count.
pub fn is_command(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Copy(_)
    )
}

/// The row count a DML statement returned (its one `count` row), 0 for anything else.
pub fn affected_rows(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .find_map(|b| {
            b.column_by_name("count")?
                .as_any()
                .downcast_ref::<UInt64Array>()
                .filter(|a| !a.is_null(0))
                .map(|a| a.value(0))
        })
        .unwrap_or(0)
}
