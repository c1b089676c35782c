//! Strata's catalog: the default catalog of a [`crate::StrataSession`] is the database. Its
//! default schema (`public`) and every schema made by `CREATE SCHEMA` list the database's
//! tables; `CREATE TABLE` / `DROP TABLE` create and drop persistent LSM tables.
//!
//! ## SQL forms
//!
//! ```sql
//! -- A keyed table (upsert on the key); column-level `id BIGINT PRIMARY KEY` works too.
//! CREATE TABLE t (a INT, b VARCHAR, v DOUBLE, PRIMARY KEY (a, b));
//! -- Without a primary key: an append-only table keyed by a hidden row id.
//! CREATE TABLE log (ts TIMESTAMP, msg VARCHAR);
//! CREATE TABLE IF NOT EXISTS t (...);
//! CREATE TABLE t2 AS SELECT ...;          -- CTAS: the table appears with all its rows or not at all
//! CREATE OR REPLACE TABLE t (...) [AS ...]; -- atomic: the old table stays until the new one is complete
//! DROP TABLE [IF EXISTS] [schema.]t;      -- removes the table and (once unread) its files
//! CREATE TABLE t (id INT PRIMARY KEY, v INT DEFAULT 42);  -- defaults are stored with the table
//!
//! -- Schemas: namespaces of the database, persistent (also while empty).
//! CREATE SCHEMA s2;
//! CREATE TABLE s2.t (id INT PRIMARY KEY, v INT);   -- a Strata table like any other
//! DROP SCHEMA s2;                                  -- RESTRICT: refused while it holds tables
//! DROP SCHEMA s2 CASCADE;                          -- drops its tables in the same manifest edit
//!
//! -- Per-table options, form 1: session defaults for the CREATE TABLEs that follow.
//! SET strata.profile = 'memory_efficient';   -- high_performance | memory_efficient | balanced
//! SET strata.memtable = 'trie';              -- any memtable kind (sorted, skiplist, trie, vector, ...)
//! SET strata.compaction = 'tiered';          -- leveled | size_tiered (tiered) | none
//! SET strata.memtable = 'default';           -- back to the database's defaults
//!
//! -- Per-table options, form 2: an explicit Strata table through CREATE EXTERNAL TABLE.
//! CREATE [OR REPLACE] EXTERNAL TABLE t (a INT, v VARCHAR, PRIMARY KEY (a))
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
//! ## How tables are created
//!
//! [`crate::StrataSession`] runs `CREATE TABLE` (with or without `AS`) and `CREATE EXTERNAL
//! TABLE ... STORED AS STRATA` itself ([`crate::StrataSession::execute_logical_plan`]):
//! everything that can be checked before the query runs is (key, types, defaults, options),
//! then the rows go into an engine *staging* table, which one manifest edit publishes under
//! the name, dropping the table it replaces in the same edit
//! ([`StrataSchemaProvider::create_table`]). A failure at any point, or a crash (staging
//! tables are dropped at open), leaves the old table as it was. DataFusion's own DDL path
//! (`session.context().sql(...)`) still works: `CREATE TABLE` arrives at
//! [`SchemaProvider::register_table`] as a `MemTable` and takes the same staging path, but
//! its `OR REPLACE` deregisters (drops) the old table before the new rows are computed, so
//! that path is not atomic; use the session's `sql`.
//!
//! ## Invariants
//!
//! * Strata tables are the database's tables: their list is read from the [`Db`] on every
//!   lookup, so they are present after a reopen and never cached stale.
//! * Every schema of the catalog but foreign ones (below) is an engine namespace: created by
//!   `CREATE SCHEMA` in one manifest edit, present after a reopen even when empty, its
//!   tables persistent with their keys enforced. Engine identity is `(namespace, name)`, so
//!   `public."a.b"` and `a.b` are different tables. The default schema is the default
//!   namespace and cannot be dropped.
//! * Other registrations (views, `CREATE EXTERNAL TABLE ... STORED AS CSV/PARQUET/...`,
//!   `register_*` calls, and schema providers other than an empty `MemorySchemaProvider`
//!   registered from Rust) live in in-memory maps beside them, for this process only.
//!   Replacing a Strata table by one of them (`CREATE OR REPLACE VIEW`) is refused by the
//!   session, since the data would be gone at the next open.
//! * Primary-key columns are NOT NULL in the stored schema; key types the engine cannot encode
//!   are rejected at `CREATE TABLE`, and so is `UNIQUE`, which would not be enforced.
//! * Column defaults (`DEFAULT expr`) are stored with the table, in the manifest edit that
//!   creates it, as SQL text (DataFusion's unparser, property `default.<column>`); the text
//!   must parse back at `CREATE TABLE` or the statement fails, and it is parsed once per
//!   table when the table is first looked up.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, Weak};

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::information_schema::INFORMATION_SCHEMA;
use datafusion::catalog::{
    CatalogProvider, MemorySchemaProvider, SchemaProvider, Session, TableProvider,
    TableProviderFactory,
};
use datafusion::common::{Constraint, Constraints, DFSchema, config_err, exec_err, plan_err};
use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{CreateExternalTable, Expr};
use datafusion::sql::unparser::expr_to_sql;
use parking_lot::RwLock;
use strata_engine::{
    DEFAULT_NAMESPACE, Db, Error as EngineError, IngestOptions, MemtableKind, Mutation, Profile,
    StrategyKind, Table, TableId, TableOptions, TableSpec, WriteOptions,
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
    /// Deletion vectors (`SET strata.deletion_vectors = 'false'`; see
    /// `TableOptions::deletion_vectors`).
    pub deletion_vectors: Option<bool>,
    /// Not a table option: the bytes of rows (Arrow memory) an `INSERT` or `CREATE TABLE ...
    /// AS` holds before it switches from one WAL batch to a bulk load
    /// (`SET strata.bulk_load_bytes = '16777216'`; default [`DEFAULT_BULK_LOAD_BYTES`], never
    /// more than the database's `write_batch_bytes_max`; see [`crate::dml`]).
    pub bulk_load_bytes: Option<usize>,
    /// Not a table option: the datafusion-distributed workers queries run on
    /// (`SET strata.workers = 'host1:port,host2:port'`; empty: queries run in this process;
    /// see `crate::distributed`).
    pub workers: Option<String>,
    /// Not a table option: the time-to-live, in seconds, of the lease a distributed query
    /// writes over the files it reads (`SET strata.lease_ttl_secs = '600'`; default
    /// [`strata_engine::lease::DEFAULT_LEASE_TTL`], an hour). The coordinator renews the
    /// lease every third of it while the query's plan lives; it bounds how long the files of
    /// a coordinator that died stay protected, and must exceed the clock skew between the
    /// machines by far.
    pub lease_ttl_secs: Option<u64>,
}

/// The default of `strata.bulk_load_bytes`: 64 MiB.
pub const DEFAULT_BULK_LOAD_BYTES: usize = 64 << 20;

/// The session's `strata.bulk_load_bytes` (see [`StrataConfig::bulk_load_bytes`]).
pub fn bulk_load_bytes(options: &datafusion::config::ConfigOptions) -> usize {
    options
        .extensions
        .get::<StrataConfig>()
        .and_then(|c| c.bulk_load_bytes)
        .unwrap_or(DEFAULT_BULK_LOAD_BYTES)
}

/// The session's `strata.lease_ttl_secs` (see [`StrataConfig::lease_ttl_secs`]).
pub fn lease_ttl(options: &datafusion::config::ConfigOptions) -> std::time::Duration {
    options
        .extensions
        .get::<StrataConfig>()
        .and_then(|c| c.lease_ttl_secs)
        .map_or(
            strata_engine::lease::DEFAULT_LEASE_TTL,
            std::time::Duration::from_secs,
        )
}

/// The worker URLs of a `strata.workers` value: `host:port` entries (or `http://host:port`,
/// `https://host:port`) separated by commas; an entry without a scheme gets `http://`.
pub fn parse_workers(value: &str) -> Result<Vec<String>> {
    let mut urls = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let url = if entry.contains("://") {
            entry.to_string()
        } else {
            format!("http://{entry}")
        };
        let parsed = url::Url::parse(&url).map_err(|e| {
            DataFusionError::Configuration(format!("strata.workers: bad worker '{entry}': {e}"))
        })?;
        if parsed.host_str().is_none_or(str::is_empty) || parsed.port_or_known_default().is_none() {
            return config_err!("strata.workers: '{entry}' is not host:port");
        }
        urls.push(url);
    }
    Ok(urls)
}

/// The option names accepted by `SET strata.*` and `OPTIONS (...)`.
pub const OPTION_NAMES: &[&str] = &["memtable", "profile", "compaction", "deletion_vectors"];

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
            "deletion_vectors" => {
                self.deletion_vectors = if clear {
                    None
                } else {
                    match value.to_ascii_lowercase().as_str() {
                        "true" | "on" | "1" => Some(true),
                        "false" | "off" | "0" => Some(false),
                        _ => {
                            return config_err!(
                                "deletion_vectors must be true or false, got '{value}'"
                            );
                        }
                    }
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
        if let Some(on) = self.deletion_vectors {
            options.deletion_vectors = on;
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
        if key.trim().eq_ignore_ascii_case("bulk_load_bytes") {
            let value = value.trim();
            self.bulk_load_bytes = if value.is_empty() || value.eq_ignore_ascii_case("default") {
                None
            } else {
                Some(value.parse().map_err(|_| {
                    DataFusionError::Configuration(format!(
                        "strata.bulk_load_bytes must be a number of bytes, got '{value}'"
                    ))
                })?)
            };
            return Ok(());
        }
        if key.trim().eq_ignore_ascii_case("workers") {
            let value = value.trim();
            self.workers = if value.is_empty() || value.eq_ignore_ascii_case("default") {
                None
            } else {
                parse_workers(value)?;
                Some(value.to_string())
            };
            return Ok(());
        }
        if key.trim().eq_ignore_ascii_case("lease_ttl_secs") {
            let value = value.trim();
            self.lease_ttl_secs = if value.is_empty() || value.eq_ignore_ascii_case("default") {
                None
            } else {
                match value.parse::<u64>() {
                    Ok(secs) if secs > 0 => Some(secs),
                    _ => {
                        return config_err!(
                            "strata.lease_ttl_secs must be a positive number of seconds, got '{value}'"
                        );
                    }
                }
            };
            return Ok(());
        }
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
            ConfigEntry {
                key: "strata.deletion_vectors".into(),
                value: self.deletion_vectors.map(|on| on.to_string()),
                description: "Deletion vectors for tables created from now on: true (scans read files without merging) or false",
            },
            ConfigEntry {
                key: "strata.bulk_load_bytes".into(),
                value: self.bulk_load_bytes.map(|b| b.to_string()),
                description: "Bytes of rows an INSERT or CREATE TABLE AS holds before it switches from one WAL batch to a bulk load into SSTs (default 67108864)",
            },
            ConfigEntry {
                key: "strata.workers".into(),
                value: self.workers.clone(),
                description: "datafusion-distributed workers (host:port, comma-separated) that run this session's queries; empty: queries run in this process",
            },
            ConfigEntry {
                key: "strata.lease_ttl_secs".into(),
                value: self.lease_ttl_secs.map(|s| s.to_string()),
                description: "Seconds the lease of a distributed query protects its files after its last renewal (renewed every third of it while the query lives; default 3600)",
            },
        ]
    }
}

/// Property key prefix under which a column's `DEFAULT` is stored with its table:
/// `default.<column>` holds the expression as SQL text (DataFusion's unparser), parsed again
/// when the table is opened.
pub const DEFAULT_PROPERTY_PREFIX: &str = "default.";

/// What the catalog and all its schemas share: the database, the session whose settings
/// apply, and the parsed column defaults of the tables looked up so far.
struct Shared {
    db: Arc<Db>,
    /// The session whose `strata.*` settings apply to `CREATE TABLE`.
    state: OnceLock<Weak<parking_lot::RwLock<SessionState>>>,
    /// Column defaults by table id (ids are never reused, so entries never go stale).
    defaults: RwLock<HashMap<TableId, Arc<HashMap<String, Expr>>>>,
}

impl Shared {
    fn new(db: Arc<Db>) -> Arc<Self> {
        Arc::new(Shared {
            db,
            state: OnceLock::new(),
            defaults: RwLock::new(HashMap::new()),
        })
    }

    /// Runs `f` on the attached session's state, or on a fresh default state.
    fn with_state<R>(&self, f: impl FnOnce(&SessionState) -> R) -> R {
        match self.state.get().and_then(Weak::upgrade) {
            // Lookups run while the context may hold a read lock on the state.
            Some(state) => f(&state.read_recursive()),
            None => f(&SessionStateBuilder::new().with_default_features().build()),
        }
    }

    /// The session's current `strata.*` settings (defaults when no session is attached).
    fn session_config(&self) -> StrataConfig {
        self.state
            .get()
            .and_then(Weak::upgrade)
            .and_then(|state| {
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

    /// The column defaults stored with `table`, parsed once per table.
    fn column_defaults(&self, table: &Table) -> Arc<HashMap<String, Expr>> {
        if let Some(parsed) = self.defaults.read().get(&table.id()) {
            return Arc::clone(parsed);
        }
        let properties = self.db.table_properties(table);
        let mut parsed = HashMap::new();
        for (key, text) in &properties {
            let Some(column) = key.strip_prefix(DEFAULT_PROPERTY_PREFIX) else {
                continue;
            };
            match self.with_state(|state| state.create_logical_expr(text, &DFSchema::empty())) {
                Ok(expr) => {
                    parsed.insert(column.to_string(), expr);
                }
                // Checked at CREATE TABLE, so only a DataFusion upgrade that parses the text
                // differently can get here; reads must keep working.
                Err(error) => tracing::warn!(
                    %error, table = table.name(), column, default = %text,
                    "the stored DEFAULT of a column does not parse; the column has none"
                ),
            }
        }
        let parsed = Arc::new(parsed);
        self.defaults
            .write()
            .insert(table.id(), Arc::clone(&parsed));
        parsed
    }

    /// `DEFAULT` expressions as table properties, each checked to parse back.
    fn default_properties(&self, defaults: &[(String, Expr)]) -> Result<BTreeMap<String, String>> {
        let mut properties = BTreeMap::new();
        for (column, expr) in defaults {
            let text = expr_to_sql(expr)
                .map_err(|e| {
                    DataFusionError::Plan(format!(
                        "the DEFAULT of column {column} ({expr}) cannot be stored: {e}"
                    ))
                })?
                .to_string();
            self.with_state(|state| state.create_logical_expr(&text, &DFSchema::empty()))
                .map_err(|e| {
                    DataFusionError::Plan(format!(
                        "the DEFAULT of column {column} ({expr}) cannot be stored: its SQL \
                         text {text} does not parse back ({e})"
                    ))
                })?;
            properties.insert(format!("{DEFAULT_PROPERTY_PREFIX}{column}"), text);
        }
        Ok(properties)
    }
}

/// The catalog of a Strata session (DataFusion's default catalog): the default schema and
/// one schema per namespace of the database, all persistent (see the module docs).
pub struct StrataCatalogProvider {
    shared: Arc<Shared>,
    /// The SQL name of the default namespace (`datafusion.catalog.default_schema`).
    default_name: String,
    default_schema: Arc<StrataSchemaProvider>,
    /// The schemas of namespaces, made on first use (they hold the namespace's views).
    schemas: RwLock<HashMap<String, Arc<StrataSchemaProvider>>>,
    /// Schema providers registered from Rust that are not Strata schemas (not persisted).
    foreign: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl std::fmt::Debug for StrataCatalogProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataCatalogProvider")
            .field("db", &self.shared.db.path())
            .finish_non_exhaustive()
    }
}

impl StrataCatalogProvider {
    /// The catalog over `db`, whose default namespace is the schema `default_schema`.
    pub fn new(db: Arc<Db>, default_schema: &str) -> Self {
        let shared = Shared::new(db);
        StrataCatalogProvider {
            default_schema: Arc::new(StrataSchemaProvider::in_namespace(
                Arc::clone(&shared),
                DEFAULT_NAMESPACE,
            )),
            shared,
            default_name: default_schema.to_string(),
            schemas: RwLock::new(HashMap::new()),
            foreign: RwLock::new(HashMap::new()),
        }
    }

    /// Binds the session whose `SET strata.*` settings apply to tables created here.
    pub fn attach_session(&self, state: Weak<parking_lot::RwLock<SessionState>>) {
        let _ = self.shared.state.set(state);
    }

    /// The default schema.
    pub fn default_schema(&self) -> &Arc<StrataSchemaProvider> {
        &self.default_schema
    }

    /// The namespace of the schema named `name`, if it is a Strata schema. The default
    /// namespace is reached by the default schema's name only: the engine's name for it
    /// (the empty string) is no second name of the default schema.
    fn namespace_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        if name == self.default_name {
            Some(DEFAULT_NAMESPACE)
        } else if name != DEFAULT_NAMESPACE && self.shared.db.has_namespace(name) {
            Some(name)
        } else {
            None
        }
    }

    /// The Strata schema named `name` (the default one or a namespace's).
    pub fn strata_schema(&self, name: &str) -> Option<Arc<StrataSchemaProvider>> {
        let namespace = self.namespace_of(name)?;
        if namespace == DEFAULT_NAMESPACE {
            return Some(Arc::clone(&self.default_schema));
        }
        if let Some(schema) = self.schemas.read().get(namespace) {
            return Some(Arc::clone(schema));
        }
        let mut schemas = self.schemas.write();
        let schema = schemas.entry(namespace.to_string()).or_insert_with(|| {
            Arc::new(StrataSchemaProvider::in_namespace(
                Arc::clone(&self.shared),
                namespace,
            ))
        });
        Some(Arc::clone(schema))
    }
}

impl CatalogProvider for StrataCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        let mut names = vec![self.default_name.clone()];
        names.extend(self.shared.db.namespaces());
        names.extend(self.foreign.read().keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(schema) = self.strata_schema(name) {
            return Some(schema as Arc<dyn SchemaProvider>);
        }
        self.foreign.read().get(name).cloned()
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        if self.namespace_of(name).is_some() || self.foreign.read().contains_key(name) {
            return exec_err!("Schema '{name}' already exists");
        }
        // `CREATE SCHEMA` hands over an empty in-memory schema: it becomes a namespace of
        // the database. Other providers registered from Rust stay what they are.
        let empty_memory = schema
            .downcast_ref::<MemorySchemaProvider>()
            .is_some_and(|s| s.table_names().is_empty());
        if empty_memory || schema.is::<StrataSchemaProvider>() {
            if name == INFORMATION_SCHEMA {
                return plan_err!("'{name}' is reserved for the information schema");
            }
            self.shared
                .db
                .create_namespace(name)
                .map_err(engine_error)?;
            return Ok(None);
        }
        self.foreign.write().insert(name.to_string(), schema);
        Ok(None)
    }

    fn deregister_schema(
        &self,
        name: &str,
        cascade: bool,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        if name == self.default_name {
            return exec_err!("the default schema '{name}' cannot be dropped");
        }
        if let Some(schema) = self.strata_schema(name) {
            let tables = schema.table_names();
            if !cascade && !tables.is_empty() {
                return exec_err!(
                    "Cannot drop schema {name} because other tables depend on it: {}",
                    tables.join(", ")
                );
            }
            self.shared
                .db
                .drop_namespace(name, cascade)
                .map_err(engine_error)?;
            self.schemas.write().remove(name);
            return Ok(Some(schema as Arc<dyn SchemaProvider>));
        }
        let Some(schema) = self.foreign.read().get(name).cloned() else {
            return Ok(None);
        };
        let tables = schema.table_names();
        if !cascade && !tables.is_empty() {
            return exec_err!(
                "Cannot drop schema {name} because other tables depend on it: {}",
                tables.join(", ")
            );
        }
        self.foreign.write().remove(name);
        Ok(Some(schema))
    }
}

/// A schema of a Strata session: the tables of one namespace of the database plus
/// in-memory registrations (views, external tables).
pub struct StrataSchemaProvider {
    shared: Arc<Shared>,
    /// The engine namespace ([`DEFAULT_NAMESPACE`] for the default schema).
    namespace: String,
    /// Views, listing tables and other non-Strata registrations (not persisted).
    others: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
}

impl std::fmt::Debug for StrataSchemaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataSchemaProvider")
            .field("db", &self.shared.db.path())
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl StrataSchemaProvider {
    /// A schema over the tables of the default namespace of `db`, on its own (outside a
    /// [`StrataCatalogProvider`]).
    pub fn new(db: Arc<Db>) -> Self {
        StrataSchemaProvider::in_namespace(Shared::new(db), DEFAULT_NAMESPACE)
    }

    fn in_namespace(shared: Arc<Shared>, namespace: &str) -> Self {
        StrataSchemaProvider {
            shared,
            namespace: namespace.to_string(),
            others: RwLock::new(HashMap::new()),
        }
    }

    /// Binds the session whose `SET strata.*` settings apply to tables created here.
    pub fn attach_session(&self, state: Weak<parking_lot::RwLock<SessionState>>) {
        let _ = self.shared.state.set(state);
    }

    /// The engine namespace of this schema.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The table options `CREATE TABLE` uses now.
    pub fn create_options(&self) -> TableOptions {
        self.shared
            .session_config()
            .table_options(&self.shared.db.options().table_defaults)
    }

    fn provider_for(&self, table: Table) -> Result<Arc<dyn TableProvider>> {
        let defaults = self.shared.column_defaults(&table);
        Ok(Arc::new(
            StrataTable::new(table)?
                .with_column_defaults(defaults.as_ref().clone())
                .with_statement_bytes_max(self.shared.db.options().write_batch_bytes_max),
        ))
    }

    fn strata_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.shared.db.table_in(&self.namespace, name) {
            Ok(table) => self.provider_for(table).map(Some),
            Err(EngineError::TableNotFound(_)) => Ok(None),
            Err(e) => Err(engine_error(e)),
        }
    }

    /// True when `name` is a Strata table of this schema.
    pub fn has_strata_table(&self, name: &str) -> bool {
        self.shared.db.has_table_in(&self.namespace, name)
    }

    /// The engine definition of a table `name` of this schema with columns `schema`, key
    /// `constraints` and column `defaults`, created with `options`.
    pub fn table_spec(
        &self,
        name: &str,
        schema: &SchemaRef,
        constraints: Option<&Constraints>,
        defaults: &[(String, Expr)],
        options: TableOptions,
    ) -> Result<TableSpec> {
        let key = primary_key_names(schema, constraints)?;
        Ok(TableSpec {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            schema: stored_schema(schema, &key),
            primary_key: key,
            options,
            properties: self.shared.default_properties(defaults)?,
        })
    }

    /// Creates the table `spec` holding `rows`, atomically: the rows go into a staging table
    /// that becomes visible in one manifest edit, which with `replace` also drops the table
    /// (or view) holding the name. On any error nothing changes, and a crash midway leaves
    /// the old state.
    pub fn create_table(&self, spec: TableSpec, rows: &[RecordBatch], replace: bool) -> Result<()> {
        let db = &self.shared.db;
        let name = spec.name.clone();
        if !replace && self.others.read().contains_key(&name) {
            return exec_err!("Table '{name}' already exists");
        }
        let stored = Arc::clone(&spec.schema);
        if !replace && rows.iter().all(|b| b.num_rows() == 0) {
            // Nothing to fill: one edit creates the table.
            db.create_table_from(spec).map_err(engine_error)?;
            return Ok(());
        }
        let staged = db.create_staging_table(spec).map_err(engine_error)?;
        let result = write_initial_rows(&staged, &stored, rows)
            .and_then(|()| db.publish_table(&staged, replace).map_err(engine_error));
        if let Err(error) = result {
            // Dropped at the next open anyway; this only frees it sooner.
            if let Err(discard) = db.discard_staging_table(&staged) {
                tracing::warn!(%discard, table = %name, "discarding a staging table");
            }
            return Err(error);
        }
        if replace {
            self.others.write().remove(&name);
        }
        Ok(())
    }

    /// Creates the table `spec` holding the rows of `data`, as [`Self::create_table`] does
    /// but streaming: the rows go into the staging table as they come, through one synced WAL
    /// batch when they stay under `bulk_bytes`, else through a bulk load (in bounded memory,
    /// of any size; see [`crate::dml`]). Atomic: on any error, and across a crash, nothing
    /// changes.
    pub async fn create_table_from_stream(
        &self,
        spec: TableSpec,
        mut data: datafusion::execution::SendableRecordBatchStream,
        replace: bool,
        bulk_bytes: usize,
    ) -> Result<()> {
        use futures::StreamExt;
        let db = &self.shared.db;
        let name = spec.name.clone();
        if !replace && self.others.read().contains_key(&name) {
            return exec_err!("Table '{name}' already exists");
        }
        // The first row decides whether there is anything to stage.
        let mut first = None;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_rows() > 0 {
                first = Some(batch);
                break;
            }
        }
        let Some(first) = first else {
            return self.create_table(spec, &[], replace);
        };
        let stored = Arc::clone(&spec.schema);
        let staged = db.create_staging_table(spec).map_err(engine_error)?;
        let schema = data.schema();
        let rest = futures::stream::once(async move { Ok(first) }).chain(data);
        let data = Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rest),
        );
        let writer = crate::dml::RowWriter {
            table: staged.clone(),
            schema: stored,
            bulk_bytes: bulk_bytes.min(db.options().write_batch_bytes_max),
            // The edit that publishes the table (and drops the one it replaces) must never
            // be durable before its rows are.
            sync: true,
        };
        let result = match writer.write(data).await {
            Ok(_) => db.publish_table(&staged, replace).map_err(engine_error),
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            // Dropped at the next open anyway; this only frees it sooner.
            if let Err(discard) = db.discard_staging_table(&staged) {
                tracing::warn!(%discard, table = %name, "discarding a staging table");
            }
            return Err(error);
        }
        if replace {
            self.others.write().remove(&name);
        }
        Ok(())
    }

    /// Creates a Strata table from the memory table DataFusion built for `CREATE TABLE`
    /// (or CTAS) when it runs without [`crate::StrataSession`]'s own DDL handling.
    fn create_from_memtable(&self, name: &str, mem: &MemTable) -> Result<()> {
        let schema = mem.schema();
        let defaults: Vec<(String, Expr)> = schema
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
        let spec = self.table_spec(
            name,
            &schema,
            mem.constraints(),
            &defaults,
            self.create_options(),
        )?;
        self.create_table(spec, &batches, false)
    }
}

/// The primary-key column names declared in `constraints` (empty: none).
pub fn primary_key_names(
    schema: &SchemaRef,
    constraints: Option<&Constraints>,
) -> Result<Vec<String>> {
    let mut key: Option<Vec<String>> = None;
    for constraint in constraints.map(|c| c.iter()).into_iter().flatten() {
        if let Constraint::Unique(indices) = constraint {
            let columns: Vec<&str> = indices
                .iter()
                .filter_map(|i| schema.fields().get(*i).map(|f| f.name().as_str()))
                .collect();
            return plan_err!(
                "UNIQUE ({}): Strata tables enforce only their PRIMARY KEY; a UNIQUE \
                 constraint would be accepted but not enforced",
                columns.join(", ")
            );
        }
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

/// Writes the rows of a new (staging) table as one atomic batch, or through the bulk ingest
/// path (also atomic) when they exceed the write batch limit. The batch is synced to the WAL
/// whatever the database's sync mode: the edit that publishes the table (and drops the one it
/// replaces) must never be durable before its rows are.
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
        .map(|b| crate::dml::conform_batch(b, schema, table.primary_key()))
        .collect::<Result<_>>()?;
    let mutations: Vec<Mutation<'_>> = batches.iter().map(Mutation::Upsert).collect();
    match table.write(&mutations, WriteOptions { sync: true }) {
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
        let mut names: Vec<String> = self
            .shared
            .db
            .list_tables()
            .into_iter()
            .filter(|t| t.namespace == self.namespace)
            .map(|t| t.name)
            .collect();
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
            let same = self
                .shared
                .db
                .table_in(&self.namespace, &name)
                .is_ok_and(|t| t.id() == strata.table().id());
            if same {
                return Ok(None);
            }
            return exec_err!(
                "Strata table '{}' cannot be registered under another name ('{name}')",
                strata.name()
            );
        }
        if self.has_strata_table(&name) || self.others.read().contains_key(&name) {
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
        self.shared
            .db
            .drop_table_in(&self.namespace, name)
            .map_err(engine_error)?;
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.others.read().contains_key(name) || self.has_strata_table(name)
    }
}

/// `CREATE EXTERNAL TABLE ... STORED AS STRATA LOCATION '...' OPTIONS (...)`: creates a
/// persistent Strata table with explicit options (see the module docs).
pub struct StrataTableFactory {
    catalog: Arc<StrataCatalogProvider>,
}

impl std::fmt::Debug for StrataTableFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataTableFactory").finish_non_exhaustive()
    }
}

impl StrataTableFactory {
    /// A factory creating tables in the schemas of `catalog`.
    pub fn new(catalog: Arc<StrataCatalogProvider>) -> Self {
        StrataTableFactory { catalog }
    }

    /// The Strata schema `cmd` names and the definition of its table.
    pub fn table_spec(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<(Arc<StrataSchemaProvider>, TableSpec)> {
        if !cmd.table_partition_cols.is_empty() {
            return plan_err!("Strata tables do not support PARTITIONED BY");
        }
        let catalog_options = &state.config_options().catalog;
        let resolved = cmd.name.clone().resolve(
            &catalog_options.default_catalog,
            &catalog_options.default_schema,
        );
        if *resolved.catalog != *catalog_options.default_catalog {
            return plan_err!(
                "Strata tables live in the catalog '{}', not '{}'",
                catalog_options.default_catalog,
                resolved.catalog
            );
        }
        let Some(schema) = self.catalog.strata_schema(&resolved.schema) else {
            return plan_err!("schema '{}' does not exist", resolved.schema);
        };
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
        let options = config.table_options(&self.catalog.shared.db.options().table_defaults);
        let spec = schema.table_spec(
            &resolved.table,
            cmd.schema.inner(),
            Some(&cmd.constraints),
            &cmd.column_defaults
                .iter()
                .map(|(c, e)| (c.clone(), e.clone()))
                .collect::<Vec<_>>(),
            options,
        )?;
        Ok((schema, spec))
    }
}

#[async_trait]
impl TableProviderFactory for StrataTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let (schema, spec) = self.table_spec(state, cmd)?;
        let table = self
            .catalog
            .shared
            .db
            .create_table_from(spec)
            .map_err(engine_error)?;
        schema.provider_for(table)
    }
}
