//! Table functions over the engine's state and sample data.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use strata_engine::Db;

/// Registers Strata's table functions in `ctx`.
pub fn register(_ctx: &SessionContext, _db: &Arc<Db>) -> Result<()> {
    Ok(())
}
