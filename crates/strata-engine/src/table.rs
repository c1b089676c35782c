//! Tables: the public [`Table`] handle and the per-table state it shares with the database.
//!
//! A table is one LSM tree: an active memtable, immutable memtables waiting for flush, and SST
//! files by level, all pinned together in a [`SuperVersion`]. Writes go through the database's
//! commit path (WAL, then memtable); a read pins a super version and the latest sequence
//! number together, under the `sv` read lock, so it sees a consistent prefix of the history
//! (see `TableInner::pin_latest` for why that is enough); a read at a snapshot pins the
//! current super version, which holds everything the snapshot's number covers.
//!
//! ## Locks
//!
//! * `versions` ([`VersionControl`]): the `sv` lock guards which `Arc<SuperVersion>` is
//!   current. Readers hold it only to clone the `Arc` (and read `visible_seq`); the commit
//!   leader (memtable switch), the flush and compaction workers and ingest (install) replace
//!   it, through the version control only. Its change lock orders the changes of the table's
//!   files (see [`crate::version`] and `db::install`).
//! * `flush_lock` (Mutex): one flush of this table at a time, so immutable memtables are flushed
//!   oldest first.
//! * `options` (RwLock): the table's options; a change applies to the next memtable.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use parking_lot::{Mutex, RwLock};

use crate::codec::{ByteRows, KeyValue};
use crate::db::DbInner;
use crate::dv::RowGroupRows;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::options::TableOptions;
use crate::read::plan_cache::CachedPlan;
use crate::read::{
    BaseFile, BaseScan, Dedup, KeyRange, MergeIter, ScanColumns, ScanIter, ScanOptions,
    collect_runs,
};
use crate::schema::TableSchema;
use crate::snapshot::Snapshot;
use crate::sst::key_cache::FileKeys;
use crate::sst::{BloomProbe, SstMeta, bloom_probes};
use crate::types::{OpKind, SeqNo, TableId};
use crate::version::{MemtableSlot, SstHandle, SuperVersion, VersionControl};
use crate::wal::BatchPayload;

/// Per-table state shared by handles, the commit path and background work.
pub(crate) struct TableInner {
    pub id: TableId,
    pub name: String,
    pub schema: Arc<TableSchema>,
    pub options: RwLock<TableOptions>,
    /// The current super version and the lock ordering changes of the table's files.
    pub versions: VersionControl,
    pub dropped: AtomicBool,
    pub flush_queued: AtomicBool,
    pub flush_lock: Mutex<()>,
    pub compaction_queued: AtomicBool,
    /// One compaction of this table at a time.
    pub compaction_lock: Mutex<()>,
    /// Flush and compaction counters by output level.
    pub compaction_stats: Mutex<Vec<crate::db::LevelCompactionStats>>,
    /// Rows and bytes written, and backpressure time, of this table.
    pub counters: crate::metrics::TableCounters,
    /// Level-0 files (leveled) or sorted runs (size-tiered) of the current version.
    pub write_pressure: AtomicUsize,
    /// Bytes the strategy estimates compaction still has to rewrite.
    pub pending_compaction_bytes: AtomicU64,
    /// Every write up to this sequence number is in an SST (from the manifest).
    pub flushed_seq: AtomicU64,
    /// Next hidden row id (append-only tables).
    pub next_rowid: AtomicU64,
    pub created_at_ms: u64,
    /// Plans of recent base scans, reused while the table is unchanged.
    pub plan_cache: crate::read::plan_cache::PlanCache,
}

impl std::fmt::Debug for TableInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl TableInner {
    /// Counts a file written into level 0 by a flush or an ingest.
    pub fn count_flush(&self, meta: &SstMeta) {
        debug_assert_eq!(meta.level, 0, "flushes write level 0");
        let mut stats = self.compaction_stats.lock();
        let entry = crate::db::level_entry(&mut stats, meta.level);
        entry.flushes += 1;
        entry.bytes_flushed += meta.size_bytes;
    }

    /// The current super version.
    pub fn super_version(&self) -> Arc<SuperVersion> {
        self.versions.current()
    }

    /// The current super version and the latest read sequence number (`visible_seq`), as one
    /// consistent pair: every write at or below the number is readable through the super
    /// version, with the newest version of each key at or below it.
    ///
    /// Both are read under the `sv` read lock, which every change of the super version takes
    /// for writing (memtable switch, flush and compaction install, ingest, drop). Why that
    /// suffices:
    ///
    /// * Nothing missing: a write is applied to the active memtable of the super version
    ///   current at that moment (only the commit leader applies, and memtables are switched
    ///   only by the leader or with the commit queue held), and `visible_seq` covers it only
    ///   after that. A memtable leaves later super versions only as the SST its flush installs
    ///   in the same step. The pinned super version is current when `visible_seq` is read, so
    ///   it is no older than the one any covered write went into.
    /// * Nothing collected away: a flush or compaction drops a version only when a newer one of
    ///   its key is in the same output and no snapshot lies between. Pinned files hold only
    ///   writes `visible_seq` covered when they were installed (a memtable is switched after its
    ///   writes are published; an ingest publishes inside its install), so a dropped version is
    ///   shadowed by one at or below the read sequence.
    ///
    /// Without the lock neither order works: pinning first, a commit could switch the memtable,
    /// apply to the new one and publish before the number is read (the view missed writes at
    /// or below its number); reading the number first, a flush in between could drop a version
    /// at or below it, shadowed by a newer write above it.
    pub fn pin_latest(&self, db: &DbInner) -> (Arc<SuperVersion>, SeqNo) {
        let guard = self.versions.read();
        let read_seq = db.visible_seq();
        (Arc::clone(&guard), read_seq)
    }

    /// Brings the kept scan plans of the key ranges queries scanned recently up to the latest
    /// write, making new ones after a flush or compaction (the plan refresher,
    /// `crate::read::plan_cache`). Nothing to do for a table no query scanned within
    /// [`crate::read::plan_cache::PLAN_REFRESH_IDLE`]; false then.
    pub(crate) fn refresh_scan_plans(self: &Arc<Self>, db: &Arc<DbInner>) -> Result<bool> {
        let scanned = self
            .plan_cache
            .scanned_within(crate::read::plan_cache::PLAN_REFRESH_IDLE);
        if scanned.is_empty() {
            return Ok(false);
        }
        let (sv, read_seq) = self.pin_latest(db);
        let view = ReadView {
            db: Arc::clone(db),
            table: Arc::clone(self),
            sv,
            read_seq,
        };
        for ranges in scanned {
            view.refresh_plan(&ranges)?;
        }
        Ok(true)
    }

    /// Makes the active memtable immutable and `fresh` the active one (commit leadership
    /// held), then refreshes the compaction pressure.
    pub fn switch_active_memtable(&self, fresh: Arc<MemtableSlot>) {
        let version = self.versions.switch_memtable(fresh);
        self.refresh_pressure(&version);
    }

    /// Replaces the empty active memtable with `fresh` (recovery).
    pub fn replace_active_memtable(&self, fresh: Arc<MemtableSlot>) {
        let version = self.versions.replace_active(fresh);
        self.refresh_pressure(&version);
    }

    /// Empties the super version of a dropped table: its memtables and files are let go.
    pub fn reset_versions(&self, fresh: Arc<MemtableSlot>) {
        let version = self.versions.reset(fresh);
        self.refresh_pressure(&version);
    }

    /// Recomputes `write_pressure` and `pending_compaction_bytes` for `version`.
    pub fn refresh_pressure(&self, version: &crate::version::Version) {
        let options = self.options.read().compaction.clone();
        let (pressure, pending) = match options.strategy.strategy() {
            Some(strategy) => {
                let levels = crate::db::levels_of(version);
                (
                    strategy.write_pressure(&levels),
                    strategy.pending_bytes(&levels, &options),
                )
            }
            None => (0, 0),
        };
        self.write_pressure.store(pressure, Ordering::Release);
        self.pending_compaction_bytes
            .store(pending, Ordering::Release);
    }

    /// A fresh memtable slot of the table's current kind.
    pub fn new_memtable(&self) -> Arc<MemtableSlot> {
        Arc::new(MemtableSlot::new(
            self.options.read().memtable_kind.create(),
        ))
    }
}

/// One change inside an atomic table write.
#[derive(Debug, Clone, Copy)]
pub enum Mutation<'a> {
    /// Insert or replace the rows of this batch (user schema), by primary key.
    Upsert(&'a RecordBatch),
    /// Delete the keys in this batch (exactly the primary-key columns).
    Delete(&'a RecordBatch),
}

/// Options of one write.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Force the WAL to stable storage before acknowledging, whatever the database's
    /// [`crate::SyncMode`].
    pub sync: bool,
}

/// Sizes and counts describing a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    /// Entries in memtables (versions, not distinct keys).
    pub memtable_entries: u64,
    /// Memory of memtables.
    pub memtable_bytes: u64,
    /// Immutable memtables waiting for flush.
    pub immutable_memtables: usize,
    /// SST files per level.
    pub files_per_level: Vec<usize>,
    /// SST bytes.
    pub sst_bytes: u64,
    /// Rows in SSTs (all versions and tombstones).
    pub sst_rows: u64,
    /// Tombstones in SSTs.
    pub sst_tombstones: u64,
    /// An estimate of live rows: SST rows minus tombstones and older versions, plus memtable
    /// entries (exact after a full compaction with an empty memtable).
    pub estimated_rows: u64,
}

/// A handle to one table. Cheap to clone; valid until the table is dropped or the database
/// closed.
#[derive(Clone)]
pub struct Table {
    pub(crate) db: Arc<DbInner>,
    pub(crate) inner: Arc<TableInner>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Table {
    /// The table's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The table's id.
    pub fn id(&self) -> TableId {
        self.inner.id
    }

    /// The user schema (key columns NOT NULL).
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(self.inner.schema.user_schema())
    }

    /// The full table schema (storage layout and codecs).
    pub fn table_schema(&self) -> &Arc<TableSchema> {
        &self.inner.schema
    }

    /// Primary-key column names (empty for append-only tables).
    pub fn primary_key(&self) -> &[String] {
        self.inner.schema.primary_key()
    }

    /// The table's options.
    pub fn options(&self) -> TableOptions {
        self.inner.options.read().clone()
    }

    fn check_live(&self) -> Result<()> {
        self.db.check_open()?;
        if self.inner.dropped.load(Ordering::Acquire) {
            return Err(Error::TableNotFound(self.inner.name.clone()));
        }
        Ok(())
    }

    /// Inserts the rows of `batch` (user schema); a row whose key exists replaces it
    /// (last writer wins; within the batch the last row of a key wins). Returns the rows
    /// written. The batch is applied atomically.
    pub fn insert(&self, batch: &RecordBatch) -> Result<u64> {
        self.write(&[Mutation::Upsert(batch)], WriteOptions::default())
    }

    /// Deletes the keys in `keys`, a batch of exactly the primary-key columns. Deleting an
    /// absent key is not an error. Returns the number of keys given.
    pub fn delete(&self, keys: &RecordBatch) -> Result<u64> {
        self.write(&[Mutation::Delete(keys)], WriteOptions::default())
    }

    /// Deletes keys given as typed values.
    pub fn delete_keys(&self, keys: &[Vec<KeyValue>]) -> Result<u64> {
        self.check_live()?;
        let mut payload = BatchPayload::new();
        for key in keys {
            let encoded = self.inner.schema.encode_key_values(key)?;
            self.check_key_size(&encoded)?;
            payload.push(self.inner.id, OpKind::Delete, &encoded, &[]);
        }
        self.commit(payload, WriteOptions::default())
    }

    /// Applies several mutations as one atomic write batch, in order (a key deleted and then
    /// upserted in the same call ends up upserted). Returns the rows written.
    pub fn write(&self, mutations: &[Mutation<'_>], options: WriteOptions) -> Result<u64> {
        self.check_live()?;
        let mut payload = BatchPayload::new();
        for mutation in mutations {
            match mutation {
                Mutation::Upsert(batch) => self.encode_upserts(batch, &mut payload)?,
                Mutation::Delete(keys) => {
                    let encoded = self.inner.schema.encode_key_batch(keys)?;
                    for key in encoded.iter() {
                        self.check_key_size(key)?;
                        payload.push(self.inner.id, OpKind::Delete, key, &[]);
                    }
                }
            }
        }
        self.commit(payload, options)
    }

    fn encode_upserts(&self, batch: &RecordBatch, payload: &mut BatchPayload) -> Result<()> {
        if batch.num_rows() == 0 {
            self.inner.schema.check_batch(batch)?;
            return Ok(());
        }
        let first_rowid = if self.inner.schema.has_hidden_rowid() {
            self.inner
                .next_rowid
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed)
        } else {
            0
        };
        let (keys, values) = self.inner.schema.encode_rows(batch, first_rowid)?;
        self.push_encoded(&keys, &values, payload)
    }

    fn push_encoded(
        &self,
        keys: &ByteRows,
        values: &ByteRows,
        payload: &mut BatchPayload,
    ) -> Result<()> {
        let limits = &self.db.options;
        for (key, value) in keys.iter().zip(values.iter()) {
            self.check_key_size(key)?;
            if value.len() > limits.value_size_bytes_max {
                return Err(Error::LimitExceeded(format!(
                    "row of {} bytes exceeds value_size_bytes_max ({})",
                    value.len(),
                    limits.value_size_bytes_max
                )));
            }
            payload.push(self.inner.id, OpKind::Put, key, value);
            if payload.len_bytes() > limits.write_batch_bytes_max {
                return Err(Error::LimitExceeded(format!(
                    "write batch exceeds write_batch_bytes_max ({} bytes); split it",
                    limits.write_batch_bytes_max
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn check_key_size(&self, key: &[u8]) -> Result<()> {
        let max = self.db.options.key_size_bytes_max;
        if key.len() > max {
            return Err(Error::LimitExceeded(format!(
                "encoded key of {} bytes exceeds key_size_bytes_max ({max})",
                key.len()
            )));
        }
        Ok(())
    }

    pub(crate) fn commit(&self, mut payload: BatchPayload, options: WriteOptions) -> Result<u64> {
        let rows = u64::from(payload.count());
        if rows == 0 {
            return Ok(0);
        }
        if payload.len_bytes() > self.db.options.write_batch_bytes_max {
            return Err(Error::LimitExceeded(format!(
                "write batch exceeds write_batch_bytes_max ({} bytes); split it",
                self.db.options.write_batch_bytes_max
            )));
        }
        payload.seal();
        self.db
            .write(&[Arc::clone(&self.inner)], payload, options.sync)?;
        Ok(rows)
    }

    /// Pins the table for reading at the latest committed write.
    pub fn view(&self) -> Result<ReadView> {
        self.check_live()?;
        let (sv, read_seq) = self.inner.pin_latest(&self.db);
        Ok(ReadView {
            db: Arc::clone(&self.db),
            table: Arc::clone(&self.inner),
            sv,
            read_seq,
        })
    }

    /// Pins the table for reading at a snapshot.
    pub fn view_at(&self, snapshot: &Snapshot) -> Result<ReadView> {
        self.check_live()?;
        // Any super version current from the snapshot's creation on will do: every write the
        // snapshot covers was applied before it was taken (see `TableInner::pin_latest`), and
        // flushes and compactions keep every version a registered snapshot reads (one that
        // started before the snapshot only drops versions shadowed by writes at or below it).
        let sv = self.inner.super_version();
        Ok(ReadView {
            db: Arc::clone(&self.db),
            table: Arc::clone(&self.inner),
            sv,
            read_seq: snapshot.seq(),
        })
    }

    /// The row with primary key `key` (typed values in key order), as a one-row batch.
    pub fn get(&self, key: &[KeyValue]) -> Result<Option<RecordBatch>> {
        self.view()?.get(key)
    }

    /// The row with primary key `key` as of `snapshot`.
    pub fn get_at(&self, snapshot: &Snapshot, key: &[KeyValue]) -> Result<Option<RecordBatch>> {
        self.view_at(snapshot)?.get(key)
    }

    /// Scans the rows whose keys are in `range`.
    pub fn scan(&self, range: KeyRange, options: ScanOptions) -> Result<ScanIter> {
        self.view()?.scan(range, options)
    }

    /// Scans as of `snapshot`.
    pub fn scan_at(
        &self,
        snapshot: &Snapshot,
        range: KeyRange,
        options: ScanOptions,
    ) -> Result<ScanIter> {
        self.view_at(snapshot)?.scan(range, options)
    }

    /// Loads a large stream of rows straight into sorted SSTs (see `db::ingest`): atomic (all
    /// rows or none), last row of a key wins, much faster than [`Table::insert`] for millions of
    /// rows, in memory bounded by `options` whatever the stream's length. Other writers do not
    /// wait for it; other loads of the database do. Returns the rows read.
    pub fn ingest(
        &self,
        batches: impl IntoIterator<Item = Result<RecordBatch>>,
        options: &crate::db::IngestOptions,
    ) -> Result<u64> {
        self.check_live()?;
        self.db
            .ingest(&self.inner, &mut batches.into_iter(), options)
    }

    /// Starts a bulk load pushed batch by batch (what [`Table::ingest`] runs for an
    /// iterator): see [`crate::BulkLoad`].
    pub fn bulk_load(&self, options: &crate::db::IngestOptions) -> Result<crate::BulkLoad> {
        self.check_live()?;
        crate::BulkLoad::start(Arc::clone(&self.db), Arc::clone(&self.inner), options)
    }

    /// Writes the memtables of this table to SSTs and waits until they are durable there.
    pub fn flush(&self) -> Result<()> {
        self.check_live()?;
        self.db.flush_table(&self.inner)
    }

    /// Sizes and counts.
    pub fn stats(&self) -> TableStats {
        table_stats(&self.inner)
    }

    /// Compacts every SST file of the table into one sorted run at the deepest level it
    /// reaches, dropping older versions no snapshot needs and tombstones. Waits for it.
    pub fn compact(&self) -> Result<()> {
        self.compact_range(&KeyRange::all())
    }

    /// Compacts the files whose keys overlap `range` (and whatever they overlap below them).
    pub fn compact_range(&self, range: &KeyRange) -> Result<()> {
        self.check_live()?;
        self.db.compact_range(&self.inner, range)
    }

    /// The shape of the table's LSM tree: files, runs, bytes, key range and overlap depth per
    /// level.
    pub fn levels(&self) -> Vec<crate::compaction::LevelSummary> {
        let options = self.inner.options.read().compaction.clone();
        crate::compaction::analyze(
            &crate::db::levels_of(&self.inner.super_version().version),
            &options,
        )
    }

    /// Flush and compaction counters by output level (index = level), since the database
    /// was opened.
    pub fn compaction_stats(&self) -> Vec<crate::db::LevelCompactionStats> {
        self.inner.compaction_stats.lock().clone()
    }

    /// The table's write amplification, space amplification and backpressure: the counters
    /// of [`Table::compaction_stats`] with the shape of the current version and the write
    /// counters, since the database was opened.
    pub fn compaction_report(&self) -> crate::db::CompactionReport {
        let stats = self.compaction_stats();
        let version = Arc::clone(&self.inner.super_version().version);
        crate::db::CompactionReport::new(
            &crate::db::levels_of(&version),
            stats,
            self.inner.counters.snapshot(),
        )
    }
}

pub(crate) fn table_stats(table: &TableInner) -> TableStats {
    let sv = table.super_version();
    let files: Vec<&SstMeta> = sv.version.files().map(|f| f.meta()).collect();
    let memtable_entries: u64 = sv.memtables().map(|m| m.memtable.len() as u64).sum();
    let sst_rows: u64 = files.iter().map(|f| f.rows).sum();
    let sst_tombstones: u64 = files.iter().map(|f| f.tombstones).sum();
    let older: u64 = files.iter().map(|f| f.older_versions).sum();
    TableStats {
        memtable_entries,
        memtable_bytes: sv.memtable_bytes() as u64,
        immutable_memtables: sv.immutables.len(),
        files_per_level: (0..sv.version.num_levels())
            .map(|l| sv.version.level(l).len())
            .collect(),
        sst_bytes: sv.version.size_bytes(),
        sst_rows,
        sst_tombstones,
        estimated_rows: sst_rows.saturating_sub(sst_tombstones + older) + memtable_entries,
    }
}

/// The number of rows a scan of a whole [`ReadView`] returns ([`ReadView::row_count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    /// The rows, exact or estimated.
    pub rows: u64,
    /// True when `rows` is exactly the number of live rows the view holds.
    pub exact: bool,
}

/// Who plans a base scan: a query (its planning time is the query's) or the plan refresher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlanFor {
    Query,
    Refresh,
}

/// A table pinned for reading: its memtables and files (a super version) and a sequence
/// number. Every read through one view sees the same data.
#[derive(Clone)]
pub struct ReadView {
    db: Arc<DbInner>,
    table: Arc<TableInner>,
    sv: Arc<SuperVersion>,
    read_seq: SeqNo,
}

impl std::fmt::Debug for ReadView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadView")
            .field("table", &self.table.name)
            .field("read_seq", &self.read_seq)
            .finish()
    }
}

impl ReadView {
    /// The sequence number this view reads at.
    pub fn read_seq(&self) -> SeqNo {
        self.read_seq
    }

    /// The table schema.
    pub fn table_schema(&self) -> &Arc<TableSchema> {
        &self.table.schema
    }

    /// Metadata of the SST files, by level (L0 newest first).
    pub fn files_by_level(&self) -> Vec<Vec<SstMeta>> {
        (0..self.sv.version.num_levels())
            .map(|l| {
                self.sv
                    .version
                    .level(l)
                    .iter()
                    .map(|f| f.meta().clone())
                    .collect()
            })
            .collect()
    }

    /// Metadata of the SST files that may hold a version visible at the read sequence of a
    /// key in one of `ranges` (see [`crate::version::Version::files_overlapping`]), L0 newest
    /// first, then deeper levels by key.
    pub fn files_overlapping(&self, ranges: &[KeyRange]) -> Vec<SstMeta> {
        self.sv
            .version
            .files_overlapping(ranges, self.read_seq)
            .map(|f| f.meta().clone())
            .collect()
    }

    /// `(entries, bytes, immutable)` of each memtable, newest first.
    pub fn memtables(&self) -> Vec<(usize, usize, bool)> {
        self.sv
            .memtables()
            .enumerate()
            .map(|(i, m)| (m.memtable.len(), m.memory_bytes(), i > 0))
            .collect()
    }

    /// True when the view's memtables hold no entry visible at the read sequence.
    pub fn memtables_empty(&self) -> bool {
        self.sv
            .memtables()
            .all(|m| m.min_seq().is_none_or(|s| s > self.read_seq))
    }

    /// The number of rows a scan of every key returns, from file and memtable metadata: exact
    /// when the memtables hold nothing visible at the read sequence and the visible files are
    /// clean ([`SstMeta::is_clean`]: no tombstones, one version per key), wholly visible (no
    /// row newer than the read sequence) and pairwise disjoint in key range; otherwise an
    /// estimate (rows of the visible files minus their tombstones, plus the memtable entries).
    pub fn row_count(&self) -> RowCount {
        let all = [KeyRange::all()];
        let mut files: Vec<&SstMeta> = self
            .sv
            .version
            .files_overlapping(&all, self.read_seq)
            .map(|f| f.meta())
            .collect();
        let file_rows: u64 = files
            .iter()
            .map(|f| f.rows.saturating_sub(f.tombstones))
            .sum();
        let memtables_empty = self.memtables_empty();
        let memtable_entries: u64 = if memtables_empty {
            0
        } else {
            self.sv.memtables().map(|m| m.memtable.len() as u64).sum()
        };
        let rows = file_rows.saturating_add(memtable_entries);
        let exact = memtables_empty
            && files
                .iter()
                .all(|f| f.is_clean() && f.max_seq <= self.read_seq)
            && {
                files.sort_by(|a, b| a.min_key.cmp(&b.min_key));
                files.windows(2).all(|w| w[0].max_key < w[1].min_key)
            };
        RowCount { rows, exact }
    }

    /// Plans a scan of the keys in `ranges` (`None`: every key; otherwise pairwise disjoint
    /// ranges, as the SQL layer's are, or overlay rows would be returned once per range) as
    /// base files with deletion vectors plus the memtable overlay, or `None` when the view
    /// must be read by the merge (see [`crate::read::plan`]).
    pub fn base_scan(&self, ranges: Option<&[KeyRange]>) -> Result<Option<BaseScan>> {
        self.plan_scan(ranges)
    }

    /// The exact number of rows of this view whose key lies in `ranges` (sorted, disjoint),
    /// counted without reading a row from `scan`, this view's plan for the same ranges
    /// ([`Self::base_scan`]): each base file's rows between the ranges' bounds found by two
    /// binary searches of its keys in the key cache, minus its deleted rows there, plus the
    /// overlay's live rows. `None` when that count is not known to be exact: a base file's
    /// keys not in the key cache, the overlay not resolved against the base files, or a file
    /// of this view found corrupt.
    pub fn live_rows_within(&self, scan: &BaseScan, ranges: &[KeyRange]) -> Option<u64> {
        if self.has_known_corrupt_file() {
            return None;
        }
        let keys: Option<Vec<Arc<FileKeys>>> = scan
            .files
            .iter()
            .map(|file| {
                self.sv
                    .version
                    .files()
                    .find(|h| h.meta().id == file.meta.id)
                    .and_then(|h| h.cached_keys())
            })
            .collect();
        crate::read::plan::live_rows_within(scan, &keys?, ranges)
    }

    /// The plan of [`Self::base_scan`] whatever storage the files are on (see
    /// [`crate::read::plan`] and [`crate::read::plan_cache`]).
    pub(crate) fn plan_scan(&self, ranges: Option<&[KeyRange]>) -> Result<Option<BaseScan>> {
        self.plan_scan_for(ranges, PlanFor::Query)
    }

    /// Brings the kept plan of `ranges` up to this view's read sequence (or makes one), for the
    /// plan refresher ([`crate::read::plan_cache`]): counted as a refresh, not as a query's
    /// planning.
    pub(crate) fn refresh_plan(&self, ranges: &[KeyRange]) -> Result<()> {
        self.plan_scan_for(Some(ranges), PlanFor::Refresh)
            .map(|_| ())
    }

    fn plan_scan_for(
        &self,
        ranges: Option<&[KeyRange]>,
        purpose: PlanFor,
    ) -> Result<Option<BaseScan>> {
        let schema = &self.table.schema;
        let version = &self.sv.version;
        if !schema.sst_file_types_are_user_types()
            || version.files().any(|f| f.meta().max_seq > self.read_seq)
        {
            return Ok(None);
        }
        let all = [KeyRange::all()];
        let ranges = ranges.unwrap_or(&all);
        let memtables: Vec<Arc<MemtableSlot>> = self.sv.memtables().cloned().collect();
        let cache = &self.table.plan_cache;
        if purpose == PlanFor::Query {
            cache.note_scan(ranges);
            self.db.background.wake_plan_refresher();
        }
        let metrics = &self.db.metrics;
        let started = std::time::Instant::now();
        let micros = |started: std::time::Instant| started.elapsed().as_micros() as u64;
        // A plan made or brought up to date: counted as the query's planning or as a refresh.
        let count_plan = |made: bool| match purpose {
            PlanFor::Query if made => {
                Metrics::inc(&metrics.scan_plans_made);
                Metrics::add(&metrics.scan_plan_made_micros, micros(started));
            }
            PlanFor::Query => {
                Metrics::inc(&metrics.scan_plans_updated);
                Metrics::add(&metrics.scan_plan_updated_micros, micros(started));
            }
            PlanFor::Refresh => {
                Metrics::inc(&metrics.scan_plans_refreshed);
                Metrics::add(&metrics.scan_plan_refreshed_micros, micros(started));
            }
        };
        if let Some(mut cached) = cache.get(version, &memtables, ranges, self.read_seq) {
            // The keys written since the plan, within the ranges.
            let changes: Vec<_> = memtables
                .iter()
                .map(|m| m.changes_since(cached.consumed(m), self.read_seq))
                .collect();
            let mut changed: Vec<&[u8]> = changes
                .iter()
                .flat_map(|c| c.keys.iter())
                .filter(|k| ranges.iter().any(|r| r.contains(k)))
                .collect();
            changed.sort_unstable();
            changed.dedup();
            let positions: Vec<usize> = changes.iter().map(|c| c.end).collect();
            let updated = if changed.is_empty() {
                if purpose == PlanFor::Query {
                    Metrics::inc(&metrics.scan_plans_reused);
                }
                true
            } else if let (Some(plan), Some(index)) = (&mut cached.plan, &mut cached.index) {
                let handles: Vec<Arc<SstHandle>> = version.files().cloned().collect();
                let before = plan.overlay.hidden_base_rows();
                // The kept plan's index is only read: the copy gets a new one.
                let keys = crate::read::plan::update_base_scan(
                    schema,
                    plan,
                    index,
                    &handles,
                    &memtables,
                    &changed,
                    self.read_seq,
                    purpose == PlanFor::Refresh,
                )?;
                match keys {
                    Some(keys) => {
                        if !keys.has_recent() {
                            // The written keys were merged into the settled ones.
                            Metrics::inc(&metrics.scan_plan_consolidations);
                        }
                        *index = Arc::new(keys);
                        count_plan(false);
                        Metrics::add(
                            &metrics.overlay_rows_resolved,
                            plan.overlay.hidden_base_rows() - before,
                        );
                        true
                    }
                    None => false,
                }
            } else {
                false
            };
            if updated {
                cached.advance(&memtables, &positions, self.read_seq);
                let plan = cached.plan.clone();
                cache.put(cached);
                return Ok(plan);
            }
        }
        let files: Vec<(BaseFile, Arc<SstHandle>)> = version
            .files_overlapping(ranges, self.read_seq)
            .map(|f| {
                let file = BaseFile::new(
                    f.meta().clone(),
                    version.dv(f.meta().id).map(|dv| Arc::clone(dv.positions())),
                );
                (file, Arc::clone(f))
            })
            .collect();
        if !version.dvs_maintained() {
            // Without maintained DVs, only files that need none can be read as a base.
            let mut metas: Vec<&SstMeta> = version.files().map(|f| f.meta()).collect();
            metas.sort_by(|a, b| a.min_key.cmp(&b.min_key));
            let need_none = metas.iter().all(|m| m.is_clean())
                && metas.windows(2).all(|w| w[0].max_key < w[1].min_key);
            if !need_none {
                return Ok(None);
            }
        }
        let planned = crate::read::plan::plan_base_scan(
            schema,
            files,
            memtables.clone(),
            ranges,
            self.read_seq,
        )?;
        count_plan(true);
        let (scan, index) = match planned {
            Some((scan, index)) => (Some(scan), index),
            None => (None, None),
        };
        if let Some(scan) = &scan {
            Metrics::add(
                &metrics.overlay_rows_resolved,
                scan.overlay.hidden_base_rows(),
            );
        }
        cache.put(CachedPlan::new(
            version,
            &memtables,
            ranges,
            self.read_seq,
            scan.clone(),
            index,
        ));
        Ok(scan)
    }

    /// True when a file of this view was found corrupt in this process: answers that come
    /// from file metadata alone (an exact row count) must not be given for such a view.
    pub fn has_known_corrupt_file(&self) -> bool {
        self.sv.version.files().any(|f| f.known_corrupt())
    }

    /// Local path of an SST file of this view, after verifying its checksum (once per
    /// process), so other readers (DataFusion's Parquet reader) can read it directly.
    pub fn verified_sst_path(&self, file: u64) -> Result<std::path::PathBuf> {
        Ok(self.verified_sst(file)?.local_path())
    }

    /// Object path (relative to the database root: see [`crate::storage`]) and size of an SST
    /// file of this view, after verifying its checksum (once per process), so other readers
    /// (DataFusion's Parquet reader, through [`Self::storage`]'s
    /// [`crate::storage::Storage::read_store`]) can read it, on a local disk or an object
    /// store.
    pub fn verified_sst_object(&self, file: u64) -> Result<(String, u64)> {
        let handle = self.verified_sst(file)?;
        Ok((handle.meta().object_path(), handle.meta().size_bytes))
    }

    /// What a Parquet reader that skips deleted rows reads of each row group of base file
    /// `file` (of a plan of this view) to read its live rows at positions `rows`
    /// ([`BaseFile::piece_rows`]). Verifies the file as
    /// [`Self::verified_sst_object`] does (its row groups are known from its footer).
    pub fn piece_rows(&self, file: &BaseFile, rows: Range<u64>) -> Result<Vec<RowGroupRows>> {
        let reader = self.verified_sst(file.meta.id)?.reader()?;
        Ok(file.piece_rows(reader.row_group_starts(), rows))
    }

    /// The row groups a Parquet reader reads of base file `file` (of a plan of this view) to
    /// read its rows at positions `rows`, deleted rows included, for a reader that hides
    /// them after decoding ([`BaseFile::piece_row_groups`]). Verifies the file as
    /// [`Self::verified_sst_object`] does.
    pub fn piece_row_groups(&self, file: &BaseFile, rows: Range<u64>) -> Result<Vec<RowGroupRows>> {
        let reader = self.verified_sst(file.meta.id)?.reader()?;
        Ok(file.piece_row_groups(reader.row_group_starts(), rows))
    }

    /// An SST file of this view, its checksum verified (once per process).
    fn verified_sst(&self, file: u64) -> Result<&Arc<SstHandle>> {
        let handle = self
            .sv
            .version
            .files()
            .find(|f| f.meta().id == file)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("file {file} is not part of this view"))
            })?;
        handle.reader()?;
        Ok(handle)
    }

    /// The newest visible row with primary key `key`.
    pub fn get(&self, key: &[KeyValue]) -> Result<Option<RecordBatch>> {
        let encoded = self.table.schema.encode_key_values(key)?;
        self.get_encoded(&encoded)
    }

    /// The newest visible row with the encoded key `key`, as a one-row batch (user schema).
    pub fn get_encoded(&self, key: &[u8]) -> Result<Option<RecordBatch>> {
        let schema = &self.table.schema;
        let all: Vec<usize> = (0..schema.storage_schema().fields().len()).collect();
        let columns = ScanColumns::new(schema, &ScanOptions::default())?;
        let row = match self.get_row(key)? {
            None | Some(FoundRow::Deleted) => return Ok(None),
            Some(FoundRow::Memtable { seq, value }) => schema.decode_entries(
                [key].into_iter(),
                [value.as_slice()].into_iter(),
                &[seq],
                &[OpKind::Put],
                &all,
            )?,
            Some(FoundRow::Sst(batch)) => batch,
            Some(FoundRow::SstColumns(_)) => {
                return Err(Error::internal(
                    "a lookup of every column returned only some",
                ));
            }
        };
        columns.project(&row).map(Some)
    }

    /// The newest visible version of `key` (a put), without building a batch for memtable hits.
    pub(crate) fn get_row(&self, key: &[u8]) -> Result<Option<FoundRow>> {
        self.lookup(key, None)
    }

    /// Like [`ReadView::get_row`], reading only the SST columns `columns` of a row found in an
    /// SST ([`FoundRow::SstColumns`]).
    pub(crate) fn get_row_columns(
        &self,
        key: &[u8],
        columns: &[usize],
    ) -> Result<Option<FoundRow>> {
        self.lookup(key, Some(columns))
    }

    fn lookup(&self, key: &[u8], columns: Option<&[usize]>) -> Result<Option<FoundRow>> {
        let metrics = &self.db.metrics;
        Metrics::inc(&metrics.gets);
        for slot in self.sv.memtables() {
            if let Some(entry) = slot.memtable.get(key, self.read_seq) {
                Metrics::inc(&metrics.get_memtable_hits);
                return Ok((entry.op == OpKind::Put).then_some(FoundRow::Memtable {
                    seq: entry.seq,
                    value: entry.value,
                }));
            }
        }
        // Bloom probes are computed once, when the first file needs them.
        let mut probes: Option<Vec<BloomProbe>> = None;
        let point = [KeyRange::point(key.to_vec())];
        // Newest first: L0 files, then at most one file per deeper level.
        for file in self.sv.version.files_overlapping(&point, self.read_seq) {
            if probes.is_none() {
                probes = Some(bloom_probes(&self.table.schema, key)?);
            }
            let probes = probes.as_deref().unwrap_or_default();
            let reader = file.reader()?;
            // The key cache may find the row without its key block (`SstReader::get_columns`).
            let file_keys = || file.cached_keys();
            let found = match columns {
                None => reader
                    .get_with_probes(key, probes, self.read_seq, file_keys)?
                    .map(|(_, op, row)| (op, FoundRow::Sst(row))),
                Some(columns) => reader
                    .get_columns(key, probes, self.read_seq, columns, file_keys)?
                    .map(|(op, row)| (op, FoundRow::SstColumns(row))),
            };
            if let Some((op, found)) = found {
                let found = if op == OpKind::Put {
                    found
                } else {
                    FoundRow::Deleted
                };
                return Ok(found.into_option());
            }
        }
        Ok(None)
    }

    /// Scans the rows whose keys are in `range`.
    pub fn scan(&self, range: KeyRange, options: ScanOptions) -> Result<ScanIter> {
        let schema = &self.table.schema;
        let columns = ScanColumns::new(schema, &options)?;
        let runs = collect_runs(
            &self.sv,
            schema,
            &range,
            &columns.read,
            self.read_seq,
            options.batch_rows,
            &options.exclude_files,
        );
        let dedup = if options.versions {
            Dedup::All {
                read_seq: self.read_seq,
            }
        } else {
            Dedup::Latest {
                read_seq: self.read_seq,
            }
        };
        Metrics::inc(&self.db.metrics.scans);
        let merge = MergeIter::new(runs, dedup, options.batch_rows, false);
        Ok(ScanIter::new(
            merge,
            columns,
            options.limit,
            Arc::clone(&self.db.metrics),
        ))
    }

    /// Up to `partitions - 1` encoded keys that split the table's key space into ranges of
    /// about equal row counts, ascending and distinct (from the SST key indexes, weighted by
    /// rows, and the memtable sizes). Empty when the table is too small to split.
    pub fn split_points(&self, partitions: usize) -> Result<Vec<Vec<u8>>> {
        if partitions < 2 {
            return Ok(Vec::new());
        }
        let mut samples: Vec<(Vec<u8>, u64)> = Vec::new();
        for file in self.sv.version.files() {
            let reader = file.reader()?;
            let (keys, block_rows) = reader.block_first_keys();
            samples.extend(keys.iter().map(|k| (k.clone(), block_rows)));
        }
        // Memtables: sample every 1024th entry, each standing for 1024 rows.
        for slot in self.sv.memtables() {
            let mut seen = 0u64;
            slot.memtable
                .visit_from(&[], crate::types::MAX_SEQ, &mut |e| {
                    if seen.is_multiple_of(1024) {
                        samples.push((e.key.to_vec(), 1024));
                    }
                    seen += 1;
                    true
                });
        }
        samples.sort();
        let total: u64 = samples.iter().map(|(_, w)| w).sum();
        if samples.len() < partitions || total == 0 {
            return Ok(Vec::new());
        }
        let step = total / partitions as u64;
        let mut points: Vec<Vec<u8>> = Vec::with_capacity(partitions - 1);
        let mut cumulative = 0u64;
        let mut next = step;
        for (key, weight) in samples {
            if cumulative >= next && points.len() + 1 < partitions {
                if points.last().is_none_or(|last| *last < key) {
                    points.push(key);
                }
                next += step;
            }
            cumulative += weight;
        }
        Ok(points)
    }

    /// Number of sorted runs a scan of `range` merges (memtables, L0 files, levels).
    pub fn runs_for(&self, range: &KeyRange) -> usize {
        let schema = &self.table.schema;
        let read = vec![schema.seq_index()];
        collect_runs(&self.sv, schema, range, &read, self.read_seq, 1, &[]).len()
    }

    /// Row-group pruning of a scan of `ranges`: `(total, read)`, where `total` counts the row
    /// groups of the SST files that overlap any range (and are visible at the read sequence)
    /// and `read` the ones of them the key index makes a scan of the ranges open (each row
    /// group once). Opens the footers of those files (the scan needs them anyway).
    pub fn row_groups_for(&self, ranges: &[KeyRange]) -> Result<(usize, usize)> {
        let (mut total, mut read) = (0usize, 0usize);
        for file in self.sv.version.files_overlapping(ranges, self.read_seq) {
            let meta = file.meta();
            let overlapping = ranges
                .iter()
                .filter(|r| r.overlaps(&meta.min_key, &meta.max_key));
            let reader = file.reader()?;
            let mut touched = vec![false; reader.row_groups()];
            for range in overlapping {
                let (lower, upper) = range.bounds();
                for rg in reader.row_groups_for(lower, upper) {
                    if let Some(t) = touched.get_mut(rg) {
                        *t = true;
                    }
                }
            }
            total += touched.len();
            read += touched.iter().filter(|t| **t).count();
        }
        Ok((total, read))
    }
}

/// Where a point lookup found its row.
pub(crate) enum FoundRow {
    /// In a memtable: the encoded value.
    Memtable { seq: SeqNo, value: Vec<u8> },
    /// In an SST: a one-row batch of all SST columns.
    Sst(RecordBatch),
    /// In an SST: the columns asked for ([`ReadView::get_row_columns`]), each as an array and
    /// the row's position in it.
    SstColumns(Vec<crate::sst::RowColumn>),
    /// The newest visible version is a tombstone.
    Deleted,
}

impl FoundRow {
    fn into_option(self) -> Option<FoundRow> {
        match self {
            FoundRow::Deleted => None,
            found => Some(found),
        }
    }
}

/// The value of a single binary column at `row`, for the key-value facade.
pub(crate) fn binary_value(column: &ArrayRef, row: usize) -> Vec<u8> {
    column.as_binary::<i32>().value(row).to_vec()
}

mod shipped;
pub use shipped::ShippedScan;
