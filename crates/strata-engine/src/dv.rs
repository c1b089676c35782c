//! Deletion vectors: per SST file, the positions of its rows that are not live.
//!
//! A row of an SST is *live* in a [`crate::version::Version`] when it is the newest version of
//! its key among all the version's files and it is not a tombstone. The deletion vector (DV)
//! of a file lists every row position that is not live: tombstones, older versions of a key
//! inside the file (kept for snapshots), and rows whose key appears in a newer file (a newer
//! version or a tombstone). So the live rows of all files of a version, read with their DVs
//! applied, are exactly the table's rows as of that version, with no merge.
//!
//! "Newer file" follows the version invariants: a file of a shallower level is newer than one
//! of a deeper level; of two overlapping level-0 files the one with the larger `max_seq` is
//! newer (their sequence ranges are disjoint).
//!
//! DVs are derived data: the SSTs stay the source of truth (point lookups and the merge never
//! look at a DV). They are maintained where newer data meets older data (see `db::dvs`): a
//! flush or an ingest adds the newest files, whose keys are merged against the key columns of
//! the older overlapping files; a compaction writes DVs for its outputs against the newer files.
//! The DVs of files a change does not touch stay valid (the module `db::dvs` says why).
//!
//! ## File format (version 1)
//!
//! One file per DV, `sst/t<table id:06>/<dv id:020>.dv` beside the table's SSTs (DV ids come
//! from the file-id counter, so they never collide with SST ids). Immutable: a changed DV is a
//! new file, and the manifest edit that names the new one drops the old one.
//!
//! ```text
//! 0..8    magic "STRATADV"
//! 8..12   format version, u32 LE (= 1)
//! 12..20  table id, u64 LE (table ids are u32; the upper bytes are zero)
//! 20..28  SST file id, u64 LE
//! 28..36  cardinality (positions in the bitmap), u64 LE
//! 36..40  crc32c of bytes 0..36 followed by bytes 40..end, u32 LE
//! 40..    the positions as a Roaring bitmap in the portable serialization format of the
//!         Roaring specification (the format of CRoaring, Java RoaringBitmap, and of Iceberg
//!         and Delta Lake deletion vectors), positions being row indexes of the SST (u32)
//! ```
//!
//! The manifest records each DV's id, file, cardinality, size and crc32c of the whole file.
//! Loading verifies size, both checksums, the header fields against the manifest, and that
//! every position is below the SST's row count; any mismatch is [`Error::Corruption`].
//!
//! ## Invariants
//!
//! * A `Version` holds DVs only when the table's DVs are *maintained* (every file's DV is
//!   present or empty); otherwise readers use the merge.
//! * A DV is immutable and belongs to the versions that hold it; a snapshot pinned before a
//!   DV update keeps the old DV (its version does).
//! * A DV file is deleted when the last version holding it is dropped after the manifest
//!   stopped naming it (as SSTs are).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::types::{FileId, TableId};
use crate::version::FileContext;

const MAGIC: &[u8; 8] = b"STRATADV";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 40;

/// What the manifest records about one deletion vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DvMeta {
    /// The DV's own id (from the file-id counter).
    pub id: FileId,
    /// Table id.
    pub table_id: TableId,
    /// The SST whose rows it deletes.
    pub file: FileId,
    /// Number of deleted positions.
    pub cardinality: u64,
    /// Size of the DV file in bytes.
    pub size_bytes: u64,
    /// crc32c of the whole DV file.
    pub crc32c: u32,
}

impl DvMeta {
    /// The object path of the DV file.
    pub fn object_path(&self) -> String {
        dv_object_path(self.table_id, self.id)
    }
}

/// The object path of DV `id` of `table`.
pub fn dv_object_path(table: TableId, id: FileId) -> String {
    format!("sst/t{table:06}/{id:020}.dv")
}

/// Parses `(table, dv id)` from a DV object path.
pub fn parse_dv_object_path(path: &str) -> Option<(TableId, FileId)> {
    let rest = path.strip_prefix("sst/t")?;
    let (table, file) = rest.split_once('/')?;
    let file = file.strip_suffix(".dv")?;
    if table.len() != 6 || file.len() != 20 {
        return None;
    }
    Some((table.parse().ok()?, file.parse().ok()?))
}

/// The bytes of a DV file (see the module docs).
pub fn encode(table: TableId, file: FileId, positions: &RoaringBitmap) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + positions.serialized_size());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&u64::from(table).to_le_bytes());
    bytes.extend_from_slice(&file.to_le_bytes());
    bytes.extend_from_slice(&positions.len().to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    positions
        .serialize_into(&mut bytes)
        .map_err(|e| Error::internal(format!("serializing a deletion vector: {e}")))?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..36]), &bytes[HEADER_LEN..]);
    bytes[36..40].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// Decodes and checks a DV file against its manifest record and the SST's row count.
pub fn decode(meta: &DvMeta, rows: u64, bytes: &[u8]) -> Result<RoaringBitmap> {
    let corrupt = |reason: String| Error::Corruption {
        file: meta.object_path().into(),
        offset: 0,
        reason,
    };
    if bytes.len() as u64 != meta.size_bytes {
        return Err(corrupt(format!(
            "deletion vector is {} bytes, the manifest says {}",
            bytes.len(),
            meta.size_bytes
        )));
    }
    if crc32c::crc32c(bytes) != meta.crc32c {
        return Err(corrupt("deletion vector checksum mismatch".into()));
    }
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(corrupt("not a Strata deletion vector".into()));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if u32_at(8) != FORMAT_VERSION {
        return Err(corrupt(format!(
            "deletion vector format {} (this build reads {FORMAT_VERSION})",
            u32_at(8)
        )));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..36]), &bytes[HEADER_LEN..]);
    if crc != u32_at(36) {
        return Err(corrupt("deletion vector header checksum mismatch".into()));
    }
    if u64_at(12) != u64::from(meta.table_id)
        || u64_at(20) != meta.file
        || u64_at(28) != meta.cardinality
    {
        return Err(corrupt(
            "deletion vector header disagrees with the manifest".into(),
        ));
    }
    let bitmap = RoaringBitmap::deserialize_from(&bytes[HEADER_LEN..])
        .map_err(|e| corrupt(format!("deletion vector bitmap: {e}")))?;
    if bitmap.len() != meta.cardinality || bitmap.max().is_some_and(|m| u64::from(m) >= rows) {
        return Err(corrupt(format!(
            "deletion vector holds positions beyond the file's {rows} rows"
        )));
    }
    Ok(bitmap)
}

/// One loaded deletion vector, shared by the versions that hold it.
pub struct DeletionVector {
    meta: DvMeta,
    positions: Arc<RoaringBitmap>,
    context: Arc<FileContext>,
    obsolete: AtomicBool,
}

impl std::fmt::Debug for DeletionVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeletionVector")
            .field("id", &self.meta.id)
            .field("file", &self.meta.file)
            .field("cardinality", &self.meta.cardinality)
            .finish()
    }
}

impl DeletionVector {
    /// Writes `positions` as DV `id` of SST `file` (stored and synced, not yet in the manifest).
    pub fn write(
        context: &Arc<FileContext>,
        table: TableId,
        file: FileId,
        id: FileId,
        positions: RoaringBitmap,
    ) -> Result<Arc<DeletionVector>> {
        let bytes = encode(table, file, &positions)?;
        let meta = DvMeta {
            id,
            table_id: table,
            file,
            cardinality: positions.len(),
            size_bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        };
        context.store.put(&meta.object_path(), Bytes::from(bytes))?;
        Metrics::inc(&context.metrics.dv_files_written);
        Ok(Arc::new(DeletionVector {
            meta,
            positions: Arc::new(positions),
            context: Arc::clone(context),
            obsolete: AtomicBool::new(false),
        }))
    }

    /// Loads the DV `meta` names, checked against the SST's `rows` (see [`decode`]).
    pub fn load(
        context: &Arc<FileContext>,
        meta: &DvMeta,
        rows: u64,
    ) -> Result<Arc<DeletionVector>> {
        let bytes = context.store.read_all(&meta.object_path())?;
        let positions = decode(meta, rows, &bytes)?;
        Ok(Arc::new(DeletionVector {
            meta: meta.clone(),
            positions: Arc::new(positions),
            context: Arc::clone(context),
            obsolete: AtomicBool::new(false),
        }))
    }

    /// The manifest record.
    pub fn meta(&self) -> &DvMeta {
        &self.meta
    }

    /// The deleted positions.
    pub fn positions(&self) -> &Arc<RoaringBitmap> {
        &self.positions
    }

    /// Marks the DV file for deletion once no version holds it.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for DeletionVector {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            // Deleted on the purger's thread: this may be a query's (crate::purge).
            self.context.purger.release(
                self.meta.object_path(),
                crate::purge::ObsoleteKind::DeletionVector,
            );
        }
    }
}

/// The runs of a file's rows `start..end` (of `rows`) as `(live, length)` pairs covering the
/// whole file in order: rows outside `start..end` and rows in `deleted` are not live.
pub fn selection_runs(
    rows: u64,
    start: u64,
    end: u64,
    deleted: Option<&RoaringBitmap>,
) -> Vec<(bool, u64)> {
    debug_assert!(start <= end && end <= rows);
    let mut runs: Vec<(bool, u64)> = Vec::new();
    let mut push = |live: bool, len: u64| {
        if len == 0 {
            return;
        }
        match runs.last_mut() {
            Some((l, n)) if *l == live => *n += len,
            _ => runs.push((live, len)),
        }
    };
    push(false, start);
    let mut at = start;
    if let Some(deleted) = deleted
        && start < end
    {
        for p in deleted.range(position(start)..).map(u64::from) {
            if p >= end {
                break;
            }
            push(true, p - at);
            push(false, 1);
            at = p + 1;
        }
    }
    push(true, end - at);
    push(false, rows - end);
    debug_assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), rows);
    runs
}

/// How a Parquet reader reads one row group of a base file's piece: the group's rows inside
/// the piece minus the file's deleted rows.
#[derive(Debug, Clone, PartialEq)]
pub enum RowGroupRows {
    /// No row of the group is read.
    None,
    /// Every row of the group is read.
    All,
    /// The rows the selection selects, counted from the group's first row (its selectors
    /// cover exactly the group's rows).
    Some(RowSelection),
}

/// A DV position for file position `p` (positions are `u32` in a DV: a file holds at most
/// `u32::MAX` rows).
fn position(p: u64) -> u32 {
    p.min(u64::from(u32::MAX)) as u32
}

/// Number of positions of `deleted` among the file positions `rows`.
pub fn deleted_within(deleted: &RoaringBitmap, rows: Range<u64>) -> u64 {
    if rows.start >= rows.end {
        return 0;
    }
    deleted.range_cardinality(position(rows.start)..position(rows.end))
}

/// The rows of the row group at file positions `group` that a reader of the positions `read`
/// reads, minus those in `deleted` (one pass over the deleted positions inside the group).
pub fn row_group_rows(
    group: Range<u64>,
    read: Range<u64>,
    deleted: Option<&RoaringBitmap>,
) -> RowGroupRows {
    debug_assert!(group.start <= group.end && read.start <= read.end);
    let low = group.start.max(read.start);
    let high = group.end.min(read.end);
    if low >= high {
        return RowGroupRows::None;
    }
    let hidden = deleted.map_or(0, |d| deleted_within(d, low..high));
    if hidden == high - low {
        return RowGroupRows::None;
    }
    if hidden == 0 && low == group.start && high == group.end {
        return RowGroupRows::All;
    }
    let mut selectors = Vec::with_capacity(2 * hidden as usize + 3);
    selectors.push(RowSelector::skip((low - group.start) as usize));
    let mut at = low;
    if let Some(deleted) = deleted {
        for p in deleted.range(position(low)..position(high)).map(u64::from) {
            selectors.push(RowSelector::select((p - at) as usize));
            selectors.push(RowSelector::skip(1));
            at = p + 1;
        }
    }
    selectors.push(RowSelector::select((high - at) as usize));
    selectors.push(RowSelector::skip((group.end - high) as usize));
    // `From` merges neighbouring selectors of one kind and drops empty ones.
    let selection = RowSelection::from(selectors);
    debug_assert_eq!(
        selection.iter().map(|s| s.row_count as u64).sum::<u64>(),
        group.end - group.start
    );
    debug_assert_eq!(selection.row_count() as u64, high - low - hidden);
    RowGroupRows::Some(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_for(bytes: &[u8], cardinality: u64) -> DvMeta {
        DvMeta {
            id: 9,
            table_id: 3,
            file: 7,
            cardinality,
            size_bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        }
    }

    proptest::proptest! {
        /// A row group's selection reads exactly the group's positions inside the read range
        /// that are not deleted, and covers the whole group.
        #[test]
        fn row_group_rows_read_the_live_rows_of_the_range(
            group_start in 0u64..100,
            group_len in 0u64..100,
            read_start in 0u64..220,
            read_len in 0u64..220,
            deleted in proptest::collection::btree_set(0u32..220, 0..80),
        ) {
            let group = group_start..group_start + group_len;
            let read = read_start..read_start + read_len;
            let bitmap: RoaringBitmap = deleted.iter().copied().collect();
            let want: Vec<u64> = group
                .clone()
                .filter(|p| read.contains(p) && !deleted.contains(&(*p as u32)))
                .collect();
            let got: Vec<u64> = match row_group_rows(group.clone(), read.clone(), Some(&bitmap)) {
                RowGroupRows::None => Vec::new(),
                RowGroupRows::All => group.clone().collect(),
                RowGroupRows::Some(selection) => {
                    let mut at = group.start;
                    let mut out = Vec::new();
                    for s in selection.iter() {
                        if !s.skip {
                            out.extend(at..at + s.row_count as u64);
                        }
                        at += s.row_count as u64;
                    }
                    proptest::prop_assert_eq!(at, group.end);
                    // A selection only when some rows are read and some are not.
                    proptest::prop_assert!(!out.is_empty() && (out.len() as u64) < group_len);
                    out
                }
            };
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn round_trip_and_header() {
        let positions: RoaringBitmap = [0u32, 5, 6, 99].into_iter().collect();
        let bytes = encode(3, 7, &positions).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        let meta = meta_for(&bytes, 4);
        assert_eq!(decode(&meta, 100, &bytes).unwrap(), positions);
        // A position beyond the file is refused.
        assert!(decode(&meta, 99, &bytes).unwrap_err().is_corruption());
    }

    #[test]
    fn every_byte_flip_is_detected() {
        let positions: RoaringBitmap = (0u32..1000).step_by(7).collect();
        let bytes = encode(3, 7, &positions).unwrap();
        let meta = meta_for(&bytes, positions.len());
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            let error = decode(&meta, 1000, &damaged).unwrap_err();
            assert!(error.is_corruption(), "flip at {at}: {error}");
        }
        // Also when the manifest's checksum is of the damaged bytes (only the inner checksum
        // catches it).
        for at in (0..bytes.len()).filter(|at| !(36..40).contains(at)) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            let meta = meta_for(&damaged, positions.len());
            assert!(decode(&meta, 1000, &damaged).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn paths_round_trip() {
        assert_eq!(parse_dv_object_path(&dv_object_path(4, 12)), Some((4, 12)));
        assert_eq!(
            parse_dv_object_path("sst/t000004/00000000000000000012.parquet"),
            None
        );
    }

    #[test]
    fn selection_runs_cover_the_file() {
        let deleted: RoaringBitmap = [2u32, 3, 8].into_iter().collect();
        assert_eq!(
            selection_runs(10, 0, 10, Some(&deleted)),
            vec![(true, 2), (false, 2), (true, 4), (false, 1), (true, 1)]
        );
        assert_eq!(
            selection_runs(10, 3, 9, Some(&deleted)),
            vec![(false, 4), (true, 4), (false, 2)]
        );
        assert_eq!(selection_runs(10, 0, 10, None), vec![(true, 10)]);
        assert_eq!(selection_runs(10, 5, 5, None), vec![(false, 10)]);
    }
}
