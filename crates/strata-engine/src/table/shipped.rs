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

use std::sync::Arc;

use super::ReadView;
use crate::error::Result;
use crate::read::{BaseFile, BaseScan, KeyRange};
use crate::sst::SstMeta;
use crate::storage::Storage;
use crate::types::TableId;
use crate::version::SstHandle;

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
        let schema = &self.table.schema;
        let version = &self.sv.version;
        if !schema.sst_file_types_are_user_types()
            || version.files().any(|f| f.meta().max_seq > self.read_seq)
        {
            return Ok(None);
        }
        let all = [KeyRange::all()];
        let ranges = ranges.unwrap_or(&all);
        let files: Vec<(BaseFile, Arc<SstHandle>)> = version
            .files_overlapping(ranges, self.read_seq)
            .map(|f| {
                let file = BaseFile {
                    meta: f.meta().clone(),
                    deleted: version.dv(f.meta().id).map(|dv| Arc::clone(dv.positions())),
                };
                (file, Arc::clone(f))
            })
            .collect();
        if !version.dvs_maintained() {
            let mut metas: Vec<&SstMeta> = version.files().map(|f| f.meta()).collect();
            metas.sort_by(|a, b| a.min_key.cmp(&b.min_key));
            let need_none = metas.iter().all(|m| m.is_clean())
                && metas.windows(2).all(|w| w[0].max_key < w[1].min_key);
            if !need_none {
                return Ok(None);
            }
        }
        let memtables = self.sv.memtables().cloned().collect();
        let scan =
            crate::read::plan::plan_base_scan(schema, files, memtables, ranges, self.read_seq)?;
        Ok(scan.map(|scan| ShippedScan {
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
