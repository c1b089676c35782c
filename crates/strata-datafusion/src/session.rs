//! The session over a database: a DataFusion `SessionContext` bound to one open Strata [`Db`].
//!
//! Owns the database handle for its lifetime (and, for [`StrataSession::memory`], the
//! temporary directory, deleted on drop). Dropping the session closes the database once the
//! last handle to it (clones of the context, table functions) is gone; [`StrataSession::close`]
//! closes it explicitly and reports errors.
//!
//! What a session sets up: the default catalog/schema (`datafusion.public`) is a
//! [`StrataSchemaProvider`] over the database's tables; `information_schema` is on (so
//! `SHOW TABLES` lists Strata tables); the `strata.*` settings extension ([`StrataConfig`]);
//! the `STRATA` table factory for `CREATE EXTERNAL TABLE`; the DML-guarding query planner
//! ([`crate::planner`]); `strata_versions(...)`; the table functions of [`crate::functions`]
//! and the file formats of [`crate::formats`].

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use strata_engine::{Db, Options};

use crate::catalog::{StrataConfig, StrataSchemaProvider, StrataTableFactory};
use crate::planner::StrataQueryPlanner;
use crate::versions::VersionsFunction;

/// A DataFusion session over one Strata database.
pub struct StrataSession {
    ctx: SessionContext,
    db: Arc<Db>,
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
        let schema = Arc::new(StrataSchemaProvider::new(Arc::clone(&db)));
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_query_planner(Arc::new(StrataQueryPlanner))
            .with_table_factory(
                "STRATA".into(),
                Arc::new(StrataTableFactory::new(Arc::clone(&schema))),
            )
            .build();
        let ctx = SessionContext::new_with_state(state);
        let catalog = ctx.catalog(&catalog_name).ok_or_else(|| {
            DataFusionError::Internal(format!("default catalog '{catalog_name}' is missing"))
        })?;
        catalog.register_schema(&schema_name, Arc::clone(&schema) as _)?;
        schema.attach_session(ctx.state_weak_ref());
        ctx.register_udtf(
            "strata_versions",
            Arc::new(VersionsFunction::new(Arc::clone(&db))),
        );
        crate::functions::register(&ctx, &db)?;
        crate::formats::register(&ctx)?;
        Ok(StrataSession {
            ctx,
            db,
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

    /// Plans (and for DDL/DML, runs) one SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        self.ctx.sql(sql).await
    }

    /// Closes the database cleanly (WAL synced, background work stopped, directory lock
    /// released) so the same path can be opened again. Fails when other handles to the
    /// database are still alive (clones of this session's context, for example).
    pub fn close(self) -> Result<()> {
        let StrataSession { ctx, db, _temp } = self;
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

impl Deref for StrataSession {
    type Target = SessionContext;

    fn deref(&self) -> &SessionContext {
        &self.ctx
    }
}
