//! The Arrow Flight SQL front end: arrow-flight's [`FlightSqlService`] over [`Statements`].
//!
//! What it serves: statements (`CommandStatementQuery` through GetFlightInfo and DoGet,
//! `CommandStatementUpdate` through DoPut), prepared statements with parameters (create, bind
//! by DoPut, query, update, close), SqlInfo, and the catalog listings (catalogs, schemas,
//! tables, table types) that ADBC's `get_objects` and JDBC-style tools ask for.
//!
//! Tickets carry no server state: a query's ticket holds its SQL (planned again at DoGet), a
//! command's (DDL, DML, SET) holds its result rows as Arrow IPC, because a command runs at
//! GetFlightInfo (a client that never calls DoGet still gets its write). Prepared statements
//! are kept by handle (at most [`PREPARED_MAX`] at a time) with their bound parameters and are
//! planned again at each execution, so they see the catalog as it is then.
//!
//! Authentication: with a token configured, every call carries `authorization: Bearer
//! <token>`; Handshake accepts HTTP Basic (any user name, the token as password) or the bearer
//! header and answers with the bearer header. Wrong or missing tokens are refused
//! (`Unauthenticated`) and counted in `flight_auth_failures`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use base64::Engine;
use bytes::Bytes;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use futures::{Stream, TryStreamExt};
use parking_lot::Mutex;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::exec::{Statements, affected_rows, is_command};
use crate::metrics::ServerMetrics;

/// Most prepared statements open at once (over all clients).
pub const PREPARED_MAX: usize = 4096;
/// Largest command result carried in a ticket, in bytes.
const TICKET_RESULT_MAX: usize = 1 << 20;
/// Tag of a ticket holding the SQL of a query.
const TICKET_QUERY: u8 = b'q';
/// Tag of a ticket holding the IPC rows of a command that already ran.
const TICKET_RESULT: u8 = b'r';

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// A prepared statement: its SQL and the parameter rows last bound to it.
#[derive(Debug, Clone)]
struct Prepared {
    sql: String,
    params: Vec<ParamValues>,
}

/// The Flight SQL service.
pub struct StrataFlightSql {
    statements: Arc<Statements>,
    token: Option<String>,
    prepared: Mutex<HashMap<Bytes, Prepared>>,
    next_handle: AtomicU64,
    sql_info: SqlInfoData,
}

impl StrataFlightSql {
    /// The service over `statements`; with `token`, every call must carry it.
    pub fn new(statements: Arc<Statements>, token: Option<String>) -> Result<Self, String> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "Strata");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, false);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        let sql_info = info
            .build()
            .map_err(|e| format!("cannot build the Flight SQL info: {e}"))?;
        Ok(StrataFlightSql {
            statements,
            token,
            prepared: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            sql_info,
        })
    }

    /// The tonic service of `self`.
    pub fn into_service(self) -> FlightServiceServer<StrataFlightSql> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    fn metrics(&self) -> &ServerMetrics {
        self.statements.metrics()
    }

    /// Refuses a call without the configured token (counted).
    #[allow(clippy::result_large_err)]
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(()),
            _ => {
                ServerMetrics::bump(&self.metrics().flight_auth_failures);
                Err(Status::unauthenticated(
                    "missing or wrong bearer token (send authorization: Bearer <token>)",
                ))
            }
        }
    }

    async fn plan(&self, sql: &str) -> Result<LogicalPlan, Status> {
        self.statements.plan_sql(sql).await.map_err(df_status)
    }

    /// Runs a command now and returns its ticket (the rows as IPC) and schema.
    async fn run_command(&self, plan: LogicalPlan) -> Result<(Bytes, SchemaRef), Status> {
        let conn = self.statements.connection().map_err(df_status)?;
        let schema = Arc::clone(plan.schema().inner());
        let batches = self.statements.run(plan, &conn).await.map_err(df_status)?;
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        let mut bytes = vec![TICKET_RESULT];
        {
            let mut writer = StreamWriter::try_new(&mut bytes, &schema).map_err(arrow_status)?;
            for batch in &batches {
                writer.write(batch).map_err(arrow_status)?;
            }
            writer.finish().map_err(arrow_status)?;
        }
        if bytes.len() > TICKET_RESULT_MAX {
            return Err(Status::resource_exhausted(
                "the command's result is too large for a ticket; run it as a query",
            ));
        }
        Ok((Bytes::from(bytes), schema))
    }

    /// FlightInfo of one endpoint with `ticket`, at this server.
    fn info(schema: &Schema, ticket: Bytes) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(arrow_status)?
            .with_endpoint(endpoint)
            .with_descriptor(FlightDescriptor::new_cmd(vec![]))
            .with_ordered(true);
        Ok(Response::new(info))
    }

    /// GetFlightInfo of a planned statement: queries get a ticket, commands run now.
    async fn info_for(
        &self,
        plan: LogicalPlan,
        query_ticket: impl FnOnce() -> Bytes,
    ) -> Result<Response<FlightInfo>, Status> {
        if is_command(&plan) {
            let (ticket, schema) = self.run_command(plan).await?;
            let ticket = TicketStatementQuery {
                statement_handle: ticket,
            }
            .as_any()
            .encode_to_vec();
            Self::info(&schema, ticket.into())
        } else {
            let schema = Arc::clone(plan.schema().inner());
            Self::info(&schema, query_ticket())
        }
    }

    /// Runs a query plan and streams its batches as Flight data.
    async fn stream(&self, plan: LogicalPlan) -> Result<Response<DoGetStream>, Status> {
        let conn = self.statements.connection().map_err(df_status)?;
        let running = self
            .statements
            .execute(plan, &conn)
            .await
            .map_err(df_status)?;
        let batches = running
            .stream
            .map_err(|e| FlightError::ExternalError(Box::new(e)));
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(running.schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    fn stream_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::iter(batches.into_iter().map(Ok)))
            .map_err(Status::from);
        Response::new(Box::pin(stream))
    }

    fn prepared(&self, handle: &Bytes) -> Result<Prepared, Status> {
        self.prepared.lock().get(handle).cloned().ok_or_else(|| {
            Status::not_found("no such prepared statement (closed, or never created)")
        })
    }

    /// A prepared statement's plan with `params` bound.
    async fn prepared_plan(
        &self,
        sql: &str,
        params: Option<&ParamValues>,
    ) -> Result<LogicalPlan, Status> {
        let plan = self.plan(sql).await?;
        match params {
            Some(p) => plan.with_param_values(p.clone()).map_err(df_status),
            None => Ok(plan),
        }
    }
}

/// Decodes the parameter rows a client sends with DoPut: one [`ParamValues`] per row.
async fn parameter_rows(
    request: Request<PeekableFlightDataStream>,
) -> Result<Vec<ParamValues>, Status> {
    // A message with only the descriptor (as a bare ExecuteUpdate sends) carries no data.
    let stream = request
        .into_inner()
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from);
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
        .try_collect()
        .await
        .map_err(Status::from)?;
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(df_status)?;
            rows.push(ParamValues::from(values));
        }
    }
    Ok(rows)
}

/// The parameter schema of a plan: `$1`, `$2`, ... in order, typed where DataFusion infers
/// a type (else Utf8, cast by the plan).
fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, Status> {
    let types = plan.get_parameter_types().map_err(df_status)?;
    let mut named: Vec<(usize, String, DataType)> = types
        .into_iter()
        .map(|(name, ty)| {
            let index = name
                .trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX);
            (index, name, ty.unwrap_or(DataType::Utf8))
        })
        .collect();
    named.sort();
    Ok(Schema::new(
        named
            .into_iter()
            .map(|(_, name, ty)| Field::new(name, ty, true))
            .collect::<Vec<_>>(),
    ))
}

fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(arrow_status)?;
    Ok(bytes)
}

/// A DataFusion error as a gRPC status: planning errors are the client's
/// (`InvalidArgument`), resource limits `ResourceExhausted`, stops `Cancelled`/`DeadlineExceeded`.
pub fn df_status(e: DataFusionError) -> Status {
    let text = e.to_string();
    if text.contains(crate::exec::TIMEOUT_MESSAGE) {
        return Status::deadline_exceeded(text);
    }
    if text.contains(crate::exec::CANCEL_MESSAGE) {
        return Status::cancelled(text);
    }
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Status::invalid_argument(text),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(text),
        _ => Status::internal(text),
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn arrow_status(e: arrow::error::ArrowError) -> Status {
    Status::internal(format!("Arrow encoding: {e}"))
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[tonic::async_trait]
impl FlightSqlService for StrataFlightSql {
    type FlightService = StrataFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let payload = match &self.token {
            None => Bytes::new(),
            Some(token) => {
                let header = request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let ok = if let Some(basic) = header.strip_prefix("Basic ") {
                    base64::engine::general_purpose::STANDARD
                        .decode(basic.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()))
                        .is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()))
                } else {
                    header
                        .strip_prefix("Bearer ")
                        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
                };
                if !ok {
                    ServerMetrics::bump(&self.metrics().flight_auth_failures);
                    return Err(Status::unauthenticated(
                        "wrong credentials: give the server's token as the password (Basic) \
                         or as authorization: Bearer <token>",
                    ));
                }
                Bytes::from(token.clone().into_bytes())
            }
        };
        let output = futures::stream::iter(vec![Ok(HandshakeResponse {
            protocol_version: 0,
            payload: payload.clone(),
        })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(output));
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("the token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let plan = self.plan(&query.query).await?;
        let sql = query.query;
        self.info_for(plan, move || {
            let mut handle = vec![TICKET_QUERY];
            handle.extend_from_slice(sql.as_bytes());
            TicketStatementQuery {
                statement_handle: handle.into(),
            }
            .as_any()
            .encode_to_vec()
            .into()
        })
        .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.authorize(&request)?;
        let handle = ticket.statement_handle;
        match handle.first() {
            Some(&TICKET_QUERY) => {
                let sql = std::str::from_utf8(&handle[1..])
                    .map_err(|_| Status::invalid_argument("ticket SQL is not UTF-8"))?;
                let plan = self.plan(sql).await?;
                self.stream(plan).await
            }
            Some(&TICKET_RESULT) => {
                let reader = StreamReader::try_new(std::io::Cursor::new(&handle[1..]), None)
                    .map_err(|e| Status::invalid_argument(format!("bad ticket: {e}")))?;
                let schema = reader.schema();
                let batches = reader
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Status::invalid_argument(format!("bad ticket: {e}")))?;
                Ok(Self::stream_batches(schema, batches))
            }
            _ => Err(Status::invalid_argument("not a ticket of this server")),
        }
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.authorize(&request)?;
        let plan = self.plan(&command.query).await?;
        let conn = self.statements.connection().map_err(df_status)?;
        let batches = self.statements.run(plan, &conn).await.map_err(df_status)?;
        Ok(affected_rows(&batches) as i64)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.authorize(&request)?;
        let plan = self.plan(&query.query).await?;
        let parameters = parameter_schema(&plan)?;
        let dataset = if is_command(&plan) {
            Schema::empty()
        } else {
            plan.schema().as_arrow().clone()
        };
        let handle = Bytes::from(
            self.next_handle
                .fetch_add(1, Ordering::Relaxed)
                .to_string()
                .into_bytes(),
        );
        {
            let mut prepared = self.prepared.lock();
            if prepared.len() >= PREPARED_MAX {
                return Err(Status::resource_exhausted(format!(
                    "{PREPARED_MAX} prepared statements are open: close some first"
                )));
            }
            prepared.insert(
                handle.clone(),
                Prepared {
                    sql: query.query,
                    params: Vec::new(),
                },
            );
        }
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: schema_bytes(&dataset)?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.authorize(&request)?;
        let handle = query.prepared_statement_handle;
        self.prepared(&handle)?;
        let rows = parameter_rows(request).await?;
        match self.prepared.lock().get_mut(&handle) {
            Some(p) => p.params = rows,
            None => return Err(Status::not_found("the prepared statement was closed")),
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let prepared = self.prepared(&cmd.prepared_statement_handle)?;
        let plan = self
            .prepared_plan(&prepared.sql, prepared.params.first())
            .await?;
        self.info_for(plan, move || cmd.as_any().encode_to_vec().into())
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.authorize(&request)?;
        let prepared = self.prepared(&query.prepared_statement_handle)?;
        let plan = self
            .prepared_plan(&prepared.sql, prepared.params.first())
            .await?;
        self.stream(plan).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.authorize(&request)?;
        let prepared = self.prepared(&query.prepared_statement_handle)?;
        let sent = parameter_rows(request).await?;
        let rows = if sent.is_empty() {
            prepared.params
        } else {
            sent
        };
        let conn = self.statements.connection().map_err(df_status)?;
        let mut total = 0u64;
        if rows.is_empty() {
            let plan = self.prepared_plan(&prepared.sql, None).await?;
            let batches = self.statements.run(plan, &conn).await.map_err(df_status)?;
            total += affected_rows(&batches);
        }
        for params in &rows {
            let plan = self.prepared_plan(&prepared.sql, Some(params)).await?;
            let batches = self.statements.run(plan, &conn).await.map_err(df_status)?;
            total += affected_rows(&batches);
        }
        Ok(total as i64)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        self.authorize(&request)?;
        self.prepared
            .lock()
            .remove(&query.prepared_statement_handle);
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let schema = query.into_builder(&self.sql_info).schema();
        Self::info(&schema, request.into_inner().cmd)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.authorize(&request)?;
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Self::stream_batches(schema, vec![batch]))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let schema = query.into_builder().schema();
        Self::info(&schema, request.into_inner().cmd)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.authorize(&request)?;
        let mut builder = query.into_builder();
        for name in self.statements.session().context().catalog_names() {
            builder.append(name);
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Self::stream_batches(schema, vec![batch]))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let schema = query.into_builder().schema();
        Self::info(&schema, request.into_inner().cmd)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.authorize(&request)?;
        let mut builder = query.into_builder();
        let ctx = self.statements.session().context();
        for catalog_name in ctx.catalog_names() {
            if let Some(catalog) = ctx.catalog(&catalog_name) {
                for schema_name in catalog.schema_names() {
                    builder.append(&catalog_name, schema_name);
                }
            }
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Self::stream_batches(schema, vec![batch]))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let schema = query.into_builder().schema();
        Self::info(&schema, request.into_inner().cmd)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.authorize(&request)?;
        let mut builder = query.into_builder();
        let ctx = self.statements.session().context();
        for catalog_name in ctx.catalog_names() {
            let Some(catalog) = ctx.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in schema.table_names() {
                    let table = schema.table(&table_name).await.map_err(df_status)?;
                    if let Some(table) = table {
                        let kind = match table.table_type() {
                            datafusion::datasource::TableType::Base => "TABLE",
                            datafusion::datasource::TableType::View => "VIEW",
                            datafusion::datasource::TableType::Temporary => "LOCAL TEMPORARY",
                        };
                        builder
                            .append(
                                &catalog_name,
                                &schema_name,
                                &table_name,
                                kind,
                                table.schema().as_ref(),
                            )
                            .map_err(internal)?;
                    }
                }
            }
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Self::stream_batches(schema, vec![batch]))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let schema = query.into_builder().schema();
        Self::info(&schema, request.into_inner().cmd)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.authorize(&request)?;
        let mut builder = query.into_builder();
        for kind in ["LOCAL TEMPORARY", "TABLE", "VIEW"] {
            builder.append(kind);
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(internal)?;
        Ok(Self::stream_batches(schema, vec![batch]))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
