//! Deletion-vector maintenance: where newer data meets older data (see [`crate::dv`]).
//!
//! The DV of a file `f` in a version `V` is `self(f) ∪ {p : key(p) is a key of a file of V
//! newer than f}`, where `self(f)` are `f`'s tombstones and the rows of `f` that are not the
//! first (newest) row of their key in `f`. Each change keeps that true incrementally:
//!
//! * **New newest files** (a flush, an ingest): for each new file `n`, oldest first, the
//!   sorted keys of `n` are merged against the key column of every file of the version that
//!   overlaps `n` (one sequential pass over each; no point lookups), and the matching
//!   positions are added to those files' DVs; `n` gets `self(n)`.
//! * **A compaction** replacing inputs `I` by outputs `O`: an output's DV is `self(o)` plus its
//!   keys that appear in files newer than it (shallower levels, newer level-0 runs), computed
//!   the same way. Files that are not inputs keep their DVs: a file newer than `O` does not
//!   depend on it; for a file older than `O`, the keys of the newer files are unchanged, since
//!   `O` holds every key of `I` except those a compaction drops for good (a bottom-level
//!   tombstone with nothing older). A moved file keeps its DV (same rows, same positions).
//! * **A rebuild** (a table whose DVs were never built, from an older database, or whose DV
//!   file failed its checks at open, or whose DV pass failed): every file's DV from scratch,
//!   at open and by the table's next idle compaction job.
//!
//! A DV pass that fails (an older file cannot be read) does not fail the flush, ingest or
//! compaction: the change is installed without DVs and the table's DVs become incomplete
//! (its scans merge) until a rebuild succeeds.
//!
//! All of this runs under the table's change lock (`VersionControl::lock_changes`), against the
//! version current under that lock, and the resulting DVs are installed with the change in one
//! manifest edit and one super-version swap (`db::install`), so no change can slip between the
//! computation and the install.
//! Compaction keeps the rows DVs mark (a snapshot may still need them, and point lookups and
//! the merge read files in level order, not through DVs); they are dropped when the merge of a
//! later compaction drops them.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use roaring::RoaringBitmap;

use super::DbInner;
use crate::dv::DeletionVector;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::schema::TableSchema;
use crate::sst::{FileKeys, SstMeta};
use crate::table::TableInner;
use crate::types::{FileId, OpKind};
use crate::version::{FileChange, SstHandle, Version};

/// DVs computed for one change, written but not yet in the manifest.
#[derive(Debug, Default)]
pub(crate) struct DvUpdate {
    /// DVs to install (new files, or an existing DV carried over by a move).
    pub set: Vec<Arc<DeletionVector>>,
    /// DVs written by this update (deleted again if the change is not installed).
    written: Vec<Arc<DeletionVector>>,
    /// DVs the update replaces (obsolete once installed).
    replaced: Vec<Arc<DeletionVector>>,
    /// Files whose recorded DV is dropped.
    pub drop: Vec<FileId>,
    /// True when the table's DVs are complete after the change (false: unchanged).
    pub maintained: bool,
    /// True when the DV pass failed: the change goes in without DVs, and the table's DVs are
    /// incomplete until rebuilt.
    pub abandoned: bool,
}

impl DvUpdate {
    /// Adds the DV fields of this update to a manifest edit and a file change.
    pub fn fill(
        &self,
        table: &TableInner,
        edit: &mut crate::manifest::VersionEdit,
        change: &mut FileChange,
    ) {
        edit.set_dvs = self.set.iter().map(|dv| dv.meta().clone()).collect();
        edit.drop_dvs = self.drop.iter().map(|f| (table.id, *f)).collect();
        change.set_dvs = self.set.clone();
        change.drop_dvs = self.drop.clone();
        debug_assert!(!(self.maintained && self.abandoned));
        if self.maintained {
            edit.maintain_dvs = vec![table.id];
            change.dvs_maintained = Some(true);
        }
        if self.abandoned {
            // The edit adds files without `maintain_dvs`: the manifest drops maintenance too.
            change.dvs_maintained = Some(false);
        }
    }

    /// The change was installed: the DVs it replaced go once no version holds them.
    pub fn installed(self) {
        for dv in &self.replaced {
            dv.mark_obsolete();
        }
    }

    /// The change was not installed: deletes the DV files written for it.
    pub fn discard(self) {
        for dv in &self.written {
            dv.mark_obsolete();
        }
    }
}

/// A file's DV as a pass grows it: the file, its positions so far, its recorded DV, and
/// whether the pass changed it.
type GrowingDv = (
    Arc<SstHandle>,
    RoaringBitmap,
    Option<Arc<DeletionVector>>,
    bool,
);

/// Sorted, distinct encoded keys of (a key range of) one file.
struct KeySet {
    keys: Vec<Vec<u8>>,
}

impl KeySet {
    /// The keys of `file` within `[lower, upper]`: from the key cache when it holds them
    /// (the writer of a new file puts them there), else one pass over its key columns.
    fn load(file: &SstHandle, schema: &TableSchema, lower: &[u8], upper: &[u8]) -> Result<Self> {
        if let Some(cached) = file.cached_keys() {
            let mut keys: Vec<Vec<u8>> = Vec::new();
            for row in cached.lower_bound(lower)..cached.len() {
                let key = cached.get(row);
                if key > upper {
                    break;
                }
                if keys.last().is_none_or(|last| last.as_slice() != key) {
                    keys.push(key.to_vec());
                }
            }
            return Ok(KeySet { keys });
        }
        let reader = file.reader()?;
        let scan = reader.scan(
            Bound::Included(lower),
            Bound::Included(upper),
            key_columns(schema),
        )?;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for batch in scan {
            let batch = batch?;
            for row in 0..batch.num_rows() {
                let key = batch.keys.get(row);
                if keys.last().is_none_or(|last| last.as_slice() != key) {
                    keys.push(key.to_vec());
                }
            }
        }
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        Ok(KeySet { keys })
    }
}

/// Storage columns a key pass reads: the key columns, `_seq`, `_op` (ascending).
fn key_columns(schema: &TableSchema) -> Vec<usize> {
    let mut columns: Vec<usize> = schema.key_indices().to_vec();
    columns.extend([schema.seq_index(), schema.op_index()]);
    columns.sort_unstable();
    columns.dedup();
    columns
}

/// Adds to `deleted` the positions of `file` whose key is in one of `newer`, and, with
/// `own`, its tombstones and the rows that are not the newest of their key in the file.
/// Returns the rows read.
fn mark(
    file: &SstHandle,
    schema: &TableSchema,
    newer: &[&KeySet],
    own: bool,
    deleted: &mut RoaringBitmap,
) -> Result<u64> {
    let meta = file.meta();
    if meta.rows > u64::from(u32::MAX) {
        return Err(Error::InvalidArgument(format!(
            "SST {} has {} rows; deletion vectors address at most {} rows per file",
            meta.id,
            meta.rows,
            u32::MAX
        )));
    }
    // With the file's keys cached, nothing is read when the file's own dead rows follow
    // from its keys alone (no tombstones: only the older versions of a key).
    if let Some(keys) = file.cached_keys()
        && (!own || meta.tombstones == 0)
    {
        mark_cached(&keys, meta, newer, own, deleted);
        return Ok(0);
    }
    let reader = file.reader()?;
    let scan = reader.scan(Bound::Unbounded, Bound::Unbounded, key_columns(schema))?;
    let mut cursors: Vec<usize> = newer
        .iter()
        .map(|set| {
            set.keys
                .partition_point(|k| k.as_slice() < meta.min_key.as_slice())
        })
        .collect();
    let mut position: u64 = 0;
    let mut previous: Option<Vec<u8>> = None;
    for batch in scan {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            let key = batch.keys.get(row);
            let mut dead = false;
            if own {
                let repeated = if row > 0 {
                    batch.keys.get(row - 1) == key
                } else {
                    previous.as_deref() == Some(key)
                };
                dead = repeated || batch.op(row) == OpKind::Delete;
            }
            for (cursor, set) in cursors.iter_mut().zip(newer) {
                while *cursor < set.keys.len() && set.keys[*cursor].as_slice() < key {
                    *cursor += 1;
                }
                if *cursor < set.keys.len() && set.keys[*cursor].as_slice() == key {
                    dead = true;
                }
            }
            if dead {
                deleted.insert(position as u32);
            }
            position += 1;
        }
        if let Some(last) = batch.num_rows().checked_sub(1) {
            previous = Some(batch.keys.get(last).to_vec());
        }
    }
    if position != meta.rows {
        return Err(Error::Corruption {
            file: meta.object_path().into(),
            offset: 0,
            reason: format!(
                "{position} rows read, the manifest records {} (deletion vector pass)",
                meta.rows
            ),
        });
    }
    Ok(position)
}

/// [`mark`] over the cached keys of a file without tombstones (when `own`): the rows of a key
/// after its first are its older versions; the keys of `newer` are looked up by galloping.
fn mark_cached(
    keys: &FileKeys,
    meta: &SstMeta,
    newer: &[&KeySet],
    own: bool,
    deleted: &mut RoaringBitmap,
) {
    debug_assert_eq!(keys.len() as u64, meta.rows);
    debug_assert!(!own || meta.tombstones == 0);
    if own && meta.older_versions > 0 {
        for row in 1..keys.len() {
            if keys.get(row - 1) == keys.get(row) {
                deleted.insert(row as u32);
            }
        }
    }
    for set in newer {
        let within = &set.keys[meta.keys_within(&set.keys)];
        keys.mark(within.iter().map(Vec::as_slice), deleted);
    }
}

/// Adds to `deleted` the positions of `file` whose key is in `newer`, returning the rows of
/// `file` read. Through the key cache when the file's keys are there or fit there (a
/// galloping lookup of the newer keys, nothing read on a hit): then only the keys not yet
/// `resolved` are looked up and only their live rows marked, and a key found live becomes
/// resolved (the version's files hold at most one live row per key: every other row of it is
/// in its file's DV already). Else one pass over its key columns ([`mark`]) marks every row of
/// the keys and resolves none.
fn mark_newer_keys(
    file: &SstHandle,
    schema: &TableSchema,
    newer: &KeySet,
    resolved: &mut [bool],
    deleted: &mut RoaringBitmap,
) -> Result<u64> {
    debug_assert_eq!(resolved.len(), newer.keys.len());
    let meta = file.meta();
    if !file.keys_cacheable() || meta.rows > u64::from(u32::MAX) {
        return mark(file, schema, &[newer], false, deleted);
    }
    let read = if file.cached_keys().is_some() {
        0
    } else {
        meta.rows
    };
    let pending: Vec<(usize, &[u8])> = meta
        .keys_within(&newer.keys)
        .filter(|j| !resolved[*j])
        .map(|j| (j, newer.keys[j].as_slice()))
        .collect();
    if pending.is_empty() {
        return Ok(0);
    }
    let mut found = RoaringBitmap::new();
    file.keys()?.find_live(pending, Some(deleted), |j, rows| {
        resolved[j] = true;
        found.insert_range(rows.start as u32..rows.end as u32);
    });
    *deleted |= found;
    Ok(read)
}

/// The update of a change when no DV pass runs: the table's DVs are not maintained (nothing
/// changes), or the table's options turned them off (they stop being maintained).
fn skip_pass(table: &TableInner, version: &Version) -> Option<DvUpdate> {
    if !version.dvs_maintained() {
        return Some(DvUpdate::default());
    }
    if !table.options.read().deletion_vectors {
        return Some(DvUpdate {
            abandoned: true,
            ..DvUpdate::default()
        });
    }
    None
}

/// True when `newer` holds newer versions of keys than `older` (per the version invariants),
/// for two files whose key ranges overlap.
fn is_newer(newer: &SstMeta, older: &SstMeta) -> bool {
    if newer.level != older.level {
        return newer.level < older.level;
    }
    newer.level == 0 && newer.min_seq > older.max_seq
}

impl DbInner {
    /// Writes `positions` as the new DV of `file` into `update`, replacing `previous`.
    fn write_dv(
        &self,
        table: &TableInner,
        file: FileId,
        positions: RoaringBitmap,
        previous: Option<&Arc<DeletionVector>>,
        update: &mut DvUpdate,
    ) -> Result<()> {
        let id = self.manifest.lock().allocate_file_id();
        let dv = DeletionVector::write(&self.files, table.id, file, id, positions)?;
        Metrics::add(&self.metrics.dv_bytes_written, dv.meta().size_bytes);
        update.set.push(Arc::clone(&dv));
        update.written.push(dv);
        if let Some(previous) = previous {
            update.replaced.push(Arc::clone(previous));
        }
        Ok(())
    }

    /// The DVs after `added` become the newest files of `version` (a flush or an ingest;
    /// `added` oldest first).
    pub(crate) fn dvs_for_new_files(
        &self,
        table: &TableInner,
        version: &Version,
        added: &[Arc<SstHandle>],
    ) -> Result<DvUpdate> {
        if let Some(update) = skip_pass(table, version) {
            return Ok(update);
        }
        let started = Instant::now();
        let mut update = DvUpdate {
            maintained: true,
            ..DvUpdate::default()
        };
        let result = self.new_file_dvs(table, version, added, &mut update);
        Metrics::add(
            &self.metrics.dv_micros,
            started.elapsed().as_micros() as u64,
        );
        match result {
            Ok(()) => Ok(update),
            Err(error) => Ok(self.abandon(table, update, &error)),
        }
    }

    /// A DV pass failed (an older file could not be read): the change goes ahead without DVs
    /// (they are derived data; a flush or compaction must not fail for them), and the table's
    /// scans merge until its DVs are rebuilt (by its next idle compaction job, or at open).
    fn abandon(&self, table: &TableInner, update: DvUpdate, error: &Error) -> DvUpdate {
        tracing::warn!(
            table = %table.name, %error,
            "deletion vectors not maintained; scans merge until they are rebuilt"
        );
        Metrics::inc(&self.metrics.dv_failures);
        update.discard();
        DvUpdate {
            abandoned: true,
            ..DvUpdate::default()
        }
    }

    fn new_file_dvs(
        &self,
        table: &TableInner,
        version: &Version,
        added: &[Arc<SstHandle>],
        update: &mut DvUpdate,
    ) -> Result<()> {
        let schema = &table.schema;
        // DVs as they grow: existing files first, then the added ones (oldest first).
        let mut files: Vec<GrowingDv> = version
            .files()
            .map(|f| {
                let dv = version.dv(f.meta().id).cloned();
                let positions = dv
                    .as_ref()
                    .map_or_else(RoaringBitmap::new, |d| d.positions().as_ref().clone());
                (Arc::clone(f), positions, dv, false)
            })
            .collect();
        for new in added {
            let meta = new.meta();
            // The older files overlapping it, most live rows first: under random writes a
            // key's live row is most likely in the large files of the last level, and a key
            // found live is not looked for further (see `mark_newer_keys`).
            let mut older: Vec<usize> = (0..files.len())
                .filter(|i| files[*i].0.meta().overlaps(meta))
                .collect();
            older.sort_by_key(|i| std::cmp::Reverse(files[*i].0.meta().rows - files[*i].1.len()));
            // The new file's keys, read only when an older file overlaps it.
            let mut keys: Option<(KeySet, Vec<bool>)> = None;
            for i in older {
                let (file, positions, _, changed) = &mut files[i];
                let (keys, resolved) = match &mut keys {
                    Some(keys) => keys,
                    None => {
                        let set = KeySet::load(new, schema, &meta.min_key, &meta.max_key)?;
                        let resolved = vec![false; set.keys.len()];
                        keys.insert((set, resolved))
                    }
                };
                let before = positions.len();
                let read = mark_newer_keys(file, schema, keys, resolved, positions)?;
                Metrics::add(&self.metrics.dv_rows_read, read);
                if positions.len() != before {
                    Metrics::add(&self.metrics.dv_rows_marked, positions.len() - before);
                    *changed = true;
                }
            }
            // A clean file (no tombstones, one version per key) deletes none of its own rows.
            let mut own = RoaringBitmap::new();
            if !meta.is_clean() {
                mark(new, schema, &[], true, &mut own)?;
            }
            let changed = !own.is_empty();
            files.push((Arc::clone(new), own, None, changed));
        }
        for (file, positions, previous, changed) in files {
            if changed {
                self.write_dv(table, file.meta().id, positions, previous.as_ref(), update)?;
            }
        }
        Ok(())
    }

    /// The DVs of a compaction's `outputs` (at `output_level`) replacing `inputs` in
    /// `version`; `moved` are inputs moved to the output level as they are.
    pub(crate) fn dvs_for_compaction(
        &self,
        table: &TableInner,
        version: &Version,
        inputs: &[FileId],
        outputs: &[Arc<SstHandle>],
        moved: bool,
    ) -> Result<DvUpdate> {
        if let Some(update) = skip_pass(table, version) {
            return Ok(update);
        }
        let mut update = DvUpdate {
            maintained: true,
            ..DvUpdate::default()
        };
        if moved {
            // Same file, same rows: the DV carries over (the edit re-records it, since
            // removing the input removes its record).
            for input in inputs {
                if let Some(dv) = version.dv(*input) {
                    update.set.push(Arc::clone(dv));
                }
            }
            return Ok(update);
        }
        let started = Instant::now();
        let result = (|| -> Result<()> {
            for output in outputs {
                let meta = output.meta();
                let positions = self.positions_against_newer(table, version, output, inputs)?;
                if !positions.is_empty() {
                    Metrics::add(&self.metrics.dv_rows_marked, positions.len());
                    self.write_dv(table, meta.id, positions, None, &mut update)?;
                }
            }
            Ok(())
        })();
        Metrics::add(
            &self.metrics.dv_micros,
            started.elapsed().as_micros() as u64,
        );
        match result {
            Ok(()) => {
                for input in inputs {
                    if let Some(dv) = version.dv(*input) {
                        update.replaced.push(Arc::clone(dv));
                    }
                }
                Ok(update)
            }
            Err(error) => Ok(self.abandon(table, update, &error)),
        }
    }

    /// Builds every DV of `table` from scratch and installs them (one manifest edit).
    pub(crate) fn rebuild_table_dvs(&self, table: &TableInner) -> Result<()> {
        let changing = table.versions.lock_changes();
        let version = changing.version();
        if version.dvs_maintained() || table.dropped.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let update = self.rebuild_dvs(table, &version)?;
        // DVs the manifest names but no version loaded (they failed their checks). The table's
        // DV records change only under its change lock, held here.
        let unloaded: Vec<crate::dv::DvMeta> = self
            .manifest
            .lock()
            .state()
            .tables
            .get(&table.id)
            .map(|t| {
                t.dvs
                    .values()
                    .filter(|d| version.dv(d.file).is_none_or(|v| v.meta().id != d.id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let install = super::install::FileInstall {
            dvs: update,
            drop_dvs: unloaded.iter().map(|d| d.file).collect(),
            ..Default::default()
        };
        if !self.install_file_change(table, &changing, install)? {
            return Ok(());
        }
        for meta in unloaded {
            if let Err(error) = self.files.store.delete(&meta.object_path()) {
                tracing::warn!(file = %meta.object_path(), %error, "could not delete a replaced deletion vector");
            }
        }
        tracing::info!(table = %table.name, files = version.files().count(), "built deletion vectors");
        Ok(())
    }

    /// The DV of `file` from scratch: its own tombstones and older versions, and its rows whose
    /// key a file of `version` newer than it holds (files in `skip` left out). Reads nothing
    /// for a clean file no newer file overlaps.
    fn positions_against_newer(
        &self,
        table: &TableInner,
        version: &Version,
        file: &SstHandle,
        skip: &[FileId],
    ) -> Result<RoaringBitmap> {
        let meta = file.meta();
        let mut sets = Vec::new();
        for newer in version.files().filter(|f| {
            !skip.contains(&f.meta().id) && f.meta().overlaps(meta) && is_newer(f.meta(), meta)
        }) {
            sets.push(KeySet::load(
                newer,
                &table.schema,
                &meta.min_key,
                &meta.max_key,
            )?);
        }
        let mut positions = RoaringBitmap::new();
        if !sets.is_empty() || !meta.is_clean() {
            let sets: Vec<&KeySet> = sets.iter().collect();
            let read = mark(file, &table.schema, &sets, true, &mut positions)?;
            Metrics::add(&self.metrics.dv_rows_read, read);
        }
        Ok(positions)
    }

    /// Every DV of `version` from scratch, for a table whose DVs are not maintained.
    fn rebuild_dvs(&self, table: &TableInner, version: &Version) -> Result<DvUpdate> {
        let started = Instant::now();
        let mut update = DvUpdate {
            maintained: true,
            ..DvUpdate::default()
        };
        let result = (|| -> Result<()> {
            for file in version.files() {
                let meta = file.meta();
                let positions = self.positions_against_newer(table, version, file, &[])?;
                if let Some(old) = version.dv(meta.id) {
                    update.replaced.push(Arc::clone(old));
                }
                if positions.is_empty() {
                    update.drop.push(meta.id);
                } else {
                    Metrics::add(&self.metrics.dv_rows_marked, positions.len());
                    self.write_dv(table, meta.id, positions, None, &mut update)?;
                }
            }
            Ok(())
        })();
        Metrics::add(
            &self.metrics.dv_micros,
            started.elapsed().as_micros() as u64,
        );
        match result {
            Ok(()) => Ok(update),
            Err(error) => {
                update.discard();
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(level: u32, min_seq: u64, max_seq: u64) -> SstMeta {
        SstMeta {
            id: 1,
            table_id: 1,
            level,
            run_id: 0,
            size_bytes: 0,
            crc32c: 0,
            rows: 1,
            tombstones: 0,
            older_versions: 0,
            min_key: vec![1],
            max_key: vec![2],
            min_seq,
            max_seq,
            created_at_ms: 0,
        }
    }

    #[test]
    fn newer_follows_levels_then_sequences() {
        assert!(is_newer(&meta(0, 1, 5), &meta(1, 10, 20)));
        assert!(!is_newer(&meta(1, 10, 20), &meta(0, 1, 5)));
        assert!(is_newer(&meta(0, 6, 9), &meta(0, 1, 5)));
        assert!(!is_newer(&meta(0, 1, 5), &meta(0, 6, 9)));
        assert!(!is_newer(&meta(2, 6, 9), &meta(2, 1, 5)));
    }
}
