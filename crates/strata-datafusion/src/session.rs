//! The session over a database: a DataFusion `SessionContext` bound to one open Strata [`Db`].
//!
//! Owns the database handle for its lifetime (and, for [`StrataSession::memory`], the
//! temporary directory, deleted on drop). Dropping the session closes the database once the
//! last handle to it (clones of the context, table functions) is gone; [`StrataSession::close`]
//! closes it explicitly and reports errors.
//!
//! What a session sets up: the default catalog (`datafusion`) is a [`StrataCatalogProvider`]
//! whose schemas (`public` and those made by `CREATE SCHEMA`) are [`StrataSchemaProvider`]s
//! over the database's tables; `information_schema` is on (so `SHOW TABLES` lists Strata
//! tables); the `strata.*` settings extension ([`StrataConfig`]);
//! the `STRATA` table factory for `CREATE EXTERNAL TABLE`; the DML-guarding query planner
//! ([`crate::planner`]); `strata_versions(...)`; the table functions of [`crate::functions`]
//! and the file formats of [`crate::formats`].
//!
//! [`StrataSession::sql`], [`StrataSession::sql_with_options`] and
//! [`StrataSession::execute_logical_plan`] shadow the `SessionContext` methods of the same
//! name: they run table creation atomically (see [`crate::catalog`]) and refuse DDL that would
//! silently lose a persistent table. Calling the context's own methods
//! (`session.context().sql(...)`) bypasses that: `CREATE OR REPLACE TABLE` then drops the old
//! table before it builds the new one, as DataFusion does.

use std::collections::HashSet;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::SchemaProvider;
use datafusion::common::{DFSchema, TableReference, exec_err, not_impl_err, plan_err};
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{
    CreateExternalTable, CreateMemoryTable, DdlStatement, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use strata_engine::{Db, Options};

use crate::catalog::{
    StrataCatalogProvider, StrataConfig, StrataSchemaProvider, StrataTableFactory,
};
use crate::planner::StrataQueryPlanner;
use crate::provider::StatementSnapshot;
use crate::versions::VersionsFunction;
use crate::write_errors::WriteFailures;

/// A DataFusion session over one Strata database.
pub struct StrataSession {
    ctx: SessionContext,
    db: Arc<Db>,
    catalog: Arc<StrataCatalogProvider>,
    factory: Arc<StrataTableFactory>,
    /// The directory of a throw-away database, removed when the session is dropped (after
    /// the database, declared first, is closed).
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for StrataSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataSession")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Maps an engine error into DataFusion's error type.
pub fn engine_error(error: strata_engine::Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// Opens (or creates) the database in `path` and a session over it.
pub fn open(path: impl AsRef<Path>, options: Options) -> Result<StrataSession> {
    StrataSession::open_with(path, options, SessionConfig::new())
}

impl StrataSession {
    /// Opens (or creates) the database in `path` and a session over it with DataFusion
    /// settings `config` (Strata's catalog, `information_schema` and the `strata.*`
    /// extension are added to it).
    pub fn open_with(
        path: impl AsRef<Path>,
        options: Options,
        config: SessionConfig,
    ) -> Result<StrataSession> {
        let db = Db::open(path, options).map_err(engine_error)?;
        StrataSession::build(Arc::new(db), None, config)
    }

    /// A session over an already open database (and the temporary directory holding it, if
    /// it is a throw-away one).
    pub fn from_db(db: Arc<Db>, temp: Option<tempfile::TempDir>) -> Result<Self> {
        StrataSession::build(db, temp, SessionConfig::new())
    }

    /// A throw-away database in a temporary directory, deleted when the session is dropped.
    pub fn memory() -> Result<StrataSession> {
        StrataSession::memory_with(Options::default())
    }

    /// A throw-away database with `options`.
    pub fn memory_with(options: Options) -> Result<StrataSession> {
        let dir = tempfile::tempdir().map_err(|e| DataFusionError::External(Box::new(e)))?;
        let db = Db::open(dir.path(), options).map_err(engine_error)?;
        StrataSession::build(Arc::new(db), Some(dir), SessionConfig::new())
    }

    fn build(
        db: Arc<Db>,
        temp: Option<tempfile::TempDir>,
        config: SessionConfig,
    ) -> Result<StrataSession> {
        let mut config = config.with_information_schema(true);
        if config.options().extensions.get::<StrataConfig>().is_none() {
            config = config.with_option_extension(StrataConfig::default());
        }
        let catalog_name = config.options().catalog.default_catalog.clone();
        let schema_name = config.options().catalog.default_schema.clone();
        let catalog = Arc::new(StrataCatalogProvider::new(Arc::clone(&db), &schema_name));
        let factory = Arc::new(StrataTableFactory::new(Arc::clone(&catalog)));
        // s3:// locations of external tables and COPY targets (crate::formats::ObjectStores),
        // whose failed writes the CSV and JSON sinks report (crate::write_errors).
        let failures = Arc::new(WriteFailures::default());
        config = config.with_extension(Arc::clone(&failures));
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(crate::formats::ObjectStores::new(failures)))
            .build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_query_planner(Arc::new(StrataQueryPlanner))
            .with_table_factory("STRATA".into(), Arc::clone(&factory) as _)
            .build();
        let ctx = SessionContext::new_with_state(state);
        // Replaces DataFusion's in-memory default catalog: every schema is the database's.
        ctx.register_catalog(&catalog_name, Arc::clone(&catalog) as _);
        catalog.attach_session(ctx.state_weak_ref());
        ctx.register_udtf(
            "strata_versions",
            Arc::new(VersionsFunction::new(Arc::clone(&db))),
        );
        crate::functions::register(&ctx, &db)?;
        crate::formats::register(&ctx)?;
        Ok(StrataSession {
            ctx,
            db,
            catalog,
            factory,
            _temp: temp,
        })
    }

    /// The database.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// The DataFusion context.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Sets the datafusion-distributed workers this session's queries run on (`host:port`
    /// entries, see `crate::distributed`); an empty list runs them in this process again.
    /// The same as `SET strata.workers = 'host1:port,host2:port'`.
    pub fn set_workers(&self, workers: &[&str]) -> Result<()> {
        let value = workers.join(",");
        crate::catalog::parse_workers(&value)?;
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        match options.extensions.get_mut::<StrataConfig>() {
            Some(config) => {
                config.workers = (!value.is_empty()).then_some(value);
                Ok(())
            }
            None => exec_err!("the session has no strata settings"),
        }
    }

    /// The session's catalog (the default one): the database's schemas.
    pub fn catalog(&self) -> &Arc<StrataCatalogProvider> {
        &self.catalog
    }

    /// Plans (and for DDL/DML, runs) one SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        self.sql_with_options(sql, SQLOptions::new()).await
    }

    /// [`StrataSession::sql`], with the statement kinds `options` allows.
    pub async fn sql_with_options(&self, sql: &str, options: SQLOptions) -> Result<DataFrame> {
        let plan = self.ctx.state().create_logical_plan(sql).await?;
        options.verify_plan(&plan)?;
        self.execute_logical_plan(plan).await
    }

    /// Runs DDL and plans everything else, as `SessionContext::execute_logical_plan` does,
    /// except that `CREATE TABLE` (with or without `AS`, `OR REPLACE`) and `CREATE EXTERNAL
    /// TABLE ... STORED AS STRATA` over a Strata schema are atomic: the new table is filled
    /// as a staging table and swapped in with one manifest edit, so a failure (or a crash)
    /// leaves the old table as it was. Replacing a Strata table by a view or a non-Strata
    /// external table, which would exist for this session only, is refused, as is
    /// `CREATE DATABASE`.
    pub async fn execute_logical_plan(&self, plan: LogicalPlan) -> Result<DataFrame> {
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(cmd)) => {
                match self.strata_target(&cmd.name) {
                    Some((schema, table)) => {
                        Box::pin(self.create_memory_table(schema, table, cmd)).await
                    }
                    None => {
                        self.ctx
                            .execute_logical_plan(LogicalPlan::Ddl(
                                DdlStatement::CreateMemoryTable(cmd),
                            ))
                            .await
                    }
                }
            }
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd))
                if cmd.file_type.eq_ignore_ascii_case("STRATA") =>
            {
                Box::pin(self.create_strata_external_table(*cmd)).await
            }
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd)) if cmd.or_replace => {
                self.refuse_session_only_replacement(&cmd.name, "an external table")?;
                self.ctx
                    .execute_logical_plan(LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd)))
                    .await
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(cmd)) if cmd.or_replace => {
                self.refuse_session_only_replacement(&cmd.name, "a view")?;
                self.ctx
                    .execute_logical_plan(LogicalPlan::Ddl(DdlStatement::CreateView(cmd)))
                    .await
            }
            LogicalPlan::Ddl(DdlStatement::CreateCatalog(cmd)) => plan_err!(
                "CREATE DATABASE {}: a Strata database has one catalog ('{}'), whose schemas \
                 (CREATE SCHEMA) hold its tables",
                cmd.catalog_name,
                self.ctx.copied_config().options().catalog.default_catalog
            ),
            // Queries and DML: one read point for every Strata table the plan scans.
            plan @ (LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)) => {
                self.ctx.execute_logical_plan(plan).await
            }
            plan => {
                let mut state = self.ctx.state();
                state
                    .config_mut()
                    .set_extension(Arc::new(StatementSnapshot::new(&self.db)));
                // With `strata.workers` set, the query may run on workers.
                #[cfg(feature = "distributed")]
                let state = crate::distributed::statement_state(state)?;
                Ok(DataFrame::new(state, plan))
            }
        }
    }

    /// The Strata schema and table name `name` refers to, when it is one of ours.
    fn strata_target(&self, name: &TableReference) -> Option<(Arc<StrataSchemaProvider>, String)> {
        let config = self.ctx.copied_config();
        let catalog = &config.options().catalog;
        let resolved = name
            .clone()
            .resolve(&catalog.default_catalog, &catalog.default_schema);
        if *resolved.catalog != *catalog.default_catalog {
            return None;
        }
        let schema = self.catalog.strata_schema(&resolved.schema)?;
        Some((schema, resolved.table.to_string()))
    }

    fn refuse_session_only_replacement(&self, name: &TableReference, what: &str) -> Result<()> {
        if let Some((schema, table)) = self.strata_target(name)
            && schema.has_strata_table(&table)
        {
            return plan_err!(
                "{name} is a persistent Strata table; replacing it by {what}, which exists for \
                 this session only, would lose it at the next open. DROP TABLE {name} first"
            );
        }
        Ok(())
    }

    fn empty_dataframe(&self) -> Result<DataFrame> {
        let plan = LogicalPlanBuilder::empty(false).build()?;
        Ok(DataFrame::new(self.ctx.state(), plan))
    }

    async fn create_memory_table(
        &self,
        schema: Arc<StrataSchemaProvider>,
        table: String,
        cmd: CreateMemoryTable,
    ) -> Result<DataFrame> {
        let CreateMemoryTable {
            name,
            input,
            if_not_exists,
            or_replace,
            constraints,
            column_defaults,
            temporary,
        } = cmd;
        if temporary {
            return not_impl_err!("Temporary tables not supported");
        }
        let exists = schema.table_exist(&table);
        match (if_not_exists, or_replace, exists) {
            (true, false, true) => return self.empty_dataframe(),
            (true, true, true) => {
                return exec_err!("'IF NOT EXISTS' cannot coexist with 'REPLACE'");
            }
            (false, false, true) => return exec_err!("Table '{name}' already exists"),
            _ => {}
        }
        // One ordered stream: of the rows of a key, the last in the query's order wins (as
        // for INSERT, see `crate::dml`).
        let state = crate::planner::ordered_write_state(&self.ctx.state());
        let input = state.optimize(&Arc::unwrap_or_clone(input))?;
        ensure_unique_column_names(input.schema())?;
        let columns = Arc::clone(input.schema().inner());
        // Everything that can be checked before the query runs is.
        let spec = schema.table_spec(
            &table,
            &columns,
            Some(&constraints),
            &column_defaults,
            schema.create_options(),
        )?;
        // Streamed in input order (partitions one after the other) into the new table.
        let bulk_bytes = crate::catalog::bulk_load_bytes(state.config_options());
        let task = state.task_ctx();
        let plan = state.create_physical_plan(&input).await?;
        let plan = Arc::new(crate::dml::InputOrderExec::new(plan));
        let data = datafusion::physical_plan::execute_stream(plan, task)?;
        schema
            .create_table_from_stream(spec, data, or_replace && exists, bulk_bytes)
            .await?;
        self.empty_dataframe()
    }

    async fn create_strata_external_table(&self, cmd: CreateExternalTable) -> Result<DataFrame> {
        if cmd.temporary {
            return not_impl_err!("Temporary tables not supported");
        }
        let (schema, spec) = self.factory.table_spec(&self.ctx.state(), &cmd)?;
        let exists = schema.table_exist(&spec.name);
        match (cmd.if_not_exists, cmd.or_replace, exists) {
            (true, false, true) => return self.empty_dataframe(),
            (true, true, true) => {
                return exec_err!("'IF NOT EXISTS' cannot coexist with 'REPLACE'");
            }
            (false, false, true) => {
                return exec_err!("External table '{}' already exists", cmd.name);
            }
            _ => {}
        }
        schema.create_table(spec, &[], cmd.or_replace && exists)?;
        self.empty_dataframe()
    }

    /// Closes the database cleanly (WAL synced, background work stopped, directory lock
    /// released) so the same path can be opened again. Fails when other handles to the
    /// database are still alive (clones of this session's context, for example).
    pub fn close(self) -> Result<()> {
        let StrataSession {
            ctx,
            db,
            catalog,
            factory,
            _temp,
        } = self;
        drop((catalog, factory));
        drop(ctx);
        match Arc::try_unwrap(db) {
            Ok(db) => db.close().map_err(engine_error),
            Err(db) => Err(DataFusionError::Execution(format!(
                "cannot close the database at {}: {} other handles to it are still open \
                 (drop clones of the session context first)",
                db.path().display(),
                Arc::strong_count(&db) - 1
            ))),
        }
    }
}

/// DataFusion's check that a new table's columns have distinct unqualified names.
fn ensure_unique_column_names(schema: &DFSchema) -> Result<()> {
    let mut seen = HashSet::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if !seen.insert(field.name().as_str()) {
            return plan_err!("duplicate column name '{}' in the new table", field.name());
        }
    }
    Ok(())
}

impl Deref for StrataSession {
    type Target = SessionContext;

    fn deref(&self) -> &SessionContext {
        &self.ctx
    }
}
