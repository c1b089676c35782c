//! Strata's catalog: the default schema of a [`crate::StrataSession`] lists the database's
//! tables, and `CREATE TABLE` / `DROP TABLE` create and drop persistent LSM tables.
//!
//! ## SQL forms
//!
//! ```sql
//! -- A keyed table (upsert on the key); column-level `id BIGINT PRIMARY KEY` works too.
//! CREATE TABLE t (a INT, b VARCHAR, v DOUBLE, PRIMARY KEY (a, b));
//! -- Without a primary key: an append-only table keyed by a hidden row id.
//! CREATE TABLE log (ts TIMESTAMP, msg VARCHAR);
//! CREATE TABLE IF NOT EXISTS t (...);
//! CREATE TABLE t2 AS SELECT ...;          -- CTAS: the rows are written in one atomic batch
//! CREATE OR REPLACE TABLE t (...);        -- drops the old table's files first
//! DROP TABLE [IF EXISTS] t;               -- removes the table and (once unread) its files
//!
//! -- Per-table options, form 1: session defaults for the CREATE TABLEs that follow.
//! SET strata.profile = 'memory_efficient';   -- high_performance | memory_efficient | balanced
//! SET strata.memtable = 'trie';              -- any memtable kind (sorted, skiplist, trie, vector, ...)
//! SET strata.compaction = 'tiered';          -- leveled | size_tiered (tiered) | none
//! SET strata.memtable = 'default';           -- back to the database's defaults
//!
//! -- Per-table options, form 2: an explicit Strata table through CREATE EXTERNAL TABLE.
//! CREATE EXTERNAL TABLE t (a INT, v VARCHAR, PRIMARY KEY (a))
//!   STORED AS STRATA LOCATION 't'
//!   OPTIONS ('memtable' 'trie', 'compaction' 'tiered', 'profile' 'memory_efficient');
//! ```
//!
//! DataFusion's parser rejects `CREATE TABLE ... WITH (...)`, hence the two forms above. The
//! `LOCATION` of form 2 is required by DataFusion's parser and ignored by Strata (the table
//! lives in the database directory). Options resolve as: the profile's table options (or the
//! database's `table_defaults` without a profile), then the memtable kind and compaction
//! strategy on top. Unknown option names or values are errors that list the valid ones.
//!
//! ## Invariants
//!
//! * Strata tables are the database's tables: their list is read from the [`Db`] on every
//!   lookup, so they are present after a reopen and never cached stale.
//! * Other registrations (views, `CREATE EXTERNAL TABLE ... STORED AS CSV/PARQUET/...`,
//!   `register_*` calls) live in an in-memory map beside them, for this process only.
//! * Primary-key columns are NOT NULL in the stored schema; key types the engine cannot encode
//!   are rejected at `CREATE TABLE`.
//! * Column defaults (`DEFAULT expr`) are kept in memory for the session that created the
//!   table; they are not persisted.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session, TableProvider, TableProviderFactory};
use datafusion::common::{Constraint, Constraints, config_err, exec_err, plan_err};
use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{CreateExternalTable, Expr};
use parking_lot::RwLock;
use strata_engine::{
    Db, Error as EngineError, IngestOptions, MemtableKind, Mutation, Profile, StrategyKind,
    TableOptions, WriteOptions,
};

use crate::provider::StrataTable;
use crate::session::engine_error;

/// Session-level defaults for the tables that `CREATE TABLE` creates, set with
/// `SET strata.<name> = '<value>'` (see the module docs). `None` means "the database's
/// default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrataConfig {
    /// Memtable kind (`SET strata.memtable = 'trie'`).
    pub memtable: Option<MemtableKind>,
    /// Option profile (`SET strata.profile = 'memory_efficient'`).
    pub profile: Option<Profile>,
    /// Compaction strategy (`SET strata.compaction = 'tiered'`).
    pub compaction: Option<StrategyKind>,
}

/// The option names accepted by `SET strata.*` and `OPTIONS (...)`.
pub const OPTION_NAMES: &[&str] = &["memtable", "profile", "compaction"];

impl StrataConfig {
    /// Sets one option by name; the value `default` (or an empty string) clears it.
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<()> {
        let value = value.trim();
        let clear = value.is_empty() || value.eq_ignore_ascii_case("default");
        match key.trim().to_ascii_lowercase().as_str() {
            "memtable" | "memtable_kind" => {
                self.memtable = if clear {
                    None
                } else {
                    Some(value.parse().map_err(config_error)?)
                }
            }
            "profile" => {
                self.profile = if clear {
                    None
                } else {
                    Some(value.parse().map_err(config_error)?)
                }
            }
            "compaction" | "compaction_strategy" => {
                self.compaction = if clear {
                    None
                } else {
                    Some(value.parse().map_err(config_error)?)
                }
            }
            other => {
                return config_err!(
                    "unknown Strata table option '{other}'; valid options: {}",
                    OPTION_NAMES.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The table options these settings give on top of `base` (the database's defaults).
    pub fn table_options(&self, base: &TableOptions) -> TableOptions {
        let mut options = match self.profile {
            Some(profile) => profile.table_options(),
            None => base.clone(),
        };
        if let Some(kind) = self.memtable {
            options.memtable_kind = kind;
        }
        if let Some(strategy) = self.compaction {
            options.compaction.strategy = strategy;
        }
        options
    }
}

fn config_error(error: EngineError) -> DataFusionError {
    DataFusionError::Configuration(error.to_string())
}

impl ConfigExtension for StrataConfig {
    const PREFIX: &'static str = "strata";
}

impl ExtensionOptions for StrataConfig {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_option(key, value)
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        vec![
            ConfigEntry {
                key: "strata.memtable".into(),
                value: self.memtable.map(|k| k.name().to_string()),
                description: "Memtable kind of tables created from now on (default: the database's)",
            },
            ConfigEntry {
                key: "strata.profile".into(),
                value: self.profile.map(|p| p.name().to_string()),
                description: "Option profile of tables created from now on: high_performance, memory_efficient, balanced",
            },
            ConfigEntry {
                key: "strata.compaction".into(),
                value: self.compaction.map(|s| s.name().to_string()),
                description: "Compaction strategy of tables created from now on: leveled, size_tiered, none",
            },
        ]
    }
}

/// The default schema of a Strata session: the database's tables plus in-memory
/// registrations (views, external tables).
pub struct StrataSchemaProvider {
    db: Arc<Db>,
    /// Views, listing tables and other non-Strata registrations (not persisted).
    others: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
    /// Column defaults of Strata tables created in this process.
    defaults: RwLock<HashMap<String, HashMap<String, Expr>>>,
    /// The session whose `strata.*` settings apply to `CREATE TABLE`.
    state: OnceLock<Weak<parking_lot::RwLock<SessionState>>>,
}

impl std::fmt::Debug for StrataSchemaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataSchemaProvider")
            .field("db", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl StrataSchemaProvider {
    /// A schema over the tables of `db`.
    pub fn new(db: Arc<Db>) -> Self {
        StrataSchemaProvider {
            db,
            others: RwLock::new(HashMap::new()),
            defaults: RwLock::new(HashMap::new()),
            state: OnceLock::new(),
        }
    }

    /// Binds the session whose `SET strata.*` settings apply to tables created here.
    pub fn attach_session(&self, state: Weak<parking_lot::RwLock<SessionState>>) {
        let _ = self.state.set(state);
    }

    /// The session's current `strata.*` settings (defaults when no session is attached).
    fn session_config(&self) -> StrataConfig {
        self.state
            .get()
            .and_then(Weak::upgrade)
            .and_then(|state| {
                // `register_table` runs while the context holds a read lock on the state.
                let guard = state.read_recursive();
                guard
                    .config()
                    .options()
                    .extensions
                    .get::<StrataConfig>()
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// The table options `CREATE TABLE` uses now.
    pub fn create_options(&self) -> TableOptions {
        self.session_config()
            .table_options(&self.db.options().table_defaults)
    }

    fn strata_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.db.table(name) {
            Ok(table) => {
                let defaults = self.defaults.read().get(name).cloned().unwrap_or_default();
                Ok(Some(Arc::new(
                    StrataTable::new(table)?
                        .with_column_defaults(defaults)
                        .with_statement_bytes_max(self.db.options().write_batch_bytes_max),
                )))
            }
            Err(EngineError::TableNotFound(_)) => Ok(None),
            Err(e) => Err(engine_error(e)),
        }
    }

    /// Creates a Strata table from the memory table DataFusion built for `CREATE TABLE`
    /// (or CTAS), writing its rows atomically.
    fn create_from_memtable(&self, name: &str, mem: &MemTable) -> Result<()> {
        let schema = mem.schema();
        let key = primary_key_names(&schema, mem.constraints())?;
        let defaults: HashMap<String, Expr> = schema
            .fields()
            .iter()
            .filter_map(|f| {
                mem.get_column_default(f.name())
                    .map(|e| (f.name().clone(), e.clone()))
            })
            .collect();
        let mut batches: Vec<RecordBatch> = Vec::new();
        for partition in &mem.batches {
            let guard = partition.try_read().map_err(|_| {
                DataFusionError::Execution(format!(
                    "the rows of CREATE TABLE {name} are locked by another task"
                ))
            })?;
            batches.extend(guard.iter().filter(|b| b.num_rows() > 0).cloned());
        }
        let stored = stored_schema(&schema, &key);
        let options = self.create_options();
        let key_refs: Vec<&str> = key.iter().map(String::as_str).collect();
        let table = self
            .db
            .create_table_with(name, Arc::clone(&stored), &key_refs, options)
            .map_err(engine_error)?;
        let result = write_initial_rows(&table, &stored, &batches);
        if let Err(error) = result {
            // All or nothing: a CTAS whose rows cannot be written leaves no table behind.
            if let Err(drop_error) = self.db.drop_table(name) {
                tracing::warn!(%drop_error, table = name, "dropping a failed CTAS table");
            }
            return Err(error);
        }
        if !defaults.is_empty() {
            self.defaults.write().insert(name.to_string(), defaults);
        }
        Ok(())
    }
}

/// The primary-key column names declared in `constraints` (empty: none).
pub fn primary_key_names(
    schema: &SchemaRef,
    constraints: Option<&Constraints>,
) -> Result<Vec<String>> {
    let mut key: Option<Vec<String>> = None;
    for constraint in constraints.map(|c| c.iter()).into_iter().flatten() {
        if let Constraint::PrimaryKey(indices) = constraint {
            if key.is_some() {
                return plan_err!("a table can have only one PRIMARY KEY");
            }
            let names = indices
                .iter()
                .map(|i| {
                    schema
                        .fields()
                        .get(*i)
                        .map(|f| f.name().clone())
                        .ok_or_else(|| {
                            DataFusionError::Plan(format!("primary key column {i} out of range"))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            key = Some(names);
        }
    }
    Ok(key.unwrap_or_default())
}

/// The schema Strata stores for a table created with `schema` and primary key `key`: key
/// columns NOT NULL, field metadata kept, types unchanged (`Utf8View` stays `Utf8View`; the
/// engine stores every string layout).
pub fn stored_schema(schema: &SchemaRef, key: &[String]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let field = f.as_ref().clone();
            if key.iter().any(|k| k == f.name()) {
                field.with_nullable(false)
            } else {
                field
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Writes the rows of a new table (CTAS) as one atomic batch, or through the bulk ingest
/// path (also atomic) when they exceed the write batch limit.
fn write_initial_rows(
    table: &strata_engine::Table,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<()> {
    if batches.is_empty() {
        return Ok(());
    }
    let batches: Vec<RecordBatch> = batches
        .iter()
        .map(|b| crate::dml::conform_batch(b, schema))
        .collect::<Result<_>>()?;
    let mutations: Vec<Mutation<'_>> = batches.iter().map(Mutation::Upsert).collect();
    match table.write(&mutations, WriteOptions::default()) {
        Ok(_) => Ok(()),
        Err(EngineError::LimitExceeded(_)) => table
            .ingest(batches.into_iter().map(Ok), &IngestOptions::default())
            .map(|_| ())
            .map_err(engine_error),
        Err(e) => Err(engine_error(e)),
    }
}

#[async_trait]
impl SchemaProvider for StrataSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.db.list_tables().into_iter().map(|t| t.name).collect();
        names.extend(self.others.read().keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(other) = self.others.read().get(name) {
            return Ok(Some(Arc::clone(other)));
        }
        self.strata_table(name)
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(strata) = table.downcast_ref::<StrataTable>() {
            // Made by the STRATA table factory: already in the database.
            if strata.name() == name && self.db.has_table(&name) {
                return Ok(None);
            }
            return exec_err!(
                "Strata table '{}' cannot be registered under another name ('{name}')",
                strata.name()
            );
        }
        if self.db.has_table(&name) || self.others.read().contains_key(&name) {
            return exec_err!("Table '{name}' already exists");
        }
        if let Some(mem) = table.downcast_ref::<MemTable>() {
            self.create_from_memtable(&name, mem)?;
            return Ok(None);
        }
        self.others.write().insert(name, table);
        Ok(None)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(other) = self.others.write().remove(name) {
            return Ok(Some(other));
        }
        let Some(provider) = self.strata_table(name)? else {
            return Ok(None);
        };
        self.db.drop_table(name).map_err(engine_error)?;
        self.defaults.write().remove(name);
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.others.read().contains_key(name) || self.db.has_table(name)
    }
}

/// `CREATE EXTERNAL TABLE ... STORED AS STRATA LOCATION '...' OPTIONS (...)`: creates a
/// persistent Strata table with explicit options (see the module docs).
pub struct StrataTableFactory {
    schema: Arc<StrataSchemaProvider>,
}

impl std::fmt::Debug for StrataTableFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataTableFactory").finish_non_exhaustive()
    }
}

impl StrataTableFactory {
    /// A factory creating tables in the database of `schema` (which keeps their column
    /// defaults).
    pub fn new(schema: Arc<StrataSchemaProvider>) -> Self {
        StrataTableFactory { schema }
    }
}

#[async_trait]
impl TableProviderFactory for StrataTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        if !cmd.table_partition_cols.is_empty() {
            return plan_err!("Strata tables do not support PARTITIONED BY");
        }
        let name = cmd.name.table().to_string();
        let mut config = state
            .config_options()
            .extensions
            .get::<StrataConfig>()
            .cloned()
            .unwrap_or_default();
        for (key, value) in &cmd.options {
            // DataFusion may prefix unrecognised keys with the format namespace.
            let key = key.strip_prefix("format.").unwrap_or(key);
            config.set_option(key, value)?;
        }
        let db = &self.schema.db;
        let options = config.table_options(&db.options().table_defaults);
        let schema: SchemaRef = Arc::clone(cmd.schema.inner());
        let key = primary_key_names(&schema, Some(&cmd.constraints))?;
        let stored = stored_schema(&schema, &key);
        let key_refs: Vec<&str> = key.iter().map(String::as_str).collect();
        let table = db
            .create_table_with(&name, stored, &key_refs, options)
            .map_err(engine_error)?;
        let defaults: HashMap<String, Expr> = cmd.column_defaults.clone().into_iter().collect();
        if !defaults.is_empty() {
            self.schema
                .defaults
                .write()
                .insert(name.clone(), defaults.clone());
        }
        Ok(Arc::new(
            StrataTable::new(table)?
                .with_column_defaults(defaults)
                .with_statement_bytes_max(db.options().write_batch_bytes_max),
        ))
    }
}
