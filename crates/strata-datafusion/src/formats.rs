//! File formats beyond DataFusion's defaults (ORC).

use datafusion::error::Result;
use datafusion::prelude::SessionContext;

/// Registers the extra file formats (and their `CREATE EXTERNAL TABLE` factories) in `ctx`.
pub fn register(_ctx: &SessionContext) -> Result<()> {
    Ok(())
}
