//! The session over a database: a DataFusion `SessionContext` bound to one open Strata [`Db`].
//!
//! Owns the database handle for its lifetime (and, for [`StrataSession::memory`], the
//! temporary directory, deleted on drop). Dropping the session closes the database.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use strata_engine::{Db, Options};

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
    let db = Db::open(path, options).map_err(engine_error)?;
    Ok(StrataSession::from_db(Arc::new(db), None))
}

impl StrataSession {
    /// A session over an already open database.
    pub fn from_db(db: Arc<Db>, temp: Option<tempfile::TempDir>) -> Self {
        StrataSession {
            ctx: SessionContext::new(),
            db,
            _temp: temp,
        }
    }

    /// A throw-away database in a temporary directory, deleted when the session is dropped.
    pub fn memory() -> Result<StrataSession> {
        let dir = tempfile::tempdir().map_err(|e| DataFusionError::External(Box::new(e)))?;
        let db = Db::open(dir.path(), Options::default()).map_err(engine_error)?;
        Ok(StrataSession::from_db(Arc::new(db), Some(dir)))
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
}

impl Deref for StrataSession {
    type Target = SessionContext;

    fn deref(&self) -> &SessionContext {
        &self.ctx
    }
}
