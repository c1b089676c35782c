//! The PostgreSQL wire protocol front end: pgwire, with datafusion-postgres for what
//! PostgreSQL clients expect around the SQL (the PostgreSQL dialect rewrites, `pg_catalog`,
//! `SET`/`SHOW`, `BEGIN`/`COMMIT`, cursors, the Arrow-to-PostgreSQL type mapping), and
//! [`Statements`] for every statement itself.
//!
//! Simple protocol: datafusion-postgres's `DfSessionService` parses (with its PostgreSQL
//! compatibility rewrites) and offers each statement to its hooks; [`StrataHook`] is the last
//! hook and takes every statement the others leave, so none reaches datafusion-postgres's own
//! execution (a bare `SessionContext`). Extended protocol: [`StrataExtended`] uses the same
//! parser, offers the statement to the same hooks, then binds the parameters and runs the
//! statement (planned again from its text, so it sees the catalog as it is now) through
//! [`Statements`], in the result formats the client asked for.
//!
//! Per connection: a [`Connection`] (memory pool) and a cancel signal that a watcher task
//! fires when the client's socket closes, so a statement of a client that went away stops
//! even before it would write a row. With a password configured, logins use cleartext
//! password authentication (use TLS off loopback); refused logins are counted in
//! `pg_auth_failures`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::{Sink, StreamExt};
use parking_lot::Mutex;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use tokio::sync::watch;

use crate::exec::{Connection, Statements, affected_rows, is_command};
use crate::metrics::ServerMetrics;

/// The statement type datafusion-postgres's parser stores.
type DfStatement = (String, Option<(SqlStatement, LogicalPlan)>);

/// The connections being served, by the client's address.
#[derive(Debug, Default)]
pub struct Connections {
    by_peer: Mutex<HashMap<SocketAddr, Connection>>,
}

impl Connections {
    /// Registers a connection from `peer`.
    pub fn insert(&self, peer: SocketAddr, conn: Connection) {
        self.by_peer.lock().insert(peer, conn);
    }

    /// Forgets the connection from `peer`.
    pub fn remove(&self, peer: &SocketAddr) {
        self.by_peer.lock().remove(peer);
    }

    fn get(&self, peer: &SocketAddr) -> Option<Connection> {
        self.by_peer.lock().get(peer).cloned()
    }
}

/// The hook that runs every statement the protocol hooks leave, through [`Statements`].
pub struct StrataHook {
    statements: Arc<Statements>,
    connections: Arc<Connections>,
}

impl StrataHook {
    fn connection(&self, peer: SocketAddr) -> PgWireResult<Connection> {
        match self.connections.get(&peer) {
            Some(c) => Ok(c),
            None => self.statements.connection().map_err(pg_error),
        }
    }

    /// Runs `plan` (the plan of `statement`): commands answer with their tag, queries with
    /// their rows in `format`.
    async fn respond(
        &self,
        statement: &SqlStatement,
        plan: LogicalPlan,
        format: &Format,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> PgWireResult<Response> {
        let conn = self.connection(client.socket_addr())?;
        if is_command(&plan) && !is_execute(&plan) {
            let batches = self.statements.run(plan, &conn).await.map_err(pg_error)?;
            return Ok(Response::Execution(command_tag(statement, &batches)));
        }
        let running = self
            .statements
            .execute(plan, &conn)
            .await
            .map_err(pg_error)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &running.schema,
            format,
            Some(options),
        )?);
        let row_fields = Arc::clone(&fields);
        let rows = running
            .stream
            .map(move |batch| {
                let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                    Ok(batch) => encode_recordbatch(Arc::clone(&row_fields), batch),
                    Err(e) => Box::new(std::iter::once(Err(pg_error(e)))),
                };
                futures::stream::iter(rows)
            })
            .flatten();
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

#[async_trait]
impl QueryHook for StrataHook {
    async fn handle_simple_query(
        &self,
        statement: &SqlStatement,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let result = async {
            let plan = self
                .statements
                .plan_statement(statement)
                .await
                .map_err(pg_error)?;
            let client: &(dyn ClientInfo + Send + Sync) = client;
            self.respond(statement, plan, &Format::UnifiedText, client)
                .await
        };
        Some(result.await)
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &SqlStatement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        _statement: &SqlStatement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // The extended protocol runs statements in `StrataExtended`, which knows the formats.
        None
    }
}

fn is_execute(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Statement(datafusion::logical_expr::Statement::Execute(_))
    )
}

/// The command tag PostgreSQL clients expect for `statement`.
fn command_tag(statement: &SqlStatement, batches: &[datafusion::arrow::array::RecordBatch]) -> Tag {
    let rows = affected_rows(batches) as usize;
    match statement {
        SqlStatement::Insert(_) => Tag::new("INSERT").with_oid(0).with_rows(rows),
        SqlStatement::Update { .. } => Tag::new("UPDATE").with_rows(rows),
        SqlStatement::Delete(_) => Tag::new("DELETE").with_rows(rows),
        SqlStatement::CreateTable(c) if c.query.is_some() => Tag::new("SELECT").with_rows(rows),
        SqlStatement::CreateTable(_) => Tag::new("CREATE TABLE"),
        SqlStatement::CreateView { .. } => Tag::new("CREATE VIEW"),
        SqlStatement::CreateSchema { .. } => Tag::new("CREATE SCHEMA"),
        SqlStatement::Drop { object_type, .. } => {
            Tag::new(&format!("DROP {}", object_type.to_string().to_uppercase()))
        }
        SqlStatement::Truncate { .. } => Tag::new("TRUNCATE TABLE"),
        SqlStatement::Copy { .. } => Tag::new("COPY").with_rows(rows),
        SqlStatement::Set(_) => Tag::new("SET"),
        other => {
            let text = other.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            Tag::new(&words.join(" ").to_uppercase())
        }
    }
}

/// A DataFusion error as a PostgreSQL error with its SQLSTATE.
pub fn pg_error(e: datafusion::error::DataFusionError) -> PgWireError {
    use datafusion::error::DataFusionError as E;
    let text = e.to_string();
    let code = if text.contains(crate::exec::TIMEOUT_MESSAGE)
        || text.contains(crate::exec::CANCEL_MESSAGE)
    {
        "57014" // query_canceled
    } else {
        match e.find_root() {
            E::SQL(..) => "42601",                            // syntax_error
            E::Plan(p) if p.contains("not found") => "42P01", // undefined_table
            E::Plan(_) | E::SchemaError(..) => "42000",
            E::NotImplemented(_) => "0A000",
            E::ResourcesExhausted(_) => "53200", // out_of_memory
            _ => "XX000",
        }
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        text,
    )))
}

/// The extended query protocol over [`Statements`].
pub struct StrataExtended {
    parser: Arc<Parser>,
    hooks: Vec<Arc<dyn QueryHook>>,
    strata: Arc<StrataHook>,
    session_context: Arc<SessionContext>,
}

#[async_trait]
impl ExtendedQueryHandler for StrataExtended {
    type Statement = DfStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, Some((statement, parsed_plan))) = &portal.statement.statement else {
            return Ok(Response::EmptyQuery);
        };
        // Parameter types: as the plan infers them, in $1, $2, ... order.
        let types = parsed_plan.get_parameter_types().map_err(pg_error)?;
        let mut ordered: Vec<(u32, Option<DataType>)> = types
            .into_iter()
            .map(|(name, ty)| {
                let index = name
                    .trim_start_matches('$')
                    .parse::<u32>()
                    .unwrap_or(u32::MAX);
                (index, ty)
            })
            .collect();
        ordered.sort_by_key(|(i, _)| *i);
        let refs: Vec<Option<&DataType>> = ordered.iter().map(|(_, t)| t.as_ref()).collect();
        let params = deserialize_parameters(portal, &refs)?;
        for hook in &self.hooks {
            if let Some(result) = hook
                .handle_extended_query(
                    statement,
                    parsed_plan,
                    &params,
                    &self.session_context,
                    client,
                )
                .await
            {
                return result;
            }
        }
        let _ = sql;
        let plan = self
            .strata
            .statements
            .plan_statement(statement)
            .await
            .map_err(pg_error)?;
        let plan = if ordered.is_empty() {
            plan
        } else {
            plan.with_param_values(params).map_err(pg_error)?
        };
        let info: &(dyn ClientInfo + Send + Sync) = client;
        self.strata
            .respond(statement, plan, &portal.result_column_format, info)
            .await
    }
}

/// Password source: the one configured password, for any user name.
#[derive(Debug)]
struct OnePassword(String);

#[async_trait]
impl AuthSource for OnePassword {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.0.as_bytes().to_vec()))
    }
}

/// Startup without authentication (loopback without a password).
struct OpenStartup {
    manager: Arc<ConnectionManager>,
}

impl NoopStartupHandler for OpenStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.manager))
    }
}

/// Startup: open, or cleartext password with refused logins counted.
pub struct StrataStartup {
    open: OpenStartup,
    password:
        Option<CleartextPasswordAuthStartupHandler<OnePassword, DefaultServerParameterProvider>>,
    metrics: Arc<ServerMetrics>,
}

#[async_trait]
impl StartupHandler for StrataStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &self.password {
            None => self.open.on_startup(client, message).await,
            Some(handler) => {
                let result = handler.on_startup(client, message).await;
                if let Err(PgWireError::InvalidPassword(_)) = &result {
                    ServerMetrics::bump(&self.metrics.pg_auth_failures);
                }
                result
            }
        }
    }
}

/// Logs errors sent to clients at debug level.
struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        tracing::debug!("PostgreSQL client error: {error}");
    }
}

/// The pgwire handlers of the server.
pub struct StrataPgHandlers {
    simple: Arc<DfSessionService>,
    extended: Arc<StrataExtended>,
    startup: Arc<StrataStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl StrataPgHandlers {
    /// Handlers over `statements`; with `password`, logins need it.
    pub fn new(
        statements: Arc<Statements>,
        connections: Arc<Connections>,
        password: Option<String>,
    ) -> StrataPgHandlers {
        let context = Arc::new(statements.session().context().clone());
        let strata = Arc::new(StrataHook {
            statements: Arc::clone(&statements),
            connections,
        });
        let protocol_hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let mut simple_hooks = protocol_hooks.clone();
        simple_hooks.push(Arc::clone(&strata) as Arc<dyn QueryHook>);
        let simple = Arc::new(DfSessionService::new_with_hooks(
            Arc::clone(&context),
            simple_hooks,
        ));
        let extended = Arc::new(StrataExtended {
            parser: simple.query_parser(),
            hooks: protocol_hooks,
            strata,
            session_context: context,
        });
        let manager = Arc::new(ConnectionManager::new());
        let metrics = Arc::clone(statements.metrics());
        let startup = Arc::new(StrataStartup {
            open: OpenStartup {
                manager: Arc::clone(&manager),
            },
            password: password.map(|p| {
                CleartextPasswordAuthStartupHandler::new(
                    OnePassword(p),
                    DefaultServerParameterProvider::default(),
                )
                .with_connection_manager(Arc::clone(&manager))
            }),
            metrics,
        });
        StrataPgHandlers {
            simple,
            extended,
            startup,
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
        }
    }
}

impl PgWireServerHandlers for StrataPgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.simple)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.extended)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Watches a client's socket (a duplicate of the one pgwire serves) and fires `cancel` when
/// the client closes it. Runs until then or until aborted.
pub async fn watch_disconnect(socket: tokio::net::TcpStream, cancel: watch::Sender<bool>) {
    let mut byte = [0u8; 1];
    loop {
        match socket.peek(&mut byte).await {
            Ok(0) | Err(_) => {
                let _ = cancel.send(true);
                return;
            }
            // Data the server has not read yet: look again a little later.
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
