//! Scans planned here and read elsewhere: the engine side of shipping a scan to another
//! process (a datafusion-distributed worker, see `strata-datafusion`'s `distributed` module).
//!
//! A shipped scan is a [`BaseScan`] (base files with their deleted rows, the memtable overlay)
//! whose files may be on an object store: the reader in the other process opens the
//! database's storage by its URL, with no lock and no manifest read, and reads exactly the
//! files the plan names with the deleted rows the plan carries. The overlay travels in the
//! plan. Unlike [`ReadView::base_scan`], files on an object store do not send the scan to the
//! merge (the reader reads them through the store, not by a local path).
//!
//! Invariants: the plan is taken under the view's pinned version, so the files it names are
//! those of that version; while the view lives no file of it is deleted in this process, and
//! a [`crate::lease::Lease`] over [`ShippedScan::objects`] keeps other processes' deletions
//! from them.

use super::ReadView;
use crate::error::Result;
use crate::read::{BaseScan, KeyRange};
use crate::storage::Storage;
use crate::types::TableId;

/// A scan planned for readers in other processes (see the module docs).
#[derive(Debug)]
pub struct ShippedScan {
    /// The table's id (SST object paths are per table).
    pub table_id: TableId,
    /// Base files, deleted rows and overlay.
    pub scan: BaseScan,
}

impl ShippedScan {
    /// The object paths of the base files, relative to the database root.
    pub fn objects(&self) -> Vec<String> {
        self.scan
            .files
            .iter()
            .map(|f| f.meta.object_path())
            .collect()
    }
}

impl ReadView {
    /// Plans the scan of `ranges` (`None`: every key) for readers in other processes (see
    /// the module docs); `None` when the view must be merged (see [`crate::read::plan`]:
    /// a snapshot older than a flush, DVs not maintained, a type stored under another
    /// Parquet type, an unresolvable keyless overlay).
    pub fn shipped_scan(&self, ranges: Option<&[KeyRange]>) -> Result<Option<ShippedScan>> {
        Ok(self.plan_scan(ranges)?.map(|scan| ShippedScan {
            table_id: self.table.id,
            scan,
        }))
    }

    /// The storage of the view's database (where its SSTs are).
    pub fn storage(&self) -> Storage {
        self.db.files.store.clone()
    }

    /// The database's location: its directory or its object-store URL, as a string another
    /// process opens its storage by ([`Storage::for_path`]); a local directory is made
    /// absolute.
    pub fn database_location(&self) -> String {
        let store = &self.db.files.store;
        match store.local_root() {
            Some(root) => std::path::absolute(root)
                .unwrap_or_else(|_| root.to_path_buf())
                .display()
                .to_string(),
            None => store.root().display().to_string(),
        }
    }
}
